from __future__ import annotations

from enum import StrEnum

from django.db import models

from failover.domain import enums


def _choices(enum: type[StrEnum]) -> type[models.TextChoices]:
    """The Django choices of one of the domain's enums: one vocabulary, the domain's (labels from the names)."""
    return models.TextChoices(enum.__name__, [(member.name, member.value) for member in enum])


FailureType = _choices(enums.FailureType)  # the spec's failure taxonomy (section 2)
StepType = _choices(enums.StepType)
StepStatus = _choices(enums.StepStatus)
PlanStatus = _choices(enums.PlanStatus)  # FAILED is retried with backoff; WAITING_OPERATOR after the last retry


class FailureEventRecord(models.Model):
    """One stored FailureEvent, in the spec's shape."""

    timestamp = models.DateTimeField(db_index=True)
    type = models.CharField(max_length=40, choices=FailureType.choices, db_index=True)
    source = models.CharField(max_length=60)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    run_id = models.CharField(max_length=64, blank=True, default="", db_index=True)

    class Meta:
        ordering = ["-timestamp", "-id"]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.type} ({self.source})"


class RecoveryPlanRecord(models.Model):
    plan_id = models.CharField(max_length=40, unique=True)
    run_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    failure = models.ForeignKey(FailureEventRecord, null=True, blank=True, on_delete=models.SET_NULL)
    failure_type = models.CharField(max_length=40, choices=FailureType.choices, db_index=True)
    status = models.CharField(max_length=20, choices=PlanStatus.choices, default=PlanStatus.PENDING, db_index=True)
    generated_at = models.DateTimeField(db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    symbols = models.JSONField(default=list, blank=True)
    last_generated_at = models.DateTimeField(null=True, blank=True)  # bumped when a merge extends the plan
    merged_failure_types = models.JSONField(default=list, blank=True)
    supersedes = models.CharField(max_length=40, blank=True, default="")
    # The token of the one Celery chain that owns this plan ("" when none runs): a
    # second chain is never started beside it, and a chain whose token no longer
    # matches (superseded, swept, failed) stops at its next task.
    chain_token = models.CharField(max_length=40, blank=True, default="")
    chain_started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-generated_at", "-id"]

    def __str__(self) -> str:
        return f"{self.plan_id} {self.failure_type} {self.status}"


class RecoveryStepRecord(models.Model):
    plan = models.ForeignKey(RecoveryPlanRecord, on_delete=models.CASCADE, related_name="steps")
    step_id = models.CharField(max_length=20)  # "step-001", as the spec writes it
    position = models.PositiveIntegerField()
    type = models.CharField(max_length=40, choices=StepType.choices)
    status = models.CharField(max_length=10, choices=StepStatus.choices, default=StepStatus.PENDING, db_index=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    error_message = models.TextField(null=True, blank=True)
    claimed_by = models.CharField(max_length=120, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # the sweeper resets steps whose worker went quiet

    class Meta:
        ordering = ["plan", "position"]
        constraints = [models.UniqueConstraint(fields=["plan", "position"], name="one_step_per_position")]

    def __str__(self) -> str:
        return f"{self.step_id} {self.type} {self.status}"


class FailoverStateRecord(models.Model):
    """The one failover state of an environment (``run_id``); every change bumps ``version``."""

    run_id = models.CharField(max_length=64, blank=True, default="", unique=True)
    safe_mode = models.BooleanField(default=True)  # fail closed until a first start has recovered
    reason = models.CharField(max_length=40, null=True, blank=True)
    since = models.DateTimeField(null=True, blank=True)
    planned = models.BooleanField(default=False)  # an operator asked for it: health stays OK
    last_failure = models.ForeignKey(FailureEventRecord, null=True, blank=True, on_delete=models.SET_NULL)
    recovery_in_progress = models.BooleanField(default=False)
    current_plan = models.ForeignKey(
        RecoveryPlanRecord, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trading_enabled = models.BooleanField(default=True)
    # Failure types whose condition has not ended yet: safe mode stays on while any remains.
    active_failures = models.JSONField(default=list, blank=True)
    config_fallback = models.BooleanField(default=False)  # the built-in config is in force (CONFIG_INVALID)
    operator_hold = models.BooleanField(default=False)  # an operator entered safe mode: only an operator leaves it
    last_recovery_at = models.DateTimeField(null=True, blank=True)
    # Where this environment trades (exchange target without secrets, data folder,
    # symbols, mode), written by its trader at start so recovery steps in any
    # worker reach the same exchange and files.
    context = models.JSONField(default=dict, blank=True)
    version = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField()
    # HALT: an operator stopped new entries until an operator's RESUME, whatever safe mode does meanwhile.
    halted = models.BooleanField(default=False)
    halt_reason = models.CharField(max_length=200, blank=True, default="")
    halted_by = models.CharField(max_length=150, blank=True, default="")
    halted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Staff alone may look; the actions that stop, resume or close trading need this permission too.
        permissions = [("operate_trader", "Can carry out dangerous trader actions")]

    def __str__(self) -> str:
        return f"safeMode={'ON' if self.safe_mode else 'OFF'} reason={self.reason} v{self.version}"


class FailoverStateChange(models.Model):
    """One committed version of an environment's failover state: the history of ``FailoverStateRecord``.

    Written in the transaction that writes the version (``failover.recovery.history``),
    so a version is in the history exactly when it was in the state.
    """

    run_id = models.CharField(max_length=64, blank=True, default="")
    version = models.PositiveBigIntegerField()
    at = models.DateTimeField()  # the commit's time: the state row's updated_at
    safe_mode = models.BooleanField()
    reason = models.CharField(max_length=40, null=True, blank=True)
    planned = models.BooleanField(default=False)
    operator_hold = models.BooleanField(default=False)
    trading_enabled = models.BooleanField(default=True)
    recovery_in_progress = models.BooleanField(default=False)
    active_failures = models.JSONField(default=list, blank=True)
    current_plan_id = models.BigIntegerField(null=True, blank=True)  # not a foreign key: deleting plans keeps history
    halted = models.BooleanField(default=False)  # an operator's HALT was in force at this version
    halt_reason = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["run_id", "version"]
        constraints = [models.UniqueConstraint(fields=["run_id", "version"], name="one_change_per_version")]
        # run_id leads both: the unique index serves version order, this one time windows and retention.
        indexes = [models.Index(fields=["run_id", "at"], name="failover_change_run_at")]

    def __str__(self) -> str:
        return f"{self.run_id or 'product'} v{self.version} safeMode={'ON' if self.safe_mode else 'OFF'}"


class OperatorAction(models.Model):
    """Who did what, from the dashboard or the API: the audit trail of manual actions."""

    run_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    at = models.DateTimeField(db_index=True)
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=60)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
