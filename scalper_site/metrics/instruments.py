"""What the product's processes time themselves: histograms in prometheus-client's multiprocess files.

The trader records each order's round trip (submit to the exchange's answer) and
the Celery workers each recovery step's duration. Every process writes its own
file in ``PROMETHEUS_MULTIPROC_DIR`` (settings set it before this module is
imported); the web server adds the files up at each scrape
(``scalper_site.metrics.sources``). Only the product's own environment is
recorded: an integration run's processes (a run id) may share the folder, never
the figures. Recording never raises: a sample that cannot be written is dropped
and the first such failure of a process logged, so a metric never breaks an
order or a recovery step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import cache

from prometheus_client import Histogram

logger = logging.getLogger(__name__)

ORDER_SUBMIT = "place_order"  # the REST operation that sends an order (trading.exchange.pybit_rest)
# Error kinds of a call the exchange (or the server in front of it) still answered: a refusal is a
# round trip too. A timeout or a cut connection got no answer and is not one.
ANSWERED_KINDS = ("retCode ", "HTTP ")
ORDER_ROUND_TRIP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECOVERY_STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

_failed: list[str] = []  # the first failure of this process, once logged


@cache
def _order_round_trip() -> Histogram:
    # registry=None: in multiprocess mode the scrape reads the files, never a process's own registry.
    return Histogram("scalper_order_round_trip_seconds", "Order submit to the exchange's answer, in seconds.",
                     buckets=ORDER_ROUND_TRIP_BUCKETS, registry=None)


@cache
def _recovery_step_duration() -> Histogram:
    return Histogram("scalper_recovery_step_duration_seconds", "Recovery step run time, claim to settle, in seconds.",
                     labelnames=("step",), buckets=RECOVERY_STEP_BUCKETS, registry=None)


def _record(write: Callable[[], None]) -> None:
    try:
        write()
    except Exception as exc:  # a full disk or a missing folder must not fail the caller
        if not _failed:
            _failed.append(repr(exc))
            logger.warning("metric sample not recorded (%s); later failures of this process are not logged", exc)


def order_round_trip_observe(*, run_id: str, operation: str, elapsed_ms: float, kind: str) -> None:
    """Record an order submit's time to the exchange's answer, from the REST adapter's observer.

    Counts ``place_order`` calls the exchange answered, a refusal included; other
    operations, calls without an answer and integration runs are left out.
    """
    if run_id or operation != ORDER_SUBMIT or (kind and not kind.startswith(ANSWERED_KINDS)):
        return
    _record(lambda: _order_round_trip().observe(max(elapsed_ms, 0.0) / 1000))


def recovery_step_duration_observe(*, run_id: str, step: str, started_at: datetime | None,
                                   finished_at: datetime) -> None:
    """Record a recovery step's run time (its claim to its settle) under its type; integration runs left out."""
    if run_id or started_at is None:
        return
    seconds = max((finished_at - started_at).total_seconds(), 0.0)
    _record(lambda: _recovery_step_duration().labels(step=step).observe(seconds))
