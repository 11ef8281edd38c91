"""The account lease: only the trader that holds it may change the account, and every change proves it.

One lease per exchange account, in Redis. The account's key is derived from the
exchange endpoint and the API key (``account_key``: a hash, never the secret),
so two traders on one account meet on the same key whatever host or data
folder they run from.

- ``scalper:lease:{account}``: the lease, taken with ``SET NX PX ttl``; its
  value is JSON (``LeaseRecord``): ``token``, ``holder``, ``host``, ``pid``,
  ``runId``, ``renewedAt`` (epoch s), ``ttlS``.
- ``scalper:lease:{account}:token``: the fencing token, an ``INCR`` counter
  never reset; every acquisition takes the next value.
- ``scalper:lease:{account}:last``: the last lease value written (no TTL), so
  a guardian can tell since when no trader has held the account.

Acquire, renew (compare-and-extend) and release (compare-and-delete) are Lua
scripts, so each is one atomic step on the server. ``fence_check`` is the check
made before every change to the account: the key holds a lease with our token
and our holder id (a Redis back empty counts tokens from 1 again, so a token
alone may repeat) and more than a margin of its TTL left.

``AccountLease`` is what a trader holds: its token, and a local deadline on
``CLOCK_BOOTTIME`` (which keeps running while the process is stopped or the
host suspended) taken from the moment each acquire or renew was *sent*, minus a
safety margin. A frozen trader that wakes after the deadline knows without
asking Redis that it holds nothing. Every Redis call has a socket timeout;
Redis errors come back as ``LeaseUnavailable``, garbage in the key as
``LeaseCorrupt``: both mean "not held", neither is raised into the trader's loop
by ``AccountLease``'s ``try_*`` methods.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from trading.exchange.port import ExchangeError

LEADER = "LEADER"
STANDBY = "STANDBY"
ROLES = (LEADER, STANDBY)

DEFAULT_TTL_S = 10.0
MIN_TTL_S = 1.0
MAX_TTL_S = 3600.0
FENCE_MARGIN_MS = 1000  # the most a fence check or the local deadline keeps back; a fifth of the TTL when smaller
SOCKET_TIMEOUT_S = 2.0  # no lease call may hang the trader; a renew slower than this has failed
MAX_VALUE_BYTES = 4096  # a lease value is ~200 bytes: anything much larger is not ours


class LeaseError(Exception):
    """Base class of the lease's errors."""


class LeaseCorrupt(LeaseError):
    """The lease key holds something that is not a lease value; the message says why."""


class LeaseUnavailable(LeaseError):
    """Redis did not answer (down, unreachable, timed out): the lease cannot be taken or proven."""


class LeaseLost(ExchangeError):
    """No valid lease: the call that would have changed the account was not sent."""


def account_key(endpoint: str, api_key: str) -> str:
    """The account's lease id: a hash of the endpoint and the API key (never the secret)."""
    return hashlib.sha256(f"{endpoint}|{api_key}".encode()).hexdigest()[:24]


def lease_key(account: str) -> str:
    return f"scalper:lease:{account}"


def token_key(account: str) -> str:
    return f"scalper:lease:{account}:token"


def last_key(account: str) -> str:
    return f"scalper:lease:{account}:last"


def fence_margin_ms(ttl_s: float) -> int:
    """What a check keeps back of a lease of ``ttl_s``: ``FENCE_MARGIN_MS``, or a fifth of a short TTL."""
    return int(min(FENCE_MARGIN_MS, ttl_s * 1000 / 5))


def boottime() -> float:
    """Seconds on a clock that counts time stopped (SIGSTOP) and suspended; ``time.monotonic`` where absent."""
    clock_id = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clock_id) if clock_id is not None else time.monotonic()


def redis_client(url: str, *, timeout_s: float = SOCKET_TIMEOUT_S) -> redis.Redis:
    """A client for the lease: connect and socket timeouts set, so no call can hang."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)


# -- the value ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """One lease value; ``expires_at`` (epoch s) is ``renewed_at + ttl_s``."""

    token: int
    holder: str
    host: str
    pid: int
    run_id: str
    renewed_at: float
    ttl_s: float
    expires_at: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON value as stored (camelCase, without ``expiresAt``, which is derived)."""
        return {
            "token": self.token,
            "holder": self.holder,
            "host": self.host,
            "pid": self.pid,
            "runId": self.run_id,
            "renewedAt": self.renewed_at,
            "ttlS": self.ttl_s,
        }


