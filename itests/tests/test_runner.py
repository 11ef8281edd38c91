"""The runner around the scenarios: reports, run ids, the database mirror, the CLI, the queue and the sweeper."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from itests import services
from itests.environment import runs_root
from itests.models import IntegrationRunRecord
from itests.scenario import IntegrationScenario
from itests.scenarios import SCENARIOS_BY_ID
from scalper_site.testkit import celery_worker_argv, env_on_test_database, start_process, stop_process, wait_until

SPEC_IDS = ["SCENARIO_1", "SCENARIO_2", "SCENARIO_3", "SCENARIO_4", "SCENARIO_5", "SCENARIO_6",
            "TEST_A", "TEST_B", "TEST_C", "TEST_D"]
CHAOS_IDS = ["CHAOS_KILL9", "FAULT_SOAK"]  # the chaos runs, listed after the spec's scenarios
HA_IDS = ["STANDBY_TAKEOVER"]  # high availability, last


def _result(scenario_id: str, *, success: bool, errors: list | None = None) -> dict:
    return {"scenarioId": scenario_id, "startedAt": "2025-11-18T15:00:00.000Z",
            "finishedAt": "2025-11-18T15:05:00.000Z", "success": success, "errors": errors or [],
            "metrics": {"tradesExecuted": 0, "alertsCount": 0, "healthErrors": 0}}


# -- fast group: no processes ------------------------------------------------------------


def test_scenarios_list_gives_every_spec_scenario_as_meta():
    listed = services.scenarios_list()
    assert [m["id"] for m in listed] == SPEC_IDS + CHAOS_IDS + HA_IDS
    assert all(set(m) == {"id", "name", "description"} and m["name"] and m["description"] for m in listed)
    assert listed[0] == {"id": "SCENARIO_1", "name": "Happy path – SIM mode",
                         "description": "Full pipeline, no failures, 10–15 min run."}


@pytest.mark.django_db
def test_enqueue_refuses_an_unknown_scenario():
    with pytest.raises(services.UnknownScenario):
        services.integration_run_enqueue(scenario_id="SCENARIO_99")
    assert not IntegrationRunRecord.objects.exists()


@pytest.mark.django_db
def test_run_ids_started_in_the_same_second_are_unique(monkeypatch):
    fixed = datetime(2025, 11, 18, 15, 0, 0, tzinfo=UTC)
    monkeypatch.setattr(services.timezone, "now", lambda: fixed)
    first = services.run_record_start(scenario_id="TEST_C", user="a")
    second = services.run_record_start(scenario_id="TEST_C", user="b")
    assert (first.run_id, second.run_id) == ("run-20251118-150000", "run-20251118-150000-2")
    services.run_finish(run_id=first.run_id, result=_result("TEST_C", success=True))
    services.run_finish(run_id=second.run_id, result=_result("TEST_C", success=True))
    names = sorted(p.name for p in services.reports_dir().glob("run-20251118-150000*.json"))
    assert names == ["run-20251118-150000-2.json", "run-20251118-150000.json"]


@pytest.mark.django_db
def test_a_finished_run_writes_the_spec_report_and_mirrors_it_in_the_database():
    record = services.run_record_start(scenario_id="SCENARIO_2", user="ops")
    error = {"expectation": "safe mode is OFF", "expected": False, "actual": True, "message": "safe mode is OFF: ..."}
    services.run_finish(run_id=record.run_id, result=_result("SCENARIO_2", success=False, errors=[error]))
    record.refresh_from_db()
    on_disk = json.loads((services.reports_dir() / f"{record.run_id}.json").read_text())
    assert on_disk == record.report == services.integration_run_report(record)
    assert set(on_disk) == {"runId", "scenarioId", "result"} and on_disk["runId"] == record.run_id
    assert on_disk["result"]["errors"][0]["expected"] is False and on_disk["result"]["errors"][0]["actual"] is True
    assert (record.status, record.success, record.errors_count) == ("DONE", False, 1)
    summary = services.integration_run_summary(record)
    assert set(summary) == {"runId", "scenarioId", "status", "success", "startedAt", "finishedAt", "errorsCount"}
    assert (summary["status"], summary["success"], summary["errorsCount"]) == ("DONE", False, 1)
    assert services.integration_runs_list(limit=1)[0].run_id == record.run_id
    assert services.integration_run_get(run_id="run-none") is None


@pytest.mark.django_db
def test_enqueue_of_a_scenario_already_queued_or_running_returns_that_run(monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    sent: list[str] = []
    monkeypatch.setattr(services, "_dispatch", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        first = services.integration_run_enqueue(scenario_id="TEST_C", user="ops")
        again = services.integration_run_enqueue(scenario_id="TEST_C", user="ops")  # a double click
        other = services.integration_run_enqueue(scenario_id="TEST_B", user="ops")
    assert again.run_id == first.run_id and other.run_id != first.run_id
    assert sent == [first.run_id, other.run_id]  # one chain per run, none for the refused second
    assert IntegrationRunRecord.objects.filter(scenario_id="TEST_C").count() == 1
    assert services.run_claim(run_id=first.run_id, token="t1")
    assert services.integration_run_enqueue(scenario_id="TEST_C").run_id == first.run_id  # RUNNING: still refused
    services.run_finish(run_id=first.run_id, result=_result("TEST_C", success=True))
    after = services.integration_run_enqueue(scenario_id="TEST_C")  # DONE: a new run is queued
    assert after.run_id != first.run_id and after.status == "QUEUED"


@pytest.mark.django_db
def test_queued_runs_start_one_at_a_time_oldest_first(monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr(services, "_dispatch", sent.append)
    first = services.integration_run_enqueue(scenario_id="TEST_C", user="ops")
    second = services.integration_run_enqueue(scenario_id="TEST_B", user="ops")
    assert services.integration_run_report(second)["result"]["success"] is None
    assert not services.run_claim(run_id=second.run_id, token="t2")  # the older one goes first
    assert services.run_claim(run_id=first.run_id, token="t1")
    assert not services.run_claim(run_id=second.run_id, token="t2")  # the slot is taken
    assert services.run_owned(run_id=first.run_id, token="t1") is not None
    assert services.run_owned(run_id=first.run_id, token="other") is None
    assert services.dispatch_next() is None
    services.run_finish(run_id=first.run_id, result=_result("TEST_C", success=True))
    assert services.dispatch_next() == second.run_id
    assert services.run_claim(run_id=second.run_id, token="t2")


@pytest.mark.django_db
def test_a_queued_run_sends_its_chain_by_task_name_with_the_scenario_time_limit(monkeypatch, settings):
    from itests import tasks

    sent: list[tuple] = []

    class Chain:
        def __init__(self, *signatures) -> None:
            self.signatures = signatures

        def apply_async(self) -> None:
            sent.append(self.signatures)

    settings.ITESTS_QUEUE = "itests-queue"
    monkeypatch.setattr(services, "chain", Chain)
    record = services.run_record_start(scenario_id="TEST_C", user="ops")
    services._dispatch(record.run_id)
    (signatures,) = sent
    assert [s.task for s in signatures] == [tasks.setup_run.name, tasks.run_scenario.name, tasks.teardown_run.name]
    assert all(s.immutable and s.kwargs == signatures[0].kwargs for s in signatures)
    assert signatures[0].kwargs["run_id"] == record.run_id and signatures[0].kwargs["token"]
    limit = int(SCENARIOS_BY_ID["TEST_C"].time_limit_s) + services.RUN_MARGIN_S
    assert [s.options for s in signatures] == [
        {"queue": "itests-queue"},
        {"queue": "itests-queue", "soft_time_limit": limit, "time_limit": limit + 30},
        {"queue": "itests-queue"},
    ]


@pytest.mark.django_db
def test_a_redelivered_run_task_does_not_rerun_and_teardown_finishes_it_failed(monkeypatch):
    from itests import tasks

    monkeypatch.setattr(services, "_dispatch", lambda run_id: None)
    record = services.integration_run_enqueue(scenario_id="TEST_C")
    assert tasks.setup_run.apply(kwargs={"run_id": record.run_id, "token": "tok"}).get() is True
    assert services.run_mark_attempted(run_id=record.run_id)  # the first delivery started the scenario, then died
    outcome = tasks.run_scenario.apply(kwargs={"run_id": record.run_id, "token": "tok"}).get()
    assert outcome == "attempted before"
    assert tasks.teardown_run.apply(kwargs={"run_id": record.run_id, "token": "tok"}).get() == "finished"
    record.refresh_from_db()
    assert (record.status, record.success) == ("DONE", False)
    assert "worker was lost" in record.report["result"]["errors"][0]["actual"]


def test_cli_refuses_an_unknown_scenario_and_a_missing_id():
    with pytest.raises(CommandError, match="unknown scenario"):
        call_command("itest", "run", "NOPE")
    with pytest.raises(CommandError, match="one scenario id or --all"):
        call_command("itest", "run")


# -- services group: real processes ------------------------------------------------------


class _NeverRecovers(IntegrationScenario):
    """A scenario whose expectation cannot hold: proves failing runs are reported and torn down."""

    id = "TEST_FAILING"
    name = "Expects a failure that never comes"
    description = "Boots a real environment, then waits for a CONFIG_INVALID nobody causes."
    time_limit_s = 45.0

    def scenario(self, env) -> None:
        from itests import probes

        self.boot(env)
        self.wait_for("CONFIG_INVALID is reported", lambda: probes.failure(self.run_id, "CONFIG_INVALID"),
                      timeout=2, expected="CONFIG_INVALID", actual=lambda: probes.failures(self.run_id))


def _processes_with(data_dir: str) -> list[int]:
    """Return the pids of live processes whose environment names ``data_dir`` as their data folder."""
    marker = f"SCALPER_DATA_DIR={data_dir}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0") and (proc / "stat").read_text().split()[2] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_failing_run_exits_1_names_the_expectation_and_stops_everything_it_started(monkeypatch, capsys):
    monkeypatch.setitem(SCENARIOS_BY_ID, _NeverRecovers.id, _NeverRecovers)
    with pytest.raises(SystemExit) as exit_info:
        call_command("itest", "run", _NeverRecovers.id)
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "TEST_FAILING" in out and "FAIL" in out and "CONFIG_INVALID is reported (within 2s)" in out
    record = IntegrationRunRecord.objects.get(scenario_id=_NeverRecovers.id)
    error = record.report["result"]["errors"][0]
    assert error["expectation"] == "CONFIG_INVALID is reported (within 2s)"
    assert error["expected"] == "CONFIG_INVALID" and error["actual"] == ["PROCESS_RESTART"]
    data_dir = record.environment["dataDir"]
    assert Path(data_dir).is_relative_to(runs_root() / record.run_id)
    assert [p["step"] for p in record.progress][-2:] == ["teardown", "done"]
    for name in ("sim", "worker", "trader"):
        assert (runs_root() / record.run_id / "logs" / f"{name}.log").exists(), name  # all three were started
    assert record.environment["pids"] == {}
    assert _processes_with(data_dir) == []  # and none of them, nor their children, is left


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cli_run_passes_with_exit_status_0_and_a_progress_line_per_step(capsys):
    call_command("itest", "run", "TEST_C")  # no SystemExit(1)
    out = capsys.readouterr().out
    assert "TEST_C: setup" in out and "TEST_C: graceful stop (SIGTERM)" in out and "TEST_C: teardown" in out
    assert "1 passed, 0 failed" in out


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_sweeper_stops_an_abandoned_run_and_finishes_it_failed():
    record = services.run_record_start(scenario_id="TEST_C", user="ops")
    data = runs_root() / record.run_id / "data"
    data.mkdir(parents=True)
    orphan = start_process([sys.executable, "-c", "import time; time.sleep(120)"],
                           env={"SCALPER_DATA_DIR": str(data)})
    try:
        services.run_environment(run_id=record.run_id, description={"dataDir": str(data),
                                                                    "pids": {"sim": orphan.pid}})
        IntegrationRunRecord.objects.filter(pk=record.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=90))
        outcome = services.integration_runs_sweep(stale_after_s=60)
        assert outcome["abandoned"] == [record.run_id]
        orphan.wait(timeout=15)  # the sweeper may have reaped it already: then the status is lost, not the fact
        assert _processes_with(str(data)) == []
    finally:
        stop_process(orphan)
    record.refresh_from_db()
    assert (record.status, record.success) == ("DONE", False)
    assert record.report["result"]["errors"][0]["actual"].startswith("abandoned: no heartbeat for")
    assert services.integration_runs_sweep(stale_after_s=60)["abandoned"] == []  # idempotent


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_queued_runs_go_through_a_celery_chain_one_at_a_time(tmp_path):
    queue = f"itests-{os.getpid()}"
    worker = start_process(celery_worker_argv(name=queue, concurrency=2),
                           env=env_on_test_database(connection, CELERY_QUEUE=queue,
                                                    SCALPER_DATA_DIR=str(settings.DATA_DIR)),
                           log=tmp_path / "worker.log")
    try:
        wait_until(lambda: "ready." in (tmp_path / "worker.log").read_text(), timeout=60, what="the worker")
        with override_settings(ITESTS_QUEUE=queue):
            first = services.integration_run_enqueue(scenario_id="TEST_C", user="dashboard")
            second = services.integration_run_enqueue(scenario_id="TEST_B", user="dashboard")  # TEST_C is queued
        seen: set[tuple[str, str]] = set()

        def both_done() -> bool:
            rows = {r.run_id: r.status for r in IntegrationRunRecord.objects.filter(run_id__in=[first.run_id,
                                                                                          second.run_id])}
            seen.add((rows[first.run_id], rows[second.run_id]))
            return set(rows.values()) == {"DONE"}

        wait_until(both_done, timeout=240, interval=0.1, what=f"both runs DONE (worker log {tmp_path})")
    finally:
        stop_process(worker)
    assert ("RUNNING", "RUNNING") not in seen
    assert ("RUNNING", "QUEUED") in seen  # the second waited for the first
    for record in (first, second):
        record.refresh_from_db()
        assert record.success, record.report["result"]["errors"]
        steps = [p["step"] for p in record.progress]
        assert steps[:2] == ["claimed", "setup"] and steps[-1] == "done"
        assert Path(record.report_path) == services.reports_dir() / f"{record.run_id}.json"
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.finished_at <= second.started_at


@pytest.mark.django_db
def test_cli_without_redis_says_how_to_get_one_before_starting_anything(settings):
    settings.REDIS_URL = None
    with pytest.raises(CommandError, match=r"no Redis: set REDIS_URL, or start the product with `make run`"):
        call_command("itest", "run", "SCENARIO_3")
    assert not IntegrationRunRecord.objects.exists()
