"""The notification bus between processes: Redis pub/sub, one channel per environment.

Redis pub/sub channels belong to the server, not to a database: two installations
on one Redis server with different database numbers (a test suite beside the
product, two products) would hear each other's commands. The channel name
carries the database number, so each database is its own bus.

A change of failover state made by any process (a Celery worker, the web
process, the trader) is published here after its transaction commits; the
trader listens and re-reads the state within milliseconds. Pub/sub loses
messages while a listener is disconnected, so listeners also re-read
periodically: the bus makes it fast, the periodic read makes it certain.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict, cast

import msgspec
import redis
from django.conf import settings

logger = logging.getLogger(__name__)

BusHandler = Callable[[dict[str, Any]], None]


class BusMessage(TypedDict):
    """What travels on the bus; a message of another shape is refused with msgspec's reason."""

    kind: str
    payload: NotRequired[dict[str, Any] | None]
    sentAt: NotRequired[float]  # wall clock, seconds


_decode = msgspec.json.Decoder(BusMessage).decode
_encode = msgspec.json.Encoder().encode


# What ``decode_message`` raises for a message it refuses (each with its reason).
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, TypeError, RecursionError)


def decode_message(data: Any) -> dict[str, Any]:
    """One bus message from its bytes; raises one of ``DECODE_ERRORS`` for any other shape."""
    return cast(dict[str, Any], _decode(data))  # a TypedDict is a dict


@functools.lru_cache(maxsize=16)
def _database(url: str) -> int:
    """The database number of a Redis URL, parsed once per URL (publishing is on the refusal's path)."""
    try:
        return int(redis.connection.parse_url(url).get("db", 0))
    except ValueError:  # no Redis configured: publishing says so, listening retries
        return 0


def channel_name(run_id: str = "", *, url: str = "") -> str:
    """The environment's channel on the Redis database of ``url`` (the settings' when empty)."""
    return f"scalper:bus:{_database(url or settings.REDIS_URL)}:{run_id or 'main'}"


_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def client(url: str = "") -> redis.Redis:
    """This process's Redis client for ``url`` (the settings' when empty): one connection pool, made once.

    Bounded: 2 s to connect and for any answer. redis-py's pool opens the connections again after a fork.
    """
    url = url or settings.REDIS_URL
    with _clients_lock:
        found = _clients.get(url)
        if found is None:
            found = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=10)
            _clients[url] = found
        return found


def publish(kind: str, payload: dict[str, Any] | None = None, *, run_id: str = "", url: str = "") -> bool:
    """Publish one notification; False (and a log line) when Redis cannot be reached.

    A lost notification is tolerated by design (listeners re-read periodically),
    so a Redis outage never fails the transaction that caused it.
    """
    return publish_counted(kind, payload, run_id=run_id, url=url) is not None


def publish_counted(kind: str, payload: dict[str, Any] | None = None, *, run_id: str = "", url: str = "") -> int | None:
    """``publish``, returning how many listeners Redis handed the message to; None when it cannot be reached."""
    message = _encode({"kind": kind, "payload": payload or {}, "sentAt": time.time()})
    try:
        url = url or settings.REDIS_URL
        return client(url).publish(channel_name(run_id, url=url), message)
    except (redis.RedisError, OSError, ValueError) as exc:  # ValueError: no Redis URL configured
        logger.warning("bus publish of %s failed: %s", kind, exc)
        return None


# Liveness of a subscription, for every listener of the bus (this module's and the status fast path's).
PING_EVERY_S = 1.0  # a listener that heard nothing for this long asks Redis for a pong
SILENT_AFTER_S = 3.0  # nothing heard for this long, pongs included: the connection is taken for dead
SOCKET_TIMEOUT_S = 5.0  # a send, or the rest of a message begun, that takes longer fails the connection


class BusListener:
    """A daemon thread that hands every bus message of one environment to ``handler``.

    It reconnects by itself; ``connected`` tells whether it is subscribed right now
    (set once Redis confirmed the subscription). A connection that goes silent
    (a half-open socket after a network fault, a frozen server) is found by a ping
    when nothing was heard for ``PING_EVERY_S`` and dropped after ``SILENT_AFTER_S``
    without an answer, so no wait here is unbounded.
    """

    def __init__(self, handler: BusHandler, *, run_id: str = "", url: str = "") -> None:
        self._handler = handler
        self._url = url or settings.REDIS_URL
        self._channel = channel_name(run_id, url=self._url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-listener", daemon=True)
        self.connected = threading.Event()

    def start(self) -> BusListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            client = redis.Redis.from_url(self._url, socket_connect_timeout=2, socket_timeout=SOCKET_TIMEOUT_S)
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(self._channel)
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                logger.warning("bus listener lost Redis: %s", exc)
            finally:
                if self.connected.is_set():
                    backoff = 0.2  # it was subscribed: a new outage, retried soon
                self.connected.clear()
                try:
                    pubsub.close()
                    client.close()
                except Exception:
                    pass
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _listen(self, pubsub: Any) -> None:
        """Hand on messages until stopped; raise ``redis.ConnectionError`` once Redis has been silent too long."""
        heard = pinged = time.monotonic()
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=0.5)
            now = time.monotonic()
            if message is not None:
                heard = now
                kind = message.get("type")
                if kind == "message":
                    self._dispatch(message.get("data"))
                elif kind == "subscribe":
                    self.connected.set()  # Redis confirmed it: a publish from now on reaches this listener
                continue  # a pong only says the connection is alive
            if now - heard >= SILENT_AFTER_S:
                raise redis.ConnectionError(f"nothing heard from Redis for {now - heard:.1f} s, a pong included")
            if now - heard >= PING_EVERY_S and now - pinged >= PING_EVERY_S:
                pubsub.ping()
                pinged = now

    def _dispatch(self, data: Any) -> None:
        try:
            message = decode_message(data)
        except DECODE_ERRORS as exc:
            logger.warning("ignored a malformed bus message: %s", exc)  # e.g. "Object missing required field `kind`"
            return
        try:
            self._handler(message)
        except Exception:  # the listener outlives a failing handler
            logger.exception("bus handler failed on %s", message.get("kind"))
