"""The scenario contract: a spec card, an isolated environment, checked expectations, an IntegrationResult.

A scenario subclass fills in its card (``id``, ``name``, ``description``,
``prerequisite``, ``action``, ``expected_events``, ``pass_criteria``) and writes
``scenario`` (the body). The base class owns the environment, the time limit,
progress, metrics and the translation of failed expectations into the result's
``errors``, each naming the expectation with its expected and actual values.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from itests import probes
from itests.environment import IsolatedEnvironment
from trading.domain.config import ConfigEngine

ProgressFn = Callable[[str], None]


def iso(at: datetime) -> str:
    """Return the spec's timestamp form: ``2025-11-18T15:00:00.000Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class ExpectationFailed(AssertionError):
    """An expected outcome did not happen: ``expectation`` names it, with what was expected and what was seen."""

    def __init__(self, expectation: str, expected: Any, actual: Any) -> None:
        super().__init__(f"{expectation}: expected {expected!r}, got {actual!r}")
        self.expectation, self.expected, self.actual = expectation, expected, actual


@dataclass
class IntegrationResult:
    """The spec's IntegrationResult; ``checks`` lists every expectation evaluated, passed or not."""

    scenario_id: str
    started_at: datetime
    finished_at: datetime
    success: bool
    errors: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenarioId": self.scenario_id,
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "success": self.success,
            "errors": self.errors,
            "metrics": self.metrics,
            "checks": self.checks,
        }


