"""Read-only admin pages for the trading rows; the product's own unless integration runs are asked for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from trading.models import Alert, EquitySample, Fill, Order, Position, Trade


class EnvironmentFilter(admin.SimpleListFilter):
    """Whose rows: the product's (``run_id=""``) by default, integration runs' or every row only when chosen."""

    title = "environment"
    parameter_name = "environment"
    RUNS, ALL = "runs", "all"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.RUNS, "Integration runs"), (self.ALL, "Product and runs")]

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        # Not the admin's usual "All" first: no choice at all is the product.
        yield {"selected": self.value() is None, "display": "Product",
               "query_string": changelist.get_query_string(remove=[self.parameter_name])}
        for value, label in self.lookup_choices:
            yield {"selected": self.value() == value, "display": label,
                   "query_string": changelist.get_query_string({self.parameter_name: value})}

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == self.ALL:
            return queryset
        if self.value() == self.RUNS:
            return queryset.exclude(run_id="")
        return queryset.filter(run_id="")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Trading rows are written by the trader and recovery steps; the admin only reads them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "order_link_id", "symbol", "side", "order_type", "qty", "price", "status", "origin")
    list_filter = (EnvironmentFilter, "status", "origin", "purpose", "symbol", "created_at")
    search_fields = ("order_link_id", "exchange_order_id", "symbol")


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ("executed_at", "exec_id", "symbol", "side", "qty", "price", "fee", "is_maker")
    list_filter = (EnvironmentFilter, "symbol", "is_maker")
    search_fields = ("exec_id", "order_link_id")


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("opened_at", "symbol", "side", "qty", "entry_price", "status", "origin", "closed_at")
    list_filter = (EnvironmentFilter, "status", "origin", "symbol")


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ("closed_at", "symbol", "side", "qty", "entry_price", "exit_price", "realized_pnl", "close_reason")
    list_filter = (EnvironmentFilter, "symbol", "close_reason", "closed_at")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "level", "type", "symbol", "message", "suppressed_count")
    list_filter = (EnvironmentFilter, "level", "type", "created_at")
    search_fields = ("message", "type", "symbol")


@admin.register(EquitySample)
class EquitySampleAdmin(ReadOnlyAdmin):
    list_display = ("at", "equity", "wallet_balance", "unrealized_pnl", "available", "trigger", "run_id")
    list_filter = (EnvironmentFilter, "trigger", "at")
