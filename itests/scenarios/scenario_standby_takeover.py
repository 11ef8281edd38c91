"""STANDBY_TAKEOVER: two traders for one account, each on its own host and data folder; the leader is killed,
then frozen past its lease, then the last trader dies with a resting entry and the guardian cancels it.

The traders run in two network namespaces on their own addresses where the
machine allows it, else both on loopback (``metrics.hosts`` says which and why).
Every request a trader sends to the exchange goes through a recording wire that
names the process it came from, so "the frozen leader sent nothing" is read off
the wire and the exchange's journal, never from the trader's own word.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings

from itests import probes
from itests.environment import IsolatedEnvironment, child_database_env, eager_config
from itests.hosts import NETNS, TwoHosts, Wire
from itests.scenario import IntegrationScenario
from trading.control import read_standby_heartbeats, send_command
from trading.domain.ids import base36

LEASE_TTL_S = 3.0
DEADMAN_AFTER_S = 4.0
SWEEP_S = 2  # the run's beat runs the guardian this often (SCALPER_DEADMAN_EVERY_S)
CANCEL_SLACK_S = 1.0  # the guardian's own round trips (lease read, open orders, cancel) and beat's jitter
STOP_GRACE_MS = 250  # bytes a trader wrote before SIGSTOP may still reach the wire this long after it
ENTRY_WAIT_S = 120.0
LOCAL_EQUALS_EXCHANGE_S = 15.0


def link_tag(pid: int) -> str:
    """The part of an ``orderLinkId`` that names the process that made it (its pid, base36)."""
    return base36(pid % 36**5, 5)


def orders_made_by(records: list[dict[str, Any]], pid: int, *, since_ms: int = 0,
                   entries_only: bool = False) -> list[str]:
    """Return the orderLinkIds of api orders ``pid`` created at or after ``since_ms``, from the journal."""
    tag, found = link_tag(pid), []
    for record in records:
        link = str(record.get("orderLinkId") or "")
        parts = link.split("-")
        if record.get("type") != "order" or record.get("orderOrigin") != "api" or len(parts) < 4:
            continue
        if parts[2][-5:] != tag or int(record.get("ts", 0)) < since_ms or link in found:
            continue
        if not (entries_only and record.get("reduceOnly")):
            found.append(link)
    return found


def duplicated_links(records: list[dict[str, Any]]) -> list[str]:
    """Return the orderLinkIds carried by more than one exchange order."""
    ids: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.get("type") == "order" and record.get("orderLinkId"):
            ids[str(record["orderLinkId"])].add(str(record["orderId"]))
    return sorted(link for link, orders in ids.items() if len(orders) > 1)


def _moved(url: str, host: str, port: int) -> str:
    """Return ``url`` pointing at ``host:port`` (credentials, path and query kept)."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@{host}:{port}" if auth else f"{host}:{port}"))