class IntegrationScenario(abc.ABC):
    """One end-to-end scenario; subclasses set the card and implement ``scenario``."""

    id: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str]
    prerequisite: ClassVar[str] = ""
    action: ClassVar[str] = ""
    expected_events: ClassVar[tuple[str, ...]] = ()
    pass_criteria: ClassVar[tuple[str, ...]] = ()
    time_limit_s: ClassVar[float] = 90.0
    fault_hooks: ClassVar[bool] = False

    def __init__(self, *, run_id: str, progress: ProgressFn | None = None,
                 on_environment: Callable[[dict[str, Any]], None] | None = None, **options: Any) -> None:
        self.run_id = run_id
        self.options = options
        self._progress = progress or (lambda step: None)
        self._on_environment = on_environment
        self.env: IsolatedEnvironment | None = None
        self.checks: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        self.health_errors = 0
        self.health_error_entries: list[dict[str, Any]] = []
        self.recovery_ms: int | None = None
        self._deadline = 0.0
        self._refused_in_safe_mode: dict[int, int] = {}  # per trader pid: its counter only grows

    @classmethod
    def meta(cls) -> dict[str, str]:
        """Return the IntegrationScenarioMeta of this scenario."""
        return {"id": cls.id, "name": cls.name, "description": cls.description}

    # -- the three phases ---------------------------------------------------------

    def setup_env(self, config_engine: ConfigEngine) -> None:
        """Create the run's environment; keep the config engine a scenario checks planted files against.

        The spec's ``setupEnv`` also names a replay engine, a backtest engine and the failover manager: no
        scenario replays or backtests, and the failover state is read through ``probes``.
        """
        self.config_engine = config_engine
        self.env = IsolatedEnvironment(run_id=self.run_id, on_change=self._on_environment,
                                       speed=float(self.options.get("speed", 20.0)))
        self.prepare(self.env)

    def prepare(self, env: IsolatedEnvironment) -> None:  # noqa: B027 (optional hook: most scenarios need none)
        """Write what the run needs before anything starts (config files); default: nothing."""

    def run(self) -> IntegrationResult:
        """Run the scenario within its time limit; every outcome ends up in the result, never as an exception."""
        started = datetime.now(UTC)
        self._deadline = time.monotonic() + self.time_limit()
        errors: list[dict[str, Any]] = []
        try:
            assert self.env is not None, "setup_env was not called"
            self.scenario(self.env)
        except ExpectationFailed as failed:
            errors.append({"expectation": failed.expectation, "expected": probes.jsonable(failed.expected),
                           "actual": probes.jsonable(failed.actual), "message": str(failed)})
        except Exception as exc:  # a broken environment is a failed run with the cause in its report
            errors.append({"expectation": "the scenario runs to its end", "expected": "no exception",
                           "actual": f"{type(exc).__name__}: {exc}", "message": f"{type(exc).__name__}: {exc}"})
        errors += [
            {k: c[k] for k in ("expectation", "expected", "actual")} | {"message": c["message"]}
            for c in self.checks if not c["passed"] and c["message"] not in {e["message"] for e in errors}
        ]
        metrics = self._collect_metrics()
        return IntegrationResult(self.id, started, datetime.now(UTC), not errors, errors, metrics, self.checks)

    def teardown(self) -> None:
        """Stop everything the environment started."""
        if self.env is not None:
            self.env.stop()

    def time_limit(self) -> float:
        return float(self.time_limit_s)

    # -- for scenario bodies --------------------------------------------------------

    @abc.abstractmethod
    def scenario(self, env: IsolatedEnvironment) -> None:
        """The scenario's body: act, then record every expectation with ``expect``/``wait_for``."""

    def boot(self, env: IsolatedEnvironment, *, fault_hooks: bool | None = None) -> None:
        """Start the simulator, the worker and a trader; wait until the first start has converged (safe mode OFF)."""
        self.progress("start the simulator and the run's Celery worker")
        env.start(timeout=max(5.0, min(60.0, self.remaining())))
        self.progress("start the trader")
        env.start_trader(fault_hooks=self.fault_hooks if fault_hooks is None else fault_hooks)
        self.wait_for(
            "the first start converges with the exchange and leaves safe mode",
            lambda: probes.safe_mode_off_after(self.run_id, -1),
            timeout=60,
            expected={"safeMode": False},
            actual=lambda: probes.state_summary(self.run_id),
        )
        self.wait_for(
            "the trader's public and private streams are connected",
            lambda: probes.streams_connected(self.beat()),
            timeout=20,
            expected={"public": True, "private": True},
            actual=lambda: (self.beat() or {}).get("streams"),
        )
        self.progress("trader running, safe mode OFF")

    def progress(self, step: str) -> None:
        self._progress(step)

    def remaining(self) -> float:
        return self._deadline - time.monotonic()

    def expect(self, expectation: str, expected: Any, actual: Any, ok: bool | None = None, *,
               fatal: bool = True) -> bool:
        """Record one expectation; raise ``ExpectationFailed`` when it fails and ``fatal``."""
        passed = bool(expected == actual) if ok is None else bool(ok)
        message = f"{expectation}: expected {expected!r}, got {actual!r}"
        self.checks.append({"expectation": expectation, "expected": probes.jsonable(expected),
                            "actual": probes.jsonable(actual), "passed": passed, "message": message})
        if not passed and fatal:
            raise ExpectationFailed(expectation, expected, actual)
        return passed

    def wait_for(self, expectation: str, predicate: Callable[[], Any], *, timeout: float, expected: Any,
                 actual: Callable[[], Any], interval: float = 0.2) -> Any:
        """Poll ``predicate`` until truthy, within ``timeout`` and the scenario's time limit; else fail it."""
        deadline = time.monotonic() + max(0.0, min(timeout, self.remaining()))
        while True:
            self._check_trader()
            self.beat()
            value = predicate()
            if value:
                self.expect(expectation, expected, probes.jsonable(actual()), ok=True)
                return value
            if time.monotonic() >= deadline:
                why = "time limit" if self.remaining() <= 0 else f"{timeout:.0f}s"
                self.expect(f"{expectation} (within {why})", expected, actual(), ok=False)
            time.sleep(interval)

    def _check_trader(self) -> None:
        env = self.env
        if env is not None and env.trader is not None and not getattr(self, "_trader_may_exit", False):
            code = env.trader.poll()
            if code is not None:
                raise ExpectationFailed("the trader process keeps running", "running",
                                        f"exited with {code}: {env.log_text(env.trader_name)[-1500:]}")

    def trader_may_exit(self, allowed: bool) -> None:
        """Say that the trader stopping is part of the scenario (a kill, a graceful stop)."""
        self._trader_may_exit = allowed

    def wait_safe_mode_off(self, expectation: str, *, after_version: int, since: datetime | None = None,
                           timeout: float = 60.0) -> Any:
        """Wait for safe mode OFF in a state newer than ``after_version``; measure recovery from ``since``."""
        began = datetime.now(UTC)
        state = self.wait_for(
            expectation,
            lambda: probes.safe_mode_off_after(self.run_id, after_version),
            timeout=timeout,
            expected={"safeMode": False},
            actual=lambda: probes.state_summary(self.run_id),
        )
        self.recovery_ms = int((datetime.now(UTC) - (since or began)).total_seconds() * 1000)
        return state

    def hold(self, expectation: str, predicate: Callable[[], Any], *, seconds: float, expected: Any,
             actual: Callable[[], Any]) -> None:
        """Check that ``predicate`` stays true for ``seconds`` (polled); fail at the first moment it is not."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not predicate():
                self.expect(expectation, expected, actual(), ok=False)
            time.sleep(0.2)
        self.expect(expectation, expected, actual(), ok=True)

    def wait_for_failure(self, kind: str, *, timeout: float = 30.0, expectation: str = "") -> Any:
        """Wait until a ``kind`` failure is reported for this run; return its first record."""
        return self.wait_for(expectation or f"{kind} is reported", lambda: probes.failure(self.run_id, kind),
                             timeout=timeout, expected=kind, actual=lambda: probes.failures(self.run_id))

    def wait_for_crit_alert(self, kind: str, *, timeout: float = 15.0) -> None:
        """Wait until a CRIT alert of ``kind`` is recorded for this run."""
        self.wait_for(f"a CRIT {kind} alert", lambda: ("CRIT", kind) in probes.alerts(self.run_id, "CRIT"),
                      timeout=timeout, expected=("CRIT", kind), actual=lambda: probes.alerts(self.run_id))

    def trader_saw(self, event: str, *, symbol: str = "_SYSTEM", after_ms: int = 0, **fields: Any) -> list[dict]:
        """Return the run's logged events of kind ``event`` after ``after_ms`` whose fields match ``fields``."""
        assert self.env is not None
        return [e for e in probes.read_events(self.env.data, symbol)
                if e.get("event") == event and e.get("tsMs", 0) >= after_ms
                and all(e.get(k) == v for k, v in fields.items())]

    def beat(self) -> dict[str, Any] | None:
        """Read the trader's heartbeat and keep the safe-mode refusals it has counted."""
        beat = probes.heartbeat(self.run_id)
        if beat is not None:
            refused = int((beat.get("counters") or {}).get("entriesRefused", {}).get("SAFE_MODE_ACTIVE", 0))
            pid = int(beat.get("pid", 0))
            self._refused_in_safe_mode[pid] = max(refused, self._refused_in_safe_mode.get(pid, 0))
        return beat

    def sample_health(self) -> dict[str, Any]:
        """Take a health snapshot (failover health + trader streams); count its ERROR entries."""
        snapshot = probes.health_snapshot(self.run_id)
        errors = {name: entry for name, entry in snapshot.items() if entry.get("status") == "ERROR"}
        self.health_errors += len(errors)
        if errors and len(self.health_error_entries) < 10:  # the report shows what was red, not only how often
            self.health_error_entries.append(probes.jsonable(errors))
        return snapshot

    def _collect_metrics(self) -> dict[str, Any]:
        try:
            base = probes.run_metrics(self.run_id, self.env.data if self.env else None)
        except Exception as exc:  # the database or Redis is what failed; say so in the report
            base = {"metricsError": f"{type(exc).__name__}: {exc}"}
        if self.health_error_entries:
            base["healthErrorEntries"] = self.health_error_entries
        return {**base, "healthErrors": self.health_errors, "recoveryDurationMs": self.recovery_ms,
                "entriesRefusedInSafeMode": sum(self._refused_in_safe_mode.values()), **self.metrics}
