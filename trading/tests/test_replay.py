"""REPLAY: the whole pipeline over a data set, deterministic to the byte."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import re
from pathlib import Path

from trading.engine.replay import BacktestEngine, ReplayEngine, replay_main
from trading.marketdata.jsonl import read_line_chunks, read_messages, write_messages

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "market" / "sample.jsonl.gz"


def _run(tmp_path: Path, name: str) -> tuple[list, dict[str, bytes]]:
    folder = tmp_path / name
    engine = ReplayEngine(symbols=["BTCUSDT", "ETHUSDT"], event_dir=folder)
    result = engine.run(events=40_000, seed=11)
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    return result.trades, files


def test_replay_is_deterministic_byte_for_byte(tmp_path):
    trades_a, files_a = _run(tmp_path, "a")
    trades_b, files_b = _run(tmp_path, "b")
    assert len(trades_a) >= 1, "the data set should produce trades, or this test proves nothing"
    assert trades_a == trades_b
    assert files_a.keys() == files_b.keys() and files_a == files_b
    assert any(b'"event":"ORDER_REQUEST"' in content for content in files_a.values())


def test_backtest_statistics_agree_with_the_trades(tmp_path):
    result = ReplayEngine(symbols=["BTCUSDT", "ETHUSDT"]).run(events=40_000, seed=11)
    assert result.events >= result.messages * 0.9
    assert result.pnl == sum(t.realized_pnl for t in result.trades)
    assert result.fees == sum(t.fees for t in result.trades)
    wins = sum(1 for t in result.trades if t.realized_pnl > 0)
    assert result.win_rate == wins / len(result.trades)
    assert 0 < result.exposure < 1
    assert result.crashes == {}
    assert result.final_equity > 0


def test_replay_of_the_shipped_sample_file_runs_every_message(tmp_path):
    result = BacktestEngine(symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"]).run(
        ReplayEngine(symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"]).messages(path=str(SAMPLE))
    )
    assert result.messages == 25_000
    assert result.crashes == {}


def _trades_digest(trades: list) -> str:
    text = "\n".join(f"{t.symbol} {t.side} {t.qty} {t.entry_price} {t.exit_price} {t.realized_pnl} {t.close_reason} "
                     f"{t.opened_ms} {t.closed_ms}" for t in trades)
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_default_sample_trades_and_typed_decoding_decides_exactly_as_plain_json_did():
    """The trades of the shipped sample, recorded with the standard library's json before typed decoding."""
    out = io.StringIO()
    assert replay_main(symbols=["BTCUSDT", "ETHUSDT"], path=str(SAMPLE), events=0, seed=0, out=out) == 0
    assert ", 15 trades, PnL 104.7579 USDT (fees 347.4929)" in out.getvalue()

    with gzip.open(SAMPLE, "rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    typed = BacktestEngine(symbols=["BTCUSDT", "ETHUSDT"]).run_lines(lines, source=str(SAMPLE))
    plain = BacktestEngine(symbols=["BTCUSDT", "ETHUSDT"]).run(json.loads(line) for line in lines)

    assert len(typed.trades) >= 10
    assert typed.trades == plain.trades
    assert _trades_digest(typed.trades) == "ac4b5c42106c98d22458d1746d9b7d56c2695b2c98358dca13a274c763cb2763"
    assert (typed.pnl, typed.fees, typed.events) == (plain.pnl, plain.fees, plain.events)


def test_a_replay_read_from_a_file_writes_the_event_log_of_the_same_messages_replayed_in_memory(tmp_path):
    messages = list(itertools.islice(read_messages(SAMPLE), 12_000))  # a stretch of the sample that trades
    path = tmp_path / "m.jsonl"
    write_messages(path, messages)

    in_memory = BacktestEngine(symbols=["BTCUSDT", "ETHUSDT"], event_dir=tmp_path / "a")
    expected = in_memory.run(messages)
    from_file = BacktestEngine(symbols=["BTCUSDT", "ETHUSDT"], event_dir=tmp_path / "b")
    for first, lines in read_line_chunks(path, 7_000):
        result = from_file.run_lines(lines, source=str(path), first_line=first)
    in_memory.events.close()
    from_file.events.close()

    assert result.trades == expected.trades and len(expected.trades) >= 1
    logs_a = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    assert logs_a == {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    assert any(b'"event":"ORDER_REQUEST"' in content for content in logs_a.values())


def test_generated_data_is_written_once_under_the_data_folder_and_read_from_there(tmp_path, monkeypatch):
    from trading.marketdata import datasets

    calls: list[int] = []
    real = datasets.generate_messages
    monkeypatch.setattr(datasets, "generate_messages", lambda *a, **k: calls.append(1) or real(*a, **k))
    outputs = []
    for _ in range(2):
        out = io.StringIO()
        assert replay_main(symbols=["BTCUSDT"], path="", events=3_000, seed=4, out=out, data_dir=tmp_path) == 0
        outputs.append(_without_speed(out.getvalue()))
    assert calls == [1]
    first, second = outputs[0].splitlines(), outputs[1].splitlines()
    assert first[0].startswith("REPLAY data set generated once into ")
    assert second[0].startswith("REPLAY data set read from ")
    assert first[1] == second[1] and first[1].startswith("REPLAY BTCUSDT: 3000 messages, ")
    (cached,) = (tmp_path / "market" / "generated").iterdir()
    assert cached.name.startswith("generated-BTCUSDT-seed4-n3000-") and cached.name.endswith(".jsonl.gz")
    streamed = io.StringIO()
    assert replay_main(symbols=["BTCUSDT"], path="", events=3_000, seed=4, out=streamed) == 0
    assert _without_speed(streamed.getvalue()) == first[1] + "\n"  # the file holds what the generator makes


def _without_speed(summary: str) -> str:
    return re.sub(r", [\d,]+ events/s", "", summary)


def test_replay_main_prints_a_summary(tmp_path):
    out = io.StringIO()
    code = replay_main(symbols=["BTCUSDT"], path="", events=5_000, seed=3, out=out)
    assert code == 0
    line = out.getvalue()
    assert line.startswith("REPLAY BTCUSDT: 5000 messages, ")
    assert "trades, PnL" in line and "events/s" in line


def test_a_data_set_fed_in_chunks_gives_the_result_of_one_run():
    symbols = ["BTCUSDT", "ETHUSDT"]
    whole = BacktestEngine(symbols=symbols).run(ReplayEngine(symbols=symbols).messages(events=40_000, seed=11))
    chunked = BacktestEngine(symbols=symbols)
    stream = iter(ReplayEngine(symbols=symbols).messages(events=40_000, seed=11))
    for size in (7_000, 13_000, 1, 19_999, 5_000):  # the last chunk finds the data set's end
        result = chunked.run(itertools.islice(stream, size))
    assert len(whole.trades) >= 1
    assert result.trades == whole.trades
    assert (result.messages, result.events, result.pnl, result.fees, result.exposure, result.final_equity) == (
        whole.messages, whole.events, whole.pnl, whole.fees, whole.exposure, whole.final_equity)


def test_replay_of_an_unreadable_market_file_stops_with_its_reason_not_a_traceback(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"topic": "publicTrade.BTCUSDT", "ts": ' + "9" * 5000 + "}\n")
    out = io.StringIO()

    code = replay_main(symbols=["BTCUSDT"], path=str(path), events=0, seed=1, out=out)

    assert code == 2
    assert out.getvalue().startswith("REPLAY stopped: the market file is unreadable: ")
    assert f"{path}:1" in out.getvalue()
