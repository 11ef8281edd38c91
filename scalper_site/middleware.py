"""Middleware of the product's own."""

from __future__ import annotations

from collections.abc import Callable

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, HttpResponseBase


class SyncRequestStack:
    """Keep the request stack synchronous under ASGI: the last (innermost) middleware, sync-only on purpose.

    Every view of the product is synchronous. Django's stock middleware can run either way, so under
    ASGI it ran them asynchronously and hopped to a thread and back for each ``process_request`` and
    ``process_response``: some thirty thread switches a request, 7.5 ms of CPU for a bare ping on this
    machine. With one sync-only middleware at the bottom Django runs the whole chain and the view in the
    request's own thread (still one thread a request, so a slow request blocks no other).
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)


class ContentSecurityPolicy(CSPMiddleware):
    """django-csp's header, with the page's own websocket origin added to ``connect-src``.

    CSP Level 3 counts ``ws://``/``wss://`` on the page's own host as ``'self'``, but browsers that
    predate it do not: without the explicit origin the dashboard's live socket would be blocked there.
    The host is the one Django already validated against ``ALLOWED_HOSTS``.
    """

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:
            return parts  # the request was refused anyway; name no origin from it
        origin = f"{'wss' if request.is_secure() else 'ws'}://{host}"
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", ()), origin]
        parts.update = update
        return parts
