from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from failover.realtime import FAILOVER_GROUP


class FailoverConsumer(AsyncJsonWebsocketConsumer):
    """Forward failover news from the channel layer to an authenticated browser."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(FAILOVER_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(FAILOVER_GROUP, self.channel_name)

    async def failover_message(self, event: dict) -> None:
        await self.send_json({"type": event["kind"], "data": event["payload"]})
