"""``manage.py itest``: list scenarios, run one or all (exit status 1 if any fails), sweep left-behind runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from itests import services
from itests.chaos import invariants
from itests.environment import runs_root
from itests.models import IntegrationRunRecord
from itests.runner import IntegrationRunner


class Command(BaseCommand):
    help = "Integration scenarios: `itest list`, `itest run <ID>`, `itest run --all`, `itest sweep`."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="list the scenarios")
        run = sub.add_parser("run", help="run scenarios now, in this process, and write their reports")
        run.add_argument("scenario", nargs="?", help="a scenario id (see `itest list`)")
        run.add_argument("--all", action="store_true", help="run every scenario")
        run.add_argument("--duration", type=float, default=0.0,
                         help="SCENARIO_1: keep trading this many seconds (600-900 for the soak)")
        run.add_argument("--min-trades", type=int, default=1, help="SCENARIO_1: trades required to pass")
        run.add_argument("--speed", type=float, default=20.0, help="simulator market speed-up")
        run.add_argument("--kills", type=int, default=0,
                         help="CHAOS_KILL9: kill cycles (default 10); STANDBY_TAKEOVER: leader kills (default 1)")
        run.add_argument("--seed", type=int, default=None,
                         help="CHAOS_KILL9, FAULT_SOAK: the random seed (a run prints its own; reuse it to replay)")
        check = sub.add_parser("check", help="judge a chaos run again, offline, from its recorded history")
        check.add_argument("folder", help="a run's history folder (<runs>/<runId>/history) or its run id")
        sweep = sub.add_parser("sweep", help="finish runs whose process was lost; start the next queued run")
        sweep.add_argument("--stale-after", type=float, default=services.STALE_AFTER_S)

    def handle(self, *args: Any, **opts: Any) -> None:
        action = opts["action"]
        if action == "list":
            for meta in services.scenarios_list():
                self.stdout.write(f"{meta['id']:<11} {meta['name']:<36} {meta['description']}")
        elif action == "check":
            sys.exit(self._check(opts["folder"]))
        elif action == "sweep":
            outcome = services.integration_runs_sweep(stale_after_s=opts["stale_after"])
            self.stdout.write(f"abandoned: {outcome['abandoned'] or '-'}; dispatched: {outcome['dispatched'] or '-'}")
        else:
            code = self._run(opts)
            if code:
                sys.exit(code)  # the operator's shell and CI see a failed run

    def _run(self, opts: dict[str, Any]) -> int:
        if bool(opts["all"]) == bool(opts["scenario"]):
            raise CommandError("give one scenario id or --all")
        try:
            if opts["scenario"]:
                services.scenario_check(opts["scenario"])
        except services.UnknownScenario as exc:
            raise CommandError(str(exc)) from exc
        if not settings.REDIS_URL:
            # Each run starts its own Celery worker and trader, which talk through Redis; without one the
            # worker would only retry for a minute before the run failed with a less helpful message.
            raise CommandError("no Redis: set REDIS_URL, or start the product with `make run` and run this beside it")
        runner = IntegrationRunner(
            requested_by="cli", printer=self._progress,
            options={"duration_s": opts["duration"], "min_trades": opts["min_trades"], "speed": opts["speed"],
                     "kills": opts["kills"], "seed": opts["seed"]},
        )
        try:
            reports = runner.run_all() if opts["all"] else [runner.run_scenario(opts["scenario"])]
        except services.UnknownScenario as exc:
            raise CommandError(str(exc)) from exc
        self._summary(reports)
        return 0 if all(r["result"]["success"] for r in reports) else 1

    def _check(self, where: str) -> int:
        folder = Path(where)
        if not folder.is_dir():
            folder = runs_root() / where / "history"
        if not (folder / "meta.json").exists():
            raise CommandError(f"no recorded chaos history at {folder}")
        verdict = invariants.check(invariants.load(folder))
        self.stdout.write(json.dumps(verdict.to_dict(), indent=2, default=str))
        return 0 if verdict.ok else 1

    def _progress(self, record: IntegrationRunRecord | None, step: str) -> None:
        if record is not None:
            self.stdout.write(f"[{record.run_id}] {record.scenario_id}: {step}")
            self.stdout.flush()

    def _summary(self, reports: list[dict[str, Any]]) -> None:
        self.stdout.write("")
        self.stdout.write(f"{'scenario':<11} {'result':<6} {'errors':>6} {'trades':>6} {'recovery ms':>11}  run id")
        for report in reports:
            result, metrics = report["result"], report["result"]["metrics"]
            outcome = "PASS" if result["success"] else "FAIL"
            recovery = metrics.get("recoveryDurationMs")
            recovery_text = "-" if recovery is None else str(recovery)
            trades = str(metrics.get("tradesExecuted", "-"))
            self.stdout.write(f"{report['scenarioId']:<11} {outcome:<6} {len(result['errors']):>6} {trades:>6} "
                              f"{recovery_text:>11}  {report['runId']}")
            for error in result["errors"]:
                self.stdout.write(f"    x {error['message'][:300]}")
        failed = sum(1 for r in reports if not r["result"]["success"])
        self.stdout.write(f"{len(reports) - failed} passed, {failed} failed; reports in {services.reports_dir()}")
