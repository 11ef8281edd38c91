"""Named crash points: places where a process can be told to die the way SIGKILL leaves it.

A chaos test arms one point; the process kills itself (``SIGKILL``: no cleanup,
no atexit, no flush) the N-th time it reaches it, after one line on stderr
(``crash point <name> reached``) that says where it died. Each call site is one
``reached(NAME)`` line; with nothing armed it costs one attribute read.

Points of the trader (armed by the ``arm_fault`` command, only in a trader
started with ``--allow-fault-hooks``):

- ``before_send``: an order's local intent is stored; the request has not left.
- ``after_send``: the exchange accepted the order (its answer reached the
  adapter); the trader has not processed or stored the answer.
- ``after_fill``: a fill arrived (an execution, or an order update or REST answer
  reporting more filled); it is not stored locally yet.
- ``mid_state_write``: ``process_state.json``'s temp file is half written; the
  rename has not happened.

Points of a Celery worker (armed from its environment,
``SCALPER_CRASH_AT=recovery_step:<STEP_TYPE>`` with ``SCALPER_ALLOW_FAULT_HOOKS=1``):
``recovery_step:<STEP_TYPE>`` is reached at every heartbeat of a running step of
that type (handlers beat after an exchange read) and once more when its handler
returned, before the result is stored.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TypeVar

from failover.domain.enums import StepType

logger = logging.getLogger(__name__)

T = TypeVar("T")

BEFORE_SEND = "before_send"
AFTER_SEND = "after_send"
AFTER_FILL = "after_fill"
MID_STATE_WRITE = "mid_state_write"
TRADER_POINTS: tuple[str, ...] = (BEFORE_SEND, AFTER_SEND, AFTER_FILL, MID_STATE_WRITE)

RECOVERY_STEP = "recovery_step:"
ENV_CRASH_AT = "SCALPER_CRASH_AT"
ENV_CRASH_AFTER = "SCALPER_CRASH_AFTER"
ENV_ALLOW = "SCALPER_ALLOW_FAULT_HOOKS"


def recovery_step(step_type: str) -> str:
    """Return the crash point of a recovery step of ``step_type`` (``recovery_step:RESYNC_ORDERS``)."""
    return f"{RECOVERY_STEP}{step_type}"


WORKER_POINTS: tuple[str, ...] = tuple(recovery_step(t.value) for t in StepType)
KNOWN_POINTS = frozenset(TRADER_POINTS + WORKER_POINTS)


def die(point: str) -> None:
    """Say which point was reached (one line on stderr, unbuffered), then SIGKILL this process."""
    try:
        os.write(2, f"crash point {point} reached\n".encode())
    except OSError:  # no stderr: die all the same
        pass
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Armed:
    point: str
    remaining: int  # reaches left before the death, this one included


class CrashPoints:
    """A registry of at most one armed point; ``reached`` kills at the armed reach."""

    def __init__(self, kill: Callable[[str], None] = die) -> None:
        self.armed: Armed | None = None
        self._kill = kill
        self._lock = threading.Lock()  # points are reached from the pipeline and gateway threads

    def arm(self, point: str, after: int = 1) -> Armed:
        """Die at the ``after``-th reach of ``point`` from now; replaces what was armed."""
        if point not in KNOWN_POINTS:
            raise ValueError(f"unknown crash point {point!r}; known: {', '.join(sorted(KNOWN_POINTS))}")
        if type(after) is not int or after < 1:
            raise ValueError(f"crash_after must be a whole number of reaches, at least 1, not {after!r}")
        with self._lock:
            self.armed = Armed(point, after)
        logger.warning("crash point %s armed: the process dies at its reach number %d", point, after)
        return self.armed

    def disarm(self) -> None:
        with self._lock:
            self.armed = None

    def reached(self, point: str) -> None:
        """Count a reach of ``point``; kill the process when it is the armed one."""
        armed = self.armed
        if armed is None or armed.point != point:
            return
        with self._lock:
            current = self.armed
            if current is None or current.point != point:
                return
            if current.remaining > 1:
                self.armed = Armed(point, current.remaining - 1)
                return
            self.armed = None
        self._kill(point)

    def arm_from_environment(self, environ: Mapping[str, str], *, points: Collection[str]) -> Armed | None:
        """Arm ``SCALPER_CRASH_AT`` (one of ``points``) when ``SCALPER_ALLOW_FAULT_HOOKS=1``; else arm nothing."""
        point = environ.get(ENV_CRASH_AT, "").strip()
        if not point:
            return None
        if environ.get(ENV_ALLOW, "") != "1":
            logger.warning("%s=%s ignored: fault hooks are off (set %s=1)", ENV_CRASH_AT, point, ENV_ALLOW)
            return None
        if point not in points:
            logger.warning("%s=%s ignored: not a crash point of this process", ENV_CRASH_AT, point)
            return None
        try:
            return self.arm(point, int(environ.get(ENV_CRASH_AFTER, "1")))
        except ValueError as exc:
            logger.warning("%s=%s ignored: %s", ENV_CRASH_AT, point, exc)
            return None


REGISTRY = CrashPoints()
"""The process's registry: what the call sites reach and the fault commands arm."""


def passing(point: str, value: T) -> T:
    """Reach ``point`` with ``value`` in hand (the result of a call, inside a lambda); return ``value``."""
    REGISTRY.reached(point)
    return value


arm = REGISTRY.arm
disarm = REGISTRY.disarm
reached = REGISTRY.reached
arm_from_environment = REGISTRY.arm_from_environment
