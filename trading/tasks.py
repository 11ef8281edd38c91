"""Celery tasks of the trading app: the stack probe and the equity samples' retention."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timedelta

from celery import chain, shared_task
from django.conf import settings
from django.utils import timezone

from trading.models import EquitySample

# Deleted a batch at a time (short transactions beside the trader's writes), at most this many a run:
# a backlog (a retention just shortened) is worked off over the next hourly runs.
EQUITY_PRUNE_BATCH = 5_000
EQUITY_PRUNE_MAX_BATCHES = 40


@shared_task(name="trading.stack_probe", acks_late=True, soft_time_limit=10, time_limit=20)
def stack_probe(trail: list[dict[str, object]] | None, *, token: str) -> list[dict[str, object]]:
    """Append this worker's hop to ``trail``: proves broker, worker and result store work end to end."""
    hop: dict[str, object] = {"token": token, "host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}
    return [*(trail or []), hop]


def probe_chain(*, token: str, hops: int = 3) -> chain:
    """Return a chain of ``hops`` probe tasks, each receiving the trail of the one before."""
    first = stack_probe.s(None, token=token)
    return chain(first, *(stack_probe.s(token=token) for _ in range(hops - 1)))


def equity_samples_prune(*, days: int, now: datetime) -> int:
    """Delete equity samples taken more than ``days`` before ``now`` (every environment); return how many went."""
    if days < 1:
        raise ValueError(f"equity samples are kept at least one day, got {days}")
    cutoff = now - timedelta(days=days)
    deleted = 0
    for _ in range(EQUITY_PRUNE_MAX_BATCHES):
        batch = list(EquitySample.objects.filter(at__lt=cutoff).order_by().values_list("pk", flat=True)[
            :EQUITY_PRUNE_BATCH])
        if not batch:
            break
        deleted += EquitySample.objects.filter(pk__in=batch).delete()[0]
    return deleted


@shared_task(name="trading.prune_equity_samples", acks_late=True, soft_time_limit=60, time_limit=90)
def prune_equity_samples() -> dict[str, int]:
    """Delete equity samples older than ``SCALPER_EQUITY_RETENTION_DAYS`` (idempotent)."""
    return {"deleted": equity_samples_prune(days=settings.SCALPER_EQUITY_RETENTION_DAYS, now=timezone.now())}
