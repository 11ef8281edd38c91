"""The FailoverManager over bad files: RESYNC_CONFIG and READ_PROCESS_STATE finish their plans, never crash.

Same table as the trader's (``failover/tests/domain/bad_files.py``): a bad
``config.json`` keeps CONFIG_INVALID active with the built-in fallback; a bad
``process_state*.json`` is moved aside and the plan goes on from exchange truth.
"""

from __future__ import annotations

import pytest

from failover.models import FailoverStateRecord, PlanStatus
from failover.recovery import records
from failover.tests.conftest import Env
from failover.tests.domain.bad_files import CONFIG, CONFIG_CASES, PROCESS_STATE_CASES, STATE, params, still_there
from trading.domain.config import DEFAULT_CONFIG

pytestmark = pytest.mark.django_db(transaction=True)

PREVIOUS = "process_state.previous.json"


@pytest.mark.parametrize("case", params(CONFIG_CASES))
def test_resync_config_over_a_bad_config_keeps_the_fallback_and_finishes_its_plan(env: Env, case):
    path = records.config_path(env.folder)
    case.plant(path, CONFIG)

    env.report("CONFIG_INVALID")

    step = env.step("RESYNC_CONFIG")
    assert step.status == "DONE" and step.details["valid"] is False and step.details["errors"]
    row = FailoverStateRecord.objects.get(run_id=env.run_id)
    assert row.config_fallback is True and "CONFIG_INVALID" in row.active_failures and row.safe_mode is True
    assert env.plan().status == PlanStatus.DONE
    assert records.environment_config(env.folder) is DEFAULT_CONFIG  # health and plans read the fallback too
    assert still_there(path)


@pytest.mark.parametrize("case", params(PROCESS_STATE_CASES))
@pytest.mark.parametrize("name", [PREVIOUS, "process_state.json"])
def test_read_process_state_over_a_bad_file_moves_it_aside_and_the_plan_goes_on(env: Env, case, name):
    path = env.folder / "system" / name
    case.plant(path, STATE)
    assert records.previous_process_state(env.folder) is None  # read without side effects: the file stays
    assert still_there(path)

    env.report("PROCESS_RESTART")

    step = env.step("READ_PROCESS_STATE")
    assert step.status == "DONE" and step.details["found"] is False
    assert step.details["dataCorruption"]["movedTo"].startswith(f"{name}.corrupt-")
    assert not still_there(path) and env.plan().status == PlanStatus.DONE
