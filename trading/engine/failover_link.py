"""The trader's link to the FailoverManager: a fail-closed view of safe mode, and a reporter.

``is_safe_mode()`` is an attribute read on the hot path. The view is refreshed
from the database when the bus says the state changed (within milliseconds of a
change in any process) and once a second regardless; if it cannot be confirmed
for longer than a bound, the trader behaves as in safe mode. A failure the
trader detects turns its own view to safe mode at once, before the report has
even reached the database; reports and clearances go out on a background thread
with retries, so the pipeline never waits for the database.

Time comes from the injected ``Clock``: its monotonic reading ages the view and
the latches, its wall reading is compared with a bus message's ``sentAt``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from failover.domain.clock import Clock, SystemClock
from failover.domain.types import FailureEvent
from trading.domain.config import FailoverConfig

logger = logging.getLogger(__name__)

SYSTEM_CLOCK = SystemClock()
# A pending announcement is ignored only when a read began this long after it was sent. Ignoring one a read
# began just after (the bus takes a millisecond or so) left entries open until the report was written: the
# tail of bench_safe_mode's cross-process refusal. No report is written and recovered this fast.
PENDING_GRACE_MS = 50


class FailoverView(Protocol):
    """The part of a failover state the link reads and hands to ``on_change``."""

    @property
    def safe_mode(self) -> bool: ...

    @property
    def reason(self) -> object: ...  # a FailureType value or an operator's text; an enum is read by its value

    @property
    def version(self) -> int: ...

    @property
    def trading_enabled(self) -> bool: ...

    @property
    def recovery_in_progress(self) -> bool: ...

    # ``halted`` (an operator's HALT) is read with getattr: a view without it is not halted.


class FailoverLinkServices(Protocol):
    """What the link calls (``failover.services`` fits): the gate read, failure reports and clearances."""

    def failover_gate(self, *, run_id: str = "") -> FailoverView: ...

    def failure_report(self, *, event: FailureEvent, run_id: str = "") -> FailoverView: ...

    def failure_cleared(self, *, failure_type: str, run_id: str = "") -> FailoverView: ...


def _text(reason: object) -> str | None:
    value = getattr(reason, "value", reason)
    return None if value is None else str(value)


class FailoverLink:
    """Hold the trader's view of the failover state; report failures and clearances."""

    def __init__(
        self,
        *,
        run_id: str,
        confirm_timeout_ms: int,
        services: FailoverLinkServices,
        on_change: Callable[[FailoverView], None] | None = None,
        refresh_interval_s: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
        retry_base_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        self.run_id = run_id
        self.confirm_timeout_ms = confirm_timeout_ms
        self._services = services  # failover.services, injected so the link stays testable
        self._on_change = on_change
        self._refresh_interval_s = refresh_interval_s
        self._retry_base_s, self._retry_max_s = retry_base_s, retry_max_s
        self._clock = clock
        self._monotonic_ms = clock.monotonic_ms  # bound once: read on every entry check
        self.safe_mode = True  # fail closed until the first confirmation
        self.reason: str | None = None
        self.halted = False  # an operator's HALT; until confirmed, safe mode already refuses entries
        self.version = -1
        self.confirmed_at_ms = 0
        self._local_latch_until_version: int | None = None
        self._latched_reason: str | None = None
        self._latch_expires_ms: int | None = None  # only for a latch taken from a pending announcement
        self._read_started_ms = 0  # wall clock at the start of the newest successful read
        self._jobs: queue.Queue[FailureEvent | str | None] = queue.Queue()  # None stops the reporter
        self._taken = threading.Condition()  # notified each time the reporter takes a job
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reread = threading.Event()  # a bus message asks the refresh thread for a read now
        self._threads: list[threading.Thread] = []

    def apply_config(self, failover: FailoverConfig) -> None:
        """Take the confirmation bound from the failover config (at start and on every reload)."""
        self.confirm_timeout_ms = int(failover.state_confirm_timeout_s * 1000)

    # -- the hot path -------------------------------------------------------

    def is_safe_mode(self) -> bool:
        if self.safe_mode or self._latched_reason is not None:
            return True
        return self._monotonic_ms() - self.confirmed_at_ms > self.confirm_timeout_ms

    def is_halted(self) -> bool:
        return self.halted

    def entries_blocked_reason(self) -> str | None:
        if self.halted:
            return "HALTED"
        return "SAFE_MODE_ACTIVE" if self.is_safe_mode() else None

    # -- refresh ------------------------------------------------------------

    def refresh(self) -> bool:
        """Read the state from the database; False (and fail-closed ageing) when it cannot."""
        started_ms = self._clock.now_ms()
        try:
            state = self._services.failover_gate(run_id=self.run_id)
        except Exception as exc:
            logger.warning("failover state not confirmed: %s", exc)
            return False
        changed = False
        with self._lock:
            version = int(getattr(state, "version", 0) or 0)
            caught_up = self._local_latch_until_version is not None and version >= self._local_latch_until_version
            expired = self._latch_expires_ms is not None and self._monotonic_ms() > self._latch_expires_ms
            if caught_up or expired:
                if expired and not caught_up:
                    logger.warning("announced failure never reached the database; its latch expired")
                self._latched_reason = None
                self._local_latch_until_version = None
                self._latch_expires_ms = None
            halted = bool(getattr(state, "halted", False))
            changed = ((state.safe_mode, state.reason, halted) != (self.safe_mode, self.reason, self.halted)
                       or version != self.version)
            self.safe_mode = bool(state.safe_mode)
            self.halted = halted
            self.reason = _text(state.reason)
            self.version = version
            self.confirmed_at_ms = self._monotonic_ms()
            self._read_started_ms = max(self._read_started_ms, started_ms)
        if changed and self._on_change is not None:
            try:
                self._on_change(state)
            except Exception:
                logger.exception("failover change handler failed")
        return True

    def on_bus_message(self, message: dict[str, Any]) -> None:
        """Bus handler: safe mode ON is taken at once from the message; any change is then re-read.

        The read happens on the refresh thread once started (at once here before that),
        so the bus thread never waits for the database and is free for the next message.
        """
        if message.get("kind") != "failover.changed":
            return
        payload = message.get("payload") or {}
        version = payload.get("version")
        if payload.get("safeMode") is True and payload.get("pending") is True:
            # A failure announced before it is written: held until the database moves past the version known
            # now, or, should the report never land (its process died), for one confirmation bound.
            sent = message.get("sentAt")  # wall clock, in seconds
            if isinstance(sent, float) and sent * 1000 + PENDING_GRACE_MS < self._read_started_ms:
                # A read begun well after it was sent may show the report already cleared: a late delivery must
                # not hold entries for the bound. A read begun within the grace (one running on the refresh
                # thread as the message crossed the bus) cannot have seen the report written and recovered.
                return
            with self._lock:
                if self._latched_reason is None:
                    self._latched_reason = str(payload.get("reason") or "SAFE_MODE_ACTIVE")
                    self._local_latch_until_version = self.version + 1
                    self._latch_expires_ms = self._monotonic_ms() + self.confirm_timeout_ms
            return  # nothing to read yet: the report's own announcements follow once it is written
        elif payload.get("safeMode") is True and isinstance(version, int) and version > self.version:
            # Fail-closed, so the message may be trusted for this direction only: held until the database
            # shows this version (it may not be committed yet), whatever the next read says.
            with self._lock:
                if self._latched_reason is None:
                    self._latched_reason = str(payload.get("reason") or "SAFE_MODE_ACTIVE")
                    self._local_latch_until_version = version
                elif self._local_latch_until_version is not None:
                    self._local_latch_until_version = max(version, self._local_latch_until_version)
                    self._latch_expires_ms = None  # the report is being committed: its version will show
                # else our own report holds the latch until its version is known
        if self._threads:
            self._reread.set()
        else:
            self.refresh()

    # -- reports ------------------------------------------------------------

    def report(self, event: FailureEvent) -> None:
        """Enter safe mode here and now; tell the FailoverManager in the background."""
        with self._lock:
            self._latched_reason = event.type.value
            self._local_latch_until_version = None
            self._latch_expires_ms = None
        self._jobs.put(event)

    def cleared(self, failure_type: str) -> None:
        self._jobs.put(failure_type)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            with self._taken:
                self._taken.notify_all()
            if job is None or not self._deliver(job):
                return
            self.refresh()

    def _deliver(self, job: FailureEvent | str) -> bool:
        """Send a report (a FailureEvent) or a clearance (a failure type) until it lands; False once stopping.

        Never given up: a report dropped would leave this trader's latch on for ever (entries refused while
        the database says safe mode OFF), a clearance dropped would leave the failure active (safe mode ON
        for ever). The backoff grows to ``retry_max_s``; past a few attempts each failure is an ERROR.
        """
        kind = "report" if isinstance(job, FailureEvent) else "cleared"
        attempt = 0
        while True:
            try:
                if isinstance(job, FailureEvent):
                    state = self._services.failure_report(event=job, run_id=self.run_id)
                    with self._lock:
                        # Keep our own latch until the database shows this report.
                        self._local_latch_until_version = int(getattr(state, "version", 0) or 0)
                else:
                    self._services.failure_cleared(failure_type=job, run_id=self.run_id)
                return True
            except Exception as exc:
                attempt += 1
                log = logger.error if attempt >= 5 else logger.warning
                log("failover %s failed (attempt %d), retrying: %s", kind, attempt, exc)
                if self._stop.wait(min(self._retry_base_s * 2 ** (attempt - 1), self._retry_max_s)):
                    return False

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._reread.wait(self._refresh_interval_s)
            self._reread.clear()
            if not self._stop.is_set():
                self.refresh()

    def start(self) -> FailoverLink:
        for target, name in ((self._work, "failover-reporter"), (self._poll, "failover-refresh")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until the reporter has taken every queued job, or ``timeout_s`` passed."""
        with self._taken:
            self._taken.wait_for(self._jobs.empty, timeout=timeout_s)

    def stop(self) -> None:
        self.drain(5.0)
        self._stop.set()
        self._reread.set()
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=3)
