"""The equity curve: sampled by the trader off its loop, written by the persistence's own thread, pruned by age."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from trading import persistence as persistence_module
from trading.engine.execution import InlineDispatcher
from trading.engine.localstate import LocalPosition
from trading.exchange.port import ExchangeError, Wallet
from trading.models import EquitySample
from trading.persistence import DatabasePersistence, EquityWriter
from trading.tasks import equity_samples_prune, prune_equity_samples
from trading.tests.kit import build_rig
from trading.trader.blackbox import Blackbox, EquityRecorder, EquitySampler

WALLET = Wallet(equity=Decimal("10012.5"), wallet_balance=Decimal("10000"), available=Decimal("9500.25"),
                unrealised_pnl=Decimal("12.5"))


class Rest:
    """The exchange's wallet read: answers ``WALLET`` or fails, and counts the reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.down = False

    def wallet(self) -> Wallet:
        self.reads += 1
        if self.down:
            raise ExchangeError("REST 503")
        return WALLET


class Recorder:
    """Keeps what the sampler records, as the database persistence would queue it."""

    equity_every_s = 60.0

    def __init__(self) -> None:
        self.samples: list[dict] = []

    def record_equity(self, **sample) -> bool:
        self.samples.append(sample)
        return True


def _sampler(tmp_path, recorder) -> tuple[EquitySampler, SimpleNamespace, Rest]:
    rig = build_rig(["BTCUSDT"], tmp_path)
    rest = Rest()
    engine = SimpleNamespace(core=rig.core, rest=rest, dispatcher=InlineDispatcher())
    return EquitySampler(engine, recorder, rig.clock), rig, rest


def _open(rig, symbol: str = "BTCUSDT") -> None:
    rig.core.state.positions[symbol] = LocalPosition(symbol=symbol, side="LONG", qty=Decimal("0.01"),
                                                     entry_price=Decimal("90000"))


# -- the sampler (trader side) ------------------------------------------------------------------------------------


def test_the_sampler_samples_at_once_then_every_interval(tmp_path):
    recorder = Recorder()
    sampler, rig, rest = _sampler(tmp_path, recorder)
    sampler.check()
    assert [s["trigger"] for s in recorder.samples] == ["TIMER"]
    assert recorder.samples[0] == {"at_ms": rig.clock.now_ms(), "equity": Decimal("10012.5"),
                                   "wallet_balance": Decimal("10000"), "unrealized_pnl": Decimal("12.5"),
                                   "available": Decimal("9500.25"), "trigger": "TIMER"}
    rig.clock.advance(59_000)
    sampler.check()
    assert len(recorder.samples) == 1 and rest.reads == 1  # not due: no exchange call either
    rig.clock.advance(1_000)
    sampler.check()
    assert [s["trigger"] for s in recorder.samples] == ["TIMER", "TIMER"] and rest.reads == 2


def test_a_position_close_is_sampled_at_the_next_check_not_an_opening(tmp_path):
    recorder = Recorder()
    sampler, rig, _ = _sampler(tmp_path, recorder)
    sampler.check()
    _open(rig)
    rig.clock.advance(1_000)
    sampler.check()  # an opening is not a close
    assert len(recorder.samples) == 1
    rig.core.state.positions.pop("BTCUSDT")
    rig.clock.advance(1_000)
    sampler.check()
    assert [s["trigger"] for s in recorder.samples] == ["TIMER", "POSITION_CLOSED"]
    rig.clock.advance(1_000)
    sampler.check()
    assert len(recorder.samples) == 2


def test_a_failed_wallet_read_skips_the_sample_and_the_next_interval_tries_again(tmp_path, caplog):
    recorder = Recorder()
    sampler, rig, rest = _sampler(tmp_path, recorder)
    rest.down = True
    sampler.check()
    assert recorder.samples == [] and "wallet read failed" in caplog.text
    rig.clock.advance(1_000)
    sampler.check()
    assert rest.reads == 1  # no retry every second during an outage
    rest.down = False
    rig.clock.advance(60_000)
    sampler.check()
    assert [s["trigger"] for s in recorder.samples] == ["TIMER"]


def test_one_wallet_read_at_a_time(tmp_path):
    held: list = []

    class Held:
        def submit(self, call, done) -> None:
            held.append((call, done))

    recorder = Recorder()
    rig = build_rig(["BTCUSDT"], tmp_path)
    sampler = EquitySampler(SimpleNamespace(core=rig.core, rest=Rest(), dispatcher=Held()), recorder, rig.clock)
    sampler.check()
    rig.clock.advance(120_000)
    sampler.check()
    assert len(held) == 1  # the first read has not answered yet
    call, done = held[0]
    done(call(), None)
    sampler.check()
    assert len(held) == 2 and [s["trigger"] for s in recorder.samples] == ["TIMER"]


