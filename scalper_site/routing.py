"""Websocket routes of every app, gathered in one place."""

from __future__ import annotations

from failover.routing import websocket_urlpatterns as failover_ws

websocket_urlpatterns = [*failover_ws]
