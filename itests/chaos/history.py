"""The recorded history of a chaos run: the harness's timeline as it happens, the exchange and the state at the end.

``Recorder`` appends one JSON line per harness action to ``timeline.jsonl``
(flushed at once, so a harness that dies leaves what it did), and ``finish``
copies in the two records the verdict rests on: the simulator's journal of
orders, executions and positions, read through its control API, and the
failover state's history, read through ``failover.selectors``. The folder is
then everything ``invariants.check`` needs.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from failover.selectors import failover_state_history
from itests.chaos import invariants
from trading.simexchange.control import SimControl

STATE_PAGE = 5000
MAX_STATE_PAGES = 200


def now_ms() -> int:
    return int(time.time() * 1000)


class Recorder:
    """Writes a run's history folder: ``meta.json``, ``timeline.jsonl``, then ``exchange.jsonl`` and the states."""

    def __init__(self, folder: Path, *, run_id: str, meta: dict[str, Any]) -> None:
        self.folder = folder
        self.run_id = run_id
        folder.mkdir(parents=True, exist_ok=True)
        self.meta = {"runId": run_id, **meta}
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))
        self._timeline = (folder / "timeline.jsonl").open("a", encoding="utf-8")
        self.started_ms = now_ms()

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one harness action (a kill, a fault, a checkpoint...) with the wall time it happened."""
        record = {"at": now_ms(), "kind": kind, **fields}
        self._timeline.write(json.dumps(record, default=str) + "\n")
        self._timeline.flush()
        return record

    def finish(self, control: SimControl) -> invariants.History:
        """Copy in the exchange's journal and the failover state's history; return the whole history."""
        self._timeline.close()
        with (self.folder / "exchange.jsonl").open("w", encoding="utf-8") as out:
            for record in control.history_all(after=0):
                out.write(json.dumps(record) + "\n")
        with (self.folder / "failover_states.jsonl").open("w", encoding="utf-8") as out:
            for state in _all_states(self.run_id):
                out.write(json.dumps(state, default=str) + "\n")
        return invariants.load(self.folder)


def _all_states(run_id: str) -> list[dict[str, Any]]:
    """Every state change of the run, page by page (a page starts at the last one's time; versions dedupe)."""
    states: dict[int, dict[str, Any]] = {}
    since = None
    for _ in range(MAX_STATE_PAGES):
        page = failover_state_history(run_id=run_id, since=since, limit=STATE_PAGE)
        fresh = [s for s in page if s["version"] not in states]
        states.update((s["version"], s) for s in fresh)
        if len(page) < STATE_PAGE or not fresh:
            break
        since = datetime.fromisoformat(page[-1]["at"].replace("Z", "+00:00"))
    return [states[v] for v in sorted(states)]
