from __future__ import annotations

from django.contrib import admin

from failover.models import (
    FailoverStateChange,
    FailoverStateRecord,
    FailureEventRecord,
    OperatorAction,
    RecoveryPlanRecord,
    RecoveryStepRecord,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is evidence: it is read, never edited by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FailureEventRecord)
class FailureEventRecordAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "type", "source", "message", "run_id")
    list_filter = ("type", "source", "timestamp", "run_id")
    search_fields = ("message", "source")
    date_hierarchy = "timestamp"


class RecoveryStepInline(admin.TabularInline):
    model = RecoveryStepRecord
    fields = ("step_id", "type", "status", "created_at", "started_at", "finished_at", "details", "error_message")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RecoveryPlanRecord)
class RecoveryPlanRecordAdmin(ReadOnlyAdmin):
    list_display = ("generated_at", "plan_id", "failure_type", "status", "attempts", "started_at", "finished_at")
    list_filter = ("status", "failure_type", "generated_at", "run_id")
    search_fields = ("plan_id",)
    date_hierarchy = "generated_at"
    inlines = [RecoveryStepInline]


@admin.register(RecoveryStepRecord)
class RecoveryStepRecordAdmin(ReadOnlyAdmin):
    list_display = ("plan", "step_id", "type", "status", "started_at", "finished_at", "error_message")
    list_filter = ("status", "type", "created_at", "finished_at")
    date_hierarchy = "created_at"


@admin.register(FailoverStateRecord)
class FailoverStateRecordAdmin(ReadOnlyAdmin):
    list_display = ("run_id", "safe_mode", "reason", "since", "halted", "halt_reason", "halted_by",
                    "recovery_in_progress", "trading_enabled", "config_fallback", "active_failures", "version")
    list_filter = ("safe_mode", "halted", "reason", "recovery_in_progress", "trading_enabled")


@admin.register(FailoverStateChange)
class FailoverStateChangeAdmin(ReadOnlyAdmin):
    list_display = ("run_id", "version", "at", "safe_mode", "reason", "trading_enabled")
    list_filter = ("run_id", "safe_mode")
    date_hierarchy = "at"
    ordering = ("run_id", "-version")


@admin.register(OperatorAction)
class OperatorActionAdmin(ReadOnlyAdmin):
    list_display = ("at", "username", "action", "run_id")
    list_filter = ("action", "username", "at")
