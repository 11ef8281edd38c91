"""Redis killed under a running trader and started again empty: nothing is sent without the lease, and trading resumes.

Redis holds the account lease, the Celery broker and the bus; this product's Redis keeps nothing on disk, so
it comes back empty (no lease, a fencing counter back at 0). A real trader, a real Celery worker, the
simulator and a private redis-server on a free port (the test kills and restarts it; the machine's is left
alone). Judged by the failover state in the database and the simulator's order record.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from datetime import datetime

import pytest
import redis

from scalper_site.testkit import wait_until
from trading.engine.eventlog import read_events
from trading.tests.process_kit import Environment, eager_config
from trading.tests.test_lease import Server
from trading.tests.trader.test_crash_points import _exchange_history

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TTL = "3"


def _epoch_ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


class Restartable(Server):
    """The private redis-server, killed with SIGKILL and started again on the same port, empty."""

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def start_again(self) -> None:
        self.process = subprocess.Popen(
            [self.process.args[0], "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: redis.Redis.from_url(self.url, socket_timeout=1).ping(), timeout=10, what="redis-server")


def test_redis_killed_and_back_empty_stops_every_send_then_the_trader_trades_again(tmp_path):
    server = Restartable()
    env = Environment(tmp_path)
    env.env["REDIS_URL"] = server.url
    try:
        eager_config(env.data)
        env.start()
        env.start_trader("trader", "--lease-ttl", TTL)
        env.wait_safe_mode_off(timeout=90)
        before = env.state().version
        sent_before = len(_exchange_history(env))

        server.kill()
        wait_until(lambda: env.state().safe_mode and env.state().version > before, timeout=60,
                   what="safe mode on once the lease cannot be renewed")
        down_at = env.state().version
        server.start_again()

        env.wait_safe_mode_off(timeout=180, after_version=down_at)  # lease taken again, recovery carried out
        assert env.trader.poll() is None
        events = read_events(env.data / "events" / "_SYSTEM.jsonl")
        lost = next(e for e in events if e["event"] == "LEASE_LOST")
        again = [e for e in events if e["event"] == "LEASE_ACQUIRED" and e["ts"] > lost["ts"]]
        assert again and again[0]["lease"]["held"], "the trader leads again"
        history = _exchange_history(env)
        links = Counter(o["orderLinkId"] for o in history if o["orderLinkId"])
        assert [link for link, n in links.items() if n > 1] == []
        lost_ms, again_ms = (_epoch_ms(e["ts"]) for e in (lost, again[0]))
        assert [o["orderLinkId"] for o in history if lost_ms <= int(o["createdTime"]) < again_ms] == []
        assert len(history) >= sent_before
    finally:
        env.stop()
        server.stop()
