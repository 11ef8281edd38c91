"""Read and write market data files: one Bybit V5 public message per line.

A file is plain JSONL or gzip-compressed JSONL (name ending in ``.gz``). Real
recordings and generated data share the format, so a replay reads either
unchanged. Every problem with a line is a ``MarketFileError`` that names the
file, the line number and what is wrong, so an operator can fix the file; no
other exception leaves ``read_messages``, whatever the file holds (a number past
Python's 4,300-digit limit, nesting too deep to parse, a corrupt gzip stream,
a directory, a line over ``MAX_LINE_CHARS``).
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast

from failover.domain.files import describe_error
from trading.marketdata.messages import split_topic

# Bybit's largest public message (a 500-level book snapshot) is tens of KB; a "line" past this bound is
# not a message, and reading it whole could exhaust memory (a gzip bomb of one endless line).
MAX_LINE_CHARS = 16 * 1024 * 1024


class MarketFileError(ValueError):
    """A market data file cannot be read or written as one Bybit message per line."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


def _open_text(path: Path, mode: str) -> IO[str]:
    """Open plain or gzip text by the file name."""
    if path.name.endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")  # noqa: SIM115 - the caller closes it


def check_message(message: Any) -> str | None:
    """Return what is wrong with a decoded line, or None when it is a known public message."""
    if not isinstance(message, dict):
        return f"expected a JSON object, got {type(message).__name__}"
    topic = message.get("topic")
    if not isinstance(topic, str):
        return 'missing or non-string "topic"'
    if split_topic(topic) is None:
        return f"unknown topic {topic!r}"
    ts = message.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        return 'missing or non-integer "ts"'
    return None


def read_messages(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the messages of a .jsonl or .jsonl.gz file in order; blank lines are skipped.

    Any problem ends the iteration with a ``MarketFileError`` naming the file and the line.
    """
    file = Path(path)
    try:
        handle = _open_text(file, "r")
    except Exception as exc:
        raise MarketFileError(file, None, f"cannot open: {describe_error(exc)}") from exc
    with handle:
        number = 0
        try:
            while line := handle.readline(MAX_LINE_CHARS + 1):
                number += 1
                message = _decode(file, number, line)
                if message is not None:
                    yield message
        except MarketFileError:
            raise
        except Exception as exc:
            # A truncated or corrupt gzip stream, binary garbage, a directory: after the last good line.
            raise MarketFileError(file, number + 1, f"unreadable: {describe_error(exc)}") from exc


def _decode(file: Path, number: int, line: str) -> dict[str, Any] | None:
    """Return the message on one line, None for a blank line; raise ``MarketFileError`` for a bad one."""
    if len(line) > MAX_LINE_CHARS:
        raise MarketFileError(file, number, f"line longer than {MAX_LINE_CHARS} characters")
    if not line.strip():
        return None
    try:
        message = json.loads(line)
    except json.JSONDecodeError as exc:
        raise MarketFileError(file, number, f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    except Exception as exc:  # ValueError past the int digit limit, RecursionError on deep nesting
        raise MarketFileError(file, number, f"malformed JSON: {describe_error(exc)}") from None
    problem = check_message(message)
    if problem is not None:
        raise MarketFileError(file, number, problem)
    return cast(dict[str, Any], message)  # check_message saw an object


def write_messages(path: str | os.PathLike[str], messages: Iterable[dict[str, Any]]) -> int:
    """Write messages one per line, atomically (temp file then rename); return how many were written."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    # Same folder so os.replace is atomic; mode "x" creates it with the usual umask permissions.
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    count = 0
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    try:
        if file.name.endswith(".gz"):
            # mtime=0 and no file name in the header: the same messages give the same bytes
            with open(tmp, "xb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                for count, message in enumerate(messages, start=1):  # noqa: B007
                    gz.write(dumps(message).encode("utf-8") + b"\n")
        else:
            with open(tmp, "x", encoding="utf-8") as out:
                for count, message in enumerate(messages, start=1):  # noqa: B007
                    out.write(dumps(message) + "\n")
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
