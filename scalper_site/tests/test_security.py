"""Secrets on the DEBUG page, and the Content-Security-Policy of the pages."""

from __future__ import annotations

import re
import sys

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.views.debug import technical_500_response

from scalper_site.security import SUBSTITUTE, SanitizingExceptionReporterFilter, mask_url_passwords, url_origin

REDIS_PASSWORD = "s3cr3t-redis-pw"
REDIS_URL = f"redis://:{REDIS_PASSWORD}@redis-host:6379/0"
PG_PASSWORD = "pg-secret-pw"
DATABASE_URL = f"postgres://scalper:{PG_PASSWORD}@db-host:5432/scalper"
WEBHOOK_PATH = "/services/T000/B000/webhook-secret-path"
WEBHOOK_URL = f"https://hooks.example.com{WEBHOOK_PATH}"
TELEGRAM_TOKEN = "123456:telegram-bot-secret"
LOGIN_PASSWORD = "hunter2-login-pw"
SMTP_PASSWORD = "smtp-secret-password"
METRICS_TOKEN = "metrics-token-0123456789abcdefghijklmn"
SECRETS = [REDIS_PASSWORD, PG_PASSWORD, WEBHOOK_PATH, "webhook-secret", TELEGRAM_TOKEN, "telegram-bot-secret",
           LOGIN_PASSWORD, SMTP_PASSWORD, METRICS_TOKEN]


@pytest.fixture
def secret_settings(settings):
    """The settings a deployment with a password-protected Redis and both alert sinks has, under DEBUG."""
    settings.DEBUG = True
    settings.REDIS_URL = settings.CELERY_BROKER_URL = settings.CELERY_RESULT_BACKEND = REDIS_URL
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [REDIS_URL], "prefix": "scalper"}}}
    settings.ALERT_WEBHOOK_URL = WEBHOOK_URL
    settings.TELEGRAM_BOT_TOKEN = TELEGRAM_TOKEN
    settings.TELEGRAM_CHAT_ID = "-100777"
    settings.EMAIL_HOST_PASSWORD = SMTP_PASSWORD
    settings.SCALPER_METRICS_TOKEN = METRICS_TOKEN
    return settings


def _deliver_alert(url: str, broker: str) -> None:
    """Fail the way an HTTP client does: the message names the URL's path (here with the token in it)."""
    telegram = f"https://api.telegram.org/bot{TELEGRAM_TOKEN}/sendMessage"
    raise ConnectionError(f"Max retries exceeded with url: {WEBHOOK_PATH} (also {telegram}, {broker}, {url}; "
                          f"smtp login {SMTP_PASSWORD} refused; bearer {METRICS_TOKEN})")


def _error_page(accept: str) -> str:
    request = RequestFactory().post(
        "/accounts/login/",
        {"username": "op", "password": LOGIN_PASSWORD},
        HTTP_ACCEPT=accept,
        # Under a WSGI server the process environment is part of META.
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        ALERT_WEBHOOK_URL=WEBHOOK_URL,
    )
    request.sensitive_post_parameters = ["password"]  # what LoginView's decorator marks
    try:
        _deliver_alert(WEBHOOK_URL, REDIS_URL)
    except ConnectionError:
        response = technical_500_response(request, *sys.exc_info())
    return response.content.decode()


@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_the_debug_page_shows_no_password_token_or_webhook(secret_settings, accept):
    page = _error_page(accept)
    leaked = [secret for secret in SECRETS if secret in page]
    assert not leaked, f"the DEBUG page shows {leaked}"
    # Still a useful page: the settings are listed, the hosts are shown, the masks are visible.
    assert "CELERY_RESULT_BACKEND" in page and "TELEGRAM_BOT_TOKEN" in page
    assert "redis-host:6379" in page and "db-host:5432" in page
    assert SUBSTITUTE in page
    assert "Max retries exceeded" in page


