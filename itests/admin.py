"""Admin: integration runs, read-only (they are written by the runner only)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from itests.models import IntegrationRunRecord


@admin.register(IntegrationRunRecord)
class IntegrationRunRecordAdmin(admin.ModelAdmin):
    list_display = ("run_id", "scenario_id", "status", "success", "errors_count", "queued_at", "finished_at",
                    "requested_by")
    list_filter = ("scenario_id", "status", "success", ("queued_at", admin.DateFieldListFilter))
    search_fields = ("run_id", "scenario_id", "requested_by")
    date_hierarchy = "queued_at"

    def get_readonly_fields(self, request: HttpRequest, obj: IntegrationRunRecord | None = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: IntegrationRunRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: IntegrationRunRecord | None = None) -> bool:
        return False
