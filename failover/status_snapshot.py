"""The failover status body, served from a snapshot while the database still holds the state it was built from.

``GET /api/failover/status`` is the dashboard's most frequent read. Building its
body takes the state row, the last failure, the current plan with its steps and
a serializer pass; serving it takes one indexed read of the state row's identity
(id, ``version``, ``updated_at``), the same read that decides whether the
snapshot may be served. Every committed change of the state bumps ``version``
(``records.state_commit``, ``records.gate_close``), so:

- a snapshot is served only while the row's identity is the one it was built
  from: never a version older than the database's, whoever changed it and
  whether or not its notification arrived;
- a snapshot older than ``max_age_s`` is rebuilt whatever the version says:
  a change that does not go through a version (a plan's own columns) shows
  within that bound;
- a row that is deleted and created again starts a new identity
  (``updated_at`` differs), so a snapshot never outlives its row.

A snapshot lives in its process (each web worker keeps its own): the first
read after a change rebuilds it, the reads after it reuse it. ``timestamp``
is the time of each answer, never the snapshot's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection

from failover.domain._codec import format_ts
from failover.models import FailoverStateRecord
from failover.recovery import records

Render = Callable[[dict[str, Any]], dict[str, Any]]
RowKey = tuple[int, int, Any]  # id, version, updated_at as the driver reads it

DEFAULT_MAX_AGE_S = 1.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One rendered status body and the state row's identity it was built from."""

    key: RowKey
    body: dict[str, Any]
    built_at: float  # the snapshots' clock, seconds: taken before the state was read


def status_row_key(*, run_id: str = "") -> RowKey | None:
    """Return the state row's identity (id, version, updated_at), None when the row does not exist yet."""
    # Plain SQL, as records.gate_close: compiling the ORM's query costs more than running it, on every request.
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {q('id')}, {q('version')}, {q('updated_at')} FROM "
                       f"{q(FailoverStateRecord._meta.db_table)} WHERE {q('run_id')} = %s", [run_id])
        found = cursor.fetchone()
    if found is None:
        return None
    # The raw value as the driver gives it (SQLite: text): compared only with what the same read gave before.
    return int(found[0]), int(found[1]), found[2]


class StatusSnapshots:
    """Status bodies of each environment, rendered once per state version and reused while it stands."""

    def __init__(self, *, render: Render, max_age_s: float = DEFAULT_MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._render = render  # the API's serializer: the body exactly as the uncached view answered it
        self._max_age_s = max_age_s
        self._clock = clock
        self._snapshots: dict[str, Snapshot] = {}
        self._lock = threading.Lock()
        self.builds = 0  # how many times a body was built from the database (tests read it)

    def latest(self, *, run_id: str = "") -> Snapshot | None:
        """The snapshot the last read built or kept, unchecked: the caller decides whether it is still current."""
        return self._snapshots.get(run_id)

    def body(self, *, run_id: str = "") -> dict[str, Any]:
        """Return the environment's status body (spec 9) with this moment's ``timestamp``."""
        key = status_row_key(run_id=run_id)
        if key is None:
            records.state_row(run_id)  # created fail-closed on first use, as the uncached read did
            key = status_row_key(run_id=run_id)
        snapshot = self._snapshots.get(run_id)
        fresh = snapshot is not None and self._clock() - snapshot.built_at <= self._max_age_s
        if key is None or snapshot is None or snapshot.key != key or not fresh:
            snapshot = self._build(run_id, key)
        body = dict(snapshot.body)
        body["timestamp"] = format_ts(records.now())
        return body

    def refresh(self, *, run_id: str = "") -> Snapshot:
        """Build the body again now, whatever the age of the one kept (a refresh ahead of its expiry)."""
        return self._build(run_id, status_row_key(run_id=run_id))

    def _build(self, run_id: str, key: RowKey | None) -> Snapshot:
        """Read the state after ``key`` was read: the body is of ``key``'s version or a newer one, never older."""
        started = self._clock()
        state = records.state_domain(records.state_row(run_id))
        body = dict(self._render(state.to_status_dict(records.now())))
        with self._lock:
            self.builds += 1
            if key is None:
                return Snapshot(key=(0, -1, None), body=body, built_at=started)  # row gone meanwhile: not kept
            snapshot = Snapshot(key=key, body=body, built_at=started)
            current = self._snapshots.get(run_id)
            # Two requests may build at once: keep the one of the newer row.
            if current is None or current.key[0] != key[0] or current.key[1] <= key[1]:
                self._snapshots[run_id] = snapshot
        return snapshot
