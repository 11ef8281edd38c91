"""Who may call the ``/sim`` control routes: a token on disk, and requests no browser page can forge.

The control routes change exchange truth at will, so a loopback peer is not
enough: any web page open in a browser on the same machine is a loopback peer
too. Every ``/sim`` request must therefore

- come from a loopback address;
- name the simulator itself in ``Host`` (a DNS-rebinding page names its own);
- carry no ``Origin`` but the simulator's own (a page elsewhere is refused);
- carry the control token in ``X-Sim-Token`` (a page cannot read the file);
- send its body as ``application/json`` (a cross-origin "simple" request
  cannot, without a preflight the simulator never answers).

The Bybit ``/v5`` routes are untouched: pybit knows nothing of these rules.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from failover.domain.files import (
    PRIVATE_FOLDER,
    FileRefused,
    atomic_write_text,
    move_aside,
    read_bounded,
    secure_file,
)

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Sim-Token"
TOKEN_FILE_NAME = "control_token"
TOKEN_BYTES = 32  # 256 bits; token_urlsafe makes 43 characters of them
MAX_TOKEN_FILE = 4096  # a token file larger than this is not one of ours
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43,512}$")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def token_path_for(state_path: Path) -> Path:
    """Return where the control token of a simulator keeping its state in ``state_path`` lives (same folder)."""
    return state_path.with_name(TOKEN_FILE_NAME)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def read_token(path: Path) -> str | None:
    """Return the token in ``path``; None when there is no file or it does not hold a token."""
    if path.is_symlink():  # the token is a plain file of ours; a symlink (or a loop of them) is not trusted
        return None
    try:
        raw = read_bounded(path, MAX_TOKEN_FILE)
    except (OSError, FileRefused):  # absent, a directory, too large
        return None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return token if _TOKEN_RE.match(token) else None


def load_or_create_token(path: Path) -> str:
    """Return the control token kept in ``path``, creating it (0600) the first time.

    An existing token is kept across restarts, so clients that read it once stay
    valid; its mode is narrowed back to 0600 if it was widened. Anything at
    ``path`` that is not a token (empty, binary, a directory, a symlink) is moved
    aside, never deleted, and a new token is written.
    """
    path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    token = read_token(path)
    if token is not None:
        secure_file(path)
        return token
    if os.path.lexists(path):
        aside = move_aside(path, datetime.now(tz=UTC))
        log.warning("simexchange: %s held no control token; moved to %s", path, aside)
    token = new_token()
    atomic_write_text(path, token + "\n")
    return token


def is_loopback(remote: str | None) -> bool:
    """Say whether a peer address is on this machine."""
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _local_address(request: web.Request) -> tuple[str | None, int | None]:
    """Return the address and port this connection reached (the bound ones, for a specific bind)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[0]), int(sockname[1])
    return None, None


def _names_us(authority: str, request: web.Request) -> bool:
    """Say whether ``host[:port]`` names this simulator: a loopback name or the bound address, and its port."""
    try:
        parts = urlsplit(f"//{authority}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return False
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        return False
    bound_host, bound_port = _local_address(request)
    if host is None or host not in LOOPBACK_NAMES | ({bound_host} if bound_host else set()):
        return False
    if port is None:
        return bound_port in (None, 80)
    return bound_port is None or port == bound_port


def _own_origin(origin: str, request: web.Request) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme == "http" and not parts.path and _names_us(parts.netloc, request)


def _token_matches(given: str, token: str) -> bool:
    # Bytes on both sides: compare_digest refuses non-ASCII str, and a header may hold anything.
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("ascii"))


def refusal(request: web.Request, token: str) -> web.Response | None:
    """Return the error answer for a ``/sim`` request that fails a rule above; None when it passes them all."""
    if not is_loopback(request.remote):
        return _error(403, "control routes accept loopback clients only", "peer")
    host = request.headers.get("Host", "")
    if not _names_us(host, request):
        return _error(421, f"Host {host!r} does not name this simulator (loopback names and its port only)", "Host")
    origin = request.headers.get("Origin")
    if origin is not None and not _own_origin(origin, request):
        return _error(403, f"Origin {origin!r} may not use the control routes", "Origin")
    given = request.headers.get(TOKEN_HEADER)
    if not given:
        return _error(401, f"{TOKEN_HEADER} header missing: send the simulator's control token", TOKEN_HEADER)
    if not _token_matches(given, token):
        return _error(401, f"{TOKEN_HEADER} header does not match the simulator's control token", TOKEN_HEADER)
    if request.method in BODY_METHODS and request.content_type != "application/json":
        return _error(415, f"Content-Type must be application/json, not {request.content_type!r}", "Content-Type")
    return None


def control_guard(token: str) -> Middleware:
    """Return the middleware that holds ``/sim`` requests to the rules above and lets every other path through."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/sim"):
            refused = refusal(request, token)
            if refused is not None:
                return refused
        return await handler(request)

    return guard


def _error(status: int, message: str, field: str) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status)
