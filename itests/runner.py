"""The IntegrationRunner: run scenarios in this process, write reports, mirror them in the database.

``run_scenario`` is what the CLI and the tests call; ``execute`` is the shared
core that a queued run's Celery ``run`` task calls with its already-claimed
record. Whatever happens inside a scenario, its environment is torn down and
its report written: a run always ends DONE with ``success`` true or false.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import close_old_connections

from failover.domain.clock import SystemClock
from itests import services
from itests.environment import runs_root
from itests.models import IntegrationRunRecord
from itests.scenario import IntegrationResult, IntegrationScenario
from itests.scenarios import SCENARIOS, scenario_class
from trading.domain.config import ConfigEngine

logger = logging.getLogger(__name__)
ProgressPrinter = Callable[[IntegrationRunRecord | None, str], None]
HEARTBEAT_EVERY_S = 5.0


class _Heartbeat:
    """Touch the run's ``heartbeat_at`` while it runs, so the sweeper can tell a live run from an abandoned one."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"itest-heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(HEARTBEAT_EVERY_S):
                services.run_heartbeat(run_id=self.run_id)
        finally:
            close_old_connections()


def config_engine_for(run_id: str) -> ConfigEngine:
    """Return the config engine of the run's data folder, what a scenario's ``setup_env`` takes."""
    return ConfigEngine(runs_root() / run_id / "data" / "config" / "config.json", SystemClock())


def execute(record: IntegrationRunRecord, *, options: dict[str, Any] | None = None,
            printer: ProgressPrinter | None = None) -> dict[str, Any]:
    """Set up, run and tear down the record's scenario; finish the record; return the IntegrationRunReport."""
    cls = scenario_class(record.scenario_id)

    def progress(step: str) -> None:
        services.run_progress(run_id=record.run_id, step=step)
        if printer is not None:
            printer(record, step)

    scenario = cls(run_id=record.run_id, progress=progress,
                   on_environment=lambda d: services.run_environment(run_id=record.run_id, description=d),
                   **(options or {}))
    with _Heartbeat(record.run_id):
        started = datetime.now(UTC)
        try:
            progress("setup")
            scenario.setup_env(config_engine_for(record.run_id))
            progress("run")
            result = scenario.run()
        except Exception as exc:  # setup itself failed: still a report, never a stuck run
            result = _broken(cls, started, exc)
        finally:
            progress("teardown")
            try:
                scenario.teardown()
            except Exception:  # the sweeper can still stop recorded pids; the report must be written
                logger.exception("teardown of %s failed", record.run_id)
    report = services.run_finish(run_id=record.run_id, result=result.to_dict())
    if printer is not None:
        printer(services.integration_run_get(run_id=record.run_id), "done")
    return report


def _broken(cls: type[IntegrationScenario], started: datetime, exc: BaseException) -> IntegrationResult:
    message = f"{type(exc).__name__}: {exc}"
    error = {"expectation": "the environment is set up", "expected": "setup succeeds", "actual": message,
             "message": message}
    return IntegrationResult(cls.id, started, datetime.now(UTC), False, [error])


class IntegrationRunner:
    """Run scenarios in this process (the CLI and the test suite); reports as the spec shapes them.

    The spec's ``listScenarios`` is ``services.scenarios_list``: the dashboard lists them without a runner.
    """

    def __init__(self, *, requested_by: str = "cli", options: dict[str, Any] | None = None,
                 printer: ProgressPrinter | None = None) -> None:
        self.requested_by = requested_by
        self.options = options or {}
        self.printer = printer

    def run_scenario(self, scenario_id: str, *, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one scenario now; return its IntegrationRunReport (raises UnknownScenario)."""
        record = services.run_record_start(scenario_id=scenario_id, user=self.requested_by)
        return execute(record, options={**self.options, **(options or {})}, printer=self.printer)

    def run_all(self) -> list[dict[str, Any]]:
        """Run every scenario, one after the other; return their reports."""
        return [self.run_scenario(cls.id) for cls in SCENARIOS]
