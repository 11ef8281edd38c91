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
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import msgspec

from failover.domain.files import describe_error
from trading.marketdata.messages import split_topic
from trading.marketdata.wire import PublicDecoder, WireError, decode_untyped

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


def _open_bytes(path: Path) -> IO[bytes]:
    """Open plain or gzip bytes for reading by the file name."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


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


class LineProblem(ValueError):
    """What is wrong with one line; the reader adds the file and the line number."""


def decode_line(line: bytes, decode: Callable[[bytes], Any] = decode_untyped) -> dict[str, Any] | None:
    """Return the message on one line (``decode``: exact by default), None for a blank line.

    Raise ``LineProblem`` for a line that is not a known public message.
    """
    try:
        message = decode(line)
    except WireError as exc:
        if not line.strip():
            return None
        raise LineProblem(f"malformed JSON: {exc.reason}") from None
    problem = check_message(message)
    if problem is not None:
        raise LineProblem(problem)
    return cast(dict[str, Any], message)  # check_message saw an object


def read_line_chunks(path: str | os.PathLike[str], size: int = 50_000) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (number of the first line, up to ``size`` raw lines) through a file, plain or .gz.

    A problem reading it (a corrupt gzip stream, a directory, a line over ``MAX_LINE_CHARS``)
    yields the lines read before it, then raises ``MarketFileError`` naming the file and the line.
    """
    file = Path(path)
    try:
        handle = _open_bytes(file)
    except Exception as exc:
        raise MarketFileError(file, None, f"cannot open: {describe_error(exc)}") from exc
    limit = MAX_LINE_CHARS  # read once: tests lower it
    first = 1
    with handle:
        while True:
            lines: list[bytes] = []
            problem: MarketFileError | None = None
            try:
                while len(lines) < size and (line := handle.readline(limit + 1)):
                    if len(line) > limit:
                        problem = MarketFileError(file, first + len(lines), f"line longer than {limit} characters")
                        break
                    lines.append(line)
            except Exception as exc:
                problem = MarketFileError(file, first + len(lines), f"unreadable: {describe_error(exc)}")
                problem.__cause__ = exc
            if lines:
                yield first, lines
            if problem is not None:
                raise problem
            if len(lines) < size:
                return
            first += len(lines)


def read_messages(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the messages of a .jsonl or .jsonl.gz file in order, exactly as written; blank lines are skipped.

    Any problem ends the iteration with a ``MarketFileError`` naming the file and the line.
    """
    for first, lines in read_line_chunks(path, 1_000):
        for offset, line in enumerate(lines):
            try:
                message = decode_line(line)
            except LineProblem as exc:
                raise MarketFileError(path, first + offset, str(exc)) from None
            if message is not None:
                yield message


class TypedLines:
    """Raw lines of market files to the typed messages (``wire``) of some symbols, as REPLAY's pipeline takes them.

    A line is checked as ``read_messages`` checks it; a topic seen once is remembered, so the usual
    line costs its decode and two dictionary look-ups.
    """

    def __init__(self, symbols: Iterable[str]) -> None:
        self.symbols = frozenset(symbols)
        self.public = PublicDecoder()
        self._topics: dict[str, bool] = {}  # a known topic -> whether it is about one of the symbols

    def decoded(self, lines: Iterable[bytes], *, source: str, first_line: int = 1) -> Iterator[dict[str, Any]]:
        """Yield the messages of ``lines`` about the symbols; a bad line raises ``MarketFileError`` with its number."""
        decode, topics = self.public.decode, self._topics
        for number, line in enumerate(lines, first_line):
            try:
                message = decode(line)
            except WireError:
                message = None  # not JSON, or blank: decode_line tells which
            keep = None
            if type(message) is dict and type(message.get("ts")) is int:
                topic = message.get("topic")
                keep = topics.get(topic) if type(topic) is str else None
            if keep is None:
                keep = self._first_look(line, source, number)
            if keep:
                yield message  # a checked message

    def _first_look(self, line: bytes, source: str, number: int) -> bool:
        """Check a line the fast path could not pass: a blank line is skipped, a bad one raises."""
        try:
            message = decode_line(line, self.public.decode)
        except LineProblem as exc:
            raise MarketFileError(source, number, str(exc)) from None
        if message is None:
            return False
        topic = message["topic"]
        keep = topic.rsplit(".", 1)[-1] in self.symbols
        if len(self._topics) < 4_096:  # a file holds a handful of topics: a hostile one cannot grow this
            self._topics[topic] = keep
        return keep

    def read(self, path: str | os.PathLike[str], chunk: int = 50_000) -> Iterator[dict[str, Any]]:
        """Yield the messages of a whole file about the symbols."""
        for first, lines in read_line_chunks(path, chunk):
            yield from self.decoded(lines, source=str(path), first_line=first)


def write_messages(
    path: str | os.PathLike[str], messages: Iterable[dict[str, Any]], *, compresslevel: int = 9
) -> int:
    """Write messages one per line, atomically (temp file then rename); return how many were written.

    ``compresslevel`` is gzip's (for a ``.gz`` name): 9 for files that ship, 1 for a cache written once.
    """
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    # Same folder so os.replace is atomic; mode "x" creates it with the usual umask permissions.
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    count = 0
    encode = msgspec.json.Encoder().encode  # compact, UTF-8, keys in order: the bytes json.dumps would write
    try:
        with open(tmp, "xb") as raw:
            if file.name.endswith(".gz"):
                # mtime=0 and no file name in the header: the same messages give the same bytes
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel) as gz:
                    count = _write_lines(gz, messages, encode)
            else:
                count = _write_lines(raw, messages, encode)
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _write_lines(out: IO[bytes] | gzip.GzipFile, messages: Iterable[dict[str, Any]], encode: Any) -> int:
    count = 0
    lines: list[bytes] = []
    for count, message in enumerate(messages, start=1):  # noqa: B007
        lines.append(encode(message))
        if len(lines) == 1_000:
            out.write(b"\n".join(lines) + b"\n")
            lines.clear()
    if lines:
        out.write(b"\n".join(lines) + b"\n")
    return count
