"""The gateway to the exchange: REST calls on one thread, and the wait for the exchange at start."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from failover.domain.enums import FailureSource, FailureType
from scalper_site.metrics.instruments import order_round_trip_observe
from trading.exchange.connect import rest_for
from trading.exchange.fenced import FencedExchange
from trading.exchange.port import ExchangeError, ExchangePort
from trading.marketdata.instruments import InstrumentSpec
from trading.trader.context import Post, TraderContext, TraderState

logger = logging.getLogger("scalper.trader")

T = TypeVar("T")
Done = Callable[[Any, BaseException | None], None]


class GatewayDispatcher:
    """Run exchange calls on one gateway thread; hand outcomes back through the pipeline queue."""

    def __init__(self, post: Post) -> None:
        self._post = post
        self._calls: queue.Queue[tuple[Callable[[], Any], Done] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="exchange-gateway", daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], Any], done: Done) -> None:
        self._calls.put((call, done))

    def _run(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            call, done = item
            try:
                result, error = call(), None
            except Exception as exc:
                result, error = None, exc
            self._post(("done", done, result, error))

    def stop(self) -> None:
        self._calls.put(None)
        self._thread.join(timeout=5)


def open_exchange(ctx: TraderContext) -> tuple[ExchangePort, dict[str, InstrumentSpec]]:
    """Connect the REST port and read the instruments, waiting for the exchange as long as it takes.

    The port returned is fenced by the account lease when the trader has one (``FencedExchange``).
    """
    s = ctx.settings

    def observe(operation: str, ok: bool, elapsed_ms: float, kind: str) -> None:
        order_round_trip_observe(run_id=s.run_id, operation=operation, elapsed_ms=elapsed_ms, kind=kind)
        # REST outcomes feed the detectors once the loop runs; failures while waiting for the
        # exchange at start are reported (and cleared) by wait_for_exchange itself.
        if ctx.state is TraderState.RUNNING:
            ctx.post(("rest", ok, elapsed_ms, kind))

    rest = rest_for(s.target, observer=observe)
    instruments = wait_for_exchange(ctx, lambda: rest.instruments(s.symbols))
    port: ExchangePort = rest
    if s.mode == "DRY_RUN":
        from trading.exchange.dryrun import DryRunExchange

        port = DryRunExchange(rest)
    if ctx.lease is not None:  # every write proves the account lease first; without it nothing is sent
        port = FencedExchange(port, ctx.lease)
    return port, instruments


def wait_for_exchange(ctx: TraderContext, call: Callable[[], T]) -> T:
    """Retry ``call`` with backoff until the exchange answers (reported once as unavailable, then cleared)."""
    delay, reported = 0.5, False
    while True:
        try:
            result = call()
            if reported:
                ctx.report_cleared(FailureType.EXCHANGE_UNAVAILABLE.value)
            return result
        except ExchangeError as exc:
            if not reported:
                ctx.report(
                    FailureType.EXCHANGE_UNAVAILABLE,
                    FailureSource.EXECUTION_ENGINE,
                    f"Exchange not reachable at start: {exc}",
                    {"error": str(exc)},
                )
                reported = True
            if ctx.stop.wait(delay):
                raise SystemExit(1) from exc
            delay = min(delay * 2, 10.0)
