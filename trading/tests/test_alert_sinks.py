"""The outside sinks against real servers on loopback: a webhook, an SMTP server, and a server that never answers.

The webhook is ``http.server`` in a thread, the mail server ``aiosmtpd``; the
silent server accepts connections and never says a word, which is how a hung
notifier looks from here. None of them may hold up the caller, and the database
keeps the alert whatever they do.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

import trading.alerts
from trading.alert_sinks import EmailSink, webhook_sink
from trading.alerts import CRIT, WARN, AlertEngine, AlertMessage, DatabaseSink
from trading.models import Alert
from trading.tests.test_alerts import Receiver
from trading.tests.test_alerts_events import Recorder

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
DAILY_LOSS = AlertMessage(
    level=CRIT,
    type="DAILY_LOSS_STOP",
    message="Daily loss limit reached: realised PnL -210.00 USDT",
    details={"dailyPnl": "-210.00", "limit": "200.00"},
    run_id="r-sinks",
)


class Mailbox:
    """An SMTP server on loopback (aiosmtpd) that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.port = _free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's naming)
        # The default policy unfolds long headers, as a mail client shows them.
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"

    def close(self) -> None:
        self.controller.stop()


class Silent:
    """Accepts TCP connections and never answers: a hung webhook or mail server."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    server = Mailbox()
    yield server
    server.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


def _text(message: EmailMessage) -> str:
    return message.get_content().replace("\r\n", "\n")  # SMTP carries CRLF line ends


# -- each sink against its server -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_webhook_receives_text_for_chat_tools_and_the_structured_alert(webhook):
    engine = AlertEngine(record=DatabaseSink(), outside=[webhook_sink(webhook.url + "/hooks/abc")])
    assert engine.emit(DAILY_LOSS)
    assert engine.drain(5)
    engine.close()
    [(_, body)] = webhook.bodies
    # Slack and Mattermost post ``text``; Mattermost refuses a top-level ``type`` not starting with custom_.
    assert body["text"] == "[CRIT] DAILY_LOSS_STOP: Daily loss limit reached: realised PnL -210.00 USDT"
    assert set(body) == {"text", "alert"}
    assert body["alert"] == {**DAILY_LOSS.to_dict(), "suppressed": 0, "runId": "r-sinks"}


@pytest.mark.django_db(transaction=True)
def test_the_email_sink_mails_subject_and_body_through_an_smtp_server(mailbox):
    sink = EmailSink(["ops@example.com", "desk@example.com"], from_email="scalper@example.com", timeout_s=5,
                     backend=SMTP_BACKEND, host="127.0.0.1", port=mailbox.port)
    engine = AlertEngine(record=DatabaseSink(), outside=[sink])
    assert engine.emit(DAILY_LOSS)
    assert engine.drain(10)
    engine.close()
    [(sender, recipients, message)] = mailbox.messages
    assert sender == "scalper@example.com" and recipients == ["ops@example.com", "desk@example.com"]
    assert message["Subject"] == "[scalper run r-sinks] CRIT DAILY_LOSS_STOP: Daily loss limit reached: realised PnL " \
                                 "-210.00 USDT"
    body = _text(message)
    assert body.startswith("Daily loss limit reached: realised PnL -210.00 USDT\n")
    assert "Environment: integration run r-sinks" in body and '"limit": "200.00"' in body
    assert engine.failures["email"] == 0


@pytest.mark.django_db(transaction=True)
def test_the_email_sink_follows_djangos_mail_settings(mailbox, settings):
    settings.EMAIL_BACKEND = SMTP_BACKEND
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", mailbox.port
    settings.SCALPER_ALERT_EMAIL_TO = ["ops@example.com"]
    settings.DEFAULT_FROM_EMAIL = "alerts@example.com"
    settings.ALERT_WEBHOOK_URL = ""
    sinks = trading.alerts.outside_sinks_from_settings()
    assert [s.name for s in sinks] == ["dashboard", "email"]
    sinks[1].send(DAILY_LOSS, 2)
    [(sender, recipients, message)] = mailbox.messages
    assert (sender, recipients) == ("alerts@example.com", ["ops@example.com"])
    assert "Similar alerts suppressed since the last one sent: 2" in _text(message)


@pytest.mark.django_db(transaction=True)
def test_a_hung_webhook_and_mail_server_neither_block_the_caller_nor_the_record_nor_the_other_sinks(silent):
    dashboard = Recorder("dashboard")
    engine = AlertEngine(
        record=DatabaseSink(),
        outside=[
            webhook_sink(f"http://127.0.0.1:{silent.port}/hook", timeout_s=1.0, retries=0),
            EmailSink(["ops@example.com"], timeout_s=1.0, backend=SMTP_BACKEND, host="127.0.0.1", port=silent.port),
            dashboard,
        ],
    )
    started = time.monotonic()
    assert engine.emit(DAILY_LOSS)
    assert time.monotonic() - started < 0.8  # stored and queued, well inside the sinks' 1 s: they send elsewhere
    assert Alert.objects.filter(type="DAILY_LOSS_STOP", run_id="r-sinks").count() == 1
    assert engine.drain(5)  # each hung send gives up at its timeout, both at once
    assert time.monotonic() - started < 4.0
    engine.close()
    assert engine.failures == {"database": 0, "webhook": 1, "email": 1, "dashboard": 0}
    assert [alert.type for alert, _ in dashboard.sent] == ["DAILY_LOSS_STOP"]
    assert len(silent.held) >= 2  # both really connected and waited


class Stuck:
    """A sink that holds its first send until released (bounded, so a failing test cannot hang)."""

    name = "webhook"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sent: list[str] = []

    def send(self, alert: AlertMessage, suppressed: int) -> None:
        self.release.wait(5)
        self.sent.append(alert.symbol)


@pytest.mark.django_db(transaction=True)
def test_a_full_queue_drops_with_a_count_and_a_log_line_and_never_blocks(caplog):
    stuck = Stuck()
    engine = AlertEngine(record=DatabaseSink(), outside=[stuck], queue_size=1)
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT"]
    started = time.monotonic()
    for symbol in symbols:
        assert engine.emit(AlertMessage(level=WARN, type="SLIPPAGE_BLOCK", message="blocked", symbol=symbol))
    assert time.monotonic() - started < 1.0
    assert Alert.objects.count() == 5  # the record has every one
    stuck.release.set()
    assert engine.drain(5)
    engine.close()
    assert engine.dropped >= 3 and engine.dropped + len(stuck.sent) == 5
    assert stuck.sent[0] == "BTCUSDT"
    assert "alert queue of webhook full" in caplog.text


# -- the failover's alerts reach every sink ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_failed_recovery_step_reaches_the_database_the_dashboard_the_webhook_telegram_and_email(
    settings, webhook, mailbox
):
    from failover.recovery.alerts import alert_on_commit

    telegram = Receiver()  # standing in for api.telegram.org (``TELEGRAM_API_BASE``)
    settings.ALERT_WEBHOOK_URL = webhook.url + "/hook"
    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_ID, settings.TELEGRAM_API_BASE = "T0KEN", "42", telegram.url
    settings.SCALPER_ALERT_EMAIL_TO = ["ops@example.com"]
    settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT = SMTP_BACKEND, "127.0.0.1", mailbox.port
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("failover", channel)
    trading.alerts.alert_engine_close()  # the next alert builds the engine over these settings
    try:
        with transaction.atomic():
            alert_on_commit(level=CRIT, type="RECOVERY_STEP_FAILED", run_id="r-recovery",
                            message="Recovery step RESYNC_POSITIONS failed: HTTP 503",
                            details={"planId": "plan-1", "stepId": "s-1", "attempts": 1})
            assert Alert.objects.filter(run_id="r-recovery").count() == 0  # nothing before the commit
        assert trading.alerts.alert_engine().drain(10)
    finally:
        trading.alerts.alert_engine_close()
        telegram.close()
    stored = Alert.objects.get(run_id="r-recovery")
    assert (stored.level, stored.type, stored.details["planId"]) == ("CRIT", "RECOVERY_STEP_FAILED", "plan-1")
    pushed = async_to_sync(layer.receive)(channel)
    assert pushed["kind"] == "alert" and pushed["payload"]["type"] == "RECOVERY_STEP_FAILED"
    assert pushed["payload"]["runId"] == "r-recovery"
    [(_, body)] = webhook.bodies
    assert body["alert"]["type"] == "RECOVERY_STEP_FAILED" and "RESYNC_POSITIONS" in body["text"]
    [(_, chat)] = telegram.bodies
    assert chat == {"chat_id": "42", "text": "[CRIT] RECOVERY_STEP_FAILED: Recovery step RESYNC_POSITIONS failed: "
                                              "HTTP 503"}
    [(_, recipients, message)] = mailbox.messages
    assert recipients == ["ops@example.com"] and "RECOVERY_STEP_FAILED" in message["Subject"]
