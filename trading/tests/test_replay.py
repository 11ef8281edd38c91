"""REPLAY: the whole pipeline over a data set, deterministic to the byte."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

from trading.engine.replay import BacktestEngine, ReplayEngine, replay_main

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
    assert result.messages == 20_000
    assert result.crashes == {}


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
