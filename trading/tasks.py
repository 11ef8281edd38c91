"""Celery tasks of the trading app."""

from __future__ import annotations

import os
import socket
import time

from celery import chain, shared_task


@shared_task(name="trading.stack_probe", acks_late=True, soft_time_limit=10, time_limit=20)
def stack_probe(trail: list[dict[str, object]] | None, *, token: str) -> list[dict[str, object]]:
    """Append this worker's hop to ``trail``: proves broker, worker and result store work end to end."""
    hop: dict[str, object] = {"token": token, "host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}
    return [*(trail or []), hop]


def probe_chain(*, token: str, hops: int = 3) -> chain:
    """Return a chain of ``hops`` probe tasks, each receiving the trail of the one before."""
    first = stack_probe.s(None, token=token)
    return chain(first, *(stack_probe.s(token=token) for _ in range(hops - 1)))
