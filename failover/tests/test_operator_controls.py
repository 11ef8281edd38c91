"""HALT and RESUME: stored with the failover state, read back by a trader that starts after them, refusing entries."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from failover import services
from failover.models import OperatorAction
from failover.recovery import runner
from trading.domain import reasons
from trading.engine.failover_link import FailoverLink
from trading.models import Alert
from trading.tests.kit import build_rig

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _held_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)


def _started_link() -> FailoverLink:
    """What a freshly started trader knows: nothing, until its first read of the state."""
    link = FailoverLink(run_id="", confirm_timeout_ms=60_000, services=services)
    assert link.refresh()
    return link


def _actions() -> list[tuple[str, str, str | None]]:
    return [(a.action, a.username, a.details.get("outcome")) for a in OperatorAction.objects.order_by("at", "id")]


def test_halt_survives_a_trader_restart_and_refuses_entries_until_resume(tmp_path, django_capture_on_commit_callbacks):
    services.safe_mode_exit(user="ops", force=True)  # a running product: safe mode off
    with django_capture_on_commit_callbacks(execute=True):
        halted = services.trading_halt(reason="exchange maintenance", user="alice")
    assert halted.halted and halted.halt is not None and halted.halt["by"] == "alice"
    assert services.failover_status()["halt"]["reason"] == "exchange maintenance"

    link = _started_link()  # a trader started after the HALT reads it back from the state
    assert link.is_halted() and not link.is_safe_mode() and link.entries_blocked_reason() == reasons.HALTED
    rig = build_rig(["BTCUSDT"], tmp_path)
    rig.core.halted = link.is_halted
    refused = rig.enter("BTCUSDT")
    assert (refused.success, refused.reason) == (False, reasons.HALTED)
    assert rig.venue.engine.orders == {}  # nothing reached the exchange
    assert rig.core.entry_block_reasons("BTCUSDT")[0] == reasons.HALTED

    with django_capture_on_commit_callbacks(execute=True):
        resumed = services.trading_resume(user="bob")
    assert not resumed.halted and resumed.halt is None
    assert link.refresh() and not link.is_halted() and link.entries_blocked_reason() is None
    assert rig.enter("BTCUSDT").success
    assert _actions()[-2:] == [("HALT", "alice", "halted"), ("RESUME", "bob", "resumed")]
    assert {(a.type, a.level) for a in Alert.objects.filter(type__in=["HALT", "RESUME"])} == {
        ("HALT", "CRIT"), ("RESUME", "INFO")}


def test_halt_outlives_safe_mode_exit_and_a_second_halt_or_resume_changes_nothing():
    services.trading_halt(reason="first", user="alice")
    version = services.failover_state_get().version
    again = services.trading_halt(reason="second", user="bob")
    assert again.version == version and again.halt is not None and again.halt["reason"] == "first"
    state = services.safe_mode_exit(user="carol", force=True)
    assert not state.safe_mode and state.halted  # only RESUME lifts a HALT
    services.trading_resume(user="dave")
    assert services.trading_resume(user="dave").version == services.failover_state_get().version
    assert [a[2] for a in _actions() if a[0] in ("HALT", "RESUME")] == [
        "halted", "already halted", "resumed", "not halted"]


def test_the_gate_the_trader_polls_carries_the_halt():
    assert services.failover_gate().halted is False
    services.trading_halt(reason="x", user="alice")
    assert services.failover_gate().halted is True


def test_trader_command_puts_safe_mode_on_halts_and_resumes_without_a_trader(capsys):
    services.safe_mode_exit(user="ops", force=True)
    call_command("trader_command", "safe_mode_on", "--arg", "reason=night", "--arg", "by=alice")
    state = services.failover_state_get()
    assert state.safe_mode and state.reason == "night"
    call_command("trader_command", "halt", "--arg", "reason=audit")
    assert services.failover_state_get().halted
    call_command("trader_command", "resume", "--arg", "by=bob")
    assert not services.failover_state_get().halted
    actions = _actions()
    assert [a[:2] for a in actions[-3:-1]] == [("SAFE_MODE_ENTER", "alice"), ("HALT", actions[-2][1])]
    assert actions[-2][1].startswith("cli:") and actions[-1][:2] == ("RESUME", "bob")
    assert '"halted": false' in capsys.readouterr().out


@pytest.mark.parametrize("reason", ["", "x" * 41])
def test_a_safe_mode_reason_outside_1_to_40_characters_is_refused_and_changes_nothing(reason):
    before = services.failover_state_get(run_id="reason-bounds")
    with pytest.raises(ValueError, match="1 to 40 characters"):
        services.safe_mode_enter(run_id="reason-bounds", reason=reason, user="ops")
    assert services.failover_state_get(run_id="reason-bounds").version == before.version
