"""``manage.py trader_command``: send one command to the running trader and print its acknowledgement."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from trading.control import COMMANDS, TraderUnavailable, send_command


def _arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--arg takes key=value, got {text!r}")
    return key, value


class Command(BaseCommand):
    help = (
        "Send a command to the trader over the command bus and wait for its acknowledgement, e.g. "
        "`trader_command close_position --arg symbol=BTCUSDT` or `trader_command panic_close`."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("command", help=f"one of: {', '.join(sorted(COMMANDS))}")
        parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="a command argument")
        parser.add_argument("--run-id", default="", help="the environment (empty: the product's own trader)")
        parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the acknowledgement")

    def handle(self, *args, **opts) -> None:
        if opts["command"] not in COMMANDS:
            raise CommandError(f"unknown command {opts['command']!r}; known: {', '.join(sorted(COMMANDS))}")
        arguments = dict(_arg(text) for text in opts["arg"])
        try:
            ack = send_command(opts["command"], run_id=opts["run_id"], args=arguments, wait_s=opts["wait"])
        except TraderUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(ack, indent=2, default=str))
        if not ack.get("ok"):
            raise CommandError(f"the trader refused {opts['command']}: {ack.get('error')}")
