"""The one helper that pushes failover news to websocket clients."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

FAILOVER_GROUP = "failover"


def push_failover_message(*, kind: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` to every dashboard socket once the current transaction commits."""

    def send() -> None:
        layer = get_channel_layer()
        async_to_sync(layer.group_send)(FAILOVER_GROUP, {"type": "failover.message", "kind": kind, "payload": payload})

    transaction.on_commit(send)
