"""Error reports that never show a secret: the DEBUG page and the admins' error mails.

Django's own filter hides settings whose *names* look secret (``SECRET_KEY``,
``DATABASES[...]["PASSWORD"]``), but a password inside a URL travels under
innocent names: ``REDIS_URL``, ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``
and the channel layer's ``hosts`` all carry the Redis password, and the alert
webhook's secret is its path. Three layers close that:

1. names: a wider pattern (webhooks, DSNs, credentials, chat ids, ...) hides the
   whole value, and a ``*_URL`` setting that holds an absolute URL keeps only its
   scheme, host and port;
2. values: in every string the report shows (settings, request META, frame
   variables), the password of a ``scheme://user:password@host`` URL is masked;
3. output: the rendered report is searched for the values of the known secret
   settings (and the passwords found in URLs) and each is masked, which also
   covers exception messages and object reprs that the first two never see
   (an HTTP client's error names the webhook's path, a Telegram URL holds the
   bot token).

The filter is active with DEBUG on too: that is when the page is shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.http import HttpRequest
from django.utils.html import escape
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute

# Django's names, and the names under which this product and its integrations keep secrets.
HIDDEN_NAMES = re.compile(
    r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|WEBHOOK|DSN|CREDENTIAL|PRIVATE|CHAT_ID", re.I
)
# ``ROOT_URLCONF`` names a module, not a URL.
URL_NAMES = re.compile(r"URL(?!CONF)|URI", re.I)
# The userinfo of a URL: everything between ``scheme://`` and the last ``@`` before the path.
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@", re.I)

# Settings whose whole value is a secret, searched for in the rendered report.
SECRET_SETTINGS = (
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "BYBIT_API_KEY",
    "BYBIT_API_SECRET",
    "ALERT_WEBHOOK_URL",
    "TELEGRAM_BOT_TOKEN",
    "EMAIL_HOST_PASSWORD",
    "SCALPER_METRICS_TOKEN",
)
# Shorter values would mask ordinary words all over the page; structure (layers 1 and 2) still hides them.
MIN_SECRET_LENGTH = 4


def mask_url_passwords(text: str) -> str:
    """Mask the password (or a lone token) in the userinfo of every URL in ``text``."""

    def masked(match: re.Match[str]) -> str:
        user, sep, _ = match["userinfo"].partition(":")
        # ``scheme://token@host`` puts the secret where the user name goes: hide all of it.
        return f"{match['scheme']}{user}:{SUBSTITUTE}@" if sep else f"{match['scheme']}{SUBSTITUTE}@"

    return _USERINFO.sub(masked, str(text))  # str(): a lazy string passes isinstance(str) but not re


def url_origin(url: str) -> str:
    """Keep a URL's scheme, host and port; mask its credentials, path and query (where webhooks keep secrets)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host: nothing of it is safe to show
        return SUBSTITUTE
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed port: show nothing of it
        port = ""
    userinfo = f"{parts.username or ''}:{SUBSTITUTE}@" if parts.password is not None or parts.username else ""
    rest = f"/{SUBSTITUTE}" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{userinfo}{host}{port}{rest}"


class SanitizingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Hide secrets by name, and passwords inside URLs by value, in settings, META and frame variables."""

    hidden_settings = HIDDEN_NAMES

    def is_active(self, request: HttpRequest | None) -> bool:
        # Django switches its filter off under DEBUG; the DEBUG page is exactly where secrets leaked.
        return True

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            text = str(cleansed)  # a lazy string resolved
            if isinstance(key, str) and URL_NAMES.search(key) and "://" in text:
                return url_origin(text)
            return mask_url_passwords(text)
        return cleansed

    def cleanse_special_types(self, request: HttpRequest | None, value: Any) -> Any:
        value = super().cleanse_special_types(request, value)
        return mask_url_passwords(value) if isinstance(value, str) else value


def _strings(value: Any) -> Iterable[str]:
    """Every string inside a setting's value (nested dicts, lists and tuples)."""
    if isinstance(value, str):
        yield str(value)  # a lazy string resolved
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


def known_secrets() -> set[str]:
    """The secret values the settings hold now: whole secret settings, database and URL passwords, webhook paths."""
    found: set[str] = set()
    for name in SECRET_SETTINGS:
        found.update(_strings(getattr(settings, name, "")))
    webhook = getattr(settings, "ALERT_WEBHOOK_URL", "")
    if webhook:
        try:
            parts = urlsplit(webhook)
            found.add(parts.path + (f"?{parts.query}" if parts.query else ""))
        except ValueError:
            pass  # the whole URL is in the set already
    for database in settings.DATABASES.values():
        found.update(_strings(database.get("PASSWORD", "")))
    for name in dir(settings):
        if not name.isupper():
            continue
        for text in _strings(getattr(settings, name)):
            for match in _USERINFO.finditer(text):
                userinfo = match["userinfo"]
                secret = userinfo.partition(":")[2] if ":" in userinfo else userinfo
                found.update({secret, unquote(secret)})
    return {secret for secret in found if len(secret) >= MIN_SECRET_LENGTH}


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace each secret, as written and as HTML-escaped, with the substitute; longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, str(escape(secret))}:
            text = text.replace(form, SUBSTITUTE)
    return text


class SanitizingExceptionReporter(ExceptionReporter):
    """Django's reporter, with the known secret values masked in the rendered page and text."""

    def get_traceback_html(self) -> str:
        return redact(super().get_traceback_html(), known_secrets())

    def get_traceback_text(self) -> str:
        return redact(super().get_traceback_text(), known_secrets())
