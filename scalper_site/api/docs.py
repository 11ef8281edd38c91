"""The API describing itself: the root listing every endpoint, the OpenAPI schema, Swagger UI and Redoc.

Everything is served by this site (Swagger UI and Redoc from the
``drf-spectacular-sidecar`` package's static files, no CDN) and only to a
logged-in user. The schema is YAML as plain text unless JSON or an OpenAPI
media type is asked for, so a browser shows it instead of downloading it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from csp.decorators import csp_update
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

SCHEMA_URL_NAME = "api-schema"
HIDDEN_URL_NAMES = frozenset({"api-not-found"})  # the catch-all that answers a wrong path with a JSON 404
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


class OpenApiYamlTextRenderer(OpenApiYamlRenderer):
    """The schema as YAML in ``text/plain``: what a browser (``Accept: */*``) gets, and shows inline."""

    media_type = "text/plain"


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema: YAML as text by default; ``?format=json`` or an OpenAPI media type for the others."""

    renderer_classes = [OpenApiYamlTextRenderer, OpenApiYamlRenderer, OpenApiYamlRenderer2, OpenApiJsonRenderer,
                        OpenApiJsonRenderer2]
    permission_classes = [IsAuthenticated]  # drf-spectacular would serve it to anyone


class SwaggerUiView(SpectacularSwaggerSplitView):
    """Swagger UI over the schema: read it and try the endpoints."""

    template_name = "api/swagger_ui.html"  # the page without the stock template's inline style


class RedocView(SpectacularRedocView):
    """Redoc over the schema: the API's reference, one page."""

    template_name = "api/redoc.html"  # the page without the stock template's web fonts (a CDN)


def _docs_page(view: type[APIView], csp: dict[str, list[str]] | None = None) -> Any:
    """A documentation page: login required (a browser is sent to the login page), the site's CSP plus ``csp``."""
    page = view.as_view(url_name=SCHEMA_URL_NAME, permission_classes=[IsAuthenticated])
    return login_required(csp_update(csp)(page) if csp else page)


# Swagger UI fetches its start script from its own URL (``?script``): no inline script, the site's CSP as it is.
swagger_ui = _docs_page(SwaggerUiView)
# Redoc styles itself with <style> elements it creates, and runs its search in a blob: worker.
redoc = _docs_page(RedocView, csp={"style-src": ["'unsafe-inline'"], "worker-src": ["blob:"]})


def _routes(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _methods(view_class: type) -> list[str]:
    names = getattr(view_class, "http_method_names", ["get"])
    return [name.upper() for name in ("get", "post", "put", "patch", "delete") if name in names and
            hasattr(view_class, name)]


def _summary(view_class: type) -> str:
    return (view_class.__doc__ or "").strip().splitlines()[0] if view_class.__doc__ else ""


def api_endpoints() -> list[dict[str, Any]]:
    """Every endpoint under ``/api/``, in routing order: path, methods, name and the first line of its view's doc."""
    endpoints = []
    for route, pattern in _routes(get_resolver().url_patterns):
        if not route.startswith("api/") or pattern.name in HIDDEN_URL_NAMES:
            continue
        view_class = getattr(pattern.callback, "view_class", None)  # decorators keep it (functools.wraps)
        if view_class is None:
            continue
        endpoints.append({"path": "/" + _CONVERTER.sub(r"{\1}", route), "methods": _methods(view_class),
                          "name": pattern.name or "", "description": _summary(view_class)})
    return endpoints


@extend_schema_serializer(component_name="ApiEndpoint")
class EndpointSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Path parameters in braces, e.g. /api/tests/integration/runs/{run_id}.")
    methods = serializers.ListField(child=serializers.CharField())
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)


class ApiRootView(APIView):
    """List every endpoint of the API with a one-line description, and where its schema and documentation are."""

    @extend_schema_serializer(component_name="ApiRoot")
    class OutputSerializer(serializers.Serializer):
        schema = serializers.URLField(help_text="The OpenAPI schema (YAML; ?format=json for JSON).")
        swaggerUi = serializers.URLField()
        redoc = serializers.URLField()
        embedded = serializers.BooleanField(help_text="Running on the embedded defaults (SQLite, private Redis).")
        endpoints = EndpointSerializer(many=True)

    @extend_schema(operation_id="api_root", tags=["api"], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        body = {
            "schema": reverse(SCHEMA_URL_NAME, request=request),
            "swaggerUi": reverse("api-swagger-ui", request=request),
            "redoc": reverse("api-redoc", request=request),
            "embedded": settings.EMBEDDED,
            "endpoints": api_endpoints(),
        }
        return Response(self.OutputSerializer(body).data)
