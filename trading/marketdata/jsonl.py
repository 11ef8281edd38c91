"""Read and write market data files: one Bybit V5 public message per line.

A file is plain JSONL or gzip-compressed JSONL (name ending in ``.gz``). Real
recordings and generated data share the format, so a replay reads either
unchanged. Every problem with a line is a ``MarketFileError`` that names the
file, the line number and what is wrong, so an operator can fix the file.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from trading.marketdata.messages import split_topic


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
    """Yield the messages of a .jsonl or .jsonl.gz file in order; blank lines are skipped."""
    file = Path(path)
    try:
        handle = _open_text(file, "r")
    except OSError as exc:
        raise MarketFileError(file, None, f"cannot open: {exc.strerror or exc}") from exc
    loads = json.loads
    with handle:
        number = 0
        try:
            for number, line in enumerate(handle, start=1):  # noqa: B007 - read in the except below
                if not line.strip():
                    continue
                try:
                    message = loads(line)
                except json.JSONDecodeError as exc:
                    raise MarketFileError(file, number, f"malformed JSON: {exc.msg} at column {exc.colno}") from None
                problem = check_message(message)
                if problem is not None:
                    raise MarketFileError(file, number, problem)
                yield message
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            # A truncated gzip stream or binary garbage surfaces here, after the last good line.
            raise MarketFileError(file, number + 1, f"unreadable: {exc}") from exc


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
