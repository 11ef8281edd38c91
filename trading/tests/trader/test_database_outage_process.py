"""The database drops every connection under a running trader (a PostgreSQL restart, a failover of the server):
the trader gets fresh ones, and safe mode, if it went on, ends; it trades again.

A real trader, a real Celery worker and the simulator on this test's PostgreSQL database. The drop is
``pg_terminate_backend`` on every other session of the test database: what each process sees when the
server restarts, without touching the machine's other databases.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

from scalper_site.testkit import wait_until
from trading.models import Order
from trading.tests.process_kit import Environment, eager_config

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _drop_every_other_session() -> int:
    """Terminate every session of the test database but this one; return how many there were."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        dropped = int(cursor.fetchone()[0])
    if getattr(connection, "pool", None) is not None:
        connection.close()
        connection.close_pool()  # this process's idle pooled sessions were among them: a fresh pool for the test
    return dropped


def test_a_database_that_drops_every_connection_is_reconnected_and_trading_resumes(tmp_path):
    env = Environment(tmp_path)
    try:
        eager_config(env.data)
        env.start()
        env.start_trader("trader")
        env.wait_safe_mode_off(timeout=90)
        wait_until(lambda: Order.objects.filter(run_id=env.run_id).exists(), timeout=120, what="a first order")
        dropped = 0
        for _ in range(3):  # a few drops, some landing while the trader writes
            dropped += _drop_every_other_session()
            time.sleep(2.0)
        assert dropped > 0
        dropped_at = time.time()
        before = Order.objects.filter(run_id=env.run_id).count()
        wait_until(lambda: Order.objects.filter(run_id=env.run_id).count() > before, timeout=180,
                   what=f"an order written after the drops (trader log {env.trader_log})")
        env.wait_safe_mode_off(timeout=120)
        assert env.trader.poll() is None
        assert time.time() > dropped_at
    finally:
        env.stop()
