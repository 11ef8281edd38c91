"""Database calls from a process's own long-lived threads (the trader's), which no request cycle tidies after.

Django closes a connection that broke at the end of each request, and Celery around each task. A thread of
the process's own keeps its connection for as long as it lives: once the server drops it (a restart, a
failover of the server, a session killed by an administrator), every later query on that thread fails with
"the connection is closed", and a trader whose failover link reads and reports through it would stay in
safe mode for ever. ``closing_on_error`` closes the calling thread's connection after a database error when
it is no longer usable, so the next call takes a fresh one (from the pool, where one is configured).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.db import DatabaseError, close_old_connections

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def tidy_connection() -> None:
    """Close this thread's connections that errors left unusable (or that outlived their age); never raises."""
    try:
        close_old_connections()
    except Exception as exc:  # closing a dead connection can fail too: the connection is dropped either way
        logger.warning("closing a broken database connection failed: %s", exc)


def closing_on_error(fn: F) -> F:
    """``fn``, with this thread's connection tidied after a database error (which is raised as it was)."""

    @wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DatabaseError:
            tidy_connection()
            raise

    return call  # type: ignore[return-value]


class ClosingOnError:
    """Every callable of ``target`` (a module of services) through ``closing_on_error``; other names as they are."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._wrapped: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        wrapped = self._wrapped.get(name)
        if wrapped is None:
            value = getattr(self._target, name)
            if not callable(value):
                return value
            wrapped = self._wrapped[name] = closing_on_error(value)
        return wrapped

    def __repr__(self) -> str:
        return f"ClosingOnError({self._target!r})"
