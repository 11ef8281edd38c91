"""Failover endpoints: the status (spec 9), what holds safe mode, its history and episodes, and the operator's
two recovery actions."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from failover.selectors import failover_state_history, safe_mode_conditions, safe_mode_episodes, safe_mode_intervals
from failover.services import (
    ManagedFailoverState,
    RecoveryNotRetryable,
    SafeModeExitRefused,
    recovery_retry,
    safe_mode_enter,
    safe_mode_exit,
    trading_halt,
    trading_resume,
)
from failover.status_snapshot import StatusSnapshots
from scalper_site import status_fastpath
from scalper_site.api.integration_views import RUN_ID_PATTERN
from scalper_site.api.permissions import ActionViewMixin, DangerousActionViewMixin
from scalper_site.api.serializers import (
    ContractDateTimeField,
    ErrorSerializer,
    FailoverStatusSerializer,
    QueryParamsSerializer,
    StrictBooleanField,
    StrictCharField,
    ZonedDateTimeField,
)
from trading.control import read_heartbeat

TAG = ["failover"]
HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT = 500, 5000
EPISODES_DEFAULT_LIMIT, EPISODES_MAX_LIMIT = 100, 500


def _user(request: Request) -> str:
    return request.user.get_username()


def _status_response(state: ManagedFailoverState) -> Response:
    """What every operator action answers: the failover status after it (``FailoverStatusSerializer``)."""
    return Response(FailoverStatusSerializer(state.to_status_dict(timezone.now())).data)


class FailoverStatusView(APIView):
    """The product's failover state: safe mode, why and since when, the last failure and the current plan."""

    OutputSerializer = FailoverStatusSerializer
    # Rendered once per state version and reused while the database holds it (failover/status_snapshot.py).
    snapshots = StatusSnapshots(render=lambda body: FailoverStatusSerializer(body).data)

    @extend_schema(operation_id="failover_status", tags=TAG, responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        if isinstance(request.auth, AuthToken) and not request.COOKIES:
            # The fast path in front of Django may answer this token's next requests (scalper_site/status_fastpath.py).
            status_fastpath.TOKENS.accepted(request.auth.digest, request.auth.expiry)
        return Response(self.snapshots.body())


@extend_schema_serializer(component_name="FailoverStateChange")
class FailoverStateChangeSerializer(serializers.Serializer):
    """One committed version of the failover state."""

    version = serializers.IntegerField()
    at = ContractDateTimeField(help_text="When the version was committed.")
    safeMode = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True)
    planned = serializers.BooleanField()
    operatorHold = serializers.BooleanField()
    tradingEnabled = serializers.BooleanField()
    recoveryInProgress = serializers.BooleanField()
    activeFailures = serializers.ListField(child=serializers.CharField())
    currentPlanId = serializers.IntegerField(allow_null=True)
    halted = serializers.BooleanField(help_text="An operator's HALT was in force at this version.")
    haltReason = serializers.CharField(allow_null=True, help_text="The HALT's reason; null when not halted.")


@extend_schema_serializer(component_name="SafeModeInterval")
class SafeModeIntervalSerializer(serializers.Serializer):
    """A maximal interval in which entries were blocked: safe mode ON, trading disabled or an operator's HALT."""

    start = ContractDateTimeField()
    end = ContractDateTimeField(allow_null=True, help_text="null while it is still on.")
    reason = serializers.CharField(allow_null=True, help_text="The first reason recorded in the interval.")
    fromVersion = serializers.IntegerField()
    toVersion = serializers.IntegerField(help_text="The last version of the interval (included).")
    halted = serializers.BooleanField(help_text="Trading was disabled at some version of the interval.")
    operatorHalt = serializers.BooleanField(help_text="An operator's HALT was in force at some version of the "
                                                      "interval (its reason is HALT when nothing else blocked).")


