"""The API's JSON shapes (spec sections 3, 4, 5, 9 and 10), camelCase as the contract names them.

Output serializers here describe bodies that services already build as dicts;
running a dict through one keeps the response to the documented fields and
gives drf-spectacular the schema. Views nest their own Input/Output classes and
reuse these for the shared parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers

from failover.domain.clock import iso_ms
from failover.models import FailureType, StepStatus, StepType


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean and nothing else: "yes", 1 or "true" are wrong types, not truthy values."""

    default_error_messages = {"invalid": "Must be a JSON boolean (true or false)."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField would quietly turn 123 into "123"."""

    default_error_messages = {"invalid": "Must be a JSON string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    """One of fixed strings and nothing else: DRF's ChoiceField would accept 1 for "1"."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class ZonedDateTimeField(serializers.DateTimeField):
    """An ISO-8601 time naming its zone (``Z`` or an offset); a naive time is refused, not read in the server's zone."""

    default_error_messages = {"naive": "Must name its zone: 'Z' or an offset such as +02:00."}

    def enforce_timezone(self, value: Any) -> Any:
        if value.tzinfo is None or value.utcoffset() is None:
            self.fail("naive")
        return super().enforce_timezone(value)


class ContractDateTimeField(serializers.DateTimeField):
    """Write datetimes in the contract's form (``2025-11-18T15:20:30.000Z``); strings from services pass as they are."""

    def to_representation(self, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return iso_ms(int(value.timestamp() * 1000))


class EnumField(serializers.CharField):
    """A string of a fixed set, published as a schema component of its own name.

    Named explicitly because the contract reuses property names ("type", "status")
    for different sets, which drf-spectacular's automatic enum naming flags as collisions.
    """

    def __init__(self, values: list[str], *, enum_name: str, **kwargs: Any) -> None:
        self.enum_values = list(values)
        self.enum_name = enum_name
        super().__init__(**kwargs)


class EnumFieldExtension(OpenApiSerializerFieldExtension):
    """Document an ``EnumField`` as a reference to its named component."""

    target_class = EnumField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        field: EnumField = self.target
        component = ResolvedComponent(
            name=field.enum_name,
            type=ResolvedComponent.SCHEMA,
            schema={"type": "string", "enum": field.enum_values},
            object=field.enum_name,
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref


def enum_field(values: list[str], *, name: str, **kwargs: Any) -> EnumField:
    return EnumField(values, enum_name=name, **kwargs)


def number_field(**kwargs: Any) -> serializers.DecimalField:
    """A price, quantity or amount: leaves as a JSON number, as the spec's snapshots write them."""
    return serializers.DecimalField(max_digits=28, decimal_places=10, coerce_to_string=False, **kwargs)


HEALTH_STATUSES = ["OK", "WARN", "ERROR"]


class ErrorSerializer(serializers.Serializer):
    """What every refusal carries: a human-readable ``detail``; a refused input also names its fields in ``errors``."""

    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="A 400's messages by field (a query parameter, a body field, or non_field_errors for the body).",
    )


class QueryParamsSerializer(serializers.Serializer):
    """Query parameters; one given with no value (``?level=``) is refused, as the schema says, not taken as absent.

    DRF reads a query string like a submitted form, where an empty optional field means "not given".
    """

    def to_internal_value(self, data: Any) -> Any:
        given = data if isinstance(data, Mapping) else {}
        blank = {name: ["This parameter may not be blank."] for name in self.fields if given.get(name) == ""}
        if blank:
            raise serializers.ValidationError(blank)
        return super().to_internal_value(data)


# Offsets past any table this product fills, yet far below the 64-bit limit the databases put on OFFSET.
MAX_OFFSET = 1_000_000_000


def page_query_serializer(*, default_limit: int, max_limit: int, name: str,
                          **filters: serializers.Field) -> type[QueryParamsSerializer]:
    """The query of a paginated list: ``filters``, and ``limit``/``offset`` as bounded integers (else a 400)."""
    fields = {
        **filters,
        "limit": serializers.IntegerField(required=False, default=default_limit, min_value=1, max_value=max_limit),
        "offset": serializers.IntegerField(required=False, default=0, min_value=0, max_value=MAX_OFFSET),
    }
    return type(f"{name}Serializer", (QueryParamsSerializer,), fields)


class FailureEventSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField()
    type = enum_field(FailureType.values, name="FailureType")
    source = serializers.CharField()
    message = serializers.CharField(allow_blank=True)
    details = serializers.JSONField()


class RecoveryStepSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = enum_field(StepType.values, name="StepType")
    status = enum_field(StepStatus.values, name="StepStatus")
    createdAt = serializers.DateTimeField()
    startedAt = serializers.DateTimeField(allow_null=True)
    finishedAt = serializers.DateTimeField(allow_null=True)
    details = serializers.JSONField()
    errorMessage = serializers.CharField(allow_null=True)


class RecoveryPlanSerializer(serializers.Serializer):
    lastGeneratedAt = serializers.DateTimeField()
    pendingSteps = RecoveryStepSerializer(many=True)
    completedSteps = RecoveryStepSerializer(many=True)
    # Beside the spec's three fields the FailoverManager adds these when it knows them.
    planId = serializers.CharField(required=False)
    status = serializers.CharField(required=False)
    failureType = enum_field(FailureType.values, name="FailureType", required=False)
    mergedFailureTypes = serializers.ListField(child=serializers.CharField(), required=False)
    symbols = serializers.ListField(child=serializers.CharField(), required=False)
    supersedes = serializers.CharField(required=False)


class HaltSerializer(serializers.Serializer):
    """Why, by whom and since when trading is halted."""

    reason = serializers.CharField()
    by = serializers.CharField()
    at = serializers.CharField(allow_null=True, help_text="UTC, e.g. 2025-11-18T15:20:30.000Z.")


class FailoverStatusSerializer(serializers.Serializer):
    """``GET /api/failover/status`` (spec 9) and the ``failover.status`` websocket message's ``data``."""

    timestamp = serializers.DateTimeField()
    safeMode = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    lastFailure = FailureEventSerializer(allow_null=True)
    recoveryInProgress = serializers.BooleanField()
    currentPlan = RecoveryPlanSerializer(allow_null=True)
    planned = serializers.BooleanField(required=False, help_text="Present (true) for an operator's planned safe mode.")
    halted = serializers.BooleanField(required=False, help_text="An operator's HALT: no new entries until RESUME.")
    halt = HaltSerializer(required=False, allow_null=True, help_text="The HALT in force, null when not halted.")


class ServiceHealthSerializer(serializers.Serializer):
    status = enum_field(HEALTH_STATUSES, name="HealthStatus")
    lastUpdateAt = serializers.DateTimeField(allow_null=True)
    message = serializers.CharField(allow_blank=True)


class TraderLeaseSerializer(serializers.Serializer):
    account = serializers.CharField(allow_null=True)
    holder = serializers.CharField(allow_null=True)
    token = serializers.IntegerField(allow_null=True)
    expiresAt = serializers.FloatField(allow_null=True, help_text="Epoch seconds.")
    held = serializers.BooleanField(allow_null=True)


class TraderDcpSerializer(serializers.Serializer):
    armed = serializers.BooleanField(allow_null=True, help_text="Bybit's Disconnection Cancel All is armed.")
    windowS = serializers.IntegerField(allow_null=True, help_text="The configured window (exchange.dcp_window_s).")
    supported = serializers.BooleanField(allow_null=True, help_text="The account has DCP (null: not asked yet).")
    reason = serializers.CharField(allow_null=True, allow_blank=True,
                                   help_text="Why it is not armed, code first (empty when armed).")


class HealthSnapshotSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField()
    status = enum_field(HEALTH_STATUSES, name="HealthStatus")
    services = serializers.DictField(child=ServiceHealthSerializer())
    role = serializers.ChoiceField(choices=["LEADER", "STANDBY"], allow_null=True, required=False,
                                   help_text="The trader's role on the account lease (null: no trader heartbeat).")
    lease = TraderLeaseSerializer(allow_null=True, required=False, help_text="The account lease the trader holds.")
    dcp = TraderDcpSerializer(allow_null=True, required=False, help_text="Bybit's DCP as the leader armed it.")


class IntegrationResultSerializer(serializers.Serializer):
    scenarioId = serializers.CharField()
    startedAt = serializers.DateTimeField(allow_null=True)
    finishedAt = serializers.DateTimeField(allow_null=True)
    success = serializers.BooleanField(allow_null=True)
    errors = serializers.ListField(child=serializers.JSONField())
    metrics = serializers.JSONField()
    checks = serializers.ListField(child=serializers.JSONField(), required=False,
                                   help_text="What the runner checked, when it records it.")


class IntegrationRunReportSerializer(serializers.Serializer):
    runId = serializers.CharField()
    scenarioId = serializers.CharField()
    result = IntegrationResultSerializer(allow_null=True)


class IntegrationRunSummarySerializer(serializers.Serializer):
    runId = serializers.CharField()
    scenarioId = serializers.CharField()
    status = serializers.CharField()
    success = serializers.BooleanField(allow_null=True)
    startedAt = serializers.DateTimeField(allow_null=True)
    finishedAt = serializers.DateTimeField(allow_null=True)
    errorsCount = serializers.IntegerField()


def page_serializer(item: type[serializers.Serializer], *, name: str) -> type[serializers.Serializer]:
    """A limit/offset page of ``item`` rows, named ``name`` in the schema."""
    fields = {
        "count": serializers.IntegerField(required=False, help_text="Total rows, where it is known."),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": item(many=True),
    }
    return type(f"{name}Serializer", (serializers.Serializer,), fields)
