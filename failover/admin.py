from __future__ import annotations

from django.contrib import admin

from failover.models import FailureEventRecord


@admin.register(FailureEventRecord)
class FailureEventRecordAdmin(admin.ModelAdmin):
    list_display = ("timestamp", "type", "source", "message")
    list_filter = ("type", "source", "timestamp")
    search_fields = ("message", "source")
    date_hierarchy = "timestamp"

    # History is evidence: it is read, never edited by hand.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
