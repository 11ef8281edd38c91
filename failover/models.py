from __future__ import annotations

from django.db import models


class FailureType(models.TextChoices):
    """The spec's failure taxonomy (section 2)."""

    EXCHANGE_UNAVAILABLE = "EXCHANGE_UNAVAILABLE"
    PRIVATE_WS_DISCONNECTED = "PRIVATE_WS_DISCONNECTED"
    PUBLIC_WS_DEGRADED = "PUBLIC_WS_DEGRADED"
    NON_SYNC_STATE = "NON_SYNC_STATE"
    LATENCY_TOO_HIGH = "LATENCY_TOO_HIGH"
    PACKET_LOSS = "PACKET_LOSS"
    MODULE_CRASH = "MODULE_CRASH"
    DATA_CORRUPTION = "DATA_CORRUPTION"
    CONFIG_INVALID = "CONFIG_INVALID"
    PROCESS_RESTART = "PROCESS_RESTART"
    UNEXPECTED_SHUTDOWN = "UNEXPECTED_SHUTDOWN"


class FailureEventRecord(models.Model):
    """One stored FailureEvent, in the spec's shape."""

    timestamp = models.DateTimeField(db_index=True)
    type = models.CharField(max_length=40, choices=FailureType.choices, db_index=True)
    source = models.CharField(max_length=60)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    run_id = models.CharField(max_length=64, blank=True, default="", db_index=True)

    class Meta:
        ordering = ["-timestamp", "-id"]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.type} ({self.source})"
