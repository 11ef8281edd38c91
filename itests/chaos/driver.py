"""What a chaos run does to the product, drawn from one seeded random generator so a run can be replayed.

``ChaosDriver`` kills the trader (and sometimes the worker) at random moments or
at named crash points, restarts them, changes the exchange behind the trader's
back, raises storms of overlapping simulator faults, and takes checkpoints
(local state compared with the exchange's until they agree, within a bound).
Every act goes to the run's ``Recorder`` timeline before or as it happens, so
the verdict can line the exchange's record up against it.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, NamedTuple

import psutil
from django.db import connection

from itests import probes
from itests.chaos.history import Recorder, now_ms
from itests.environment import IsolatedEnvironment
from trading.control import send_command
from trading.simexchange.control import SimControlError

# The trader's named crash points (``arm_fault`` with ``crash_at``), and the worker's.
TRADER_CRASH_POINTS = ("before_send", "after_send", "after_fill", "mid_state_write")
SEND_POINTS = ("before_send", "after_send", "after_fill")
WORKER_CRASH_STEPS = ("RESYNC_ORDERS", "RESYNC_POSITIONS")
LOT = {"BTCUSDT": Decimal("0.001"), "ETHUSDT": Decimal("0.01")}
TICK = {"BTCUSDT": Decimal("0.1"), "ETHUSDT": Decimal("0.01")}


class Started(NamedTuple):
    """A trader process just started: when, by the wall clock (ms) and by ``time.monotonic()``."""

    process: subprocess.Popen
    name: str
    at_ms: int
    monotonic: float


def _database_ports(processes: Iterable[subprocess.Popen], server_port: int) -> set[int]:
    """The local ports of the TCP connections to ``server_port`` held by ``processes`` and their children."""
    ports: set[int] = set()
    for popen in processes:
        if popen.poll() is not None:
            continue
        try:
            root = psutil.Process(popen.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in family:
            try:
                ports.update(c.laddr.port for c in process.net_connections(kind="tcp")
                             if c.raddr and c.raddr.port == server_port)
            except psutil.Error:
                continue  # gone meanwhile
    return ports


def _lots(symbol: str, rng: random.Random, low: int, high: int) -> str:
    return str(LOT.get(symbol, Decimal("0.01")) * rng.randint(low, high))


class ChaosDriver:
    """One run's source of trouble: kills, restarts, faults, behind-the-back changes, checkpoints."""

    def __init__(self, env: IsolatedEnvironment, recorder: Recorder, rng: random.Random, *,
                 run_id: str, check_alive: Callable[[], None] = lambda: None) -> None:
        self.env = env
        self.recorder = recorder
        self.rng = rng
        self.run_id = run_id
        self.check_alive = check_alive
        self.generation = 0
        self.worker_name = "worker"

    # -- kills and restarts ---------------------------------------------------------------

    def kill_trader(self, how: str, *, with_worker: bool, crash_wait_s: float = 15.0) -> dict[str, Any]:
        """SIGKILL the trader now (``how="random"``) or at a named crash point; the worker too if asked."""
        point = None
        if how == "crash_point":
            point = self.rng.choice(TRADER_CRASH_POINTS)
            if point in SEND_POINTS:
                self.make_room()
            how = self._die_at(point, crash_wait_s, with_worker=with_worker)
        if how != "crash_point":
            self.recorder.event("kill", how=how, target="trader", point=point, worker=with_worker)
            self.env.kill_trader(signal.SIGKILL)
        if with_worker:
            self.env.kill_group(self.worker_name, signal.SIGKILL)
        return {"how": how, "point": point}

    def make_room(self) -> None:
        """Close a position behind the trader's back when every symbol holds one, so it has an entry to send."""
        held = [p["symbol"] for p in self.env.exchange()["positions"] if Decimal(p["size"]) > 0]
        if len(held) >= len(self.env.symbols):
            symbol = self.rng.choice(held)
            try:
                result = self.env.control.close_position(symbol)
            except SimControlError as exc:
                result = {"refused": str(exc)}
            self.recorder.event("behind_back", action="close", purpose="room for an entry", result=result)

    def _die_at(self, point: str, wait_s: float, *, with_worker: bool) -> str:
        """Arm a crash point and wait for the trader to reach it; fall back to a plain SIGKILL if it does not."""
        try:
            ack = send_command("arm_fault", run_id=self.run_id, args={"crash_at": point}, wait_s=5)
        except Exception as exc:  # noqa: BLE001 (the trader may be busy recovering: kill it the plain way)
            ack = {"ok": False, "error": str(exc)}
        if not ack.get("ok"):
            self.recorder.event("crash_point_refused", point=point, ack=ack)
            return "random"
        armed = now_ms()
        trader = self.env.trader
        assert trader is not None
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and trader.poll() is None:
            time.sleep(0.05)
        if trader.poll() is None:
            self.recorder.event("crash_point_not_reached", point=point, waitedMs=now_ms() - armed)
            return "random_after_crash_point"
        self.recorder.event("kill", how="crash_point", target="trader", point=point, armedAtMs=armed,
                            exitCode=trader.returncode, worker=with_worker)
        return "crash_point"

    def kill_worker_in_step(self) -> str:
        """Start a worker that dies in the middle of a recovery step (its crash point); return the step."""
        step = self.rng.choice(WORKER_CRASH_STEPS)
        self.env.kill_group(self.worker_name, signal.SIGKILL)
        self.generation += 1
        self.worker_name = f"worker-{self.generation}"
        self.env.start_worker(self.worker_name, extra_env={"SCALPER_CRASH_AT": f"recovery_step:{step}",
                                                           "SCALPER_ALLOW_FAULT_HOOKS": "1"})
        self.recorder.event("worker_crash_point", step=step, worker=self.worker_name)
        return step

    def ensure_worker(self) -> None:
        """Start a healthy worker if the current one is gone (killed, or died at its crash point)."""
        process = self.env.processes.get(self.worker_name)
        if process is not None and process.poll() is None:
            return
        gone = {"previous": self.worker_name, "exitCode": None if process is None else process.returncode}
        self.generation += 1
        self.worker_name = f"worker-{self.generation}"
        self.env.start_worker(self.worker_name)
        self.recorder.event("restart", target="worker", name=self.worker_name, **gone)

    def restart_trader(self, *, running_within_s: float = 60.0) -> int | None:
        """Start a new trader on the same data folder; wait for its heartbeat to say RUNNING; return the ms."""
        return self.await_running(self.start_trader(), running_within_s=running_within_s)

    def start_trader(self) -> Started:
        """Start a new trader on the same data folder and return at once (``await_running`` waits for it)."""
        self.generation += 1
        started, at = time.monotonic(), now_ms()
        process = self.env.start_trader(f"trader-{self.generation}", fault_hooks=True)
        return Started(process, f"trader-{self.generation}", at, started)

    def await_running(self, started: Started, *, running_within_s: float = 60.0,
                      counted_from: float | None = None) -> int | None:
        """Wait for ``started``'s heartbeat to say RUNNING; record the restart and return the ms it took.

        ``counted_from`` (a ``time.monotonic()``) measures from a later moment than the start: a trader started
        while the exchange was faulted is judged from the all-clear: it may not run before the exchange answers.
        """
        process = started.process
        since = max(started.monotonic, counted_from if counted_from is not None else started.monotonic)
        running_ms, running_at = None, None
        deadline = since + running_within_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            beat = probes.heartbeat(self.run_id)
            if beat and int(beat.get("pid", 0)) == process.pid and beat.get("phase") == "RUNNING":
                running_at = time.monotonic()
                running_ms = int((running_at - since) * 1000)
                break
            time.sleep(0.05)
        counted = {} if since == started.monotonic else {
            "countedFromAllClear": True,  # and from its start, through the storm it started into:
            "startToRunningMs": None if running_at is None else int((running_at - started.monotonic) * 1000)}
        self.recorder.event("restart", target="trader", name=started.name, pid=process.pid,
                            startedAtMs=started.at_ms, runningAfterMs=running_ms, exitCode=process.poll(), **counted)
        return running_ms

    # -- the exchange, behind the trader's back ---------------------------------------------

    def behind_the_back(self, *, allow_open: bool) -> dict[str, Any] | None:
        """Change the exchange as another client would: place, cancel or fill an order; close or open a position."""
        state = self.env.exchange()
        orders, positions = state["orders"], [p for p in state["positions"] if Decimal(p["size"]) > 0]
        choices: list[str] = ["place"]
        if orders:
            choices += ["cancel", "fill"]
        if positions:
            choices.append("close")
        flat = [s for s in self.env.symbols if s not in {p["symbol"] for p in positions}]
        if allow_open and flat:
            choices.append("open")
        action = self.rng.choice(choices)
        try:
            result = self._act(action, orders, positions, flat)
        except (SimControlError, OSError, ValueError) as exc:  # refused by the exchange (margin, lot): recorded
            result = {"refused": str(exc)}
        return self.recorder.event("behind_back", action=action, result=result)

    def _act(self, action: str, orders: list[dict[str, Any]], positions: list[dict[str, Any]],
             flat: list[str]) -> dict[str, Any]:
        rng = self.rng
        if action == "cancel":
            order = rng.choice(orders)
            return {"orderId": self.env.control.cancel_order(order["symbol"], order_id=order["orderId"])}
        if action == "fill":
            order = rng.choice(orders)
            return self.env.control.fill_order(order["symbol"], order_id=order["orderId"])
        if action == "close":
            return self.env.control.close_position(rng.choice(positions)["symbol"])
        if action == "open":
            symbol = rng.choice(flat)
            return self.env.control.open_position(symbol, rng.choice(("Buy", "Sell")), _lots(symbol, rng, 1, 5))
        symbol = rng.choice(self.env.symbols)
        side = rng.choice(("Buy", "Sell"))
        best = Decimal(self.env.exchange()["lastPrice"][symbol])  # /sim is not faulted; the public API may be
        away = Decimal(1) + (Decimal("-0.02") if side == "Buy" else Decimal("0.02"))  # rests, does not cross
        price = (best * away / TICK[symbol]).quantize(Decimal(1)) * TICK[symbol]
        return self.env.control.place_order(symbol, side, _lots(symbol, rng, 1, 5), order_type="Limit",
                                            price=str(price))

    # -- the database -------------------------------------------------------------------------

    def drop_database_sessions(self) -> int | None:
        """Terminate the run's processes' database sessions, as a PostgreSQL restart would; return how many.

        Only the sessions of this run's processes (and their children), found by their TCP ports, so a product
        sharing the database is left alone. None when there is nothing to drop this way (SQLite, a Unix socket).
        """
        if connection.vendor != "postgresql":
            self.recorder.event("db_drop_refused", why=f"the database is {connection.vendor}")
            return None
        ports = sorted(_database_ports(self.env.processes.values(), int(connection.settings_dict["PORT"] or 5432)))
        if not ports:
            self.recorder.event("db_drop_refused", why="no TCP session of the run's processes")
            return None
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND client_port = ANY(%s) AND pid <> pg_backend_pid()",
                           [ports])
            dropped = int(cursor.fetchone()[0])
        self.recorder.event("db_drop", sessions=dropped, ports=ports)
        return dropped

    # -- faults -------------------------------------------------------------------------------

    def fault(self, kind: str, *, duration_s: float | None, count: int | None = None, **params: Any) -> str | None:
        """Inject one simulator fault and record it (a refused one is recorded as refused)."""
        try:
            fault_id = self.env.control.inject(kind, duration_s=duration_s, count=count, **params)
        except SimControlError as exc:
            self.recorder.event("fault_refused", faultKind=kind, params=params, error=str(exc))
            return None
        self.recorder.event("fault", id=fault_id, faultKind=kind, params=params, durationS=duration_s, count=count)
        return fault_id

    def clear_faults(self) -> None:
        cleared = self.env.control.clear()
        self.recorder.event("fault_clear", ids=cleared)

    # -- checkpoints ----------------------------------------------------------------------------

    def side_by_side(self) -> dict[str, Any]:
        exchange = self.env.exchange()
        return {
            "local": {"positions": probes.open_positions(self.run_id), "orders": sorted(
                probes.open_order_ids(self.run_id))},
            "exchange": {"positions": probes.exchange_positions(exchange),
                         "orders": sorted(o["orderId"] for o in exchange["orders"])},
        }

    def checkpoint(self, phase: str, *, within_s: float = 15.0) -> bool:
        """Compare local positions and open orders with the exchange's until they agree, within ``within_s``."""
        deadline = time.monotonic() + within_s
        while True:
            self.check_alive()
            sides = self.side_by_side()
            agreed = sides["local"] == sides["exchange"]
            if agreed or time.monotonic() >= deadline:
                self.recorder.event("checkpoint", phase=phase, agreed=agreed, **probes.jsonable(sides))
                return agreed
            time.sleep(0.25)

    def wait_safe_mode_off(self, *, within_s: float) -> int | None:
        """Wait until the failover state says safe mode OFF; return how long it took (ms), None if it did not."""
        started = time.monotonic()
        while time.monotonic() - started < within_s:
            self.check_alive()
            if not probes.state(self.run_id).safe_mode:
                return int((time.monotonic() - started) * 1000)
            time.sleep(0.1)
        return None
