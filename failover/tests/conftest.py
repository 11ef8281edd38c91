"""Fixtures of the FailoverManager tests: a live simulator, a registered environment, failure events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from failover import services
from failover.domain.types import FailureEvent
from failover.models import RecoveryPlanRecord, RecoveryStepRecord
from trading.simexchange.control import SimControl
from trading.simexchange.server import SimServer

# A small two-symbol book, as the simulator's own tests use.
BTC_BIDS = [("50000.0", "0.5"), ("49999.0", "1.0"), ("49990.0", "5.0")]
BTC_ASKS = [("50001.0", "0.5"), ("50002.0", "1.0"), ("50010.0", "5.0")]
ETH_BIDS = [("3000.00", "10"), ("2999.00", "20")]
ETH_ASKS = [("3001.00", "10"), ("3002.00", "20")]
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture(autouse=True)
def _unit_test_plumbing(request: pytest.FixtureRequest, settings: Any) -> Iterator[None]:
    """Eager Celery and the in-memory channel layer for the fast group, whatever settings module loaded.

    ``scalper_site/__init__`` imports the Celery app, which sets DJANGO_SETTINGS_MODULE
    to the production module before pytest-django reads pytest.ini; until that is
    fixed the fast group would otherwise try a real broker and channel layer.
    """
    if request.node.get_closest_marker("services"):
        yield
        return
    from channels.layers import channel_layers

    from scalper_site.celery import app

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    saved = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved
        channel_layers.backends.clear()


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = SimServer().start()  # port 0: the OS picks a free loopback port
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ctl(sim: SimServer) -> SimControl:
    control = SimControl(sim.base_url, token=sim.token)
    control.set_book("BTCUSDT", BTC_BIDS, BTC_ASKS)
    control.set_book("ETHUSDT", ETH_BIDS, ETH_ASKS)
    control.trade("BTCUSDT", "50000.5", "0.001")
    control.trade("ETHUSDT", "3000.50", "0.01")
    return control


class Env:
    """One environment (``run_id``) registered against the simulator, with its own data folder."""

    def __init__(self, run_id: str, folder: Path, sim: SimServer) -> None:
        self.run_id = run_id
        self.folder = folder
        self.sim = sim

    def context(self) -> dict[str, Any]:
        return {"mode": "SIM", "exchange": {"kind": "sim", "baseUrl": self.sim.base_url, "bybitEnv": "mainnet"},
                "dataDir": str(self.folder), "symbols": SYMBOLS}

    def report(self, failure_type: str, **details: Any) -> services.ManagedFailoverState:
        return services.failure_report(event=event(failure_type, **details), run_id=self.run_id)

    def plan(self) -> RecoveryPlanRecord:
        state = services.failover_state_get(run_id=self.run_id)
        assert state.current_plan is not None
        return RecoveryPlanRecord.objects.get(plan_id=state.current_plan.plan_id)

    def steps(self) -> list[RecoveryStepRecord]:
        return list(RecoveryStepRecord.objects.filter(plan=self.plan()).order_by("position"))

    def step(self, step_type: str) -> RecoveryStepRecord:
        return [s for s in self.steps() if s.type == step_type][-1]

    def link_ids(self) -> int:
        """How many orders with an orderLinkId the simulator ever accepted (it never forgets them)."""
        return self.sim.call(lambda s: len(s.engine.link_ids))


def event(failure_type: str, **details: Any) -> FailureEvent:
    return FailureEvent(timestamp=datetime.now(UTC), type=failure_type, source="EXECUTION_ENGINE",
                        message=f"test {failure_type}", details=details)


@pytest.fixture
def env(sim: SimServer, ctl: SimControl, tmp_path: Path) -> Env:
    environment = Env(f"t-{uuid.uuid4().hex[:8]}", tmp_path / "data", sim)
    services.environment_register(run_id=environment.run_id, context=environment.context())
    return environment


@pytest.fixture
def captured_chains(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], None]]:
    """Hold chains instead of running them (eager mode would run a whole plan at commit)."""
    from failover.recovery import runner

    held: list[Callable[[], None]] = []
    real = runner._send_chain
    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: held.append(
        lambda: real(plan_pk, token, pks)))
    return held
