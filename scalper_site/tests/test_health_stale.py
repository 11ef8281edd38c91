"""``health.stale_after_s`` takes effect: a heartbeat older than it makes the trader's health ERROR.

The bound is read from the product's config file at each request, so an edit
shows at the next ``GET /api/health`` with no restart of anything.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from scalper_site.api import selectors
from scalper_site.api.health import TRADER_SERVICES, health_snapshot_build, trader_services
from trading.control import HEARTBEAT_TTL_S
from trading.domain.config import TradingConfig

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _beat(at: datetime) -> dict[str, Any]:
    return {"pid": 4242, "phase": "RUNNING", "at": int(at.timestamp() * 1000), "mode": "SIM", "symbols": ["BTCUSDT"],
            "safeMode": False,
            "streams": {"public": {"connected": True, "lastMessageAgeMs": 40, "rebuilds": 0},
                        "private": {"connected": True, "lastMessageAgeMs": 900, "rebuilds": 0}},
            "restFailuresInARow": 0, "latencyAvgMs": {"rest": 2.0, "ws": 5.0},
            "config": {"valid": True, "source": "file"}}


def _config(stale_after_s: float) -> TradingConfig:
    return TradingConfig.model_validate({"health": {"stale_after_s": stale_after_s}})


def test_a_heartbeat_older_than_the_configured_bound_makes_the_trader_an_error_and_its_services_unknown():
    beat = _beat(NOW - timedelta(seconds=40))

    snapshot = health_snapshot_build(beat, config=_config(30.0), failover={}, now=NOW)

    assert snapshot.status.value == "ERROR"
    process = snapshot.services["traderProcess"]
    assert (process.status.value, process.message) == ("ERROR", "no heartbeat for 40 s (stale after 30 s)")
    assert process.last_update_at == NOW - timedelta(seconds=40)
    others = {name: snapshot.services[name] for name in TRADER_SERVICES if name != "traderProcess"}
    assert {s.status.value for s in others.values()} == {"WARN"}
    assert all(s.message == "unknown: no heartbeat for 40 s (stale after 30 s)" for s in others.values())


def test_the_same_heartbeat_is_fresh_under_a_longer_bound_and_stale_under_a_shorter_one():
    beat = _beat(NOW - timedelta(seconds=8))

    fresh = trader_services(beat, config=_config(10.0), now=NOW)
    stale = trader_services(beat, config=_config(5.0), now=NOW)

    assert {s.status.value for s in fresh.values()} == {"OK"}
    assert stale["traderProcess"].status.value == "ERROR" and "no heartbeat for 8 s" in stale["traderProcess"].message


@pytest.mark.parametrize("at", [None, "soon", float("nan"), 10**30])
def test_a_heartbeat_without_a_readable_time_vouches_for_nothing(at):
    beat = {**_beat(NOW), "at": at}
    process = trader_services(beat, config=_config(30.0), now=NOW)["traderProcess"]
    assert (process.status.value, process.message) == ("ERROR", "heartbeat carries no time")


# -- the view: the bound comes from the file at request time ---------------------------------------


def _write_stale_after(data_dir: Path, seconds: float) -> None:
    folder = data_dir / "config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"health": {"stale_after_s": seconds}}))


@pytest.mark.django_db
def test_the_health_view_reads_the_bound_from_the_config_file_at_each_request(tmp_path, settings, monkeypatch):
    settings.DATA_DIR = tmp_path
    asked: list[int] = []

    def read_heartbeat(run_id: str = "", max_age_ms: int = 5000) -> dict[str, Any]:
        asked.append(max_age_ms)
        return _beat(datetime.now(UTC) - timedelta(seconds=5))  # the trader stopped writing 5 s ago

    monkeypatch.setattr(selectors, "read_heartbeat", read_heartbeat)
    client = Client()
    client.force_login(get_user_model().objects.create_user("viewer", password="pw-123456-x"))

    _write_stale_after(tmp_path, 3.0)
    stale = client.get("/api/health").json()["services"]["traderProcess"]
    _write_stale_after(tmp_path, 20.0)
    fresh = client.get("/api/health").json()["services"]["traderProcess"]

    assert stale["status"] == "ERROR" and stale["message"].startswith("no heartbeat for 5 s (stale after 3 s)")
    assert fresh["status"] == "OK" and "pid 4242" in fresh["message"]
    assert asked == [HEARTBEAT_TTL_S * 1000] * 2  # any heartbeat Redis still holds: the config judges its age
