"""The OpenAPI schema's refusals: every operation documents the errors it really gives, with their body.

drf-spectacular documents what a view declares; the refusals that come from the
framework around the view (authentication, permissions, content negotiation, the
parser, the throttle) are the same everywhere, so they are added here once, each
with the API's one error shape (``scalper_site.api.errors``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import is_serializer
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from scalper_site.api.serializers import ErrorSerializer


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


BAD_INPUT = _error("Refused input: a query parameter, the body or a field of it; `errors` names each one.")
NOT_LOGGED_IN = _error("Not authenticated, or a wrong or expired token.")
FORBIDDEN = _error("Not allowed: not authenticated (session), a staff-only action, or a session POST without "
                   "its CSRF token.")
NOT_FOUND = _error("No such resource.")
NOT_ACCEPTABLE = _error("The Accept header asks for a type other than JSON.")
UNSUPPORTED_TYPE = _error("The body is not application/json.")
THROTTLED = _error("Too many actions by this user: wait the seconds in Retry-After.")


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the framework's refusals on every operation."""

    # The hook is the response-building step, not get_response_serializers(): @extend_schema replaces that
    # method on each view, so only here are a view's own responses and the common refusals both in reach.
    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code, response in self._refusals().items():
            if code not in responses:  # what a view declares itself wins
                responses[code] = self._get_response_for_code(response, code, direction=direction)
        return dict(sorted(responses.items()))

    def _refusals(self) -> dict[str, OpenApiResponse]:
        refusals = {"401": NOT_LOGGED_IN, "403": FORBIDDEN, "406": NOT_ACCEPTABLE}
        has_body = self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        if has_body or self._takes_query():
            refusals["400"] = BAD_INPUT
        if has_body:
            refusals["415"] = UNSUPPORTED_TYPE
        if "{" in self.path:  # a path parameter names something that may not exist
            refusals["404"] = NOT_FOUND
        if getattr(self.view, "throttle_classes", None):
            refusals["429"] = THROTTLED
        return refusals

    def _takes_query(self) -> bool:
        for parameter in self.get_override_parameters():
            if is_serializer(parameter):  # a serializer in ``parameters`` is a set of query parameters
                return True
            if isinstance(parameter, OpenApiParameter) and parameter.location == OpenApiParameter.QUERY:
                return True
        return False
