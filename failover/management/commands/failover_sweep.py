"""``manage.py failover_sweep``: run the recovery sweeper once (cron, a supervisor timer, or by hand)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from failover.recovery import runner


class Command(BaseCommand):
    help = "Reset recovery steps left RUNNING by a lost worker, retry due plans, restart orphaned chains."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stale-after", type=float, default=runner.STALE_AFTER_S,
                            help="seconds without a heartbeat after which a RUNNING step is reset")

    def handle(self, *args: Any, **options: Any) -> None:
        report = runner.sweep_stuck_steps(stale_after_s=options["stale_after"])
        self.stdout.write(json.dumps(report))
