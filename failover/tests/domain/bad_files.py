"""Bad files, as a table: every way a file the product reads at start can be wrong.

Shared by the failover and the trading tests: the process state, the config
and (built in ``trading/tests/trader/test_bad_files.py``) the exchange state.

Each ``BadFile`` plants one bad version of a JSON document at a path. The
document is given as a valid dict plus the key path of one of its integer
fields, so the same case (a 5,000-digit number, a pid that is a string) lands in
a process state, a config or an exchange state alike. Loader-specific cases are
built with ``at_field``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from failover.domain.process_state import MAX_STATE_BYTES, PID_MAX
from failover.tests.domain.kit import process_state
from trading.domain.config import MAX_CONFIG_BYTES

RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT_SKIP = "running as root: a 0000 file is still readable, so the case cannot happen"


@dataclass(frozen=True)
class Document:
    """A valid document and the key path of one integer field in it."""

    valid: dict[str, Any]
    int_field: tuple[str, ...]

    def with_raw(self, raw_json: str, field: tuple[str, ...] | None = None) -> str:
        """Return the document's JSON text with ``raw_json`` written verbatim as the value of ``field``."""
        marker = "__BAD_VALUE__"
        data = json.loads(json.dumps(self.valid))
        node = data
        keys = field or self.int_field
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = marker
        return json.dumps(data).replace(json.dumps(marker), raw_json)


Plant = Callable[[Path, Document], None]


@dataclass(frozen=True)
class BadFile:
    name: str
    plant: Plant
    marks: tuple[Any, ...] = ()

    def param(self) -> Any:
        return pytest.param(self, id=self.name, marks=self.marks)


def _bytes(data: bytes) -> Plant:
    def plant(path: Path, doc: Document) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return plant


def _text(make: Callable[[Document], str]) -> Plant:
    def plant(path: Path, doc: Document) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make(doc), encoding="utf-8")

    return plant


def at_field(raw_json: str, field: tuple[str, ...] | None = None) -> Plant:
    """Plant the valid document with ``raw_json`` as the value of ``field`` (default: its integer field)."""
    return _text(lambda doc: doc.with_raw(raw_json, field))


def _directory(path: Path, doc: Document) -> None:
    path.mkdir(parents=True)
    (path / "inside.json").write_text(json.dumps(doc.valid))


def _symlink_loop(path: Path, doc: Document) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path.name, path)  # points at itself: every open is ELOOP


def _fifo(path: Path, doc: Document) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)  # nobody writes: a blocking open would hang the reader for ever


def _unreadable(path: Path, doc: Document) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc.valid))
    path.chmod(0)


def oversized(limit: int) -> Plant:
    """A file one byte over the reader's bound (sparse: costs no disk)."""

    def plant(path: Path, doc: Document) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.truncate(limit + 1)

    return plant


DEEP = 100_000

# Bad whatever the document: the ones the issue found, and more.
COMMON: tuple[BadFile, ...] = (
    BadFile("empty", _bytes(b"")),
    BadFile("whitespace", _bytes(b"  \n\t\n")),
    BadFile("nul_bytes", _bytes(b"\x00" * 64)),
    BadFile("not_utf8", _bytes(b"\xff\xfe{\x00")),
    BadFile("truncated_json", _text(lambda doc: json.dumps(doc.valid)[:-7])),
    BadFile("top_level_list", _text(lambda doc: json.dumps([doc.valid]))),
    BadFile("top_level_string", _bytes(b'"process state"')),
    BadFile("top_level_null", _bytes(b"null")),
    BadFile("int_5000_digits", at_field("9" * 5000)),
    BadFile("deep_nesting_100k", _bytes(b"[" * DEEP + b"]" * DEEP)),
    BadFile("deep_nesting_in_a_field", at_field("[" * DEEP + "]" * DEEP)),
    BadFile("nan", at_field("NaN")),
    BadFile("directory", _directory),
    BadFile("symlink_loop", _symlink_loop),
    BadFile("fifo", _fifo),
    BadFile("unreadable_0000", _unreadable, (pytest.mark.skipif(RUNNING_AS_ROOT, reason=ROOT_SKIP),)),
)


STATE = Document(valid=process_state().to_dict(), int_field=("pid",))

# Bad process states (``process_state.json`` and its ``.previous`` copy).
PROCESS_STATE_CASES: tuple[BadFile, ...] = (
    *COMMON,
    BadFile("oversized", oversized(MAX_STATE_BYTES)),
    BadFile("pid_99999999999", at_field("99999999999")),  # os.kill raised OverflowError on it
    BadFile("pid_past_c_int", at_field(str(PID_MAX + 1))),
    BadFile("pid_as_string", at_field('"12345"')),
    BadFile("pid_negative", at_field("-1")),
    BadFile("pid_zero", at_field("0")),
    BadFile("pid_bool", at_field("true")),
    BadFile("pid_float", at_field("12345.5")),
    BadFile("pid_huge_float", at_field("1e308")),
    BadFile("pid_null", at_field("null")),
    BadFile("phase_unknown", at_field('"SLEEPING"', ("phase",))),
    BadFile("snapshot_not_a_list", at_field('{"a": 1}', ("openOrdersSnapshot",))),
    BadFile("timestamp_garbage", at_field('"yesterday"', ("lastUpdate",))),
)


CONFIG = Document(valid={"risk": {"max_open_positions": 3}}, int_field=("risk", "max_open_positions"))

# Bad ``config.json`` files.
CONFIG_CASES: tuple[BadFile, ...] = (
    *COMMON,
    BadFile("oversized", oversized(MAX_CONFIG_BYTES)),
    BadFile("deep_nesting_in_a_section", at_field("[" * 900 + "]" * 900)),  # parses; the model refuses it
    BadFile("huge_float", at_field("1e308", ("risk", "risk_per_trade_pct"))),
    BadFile("float_past_double", at_field("1e400", ("risk", "risk_per_trade_pct"))),  # json reads inf
    BadFile("string_for_a_number", at_field('"3"')),
    BadFile("bool_for_an_int", at_field("true")),
    BadFile("negative", at_field("-3")),
    BadFile("unknown_key", at_field("1", ("risk", "max_positions"))),
    BadFile("section_is_a_list", at_field("[]", ("risk",))),
)


def params(cases: tuple[BadFile, ...]) -> list[Any]:
    return [case.param() for case in cases]


def still_there(path: Path) -> bool:
    """Whether anything (a file, a directory, a symlink, even a looping one) is at ``path``."""
    return os.path.lexists(path)
