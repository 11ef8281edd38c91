"""A whole trader, in this process, arms Bybit's DCP against the simulator (or says why not) and shows it.

Each test runs a real ``Trader`` (SIM mode, the in-process simulator, the failover
side stubbed) on a thread, and reads what it did from the simulator's
``query-dcp-info`` and connections, and what it says from its heartbeats.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from scalper_site.testkit import wait_until
from trading.exchange.connect import SIM, ExchangeTarget
from trading.exchange.lease import AccountLease, redis_client
from trading.simexchange.control import SimControl
from trading.simexchange.pybit_target import sim_http
from trading.simexchange.server import SimServer
from trading.tests.test_lease import Server
from trading.tests.trader.fakes import Control
from trading.tests.trader.test_trader_run import Services
from trading.trader import dcp
from trading.trader.process import Trader, TraderSettings

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class StandbyControl(Control):
    """Keeps the leader's heartbeats and a standby's (written beside them, as ``trading.control`` does)."""

    def write_heartbeat(self, beat: dict, *, run_id: str = "", standby: str | None = None) -> None:
        super().write_heartbeat(beat, run_id=run_id)


@pytest.fixture
def sim():
    server = SimServer().start()
    try:
        yield server
    finally:
        server.stop()


def write_config(data_dir: Path, config: dict[str, Any]) -> None:
    """Replace the trader's config file at once (a new inode: the hot reload sees it at its next poll)."""
    folder = data_dir / "config"
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / "config.json.tmp"
    temp.write_text(json.dumps(config))
    os.replace(temp, folder / "config.json")


@contextmanager
def running(data_dir: Path, sim: SimServer, *, lease: AccountLease | None = None) -> Iterator[tuple[Trader, Control]]:
    """A trader on a thread until the block ends (stopped, then joined within a bound)."""
    settings = TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id="dcp", data_dir=data_dir,
                              target=ExchangeTarget(kind=SIM, base_url=sim.base_url), max_runtime_s=120.0)
    control = StandbyControl()
    trader = Trader(settings, services=Services(), control=control, lease=lease)
    thread = threading.Thread(target=trader.run, name="trader-under-test", daemon=True)
    thread.start()
    try:
        yield trader, control
    finally:
        trader.request_stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the trader did not stop"


def beat_dcp(control: Control, predicate: Any, what: str) -> dict[str, Any]:
    """The first heartbeat's ``dcp`` (from now on) that satisfies ``predicate``."""
    return wait_until(lambda: next((b["dcp"] for b in reversed(control.beats[-3:]) if predicate(b["dcp"])), None),
                      timeout=20, what=what)


def exchange_window(sim: SimServer) -> str:
    infos = sim_http(sim.base_url).query_dcp_info()["result"]["dcpInfos"]
    return {i["product"]: i["timeWindow"] for i in infos}["DERIVATIVES"]


def dcp_connections(sim: SimServer) -> int:
    return sum(dcp.TOPIC in c["topics"] for c in sim.sim.describe()["connections"])


def test_a_leader_arms_the_window_rearms_at_each_private_build_and_follows_a_reload(tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # no bus: the listener retries in the background
    write_config(tmp_path, {"exchange": {"dcp_window_s": 5}})
    with running(tmp_path, sim) as (trader, control):
        armed = beat_dcp(control, lambda d: d["armed"], "DCP armed in the heartbeat")
        assert armed == {"armed": True, "windowS": 5, "supported": True, "reason": ""}
        assert exchange_window(sim) == "5"
        wait_until(lambda: dcp_connections(sim) == 1, timeout=10, what="the private stream on dcp.future")

        sim_http(sim.base_url).set_dcp(product="DERIVATIVES", timeWindow=30)  # someone else changed it
        private = trader.ctx.streams["private"]
        private.close()
        private.start()  # a rebuild, as after a reconnect or a takeover: armed again with the config's window
        wait_until(lambda: exchange_window(sim) == "5" and dcp_connections(sim) == 1, timeout=20,
                   what="DCP re-armed by the rebuilt private stream")

        write_config(tmp_path, {"exchange": {"dcp_window_s": 9}})
        beat_dcp(control, lambda d: d["windowS"] == 9 and d["armed"], "the reloaded window armed")
        assert exchange_window(sim) == "9"

        write_config(tmp_path, {})  # unset while armed: kept (dropping the topic would cancel every order)
        kept = beat_dcp(control, lambda d: d["reason"].startswith(dcp.UNSET_KEPT), "the unset window kept armed")
        assert kept["armed"] and dcp_connections(sim) == 1
        assert control.beats[-1]["phase"] == "RUNNING"


def test_an_account_without_dcp_is_said_so_and_the_trader_runs_on_the_guardian(tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    SimControl(sim.base_url, token=sim.token).set_dcp(enabled=False)  # the retail answer
    write_config(tmp_path, {"exchange": {"dcp_window_s": 5}, "deadman": {"after_s": 45}})
    with running(tmp_path, sim) as (_, control):
        said = beat_dcp(control, lambda d: d["supported"] is False, "no DCP in the heartbeat")
        assert said["armed"] is False and said["windowS"] == 5
        assert said["reason"].startswith(dcp.NO_DCP) and "dead-man guardian" in said["reason"]
        assert "deadman.after_s 45 s" in said["reason"]
        beat = wait_until(lambda: next((b for b in reversed(control.beats[-3:])
                                        if b["streams"]["private"]["connected"]), None),
                          timeout=20, what="the private stream up")
        assert beat["phase"] == "RUNNING" and beat["dcp"] == said
        assert dcp_connections(sim) == 0  # never asked: a refused subscription would kill pybit's stream


def test_no_window_configured_arms_nothing_and_says_so(tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with running(tmp_path, sim) as (_, control):
        beat = wait_until(lambda: next((b for b in reversed(control.beats[-3:])
                                        if b["streams"]["private"]["connected"]), None),
                          timeout=20, what="the private stream up")
        assert beat["dcp"]["armed"] is False and beat["dcp"]["windowS"] is None and beat["dcp"]["supported"] is None
        assert beat["dcp"]["reason"].startswith(dcp.NOT_CONFIGURED) and "not configured" in beat["dcp"]["reason"]
        assert exchange_window(sim) == "10" and dcp_connections(sim) == 0  # the simulator's default, untouched


def test_a_standby_arms_nothing_and_arms_dcp_when_it_takes_the_lease_over(tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    redis_server = Server()
    try:
        account = "dcp-test-account"
        other = AccountLease(redis_client(redis_server.url), account, ttl_s=3.0, holder="other:1:aa")
        assert other.try_acquire().held  # the leader of the account is someone else
        write_config(tmp_path, {"exchange": {"dcp_window_s": 6}})
        lease = AccountLease(redis_client(redis_server.url), account, ttl_s=3.0, holder="this:2:bb")
        with running(tmp_path, sim, lease=lease) as (_, control):
            standby = beat_dcp(control, lambda d: d["reason"].startswith(dcp.STANDBY), "a standby saying so")
            assert standby["armed"] is False and standby["windowS"] == 6
            assert exchange_window(sim) == "10" and dcp_connections(sim) == 0
            other.release()  # the leader stops: this trader takes over
            armed = beat_dcp(control, lambda d: d["armed"], "DCP armed by the new leader")
            assert armed["windowS"] == 6 and exchange_window(sim) == "6"
            assert control.beats[-1]["role"] == "LEADER"
            wait_until(lambda: dcp_connections(sim) == 1, timeout=10, what="the new leader's dcp.future")
    finally:
        redis_server.stop()
