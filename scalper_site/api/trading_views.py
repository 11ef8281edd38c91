"""Trading endpoints: health, alerts, open positions and orders, panic close and the per-row actions
(close one position, cancel one order)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scalper_site.api.actions import execution_panic_close, order_cancel, position_close
from scalper_site.api.pagination import CheckedPagination
from scalper_site.api.permissions import DangerousActionViewMixin
from scalper_site.api.selectors import alerts_list, health_snapshot, orders_open, positions_open
from scalper_site.api.serializers import (
    ContractDateTimeField,
    ErrorSerializer,
    HealthSnapshotSerializer,
    enum_field,
    number_field,
    page_query_serializer,
    page_serializer,
)
from trading.control import TraderUnavailable
from trading.models import AlertLevel, OrderSide, PositionSide

TAG = ["trading"]
SYMBOL_PATTERN = r"^[A-Z0-9]{1,32}$"
SYMBOL_PATH_PATTERN = r"^[A-Za-z0-9]{1,32}$"  # what the path may carry: a symbol in any case (upper-cased first)
ORDER_LINK_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class HealthView(APIView):
    """The HealthSnapshot: trader services from its heartbeat, failoverManager and recoveryEngine; overall = worst."""

    OutputSerializer = HealthSnapshotSerializer

    @extend_schema(operation_id="health", tags=TAG, responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(health_snapshot()).data)


class AlertListView(APIView):
    """The product's alerts, latest first, paginated (``limit``/``offset``), optionally of one ``level``."""

    FilterSerializer = page_query_serializer(
        default_limit=CheckedPagination.default_limit, max_limit=CheckedPagination.max_limit, name="AlertFilter",
        level=serializers.ChoiceField(choices=AlertLevel.choices, required=False),
    )

    @extend_schema_serializer(component_name="Alert")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        level = enum_field(AlertLevel.values, name="AlertLevel")
        type = serializers.CharField()
        symbol = serializers.CharField(allow_blank=True)
        message = serializers.CharField()
        details = serializers.JSONField()
        suppressedCount = serializers.IntegerField(source="suppressed_count")
        createdAt = ContractDateTimeField(source="created_at")

    PageSerializer = page_serializer(OutputSerializer, name="AlertPage")

    @extend_schema(
        operation_id="alerts_list",
        tags=TAG,
        parameters=[FilterSerializer],
        responses={200: PageSerializer},
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        query = filters.validated_data
        paginator = CheckedPagination(limit=query["limit"], offset=query["offset"])
        page = paginator.paginate_queryset(alerts_list(level=query.get("level")), request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class PositionListView(APIView):
    """The product's open positions, in the spec's PositionSnapshot shape plus origin and opening time."""

    @extend_schema_serializer(component_name="Position")
    class OutputSerializer(serializers.Serializer):
        symbol = serializers.CharField()
        side = enum_field(PositionSide.values, name="PositionSide")
        entryPrice = number_field(source="entry_price")
        qty = number_field()
        leverage = serializers.DecimalField(max_digits=10, decimal_places=2, coerce_to_string=False)
        pnlUnrealized = number_field(source="pnl_unrealized")
        exchangePositionId = serializers.SerializerMethodField()
        origin = serializers.CharField()
        openedAt = ContractDateTimeField(source="opened_at")

        def get_exchangePositionId(self, position) -> str | None:  # noqa: N802 (the contract's name)
            # A row, or a selector's dict of its fields (the symbols status).
            found = position["exchange_position_id"] if isinstance(position, dict) else position.exchange_position_id
            return found or None

    @extend_schema(operation_id="positions_list", tags=TAG, responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(positions_open(), many=True).data)


class OrderListView(APIView):
    """The product's open orders (not filled, canceled or rejected), in the spec's OrderSnapshot shape plus details."""

    @extend_schema_serializer(component_name="Order")
    class OutputSerializer(serializers.Serializer):
        symbol = serializers.CharField()
        side = enum_field(OrderSide.values, name="OrderSide")
        clientOrderId = serializers.CharField(source="order_link_id")
        exchangeOrderId = serializers.SerializerMethodField()
        price = number_field(allow_null=True)
        qty = number_field()
        status = serializers.CharField()
        orderType = serializers.CharField(source="order_type")
        reduceOnly = serializers.BooleanField(source="reduce_only")
        filledQty = number_field(source="filled_qty")
        purpose = serializers.CharField()
        createdAt = ContractDateTimeField(source="created_at")

        def get_exchangeOrderId(self, order) -> str | None:  # noqa: N802 (the contract's name)
            return order.exchange_order_id or None

    @extend_schema(operation_id="orders_list", tags=TAG, responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(orders_open(), many=True).data)


class PanicCloseView(DangerousActionViewMixin, APIView):
    """HALT, then close every position and cancel every order of the product's trader (503 when no trader runs;
    the HALT stays until an operator resumes)."""

    @extend_schema_serializer(component_name="PanicCloseResult")
    class OutputSerializer(serializers.Serializer):
        ok = serializers.BooleanField()
        result = serializers.JSONField()
        error = serializers.CharField(allow_null=True)

    @extend_schema(
        operation_id="execution_panic_close",
        tags=TAG,
        request=None,
        responses={200: OutputSerializer,
                   503: OpenApiResponse(ErrorSerializer, description="No trader runs, or it did not acknowledge in "
                                                                     "time: nothing was closed by this request.")},
    )
    def post(self, request: Request) -> Response:
        try:
            ack = execution_panic_close(user=request.user.get_username())
        except TraderUnavailable as exc:
            detail = f"Panic close not sent: {exc}. Start the trader, or close positions on the exchange."
            return Response({"detail": detail}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(self.OutputSerializer(ack).data)


# -- per-row actions -----------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="TraderCommandResult")
class CommandResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    result = serializers.JSONField()
    error = serializers.CharField(allow_null=True)


def _row_action(send: Callable[[], dict[str, Any]], what: str) -> Response:
    try:
        ack = send()
    except TraderUnavailable as exc:
        return Response({"detail": f"{what} not sent: {exc}."}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if not ack.get("ok"):
        detail = f"{what} refused by the trader: {ack.get('error')}"
        return Response({"detail": detail}, status=status.HTTP_409_CONFLICT)
    return Response(CommandResultSerializer(ack).data)


ROW_ACTION_RESPONSES = {
    200: CommandResultSerializer,
    400: OpenApiResponse(ErrorSerializer, description="Not a symbol or order link id."),
    409: OpenApiResponse(ErrorSerializer, description="The trader refused (not its symbol, no such open order)."),
    503: OpenApiResponse(ErrorSerializer, description="No trader runs, or it did not acknowledge in time."),
}


class PositionCloseView(DangerousActionViewMixin, APIView):
    """Flatten one symbol's position with a reduce-only market order sent by the trader (never blocked)."""

    @extend_schema(operation_id="position_close", tags=TAG, request=None, responses=ROW_ACTION_RESPONSES,
                   parameters=[OpenApiParameter("symbol", str, OpenApiParameter.PATH, pattern=SYMBOL_PATH_PATTERN)])
    def post(self, request: Request, symbol: str) -> Response:
        field = serializers.RegexField(SYMBOL_PATTERN, max_length=32)
        symbol = field.run_validation(symbol.upper())
        user = request.user.get_username()
        return _row_action(lambda: position_close(user=user, symbol=symbol), f"Close of {symbol}")


class OrderCancelView(DangerousActionViewMixin, APIView):
    """Cancel one open order of the trader, named by its orderLinkId."""

    @extend_schema(operation_id="order_cancel", tags=TAG, request=None, responses=ROW_ACTION_RESPONSES,
                   parameters=[OpenApiParameter("order_link_id", str, OpenApiParameter.PATH,
                                                pattern=ORDER_LINK_ID_PATTERN)])
    def post(self, request: Request, order_link_id: str) -> Response:
        link = serializers.RegexField(ORDER_LINK_ID_PATTERN, max_length=64).run_validation(order_link_id)
        user = request.user.get_username()
        return _row_action(lambda: order_cancel(user=user, order_link_id=link), f"Cancel of {link}")
