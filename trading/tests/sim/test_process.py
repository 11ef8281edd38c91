"""The simulator as a real process: exchange truth survives a kill -9 and a restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pybit.exceptions import InvalidRequestError

from trading.simexchange import errors as E
from trading.simexchange.control import SimControl
from trading.simexchange.control_auth import token_path_for
from trading.simexchange.pybit_target import sim_http

from .conftest import BTC_ASKS, BTC_BIDS

ROOT = Path(__file__).resolve().parents[3]
READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def start(state: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_simexchange", "--port", "0", "--no-market", "--state", str(state), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "scalper_site.settings_test"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        match = READY.search(line)
        if match:
            return proc, match.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"simulator did not start: {proc.wait()}")


def snapshot(http: Any) -> dict[str, Any]:
    orders = http.get_open_orders(category="linear", settleCoin="USDT")["result"]["list"]
    pos = http.get_positions(category="linear", settleCoin="USDT")["result"]["list"]
    wallet = http.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]
    execs = http.get_executions(category="linear")["result"]["list"]
    return {
        "orders": sorted((o["orderId"], o["orderLinkId"], o["price"], o["orderStatus"]) for o in orders),
        "positions": sorted((p["symbol"], p["side"], p["size"], p["avgPrice"], p["takeProfit"]) for p in pos),
        "balance": wallet["totalWalletBalance"],
        "executions": sorted(x["execId"] for x in execs),
    }


@pytest.mark.slow
def test_state_survives_kill_and_restart(tmp_path: Path) -> None:
    state = tmp_path / "sim" / "exchange_state.json"
    proc, url = start(state, "--reset")
    try:
        token_file = token_path_for(state)
        assert token_file.stat().st_mode & 0o777 == 0o600
        SimControl(url, token_file=token_file).set_book("BTCUSDT", BTC_BIDS, BTC_ASKS)
        http = sim_http(url, retry_codes={-1})
        http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.3",
                         orderLinkId="keep-1", takeProfit="55000")
        http.place_order(category="linear", symbol="BTCUSDT", side="Sell", orderType="Limit", qty="0.1",
                         price="50500", orderLinkId="keep-2")
        before = snapshot(http)
        assert len(before["orders"]) == 1 and len(before["positions"]) == 1 and len(before["executions"]) == 1
    finally:
        proc.send_signal(signal.SIGKILL)  # no goodbye, no final save
        proc.wait(timeout=10)
    proc, url = start(state)
    try:
        http = sim_http(url, retry_codes={-1})
        assert snapshot(http) == before
        with pytest.raises(InvalidRequestError) as info:  # orderLinkIds seen are remembered
            http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.1",
                             price="49000", orderLinkId="keep-1")
        assert info.value.status_code == E.ORDER_LINK_ID_DUPLICATE
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    proc, url = start(state, "--reset")
    try:
        http = sim_http(url, retry_codes={-1})
        clean = snapshot(http)
        assert clean["orders"] == [] and clean["positions"] == [] and clean["balance"] == "10000"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert not list(state.parent.glob("*.tmp"))  # atomic writes leave no temp files
