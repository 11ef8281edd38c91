"""Read-only admin pages for the trading rows."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from trading.models import Alert, Fill, Order, Position, Trade


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
    list_filter = ("status", "origin", "purpose", "symbol", "created_at")
    search_fields = ("order_link_id", "exchange_order_id", "symbol")


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ("executed_at", "exec_id", "symbol", "side", "qty", "price", "fee", "is_maker")
    list_filter = ("symbol", "is_maker")
    search_fields = ("exec_id", "order_link_id")


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("opened_at", "symbol", "side", "qty", "entry_price", "status", "origin", "closed_at")
    list_filter = ("status", "origin", "symbol")


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ("closed_at", "symbol", "side", "qty", "entry_price", "exit_price", "realized_pnl", "close_reason")
    list_filter = ("symbol", "close_reason", "closed_at")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "level", "type", "symbol", "message", "suppressed_count")
    list_filter = ("level", "type", "created_at")
    search_fields = ("message", "type", "symbol")
