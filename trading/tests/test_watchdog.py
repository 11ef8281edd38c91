"""The watchdog takes a hot-reloaded config's thresholds and keeps what it has observed."""

from __future__ import annotations

import logging

from failover.domain.clock import ManualClock
from trading.domain.config import DEFAULT_CONFIG, TradingConfig
from trading.engine.watchdog import Watchdog

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _config(**detectors: float) -> TradingConfig:
    data = DEFAULT_CONFIG.model_dump()
    data["failover"]["detectors"].update(detectors)
    return TradingConfig.model_validate(data)


def _watchdog(config: TradingConfig, clock: ManualClock) -> Watchdog:
    return Watchdog(config=config, symbols=["BTCUSDT"], clock=clock, ping_interval_s=20, pong_timeout_s=10)


def test_a_hot_reload_changes_the_thresholds_the_detectors_judge_by():
    clock = ManualClock(T0_MS)
    watchdog = _watchdog(DEFAULT_CONFIG, clock)
    watchdog.on_rest(False, 0, "503")
    watchdog.on_rest(False, 0, "503")
    assert not watchdog.check(public=None, private=None).started  # 2 of the default 3
    watchdog.apply_config(_config(rest_failures_unavailable=2, market_data_stale_s=2.0, module_crash_quiet_s=1.0,
                                  latency_avg_ms=50.0, private_silence_s=45.0))
    watchdog.on_rest(False, 0, "503")  # the count so far is kept: 3 >= the new 2
    assert [e.type.value for e in watchdog.check(public=None, private=None).started] == ["EXCHANGE_UNAVAILABLE"]
    assert watchdog.public.stale_after_s == 2.0 and watchdog.crash.quiet_s == 1.0
    assert watchdog.latency.threshold_ms == 50.0 and watchdog.private.silence_limit_s == 45.0
    assert watchdog.packet_loss.unavailable_threshold == 2
    clock.advance(3_000)
    started = {e.type.value: e for e in watchdog.check(public=None, private=None).started}
    assert started["PUBLIC_WS_DEGRADED"].details["staleSymbols"] == ["BTCUSDT"]  # 3 s > the new 2 s


def test_a_private_silence_below_the_ping_round_is_raised_to_it_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="trading.engine.watchdog"):
        watchdog = _watchdog(_config(private_silence_s=5.0), ManualClock(T0_MS))
    assert watchdog.private.silence_limit_s == 30.0  # ping every 20 s + 10 s for the pong
    assert "private_silence_s=5 is below the ping interval plus pong timeout; using 30 s" in caplog.text


def test_a_timer_with_a_callable_interval_reads_it_at_each_run():
    from trading.trader.inbox import Timer

    interval, runs = [5.0], []
    timer = Timer(lambda: interval[0], lambda: runs.append(1), "process-state")
    timer.maybe_run(0.0)
    timer.maybe_run(4.9)
    assert runs == [1] and timer.next_at == 5.0
    interval[0] = 15.0  # the config was reloaded
    timer.maybe_run(5.0)
    assert runs == [1, 1] and timer.next_at == 20.0


def test_a_timer_action_through_the_inbox_guard_is_a_crash_of_its_module_and_runs_again_at_its_next_time(caplog):
    from types import SimpleNamespace

    from trading.trader.inbox import Inbox, Timer

    reports: list[tuple[str, str]] = []
    inbox = SimpleNamespace(_core=SimpleNamespace(
        report_crash=lambda module, exc, symbol: reports.append((module, str(exc)))))

    def action() -> None:
        raise ValueError("bad payload")

    timer = Timer(1.0, Inbox._guarded(inbox, "timer-rest-probe", action), "rest-probe")  # type: ignore[arg-type]
    timer.maybe_run(0.0)
    timer.maybe_run(0.5)  # not due
    timer.maybe_run(1.0)
    assert reports == [("TRADER_TIMER_REST_PROBE", "bad payload")] * 2 and timer.next_at == 2.0

    def broken_report(module: str, exc: Exception, symbol: str) -> None:
        raise RuntimeError("report lost")

    inbox._core.report_crash = broken_report
    with caplog.at_level(logging.ERROR, logger="scalper.trader"):
        timer.maybe_run(2.0)  # a report that raises too is logged, never the loop's end
    assert "timer rest-probe failed" in caplog.text and "report lost" in caplog.text and timer.next_at == 3.0
