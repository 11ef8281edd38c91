"""Real trader processes over bad files: each starts, stays up, reports the failure and reaches safe mode.

``manage.py run_trader --mode SIM`` as the product runs it, on the embedded
defaults (SQLite, a private redis-server), against the simulator, with the real
FailoverManager services; no Celery worker runs, so safe mode stays on and the
file's fate can be read at leisure. The in-process tests of ``test_bad_files``
cover every case; these cover the ones the issue saw crash-loop the product,
one trader process per case, all at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from failover.tests.domain.bad_files import CONFIG, CONFIG_CASES, PROCESS_STATE_CASES, STATE, BadFile, still_there
from scalper_site.embedded_redis import EmbeddedRedis
from scalper_site.testkit import BASE_DIR, start_process, stop_process, wait_until
from trading.control import heartbeat_key
from trading.engine.eventlog import read_events
from trading.simexchange.server import SimServer

pytestmark = pytest.mark.slow


def _pick(cases: tuple[BadFile, ...], *names: str) -> dict[str, BadFile]:
    found = {case.name: case for case in cases if case.name in names}
    assert set(found) == set(names)
    return found


STATE_CASES = _pick(PROCESS_STATE_CASES, "pid_99999999999", "int_5000_digits", "deep_nesting_100k", "directory",
                    "symlink_loop")
CONFIG_PROCESS_CASES = _pick(CONFIG_CASES, "int_5000_digits", "deep_nesting_100k", "directory", "symlink_loop")


class Stack:
    """The shared parts: a migrated SQLite database and a redis-server under one data folder; a simulator per trader.

    Each trader trades an account of its own (its own simulator): traders on one account share its lease, and all
    but one would wait as standbys.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.redis = EmbeddedRedis(self.data)
        self.sims: list[SimServer] = []

    def start(self) -> Stack:
        self.url = self.redis.start()
        result = subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=self.env("migrate"),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return self

    def env(self, run_id: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SCALPER_SQLITE_PATH"}}
        return {**env, "DJANGO_SETTINGS_MODULE": "scalper_site.settings", "SCALPER_DATA_DIR": str(self.data),
                "REDIS_URL": self.url, "CELERY_QUEUE": run_id, "PYTHONUNBUFFERED": "1"}

    def trader(self, run_id: str, data_dir: Path) -> subprocess.Popen:
        sim = SimServer()
        self.sims.append(sim)
        sim.start()
        argv = [sys.executable, "manage.py", "run_trader", "--mode", "SIM", "--symbols", "BTCUSDT",
                "--sim-url", sim.base_url, "--run-id", run_id, "--data-dir", str(data_dir)]
        return start_process(argv, env=self.env(run_id), log=self.root / f"{run_id}.log")

    def beat(self, run_id: str) -> dict | None:
        raw = redis.Redis.from_url(self.url).get(heartbeat_key(run_id))
        return None if raw is None else json.loads(raw)

    def recorded_failures(self, run_id: str) -> list[str]:
        """What the FailoverManager recorded for ``run_id`` (its database, read directly)."""
        with sqlite3.connect(self.data / "db.sqlite3", timeout=30) as db:
            rows = db.execute("SELECT type FROM failover_failureeventrecord WHERE run_id = ?", (run_id,))
            return [row[0] for row in rows]

    def stop(self) -> None:
        for sim in self.sims:
            sim.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = Stack(tmp_path_factory.mktemp("stack"))
    try:
        yield built.start()
    finally:
        built.stop()


def _cases(stack: Stack) -> dict[str, tuple[str, Path, Path]]:
    """Plant every case in its own data folder; return run id -> (failure expected, data folder, bad path)."""
    planted = {}
    for kind, cases, relative, failure, document in (
        ("state", STATE_CASES, "system/process_state.json", "DATA_CORRUPTION", STATE),
        ("config", CONFIG_PROCESS_CASES, "config/config.json", "CONFIG_INVALID", CONFIG),
    ):
        for name, case in cases.items():
            run_id = f"{kind}-{name}".replace("_", "-")
            folder = stack.root / "runs" / run_id
            case.plant(folder / relative, document)
            planted[run_id] = (failure, folder, folder / relative)
    return planted


def test_a_trader_process_over_each_bad_file_starts_stays_up_and_reaches_safe_mode(stack):
    planted = _cases(stack)
    traders = {run_id: stack.trader(run_id, folder) for run_id, (_, folder, _) in planted.items()}
    try:
        for run_id, (failure, folder, bad) in planted.items():
            log = stack.root / f"{run_id}.log"

            def up_and_safe(run_id: str = run_id, log: Path = log) -> bool:
                assert traders[run_id].poll() is None, f"{run_id} exited:\n{log.read_text()[-3000:]}"
                beat = stack.beat(run_id)
                return beat is not None and beat["phase"] == "RUNNING" and beat["safeMode"] is True

            wait_until(up_and_safe, timeout=120, what=f"{run_id} running in safe mode (log {log})")
            first = stack.beat(run_id)
            wait_until(lambda run_id=run_id, first=first: stack.beat(run_id)["at"] >= first["at"] + 2000,
                       timeout=30, what=f"{run_id} still beating two seconds later")
            assert traders[run_id].poll() is None
            events = [e["type"] for e in read_events(folder / "events" / "_SYSTEM.jsonl") if e["event"] == "FAILURE"]
            assert failure in events, (run_id, events)
            wait_until(lambda run_id=run_id, failure=failure: failure in stack.recorded_failures(run_id),
                       timeout=30, what=f"{failure} recorded by the FailoverManager for {run_id}")
            if failure == "DATA_CORRUPTION":
                assert len(list(bad.parent.glob("process_state.json.corrupt-*"))) == 1  # moved aside, kept
                assert json.loads(bad.read_text())["pid"] == traders[run_id].pid  # a fresh black box
            else:
                assert still_there(bad)  # left for the operator
                beat = stack.beat(run_id)
                assert beat["config"]["valid"] is False and beat["config"]["errors"], beat["config"]
    finally:
        codes = {run_id: stop_process(process) for run_id, process in traders.items()}
    assert codes == dict.fromkeys(planted, 0)  # each stopped cleanly on SIGTERM
