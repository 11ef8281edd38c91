"""One error shape for the whole API, and the last line behind it.

Every refusal is ``{"detail": "..."}``; a refused input (400) adds its messages
by field under ``errors``, so the dashboard shows ``detail`` and a script can
still tell which parameter was wrong. An exception DRF does not know becomes a
logged 500 with the same shape, never Django's HTML page or a traceback; no
input is meant to get that far (the parser and the serializers refuse first).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import SuspiciousOperation
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, set_rollback
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "Internal server error: the failure is logged on the server."


def _messages(value: Any) -> list[str]:
    """Flatten DRF's error detail (strings, lists, nested dicts) into plain messages."""
    if isinstance(value, dict):
        return [f"{key}: {text}" for key, inner in value.items() for text in _messages(inner)]
    if isinstance(value, list | tuple):
        return [text for inner in value for text in _messages(inner)]
    return [str(value)]


def validation_error_body(detail: Any) -> dict[str, Any]:
    """Turn a ValidationError's detail into the API's error shape: ``detail`` plus ``errors`` by field."""
    non_field = api_settings.NON_FIELD_ERRORS_KEY
    fields = detail if isinstance(detail, dict) else {non_field: detail}
    errors = {str(name): _messages(value) for name, value in fields.items()}
    parts = [" ".join(texts) if name == non_field else f"{name}: {' '.join(texts)}" for name, texts in errors.items()]
    return {"detail": "; ".join(parts) or "Invalid input.", "errors": errors}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's handler, with the API's 400 shape, a 400 for a suspicious request and a logged JSON 500 for the rest."""
    response = drf_exception_handler(exc, context)
    if response is not None:
        if isinstance(exc, ValidationError):
            response.data = validation_error_body(exc.detail)
        return response
    set_rollback()
    if isinstance(exc, SuspiciousOperation):
        logger.warning("suspicious API request refused: %s", exc)
        # Django's own message may name settings (ALLOWED_HOSTS): it goes to the log only.
        return Response({"detail": "Bad request."}, status=status.HTTP_400_BAD_REQUEST)
    view = context.get("view")
    logger.error("unexpected error in %s", type(view).__name__ if view else "the API", exc_info=exc)
    return Response({"detail": INTERNAL_ERROR}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


@extend_schema(exclude=True)
class NotFoundView(APIView):
    """Answer a path under ``/api/`` that names no endpoint with the JSON 404 (after authentication, as any view)."""

    def _not_found(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise NotFound(f"No API endpoint at {request.path[:200]!r}.")

    get = post = put = patch = delete = head = options = _not_found