class StandbyTakeover(IntegrationScenario):
    id = "STANDBY_TAKEOVER"
    name = "Hot standby takes over; a frozen leader steps down; the guardian acts when no trader lives"
    description = ("Two SIM traders for one account on two hosts (network namespaces where available, else "
                   "loopback) with their own data folders: kill -9 the leader, SIGSTOP the next one past its "
                   "lease, then kill the last trader with a resting entry order.")
    prerequisite = ("A simulator, a worker running beat (the guardian), lease TTL 3 s, deadman.after_s 4 s, "
                    "action cancel_entries; a config that trades readily.")
    action = ("1: leader trades, SIGKILL it. 2: a new standby waits, SIGSTOP the leader past its lease, SIGCONT. "
              "3: SIGTERM the standby, rest an entry order, SIGKILL the only trader.")
    expected_events = ("standby: LEADER, RUNNING, safe mode off after the kill", "no orderLinkId twice",
                       "the woken leader: STANDBY, no request that changes the account",
                       "guardian: safe mode on, CRIT alert, the resting entry cancelled")
    pass_criteria = ("the standby leads after each loss within the lease TTL plus its recovery",
                     "no orderLinkId on two exchange orders", "local open positions and orders equal the exchange's",
                     "no POST from the frozen leader after its stop, no order of its making",
                     "the entry cancelled within deadman.after_s plus one sweep period of the lease lapsing")
    time_limit_s = 450.0  # a queued run takes the defaults: one kill (see time_limit)

    # -- the two hosts ---------------------------------------------------------------------------------

    def prepare(self, env: IsolatedEnvironment) -> None:
        self.hosts = TwoHosts(run_id=self.run_id).open(namespaces=self.options.get("hosts") != "loopback")
        self.metrics["hosts"] = self.hosts.describe()
        self.folders = {"a": env.data, "b": env.root / "data-b"}
        for folder in self.folders.values():
            eager_config(folder, deadman={"after_s": DEADMAN_AFTER_S, "action": "cancel_entries"})
        env.env["SCALPER_DEADMAN_EVERY_S"] = str(SWEEP_S)
        self.traders: dict[str, tuple[str, subprocess.Popen]] = {}
        gateway = self.hosts.gateway
        self.wire = Wire(("127.0.0.1", env.sim_port), host=gateway, http=True, candidates=self._candidates)
        self.wires = [self.wire]
        self.trader_env: dict[str, str] = {}
        if self.hosts.mode == NETNS:  # the shared services, reached from the namespaces as from another host
            self.trader_env = self._services_through(gateway)

    def _services_through(self, gateway: str) -> dict[str, str]:
        moved: dict[str, str] = {}
        for name, url in (("REDIS_URL", settings.REDIS_URL), *child_database_env().items()):
            parts = urlsplit(url) if "://" in url else None
            if parts is None or parts.hostname is None:
                continue  # SQLite: a file, the same on both namespaces
            wire = Wire((parts.hostname, parts.port or (6379 if name == "REDIS_URL" else 5432)), host=gateway)
            self.wires.append(wire)
            moved[name] = _moved(url, gateway, wire.port)
        return moved

    def _candidates(self) -> dict[int, str]:
        return {process.pid: name for name, (_, process) in self.traders.items() if process.poll() is None}

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            for wire in getattr(self, "wires", []):
                wire.close()
            if hasattr(self, "hosts"):
                self.hosts.close()

    def start_on(self, env: IsolatedEnvironment, host: str) -> subprocess.Popen:
        """Start a trader for the account on ``host`` with that host's data folder."""
        name = f"trader-{host}{1 + sum(1 for h, _ in self.traders.values() if h == host)}"
        process = env.start_trader(
            name, data_dir=self.folders[host], sim_url=self.wire.url, prefix=self.hosts.prefix(host),
            extra_args=("--lease-ttl", str(LEASE_TTL_S)), extra_env=self.trader_env or None)
        self.traders[name] = (host, process)
        self.progress(f"{name} started on host {host} (pid {process.pid})")
        return process

    # -- reads -------------------------------------------------------------------------------------------

    def beat_of(self, process: subprocess.Popen) -> dict[str, Any]:
        """The heartbeat of ``process``: the leader's key, else its own key as a standby; {} when none is fresh."""
        beat = self.beat() or {}
        if beat.get("pid") == process.pid:
            return beat
        return next((b for b in read_standby_heartbeats(run_id=self.run_id) if b.get("pid") == process.pid
                     and time.time() * 1000 - float(b.get("at", 0)) <= 5000), {})

    def leads(self, process: subprocess.Popen) -> bool:
        beat = self.beat_of(process)
        return beat.get("role") == "LEADER" and beat.get("phase") == "RUNNING" and beat.get("safeMode") is False

    def role(self, process: subprocess.Popen) -> str | None:
        """The role ``process`` last wrote to its process state (its host's data folder), None before it wrote."""
        host = next(h for h, p in self.traders.values() if p is process)
        try:
            state = json.loads((self.folders[host] / "system" / "process_state.json").read_text())
        except (OSError, ValueError):
            return None
        return state.get("role") if isinstance(state, dict) and state.get("pid") == process.pid else None

    def waits(self, process: subprocess.Popen) -> bool:
        return self.role(process) == "STANDBY" or self.beat_of(process).get("role") == "STANDBY"

    def name_of(self, process: subprocess.Popen) -> str:
        return next(name for name, (_, p) in self.traders.items() if p is process)

    def host_of(self, process: subprocess.Popen) -> str:
        return next(h for h, p in self.traders.values() if p is process)

    def journal(self, env: IsolatedEnvironment) -> list[dict[str, Any]]:
        return env.control.history_all(after=0)

    def side_by_side(self, env: IsolatedEnvironment) -> dict[str, Any]:
        exchange = env.exchange()
        return {"local": {"positions": probes.open_positions(self.run_id),
                          "orders": sorted(probes.open_order_ids(self.run_id))},
                "exchange": {"positions": probes.exchange_positions(exchange),
                             "orders": sorted(o["orderId"] for o in exchange["orders"])}}

    def converged(self, env: IsolatedEnvironment, when: str) -> None:
        """Local open positions and orders equal the exchange's (within a bound); no orderLinkId twice."""
        deadline = time.monotonic() + LOCAL_EQUALS_EXCHANGE_S
        sides = self.side_by_side(env)
        while sides["local"] != sides["exchange"] and time.monotonic() < deadline:
            time.sleep(0.25)
            sides = self.side_by_side(env)
        self.expect(f"{when}: local open positions and orders equal the exchange's", sides["exchange"],
                    sides["local"], fatal=False)
        self.expect(f"{when}: no orderLinkId on two exchange orders", [], duplicated_links(self.journal(env)),
                    fatal=False)

    # -- the scenario ------------------------------------------------------------------------------------

    def rounds(self) -> int:
        return max(1, int(self.options.get("kills") or 1))

    def time_limit(self) -> float:
        return 300.0 + 150.0 * self.rounds()

    def scenario(self, env: IsolatedEnvironment) -> None:
        self.progress(f"hosts: {self.hosts.mode} ({self.hosts.why})")
        self.progress("start the simulator and the run's Celery worker (with beat: the guardian)")
        env.start(timeout=max(5.0, min(60.0, self.remaining())))
        leader = self.first_leader(env)
        for _ in range(self.rounds()):
            standby = self.standby(env, "b" if self.host_of(leader) == "a" else "a")
            leader = self.case_leader_killed(env, leader, standby)
        standby = self.standby(env, "b" if self.host_of(leader) == "a" else "a")
        leader, standby = self.case_leader_frozen(env, leader, standby), leader
        self.case_no_trader_left(env, leader, standby)
        self.metrics["wireRequests"] = self._wire_counts()

    def first_leader(self, env: IsolatedEnvironment) -> subprocess.Popen:
        leader = self.start_on(env, "a")
        self.wait_for("the first trader takes the lease and runs with safe mode off", lambda: self.leads(leader)
                      and probes.safe_mode_off_after(self.run_id, -1), timeout=90,
                      expected={"role": "LEADER", "phase": "RUNNING", "safeMode": False},
                      actual=lambda: {"beat": self.beat(), "state": probes.state_summary(self.run_id)})
        self.wait_for("its public and private streams are connected", lambda: probes.streams_connected(
            self.beat_of(leader)), timeout=30, expected={"public": True, "private": True},
            actual=lambda: (self.beat() or {}).get("streams"))
        return leader

    def standby(self, env: IsolatedEnvironment, host: str) -> subprocess.Popen:
        process = self.start_on(env, host)
        name = self.name_of(process)
        self.wait_for(f"{name} waits as STANDBY", lambda: self.waits(process), timeout=90, expected="STANDBY",
                      actual=lambda: {"processState": self.role(process), "beat": self.beat()})
        return process

    def wait_entry(self, env: IsolatedEnvironment, process: subprocess.Popen) -> None:
        self.wait_for(f"{self.name_of(process)} trades: an entry of its making on the exchange",
                      lambda: orders_made_by(self.journal(env), process.pid, entries_only=True),
                      timeout=ENTRY_WAIT_S, interval=1.0, expected=">= 1 entry",
                      actual=lambda: {"trades": probes.trades(self.run_id), "beat": self.beat()})

    def take_over(self, process: subprocess.Popen, *, what: str, since_version: int, began: float) -> None:
        self.wait_for(what, lambda: self.leads(process) and probes.safe_mode_off_after(self.run_id, since_version),
                      timeout=LEASE_TTL_S + 60, interval=0.05,
                      expected={"pid": process.pid, "role": "LEADER", "phase": "RUNNING", "safeMode": False},
                      actual=lambda: {"beat": self.beat(), "state": probes.state_summary(self.run_id)})
        self.metrics.setdefault("takeoverMs", []).append(int((time.monotonic() - began) * 1000))

    # -- case 1 ------------------------------------------------------------------------------------------

    def case_leader_killed(self, env: IsolatedEnvironment, leader: subprocess.Popen,
                           standby: subprocess.Popen) -> subprocess.Popen:
        """The leader trades and is killed with SIGKILL: the standby takes over and converges."""
        self.wait_entry(env, leader)
        version, began = probes.version(self.run_id), time.monotonic()
        self.progress(f"case 1: SIGKILL the leader {self.name_of(leader)}")
        self.trader_may_exit(True)
        os.kill(leader.pid, signal.SIGKILL)
        self.expect("the leader was killed by SIGKILL", -signal.SIGKILL, leader.wait(timeout=30))
        self.take_over(standby, what="the standby takes over: LEADER, RUNNING, safe mode off", since_version=version,
                       began=began)
        self.trader_may_exit(False)
        self.converged(env, "after the takeover")
        return standby

    # -- case 2 ------------------------------------------------------------------------------------------

    def case_leader_frozen(self, env: IsolatedEnvironment, leader: subprocess.Popen,
                           standby: subprocess.Popen) -> subprocess.Popen:
        """The leader is frozen past its lease and woken: the standby leads, the woken one sends nothing."""
        self.wait_entry(env, leader)
        version, began = probes.version(self.run_id), time.monotonic()
        self.progress(f"case 2: SIGSTOP the leader {self.name_of(leader)} past its lease")
        stopped_ms = int(time.time() * 1000)
        os.kill(leader.pid, signal.SIGSTOP)
        try:
            self.take_over(standby, what="the standby takes over from the frozen leader", since_version=version,
                           began=began)
            time.sleep(max(0.0, began + LEASE_TTL_S + 1.0 - time.monotonic()))
            self.bait(env)
        finally:
            os.kill(leader.pid, signal.SIGCONT)
        woke = time.monotonic()
        self.progress("case 2: SIGCONT the frozen leader")
        self.wait_for("the woken leader steps down to STANDBY", lambda: self.waits(leader),
                      timeout=LEASE_TTL_S + 20, expected="STANDBY",
                      actual=lambda: {"processState": self.role(leader), "alive": leader.poll() is None})
        self.metrics["stepDownMs"] = int((time.monotonic() - woke) * 1000)
        time.sleep(2 * LEASE_TTL_S)  # what it might still send would come now
        self.expect("the woken leader still runs (as a standby)", None, leader.poll())
        self.judge_frozen(env, leader, since_ms=stopped_ms + STOP_GRACE_MS)
        self.expect("the new leader still leads", True, self.leads(standby) or self.role(standby) == "LEADER")
        self.converged(env, "after the frozen leader woke")
        return standby

    def bait(self, env: IsolatedEnvironment) -> None:
        """Send a close command while the leader is frozen: the new leader carries it out, and it waits in the
        frozen one's socket too. Woken, that one may run it before its lease thread notices the loss; then only
        the fence stands between it and a second close (``frozenLeader.ranBait`` says whether it did)."""
        held = sorted(p["symbol"] for p in env.exchange()["positions"] if Decimal(p["size"]) > 0)
        if not held:
            self.metrics["baitWhileFrozen"] = None
            return
        ack = send_command("close_position", run_id=self.run_id, args={"symbol": held[0]}, wait_s=10)
        self.metrics["baitWhileFrozen"] = {"command": "close_position", "symbol": held[0], "ack": ack}

    def judge_frozen(self, env: IsolatedEnvironment, frozen: subprocess.Popen, *, since_ms: int) -> None:
        seen, name = self.wire.seen(since_ms=since_ms), self.name_of(frozen)
        posts = [r.to_dict() for r in seen if r.owner == name and r.method == "POST"]
        self.expect("the woken leader sent no request that changes the account after its stop (wire)", [], posts,
                    fatal=False)
        if self.hosts.mode == NETNS:
            address = self.hosts.addresses[self.host_of(frozen)]
            from_its_host = [r.to_dict() for r in seen if r.peer.startswith(f"{address}:") and r.method == "POST"]
            self.expect("no POST from the frozen leader's host after its stop (wire, by address)", [],
                        from_its_host, fatal=False)
        made = orders_made_by(self.journal(env), frozen.pid, since_ms=since_ms)
        self.expect("no order of the woken leader's making on the exchange after its stop (journal)", [], made,
                    fatal=False)
        after = [f"{r.method} {r.path.split('?')[0]}" for r in seen if r.owner == name]
        ran = [e for e in probes.read_events(self.folders[self.host_of(frozen)]) if e.get("event") == "COMMAND"
               and e.get("command") == "close_position" and int(e.get("tsMs", 0)) >= since_ms]
        self.metrics["frozenLeader"] = {"name": name, "requestsAfterStop": len(after), "postsAfterStop": len(posts),
                                        "requestsAfterStopSample": after[:10], "ranBait": ran[:1]}

    # -- case 3 ------------------------------------------------------------------------------------------

    def case_no_trader_left(self, env: IsolatedEnvironment, last: subprocess.Popen,
                            other: subprocess.Popen) -> None:
        """The only trader, tracking a resting entry, is killed: the guardian cancels the entry."""
        self.trader_may_exit(True)
        other.send_signal(signal.SIGTERM)
        self.expect("the standby stops cleanly on SIGTERM", 0, other.wait(timeout=30))
        version, bid = probes.version(self.run_id), env.best_bid("ETHUSDT")
        resting = env.control.place_order("ETHUSDT", "Buy", "0.10", order_type="Limit",
                                          price=str((bid * Decimal("0.97")).quantize(Decimal("0.01"))))
        # Adopted, and the plan that adopted it done: no recovery step may keep the worker busy at the kill.
        self.wait_for("the last trader tracks the resting entry order, safe mode off",
                      lambda: resting["orderId"] in probes.open_order_ids(self.run_id)
                      and probes.safe_mode_off_after(self.run_id, version), timeout=45,
                      expected=resting["orderId"], actual=lambda: {"orders": sorted(probes.open_order_ids(
                          self.run_id)), "state": probes.state_summary(self.run_id)})
        account = (self.beat_of(last).get("lease") or {}).get("account")
        crit_before = len(probes.alerts(self.run_id, "CRIT"))
        self.progress("case 3: SIGKILL the only trader")
        os.kill(last.pid, signal.SIGKILL)
        self.expect("the last trader was killed by SIGKILL", -signal.SIGKILL, last.wait(timeout=30))
        killed_ms = int(time.time() * 1000)
        bound_s = LEASE_TTL_S + DEADMAN_AFTER_S + SWEEP_S + CANCEL_SLACK_S
        self.wait_for(f"the guardian cancels the resting entry (within {bound_s:g} s of the kill)",
                      lambda: resting["orderId"] not in {o["orderId"] for o in env.exchange()["orders"]},
                      timeout=bound_s, interval=0.1, expected="cancelled",
                      actual=lambda: {"orders": env.exchange()["orders"], "state": probes.state_summary(self.run_id)})
        self.judge_guardian(env, resting["orderId"], account=account, killed_ms=killed_ms)
        self.wait_for("a CRIT DEADMAN_TRIGGERED alert says no trader holds the lease",
                      lambda: probes.alerts(self.run_id, "CRIT")[crit_before:].count(("CRIT", "DEADMAN_TRIGGERED")),
                      timeout=10, expected=("CRIT", "DEADMAN_TRIGGERED"),
                      actual=lambda: probes.alerts(self.run_id, "CRIT"))

    def judge_guardian(self, env: IsolatedEnvironment, order_id: str, *, account: str | None,
                       killed_ms: int) -> None:
        cancels = [r for r in self.journal(env) if r.get("type") == "order" and r.get("orderId") == order_id
                   and r.get("status") == "Cancelled"]
        self.expect("the entry was cancelled through the API (the guardian), once", ["api"],
                    [r.get("origin") for r in cancels], fatal=False)
        lapsed_ms = self._lease_lapsed_ms(account)
        self.expect("the lease's last value in Redis says when it lapsed", True, lapsed_ms is not None,
                    fatal=False)
        cancelled_ms = int(cancels[0]["ts"]) if cancels else None
        if lapsed_ms is not None and cancelled_ms is not None:
            after = (cancelled_ms - lapsed_ms) / 1000
            self.metrics["guardian"] = {"killToCancelMs": cancelled_ms - killed_ms,
                                        "lapseToCancelMs": cancelled_ms - lapsed_ms}
            self.expect("cancelled within deadman.after_s plus one sweep period of the lease lapsing",
                        f"<= {DEADMAN_AFTER_S + SWEEP_S + CANCEL_SLACK_S:g} s", f"{after:.2f} s",
                        ok=after <= DEADMAN_AFTER_S + SWEEP_S + CANCEL_SLACK_S, fatal=False)
        self.wait_for("the guardian put safe mode on", lambda: probes.state(self.run_id).safe_mode, timeout=10,
                      expected={"safeMode": True}, actual=lambda: probes.state_summary(self.run_id))

    def _lease_lapsed_ms(self, account: str | None) -> int | None:
        """When the last lease value written for ``account`` ran out (epoch ms), from ``scalper:lease:*:last``."""
        if not account:
            return None
        try:
            raw = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).get(f"scalper:lease:{account}:last")
            value = json.loads(raw) if raw else None
        except (redis.RedisError, ValueError):
            return None
        if not isinstance(value, dict):
            return None
        return int((float(value.get("renewedAt", 0)) + float(value.get("ttlS", 0))) * 1000)

    def _wire_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for request in self.wire.seen():
            counts[request.owner or "?"] += 1
        return dict(counts)

