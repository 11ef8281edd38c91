"""ASGI entry point: HTTP through Django (the status endpoint's fast path in front), websockets through Channels."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scalper_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from scalper_site.api.failover_views import FailoverStatusView  # noqa: E402
from scalper_site.routing import websocket_urlpatterns  # noqa: E402
from scalper_site.status_fastpath import StatusFastPath  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The status endpoint's one common request, answered from its snapshot without the framework when that is
        # the same answer; every other request (and that one whenever in doubt) goes through Django.
        "http": StatusFastPath(django_asgi_app, snapshots=FailoverStatusView.snapshots),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Load every view now, then move the whole start-up heap out of the collector's reach:
# a full collection over it took tens of milliseconds, a stall every request queued
# behind it paid for (bench_dashboard's p99).
get_resolver().url_patterns  # noqa: B018  (imports the URL conf and, through it, the views)
gc.collect()
gc.freeze()