def test_the_filter_alone_masks_settings_and_the_environment_in_meta(secret_settings):
    """The first two layers, without the reporter's search of the rendered page."""
    reporter_filter = SanitizingExceptionReporterFilter()
    safe = reporter_filter.get_safe_settings()
    assert safe["REDIS_URL"] == f"redis://:{SUBSTITUTE}@redis-host:6379/{SUBSTITUTE}"
    assert safe["CELERY_RESULT_BACKEND"] == f"redis://:{SUBSTITUTE}@redis-host:6379/0"
    assert safe["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"] == [f"redis://:{SUBSTITUTE}@redis-host:6379/0"]
    assert safe["ALERT_WEBHOOK_URL"] == safe["TELEGRAM_BOT_TOKEN"] == safe["TELEGRAM_CHAT_ID"] == SUBSTITUTE
    assert safe["STATIC_URL"] == "/static/" and safe["ROOT_URLCONF"] == "scalper_site.urls"
    request = RequestFactory().get("/", DATABASE_URL=DATABASE_URL, SOME_DSN=DATABASE_URL, PATH="/usr/bin")
    meta = reporter_filter.get_safe_request_meta(request)
    assert meta["DATABASE_URL"] == f"postgres://scalper:{SUBSTITUTE}@db-host:5432/{SUBSTITUTE}"
    assert meta["SOME_DSN"] == SUBSTITUTE and meta["PATH"] == "/usr/bin"
    assert not [secret for secret in SECRETS if secret in repr(safe) + repr(meta)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (REDIS_URL, f"redis://:{SUBSTITUTE}@redis-host:6379/0"),
        (DATABASE_URL, f"postgres://scalper:{SUBSTITUTE}@db-host:5432/scalper"),
        ("amqp://guest:p@ss:word@mq:5672//", f"amqp://guest:{SUBSTITUTE}@mq:5672//"),
        ("https://ghp_token123@github.example/x", f"https://{SUBSTITUTE}@github.example/x"),
        ("hosts: ['redis://:a@h1/0', 'redis://h2/0']", f"hosts: ['redis://:{SUBSTITUTE}@h1/0', 'redis://h2/0']"),
        ("redis://127.0.0.1:6379/9", "redis://127.0.0.1:6379/9"),
        ("no url here: user@example.com", "no url here: user@example.com"),
    ],
)
def test_mask_url_passwords(text, expected):
    assert mask_url_passwords(text) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (WEBHOOK_URL, f"https://hooks.example.com/{SUBSTITUTE}"),
        (REDIS_URL, f"redis://:{SUBSTITUTE}@redis-host:6379/{SUBSTITUTE}"),
        ("https://api.telegram.org", "https://api.telegram.org"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("http://[::1", SUBSTITUTE),
    ],
)
def test_url_origin_keeps_scheme_host_and_port_only(url, expected):
    assert url_origin(url) == expected


def _directives(header: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


@pytest.mark.parametrize(("secure", "socket_origin"), [(False, "ws://testserver"), (True, "wss://testserver")])
def test_pages_carry_a_csp_that_allows_only_this_sites_scripts_styles_and_socket(secure, socket_origin):
    response = Client().get("/accounts/login/", secure=secure)
    assert response.status_code == 200
    policy = _directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'", socket_origin]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]


@pytest.mark.django_db
def test_the_dashboard_page_has_nothing_inline_that_its_csp_would_block():
    user = get_user_model().objects.create_user("csp-op", password="pw-123456-x", is_staff=True)
    client = Client()
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200 and "Content-Security-Policy" in response
    html = response.content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # inline scripts
    assert re.findall(r"<style\b", html) == [] and re.findall(r"\sstyle=", html) == []  # inline styles
    assert re.findall(r"\son[a-z]+=", html) == []  # inline event handlers
    assert 'src="/static/dashboard/dashboard.js"' in html


def test_csp_can_be_switched_to_report_only(settings):
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY, settings.CONTENT_SECURITY_POLICY = (
        settings.CONTENT_SECURITY_POLICY, None)
    response = Client().get("/accounts/login/")
    assert "Content-Security-Policy" not in response
    assert "ws://testserver" in response["Content-Security-Policy-Report-Only"]
