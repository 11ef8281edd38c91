"""``GET /metrics``: the Prometheus text format, for loopback clients or a bearer token.

A client on the loopback interface is served without credentials (unless
``SCALPER_METRICS_LOOPBACK`` is off); any other needs
``Authorization: Bearer <SCALPER_METRICS_TOKEN>``. Everything else gets a 403.
The address is ``REMOTE_ADDR``, which uvicorn takes from ``X-Forwarded-For``
only for the proxies in ``FORWARDED_ALLOW_IPS``.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views import View
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from scalper_site.metrics.sources import scrape_registry


def client_is_loopback(address: str) -> bool:
    """Whether ``address`` (an IPv4 or IPv6 address, IPv4-mapped included) is a loopback address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def bearer_token_matches(request: HttpRequest, expected: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <expected>`` (compared in constant time)."""
    if not expected:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def metrics_access_allowed(request: HttpRequest) -> bool:
    """Loopback clients (while ``SCALPER_METRICS_LOOPBACK`` is on), or the metrics bearer token."""
    if settings.SCALPER_METRICS_LOOPBACK and client_is_loopback(request.META.get("REMOTE_ADDR", "")):
        return True
    return bearer_token_matches(request, settings.SCALPER_METRICS_TOKEN)


class MetricsView(View):
    """The product's metrics in the Prometheus text format (version 0.0.4), read at each scrape."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        if not metrics_access_allowed(request):
            return HttpResponse("metrics are served to loopback clients or with the metrics bearer token\n",
                                status=403, content_type="text/plain; charset=utf-8")
        body = generate_latest(scrape_registry(multiproc_dir=settings.PROMETHEUS_MULTIPROC_DIR))
        response = HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
        response["Cache-Control"] = "no-store"
        return response
