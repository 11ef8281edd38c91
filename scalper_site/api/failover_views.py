"""Failover endpoints: the status (spec 9) and the operator's two recovery actions."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from failover.services import RecoveryNotRetryable, SafeModeExitRefused, failover_status, recovery_retry, safe_mode_exit
from scalper_site.api.permissions import ActionViewMixin
from scalper_site.api.serializers import ErrorSerializer, FailoverStatusSerializer, StrictBooleanField

TAG = ["failover"]


def _user(request: Request) -> str:
    return request.user.get_username()


class FailoverStatusView(APIView):
    """The product's failover state: safe mode, why and since when, the last failure and the current plan."""

    OutputSerializer = FailoverStatusSerializer

    @extend_schema(operation_id="failover_status", tags=TAG, responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(failover_status()).data)


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
        return Response(self.OutputSerializer(state.to_status_dict(timezone.now())).data)


class SafeModeExitView(ActionViewMixin, APIView):
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
        return Response(self.OutputSerializer(state.to_status_dict(timezone.now())).data)
