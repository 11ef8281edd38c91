"""``manage.py trader_command``: send one command to the running trader and print its acknowledgement.

It lives in the failover app because ``safe_mode_on``, ``halt`` and ``resume`` are failover state changes, and a
panic close HALTs first (the trading package imports nothing of the failover app but its domain).
"""

from __future__ import annotations

import getpass
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from failover import services
from trading.control import COMMANDS, TraderUnavailable, send_command

# Carried out through the failover state, not sent to a trader: they hold whether or not one runs, and every
# trader of the environment follows the state within a second (a restarted one reads it at start).
STATE_COMMANDS = frozenset({"safe_mode_on", "halt", "resume"})
PANIC_CLOSE_HALT_REASON = "PANIC_CLOSE"


def _arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--arg takes key=value, got {text!r}")
    return key, value


def _operator(arguments: dict[str, str]) -> str:
    return arguments.get("by") or f"cli:{getpass.getuser()}"


def _state_command(command: str, run_id: str, arguments: dict[str, str]) -> dict[str, Any]:
    """Safe mode on, HALT or RESUME through the FailoverManager (audited); the new status."""
    user = _operator(arguments)
    reason = arguments.get("reason") or "by hand from the command line"
    if command == "safe_mode_on":
        state = services.safe_mode_enter(run_id=run_id, reason=reason, user=user)
    elif command == "halt":
        state = services.trading_halt(run_id=run_id, reason=reason, user=user)
    else:
        state = services.trading_resume(run_id=run_id, user=user)
    return {"ok": True, "result": {"safeMode": state.safe_mode, "reason": state.reason, "halted": state.halted,
                                   "halt": state.halt}, "error": None}


class Command(BaseCommand):
    help = (
        "Send a command to the trader over the command bus and wait for its acknowledgement, e.g. "
        "`trader_command close_position --arg symbol=BTCUSDT` or `trader_command panic_close` (which HALTs "
        "first). `safe_mode_on`, `halt` and `resume` (`--arg reason=...`, `--arg by=NAME`) change the failover "
        "state, so they hold whether or not a trader runs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("command", help=f"one of: {', '.join(sorted(COMMANDS | STATE_COMMANDS))}")
        parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="a command argument")
        parser.add_argument("--run-id", default="", help="the environment (empty: the product's own trader)")
        parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the acknowledgement")

    def handle(self, *args, **opts) -> None:
        known = COMMANDS | STATE_COMMANDS
        if opts["command"] not in known:
            raise CommandError(f"unknown command {opts['command']!r}; known: {', '.join(sorted(known))}")
        arguments = dict(_arg(text) for text in opts["arg"])
        if opts["command"] in STATE_COMMANDS:
            ack = _state_command(opts["command"], opts["run_id"], arguments)
        else:
            ack = self._send(opts, arguments)
        self.stdout.write(json.dumps(ack, indent=2, default=str))
        if not ack.get("ok"):
            raise CommandError(f"the trader refused {opts['command']}: {ack.get('error')}")

    def _send(self, opts: dict[str, Any], arguments: dict[str, str]) -> dict[str, Any]:
        if opts["command"] == "panic_close":
            # A panic close ends in HALT: halted first, so no entry opens a second after the close.
            services.trading_halt(run_id=opts["run_id"], reason=PANIC_CLOSE_HALT_REASON, user=_operator(arguments))
        try:
            return send_command(opts["command"], run_id=opts["run_id"], args=arguments, wait_s=opts["wait"])
        except TraderUnavailable as exc:
            raise CommandError(str(exc)) from exc
