"""The dashboard's websocket: the current failover status on connect, then every push of the group."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from failover.services import failover_status
from scalper_site.realtime import FAILOVER_GROUP

# What the page listens to; anything else sent to the group stays server-side.
FORWARDED_KINDS = frozenset({"failover.status", "failover.run_status", "alert", "integration.progress"})


class FailoverConsumer(AsyncJsonWebsocketConsumer):
    """Forward failover news from the channel layer to an authenticated browser."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        # Join before reading: a change committed after the read is then pushed, never lost
        # (one committed just before may arrive twice; the page keeps the newest timestamp).
        await self.channel_layer.group_add(FAILOVER_GROUP, self.channel_name)
        await self.accept()
        status = await database_sync_to_async(failover_status)()
        await self.send_json({"type": "failover.status", "data": status})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(FAILOVER_GROUP, self.channel_name)

    async def failover_message(self, event: dict) -> None:
        kind = event.get("kind")
        if kind not in FORWARDED_KINDS:
            return
        if kind == "alert" and event["payload"].get("runId"):
            return  # an integration run's alert: shown in its report, not in the product's live list
        await self.send_json({"type": kind, "data": event["payload"]})