def _number(data: dict[str, Any], name: str) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LeaseCorrupt(f"{name} is not a finite number: {value!r:.60}")
    return float(value)


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or len(value) > 256:
        raise LeaseCorrupt(f"{name} is not a short string: {value!r:.60}")
    return value


def parse_lease(raw: bytes | str) -> LeaseRecord:
    """Decode and validate one lease value; raise ``LeaseCorrupt`` saying what is wrong."""
    if len(raw) > MAX_VALUE_BYTES:
        raise LeaseCorrupt(f"value of {len(raw)} bytes (a lease is under {MAX_VALUE_BYTES})")
    try:
        data = json.loads(raw)
    except Exception as exc:  # not UTF-8, not JSON, past the int digit limit, nested too deep
        raise LeaseCorrupt(f"not a JSON lease value: {type(exc).__name__}: {str(exc)[:120]}") from exc
    if not isinstance(data, dict):
        raise LeaseCorrupt(f"not a JSON object: {type(data).__name__}")
    token, pid = _number(data, "token"), _number(data, "pid")
    if token != int(token) or token < 1 or pid != int(pid) or pid < 0:
        raise LeaseCorrupt(f"token {token:g} or pid {pid:g} is not a positive integer")
    renewed_at, ttl_s = _number(data, "renewedAt"), _number(data, "ttlS")
    if ttl_s < 0:
        raise LeaseCorrupt(f"ttlS {ttl_s:g} is negative")
    return LeaseRecord(
        token=int(token),
        holder=_text(data, "holder"),
        host=_text(data, "host"),
        pid=int(pid),
        run_id=_text(data, "runId"),
        renewed_at=renewed_at,
        ttl_s=ttl_s,
        expires_at=renewed_at + ttl_s,
    )


def _read(client: redis.Redis, key: str) -> LeaseRecord | None:
    try:
        raw = client.get(key)
    except (redis.RedisError, OSError) as exc:
        raise LeaseUnavailable(f"Redis did not answer: {exc}") from exc
    return None if raw is None else parse_lease(raw)  # type: ignore[arg-type]


def _parsed_or_none(raw: bytes | str) -> LeaseRecord | None:
    """A last value as evidence: None when absent or not a lease (it only describes the past)."""
    try:
        return parse_lease(raw) if raw else None
    except LeaseCorrupt:
        return None


def read_lease(client: redis.Redis, account: str) -> LeaseRecord | None:
    """The account's lease now; None when nobody holds it; ``LeaseCorrupt`` for a value that is not a lease."""
    return _read(client, lease_key(account))


def last_lease(client: redis.Redis, account: str) -> LeaseRecord | None:
    """The last lease value written for the account (None: never held); tells when it was last held."""
    return _read(client, last_key(account))


# -- the scripts ---------------------------------------------------------------------------------

# A lease value this script cannot decode, or without a numeric token, never matches.
_TOKEN_OF = """
local function token_of(raw)
  if not raw then return nil end
  local ok, value = pcall(cjson.decode, raw)
  if not ok or type(value) ~= 'table' then return nil end
  return tonumber(value['token'])
end
"""
# Ours: our token and our holder id, from one decode of the value (the fence check runs before every order).
# The token alone is not enough: a Redis that comes back empty (this product's keeps nothing on disk) counts
# tokens from 1 again, so a new holder may carry the number an old one still holds.
_OURS = """
local function ours(raw, token, holder)
  if not raw then return false end
  local ok, value = pcall(cjson.decode, raw)
  if not ok or type(value) ~= 'table' then return false end
  return tonumber(value['token']) == tonumber(token) and value['holder'] == holder
end
"""

