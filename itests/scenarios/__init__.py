"""Every integration scenario of the spec, in its order, then the spec's 3 a.m. night: one module per scenario.

This package is the registry: the services, the runner and the CLI look
scenarios up here by id, and it imports nothing of theirs.
"""

from __future__ import annotations

from itests.scenario import IntegrationScenario
from itests.scenarios.scenario_1_happy_path import HappyPath
from itests.scenarios.scenario_2_private_ws import PrivateWsDisconnect
from itests.scenarios.scenario_3_restart_recovery import ProcessRestartRecovery
from itests.scenarios.scenario_4_config_invalid import ConfigInvalidScenario
from itests.scenarios.scenario_5_slippage_spike import SlippageSpike
from itests.scenarios.scenario_6_panic_close import PanicClose
from itests.scenarios.scenario_a_exchange_outage import SoftExchangeOutage
from itests.scenarios.scenario_b_module_crash import ModuleCrash
from itests.scenarios.scenario_c_clean_restart import CleanRestart
from itests.scenarios.scenario_chaos_kill9 import ChaosKill9
from itests.scenarios.scenario_d_storm import NightStorm
from itests.scenarios.scenario_fault_soak import FaultSoak
from itests.scenarios.scenario_standby_takeover import StandbyTakeover


class UnknownScenario(ValueError):
    """No scenario has this id."""


SCENARIOS: tuple[type[IntegrationScenario], ...] = (
    HappyPath, PrivateWsDisconnect, ProcessRestartRecovery, ConfigInvalidScenario, SlippageSpike, PanicClose,
    SoftExchangeOutage, ModuleCrash, CleanRestart, NightStorm, ChaosKill9, FaultSoak, StandbyTakeover,
)
SCENARIOS_BY_ID: dict[str, type[IntegrationScenario]] = {cls.id: cls for cls in SCENARIOS}


def scenario_class(scenario_id: str) -> type[IntegrationScenario]:
    """Return the scenario class of ``scenario_id``; raise ``UnknownScenario``."""
    try:
        return SCENARIOS_BY_ID[scenario_id]
    except KeyError:
        raise UnknownScenario(f"unknown scenario {scenario_id!r}; known: {', '.join(SCENARIOS_BY_ID)}") from None
