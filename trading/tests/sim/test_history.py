"""The exchange's own record: numbered order, execution and position records, in memory, on disk and over /sim."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import requests

from trading.marketdata.instruments import DEFAULT_INSTRUMENTS
from trading.simexchange.commit import wal_path_for
from trading.simexchange.control import SimControl, SimControlError
from trading.simexchange.control_auth import TOKEN_HEADER, token_path_for
from trading.simexchange.history_file import history_path_for, iter_history, previous_path, rotated_path
from trading.simexchange.journal import Journal
from trading.simexchange.matching import MatchingEngine
from trading.simexchange.models import Changes
from trading.simexchange.orders import OrderRequest
from trading.simexchange.pybit_target import sim_http
from trading.simexchange.server import SimServer

from .conftest import BTC_ASKS, BTC_BIDS, ETH_ASKS, ETH_BIDS
from .test_process import start as start_process


def control(sim: SimServer) -> SimControl:
    """A control client with the test books set and a last price printed."""
    ctl = SimControl(sim.base_url, token=sim.token)
    ctl.set_book("BTCUSDT", BTC_BIDS, BTC_ASKS)
    ctl.set_book("ETHUSDT", ETH_BIDS, ETH_ASKS)
    ctl.trade("BTCUSDT", "50000.5", "0.001")
    return ctl


def pybit(sim: SimServer) -> Any:
    return sim_http(sim.base_url, retry_codes={-1}, max_retries=1, timeout=5)


def buy_limit(http: Any, qty: str, price: str, link: str) -> str:
    return http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty=qty,
                            price=price, orderLinkId=link)["result"]["orderId"]


def of_order(records: list[dict[str, Any]], order_id: str) -> list[tuple[str, str, str]]:
    """(type, status or execQty, origin) of the records of one order."""
    return [(r["type"], r.get("status") or r["execQty"], r["origin"]) for r in records
            if r.get("orderId") == order_id]


def positions(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["size"], r["origin"]) for r in records if r["type"] == "position"]


def check_replay(records: list[dict[str, Any]]) -> None:
    """An order record's cumExecQty and a position's size are the sums of the fills recorded before them."""
    filled: dict[str, D] = {}
    held: dict[str, D] = {}
    for r in records:
        if r["type"] == "execution":
            filled[r["orderId"]] = filled.get(r["orderId"], D(0)) + D(r["execQty"])
            sign = 1 if r["side"] == "Buy" else -1
            held[r["symbol"]] = held.get(r["symbol"], D(0)) + sign * D(r["execQty"])
        elif r["type"] == "order":
            assert D(r["cumExecQty"]) == filled.get(r["orderId"], D(0)), r
        else:
            assert D(r["size"]) == held.get(r["symbol"], D(0)), r


# -- what is recorded, and who caused it ------------------------------------------------------


def test_create_partial_fill_and_cancel_through_pybit_are_recorded_in_order(sim: SimServer, ctl: SimControl,
                                                                           http: Any) -> None:
    start = ctl.history()["lastSeq"]
    rests = buy_limit(http, "0.010", "49000", "h-1")
    ctl.trade("BTCUSDT", "49000.0", "0.004")  # at the touch: fills what the trade had
    ctl.trade("BTCUSDT", "48990.0", "0.001")  # through: fills the rest
    cancelled = buy_limit(http, "0.010", "48000", "h-2")
    http.cancel_order(category="linear", symbol="BTCUSDT", orderLinkId="h-2")

    records = ctl.history_all(after=start)

    assert [r["seq"] for r in records] == list(range(start + 1, start + len(records) + 1))
    assert of_order(records, rests) == [
        ("order", "New", "api"),
        ("execution", "0.004", "market"), ("order", "PartiallyFilled", "market"),
        ("execution", "0.006", "market"), ("order", "Filled", "market"),
    ]
    assert {r["orderOrigin"] for r in records if r.get("orderId") == rests} == {"api"}
    assert of_order(records, cancelled) == [("order", "New", "api"), ("order", "Cancelled", "api")]
    assert positions(records) == [("0.004", "market"), ("0.010", "market")]
    first = records[0]
    assert first["orderLinkId"] == "h-1" and first["side"] == "Buy" and first["orderType"] == "Limit"
    assert first["qty"] == "0.010" and first["price"] == "49000.00" and first["reduceOnly"] is False
    assert first["createdTime"] == first["updatedTime"] and isinstance(first["ts"], int)
    check_replay(records)


def test_actions_behind_the_back_are_origin_sim_and_keep_the_creator(sim: SimServer, ctl: SimControl,
                                                                     http: Any) -> None:
    order_id = buy_limit(http, "0.010", "49000", "h-3")
    ctl.fill_order("BTCUSDT", order_link_id="h-3", qty="0.003")
    ctl.amend_order("BTCUSDT", order_id=order_id, price="49100")
    ctl.fill_order("BTCUSDT", order_id=order_id)
    ctl.place_order("ETHUSDT", "Sell", "0.10")
    ctl.close_position("ETHUSDT")

    records = ctl.history_all()

    assert of_order(records, order_id) == [
        ("order", "New", "api"),
        ("execution", "0.003", "sim"), ("order", "PartiallyFilled", "sim"),
        ("order", "PartiallyFilled", "sim"),  # the amend: same fill, new price
        ("execution", "0.007", "sim"), ("order", "Filled", "sim"),
    ]
    fills = [r for r in records if r["type"] == "execution" and r["orderId"] == order_id]
    assert {(r["execPrice"], r["isMaker"], r["orderOrigin"]) for r in fills} == {
        ("49000.00", True, "api"), ("49100.00", True, "api")}
    eth = [r for r in records if r.get("symbol") == "ETHUSDT"]
    assert {(r["origin"], r.get("orderOrigin", "sim")) for r in eth} == {("sim", "sim")}
    assert positions(eth) == [("-0.10", "sim"), ("0", "sim")]
    check_replay(records)


def test_a_take_profit_close_is_a_market_order_of_the_market(sim: SimServer, ctl: SimControl, http: Any) -> None:
    http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.01",
                     takeProfit="50100")
    ctl.trade("BTCUSDT", "50150.0", "0.001")
    ctl.set_book("BTCUSDT", BTC_BIDS, BTC_ASKS)

    records = ctl.history_all()

    tp = [r for r in records if r.get("createType") == "CreateByTakeProfit"]
    assert [(r["type"], r.get("status"), r["origin"], r["orderOrigin"]) for r in tp] == [
        ("order", "New", "market", "market"), ("execution", None, "market", "market"),
        ("order", "Filled", "market", "market")]
    assert tp[0]["reduceOnly"] is True and tp[-1]["stopOrderType"] == "TakeProfit"
    assert positions(records) == [("0.010", "api"), ("0", "market")]
    check_replay(records)


def test_sim_reset_records_the_open_orders_cancelled_and_the_positions_flat(sim: SimServer, ctl: SimControl,
                                                                            http: Any) -> None:
    order_id = buy_limit(http, "0.010", "49000", "h-4")
    ctl.open_position("ETHUSDT", "Buy", "0.10")
    seq = ctl.history()["lastSeq"]

    ctl.reset()

    after = ctl.history_all(after=seq)
    assert [(r["type"], r.get("orderId") or r["symbol"], r.get("status") or r["size"], r["origin"]) for r in after] \
        == [("order", order_id, "Cancelled", "sim"), ("position", "ETHUSDT", "0", "sim")]
    assert after[0]["cancelType"] == "CancelByAdmin" and after[0]["orderOrigin"] == "api"
    ctl.place_order("ETHUSDT", "Buy", "0.10")
    assert ctl.history()["lastSeq"] > after[-1]["seq"]  # numbering goes on


def test_a_refused_request_and_a_leverage_change_leave_no_record(sim: SimServer, ctl: SimControl,
                                                                 http: Any) -> None:
    seq = ctl.history()["lastSeq"]
    with pytest.raises(Exception, match="110001"):
        http.cancel_order(category="linear", symbol="BTCUSDT", orderId="nope")
    http.set_leverage(category="linear", symbol="BTCUSDT", buyLeverage="5", sellLeverage="5")
    assert ctl.history(after=seq) == {"records": [], "lastSeq": seq}


# -- the fill-order action ----------------------------------------------------------------------


def _post(sim: SimServer, path: str, body: Any) -> requests.Response:
    return requests.post(f"{sim.base_url}{path}", json=body, headers={TOKEN_HEADER: sim.token}, timeout=5)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"symbol": "BTCUSDT"}, 400, "orderId"),
        ({"symbol": "BTCUSDT", "orderLinkId": "h-5", "qty": "0.0005"}, 400, "qty"),
        ({"symbol": "BTCUSDT", "orderLinkId": "h-5", "qty": "-1"}, 400, "qty"),
        ({"symbol": "ETHUSDT", "orderLinkId": "h-5"}, 409, None),  # another symbol's order
        ({"symbol": "BTCUSDT", "orderId": "nope"}, 409, None),
    ],
    ids=["no-id", "off-step", "negative", "other-symbol", "unknown"],
)
def test_fill_order_refusals_change_nothing(sim: SimServer, ctl: SimControl, http: Any, body: dict[str, Any],
                                            status: int, field: str | None) -> None:
    buy_limit(http, "0.010", "49000", "h-5")
    seq = ctl.history()["lastSeq"]
    resp = _post(sim, "/sim/actions/fill-order", body)
    assert resp.status_code == status, resp.text
    assert resp.json().get("field") == field
    assert ctl.history(after=seq)["records"] == [] and ctl.state()["positions"] == []


# -- on disk: restarts, torn lines, reset, rotation -------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "sim" / "exchange_state.json"


def test_seq_and_creators_survive_a_restart_with_the_same_state_file(state: Path) -> None:
    with SimServer(state_path=state) as sim:
        ctl = control(sim)
        resting = buy_limit(pybit(sim), "0.010", "49000", "h-6")
        before = ctl.history_all()
    assert [r["seq"] for r in before] == [1] and json.loads(state.read_text())["journal"]["seq"] == 1

    with SimServer(state_path=state) as sim:
        ctl = control(sim)
        ctl.trade("BTCUSDT", "48990.0", "0.001")  # the market fills the order the client placed before
        after = ctl.history_all()

    assert after[0] == before[0]  # read back from the file: memory starts empty
    assert [r["seq"] for r in after] == [1, 2, 3, 4]
    assert [(r["type"], r["origin"], r.get("orderOrigin")) for r in after[1:]] == [
        ("execution", "market", "api"), ("order", "market", "api"), ("position", "market", None)]
    assert after[2]["orderId"] == resting
    assert list(iter_history(history_path_for(state))) == after


def test_a_torn_last_line_is_skipped_and_cut_before_the_next_append(state: Path) -> None:
    with SimServer(state_path=state) as sim:
        control(sim).place_order("BTCUSDT", "Buy", "0.010")
    history = history_path_for(state)
    whole = history.read_bytes()
    torn = b'{"seq":5,"ts":1,"type":"ord'
    history.write_bytes(whole + torn)  # killed mid-write
    records = list(iter_history(history))
    assert [r["seq"] for r in records] == [1, 2, 3, 4]

    with SimServer(state_path=state) as sim:
        ctl = control(sim)
        assert ctl.history_all() == records
        ctl.close_position("BTCUSDT")
        seqs = [r["seq"] for r in ctl.history_all()]

    assert seqs == list(range(1, len(seqs) + 1))
    lines = history.read_bytes().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == seqs and torn not in history.read_bytes()


def test_the_history_file_is_private_and_not_fsynced_per_request(state: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    with SimServer(state_path=state) as sim:
        ctl = control(sim)
        http = pybit(sim)
        buy_limit(http, "0.010", "49000", "h-7")
        monkeypatch.setattr(os, "fsync", counting_fsync)
        buy_limit(http, "0.010", "48000", "h-8")
        monkeypatch.undo()
        history = history_path_for(state)
        assert ctl.history()["records"][-1]["orderLinkId"] == "h-8"
        assert history.read_bytes().count(b"h-8") == 1  # on disk before the answer
        # One fsync for the request: the change log's (group commit), never the history's.
        assert synced == [wal_path_for(state).stat().st_ino]
        assert history.stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
def test_the_history_of_a_killed_simulator_process_goes_on_after_a_restart(state: Path) -> None:
    proc, url = start_process(state, "--reset")
    try:
        ctl = SimControl(url, token_file=token_path_for(state))
        ctl.set_book("BTCUSDT", BTC_BIDS, BTC_ASKS)
        sim_http(url, retry_codes={-1}).place_order(category="linear", symbol="BTCUSDT", side="Buy",
                                                    orderType="Market", qty="0.01")
        before = ctl.history_all()
    finally:
        proc.send_signal(signal.SIGKILL)  # no goodbye, no final save
        proc.wait(timeout=10)
    proc, url = start_process(state)
    try:
        ctl = SimControl(url, token_file=token_path_for(state))
        ctl.set_book("BTCUSDT", BTC_BIDS, BTC_ASKS)
        ctl.close_position("BTCUSDT")
        after = ctl.history_all()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert [r["seq"] for r in before] == [1, 2, 3, 4] and after[:4] == before
    assert [r["seq"] for r in after] == list(range(1, len(after) + 1)) and after[-1]["size"] == "0"
    assert list(iter_history(history_path_for(state))) == after


def test_reset_starts_a_new_history_and_keeps_the_previous_one(state: Path) -> None:
    with SimServer(state_path=state) as sim:
        control(sim).place_order("BTCUSDT", "Buy", "0.010")
    old = history_path_for(state).read_bytes()

    with SimServer(state_path=state, reset=True) as sim:
        ctl = control(sim)
        assert ctl.history() == {"records": [], "lastSeq": 0}
        ctl.place_order("ETHUSDT", "Buy", "0.10")
        assert ctl.history_all()[0]["seq"] == 1

    assert previous_path(history_path_for(state)).read_bytes() == old
    assert previous_path(history_path_for(state)).name == "exchange_history.previous.jsonl"


def _journal(path: Path | None, **kw: Any) -> tuple[Journal, MatchingEngine]:
    clock = iter(range(1_000, 10_000_000))
    engine = MatchingEngine(DEFAULT_INSTRUMENTS, clock=lambda: next(clock))
    engine.last_price["BTCUSDT"] = D("50000")
    journal = Journal(path, **kw)
    journal.start(engine, fresh=False)
    return journal, engine


def _resting_orders(journal: Journal, engine: MatchingEngine, n: int) -> None:
    for i in range(n):
        _, changes = engine.place_order(OrderRequest("BTCUSDT", "Buy", "Limit", D("0.001"), D(49000 + i)))
        journal.record(engine, changes, "api", i)
        journal.flush()


def test_the_file_rotates_once_and_reads_fall_back_to_it_past_memory(tmp_path: Path) -> None:
    path = tmp_path / "exchange_history.jsonl"
    journal, engine = _journal(path, memory=5, max_file_bytes=2_000)
    _resting_orders(journal, engine, 30)
    journal.close()

    assert rotated_path(path).exists() and path.stat().st_size <= 2_000 + 600
    on_disk = [r["seq"] for r in iter_history(path)]
    assert on_disk == list(range(on_disk[0], 31)) and on_disk[0] > 1  # the oldest part is gone
    assert [r["seq"] for r in journal.read(0, 3)] == on_disk[:3]  # older than memory: from the files
    assert [r["seq"] for r in journal.read(27, 100)] == [28, 29, 30]  # from memory
    assert journal.read(30, 10) == []


def test_without_a_file_records_older_than_memory_are_gone_and_the_jump_says_so() -> None:
    journal, engine = _journal(None, memory=5)
    _resting_orders(journal, engine, 8)
    assert [r["seq"] for r in journal.read(0, 10)] == [4, 5, 6, 7, 8]


def test_a_history_file_in_the_way_is_moved_aside_and_a_new_one_started(tmp_path: Path) -> None:
    path = tmp_path / "exchange_history.jsonl"
    path.mkdir()  # a directory planted in its place
    journal, engine = _journal(path)
    _resting_orders(journal, engine, 2)
    journal.close()
    assert [r["seq"] for r in iter_history(path)] == [1, 2]
    assert len(list(tmp_path.glob("exchange_history.jsonl.corrupt-*"))) == 1


def test_seq_never_goes_back_when_the_file_is_ahead_of_the_state(tmp_path: Path) -> None:
    path = tmp_path / "exchange_history.jsonl"
    path.write_bytes(b'{"seq":41,"ts":1,"type":"order"}\n{"seq":42,"ts":1,"type":"position"}\n')
    journal = Journal(path)
    journal.restore({"seq": 40, "orderOrigins": {"o": "api", "p": "bogus", "q": 7}})
    journal.start(MatchingEngine(DEFAULT_INSTRUMENTS, clock=lambda: 0), fresh=False)
    assert journal.seq == 42
    assert journal.saved_form({"o", "p", "q"}) == {"seq": 42, "orderOrigins": {"o": "api"}}
    journal.record(MatchingEngine(DEFAULT_INSTRUMENTS, clock=lambda: 0), Changes(), "api", 0)
    assert journal.seq == 42  # nothing changed, nothing recorded


# -- GET /sim/history ------------------------------------------------------------------------------


@pytest.fixture
def busy(sim: SimServer, ctl: SimControl) -> Iterator[SimControl]:
    for i in range(5):
        ctl.place_order("BTCUSDT", "Buy", "0.001", order_type="Limit", price=str(49000 + i))
    yield ctl


def test_after_pages_through_the_history(busy: SimControl) -> None:
    everything = busy.history_all()
    assert [r["seq"] for r in everything] == [1, 2, 3, 4, 5]
    page = busy.history(after=1, limit=2)
    assert [r["seq"] for r in page["records"]] == [2, 3] and page["lastSeq"] == 5
    assert busy.history_all(after=2, page=1) == everything[2:]
    assert busy.history(after=5)["records"] == [] and busy.history(after=10**6)["records"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("after=-1", "after"), ("after=abc", "after"), ("after=1.5", "after"), ("after=" + "9" * 30, "after"),
        ("limit=0", "limit"), ("limit=5001", "limit"), ("limit=x", "limit"), ("limit=1&limit=2", "limit"),
        ("afterr=1", "afterr"),
    ],
)
def test_a_bad_after_or_limit_is_refused_naming_the_field(sim: SimServer, busy: SimControl, query: str,
                                                          field: str) -> None:
    resp = requests.get(f"{sim.base_url}/sim/history?{query}", headers={TOKEN_HEADER: sim.token}, timeout=5)
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == field and field in resp.json()["error"]


def test_the_history_needs_the_control_token(sim: SimServer, busy: SimControl) -> None:
    assert requests.get(f"{sim.base_url}/sim/history", timeout=5).status_code == 401
    wrong = requests.get(f"{sim.base_url}/sim/history", headers={TOKEN_HEADER: "x" * 43}, timeout=5)
    assert wrong.status_code == 401 and wrong.json()["field"] == TOKEN_HEADER
    with pytest.raises(SimControlError, match="401"):
        SimControl(sim.base_url, token="y" * 43).history()
