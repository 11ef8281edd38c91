"""What ``/metrics`` reports, read at scrape time from where each value lives.

Three sources, each read once per scrape and bounded in time:

- the database (2 s per scrape: PostgreSQL's ``statement_timeout``, SQLite's busy
  timeout and a progress handler): the product's failover state (safe mode, its
  version, the active failure types), the stored failure events, the rejected
  orders and today's realized PnL. Counters come from rows that are never
  deleted, so they survive every restart;
- the trader's heartbeat in Redis (``trading.control.read_heartbeat``, 2 s socket
  timeouts): its age and each symbol's market data age;
- prometheus-client's multiprocess folder: the histograms the trader and the
  workers record (``scalper_site.metrics.instruments``).

Only the product's environment (run id "") is reported. A source that fails or
times out leaves its metrics out and reports ``scalper_metrics_source_up{source}``
0; nothing here raises into the view.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import CollectorRegistry

from failover.domain.enums import FailureType
from failover.models import FailoverStateRecord, FailureEventRecord
from trading import control
from trading.models import Order, OrderStatus, Trade

logger = logging.getLogger(__name__)

PRODUCT = ""  # the product's run id; integration runs have their own and are left out
DB_TIMEOUT_S = 2.0
HEARTBEAT_MAX_AGE_MS = control.HEARTBEAT_TTL_S * 1000  # the key expires then: any heartbeat still there counts
DATABASE, TRADER_HEARTBEAT, MULTIPROCESS = "database", "trader_heartbeat", "multiprocess"
# A rejected order's reason is "<CODE>: <message>" (trading.engine.execution); the code is the label.
REASON_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,39}")
EXCHANGE_REJECTED = "EXCHANGE_REJECTED"  # the exchange reported the order Rejected; the trader named no reason
OTHER = "OTHER"

Read = Callable[[], list[Metric] | None]


# -- the database ----------------------------------------------------------------------


@contextmanager
def read_deadline(seconds: float) -> Iterator[None]:
    """Bound the queries run inside: each PostgreSQL statement, or SQLite's whole block, to ``seconds``."""
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {int(seconds * 1000)}")
            yield
        return
    if connection.vendor != "sqlite":
        yield
        return
    # No transaction here: the product's SQLite opens each one IMMEDIATE (the write lock), and reads need none.
    connection.ensure_connection()
    raw, deadline = connection.connection, time.monotonic() + seconds
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        previous = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
        raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)  # non-zero interrupts the query
        try:
            yield
        finally:
            raw.set_progress_handler(None, 0)
            cursor.execute(f"PRAGMA busy_timeout = {int(previous)}")


def _reject_code(reason: str) -> str:
    code = reason.partition(":")[0].strip()
    if not code:
        return EXCHANGE_REJECTED
    return code if REASON_CODE.fullmatch(code) else OTHER


def _state_families(state: dict[str, Any] | None) -> list[Metric]:
    if state is None:  # nothing has happened in the product yet: no state to report
        return []
    safe_mode = GaugeMetricFamily("scalper_safe_mode", "1 while the product is in SAFE MODE.", labels=["run_id"])
    safe_mode.add_metric([PRODUCT], 1.0 if state["safe_mode"] else 0.0)
    version = GaugeMetricFamily("scalper_failover_state_version", "Version of the product's failover state.",
                                value=float(state["version"]))
    active = GaugeMetricFamily("scalper_active_failures", "1 for each failure type still active.", labels=["type"])
    current = set(state["active_failures"] or ())
    for failure_type in FailureType:
        active.add_metric([failure_type.value], 1.0 if failure_type.value in current else 0.0)
    return [safe_mode, version, active]


def _failures_family(counts: dict[str, int]) -> Metric:
    family = CounterMetricFamily("scalper_failures", "Failure events stored, by type.", labels=["type"])
    for failure_type in sorted({*(t.value for t in FailureType), *counts}):
        family.add_metric([failure_type], float(counts.get(failure_type, 0)))
    return family


