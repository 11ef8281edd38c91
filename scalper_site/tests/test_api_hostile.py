"""The API under hostile input: every refusal is a documented 4xx with the API's error body, never a 5xx.

Each request here is one that used to reach a server error or an undocumented
answer (a 10**30 offset, JSON nested 50,000 deep, a form-encoded body, a NUL in
a run id). The responses are checked against the OpenAPI schema the API serves:
the status is documented for the operation and the body matches it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import jsonschema
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.exceptions import DisallowedHost
from django.test import Client
from rest_framework.exceptions import ValidationError

from failover import services
from failover.models import OperatorAction
from itests.models import IntegrationRunRecord
from itests.services import scenarios_list
from scalper_site.api import errors
from scalper_site.api.parsers import MAX_BODY_BYTES, MAX_DEPTH, json_depth_exceeds
from scalper_site.api.serializers import MAX_OFFSET

pytestmark = pytest.mark.django_db

RUNS, ALERTS = "/api/tests/integration/runs", "/api/alerts"
EXIT, RUN = "/api/failover/exit-safe-mode", "/api/tests/integration/run"
BODY_ACTIONS = [EXIT, RUN]


@pytest.fixture
def staff() -> Client:
    cache.clear()  # a fresh action budget
    client = Client()
    user = get_user_model().objects.create_user("boss", password="pw-123456-x", is_staff=True)
    # The exit-safe-mode body is read only past the permission check: the operator's permission too.
    user.user_permissions.add(Permission.objects.get(codename="operate_trader", content_type__app_label="failover"))
    client.force_login(user)
    return client


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema understands it (null allowed)."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [converted, {"type": "null"}]} if node.get("nullable") else converted


def assert_documented(schema: dict[str, Any], method: str, template: str, response: Any) -> dict[str, Any]:
    """Assert the operation documents ``response``'s status and content type, and its body matches the schema.

    Draft 4 reads ``exclusiveMinimum: true`` (the bounds of a decimal field) as OpenAPI 3.0 means it.
    """
    operation = schema["paths"][template][method.lower()]
    code = str(response.status_code)
    assert code in operation["responses"], f"{method} {template} does not document {code}"
    content = operation["responses"][code]["content"]
    media_type = response["Content-Type"].split(";")[0]
    assert media_type in content, f"{method} {template} {code} documents {list(content)}, got {media_type}"
    body = response.json()
    document = _json_schema({**content[media_type]["schema"], "components": schema["components"]})
    jsonschema.Draft4Validator(document).validate(body)
    return body


def refused_field(body: dict[str, Any]) -> str:
    errors_ = body.get("errors") or {}
    return next(iter(errors_)) if errors_ else "detail"


def nothing_changed() -> None:
    assert services.failover_status()["safeMode"] is True  # fail closed: still on
    assert not OperatorAction.objects.exists() and not IntegrationRunRecord.objects.exists()


# -- query parameters: bounded integers, a 400 naming the parameter --------------------------------------


@pytest.mark.parametrize("path", [RUNS, ALERTS])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"offset={10**30}", "offset"),  # was a database error (beyond a 64-bit OFFSET)
        (f"offset={MAX_OFFSET + 1}", "offset"),
        ("offset=" + "9" * 5000, "offset"),  # past Python's int-conversion limit
        ("offset=-1", "offset"),
        ("offset=1e3", "offset"),
        ("offset=%00", "offset"),
        ("limit=0", "limit"),
        (f"limit={10**30}", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),  # a parameter with no value is refused, not read as absent
        ("offset=&limit=5", "offset"),
    ],
)
def test_paging_parameters_out_of_range_are_a_400_naming_them(staff, schema, path, query, field):
    response = staff.get(f"{path}?{query}")
    assert response.status_code == 400
    body = assert_documented(schema, "GET", path, response)
    assert refused_field(body) == field and body["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize(("path", "query", "field"), [(ALERTS, "level=", "level"), (ALERTS, "level=PANIC", "level"),
                                                    (RUN, "wait=", "wait"), (RUN, "wait=inf", "wait")])
def test_other_query_parameters_refuse_blank_and_unknown_values(staff, schema, path, query, field):
    method = "POST" if path == RUN else "GET"
    body = '{"scenarioId": "TEST_C"}'
    response = staff.generic(method, f"{path}?{query}", data=body, content_type="application/json")
    assert response.status_code == 400 and refused_field(assert_documented(schema, method, path, response)) == field
    nothing_changed()


@pytest.mark.parametrize("path", [RUNS, ALERTS])
def test_the_largest_offset_is_an_empty_page(staff, schema, path):
    response = staff.get(f"{path}?offset={MAX_OFFSET}&limit=1")
    body = assert_documented(schema, "GET", path, response)
    assert response.status_code == 200 and (body if path == RUNS else body["results"]) == []


def test_alert_paging_takes_what_was_validated(staff):
    # DRF's paginator alone would read "1.0" as a bad limit and quietly use its default.
    page = staff.get(f"{ALERTS}?limit=1.0&offset=0").json()
    assert page["next"] is None and page["results"] == []


# -- request bodies: JSON only, bounded in size and depth -----------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", BODY_ACTIONS)
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (nested(30_000), "nested too deep"),  # was a RecursionError
        ('{"force": ' + nested(MAX_DEPTH) + "}", "nested too deep"),  # one level over the bound
        (nested(50_000), "too large"),  # the issue's 50,000 levels are over the size bound too
        ('{"force": "' + "x" * MAX_BODY_BYTES + '"}', "too large"),
        ('{"force": ' + "1" * 5000 + "}", "JSON parse error"),  # int-conversion limit: ValueError, not a decode error
        ('{"force": NaN}', "JSON parse error"),
        ('{"force": tru', "JSON parse error"),
        (b'{"force": "\xff"}', "not valid utf-8"),
    ],
)
def test_hostile_json_bodies_are_a_400_and_change_nothing(staff, schema, path, body, says):
    response = staff.post(path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert says in assert_documented(schema, "POST", path, response)["detail"]
    nothing_changed()


@pytest.mark.parametrize("path", BODY_ACTIONS)
def test_nesting_at_the_bound_parses_and_brackets_in_strings_do_not_count(staff, schema, path):
    field = "force" if path == EXIT else "scenarioId"
    for value in (nested(MAX_DEPTH - 1), json.dumps("[" * 10_000)):
        response = staff.post(path, data=f'{{"{field}": {value}}}', content_type="application/json")
        assert refused_field(assert_documented(schema, "POST", path, response)) == field  # the field, not the parser
    nothing_changed()


@pytest.mark.parametrize("path", BODY_ACTIONS)
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # what a cross-site "simple" request sends
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",  # no boundary at all
        "application/xml",
        "application/json-patch+json",
        "",
    ],
)
def test_bodies_of_any_other_type_are_a_415_and_change_nothing(staff, schema, path, content_type):
    response = staff.generic("POST", path, data=b'{"force": true, "scenarioId": "TEST_C"}', content_type=content_type)
    assert response.status_code == 415
    assert "Unsupported media type" in assert_documented(schema, "POST", path, response)["detail"]
    nothing_changed()


def test_an_accept_header_other_than_json_is_a_documented_406(staff, schema):
    response = staff.get("/api/failover/status", HTTP_ACCEPT="application/xml")
    assert response.status_code == 406 and assert_documented(schema, "GET", "/api/failover/status", response)


# -- paths: a run id that cannot exist, and paths that name nothing ----------------------------------------


@pytest.mark.parametrize("run_id", ["a%00b", "a%2Fb", "x" * 65, "run-1%0A", "%F0%9F%92%A5", "..", "-run"])
def test_run_ids_that_cannot_exist_are_a_json_404(staff, schema, run_id):
    response = staff.get(f"{RUNS}/{run_id}")
    assert response.status_code == 404
    assert assert_documented(schema, "GET", RUNS + "/{run_id}", response)["detail"]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "OPTIONS"])
def test_a_path_under_api_that_names_nothing_is_a_json_404(staff, method):
    response = staff.generic(method, "/api/no/such/endpoint")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "No API endpoint at '/api/no/such/endpoint'."}


# -- the error shape and the last line behind it -----------------------------------------------------------


def test_a_refused_input_has_one_shape_detail_and_errors_by_field(staff, schema):
    response = staff.post(RUN, data={"scenarioId": "NOPE"}, content_type="application/json")
    body = assert_documented(schema, "POST", RUN, response)
    assert response.status_code == 400 and set(body) == {"detail", "errors"}
    assert body["errors"] == {"scenarioId": ['"NOPE" is not a valid choice.']}
    assert body["detail"] == 'scenarioId: "NOPE" is not a valid choice.'


def test_validation_errors_of_any_nesting_flatten_to_messages():
    assert errors.validation_error_body(ValidationError(["no object"]).detail) == {
        "detail": "no object", "errors": {"non_field_errors": ["no object"]}}
    nested_errors = ValidationError({"a": {"b": ["bad"]}, "c": ["x", "y"]}).detail
    assert errors.validation_error_body(nested_errors) == {
        "detail": "a: b: bad; c: x y", "errors": {"a": ["b: bad"], "c": ["x", "y"]}}


def test_an_unexpected_error_is_a_logged_json_500(caplog):
    with caplog.at_level(logging.ERROR, logger="scalper_site.api.errors"):
        response = errors.api_exception_handler(RuntimeError("boom"), {"view": None})
    assert response.status_code == 500 and response.data == {"detail": errors.INTERNAL_ERROR}
    (record,) = caplog.records
    assert record.exc_info and record.exc_info[1].args == ("boom",)


def test_a_suspicious_request_is_a_400_that_does_not_echo_django_s_message():
    response = errors.api_exception_handler(DisallowedHost("Invalid HTTP_HOST header: add it to ALLOWED_HOSTS"), {})
    assert response.status_code == 400 and response.data == {"detail": "Bad request."}


@pytest.mark.parametrize(
    ("text", "limit", "exceeds"),
    [("[[]]", 2, False), ("[[[]]]", 2, True), ('{"a": {"b": 1}}', 2, False), ('["[[[[", "\\"[[["]', 1, False),
     ('{"a": "\\\\"}', 1, False), ("[1, [2], [3]]", 2, False)],
)
def test_depth_is_counted_outside_strings_only(text, limit, exceeds):
    assert json_depth_exceeds(text, limit) is exceeds


# -- the schema documents what the API gives ---------------------------------------------------------------


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def test_every_operation_documents_its_refusals_with_the_error_body(schema):
    error = {"$ref": "#/components/schemas/Error"}
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        expected = {"401", "403", "406"}
        if "requestBody" in operation:
            expected |= {"400", "415"}
            assert set(operation["requestBody"]["content"]) == {"application/json"}, path
        if any(p["in"] == "query" for p in operation.get("parameters", [])):
            expected.add("400")
        if "{" in path:
            expected.add("404")
        if method == "POST":
            expected.add("429")  # every action is throttled
        assert expected <= set(responses), f"{method} {path} lacks {expected - set(responses)}"
        for code in expected:
            assert responses[code]["content"]["application/json"]["schema"] == error, (method, path, code)
            assert responses[code]["description"], (method, path, code)
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail"]


def test_the_schema_says_which_scenario_ids_and_paging_values_are_valid(schema):
    enum = schema["components"]["schemas"]["ScenarioIdEnum"]["enum"]
    assert enum == [s["id"] for s in scenarios_list()] and "" not in enum
    start = schema["components"]["schemas"]["IntegrationRunStartInput"]
    assert start["required"] == ["scenarioId"]
    for path, max_limit in ((RUNS, 200), (ALERTS, 500)):
        params = {p["name"]: p["schema"] for p in schema["paths"][path]["get"]["parameters"]}
        assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, max_limit)
        assert (params["offset"]["minimum"], params["offset"]["maximum"]) == (0, MAX_OFFSET)
    wait = schema["paths"][RUN]["post"]["parameters"][0]["schema"]
    assert (wait["minimum"], wait["maximum"]) == (0, 120)
    run_id = schema["paths"][RUNS + "/{run_id}"]["get"]["parameters"][0]["schema"]
    assert run_id["pattern"].startswith("^") and run_id["pattern"].endswith("$")
