"""Integration-test endpoints (spec 9): scenarios, starting a run, recent runs, one run's report."""

from __future__ import annotations

import re
import time

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from itests.services import (
    UnknownScenario,
    integration_run_enqueue,
    integration_run_get,
    integration_run_report,
    integration_run_summary,
    integration_runs_list,
    scenarios_list,
)
from scalper_site.api.actions import integration_run_audit
from scalper_site.api.permissions import ActionViewMixin
from scalper_site.api.serializers import (
    ErrorSerializer,
    IntegrationRunReportSerializer,
    IntegrationRunSummarySerializer,
    QueryParamsSerializer,
    StrictChoiceField,
    page_query_serializer,
)

TAG = ["integration tests"]
MAX_WAIT_S = 120.0  # ?wait holds a server thread: bounded well below any proxy timeout
WAIT_POLL_S = 0.25
RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT = 20, 200
# Run ids are ``run-YYYYMMDD-HHmmss[-n]``; anything outside this set cannot name a run (nor reach the database).
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)


class ScenarioListView(APIView):
    """Every integration scenario (IntegrationScenarioMeta), in the spec's order."""

    @extend_schema_serializer(component_name="IntegrationScenarioMeta")
    class OutputSerializer(serializers.Serializer):
        id = serializers.CharField()
        name = serializers.CharField()
        description = serializers.CharField()

    @extend_schema(operation_id="integration_scenarios_list", tags=TAG, responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(scenarios_list(), many=True).data)


class RunStartView(ActionViewMixin, APIView):
    """Queue a run of one scenario: 202 with its id while it runs, 200 once it finished within ``?wait``."""

    @extend_schema_serializer(component_name="IntegrationRunStartInput")
    class InputSerializer(serializers.Serializer):
        # The schema lists the ids: a blank or unknown one is refused by the schema as by the view.
        scenarioId = StrictChoiceField(choices=[s["id"] for s in scenarios_list()])

    @extend_schema_serializer(component_name="IntegrationRunWaitQuery")
    class QuerySerializer(QueryParamsSerializer):
        wait = serializers.FloatField(required=False, default=0.0, min_value=0.0, max_value=MAX_WAIT_S,
                                      help_text=f"Seconds to wait for the result (0 to {MAX_WAIT_S:g}).")

    @extend_schema_serializer(component_name="IntegrationRunStarted")
    class OutputSerializer(serializers.Serializer):
        """The spec's ``{runId, scenarioId, success}``, plus the run's status."""

        runId = serializers.CharField()
        scenarioId = serializers.CharField()
        success = serializers.BooleanField(allow_null=True, help_text="null while the run is queued or running.")
        status = serializers.CharField(help_text="QUEUED, RUNNING or DONE (beside the spec's three fields).")

    @extend_schema(
        operation_id="integration_run_start",
        tags=TAG,
        request=InputSerializer,
        parameters=[QuerySerializer],
        responses={
            200: OpenApiResponse(OutputSerializer, description="The run finished within `wait`: `success` is its "
                                                               "result."),
            202: OpenApiResponse(OutputSerializer, description="The run is queued (or running): `success` is null; "
                                                               "follow it at /api/tests/integration/runs/{runId}."),
        },
    )
    def post(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        scenario_id, user = data.validated_data["scenarioId"], request.user.get_username()
        try:
            with transaction.atomic():
                record = integration_run_enqueue(scenario_id=scenario_id, user=user)
                integration_run_audit(user=user, scenario_id=scenario_id, run_id=record.run_id)
        except UnknownScenario as exc:  # a scenario gone between validation and enqueue: the same refusal
            raise serializers.ValidationError({"scenarioId": [str(exc)]}) from None
        summary = self._wait(record.run_id, integration_run_summary(record), query.validated_data["wait"])
        code = status.HTTP_202_ACCEPTED if summary["success"] is None else status.HTTP_200_OK
        return Response(self.OutputSerializer(summary).data, status=code)

    @staticmethod
    def _wait(run_id: str, summary: dict, wait_s: float) -> dict:
        """Poll the run's row until it has a result or ``wait_s`` passed."""
        deadline = time.monotonic() + wait_s
        while summary["success"] is None and time.monotonic() < deadline:
            time.sleep(min(WAIT_POLL_S, max(0.0, deadline - time.monotonic())))
            record = integration_run_get(run_id=run_id)
            if record is not None:
                summary = integration_run_summary(record)
        return summary


class RunListView(APIView):
    """The last runs, latest first: the spec's list, a JSON array.

    Paged with ``limit``/``offset``; the ``Link`` header names the next and previous pages (RFC 8288).
    """

    QuerySerializer = page_query_serializer(default_limit=RUNS_DEFAULT_LIMIT, max_limit=RUNS_MAX_LIMIT,
                                            name="IntegrationRunsQuery")

    @extend_schema(
        operation_id="integration_runs_list",
        tags=TAG,
        parameters=[
            QuerySerializer,
            OpenApiParameter("Link", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[200],
                             description='The other pages, e.g. `<...?limit=20&offset=20>; rel="next", '
                                         '<...?limit=20&offset=0>; rel="prev"`; absent when there is none.'),
        ],
        responses={200: IntegrationRunSummarySerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit, offset = query.validated_data["limit"], query.validated_data["offset"]
        # One row more than asked tells whether a next page exists without counting the table.
        records = integration_runs_list(limit=limit + 1, offset=offset)
        base = request.build_absolute_uri(request.path)
        links = []
        if len(records) > limit:
            links.append(f'<{base}?limit={limit}&offset={offset + limit}>; rel="next"')
        if offset:
            links.append(f'<{base}?limit={limit}&offset={max(0, offset - limit)}>; rel="prev"')
        runs = [integration_run_summary(r) for r in records[:limit]]
        return Response(IntegrationRunSummarySerializer(runs, many=True).data,
                        headers={"Link": ", ".join(links)} if links else None)


class RunReportView(APIView):
    """One run's full IntegrationRunReport (its result undecided while the run is not done)."""

    @extend_schema(
        operation_id="integration_run_report",
        tags=TAG,
        parameters=[OpenApiParameter("run_id", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=RUN_ID_PATTERN)],
        responses={200: IntegrationRunReportSerializer,
                   404: OpenApiResponse(ErrorSerializer, description="No run with this id.")},
    )
    def get(self, request: Request, run_id: str) -> Response:
        record = integration_run_get(run_id=run_id) if _RUN_ID.fullmatch(run_id) else None
        if record is None:
            return Response({"detail": f"No integration run {run_id!r}."}, status=status.HTTP_404_NOT_FOUND)
        # The report is passed through whole: the runner may record more than the schema's fields (its checks).
        return Response(integration_run_report(record))
