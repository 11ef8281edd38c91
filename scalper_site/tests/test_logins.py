"""Logins: lockout after repeated failures per user and address, failures logged, the admin password validated."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
import requests
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from scalper_site.testkit import BASE_DIR, free_port, start_process, stop_process, wait_until

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"
WRONG = "wrong-password-guess-1"
ATTACKER = "203.0.113.7"
ELSEWHERE = "198.51.100.4"

# The two login pages: where they post, and where a successful login lands.
LOGINS = {
    "dashboard": ("/accounts/login/", "/"),
    "admin": ("/admin/login/", "/admin/"),
}


def _user(username: str = "operator") -> None:
    get_user_model().objects.create_user(username, password=PASSWORD, is_staff=True)


def _login(client: Client, page: str, username: str, password: str, **extra: str):
    path, landing = LOGINS[page]
    return client.post(path, {"username": username, "password": password, "next": landing}, **extra)


def _fail_until_locked(client: Client, page: str, username: str = "operator") -> None:
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        assert _login(client, page, username, WRONG).status_code == 200  # the form again, with its error
    locked = _login(client, page, username, WRONG)
    assert locked.status_code == 403, "the failure that reaches the limit already answers with the lockout page"


def _logged_in(response, page: str) -> bool:
    return response.status_code == 302 and response["Location"] == LOGINS[page][1]


@pytest.mark.parametrize("page", LOGINS)
def test_after_five_failures_the_right_password_is_refused(page):
    _user()
    client = Client(REMOTE_ADDR=ATTACKER)
    assert settings.AXES_FAILURE_LIMIT == 5
    _fail_until_locked(client, page)
    response = _login(client, page, "operator", PASSWORD)
    assert response.status_code == 403
    assert b"Sign-in locked" in response.content and b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("page", LOGINS)
def test_a_lockout_holds_for_that_user_and_address_only(page):
    _user()
    _user("colleague")
    _fail_until_locked(Client(REMOTE_ADDR=ATTACKER), page)
    assert _logged_in(_login(Client(REMOTE_ADDR=ELSEWHERE), page, "operator", PASSWORD), page)
    assert _logged_in(_login(Client(REMOTE_ADDR=ATTACKER), page, "colleague", PASSWORD), page)


def test_the_dashboard_and_admin_logins_share_one_count():
    _user()
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(3):
        _login(client, "dashboard", "operator", WRONG)
    _login(client, "admin", "operator", WRONG)
    assert _login(client, "admin", "operator", WRONG).status_code == 403
    assert _login(client, "dashboard", "operator", PASSWORD).status_code == 403


def test_a_forwarded_for_header_from_the_client_does_not_dodge_the_lockout():
    _user()
    client = Client(REMOTE_ADDR=ATTACKER)
    for n in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "dashboard", "operator", WRONG, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    response = _login(client, "dashboard", "operator", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.200")
    assert response.status_code == 403


def test_the_lockout_ends_after_its_cool_off():
    _user()
    client = Client(REMOTE_ADDR=ATTACKER)
    _fail_until_locked(client, "dashboard")
    assert timedelta(minutes=15) == settings.AXES_COOLOFF_TIME
    # Move the recorded failures back in time rather than waiting.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert _logged_in(_login(client, "dashboard", "operator", PASSWORD), "dashboard")


def test_a_success_resets_the_count():
    _user()
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "dashboard", "operator", WRONG)
    assert _logged_in(_login(client, "dashboard", "operator", PASSWORD), "dashboard")
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "dashboard", "operator", WRONG).status_code == 200


def test_a_failed_login_is_logged_with_username_and_address_never_the_password(caplog):
    _user()
    with caplog.at_level(logging.INFO, logger="scalper.security"):
        _login(Client(REMOTE_ADDR=ATTACKER), "admin", "operator", WRONG)
    lines = [r.getMessage() for r in caplog.records if r.name == "scalper.security"]
    assert len(lines) == 1
    assert "login failed" in lines[0] and "'operator'" in lines[0] and ATTACKER in lines[0]
    every_line = "\n".join(r.getMessage() for r in caplog.records)
    assert WRONG not in every_line
    # What axes keeps in the database is masked too.
    stored = [str(v) for v in AccessAttempt.objects.values_list("get_data", "post_data", "username")]
    assert stored and not any(WRONG in value for value in stored)


def test_the_failure_that_locks_says_so_in_the_log(caplog):
    _user()
    with caplog.at_level(logging.INFO, logger="scalper.security"):
        _fail_until_locked(Client(REMOTE_ADDR=ATTACKER), "dashboard")
    lines = [r.getMessage() for r in caplog.records if r.name == "scalper.security"]
    assert len(lines) == settings.AXES_FAILURE_LIMIT
    assert lines[-1].endswith("(locked out)") and not lines[0].endswith("(locked out)")


def test_a_username_cannot_forge_a_log_line(caplog):
    with caplog.at_level(logging.INFO, logger="scalper.security"):
        _login(Client(REMOTE_ADDR=ATTACKER), "dashboard", "x\nlogin ok: username='admin'", WRONG)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "scalper.security"]
    assert "\n" not in line


# -- the first admin's password ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("password123", "too common"),
        ("short1", "too short"),
        ("83920174650", "entirely numeric"),
        ("admin2024", "too similar to the username"),
    ],
)
def test_a_weak_admin_password_is_refused_and_no_admin_is_created(monkeypatch, password, problem):
    monkeypatch.setenv("SCALPER_ADMIN_USER", "admin")
    monkeypatch.setenv("SCALPER_ADMIN_PASSWORD", password)
    with pytest.raises(CommandError) as refused:
        call_command("ensure_admin")
    assert "SCALPER_ADMIN_PASSWORD is refused" in str(refused.value) and problem in str(refused.value)
    assert password not in str(refused.value)
    assert not get_user_model().objects.exists()


def test_a_strong_admin_password_creates_the_admin(monkeypatch):
    monkeypatch.setenv("SCALPER_ADMIN_USER", "admin")
    monkeypatch.setenv("SCALPER_ADMIN_PASSWORD", PASSWORD)
    call_command("ensure_admin")
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(PASSWORD)


# -- settings from the environment --------------------------------------------------------------

PRINT_LOGIN_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'limit': s.AXES_FAILURE_LIMIT, 'minutes': s.AXES_COOLOFF_TIME.total_seconds() / 60, "
    "'ttl_days': s.REST_KNOX['TOKEN_TTL'].days}))"
)


def _settings_in_child(tmp_path, **env: str) -> subprocess.CompletedProcess:
    child_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY"}}
    child_env.update({"DJANGO_SETTINGS_MODULE": "scalper_site.settings", "SCALPER_DATA_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "-c", PRINT_LOGIN_SETTINGS], cwd=BASE_DIR, env=child_env, capture_output=True, text=True,
        timeout=60,
    )


@pytest.mark.slow  # loads the settings in child interpreters
def test_lockout_and_token_lifetimes_come_from_the_environment(tmp_path):
    defaults = _settings_in_child(tmp_path)
    assert json.loads(defaults.stdout) == {"limit": 5, "minutes": 15, "ttl_days": 30}, defaults.stderr
    chosen = _settings_in_child(
        tmp_path, SCALPER_LOGIN_FAILURE_LIMIT="3", SCALPER_LOGIN_LOCKOUT_MINUTES="60", SCALPER_API_TOKEN_TTL_DAYS="7"
    )
    assert json.loads(chosen.stdout) == {"limit": 3, "minutes": 60, "ttl_days": 7}, chosen.stderr
    for name in ("SCALPER_LOGIN_FAILURE_LIMIT", "SCALPER_LOGIN_LOCKOUT_MINUTES", "SCALPER_API_TOKEN_TTL_DAYS"):
        refused = _settings_in_child(tmp_path, **{name: "0"})
        assert refused.returncode != 0 and name in refused.stderr


# -- behind a proxy: the address is the one uvicorn resolved ---------------------------------------


class _WebServer:
    """uvicorn serving the product on a SQLite file of its own, with a first admin."""

    def __init__(self, tmp_path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY"}},
            "DJANGO_SETTINGS_MODULE": "scalper_site.settings",
            "SCALPER_DATA_DIR": str(tmp_path),
            "SCALPER_SQLITE_PATH": str(tmp_path / "db.sqlite3"),
            "SCALPER_ADMIN_USER": "operator",
            "SCALPER_ADMIN_PASSWORD": PASSWORD,
        }
        self.log = tmp_path / "web.log"
        for command in ("migrate", "ensure_admin"):
            subprocess.run([sys.executable, "manage.py", command], cwd=BASE_DIR, env=self.env, check=True,
                           capture_output=True, timeout=120)

    def serve(self, forwarded_allow_ips: str):
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "scalper_site.asgi:application", "--host", "127.0.0.1",
                "--port", str(port), "--lifespan", "off", "--no-access-log"]
        process = start_process(argv, env={**self.env, "FORWARDED_ALLOW_IPS": forwarded_allow_ips}, log=self.log)
        url = f"http://127.0.0.1:{port}/accounts/login/"
        wait_until(lambda: requests.get(url, timeout=2).status_code == 200, timeout=60, what=f"uvicorn ({self.log})")
        return process, url


def _post_login(url: str, password: str, forwarded_for: str) -> int:
    session = requests.Session()
    session.get(url, timeout=5)
    data = {"username": "operator", "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]}
    response = session.post(url, data=data, headers={"X-Forwarded-For": forwarded_for}, allow_redirects=False,
                            timeout=10)
    return response.status_code


@pytest.mark.slow  # migrates a database and starts uvicorn twice
def test_behind_a_trusted_proxy_the_lockout_keys_on_the_forwarded_client(tmp_path):
    web = _WebServer(tmp_path)
    limit = 5
    # Loopback is the proxy uvicorn trusts by default: X-Forwarded-For names the client.
    process, url = web.serve("127.0.0.1,::1")
    try:
        statuses = [_post_login(url, WRONG, "192.0.2.1") for _ in range(limit)]
        assert statuses == [200] * (limit - 1) + [403]
        assert _post_login(url, PASSWORD, "192.0.2.1") == 403
        assert _post_login(url, PASSWORD, "192.0.2.2") == 302, "another client behind the proxy is not locked"
    finally:
        stop_process(process)
    # A peer that is not a trusted proxy: its header is ignored, so changing it dodges nothing.
    process, url = web.serve("192.0.2.254")
    try:
        for n in range(limit):
            _post_login(url, WRONG, f"198.51.100.{n}")
        assert _post_login(url, PASSWORD, "198.51.100.99") == 403
    finally:
        stop_process(process)
    assert "login failed: username='operator' address=192.0.2.1 " in web.log.read_text()
