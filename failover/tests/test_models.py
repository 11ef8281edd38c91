from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection

from failover.models import FailureEventRecord, FailureType


def _roundtrip() -> FailureEventRecord:
    at = datetime(2025, 11, 18, 15, 19, 55, 123000, tzinfo=UTC)
    FailureEventRecord.objects.create(
        timestamp=at,
        type=FailureType.PRIVATE_WS_DISCONNECTED,
        source="EXECUTION_ENGINE",
        message="Private WS disconnected",
        details={"reconnectAttempts": 3, "symbols": ["BTCUSDT"]},
    )
    stored = FailureEventRecord.objects.get()
    assert stored.timestamp == at
    assert stored.details == {"reconnectAttempts": 3, "symbols": ["BTCUSDT"]}
    assert stored.type == "PRIVATE_WS_DISCONNECTED"
    return stored


@pytest.mark.django_db
def test_failure_event_round_trips_on_sqlite():
    assert connection.vendor == "sqlite"
    _roundtrip()


@pytest.mark.services
@pytest.mark.django_db
def test_failure_event_round_trips_on_postgresql():
    assert connection.vendor == "postgresql"
    _roundtrip()


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", check=True, dry_run=True, verbosity=0)