class FailoverStateHistoryView(APIView):
    """The failover state's changes in a time window (oldest first) and the intervals when entries were blocked.

    `items` stops at `limit`; `intervals` cover the whole window. An interval already on at `since` starts
    at `since`. A `since` after `until` is an empty window.
    """

    @extend_schema_serializer(component_name="FailoverStateHistoryQuery")
    class QuerySerializer(QueryParamsSerializer):
        runId = serializers.RegexField(RUN_ID_PATTERN, required=False, max_length=64,
                                       help_text="An integration run's id; absent: the product.")
        since = ZonedDateTimeField(required=False, help_text="ISO-8601 with a zone; changes at or after it.")
        until = ZonedDateTimeField(required=False, help_text="ISO-8601 with a zone; changes at or before it.")
        limit = serializers.IntegerField(required=False, default=HISTORY_DEFAULT_LIMIT, min_value=1,
                                         max_value=HISTORY_MAX_LIMIT)

    @extend_schema_serializer(component_name="FailoverStateHistory")
    class OutputSerializer(serializers.Serializer):
        items = FailoverStateChangeSerializer(many=True)
        intervals = SafeModeIntervalSerializer(many=True)

    @extend_schema(operation_id="failover_state_history", tags=TAG, parameters=[QuerySerializer],
                   responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = query.validated_data
        window = {"run_id": found.get("runId", ""), "since": found.get("since"), "until": found.get("until")}
        body = {"items": failover_state_history(**window, limit=found["limit"]),
                "intervals": safe_mode_intervals(**window)}
        return Response(self.OutputSerializer(body).data)


def _run_id_field() -> serializers.RegexField:
    return serializers.RegexField(RUN_ID_PATTERN, required=False, max_length=64,
                                  help_text="An integration run's id; absent: the product.")


@extend_schema_serializer(component_name="PlanBrief")
class PlanBriefSerializer(serializers.Serializer):
    """A recovery plan and where each of its steps stands."""

    @extend_schema_serializer(component_name="PlanBriefStep")
    class StepSerializer(serializers.Serializer):
        type = serializers.CharField()
        status = serializers.CharField()

    planId = serializers.CharField()
    failureType = serializers.CharField()
    status = serializers.CharField(help_text="PENDING, RUNNING, DONE, FAILED, WAITING_OPERATOR or SUPERSEDED.")
    attempts = serializers.IntegerField()
    nextRetryAt = ContractDateTimeField(allow_null=True, help_text="When a FAILED plan is retried next.")
    steps = StepSerializer(many=True)


@extend_schema_serializer(component_name="SafeModeCondition")
class SafeModeConditionSerializer(serializers.Serializer):
    """One condition holding safe mode, what ends it and, for a quiet window, how long is left."""

    type = serializers.CharField(help_text="A failure type, CONFIG_FALLBACK, OPERATOR_HOLD or RECOVERY_PLAN.")
    since = ContractDateTimeField(allow_null=True, help_text="When it was reported (the latest report of the type).")
    clearedBy = serializers.CharField(help_text="What ends it.")
    quietWindowS = serializers.FloatField(allow_null=True, help_text="Set for types that clear after a quiet window.")
    lastIncidentAt = ContractDateTimeField(allow_null=True, help_text="The last incident the trader's detectors saw.")
    clearsInS = serializers.FloatField(allow_null=True, help_text="Seconds left of the quiet window (at the latest); "
                                                                  "null when the trader does not report it.")
    message = serializers.CharField()


class SafeModeConditionsView(APIView):
    """What holds safe mode now and what ends each part of it, with the quiet windows' countdowns."""

    @extend_schema_serializer(component_name="SafeModeConditionsQuery")
    class QuerySerializer(QueryParamsSerializer):
        runId = _run_id_field()

    @extend_schema_serializer(component_name="SafeModeConditions")
    class OutputSerializer(serializers.Serializer):
        version = serializers.IntegerField(allow_null=True, help_text="null: no state recorded yet.")
        safeMode = serializers.BooleanField(allow_null=True)
        conditions = SafeModeConditionSerializer(many=True)
        plan = PlanBriefSerializer(allow_null=True, help_text="The current plan, whatever its status.")

    @extend_schema(operation_id="failover_conditions", tags=TAG, parameters=[QuerySerializer],
                   responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        run_id = query.validated_data.get("runId", "")
        body = safe_mode_conditions(run_id=run_id, heartbeat=read_heartbeat(run_id=run_id))
        return Response(self.OutputSerializer(body).data)


@extend_schema_serializer(component_name="SafeModeEpisode")
class SafeModeEpisodeSerializer(serializers.Serializer):
    """A past (or current) safe-mode episode and the plans that ran in it."""

    start = ContractDateTimeField()
    end = ContractDateTimeField(allow_null=True, help_text="null while it is still on.")
    durationMs = serializers.IntegerField(help_text="Up to now while it is still on.")
    reason = serializers.CharField(allow_null=True, help_text="The first reason recorded in it.")
    halted = serializers.BooleanField(help_text="Trading was disabled at some point of it.")
    operatorHalt = serializers.BooleanField(help_text="An operator's HALT was in force at some point of it "
                                                      "(its reason is HALT when nothing else blocked entries).")
    plans = PlanBriefSerializer(many=True)


class SafeModeEpisodesView(APIView):
    """Safe-mode episodes in a time window, newest first, each with the recovery plans that ran in it."""

    @extend_schema_serializer(component_name="SafeModeEpisodesQuery")
    class QuerySerializer(QueryParamsSerializer):
        runId = _run_id_field()
        since = ZonedDateTimeField(required=False, help_text="ISO-8601 with a zone; an episode on at it starts there.")
        until = ZonedDateTimeField(required=False, help_text="ISO-8601 with a zone.")
        reason = serializers.CharField(required=False, max_length=40, help_text="The episode's first reason.")
        limit = serializers.IntegerField(required=False, default=EPISODES_DEFAULT_LIMIT, min_value=1,
                                         max_value=EPISODES_MAX_LIMIT)

    @extend_schema_serializer(component_name="SafeModeEpisodes")
    class OutputSerializer(serializers.Serializer):
        items = SafeModeEpisodeSerializer(many=True)

    @extend_schema(operation_id="failover_episodes", tags=TAG, parameters=[QuerySerializer],
                   responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = query.validated_data
        items = safe_mode_episodes(run_id=found.get("runId", ""), since=found.get("since"), until=found.get("until"),
                                   reason=found.get("reason"), limit=found["limit"])
        return Response(self.OutputSerializer({"items": items}).data)


class RecoveryRetryView(ActionViewMixin, APIView):
    """Run a FAILED (or WAITING_OPERATOR) recovery plan again from its failed step."""

    OutputSerializer = FailoverStatusSerializer

    @extend_schema(
        operation_id="failover_retry_recovery",
        tags=TAG,
        request=None,
        responses={200: OutputSerializer,
                   409: OpenApiResponse(ErrorSerializer, description="No FAILED or WAITING_OPERATOR plan to retry.")},
    )
    def post(self, request: Request) -> Response:
        try:
            state = recovery_retry(user=_user(request))
        except RecoveryNotRetryable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return _status_response(state)


class SafeModeExitView(DangerousActionViewMixin, APIView):
    """Turn safe mode off; refused (409, with the blockers) while recovery runs or failures are active unless forced."""

    @extend_schema_serializer(component_name="SafeModeExitInput")
    class InputSerializer(serializers.Serializer):
        force = StrictBooleanField(required=False, default=False)

    OutputSerializer = FailoverStatusSerializer

    @extend_schema_serializer(component_name="SafeModeExitRefused")
    class RefusedSerializer(serializers.Serializer):
        detail = serializers.CharField()
        blockers = serializers.ListField(child=serializers.CharField())

    @extend_schema(
        operation_id="failover_exit_safe_mode",
        tags=TAG,
        request=InputSerializer,
        responses={200: OutputSerializer,
                   409: OpenApiResponse(RefusedSerializer, description="Refused while recovery runs or failures "
                                                                       "are active (the blockers); force overrides.")},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            state = safe_mode_exit(user=_user(request), force=data.validated_data["force"])
        except SafeModeExitRefused as exc:
            body = {"detail": "Safe mode stays on: " + "; ".join(exc.blockers), "blockers": exc.blockers}
            return Response(body, status=status.HTTP_409_CONFLICT)
        return _status_response(state)


@extend_schema_serializer(component_name="OperatorReasonInput")
class OperatorReasonSerializer(serializers.Serializer):
    """Why the operator acts: kept in the state, the audit trail and the alert."""

    reason = StrictCharField(min_length=1, max_length=200, trim_whitespace=False)


class SafeModeReasonSerializer(serializers.Serializer):
    """Why the operator turns safe mode on: shown as the state's reason, a short code such as MAINTENANCE."""

    reason = StrictCharField(min_length=1, max_length=40, trim_whitespace=False)  # the state's reason column


class SafeModeEnterView(DangerousActionViewMixin, APIView):
    """Turn safe mode on by hand: no new entries; only an operator's exit turns it off again (audited)."""

    InputSerializer = SafeModeReasonSerializer
    OutputSerializer = FailoverStatusSerializer

    @extend_schema(operation_id="failover_enter_safe_mode", tags=TAG, request=InputSerializer,
                   responses={200: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        state = safe_mode_enter(reason=data.validated_data["reason"], user=_user(request))
        return _status_response(state)


class TraderHaltView(DangerousActionViewMixin, APIView):
    """HALT: no new entries at all, across restarts, until RESUME (audited; a HALT alert goes out)."""

    InputSerializer = OperatorReasonSerializer
    OutputSerializer = FailoverStatusSerializer

    @extend_schema(operation_id="trader_halt", tags=TAG, request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        state = trading_halt(reason=data.validated_data["reason"], user=_user(request))
        return _status_response(state)


class TraderResumeView(DangerousActionViewMixin, APIView):
    """Lift a HALT (audited; a RESUME alert goes out); safe mode, if on, still holds entries."""

    OutputSerializer = FailoverStatusSerializer

    @extend_schema(operation_id="trader_resume", tags=TAG, request=None, responses={200: OutputSerializer})
    def post(self, request: Request) -> Response:
        state = trading_resume(user=_user(request))
        return _status_response(state)