# KEYS: lease, token, last. ARGV: the value's JSON without its token, ttl ms.
# Returns {1, value, the last value before} when taken, {0, the value in the way, ''} otherwise. A counter that went
# backwards (lost, reset by hand) or holds garbage is set past the last token written: tokens never repeat.
_ACQUIRE = _TOKEN_OF + """
local current = redis.call('GET', KEYS[1])
if current then return {0, current, ''} end
local previous = redis.call('GET', KEYS[3]) or ''
local token = redis.pcall('INCR', KEYS[2])
local fixed = type(token) ~= 'number'  -- a counter that is not a number: start again past the last token
if fixed then token = 1 end
local last = token_of(redis.call('GET', KEYS[3]))
if last and last < 9007199254740992 and token <= last then
  token = math.floor(last) + 1
  fixed = true
end
if fixed then redis.call('SET', KEYS[2], token) end
local value = cjson.decode(ARGV[1])
value['token'] = token
local encoded = cjson.encode(value)
redis.call('SET', KEYS[1], encoded, 'PX', ARGV[2], 'NX')
redis.call('SET', KEYS[3], encoded)
return {1, encoded, previous}
"""

# KEYS: lease, last. ARGV: token, the new value's JSON, ttl ms, holder. 1 when extended, 0 when the lease is not ours.
_RENEW = _OURS + """
if not ours(redis.call('GET', KEYS[1]), ARGV[1], ARGV[4]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

# KEYS: lease, last. ARGV: token, the value to leave as the last one, holder. 1 when deleted.
_RELEASE = _OURS + """
if not ours(redis.call('GET', KEYS[1]), ARGV[1], ARGV[3]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

# KEYS: lease. ARGV: token, margin ms, holder. 1 only when the lease is ours with more than the margin left.
_FENCE = _OURS + """
if not ours(redis.call('GET', KEYS[1]), ARGV[1], ARGV[3]) then return 0 end
if redis.call('PTTL', KEYS[1]) <= tonumber(ARGV[2]) then return 0 end
return 1
"""


def _call(client: redis.Redis, script: str, keys: list[str], args: list[Any]) -> Any:
    try:
        return client.register_script(script)(keys=keys, args=args)
    except (redis.RedisError, OSError) as exc:
        raise LeaseUnavailable(f"Redis did not answer: {exc}") from exc


def fence_check(client: redis.Redis, account: str, token: int, holder: str, *,
                margin_ms: int = FENCE_MARGIN_MS) -> bool:
    """True only when the account's lease holds ``token`` and ``holder`` with more than ``margin_ms`` of its TTL left.

    Raises ``LeaseUnavailable`` when Redis does not answer (which the caller treats as not held).
    """
    return _call(client, _FENCE, [lease_key(account)], [int(token), int(margin_ms), holder]) == 1


# -- what a trader holds -------------------------------------------------------------------------


def new_holder_id() -> str:
    """A holder id unique to this process: host, pid and a random part."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one acquire or renew came to: held or not, and why not."""

    held: bool
    reason: str = ""
    record: LeaseRecord | None = None  # ours when held; the one in the way when another holds it
    previous: LeaseRecord | None = None  # when taken: the last lease written before ours (None: never held)


class AccountLease:
    """One trader's side of an account lease: acquire, renew, release, and the check before every change.

    Thread-safe: the renew thread and the gateway thread share it. ``try_acquire``
    and ``try_renew`` never raise; they return an ``Attempt`` saying why not.
    """

    def __init__(
        self,
        client: redis.Redis,
        account: str,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        run_id: str = "",
        holder: str | None = None,
        clock: Callable[[], float] = boottime,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise ValueError(f"lease TTL must be within {MIN_TTL_S:g}..{MAX_TTL_S:g} s, not {ttl_s!r}")
        self.client = client
        self.account = account
        self.ttl_s = float(ttl_s)
        self.run_id = run_id
        self.holder = holder or new_holder_id()
        self.margin_ms = fence_margin_ms(self.ttl_s)
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._token: int | None = None
        self._valid_until = 0.0
        self.record: LeaseRecord | None = None  # ours, as last written
        self.seen: LeaseRecord | None = None  # another holder's, as the last acquire found it in the way

    # -- state ----------------------------------------------------------------------------------

    @property
    def token(self) -> int | None:
        return self._token

    def held_locally(self) -> bool:
        """Whether the local deadline still covers the lease (no Redis call)."""
        with self._lock:
            return self._token is not None and self._clock() < self._valid_until

    def remaining_s(self) -> float:
        """Seconds left before the local deadline (0 when not held)."""
        with self._lock:
            return max(0.0, self._valid_until - self._clock()) if self._token is not None else 0.0

    def _value(self, token: int | None, *, ttl_s: float) -> dict[str, Any]:
        value: dict[str, Any] = {
            "holder": self.holder,
            "host": socket.gethostname()[:64],
            "pid": os.getpid(),
            "runId": self.run_id,
            "renewedAt": round(self._wall(), 3),
            "ttlS": ttl_s,
        }
        if token is not None:
            value["token"] = token
        return value

    def _hold(self, record: LeaseRecord, sent_at: float) -> None:
        self._token = record.token
        self.record = record
        self._valid_until = sent_at + self.ttl_s - self.margin_ms / 1000

    def drop(self) -> None:
        """Forget the lease locally: from now on every check fails."""
        with self._lock:
            self._token = None
            self._valid_until = 0.0

    # -- acquire, renew, release ----------------------------------------------------------------

    def try_acquire(self) -> Attempt:
        """Take the lease if nobody holds it; never raises."""
        sent_at = self._clock()
        try:
            taken, raw, before = _call(
                self.client,
                _ACQUIRE,
                [lease_key(self.account), token_key(self.account), last_key(self.account)],
                [json.dumps(self._value(None, ttl_s=self.ttl_s)), int(self.ttl_s * 1000)],
            )
            record = parse_lease(raw)
        except LeaseCorrupt as exc:
            return Attempt(False, f"the lease key holds no lease ({exc}); remove {lease_key(self.account)} by hand")
        except LeaseError as exc:
            return Attempt(False, str(exc))
        if taken != 1:
            self.seen = record
            return Attempt(False, f"held by {record.holder} (token {record.token})", record)
        with self._lock:
            self._hold(record, sent_at)
        return Attempt(True, record=record, previous=_parsed_or_none(before))

    def try_renew(self) -> Attempt:
        """Extend our lease if the key still holds our token; on any failure drop it locally. Never raises."""
        token = self._token
        if token is None:
            return Attempt(False, "not held")
        sent_at = self._clock()
        if sent_at >= self._valid_until:
            self.drop()
            return Attempt(False, "the local deadline passed before the renew (the process was stopped or slow)")
        value = self._value(token, ttl_s=self.ttl_s)
        try:
            extended = _call(self.client, _RENEW, [lease_key(self.account), last_key(self.account)],
                             [token, json.dumps(value), int(self.ttl_s * 1000), self.holder])
        except LeaseUnavailable as exc:
            self.drop()
            return Attempt(False, str(exc))
        if extended != 1:
            self.drop()
            return Attempt(False, f"the lease no longer holds token {token}")
        record = parse_lease(json.dumps(value))
        with self._lock:
            if self._token == token:
                self._hold(record, sent_at)
        return Attempt(True, record=record)

    def release(self) -> bool:
        """Give the lease back (only if it is still ours); the last value records when. Never raises."""
        token = self._token
        self.drop()
        if token is None:
            return False
        last = json.dumps(self._value(token, ttl_s=0.0))
        try:
            return bool(_call(self.client, _RELEASE, [lease_key(self.account), last_key(self.account)],
                              [token, last, self.holder]) == 1)
        except LeaseUnavailable:
            return False

    # -- the check before every change ----------------------------------------------------------

    def ensure(self, what: str = "the call") -> None:
        """Raise ``LeaseLost`` unless the lease is ours: the local deadline, then the fence check in Redis."""
        token = self._token
        if token is None or not self.held_locally():
            raise LeaseLost(f"{what} not sent: this trader holds no valid lease")
        try:
            fenced = fence_check(self.client, self.account, token, self.holder, margin_ms=self.margin_ms)
        except LeaseUnavailable as exc:
            raise LeaseLost(f"{what} not sent: the lease cannot be proven ({exc})") from exc
        if not fenced:
            raise LeaseLost(f"{what} not sent: the lease no longer holds token {token}")
        if not self.held_locally():  # stopped between the two checks, past the deadline
            raise LeaseLost(f"{what} not sent: the lease ran out during the check")

    def view(self) -> dict[str, Any]:
        """The lease as heartbeats and the process state show it: ours, or the holder we last saw."""
        held = self.held_locally()
        record = self.record if held else self.seen
        return {
            "account": self.account,
            "holder": record.holder if record is not None else None,
            "token": record.token if record is not None else None,
            "expiresAt": record.expires_at if record is not None else None,
            "held": held,
        }
