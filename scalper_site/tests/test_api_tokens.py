"""API tokens: `Authorization: Token <key>`, stored as a digest, expiring, issued by `manage.py issue_token`."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

pytestmark = pytest.mark.django_db


def _user(username: str = "script", *, active: bool = True):
    return get_user_model().objects.create_user(username, password="pw-123456-x", is_active=active)


def _get(key: str, path: str = "/api/failover/status"):
    return Client().get(path, HTTP_AUTHORIZATION=f"Token {key}")


def _issue(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("issue_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_token_works_through_the_token_header():
    _, key = AuthToken.objects.create(user=_user())
    assert _get(key).status_code == 200
    assert Client().get("/api/failover/status").status_code == 403


def test_the_database_holds_a_digest_not_the_key():
    _, key = AuthToken.objects.create(user=_user())
    row = AuthToken.objects.get()
    assert row.digest != key and len(row.digest) == 128  # SHA-512, hex
    # Read the table as stored: no column of any row holds the key.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {AuthToken._meta.db_table}")  # noqa: S608 (our own table name)
        stored = [str(value) for record in cursor.fetchall() for value in record]
    assert stored and not any(key in value for value in stored)


def test_an_expired_token_is_refused_and_removed():
    _, key = AuthToken.objects.create(user=_user())
    assert _get(key).status_code == 200
    AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    response = _get(key)
    assert response.status_code == 403 and response.json()["detail"] == "Invalid token."
    assert not AuthToken.objects.exists()


def test_a_token_expires_after_the_configured_lifetime():
    assert settings.REST_KNOX["TOKEN_TTL"] == timedelta(days=30)
    before = timezone.now()
    row, _ = AuthToken.objects.create(user=_user())
    assert row.expiry is not None and row.expiry - before >= timedelta(days=30)
    assert row.expiry - before < timedelta(days=30, minutes=1)


def test_a_token_of_an_inactive_user_is_refused():
    user = _user()
    _, key = AuthToken.objects.create(user=user)
    user.is_active = False
    user.save()
    assert _get(key).status_code == 403


@pytest.mark.parametrize(
    "header",
    ["Token \xff\xfe", "Token " + "\xe9" * 64, "Token " + "a" * 5000, "Token a b", "Token", "Token nope"],
)
def test_a_malformed_token_is_refused_never_a_server_error(header):
    _user()
    response = Client(raise_request_exception=False).get("/api/failover/status", HTTP_AUTHORIZATION=header)
    assert response.status_code == 403, response.content


def test_issue_token_prints_a_working_token_once():
    _user("bot")
    out, err = _issue("bot")
    key = out.strip()
    assert out == key + "\n", "the key alone on standard output"
    assert key not in err and "shown only this once" in err
    assert _get(key).status_code == 200
    row = AuthToken.objects.get()
    assert row.user.username == "bot" and row.digest != key
    assert row.expiry is not None and row.expiry - timezone.now() > timedelta(days=29)


def test_issue_token_takes_a_lifetime_in_days():
    _user("bot")
    out, err = _issue("bot", "--ttl-days", "2")
    row = AuthToken.objects.get()
    assert row.expiry is not None and timedelta(days=1) < row.expiry - timezone.now() <= timedelta(days=2)
    assert f"{row.expiry:%Y-%m-%d}" in err
    assert _get(out.strip()).status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody"], "no user named 'nobody'"),
        (["sleeper"], "is inactive"),
        (["bot", "--ttl-days", "0"], "--ttl-days must be between 1"),
        (["bot", "--ttl-days", "100000"], "--ttl-days must be between 1"),
    ],
)
def test_issue_token_refuses_what_it_cannot_do(args, message):
    _user("bot")
    _user("sleeper", active=False)
    with pytest.raises(CommandError, match=message):
        _issue(*args)
    assert not AuthToken.objects.exists()


def test_drf_authtoken_is_no_longer_installed():
    # Its keys were kept in clear text and never expired.
    assert "rest_framework.authtoken" not in settings.INSTALLED_APPS
    assert "knox" in settings.INSTALLED_APPS
