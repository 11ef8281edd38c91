"""The command bus's client and the trader agree on the commands there are."""

from __future__ import annotations

import pytest

from trading.control import COMMANDS, send_command
from trading.trader.commands import COMMAND_NAMES, Commands


def test_every_command_the_client_may_send_has_a_handler_in_the_trader_and_no_more():
    handlers = Commands.handlers(object.__new__(Commands))
    assert set(handlers) == COMMANDS
    assert frozenset(COMMAND_NAMES) == COMMANDS  # the client's set is the trader's one list


def test_an_unknown_command_is_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="unknown trader command 'sell_everything'"):
        send_command("sell_everything", run_id="nobody")


def test_the_cli_refuses_an_unknown_command_and_a_malformed_argument_before_sending():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="unknown command 'flatten'; known: arm_fault, ") as refused:
        call_command("trader_command", "flatten")
    assert {"panic_close", "safe_mode_on", "halt", "resume"} <= set(str(refused.value).split(": ")[1].split(", "))
    with pytest.raises(CommandError, match="--arg takes key=value, got 'BTCUSDT'"):
        call_command("trader_command", "close_position", "--arg", "BTCUSDT")