def _rejects_family(by_reason: list[tuple[str, int]]) -> Metric:
    counts: dict[str, int] = {}
    for reason, count in by_reason:
        code = _reject_code(reason)
        counts[code] = counts.get(code, 0) + count
    family = CounterMetricFamily("scalper_order_rejects", "Orders rejected, by reason code.", labels=["reason"])
    for code in sorted(counts):
        family.add_metric([code], float(counts[code]))
    return family


def database_families(*, now: datetime) -> list[Metric]:
    """The metrics whose values live in the database, read within ``DB_TIMEOUT_S``."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with read_deadline(DB_TIMEOUT_S):
        state = (FailoverStateRecord.objects.filter(run_id=PRODUCT)
                 .values("safe_mode", "version", "active_failures").first())
        failures = dict(FailureEventRecord.objects.filter(run_id=PRODUCT).order_by()
                        .values_list("type").annotate(count=Count("id")))
        rejects = list(Order.objects.filter(run_id=PRODUCT, status=OrderStatus.REJECTED).order_by()
                       .values_list("reject_reason").annotate(count=Count("id")))
        pnl = Trade.objects.filter(run_id=PRODUCT, closed_at__gte=midnight).aggregate(total=Sum("realized_pnl"))
    realized = GaugeMetricFamily("scalper_realized_pnl_usdt", "Realized PnL since 00:00 UTC, net of fees, in USDT.",
                                 value=float(pnl["total"] or 0))
    return [*_state_families(state), _failures_family(failures), _rejects_family(rejects), realized]


# -- the trader's heartbeat ------------------------------------------------------------


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def heartbeat_families() -> list[Metric] | None:
    """The trader's heartbeat age and each symbol's market data age as of now; None when there is no heartbeat."""
    beat = control.read_heartbeat(run_id=PRODUCT, max_age_ms=HEARTBEAT_MAX_AGE_MS)
    at_ms = _number((beat or {}).get("at"))
    if beat is None or at_ms is None:
        return None
    age_s = max(time.time() * 1000 - at_ms, 0.0) / 1000
    heartbeat = GaugeMetricFamily("scalper_trader_heartbeat_age_seconds", "Age of the trader's last heartbeat.",
                                  value=age_s)
    market = GaugeMetricFamily("scalper_market_data_age_seconds",
                               "Time since the trader last heard market data of the symbol.", labels=["symbol"])
    ages = (beat.get("marketData") or {}).get("lastMessageAgeMs") or {}
    for symbol, age_ms in sorted(ages.items()) if isinstance(ages, dict) else ():
        if _number(age_ms) is not None:  # None: nothing heard since the trader started
            market.add_metric([str(symbol)], max(float(age_ms), 0.0) / 1000 + age_s)  # its age now, not at the beat
    return [heartbeat, market]


# -- putting it together -----------------------------------------------------------------


def _read(source: str, read: Read) -> list[Metric] | None:
    try:
        return read()
    except Exception as exc:  # DatabaseError, redis, a corrupt file: the source is down, never a 500
        logger.warning("metrics source %s not read: %s", source, exc)
        return None


class ScrapeCollector:
    """Everything ``/metrics`` reports, read once per scrape; each source reports whether it answered."""

    def __init__(self, *, multiproc_dir: str) -> None:
        self.multiproc_dir = multiproc_dir

    def _sources(self) -> list[tuple[str, Read]]:
        return [
            (DATABASE, lambda: database_families(now=timezone.now())),
            (TRADER_HEARTBEAT, heartbeat_families),
            (MULTIPROCESS, lambda: list(MultiProcessCollector(None, path=self.multiproc_dir).collect())),
        ]

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("scalper_metrics_source_up", "1 when the source answered this scrape.",
                               labels=["source"])
        for source, read in self._sources():
            families = _read(source, read)
            up.add_metric([source], 0.0 if families is None else 1.0)
            yield from families or ()
        yield up


def scrape_registry(*, multiproc_dir: str) -> CollectorRegistry:
    """A registry holding only this scrape's collector (a process's own default registry is never served)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(multiproc_dir=multiproc_dir))
    return registry
