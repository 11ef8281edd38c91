"""``/metrics``: the Prometheus text format, each metric's value from its source, the access rule.

The database and the multiprocess folder are real (SQLite in the fast group); the
trader's heartbeat is faked where Redis is not part of the group, as the other
fast tests of the web stack do, and real in the services test.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.test import Client
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from failover.domain.enums import FailureType
from failover.models import (
    FailoverStateRecord,
    FailureEventRecord,
    PlanStatus,
    RecoveryPlanRecord,
    RecoveryStepRecord,
    StepStatus,
)
from failover.recovery import runner
from scalper_site import bus
from scalper_site.metrics import instruments, sources
from scalper_site.metrics.folder import metrics_folder_prepare
from scalper_site.testkit import BASE_DIR
from trading import control
from trading.models import Order, OrderStatus, Trade

pytestmark = pytest.mark.django_db

REMOTE = "203.0.113.7"  # TEST-NET-3: never loopback
TOKEN = "m" * 40
ROUND_TRIP = "scalper_order_round_trip_seconds"
STEP_DURATION = "scalper_recovery_step_duration_seconds"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(client: Client, **extra: Any) -> Samples:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} reported twice"
            samples[key] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _no_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "read_heartbeat", lambda *, run_id="", max_age_ms=5000: None)


@pytest.fixture
def product_state() -> None:
    """The product in safe mode for an exchange outage, and an integration run beside it that must not show."""
    now = datetime.now(UTC)
    FailoverStateRecord.objects.create(run_id="", safe_mode=True, reason="EXCHANGE_UNAVAILABLE", version=7,
                                       active_failures=["EXCHANGE_UNAVAILABLE", "MODULE_CRASH"], updated_at=now)
    FailoverStateRecord.objects.create(run_id="run-1", safe_mode=False, version=99,
                                       active_failures=["PACKET_LOSS"], updated_at=now)
    for run_id, failure_type in [("", "EXCHANGE_UNAVAILABLE"), ("", "EXCHANGE_UNAVAILABLE"), ("", "MODULE_CRASH"),
                                 ("run-1", "EXCHANGE_UNAVAILABLE"), ("run-1", "PACKET_LOSS")]:
        FailureEventRecord.objects.create(timestamp=now, type=failure_type, source="EXECUTION_ENGINE",
                                          message="test", run_id=run_id)
    for n, (run_id, reason) in enumerate([
        ("", "EXCHANGE_ERROR: retCode 110007: ab not enough for new order"),
        ("", "EXCHANGE_ERROR: retCode 10001: params error"),
        ("", "NOT_FOUND_ON_EXCHANGE: the exchange never received this order"),
        ("", ""),  # the exchange reported it Rejected
        ("", "something odd: not a code"),
        ("run-1", "RATE_LIMITED: place_order: ReadTimeout"),
    ]):
        Order.objects.create(run_id=run_id, order_link_id=f"o-{n}", symbol="BTCUSDT", side="BUY", qty=Decimal("0.001"),
                             status=OrderStatus.REJECTED, reject_reason=reason, created_at=now, updated_at=now)
    Order.objects.create(order_link_id="filled", symbol="BTCUSDT", side="BUY", qty=Decimal("0.001"),
                         status=OrderStatus.FILLED, created_at=now, updated_at=now)
    for run_id, pnl, closed_at in [("", "5.5", now), ("", "-1.25", now), ("", "100", now - timedelta(days=1)),
                                   ("run-1", "1000", now)]:
        Trade.objects.create(run_id=run_id, symbol="BTCUSDT", side="LONG", qty=Decimal("0.001"),
                             entry_price=Decimal("50000"), exit_price=Decimal("50010"), realized_pnl=Decimal(pnl),
                             opened_at=closed_at - timedelta(minutes=1), closed_at=closed_at)


# -- what is reported ------------------------------------------------------------------------


def test_metrics_parse_and_report_the_product_state_never_an_integration_runs(client, product_state, monkeypatch):
    _no_heartbeat(monkeypatch)
    samples = _scrape(client)
    assert _value(samples, "scalper_safe_mode", run_id="") == 1.0
    assert [key for key in samples if key[0] == "scalper_safe_mode"] == [("scalper_safe_mode",
                                                                          frozenset({("run_id", "")}))]
    assert _value(samples, "scalper_failover_state_version") == 7.0
    for failure_type in FailureType:
        active = failure_type.value in ("EXCHANGE_UNAVAILABLE", "MODULE_CRASH")
        assert _value(samples, "scalper_active_failures", type=failure_type.value) == (1.0 if active else 0.0)
    assert _value(samples, "scalper_failures_total", type="EXCHANGE_UNAVAILABLE") == 2.0
    assert _value(samples, "scalper_failures_total", type="MODULE_CRASH") == 1.0
    assert _value(samples, "scalper_failures_total", type="PACKET_LOSS") == 0.0  # only the run had one
    assert {labels: value for (name, labels), value in samples.items() if name == "scalper_order_rejects_total"} == {
        frozenset({("reason", "EXCHANGE_ERROR")}): 2.0,
        frozenset({("reason", "NOT_FOUND_ON_EXCHANGE")}): 1.0,
        frozenset({("reason", "EXCHANGE_REJECTED")}): 1.0,
        frozenset({("reason", "OTHER")}): 1.0,
    }
    assert _value(samples, "scalper_realized_pnl_usdt") == 4.25  # today's two, not yesterday's, not the run's
    assert _value(samples, "scalper_metrics_source_up", source="database") == 1.0
    assert _value(samples, "scalper_metrics_source_up", source="multiprocess") == 1.0


def test_safe_mode_off_reads_zero_and_no_state_yet_reports_none(client, monkeypatch):
    _no_heartbeat(monkeypatch)
    assert _value(_scrape(client), "scalper_safe_mode", run_id="") is None  # nothing has happened yet
    FailoverStateRecord.objects.create(run_id="", safe_mode=False, version=3, updated_at=datetime.now(UTC))
    samples = _scrape(client)
    assert _value(samples, "scalper_safe_mode", run_id="") == 0.0
    assert _value(samples, "scalper_failover_state_version") == 3.0
    assert _value(samples, "scalper_active_failures", type="EXCHANGE_UNAVAILABLE") == 0.0


def test_heartbeat_ages_are_reported_as_of_the_scrape(client, monkeypatch):
    asked = []

    def read_heartbeat(*, run_id: str = "", max_age_ms: int = 5000) -> dict[str, Any]:
        asked.append((run_id, max_age_ms))
        return {"at": time.time() * 1000 - 1500,
                "marketData": {"lastMessageAgeMs": {"BTCUSDT": 250, "ETHUSDT": None}}}

    monkeypatch.setattr(control, "read_heartbeat", read_heartbeat)
    samples = _scrape(client)
    assert asked == [("", control.HEARTBEAT_TTL_S * 1000)]  # the product's, as long as the key lives
    heartbeat_age = _value(samples, "scalper_trader_heartbeat_age_seconds")
    assert heartbeat_age is not None and 1.5 <= heartbeat_age < 3.0
    btc = _value(samples, "scalper_market_data_age_seconds", symbol="BTCUSDT")
    assert btc is not None and btc == pytest.approx(heartbeat_age + 0.25)
    assert _value(samples, "scalper_market_data_age_seconds", symbol="ETHUSDT") is None  # nothing heard yet
    assert _value(samples, "scalper_metrics_source_up", source="trader_heartbeat") == 1.0


def test_a_source_that_is_down_leaves_its_metrics_out_and_says_so(client, product_state, monkeypatch):
    _no_heartbeat(monkeypatch)

    def database_down(*, now: datetime) -> list[Any]:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(sources, "database_families", database_down)
    samples = _scrape(client)
    assert _value(samples, "scalper_metrics_source_up", source="database") == 0.0
    assert _value(samples, "scalper_metrics_source_up", source="trader_heartbeat") == 0.0
    assert not any(name.startswith(("scalper_safe_mode", "scalper_failures", "scalper_trader_heartbeat"))
                   for name, _ in samples)


def test_a_corrupt_multiprocess_folder_is_a_source_down_not_a_500(client, settings, tmp_path, monkeypatch):
    _no_heartbeat(monkeypatch)
    # 64 bytes in use, of which the first entry claims 1,000: the library's own corruption check refuses it.
    (tmp_path / "histogram_1.db").write_bytes(struct.pack("i", 64) + bytes(4) + struct.pack("i", 1000) + bytes(52))
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    assert _value(_scrape(client), "scalper_metrics_source_up", source="multiprocess") == 0.0
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path / "missing")
    assert _value(_scrape(client), "scalper_metrics_source_up", source="multiprocess") == 0.0


def test_read_deadline_interrupts_a_slow_sqlite_query_and_restores_the_busy_timeout():
    if connection.vendor != "sqlite":
        pytest.skip("the fast group's database")
    endless = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
               "SELECT count(*) FROM n WHERE i < 0")
    started = time.monotonic()
    with pytest.raises(OperationalError, match="interrupt"), sources.read_deadline(0.1), connection.cursor() as cur:
        cur.execute(endless)
    assert time.monotonic() - started < 2.0
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == 30_000  # the product's own, from its settings
        cursor.execute("SELECT 1")  # the handler is gone: queries run again


# -- histograms from the trader and the workers ------------------------------------------------------


def test_this_test_process_records_into_the_multiprocess_folder():
    assert values.ValueClass._multiprocess is True  # the settings set the folder before the library loaded


def test_order_round_trips_count_answered_submits_of_the_product_only(client, monkeypatch):
    _no_heartbeat(monkeypatch)
    before = _scrape(client)
    instruments.order_round_trip_observe(run_id="", operation="place_order", elapsed_ms=42.0, kind="")
    instruments.order_round_trip_observe(run_id="", operation="place_order", elapsed_ms=8.0, kind="retCode 110007")
    instruments.order_round_trip_observe(run_id="", operation="place_order", elapsed_ms=9000, kind="ReadTimeout")
    instruments.order_round_trip_observe(run_id="", operation="wallet", elapsed_ms=5.0, kind="")
    instruments.order_round_trip_observe(run_id="run-1", operation="place_order", elapsed_ms=5.0, kind="")
    after = _scrape(client)
    count = f"{ROUND_TRIP}_count"
    assert after[(count, frozenset())] - before.get((count, frozenset()), 0.0) == 2.0
    assert after[(f"{ROUND_TRIP}_sum", frozenset())] - before.get((f"{ROUND_TRIP}_sum", frozenset()), 0.0) == \
        pytest.approx(0.050)
    le_50ms = (f"{ROUND_TRIP}_bucket", frozenset({("le", "0.05")}))
    assert after[le_50ms] - before.get(le_50ms, 0.0) == 2.0


def _running_step(started_at: datetime, *, run_id: str = "") -> RecoveryStepRecord:
    FailoverStateRecord.objects.get_or_create(run_id=run_id, defaults={"updated_at": started_at})
    plan = RecoveryPlanRecord.objects.create(plan_id=f"plan-{run_id or 'product'}", run_id=run_id,
                                             failure_type="CONFIG_INVALID", status=PlanStatus.RUNNING,
                                             generated_at=started_at, started_at=started_at)
    return RecoveryStepRecord.objects.create(plan=plan, step_id="step-001", position=1, type="RESYNC_CONFIG",
                                             status=StepStatus.RUNNING, created_at=started_at, started_at=started_at,
                                             claimed_by="worker-1", heartbeat_at=started_at)


def test_a_step_settled_in_its_worker_is_timed_under_its_type(client, monkeypatch):
    _no_heartbeat(monkeypatch)
    count = (f"{STEP_DURATION}_count", frozenset({("step", "RESYNC_CONFIG")}))
    total = (f"{STEP_DURATION}_sum", frozenset({("step", "RESYNC_CONFIG")}))
    before = _scrape(client)
    step = _running_step(datetime.now(UTC) - timedelta(seconds=3))
    assert runner.step_settle(step_pk=step.pk, claim="worker-1", evidence={}, error=None) == "DONE"
    run_step = _running_step(datetime.now(UTC) - timedelta(seconds=3), run_id="run-1")
    assert runner.step_settle(step_pk=run_step.pk, claim="worker-1", evidence={}, error=None) == "DONE"
    after = _scrape(client)
    assert after[count] - before.get(count, 0.0) == 1.0  # the product's step only
    assert 3.0 <= after[total] - before.get(total, 0.0) < 10.0


def test_a_step_the_sweeper_settles_is_not_timed(client, monkeypatch):
    _no_heartbeat(monkeypatch)
    count = (f"{STEP_DURATION}_count", frozenset({("step", "RESYNC_CONFIG")}))
    before = _scrape(client).get(count, 0.0)
    step = _running_step(datetime.now(UTC) - timedelta(seconds=300))
    runner.step_settle(step_pk=step.pk, claim=None, evidence={}, error="worker lost")
    assert _scrape(client).get(count, 0.0) == before


@pytest.mark.slow  # a child interpreter
def test_a_histogram_another_process_wrote_is_added_up_until_its_file_is_cleared(client, settings, tmp_path,
                                                                                  monkeypatch):
    _no_heartbeat(monkeypatch)
    folder = tmp_path / "metrics"
    folder.mkdir()
    child = (
        "from scalper_site.metrics import instruments\n"
        "instruments.order_round_trip_observe(run_id='', operation='place_order', elapsed_ms=120.0, kind='')\n"
        "instruments.order_round_trip_observe(run_id='', operation='place_order', elapsed_ms=30.0, kind='')\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    done = subprocess.run([sys.executable, "-c", child], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    (written,) = [path.name for path in folder.iterdir()]  # the child's own file
    settings.PROMETHEUS_MULTIPROC_DIR = str(folder)
    samples = _scrape(client)
    assert _value(samples, f"{ROUND_TRIP}_count") == 2.0
    assert _value(samples, f"{ROUND_TRIP}_sum") == pytest.approx(0.150)
    assert _value(samples, f"{ROUND_TRIP}_bucket", le="0.05") == 1.0
    assert _value(samples, f"{ROUND_TRIP}_bucket", le="0.25") == 2.0
    assert written.startswith("histogram_")
    assert metrics_folder_prepare(folder) == [written]  # the child is gone: its file goes at the next start
    assert _value(_scrape(client), f"{ROUND_TRIP}_count") is None


# -- the folder --------------------------------------------------------------------------------------


def test_the_folder_is_private_and_keeps_only_the_files_of_running_processes(tmp_path):
    folder = tmp_path / "metrics"
    alive = [f"histogram_{os.getpid()}.db", f"counter_{os.getppid()}.db", f"gauge_livesum_{os.getpid()}.db"]
    dead = ["histogram_2147483653.db", "counter_99999999.db", "gauge_all_0.db"]  # past any pid, or none
    others = ["histogram_x.db", "notes.txt", "histogram_12345678901234567890.db"]
    metrics_folder_prepare(folder)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    for name in alive + dead + others:
        (folder / name).write_bytes(b"")
    assert metrics_folder_prepare(folder) == sorted(dead)
    assert sorted(p.name for p in folder.iterdir()) == sorted(alive + others)


PRINT_METRICS_SETTINGS = (
    "import django, json, os; django.setup(); from django.conf import settings as s; "
    "import prometheus_client.values as v; "
    "print(json.dumps({'dir': s.PROMETHEUS_MULTIPROC_DIR, 'env': os.environ['PROMETHEUS_MULTIPROC_DIR'], "
    "'multiprocess': v.ValueClass._multiprocess}))"
)


def _settings_in_child(data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    child_env = {k: v for k, v in os.environ.items()
                 if k not in {"DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR", "SCALPER_METRICS_TOKEN"}}
    child_env.update({"DJANGO_SETTINGS_MODULE": "scalper_site.settings", "SCALPER_DATA_DIR": str(data_dir), **env})
    return subprocess.run([sys.executable, "-c", PRINT_METRICS_SETTINGS], cwd=BASE_DIR, env=child_env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow  # loads the settings in a child interpreter
def test_settings_make_the_folder_under_the_data_folder_and_refuse_a_short_token(tmp_path):
    (tmp_path / "system" / "metrics").mkdir(parents=True)
    (tmp_path / "system" / "metrics" / "histogram_99999999.db").write_bytes(b"")  # a process long gone
    done = _settings_in_child(tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "system" / "metrics"
    assert json.loads(done.stdout) == {"dir": str(folder), "env": str(folder), "multiprocess": True}
    assert list(folder.iterdir()) == []
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    chosen = tmp_path / "elsewhere"
    assert json.loads(_settings_in_child(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(chosen)).stdout)["dir"] == str(chosen)
    assert chosen.is_dir()
    refused = _settings_in_child(tmp_path, SCALPER_METRICS_TOKEN="too-short")
    assert refused.returncode != 0 and "SCALPER_METRICS_TOKEN" in refused.stderr


# -- who may read them -------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"])
def test_loopback_clients_are_served_without_credentials(client, monkeypatch, address):
    _no_heartbeat(monkeypatch)
    assert client.get("/metrics", REMOTE_ADDR=address).status_code == 200


@pytest.mark.parametrize("address", [REMOTE, "10.0.0.5", "::ffff:203.0.113.7", "2001:db8::1", "", "not-an-ip"])
def test_other_clients_are_refused_without_the_token(client, settings, address):
    settings.SCALPER_METRICS_TOKEN = TOKEN
    response = client.get("/metrics", REMOTE_ADDR=address)
    assert response.status_code == 403
    assert b"scalper_" not in response.content


def test_a_remote_client_is_served_with_the_bearer_token_and_only_that(client, settings, monkeypatch):
    _no_heartbeat(monkeypatch)
    settings.SCALPER_METRICS_TOKEN = TOKEN
    for header in (f"Bearer {TOKEN[:-1]}x", f"Token {TOKEN}", TOKEN, "Bearer ", f"Basic {TOKEN}"):
        assert client.get("/metrics", REMOTE_ADDR=REMOTE, HTTP_AUTHORIZATION=header).status_code == 403, header
    assert client.get("/metrics", REMOTE_ADDR=REMOTE, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    settings.SCALPER_METRICS_TOKEN = ""  # no token configured: nothing remote is served, whatever it sends
    assert client.get("/metrics", REMOTE_ADDR=REMOTE, HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_loopback_needs_the_token_too_once_loopback_access_is_off(client, settings, monkeypatch):
    _no_heartbeat(monkeypatch)
    settings.SCALPER_METRICS_LOOPBACK = False
    settings.SCALPER_METRICS_TOKEN = TOKEN
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_only_reads_are_allowed(client):
    assert client.post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405


# -- real PostgreSQL and Redis ---------------------------------------------------------------------------------


@pytest.mark.services
def test_services_metrics_from_postgresql_and_the_heartbeat_in_redis(client, product_state):
    now_ms = time.time() * 1000
    control.write_heartbeat({"pid": 1, "at": now_ms - 2000, "marketData": {"lastMessageAgeMs": {"BTCUSDT": 500}}})
    try:
        samples = _scrape(client)
    finally:
        bus.client().delete(control.heartbeat_key())
    assert _value(samples, "scalper_safe_mode", run_id="") == 1.0
    assert _value(samples, "scalper_failures_total", type="EXCHANGE_UNAVAILABLE") == 2.0
    assert _value(samples, "scalper_realized_pnl_usdt") == 4.25
    heartbeat_age = _value(samples, "scalper_trader_heartbeat_age_seconds")
    assert heartbeat_age is not None and 2.0 <= heartbeat_age < 5.0
    assert _value(samples, "scalper_market_data_age_seconds", symbol="BTCUSDT") == pytest.approx(heartbeat_age + 0.5)
    assert {source: _value(samples, "scalper_metrics_source_up", source=source)
            for source in ("database", "trader_heartbeat", "multiprocess")} == dict.fromkeys(
        ("database", "trader_heartbeat", "multiprocess"), 1.0)
    assert _value(_scrape(client), "scalper_metrics_source_up", source="trader_heartbeat") == 0.0  # gone


@pytest.mark.services
def test_services_read_deadline_cancels_a_slow_postgresql_statement():
    started = time.monotonic()
    with pytest.raises(OperationalError), sources.read_deadline(0.2), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 2.0
