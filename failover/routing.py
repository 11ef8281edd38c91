from __future__ import annotations

from django.urls import path

from failover.consumers import FailoverConsumer

websocket_urlpatterns = [path("ws/failover/", FailoverConsumer.as_asgi())]
