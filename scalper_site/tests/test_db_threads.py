"""A long-lived thread's connection, closed after a database error that left it unusable."""

from __future__ import annotations

import types

import pytest
from django.db import DatabaseError, OperationalError

from scalper_site import db_threads
from scalper_site.db_threads import ClosingOnError, closing_on_error


@pytest.fixture
def tidied(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(db_threads, "close_old_connections", lambda: calls.append(1))
    return calls


def test_a_database_error_tidies_the_connection_and_is_raised_as_it_was(tidied):
    @closing_on_error
    def write() -> None:
        raise OperationalError("the connection is closed")

    with pytest.raises(OperationalError, match="the connection is closed"):
        write()
    assert tidied == [1]


def test_other_errors_and_results_pass_through_untouched(tidied):
    @closing_on_error
    def compute(x: int) -> int:
        if x < 0:
            raise ValueError("not a database error")
        return x * 2

    assert compute(21) == 42
    with pytest.raises(ValueError):
        compute(-1)
    assert tidied == []


def test_a_failing_tidy_never_hides_the_error_it_follows(monkeypatch, caplog):
    def broken_close() -> None:
        raise DatabaseError("closing failed too")

    monkeypatch.setattr(db_threads, "close_old_connections", broken_close)

    @closing_on_error
    def write() -> None:
        raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError, match="server closed"):
        write()
    assert "closing a broken database connection failed: closing failed too" in caplog.text


def test_a_services_module_is_wrapped_function_by_function(tidied):
    def failover_gate(*, run_id: str = "") -> str:
        raise OperationalError("gone")

    module = types.SimpleNamespace(failover_gate=failover_gate, VERSION=3)
    services = ClosingOnError(module)

    assert services.VERSION == 3 and services.failover_gate is services.failover_gate  # wrapped once
    with pytest.raises(OperationalError):
        services.failover_gate(run_id="r")
    assert tidied == [1]
    with pytest.raises(AttributeError):
        services.missing  # noqa: B018
