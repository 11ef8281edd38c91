"""Who may get in: failed logins logged and locked out (django-axes), API tokens hashed and expiring (knox).

Settings: ``AXES_HANDLER`` names :class:`LoggingAxesHandler`; ``REST_FRAMEWORK`` names
:class:`ApiTokenAuthentication`.
"""

from __future__ import annotations

import logging
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication
from knox.signals import token_expired
from rest_framework import exceptions

security_log = logging.getLogger("scalper.security")

# A username is whatever the client typed: bounded, and logged with repr() so it cannot forge a log line.
_MAX_LOGGED_USERNAME = 150


class LoggingAxesHandler(AxesDatabaseHandler):
    """axes' database handler, plus one ``scalper.security`` line for every failed login.

    Django hands the signal credentials with the password already masked; only the username and the
    address are written, never a credential.
    """

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
    ) -> None:
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is None:  # a login outside a request (a script calling authenticate()): nothing to lock
            username = credentials.get("username")
            security_log.warning("login failed: username=%r (no request)", _bounded(username))
            return
        username = get_client_username(request, credentials)
        address = getattr(request, "axes_ip_address", None)
        locked = bool(getattr(request, "axes_locked_out", False))
        security_log.warning(
            "login failed: username=%r address=%s path=%s%s",
            _bounded(username),
            address,
            request.path,
            " (locked out)" if locked else "",
        )


def _bounded(username: object) -> str | None:
    return None if username is None else str(username)[:_MAX_LOGGED_USERNAME]


class ApiTokenAuthentication(TokenAuthentication):
    """knox's ``Authorization: Token <key>``, with a malformed key refused as invalid instead of a 500.

    knox decodes the key as UTF-8 and lets the error out; a key is hex, so anything not ASCII is invalid.
    """

    def authenticate_credentials(self, token: bytes) -> Any:
        try:
            token.decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        return super().authenticate_credentials(token)

    def _cleanup_token(self, auth_token: Any) -> bool:
        """Refuse (and remove) the presented token once expired; True when it was.

        knox also reads every other token of the user on each request to delete the expired ones:
        a second query on every API call (a fifth of a status request's time). An expired token
        authenticates nothing either way; it is removed when it is next presented.
        """
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            username = auth_token.user.get_username()
            auth_token.delete()
            token_expired.send(sender=self.__class__, username=username, source="auth_token")
            return True
        return False


class ApiTokenScheme(KnoxTokenScheme):
    """The OpenAPI security scheme of :class:`ApiTokenAuthentication` (the name the schema always used)."""

    target_class = "scalper_site.logins.ApiTokenAuthentication"
    name = "tokenAuth"
