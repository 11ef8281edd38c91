"""What a trader needs to see of the account: trade history, PnL summary, the equity curve, per-symbol status,
and the dashboard's panels all read at one failover version (``dashboard_panels``, also the websocket's).

Every view reads the product's rows (``run_id=""``) unless ``runId`` names an
integration run: runs never count as the product's trades, PnL or equity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from failover.domain.clock import to_epoch_ms
from failover.domain.enums import utc_now
from failover.selectors import safe_mode_conditions
from failover.services import failover_gate, failover_state_get
from scalper_site.api.failover_views import SafeModeConditionsView
from scalper_site.api.integration_views import RUN_ID_PATTERN
from scalper_site.api.pagination import CheckedPagination
from scalper_site.api.selectors import health_snapshot, orders_open, positions_open, symbols_status
from scalper_site.api.serializers import (
    ContractDateTimeField,
    FailoverStatusSerializer,
    HealthSnapshotSerializer,
    QueryParamsSerializer,
    ZonedDateTimeField,
    enum_field,
    number_field,
    page_query_serializer,
    page_serializer,
)
from scalper_site.api.symbols import REGIMES, STATES
from scalper_site.api.trading_views import OrderListView, PositionListView
from trading.control import HEARTBEAT_TTL_S, read_heartbeat
from trading.models import EquityTrigger, PositionSide
from trading.selectors import equity_series, pnl_summary, trades_history

TAG = ["account"]
TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT = 50, 500
EQUITY_DEFAULT_LIMIT, EQUITY_MAX_LIMIT = 1000, 10_000
MAX_STEP_S = 30 * 86_400
PANELS = ("health", "conditions", "positions", "orders", "symbols", "pnl")
READ_TRIES = 3  # a failover change in the middle of a read: read again, at most this often


class SymbolField(serializers.RegexField):
    """A Bybit symbol (``BTCUSDT``); lower case is taken as upper case."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(r"^[A-Za-z0-9]{1,32}$", max_length=32, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        return super().to_internal_value(data).upper()


def _run_id_field() -> serializers.RegexField:
    return serializers.RegexField(RUN_ID_PATTERN, required=False, max_length=64,
                                  help_text="An integration run's id; absent: the product's own.")


def _since() -> ZonedDateTimeField:
    return ZonedDateTimeField(required=False, help_text="ISO-8601 with a zone; at or after it.")


def _until() -> ZonedDateTimeField:
    return ZonedDateTimeField(required=False, help_text="ISO-8601 with a zone; at or before it.")


