"""Market data files: round trips, atomic writes, and errors that name the file and line."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from trading.marketdata import make_sample
from trading.marketdata.generator import generate_messages
from trading.marketdata.jsonl import MarketFileError, TypedLines, read_messages, write_messages
from trading.marketdata.normalise import Normaliser

from .kit import START_MS

GOOD = '{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","lastPrice":"1.0"},"cs":1,"ts":1}'
SAMPLE = Path(make_sample.__file__).resolve().parents[2] / "data" / "market" / "sample.jsonl.gz"


@pytest.fixture(scope="module")
def messages() -> list[dict[str, Any]]:
    return list(generate_messages(["BTCUSDT", "SOLUSDT"], 2, START_MS, max_messages=2_000))


@pytest.mark.parametrize("name", ["market.jsonl", "market.jsonl.gz"])
def test_round_trip_keeps_every_message(tmp_path: Path, messages: list[dict[str, Any]], name: str) -> None:
    path = tmp_path / "sub" / name
    assert write_messages(path, iter(messages)) == len(messages)
    assert list(read_messages(path)) == messages
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temp file left behind


def test_gzip_output_is_byte_identical_for_the_same_messages(tmp_path: Path, messages: list[dict[str, Any]]) -> None:
    write_messages(tmp_path / "a.jsonl.gz", messages)
    write_messages(tmp_path / "b.jsonl.gz", messages)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, messages: list[dict[str, Any]]) -> None:
    path = tmp_path / "market.jsonl"
    write_messages(path, messages[:3])
    before = path.read_bytes()

    def broken() -> Any:
        yield messages[0]
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        write_messages(path, broken())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["market.jsonl"]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(f"{GOOD}\n\n   \n{GOOD}\n", encoding="utf-8")
    assert len(list(read_messages(path))) == 2


BAD_LINES = [
    ("{not json", "malformed JSON: JSON is malformed"),
    ('{"topic":"tickers.BTCUSDT","ts":1', "malformed JSON: Input data was truncated"),
    ('{"topic":"tickers.BTCUSDT","ts":' + "9" * 5000 + "}", "malformed JSON: Integer value out of range"),
    ("[" * 100_000 + "]" * 100_000, "malformed JSON: nested deeper than Python allows"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"ts": 1, "data": {}}', 'missing or non-string "topic"'),
    ('{"topic": ["tickers.BTCUSDT"], "ts": 1}', 'missing or non-string "topic"'),
    ('{"topic": "tickers.BTCUSDT", "data": {}}', 'missing or non-integer "ts"'),
    ('{"topic": "tickers.BTCUSDT", "ts": "1"}', 'missing or non-integer "ts"'),
    ('{"topic": "tickers.BTCUSDT", "ts": 1.0}', 'missing or non-integer "ts"'),
    ('{"topic": "trade.linear.BTCUSDT", "ts": 1}', "unknown topic 'trade.linear.BTCUSDT'"),
]


def _typed_reader(path: Path) -> Any:
    return TypedLines(["BTCUSDT"]).read(path, chunk=2)  # chunks of two: line numbers carry across chunks


@pytest.mark.parametrize("reader_of", [read_messages, _typed_reader], ids=["exact", "typed"])
@pytest.mark.parametrize(("line", "problem"), BAD_LINES)
def test_bad_line_names_file_line_and_problem(tmp_path: Path, line: str, problem: str, reader_of: Any) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{GOOD}\n{GOOD}\n{line}\n{GOOD}\n", encoding="utf-8")
    reader = reader_of(path)
    assert next(reader) and next(reader)  # the good lines before it still arrive
    with pytest.raises(MarketFileError) as caught:
        next(reader)
    assert caught.value.line == 3
    assert caught.value.path == str(path)
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path}:3: ")


def test_bad_line_inside_gzip_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(f"{GOOD}\n{{oops\n".encode()))
    with pytest.raises(MarketFileError, match=r"bad\.jsonl\.gz:2: malformed JSON"):
        list(read_messages(path))


def test_truncated_gzip_is_a_market_file_error(tmp_path: Path, messages: list[dict[str, Any]]) -> None:
    path = tmp_path / "cut.jsonl.gz"
    write_messages(path, messages)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(MarketFileError, match="cut.jsonl.gz"):
        list(read_messages(path))


def test_missing_file_is_a_market_file_error(tmp_path: Path) -> None:
    with pytest.raises(MarketFileError, match="cannot open"):
        list(read_messages(tmp_path / "absent.jsonl"))


def test_shipped_sample_reads_and_normalises_cleanly() -> None:
    messages = list(read_messages(SAMPLE))
    assert len(messages) == make_sample.MESSAGES
    assert {m["topic"] for m in messages} >= {
        f"{k}.{s}" for k in ("publicTrade", "tickers") for s in make_sample.SYMBOLS
    }
    normaliser = Normaliser()
    events = list(normaliser.normalise_all(messages))
    assert len(events) > len(messages)
    assert normaliser.rejected == {} and normaliser.warnings == {}
    assert SAMPLE.stat().st_size < 2_500_000  # it ships in the repository: kept small


def test_make_sample_reproduces_the_shipped_bytes(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl.gz"
    assert make_sample.main(["--out", str(out)]) == 0
    # compare the content: another zlib build may compress the same lines to other bytes
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(SAMPLE.read_bytes())
    assert not (tmp_path / "README.md").exists()  # only the default location gets the README


def test_the_typed_reader_gives_the_exact_readers_messages_with_numbers_parsed(
    tmp_path: Path, messages: list[dict[str, Any]]
) -> None:
    path = tmp_path / "m.jsonl.gz"
    write_messages(path, messages)
    typed = list(TypedLines(["BTCUSDT", "SOLUSDT"]).read(path, chunk=333))
    exact = list(read_messages(path))
    assert len(typed) == len(exact) == len(messages)
    plain, fast = Normaliser(), Normaliser()
    assert [fast.normalise(m) for m in typed] == [plain.normalise(m) for m in exact]
    assert [m["topic"] for m in typed] == [m["topic"] for m in exact]
    only_sol = list(TypedLines(["SOLUSDT"]).read(path))
    assert only_sol and all(m["topic"].endswith(".SOLUSDT") for m in only_sol)
