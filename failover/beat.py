"""One beat's worth of scheduled work, however many Celery beats run: a Redis lock per scheduled run.

Every entry of ``CELERY_BEAT_SCHEDULE`` sends ``failover.scheduled`` with the
task it stands for and its period. ``scheduled_run`` takes the task's lock,
``SET scalper:beat:<database>:<task> <token> NX PX <ttl>``, and runs the task in this
worker only if it got it; a second beat's message for the same period finds the
lock taken and does nothing. The TTL is shorter than the period (80 %), so the
next period's run always finds it free, whichever beat sends it first.

A run that succeeds keeps the lock until it expires: the beats tick at their own
phases, and a lock released at the end of a short run would let the other
beat's tick, a moment later in the same period, act a second time. A run that
fails releases it at once, so the next tick retries. The release is a
compare-and-delete (a Lua script): a run that outlived its TTL never deletes
the lock a later run took.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
from celery import current_app
from django.conf import settings

logger = logging.getLogger(__name__)

LOCK_PREFIX = "scalper:beat:"
TTL_SHARE = 0.8  # of the period: shorter than the period, so the next period's run always finds it free
MIN_TTL_MS = 100
SOCKET_TIMEOUT_S = 2.0  # SET and EVAL answer at once; no blocking call is made on this client

# KEYS: the lock. ARGV: our token. Deletes the lock only while it holds our token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lock_key(name: str) -> str:
    """The lock of ``name``, per database: two installations sharing one Redis never skip each other's runs."""
    return f"{LOCK_PREFIX}{settings.DATABASES['default']['NAME']}:{name}"


def lock_ttl_ms(period_s: float) -> int:
    """The lock's expiry for a task run every ``period_s``: 80 % of the period."""
    return max(MIN_TTL_MS, int(period_s * 1000 * TTL_SHARE))


def redis_client(url: str = "") -> redis.Redis:
    return redis.Redis.from_url(url or settings.REDIS_URL, socket_connect_timeout=SOCKET_TIMEOUT_S,
                                socket_timeout=SOCKET_TIMEOUT_S)


def lock_acquire(client: redis.Redis, name: str, *, period_s: float) -> str | None:
    """Take the run lock of ``name`` for this period; its token, or None when another run holds it."""
    token = uuid.uuid4().hex
    taken = client.set(lock_key(name), token, nx=True, px=lock_ttl_ms(period_s))
    return token if taken else None


def lock_release(client: redis.Redis, name: str, token: str) -> bool:
    """Delete the lock of ``name`` if it still holds ``token`` (compare-and-delete); True when deleted."""
    return bool(client.eval(_RELEASE, 1, lock_key(name), token) == 1)


def scheduled_run(*, task: str, period_s: float, client: redis.Redis | None = None) -> dict[str, Any]:
    """Run the Celery task ``task`` here if this call takes its lock for the period; say what happened.

    A Redis that does not answer is a skipped run (logged): the work waits for the next period rather
    than risk being done twice.
    """
    target = current_app.tasks[task]  # a KeyError names an entry for a task no worker knows
    client = client or redis_client()
    try:
        token = lock_acquire(client, task, period_s=period_s)
    except (redis.RedisError, OSError) as exc:
        logger.error("scheduled %s skipped: its lock cannot be taken (%s)", task, exc)
        return {"task": task, "acted": False, "skipped": f"lock unavailable: {exc}"}
    if token is None:
        return {"task": task, "acted": False, "skipped": "another scheduler ran it this period"}
    try:
        result = target()
    except BaseException:
        _release_quietly(client, task, token)
        raise
    return {"task": task, "acted": True, "result": result}


def _release_quietly(client: redis.Redis, task: str, token: str) -> None:
    try:
        lock_release(client, task, token)
    except (redis.RedisError, OSError) as exc:  # it expires by itself within the period
        logger.warning("lock of %s not released: %s", task, exc)