def _query(serializer: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    query = serializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


# -- trades ----------------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="Trade")
class TradeSerializer(serializers.Serializer):
    """One closed round trip."""

    id = serializers.IntegerField()
    symbol = serializers.CharField()
    side = enum_field(PositionSide.values, name="PositionSide")
    qty = number_field()
    entryPrice = number_field(source="entry_price")
    exitPrice = number_field(source="exit_price", help_text="Average price of the closing fills.")
    fees = number_field(help_text="Entry and exit fees.")
    realizedPnl = number_field(source="realized_pnl", help_text="Net of fees.")
    exitReason = serializers.CharField(source="close_reason", help_text="Why the position closed (e.g. CLOSED).")
    openedAt = ContractDateTimeField(source="opened_at")
    closedAt = ContractDateTimeField(source="closed_at")
    durationMs = serializers.SerializerMethodField(help_text="closedAt - openedAt, in milliseconds.")

    def get_durationMs(self, trade: dict[str, Any]) -> int:  # noqa: N802 (the contract's name)
        return max(0, to_epoch_ms(trade["closed_at"]) - to_epoch_ms(trade["opened_at"]))


class TradeListView(APIView):
    """Closed trades, newest first, paginated (``limit``/``offset``), filtered by ``symbol``, ``since``, ``until``."""

    QuerySerializer = page_query_serializer(
        default_limit=TRADES_DEFAULT_LIMIT, max_limit=TRADES_MAX_LIMIT, name="TradesQuery",
        symbol=SymbolField(required=False, help_text="One symbol, e.g. BTCUSDT."),
        since=ZonedDateTimeField(required=False, help_text="ISO-8601 with a zone; trades closed at or after it."),
        until=ZonedDateTimeField(required=False, help_text="ISO-8601 with a zone; trades closed at or before it."),
        runId=_run_id_field(),
    )
    PageSerializer = page_serializer(TradeSerializer, name="TradePage")

    @extend_schema(operation_id="trades_list", tags=TAG, parameters=[QuerySerializer],
                   responses={200: PageSerializer})
    def get(self, request: Request) -> Response:
        query = _query(self.QuerySerializer, request)
        rows = trades_history(run_id=query.get("runId", ""), symbol=query.get("symbol"), since=query.get("since"),
                              until=query.get("until"))
        paginator = CheckedPagination(limit=query["limit"], offset=query["offset"])
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(TradeSerializer(page, many=True).data)


# -- PnL -------------------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="TradeBrief")
class TradeBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    symbol = serializers.CharField()
    side = enum_field(PositionSide.values, name="PositionSide")
    realizedPnl = number_field(source="realized_pnl")
    closedAt = ContractDateTimeField(source="closed_at")


@extend_schema_serializer(component_name="PnlWindow")
class PnlWindowSerializer(serializers.Serializer):
    """The trades closed in one window, summed."""

    since = ContractDateTimeField(allow_null=True, help_text="Start of the window; null for all time.")
    realizedPnl = number_field(source="realized_pnl", help_text="Sum of the trades' realized PnL (net of fees).")
    fees = number_field(help_text="Sum of the trades' fees.")
    trades = serializers.IntegerField()
    wins = serializers.IntegerField(help_text="Trades with a realized PnL above zero.")
    losses = serializers.IntegerField(help_text="Trades with a realized PnL below zero.")
    winRate = serializers.SerializerMethodField(help_text="wins / trades, 0 to 1; null without trades.")
    bestTrade = TradeBriefSerializer(source="best", allow_null=True)
    worstTrade = TradeBriefSerializer(source="worst", allow_null=True)

    def get_winRate(self, window: dict[str, Any]) -> float | None:  # noqa: N802 (the contract's name)
        rate = window["win_rate"]
        return round(rate, 4) if rate is not None else None


class PnlSummaryView(APIView):
    """Realized PnL today (since 00:00 UTC), in the last 7 days (7 x 24 h) and all time; trades, win rate, fees."""

    @extend_schema_serializer(component_name="PnlSummaryQuery")
    class QuerySerializer(QueryParamsSerializer):
        symbol = SymbolField(required=False, help_text="One symbol; absent: every symbol.")
        runId = _run_id_field()

    @extend_schema_serializer(component_name="PnlSummary")
    class OutputSerializer(serializers.Serializer):
        timestamp = ContractDateTimeField(help_text="The moment the windows end at.")
        today = PnlWindowSerializer()
        last7Days = PnlWindowSerializer(source="last_7_days")
        allTime = PnlWindowSerializer(source="all_time")

    @extend_schema(operation_id="pnl_summary", tags=TAG, parameters=[QuerySerializer], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        query = _query(self.QuerySerializer, request)
        now = utc_now()
        summary = pnl_summary(now=now, run_id=query.get("runId", ""), symbol=query.get("symbol"))
        return Response(self.OutputSerializer({"timestamp": now, **summary}).data)


# -- equity ----------------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="EquityPoint")
class EquityPointSerializer(serializers.Serializer):
    at = ContractDateTimeField()
    equity = number_field(help_text="Wallet balance plus unrealized PnL, in USDT.")
    walletBalance = number_field(source="wallet_balance")
    unrealizedPnl = number_field(source="unrealized_pnl")
    available = number_field(help_text="Available to open new positions.")
    trigger = enum_field(EquityTrigger.values, name="EquityTrigger",
                         help_text="TIMER (every sampling interval) or POSITION_CLOSED (right after a close).")


class EquityView(APIView):
    """The equity and balance curve in a window, oldest first: its latest ``limit`` samples, or ``step`` buckets."""

    @extend_schema_serializer(component_name="EquityQuery")
    class QuerySerializer(QueryParamsSerializer):
        since = _since()
        until = _until()
        limit = serializers.IntegerField(required=False, default=EQUITY_DEFAULT_LIMIT, min_value=1,
                                         max_value=EQUITY_MAX_LIMIT, help_text="Points at most (the latest).")
        step = serializers.IntegerField(required=False, min_value=1, max_value=MAX_STEP_S,
                                        help_text="Seconds: one point per bucket of this width (its last sample).")
        runId = _run_id_field()

    @extend_schema_serializer(component_name="EquitySeries")
    class OutputSerializer(serializers.Serializer):
        step = serializers.IntegerField(allow_null=True, help_text="The bucket width applied, seconds; null: none.")
        truncated = serializers.BooleanField(help_text="Older points of the window were left out by `limit`.")
        results = EquityPointSerializer(many=True)

    @extend_schema(operation_id="equity_series", tags=TAG, parameters=[QuerySerializer], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        query = _query(self.QuerySerializer, request)
        step = query.get("step")
        points, truncated = equity_series(limit=query["limit"], run_id=query.get("runId", ""),
                                          since=query.get("since"), until=query.get("until"), step_s=step)
        return Response(self.OutputSerializer({"step": step, "truncated": truncated, "results": points}).data)


# -- symbols ---------------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="SymbolScore")
class ScoreSerializer(serializers.Serializer):
    long = serializers.FloatField(allow_null=True, help_text="0 to 1.")
    short = serializers.FloatField(allow_null=True, help_text="0 to 1.")
    at = ContractDateTimeField(allow_null=True, help_text="Time of the market event scored.")


@extend_schema_serializer(component_name="TraderLiveness")
class TraderLivenessSerializer(serializers.Serializer):
    alive = serializers.BooleanField(help_text="A heartbeat at most 5 s old.")
    heartbeatAt = ContractDateTimeField(allow_null=True)
    heartbeatAgeMs = serializers.IntegerField(allow_null=True, help_text="null: no heartbeat (none for over 10 s).")
    phase = serializers.CharField(allow_null=True)
    mode = serializers.CharField(allow_null=True)
    safeMode = serializers.BooleanField(allow_null=True, help_text="As the trader last saw it.")
    message = serializers.CharField()


@extend_schema_serializer(component_name="SymbolLeverage")
class LeverageSerializer(serializers.Serializer):
    wanted = serializers.FloatField(allow_null=True, help_text="The configured leverage, capped by the instrument.")
    applied = serializers.FloatField(allow_null=True, help_text="What the exchange confirmed; null: not yet.")
    state = serializers.ChoiceField(choices=["PENDING", "APPLIED", "RETRYING", "FAILED", "NOT_SENT"], allow_null=True)
    attempts = serializers.IntegerField(allow_null=True, help_text="Failed calls for the current wish.")
    error = serializers.CharField(allow_null=True, help_text="The last refusal, if any.")


@extend_schema_serializer(component_name="SymbolStatus")
class SymbolStatusSerializer(serializers.Serializer):
    """One symbol: live fields from the trader (null unless ``live``), position and orders from the database."""

    symbol = serializers.CharField()
    live = serializers.BooleanField(help_text="The live fields come from a trader alive now.")
    lastPrice = serializers.FloatField(allow_null=True)
    spreadBps = serializers.FloatField(allow_null=True)
    featuresReady = serializers.BooleanField(allow_null=True, help_text="Warm-up done: scores mean something.")
    regime = enum_field(REGIMES, name="Regime", allow_null=True)
    regimeSince = ContractDateTimeField(allow_null=True)
    score = ScoreSerializer(allow_null=True)
    state = enum_field(STATES, name="SymbolState", allow_null=True, help_text="The entry state machine's state.")
    stateSince = ContractDateTimeField(allow_null=True)
    stateReason = serializers.CharField(allow_null=True, allow_blank=True, help_text="Why it entered that state.")
    side = serializers.CharField(allow_null=True, help_text="The signal's side (WATCH, ARM) or the position's.")
    entryBlockedBy = serializers.ListField(child=serializers.CharField(), allow_null=True,
                                           help_text="Every reason a new entry would be refused now; [] = none.")
    marketDataAgeMs = serializers.IntegerField(allow_null=True, help_text="Since the last market message.")
    leverage = LeverageSerializer(allow_null=True, help_text="risk.default_leverage and what the exchange holds.")
    position = PositionListView.OutputSerializer(allow_null=True)
    openOrders = serializers.IntegerField()


class SymbolStatusView(APIView):
    """Per symbol: last price, regime, scores, state, why entries are blocked, data age, position, open orders."""

    @extend_schema_serializer(component_name="SymbolsStatusQuery")
    class QuerySerializer(QueryParamsSerializer):
        runId = _run_id_field()

    @extend_schema_serializer(component_name="SymbolsStatus")
    class OutputSerializer(serializers.Serializer):
        timestamp = ContractDateTimeField()
        trader = TraderLivenessSerializer()
        symbols = SymbolStatusSerializer(many=True)

    @extend_schema(operation_id="symbols_status", tags=TAG, parameters=[QuerySerializer], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        query = _query(self.QuerySerializer, request)
        return Response(self.OutputSerializer(symbols_status(run_id=query.get("runId", ""))).data)


# -- the page's panels at one failover version -------------------------------------------------------------


def _panel_readers() -> dict[str, Callable[[], Any]]:
    """Each panel of the page as its own endpoint serializes it (same shapes on the socket as over HTTP)."""

    def pnl() -> Any:
        now = timezone.now()
        return PnlSummaryView.OutputSerializer({"timestamp": now, **pnl_summary(now=now)}).data

    def conditions() -> Any:
        body = safe_mode_conditions(heartbeat=read_heartbeat(max_age_ms=HEARTBEAT_TTL_S * 1000))
        return SafeModeConditionsView.OutputSerializer(body).data

    return {
        "health": lambda: HealthSnapshotSerializer(health_snapshot()).data,
        "conditions": conditions,
        "positions": lambda: PositionListView.OutputSerializer(positions_open(), many=True).data,
        "orders": lambda: OrderListView.OutputSerializer(orders_open(), many=True).data,
        "symbols": lambda: SymbolStatusView.OutputSerializer(symbols_status()).data,
        "pnl": pnl,
    }


def dashboard_panels(*, panels: Sequence[str] = PANELS, with_status: bool = False) -> dict[str, Any]:
    """Read ``panels`` (and the failover status) tagged with the failover state's version they were read at.

    The version is read first and again after the panels: a change in between reads again, so a panel is
    never tagged with a version older than the one it shows (at worst, after the last try, with the
    older one, which makes the page read it again rather than trust it).
    """
    readers = _panel_readers()
    body: dict[str, Any] = {}
    for _ in range(READ_TRIES):
        state = failover_state_get() if with_status else None
        version = state.version if state is not None else failover_gate().version
        body = {name: readers[name]() for name in panels}
        if failover_gate().version == version:
            break
    if state is not None:
        body["status"] = FailoverStatusSerializer(state.to_status_dict(timezone.now())).data
    return {"version": version, **body}


class DashboardPanelsView(APIView):
    """The failover status and every panel of the page (health, what holds safe mode, open positions and orders,
    per-symbol status, PnL), all read at one failover version.

    What the dashboard reads when a pushed panel was older than its badge, and while its live connection is down.
    """

    @extend_schema_serializer(component_name="DashboardPanels")
    class OutputSerializer(serializers.Serializer):
        version = serializers.IntegerField(help_text="The failover state's version every part was read at (or after).")
        status = FailoverStatusSerializer()
        health = HealthSnapshotSerializer()
        conditions = SafeModeConditionsView.OutputSerializer(help_text="As GET /api/failover/conditions.")
        positions = PositionListView.OutputSerializer(many=True)
        orders = OrderListView.OutputSerializer(many=True)
        symbols = SymbolStatusView.OutputSerializer(help_text="As GET /api/symbols/status.")
        pnl = PnlSummaryView.OutputSerializer(help_text="As GET /api/pnl/summary.")

    @extend_schema(operation_id="dashboard_panels", tags=TAG, responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(dashboard_panels(with_status=True))
