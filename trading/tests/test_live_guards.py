"""LIVE trades real money: the trader refuses to start unless both Bybit keys and ``--confirm-live`` are given.

Each refusal happens before anything is contacted: a Python audit hook
watches the test's own thread for any socket being opened, resolved or
connected while the command runs. The keys used are obvious dummies.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from scalper_site.testkit import BASE_DIR

CONFIRM = "LIVE sends real orders: add --confirm-live to start it"
NO_KEYS = "LIVE needs BYBIT_API_KEY and BYBIT_API_SECRET in the environment"
DRY_RUN_NO_KEYS = "DRY_RUN reads the account: BYBIT_API_KEY and BYBIT_API_SECRET must be set"
PAST_THE_GUARDS = "no Redis: set REDIS_URL"  # the check that follows them; nothing past it runs here


class SocketWatch:
    """Records the socket audit events (create, resolve, connect, send) raised on one thread while armed."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._thread: int | None = None

    def __call__(self, event: str, args: Any) -> None:
        if self._thread == threading.get_ident() and event.startswith("socket."):
            self.events.append(event)

    @contextmanager
    def armed(self) -> Iterator[list[str]]:
        self.events = []
        self._thread = threading.get_ident()
        try:
            yield self.events
        finally:
            self._thread = None


# An audit hook cannot be removed once added: one for the whole module, idle unless armed.
WATCH = SocketWatch()
sys.addaudithook(WATCH)


def run_trader(data_dir: Path, mode: str, *extra: str) -> None:
    call_command("run_trader", "--mode", mode, "--symbols", "BTCUSDT", "--data-dir", str(data_dir), *extra)


@pytest.fixture
def keys(settings: Any) -> Any:
    settings.BYBIT_API_KEY = "TESTKEY"
    settings.BYBIT_API_SECRET = "TESTSECRET"
    settings.REDIS_URL = ""
    return settings


@pytest.mark.parametrize(
    ("key", "secret", "flags", "refusal"),
    [
        ("TESTKEY", "TESTSECRET", [], CONFIRM),
        ("", "", [], CONFIRM),
        ("", "TESTSECRET", ["--confirm-live"], NO_KEYS),
        ("TESTKEY", "", ["--confirm-live"], NO_KEYS),
        ("", "", ["--confirm-live"], NO_KEYS),
        (" ", "TESTSECRET", ["--confirm-live"], NO_KEYS),  # a blank value is no key
        ("TESTKEY", "\t", ["--confirm-live"], NO_KEYS),
    ],
    ids=["no-confirm", "nothing", "no-key", "no-secret", "no-keys", "blank-key", "blank-secret"],
)
def test_live_refuses_to_start_without_both_keys_and_confirm_live(tmp_path, keys, key, secret, flags, refusal):
    keys.BYBIT_API_KEY, keys.BYBIT_API_SECRET = key, secret
    with WATCH.armed() as network, pytest.raises(CommandError, match=re.escape(refusal)):
        run_trader(tmp_path, "LIVE", *flags)
    assert network == []
    assert list(tmp_path.iterdir()) == []  # refused before a file was written


def test_live_with_both_keys_and_confirm_live_passes_the_guards(tmp_path, keys):
    # The control of the table above: with all three given, the command goes on to its next check.
    with WATCH.armed() as network, pytest.raises(CommandError, match=re.escape(PAST_THE_GUARDS)):
        run_trader(tmp_path, "LIVE", "--confirm-live")
    assert network == []


@pytest.mark.parametrize(("key", "secret"), [("", "TESTSECRET"), ("TESTKEY", ""), ("", "")])
def test_dry_run_refuses_to_start_without_both_keys(tmp_path, keys, key, secret):
    keys.BYBIT_API_KEY, keys.BYBIT_API_SECRET = key, secret
    with WATCH.armed() as network, pytest.raises(CommandError, match=re.escape(DRY_RUN_NO_KEYS)):
        run_trader(tmp_path, "DRY_RUN")
    assert network == []


def test_the_watch_sees_a_connection():
    # The watch's own check: a connection attempt on the armed thread is recorded (nothing listens on port 1).
    import socket

    with WATCH.armed() as network, socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", 1)) != 0
    assert "socket.connect" in network


@pytest.mark.parametrize(
    ("env", "flags", "refusal"),
    [
        ({"BYBIT_API_KEY": "TESTKEY", "BYBIT_API_SECRET": "TESTSECRET"}, [], CONFIRM),
        ({"BYBIT_API_SECRET": "TESTSECRET"}, ["--confirm-live"], NO_KEYS),
        ({"BYBIT_API_KEY": "TESTKEY"}, ["--confirm-live"], NO_KEYS),
    ],
    ids=["no-confirm", "no-key", "no-secret"],
)
def test_live_refusal_from_the_environment_exits_with_an_error(tmp_path, env, flags, refusal):
    # The keys as an operator gives them: environment variables read by the settings of a fresh process.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BYBIT_")}
    clean.update(env, SCALPER_DATA_DIR=str(tmp_path / "data"), REDIS_URL="", PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, "manage.py", "run_trader", "--mode", "LIVE", "--symbols", "BTCUSDT", *flags],
        cwd=BASE_DIR, env=clean, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"CommandError: {refusal}" in done.stderr
    assert "Traceback" not in done.stderr
