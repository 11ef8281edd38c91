from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trading.alerts import CRIT, WARN, AlertEngine, AlertMessage, DatabaseSink, telegram_sink, webhook_sink
from trading.models import Alert


class Receiver:
    """A loopback HTTP server that records JSON bodies and answers with a chosen status."""

    def __init__(self, status: int = 200, delay_s: float = 0.0) -> None:
        self.bodies: list[tuple[str, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append((self.path, json.loads(self.rfile.read(length))))
                time.sleep(delay_s)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.mark.django_db(transaction=True)
def test_alert_is_stored_and_reaches_webhook_and_telegram(receivers):
    hook, telegram = receivers(), receivers()
    engine = AlertEngine(
        record=DatabaseSink(),
        outside=[webhook_sink(hook.url + "/hook"), telegram_sink("T0KEN", "42", api_base=telegram.url)],
    )
    assert engine.emit(AlertMessage(CRIT, "CONFIG_INVALID", "risk.max_open_positions: not an integer", run_id="r1"))
    assert engine.drain()
    engine.close()
    stored = Alert.objects.get()
    assert (stored.level, stored.type, stored.run_id) == ("CRIT", "CONFIG_INVALID", "r1")
    assert hook.bodies == [
        (
            "/hook",
            {
                "text": "[CRIT] CONFIG_INVALID: risk.max_open_positions: not an integer",
                "alert": {
                    "level": "CRIT",
                    "type": "CONFIG_INVALID",
                    "symbol": "",
                    "details": {},
                    "message": "risk.max_open_positions: not an integer",
                    "suppressed": 0,
                    "runId": "r1",
                },
            },
        )
    ]
    assert telegram.bodies == [
        (
            "/botT0KEN/sendMessage",
            {"chat_id": "42", "text": "[CRIT] CONFIG_INVALID: risk.max_open_positions: not an integer"},
        )
    ]


@pytest.mark.django_db(transaction=True)
def test_a_failing_and_a_slow_notifier_do_not_block_the_record_or_the_others(receivers):
    broken, slow, good = receivers(status=500), receivers(delay_s=2.0), receivers()
    engine = AlertEngine(
        record=DatabaseSink(),
        outside=[
            webhook_sink(broken.url, retries=2, backoff_s=0.01),
            webhook_sink(slow.url, timeout_s=0.2, retries=0),
            webhook_sink(good.url),
        ],
    )
    started = time.monotonic()
    engine.emit(AlertMessage(WARN, "LATENCY_TOO_HIGH", "rest p99 800 ms"))
    assert time.monotonic() - started < 1.0  # emit returns once stored; delivery is in the background
    assert Alert.objects.count() == 1
    assert engine.drain(timeout_s=10)
    engine.close()
    assert len(broken.bodies) == 3  # first try and two retries, then it gives up
    assert len(good.bodies) == 1
    assert engine.failures["webhook"] == 2


class _OncePerKey:
    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def should_emit(self, alert: AlertMessage, now_ms: int) -> tuple[bool, int]:
        key = f"{alert.type}:{alert.symbol}"
        self.seen[key] = self.seen.get(key, 0) + 1
        return self.seen[key] == 1, 0

    def delivers(self, alert: AlertMessage, sink: str) -> bool:
        return True

    def configure(self, *, run_id: str, config) -> None:
        raise AssertionError("not configured in this test")


@pytest.mark.django_db(transaction=True)
def test_policy_throttles_repeats_before_anything_is_stored():
    engine = AlertEngine(record=DatabaseSink(), outside=[], policy=_OncePerKey())
    results = [engine.emit(AlertMessage(WARN, "PUBLIC_WS_DEGRADED", "stale", symbol="BTCUSDT")) for _ in range(5)]
    engine.close()
    assert results == [True, False, False, False, False]
    assert Alert.objects.count() == 1
