"""Group commit: one fsync for a batch of concurrent changes, answers only after it, nothing acknowledged lost."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from trading.simexchange.commit import GroupCommit, read_log, wal_path_for
from trading.simexchange.control import SimControl
from trading.simexchange.control_auth import token_path_for
from trading.simexchange.core import SimExchange
from trading.simexchange.pybit_target import sim_http
from trading.simexchange.server import SimServer

from .conftest import BTC_ASKS, BTC_BIDS, wait_for
from .test_history import buy_limit, control, pybit
from .test_process import start as start_process


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "sim" / "exchange_state.json"


def _in_threads(fns: list[Any]) -> list[threading.Thread]:
    threads = [threading.Thread(target=fn, daemon=True) for fn in fns]
    for t in threads:
        t.start()
    return threads


def test_changes_staged_during_a_write_share_the_next_fsync_and_wait_for_it(state: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    gate, writing = threading.Event(), threading.Event()
    real_append = GroupCommit._append_io

    def held_append(self: GroupCommit, payload: bytes) -> None:
        writing.set()
        assert gate.wait(10), "the test never opened the gate"
        real_append(self, payload)

    with SimServer(state_path=state) as sim:
        control(sim)
        monkeypatch.setattr(GroupCommit, "_append_io", held_append)
        commit = sim.sim.commit
        writes, first = commit.batches, commit.lsn
        answered: list[str] = []

        def order(i: int) -> None:
            answered.append(buy_limit(pybit(sim), "0.010", "49000", f"gc-{i}"))

        threads = _in_threads([lambda: order(0)])
        assert writing.wait(10), "the first change never reached its write"  # its batch is taken: it alone
        threads += _in_threads([lambda i=i: order(i) for i in range(1, 5)])
        wait_for(lambda: commit.lsn == first + 5, what="five changes staged")
        time.sleep(0.1)
        assert answered == []  # the first write is held: nobody hears of any change yet
        gate.set()
        for t in threads:
            t.join(timeout=10)
        assert len(answered) == 5
        # The first change went alone; the four staged while it was written share one fsync.
        assert commit.batches - writes == 2
        logged = [r["orders"][0]["link_id"] for r in read_log(wal_path_for(state))]
        assert sorted(logged[-5:]) == [f"gc-{i}" for i in range(5)]


def test_a_new_simulator_reads_the_state_file_and_the_change_log_after_it(state: Path) -> None:
    with SimServer(state_path=state) as sim:
        control(sim)
        http = pybit(sim)
        ids = [buy_limit(http, "0.010", "49000", f"wal-{i}") for i in range(3)]
        http.cancel_order(category="linear", symbol="BTCUSDT", orderId=ids[0])
        assert len(list(read_log(wal_path_for(state)))) >= 4  # not in the state file yet: only in the log
        seq = sim.sim.journal.seq
        # What a kill -9 now would leave on disk is what a new simulator reads.
        again = SimExchange(state_path=state)
        assert {o.link_id: o.status for o in again.engine.orders.values()} == {
            "wal-0": "Cancelled", "wal-1": "New", "wal-2": "New"}
        assert again.journal.seq == seq and again.engine.link_ids.keys() == {"wal-0", "wal-1", "wal-2"}
        assert list(read_log(wal_path_for(state))) == []  # applied, checkpointed: the log starts over
        again.close()


def test_a_torn_last_line_is_dropped_and_lines_already_in_the_state_file_are_not_applied_twice(state: Path) -> None:
    with SimServer(state_path=state) as sim:
        ctl = control(sim)
        http = pybit(sim)
        http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.1",
                         orderLinkId="wal-fill")
        assert len(ctl.state()["positions"]) == 1
    wal = wal_path_for(state)
    assert wal.read_bytes() == b""  # a clean stop checkpoints
    with SimServer(state_path=state) as sim:
        buy_limit(pybit(sim), "0.010", "49000", "wal-more")
        old_lines = wal.read_bytes()
        sim.sim.persist()  # checkpoint: the state file holds those lines now
        executions = len(sim.sim.engine.executions)
    wal.write_bytes(old_lines + b'{"orders":[{"order_id":"torn')  # a leftover copy and a torn write
    again = SimExchange(state_path=state)
    assert len(again.engine.executions) == executions
    assert {o.link_id for o in again.engine.orders.values()} == {"wal-fill", "wal-more"}
    again.close()


@pytest.mark.slow
def test_no_acknowledged_order_is_lost_when_the_simulator_is_killed_mid_burst(state: Path) -> None:
    proc, url = start_process(state, "--reset")
    acked: list[str] = []
    stop = threading.Event()
    try:
        SimControl(url, token_file=token_path_for(state)).set_book("BTCUSDT", BTC_BIDS, BTC_ASKS)

        def burst(worker: int) -> None:
            http = sim_http(url, retry_codes={-1}, max_retries=1, timeout=5)
            for n in range(500):
                if stop.is_set():
                    return
                try:
                    buy_limit(http, "0.001", "49000", f"k{worker}-{n}")
                except Exception:  # the kill: this one was never acknowledged
                    return
                acked.append(f"k{worker}-{n}")

        threads = _in_threads([lambda w=w: burst(w) for w in range(6)])
        wait_for(lambda: len(acked) >= 150, timeout=60, what="orders acknowledged")
        proc.send_signal(signal.SIGKILL)  # mid-burst: requests in flight, a batch maybe half written
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc, url = start_process(state)
    try:
        http = sim_http(url, retry_codes={-1}, max_retries=1, timeout=5)
        on_exchange = _open_link_ids(http)
        assert set(acked) <= on_exchange, sorted(set(acked) - on_exchange)[:10]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def _open_link_ids(http: Any) -> set[str]:
    found: set[str] = set()
    cursor = ""
    for _ in range(200):
        page = http.get_open_orders(category="linear", settleCoin="USDT", limit=50, cursor=cursor)["result"]
        found |= {o["orderLinkId"] for o in page["list"]}
        cursor = page["nextPageCursor"]
        if not cursor:
            return found
    raise AssertionError("too many pages of open orders")
