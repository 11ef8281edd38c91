"""Test harness shared by every app.

The per-session data folder is set up by ``scalper_site.pytest_plugin``. The
``services`` group (``-m services``) runs with the production settings module
against real PostgreSQL and Redis; when one of them is unreachable the run
stops at once, naming the command that starts it.
"""

from __future__ import annotations

import os

import pytest

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'


def _services_selected(config: pytest.Config) -> bool:
    expr = config.getoption("markexpr") or ""
    return "services" in expr and "not services" not in expr


def pytest_configure(config: pytest.Config) -> None:
    if not _services_selected(config):
        return
    problems = []
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        problems.append("DATABASE_URL must point at PostgreSQL for the services group (make test sets it)")
    else:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        # The server is what must answer; pytest-django creates the test database itself.
        params = conninfo_to_dict(database_url.replace("postgres://", "postgresql://", 1))
        try:
            psycopg.connect(make_conninfo(**{**params, "dbname": "postgres"}), connect_timeout=3).close()
        except psycopg.OperationalError as exc:
            problems.append(f"PostgreSQL is not reachable at {database_url} ({exc}); start it with: {START_POSTGRES}")
    if not redis_url:
        problems.append("REDIS_URL must be set for the services group (make test sets it)")
    else:
        import redis

        try:
            redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
        except (redis.RedisError, OSError) as exc:
            problems.append(f"Redis is not reachable at {redis_url} ({exc}); start it with: {START_REDIS}")
    if problems:
        pytest.exit("services group cannot run:\n  " + "\n  ".join(problems), returncode=3)


@pytest.fixture(scope="session", autouse=True)
def _end_stray_database_sessions(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end sessions that processes or threads of a test left open."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
