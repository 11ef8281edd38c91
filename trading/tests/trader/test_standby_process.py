"""Two real traders on one simulated account, separate data folders: one leads, the other stands by.

The leader holds the account lease; the standby sends nothing and writes its
heartbeat beside the leader's. ``kill -9`` the leader: the standby takes the
lease once it lapses, reports UNEXPECTED_SHUTDOWN, and leads once the recovery
plan is done. SIGSTOP the leader past its lease: the standby takes over, and
the woken leader steps down without sending. Judged from the simulator's order
history: no ``orderLinkId`` on two orders.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import pytest

from scalper_site.testkit import wait_until
from trading.control import read_heartbeat, read_standby_heartbeats
from trading.engine.eventlog import read_events
from trading.tests.process_kit import Environment, eager_config
from trading.tests.trader.test_crash_points import _exchange_history

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TTL = "3"


def _two_traders(env: Environment):
    eager_config(env.data)
    env.start()
    env.start_trader("leader", "--lease-ttl", TTL)
    leader, leader_log = env.trader, env.trader_log
    env.wait_safe_mode_off(timeout=90)
    standby_data = env.tmp / "data-standby"
    standby_data.mkdir()
    eager_config(standby_data)
    env.start_trader("standby", "--lease-ttl", TTL, "--data-dir", str(standby_data))
    wait_until(lambda: any(b.get("role") == "STANDBY" and b.get("pid") == env.trader.pid
                           for b in read_standby_heartbeats(run_id=env.run_id)), timeout=60, what="a standby")
    beat = read_heartbeat(run_id=env.run_id)
    assert beat["role"] == "LEADER" and beat["pid"] == leader.pid and beat["lease"]["held"], beat
    return leader, leader_log, standby_data


def _no_link_twice(env: Environment) -> None:
    links = Counter(o["orderLinkId"] for o in _exchange_history(env) if o["orderLinkId"])
    assert [link for link, n in links.items() if n > 1] == []


def _leads(env: Environment, pid: int) -> bool:
    beat = read_heartbeat(run_id=env.run_id)
    return bool(beat and beat.get("pid") == pid and beat.get("role") == "LEADER")


def test_kill_9_of_the_leader_hands_the_account_to_the_standby(environment):
    env = environment
    leader, _, _ = _two_traders(env)
    version = env.state().version
    os.killpg(leader.pid, signal.SIGKILL)
    leader.wait(timeout=10)
    wait_until(lambda: _leads(env, env.trader.pid), timeout=60, what="the standby to lead")
    env.wait_safe_mode_off(timeout=120, after_version=version)
    _no_link_twice(env)


def test_a_leader_frozen_past_its_lease_wakes_as_a_standby_and_sends_nothing(environment):
    env = environment
    leader, _, _ = _two_traders(env)
    os.killpg(leader.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: _leads(env, env.trader.pid), timeout=60, what="the standby to lead")
        before = {o["orderLinkId"] for o in _exchange_history(env)}
    finally:
        os.killpg(leader.pid, signal.SIGCONT)
    wait_until(lambda: any(b.get("pid") == leader.pid and b.get("role") == "STANDBY"
                           for b in read_standby_heartbeats(run_id=env.run_id)), timeout=30,
               what="the woken leader to stand by")
    assert "LEASE_LOST" in [e["event"] for e in _events(env, "_SYSTEM")]
    asked = {e.get("orderLinkId") for symbol in ("BTCUSDT", "ETHUSDT") for e in _events(env, symbol)
             if e["event"] in ("ORDER_REQUEST", "EXIT_REQUEST")}  # what the old leader ever asked to send
    new_on_exchange = {o["orderLinkId"] for o in _exchange_history(env)} - before
    assert asked & new_on_exchange == set()  # nothing of the woken leader reached the exchange
    _no_link_twice(env)


def _events(env: Environment, name: str) -> list[dict]:
    path = env.data / "events" / f"{name}.jsonl"
    return list(read_events(path)) if path.exists() else []


def test_a_second_trader_on_the_leaders_data_folder_starts_nothing_and_the_leader_goes_on(environment):
    env = environment
    eager_config(env.data)
    env.start()
    env.start_trader("leader", "--lease-ttl", TTL)
    leader, leader_log = env.trader, env.trader_log
    env.wait_safe_mode_off(timeout=90)
    starts_before = [e for e in read_events(env.data / "events" / "_SYSTEM.jsonl") if e["event"] == "TRADER_STARTED"]

    env.start_trader("intruder", "--lease-ttl", TTL, "--folder-wait", "1")  # the same data folder
    intruder = env.trader
    assert intruder.wait(timeout=60) == 3
    said = env.trader_log.read_text()
    assert f"in use by another trader (pid {leader.pid}" in said, said[-2000:]

    starts = [e for e in read_events(env.data / "events" / "_SYSTEM.jsonl") if e["event"] == "TRADER_STARTED"]
    assert starts == starts_before  # the intruder wrote nothing in the folder
    assert read_standby_heartbeats(run_id=env.run_id) == []
    env.trader, env.trader_log = leader, leader_log
    assert _leads(env, leader.pid) and leader.poll() is None
    assert json.loads((env.data / "system" / "process_state.json").read_text())["pid"] == leader.pid
