"""An integration run as a database row: the mirror of its report, its queue status and its progress."""

from __future__ import annotations

from django.db import models


class RunStatus(models.TextChoices):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"


class IntegrationRunRecord(models.Model):
    """One run of one scenario; ``report`` holds the IntegrationRunReport once it is DONE."""

    run_id = models.CharField(max_length=64, unique=True)
    scenario_id = models.CharField(max_length=40, db_index=True)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    success = models.BooleanField(null=True, blank=True)
    queued_at = models.DateTimeField(db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    errors_count = models.PositiveIntegerField(default=0)
    report = models.JSONField(null=True, blank=True)
    requested_by = models.CharField(max_length=150, blank=True, default="")
    progress = models.JSONField(default=list, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # the sweeper finishes runs that went quiet
    # What the run started (data folder, simulator port, child pids), so that a teardown
    # in another process, or the sweeper, can stop it after its worker died.
    environment = models.JSONField(default=dict, blank=True)
    report_path = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-queued_at", "-id"]

    def __str__(self) -> str:
        outcome = {None: "", True: " passed", False: " FAILED"}[self.success]
        return f"{self.run_id} {self.scenario_id} {self.status}{outcome}"
