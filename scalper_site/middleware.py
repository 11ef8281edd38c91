"""Middleware of the product's own."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


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
