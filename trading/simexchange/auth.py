"""Bybit V5 request signing, checked the way Bybit checks it."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from . import errors as E

WS_AUTH_PREFIX = "GET/realtime"
FUTURE_TOLERANCE_MS = 1000  # Bybit accepts timestamps up to 1 s ahead of its clock


def sign(secret: str, payload: str) -> str:
    """Return the lowercase hex HMAC-SHA256 of ``payload`` keyed by ``secret``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str
    api_secret: str


def verify_rest(
    creds: Credentials, headers: Mapping[str, str], raw_payload: str, now_ms: int
) -> None:
    """Check a signed REST request; raise ExchangeError 10003/10002/10004.

    ``raw_payload`` is the query string exactly as it came on the request line
    (GET) or the body bytes decoded (POST): re-encoding parsed parameters would
    break cursors and ordering.
    """
    key = headers.get("X-BAPI-API-KEY", "")
    if not key or not hmac.compare_digest(key, creds.api_key):
        raise E.ExchangeError(E.INVALID_API_KEY, "API key is invalid.")
    ts_raw = headers.get("X-BAPI-TIMESTAMP", "")
    recv_raw = headers.get("X-BAPI-RECV-WINDOW", "5000")
    try:
        ts, recv_window = int(ts_raw), int(recv_raw)
    except ValueError:
        raise E.param_error("params error: X-BAPI-TIMESTAMP or X-BAPI-RECV-WINDOW invalid") from None
    if not (now_ms - recv_window <= ts < now_ms + FUTURE_TOLERANCE_MS):
        raise E.ExchangeError(
            E.TIMESTAMP_ERROR,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{ts}],server_timestamp[{now_ms}],recv_window[{recv_window}]",
        )
    expected = sign(creds.api_secret, f"{ts_raw}{key}{recv_raw}{raw_payload}")
    if not hmac.compare_digest(expected, headers.get("X-BAPI-SIGN", "")):
        origin = f"{ts_raw}{key}{recv_raw}{raw_payload}"
        raise E.ExchangeError(E.SIGN_ERROR, f"error sign! origin_string[{origin}]")


def verify_ws_auth(creds: Credentials, args: object, now_ms: int) -> tuple[bool, str]:
    """Check ``{"op":"auth","args":[key, expires, signature]}``; return (ok, ret_msg)."""
    if not isinstance(args, list) or len(args) != 3:
        return False, "Params Error"
    key, expires, signature = args
    if not isinstance(key, str) or not hmac.compare_digest(key, creds.api_key):
        return False, "Invalid apikey"
    try:
        expires_ms = int(expires)
    except (TypeError, ValueError):
        return False, "Params Error"
    if expires_ms <= now_ms:
        return False, "Request expired"
    if not isinstance(signature, str) or not hmac.compare_digest(
        sign(creds.api_secret, f"{WS_AUTH_PREFIX}{expires}"), signature
    ):
        return False, "Signature verification failed"
    return True, ""