def test_the_black_box_samples_only_through_a_persistence_that_records_equity(tmp_path):
    rig = build_rig(["BTCUSDT"], tmp_path)  # REPLAY's NoPersistence keeps no samples
    ctx = SimpleNamespace(clock=rig.clock)
    engine = SimpleNamespace(core=rig.core, rest=Rest(), dispatcher=InlineDispatcher())
    assert Blackbox(ctx, engine).equity is None
    assert isinstance(DatabasePersistence("run-x"), EquityRecorder)


# -- the writer (database side) ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_samples_reach_the_database_through_the_persistence_path(tmp_path):
    """Sampler -> DatabasePersistence.record_equity -> the writer thread -> a row, each environment its own."""
    product, run = DatabasePersistence(""), DatabasePersistence("run-x")
    sampler, rig, _ = _sampler(tmp_path, product)
    sampler.check()
    assert product.equity_writer.flush(10)
    # One writer at a time: the test database is SQLite in memory, whose shared cache fails a second
    # concurrent writer at once instead of waiting as the product's file database does.
    run.record_equity(at_ms=rig.clock.now_ms(), equity=Decimal(1), wallet_balance=Decimal(1),
                      unrealized_pnl=Decimal(0), available=Decimal(1), trigger="POSITION_CLOSED")
    assert run.equity_writer.flush(10)
    row = EquitySample.objects.get(run_id="")
    assert (row.equity, row.wallet_balance, row.unrealized_pnl, row.available) == (
        Decimal("10012.5"), Decimal("10000"), Decimal("12.5"), Decimal("9500.25"))
    assert row.trigger == "TIMER" and row.at == datetime.fromtimestamp(rig.clock.now_ms() / 1000, tz=UTC)
    assert EquitySample.objects.get(run_id="run-x").trigger == "POSITION_CLOSED"
    product.equity_writer.stop()
    run.equity_writer.stop()


def _sample(at_ms: int = 1_763_479_200_000) -> EquitySample:
    return EquitySample(at=datetime.fromtimestamp(at_ms / 1000, tz=UTC), equity=1, wallet_balance=1,
                        unrealized_pnl=0, available=1)


def test_a_full_queue_drops_the_new_sample_without_waiting(monkeypatch):
    release = threading.Event()
    writing = threading.Event()

    def stuck(samples):  # a database that does not answer
        writing.set()
        release.wait(10)
        return samples

    monkeypatch.setattr(EquitySample.objects, "bulk_create", stuck)
    writer = EquityWriter(bound=1)
    assert writer.submit(_sample())
    assert writing.wait(10)  # the thread took the first and hangs in the database
    assert writer.submit(_sample())  # queued
    assert writer.submit(_sample()) is False and writer.dropped == 1  # full: dropped at once
    release.set()
    assert writer.flush(10) and writer.written == 2
    writer.stop()


def test_a_failed_write_is_counted_and_the_writer_goes_on(monkeypatch, caplog):
    calls: list[int] = []

    def flaky(samples):
        calls.append(len(samples))
        if len(calls) == 1:
            raise RuntimeError("database is down")
        return samples

    monkeypatch.setattr(EquitySample.objects, "bulk_create", flaky)
    monkeypatch.setattr(persistence_module.connection, "close", lambda: None)
    writer = EquityWriter()
    writer.submit(_sample())
    assert writer.flush(10)
    writer.submit(_sample())
    assert writer.flush(10)
    assert (writer.failed, writer.written) == (1, 1) and "database is down" in caplog.text
    writer.stop()


# -- retention --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_retention_task_deletes_only_samples_older_than_the_setting(settings):
    settings.SCALPER_EQUITY_RETENTION_DAYS = 30
    now = datetime.now(UTC)
    for run_id, days in [("", 31), ("", 29), ("run-x", 40), ("run-x", 1)]:
        EquitySample.objects.create(run_id=run_id, at=now - timedelta(days=days), equity=1, wallet_balance=1,
                                    unrealized_pnl=0, available=1)
    assert prune_equity_samples.apply().get(timeout=10) == {"deleted": 2}
    left = sorted((s.run_id, (now - s.at).days) for s in EquitySample.objects.all())
    assert left == [("", 29), ("run-x", 1)]
    assert prune_equity_samples.apply().get(timeout=10) == {"deleted": 0}  # idempotent


@pytest.mark.django_db
def test_pruning_works_in_batches_and_refuses_a_retention_under_a_day(monkeypatch):
    monkeypatch.setattr("trading.tasks.EQUITY_PRUNE_BATCH", 2)
    now = datetime.now(UTC)
    EquitySample.objects.bulk_create([_sample(int((now - timedelta(days=9, minutes=i)).timestamp() * 1000))
                                      for i in range(5)])
    assert equity_samples_prune(days=7, now=now) == 5 and not EquitySample.objects.exists()
    with pytest.raises(ValueError, match="at least one day"):
        equity_samples_prune(days=0, now=now)
