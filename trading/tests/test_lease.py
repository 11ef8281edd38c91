"""The account lease and the fenced port against a real redis-server (started per test on a free loopback port)."""

from __future__ import annotations

import json
import subprocess
import time
from decimal import Decimal

import pytest
import redis

from scalper_site.embedded_redis import redis_server_binary
from scalper_site.testkit import free_port, wait_until
from trading.exchange.fenced import FencedExchange
from trading.exchange.lease import (
    AccountLease,
    LeaseCorrupt,
    LeaseLost,
    account_key,
    fence_check,
    last_key,
    last_lease,
    lease_key,
    read_lease,
    redis_client,
    token_key,
)
from trading.exchange.port import PlaceOrder
from trading.trader.role import LeaseKeeper

pytestmark = pytest.mark.slow  # starts a redis-server

ACCOUNT = account_key("http://127.0.0.1:8765", "sim-key")


class Server:
    """A private redis-server on a free port; ``stop`` takes it away (Redis down mid-run)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: redis.Redis.from_url(self.url, socket_timeout=1).ping(), timeout=10, what="redis-server")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def server():
    s = Server()
    try:
        yield s
    finally:
        s.stop()


class Clock:
    """A boottime clock the test moves: a stopped process wakes later than it thinks."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Venue:
    """The exchange behind the fence: records what reached it."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def place_order(self, order: PlaceOrder):
        self.sent.append(order.order_link_id)
        return "ack"

    def cancel_all(self, symbol=None):
        self.sent.append(f"cancel-all {symbol}")
        return []

    def set_leverage(self, symbol, leverage):
        self.sent.append(f"leverage {symbol}")

    def positions(self, symbol=None):
        return ["read"]


def _lease(server: Server, **kwargs) -> AccountLease:
    return AccountLease(redis_client(server.url), ACCOUNT, run_id="r1", **{"ttl_s": 5.0, **kwargs})


def _order(link: str) -> PlaceOrder:
    return PlaceOrder(symbol="BTCUSDT", side="Buy", qty=Decimal("0.001"), order_link_id=link)


def test_one_holder_at_a_time_and_every_acquisition_takes_a_higher_token(server):
    first, second = _lease(server), _lease(server)
    taken = first.try_acquire()
    assert taken.held and taken.record.token == 1 and taken.previous is None
    refused = second.try_acquire()
    assert not refused.held and first.holder in refused.reason and second.token is None
    assert fence_check(first.client, ACCOUNT, 1, first.holder)
    assert not fence_check(first.client, ACCOUNT, 2, first.holder)
    assert not fence_check(first.client, ACCOUNT, 1, second.holder)  # the right number is not enough
    assert first.try_renew().held and read_lease(first.client, ACCOUNT).holder == first.holder

    assert first.release() and read_lease(first.client, ACCOUNT) is None
    gone = last_lease(first.client, ACCOUNT)
    assert gone.holder == first.holder and gone.ttl_s == 0 and gone.expires_at == gone.renewed_at  # given back
    after = second.try_acquire()
    assert after.held and after.record.token == 2 and after.previous.holder == first.holder
    raw = json.loads(first.client.get(lease_key(ACCOUNT)))
    assert set(raw) == {"token", "holder", "host", "pid", "runId", "renewedAt", "ttlS"} and raw["runId"] == "r1"
    assert 4000 < first.client.pttl(lease_key(ACCOUNT)) <= 5000


def test_a_lease_taken_over_cannot_be_renewed_nor_used_and_is_dropped_at_once(server):
    old, new = _lease(server), _lease(server)
    assert old.try_acquire().held
    old.client.delete(lease_key(ACCOUNT))  # it lapsed (as after a long stop) ...
    assert new.try_acquire().held  # ... and another took it
    venue = Venue()
    fenced = FencedExchange(venue, old)
    with pytest.raises(LeaseLost, match="no longer holds token 1"):
        fenced.place_order(_order("o-1"))
    renewed = old.try_renew()
    assert not renewed.held and "no longer holds token 1" in renewed.reason and old.token is None
    assert read_lease(new.client, ACCOUNT).holder == new.holder  # the renew left the new holder's lease alone
    assert not old.release() and read_lease(new.client, ACCOUNT).holder == new.holder
    assert venue.sent == [] and fenced.refused == 1


def test_after_redis_came_back_empty_a_new_holder_with_the_same_token_is_not_mistaken_for_the_old(server):
    old, new = _lease(server), _lease(server)
    assert old.try_acquire().held and old.token == 1
    old.client.flushall()  # Redis restarted: it keeps nothing on disk, the token counter starts again
    assert new.try_acquire().held and new.token == 1  # the same number, another holder
    venue = Venue()
    fenced = FencedExchange(venue, old)
    with pytest.raises(LeaseLost, match="no longer holds token 1"):
        fenced.place_order(_order("o-1"))  # the old holder, still within its local deadline, sends nothing
    assert not old.try_renew().held and read_lease(new.client, ACCOUNT).holder == new.holder
    assert not old.release() and read_lease(new.client, ACCOUNT).holder == new.holder
    assert venue.sent == []
    FencedExchange(venue, new).place_order(_order("o-2"))
    assert venue.sent == ["o-2"]


def test_a_process_woken_past_its_deadline_sends_nothing_even_before_anyone_took_the_lease(server):
    clock = Clock()
    lease = _lease(server, clock=clock)
    venue = Venue()
    fenced = FencedExchange(venue, lease)
    assert lease.try_acquire().held
    fenced.place_order(_order("o-1"))
    fenced.cancel_all("BTCUSDT")
    fenced.set_leverage("BTCUSDT", Decimal(3))
    clock.now += 4.5  # stopped for most of the 5 s TTL: past renew time + ttl - margin (1 s)
    for send in (lambda: fenced.place_order(_order("o-2")), lambda: fenced.cancel_all(None),
                 lambda: fenced.set_leverage("BTCUSDT", Decimal(2))):
        with pytest.raises(LeaseLost, match="holds no valid lease"):
            send()
    assert fence_check(lease.client, ACCOUNT, lease.token, lease.holder)  # Redis alone would still have said yes
    assert venue.sent == ["o-1", "cancel-all BTCUSDT", "leverage BTCUSDT"]
    assert fenced.positions() == ["read"]  # reads are never fenced
    assert not lease.try_renew().held and lease.token is None  # the renew refuses too: it comes too late


def test_the_fence_keeps_back_a_margin_of_the_ttl(server):
    lease = _lease(server, ttl_s=2.0)  # margin: a fifth of a short TTL, 400 ms
    assert lease.try_acquire().held and lease.margin_ms == 400
    lease.client.pexpire(lease_key(ACCOUNT), 300)
    assert not fence_check(lease.client, ACCOUNT, lease.token, lease.holder, margin_ms=lease.margin_ms)
    with pytest.raises(LeaseLost):
        lease.ensure("order x")


@pytest.mark.parametrize("garbage", [b"not json", b"[1, 2]", b'{"token": "7"}', b'{"token": 1e999}', b"9" * 5000,
                                     b"[" * 100_000, b'{"token": 1, "holder": 5}', b"\xff\xfe"])
def test_a_garbage_lease_is_never_taken_over_nor_honoured_and_says_why(server, garbage):
    lease = _lease(server)
    lease.client.set(lease_key(ACCOUNT), garbage)
    attempt = lease.try_acquire()
    assert not attempt.held and "holds no lease" in attempt.reason and lease_key(ACCOUNT) in attempt.reason
    assert lease.client.get(lease_key(ACCOUNT)) == garbage  # a foreign value is left for a person to judge
    with pytest.raises(LeaseCorrupt):
        read_lease(lease.client, ACCOUNT)
    assert not fence_check(lease.client, ACCOUNT, 1, lease.holder)
    with pytest.raises(LeaseLost):
        FencedExchange(Venue(), lease).place_order(_order("o-1"))


@pytest.mark.parametrize("counter", [b"0", b"-5", b"garbage", None])
def test_a_token_counter_that_went_backwards_never_hands_out_an_old_token(server, counter):
    first = _lease(server)
    for _ in range(3):
        assert first.try_acquire().held and first.release()
    assert last_lease(first.client, ACCOUNT).token == 3
    if counter is None:
        first.client.delete(token_key(ACCOUNT))
    else:
        first.client.set(token_key(ACCOUNT), counter)
    taken = _lease(server).try_acquire()
    assert taken.held and taken.record.token == 4
    assert int(first.client.get(token_key(ACCOUNT))) == 4


def test_redis_down_at_start_means_no_lease_and_a_reason(server):
    lease = AccountLease(redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5), ACCOUNT, ttl_s=5.0)
    attempt = lease.try_acquire()
    assert not attempt.held and "Redis did not answer" in attempt.reason
    with pytest.raises(LeaseLost, match="holds no valid lease"):
        FencedExchange(Venue(), lease).place_order(_order("o-1"))


def test_redis_down_mid_run_stops_every_send_and_the_keeper_reports_the_loss(server):
    lease = _lease(server, ttl_s=3.0)
    posted: list[tuple] = []
    keeper = LeaseKeeper(lease, posted.append)
    keeper.turn()
    assert posted == [("lease", "acquired", posted[0][2])] and lease.token == 1
    keeper.turn()  # a renew: nothing to say
    assert len(posted) == 1
    server.stop()
    venue = Venue()
    with pytest.raises(LeaseLost, match="cannot be proven"):
        FencedExchange(venue, lease).place_order(_order("o-1"))
    started = time.monotonic()
    keeper.turn()
    assert time.monotonic() - started < 5  # every call has a socket timeout
    assert posted[-1][:2] == ("lease", "lost") and "Redis did not answer" in posted[-1][2]
    assert lease.token is None and venue.sent == []
    keeper.turn()  # standing by: the acquire fails, said once ...
    keeper.turn()  # ... not again for the same reason
    assert [p[1] for p in posted] == ["acquired", "lost", "waiting"]


def test_the_last_key_outlives_the_lease_and_tells_when_it_was_last_held(server):
    lease = _lease(server, ttl_s=1.0)
    assert lease.try_acquire().held
    wait_until(lambda: read_lease(lease.client, ACCOUNT) is None, timeout=5, what="the lease to lapse")
    last = last_lease(lease.client, ACCOUNT)
    assert last.holder == lease.holder and last.ttl_s == 1.0 and last.expires_at <= time.time()
    assert lease.client.ttl(last_key(ACCOUNT)) == -1  # no TTL


def test_the_account_key_hashes_endpoint_and_key_and_never_holds_the_secret():
    key = account_key("https://api.bybit.com", "my-api-key")
    assert len(key) == 24 and "my-api-key" not in key
    assert key != account_key("https://api-testnet.bybit.com", "my-api-key")
