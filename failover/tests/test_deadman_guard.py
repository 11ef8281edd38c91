"""The dead-man guardian against the simulator and a real Redis: it acts once per lost leader, as configured.

Each test registers an environment on an account of its own, lets a real
``AccountLease`` be taken and given back (so the lease's last value says when
it ended), and runs the sweep at a chosen ``now`` instead of waiting.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from failover import services
from failover.domain.deadman import ACTION_CLAIM_S, MAX_TRIES, RETRY_AFTER_S
from failover.models import FailoverStateRecord, OperatorAction
from failover.recovery import deadman, runner
from failover.recovery.kit import shared_rest
from failover.tests.conftest import Env
from scalper_site.testkit import BASE_DIR, env_on_test_database
from trading.exchange import lease
from trading.exchange.port import BUY, SELL, ExchangePort, PlaceOrder, TemporaryExchangeError
from trading.models import Alert

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

AFTER_S = 2.0


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = lease.redis_client(settings.REDIS_URL)
    yield connection
    connection.close()


class Account:
    """One account on the simulator: its lease, its environment's registration and config, its REST port."""

    def __init__(self, env: Env, client: redis.Redis) -> None:
        self.env = env
        self.client = client
        self.id = lease.account_key(env.sim.base_url, f"test-{uuid.uuid4().hex}")
        context = {**env.context(), "leaseAccount": self.id, "leaseTtlS": 2.0}
        services.environment_register(run_id=env.run_id, context=context)
        self.rest: ExchangePort = shared_rest(context["exchange"])

    def configure(self, action: str, after_s: float = AFTER_S) -> None:
        folder = self.env.folder / "config"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"deadman": {"after_s": after_s, "action": action}}))

    def lease_held_then_lost(self) -> float:
        """A trader took the lease and gave it back; return when it ended (epoch s)."""
        held = lease.AccountLease(self.client, self.id, ttl_s=2.0, run_id=self.env.run_id)
        assert held.try_acquire().held
        assert held.release()
        last = lease.last_lease(self.client, self.id)
        assert last is not None
        return last.expires_at

    def cleanup(self) -> None:
        keys = [lease.lease_key(self.id), lease.token_key(self.id), lease.last_key(self.id)]
        self.client.delete(*keys, *self.client.keys(deadman.episode_key(self.id, "*")))


@pytest.fixture
def account(env: Env, client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)
    services.safe_mode_exit(run_id=env.run_id, user="setup", force=True)
    found = Account(env, client)
    try:
        yield found
    finally:
        found.cleanup()


def _sweep(account: Account, now: float) -> dict[str, Any]:
    return deadman.deadman_sweep(client=account.client, now=now, sleep=lambda s: time.sleep(min(s, 0.2)))[account.id]


def _resting_entry_and_a_reduce_only_order(rest: ExchangePort) -> None:
    rest.place_order(PlaceOrder(symbol="BTCUSDT", side=BUY, qty=Decimal("0.01"), order_link_id="open-long"))
    rest.place_order(PlaceOrder(symbol="BTCUSDT", side=BUY, qty=Decimal("0.01"), order_link_id="entry",
                                order_type="Limit", price=Decimal("45000"), time_in_force="GTC"))
    rest.place_order(PlaceOrder(symbol="BTCUSDT", side=SELL, qty=Decimal("0.01"), order_link_id="take-profit",
                                order_type="Limit", price=Decimal("60000"), time_in_force="GTC", reduce_only=True))


def _open_links(rest: ExchangePort) -> set[str]:
    return {order.order_link_id for order in rest.open_orders()}


def test_no_lease_past_after_s_cancels_the_entry_keeps_the_reduce_only_order_once(account: Account):
    account.configure("cancel_entries")
    _resting_entry_and_a_reduce_only_order(account.rest)
    ended = account.lease_held_then_lost()

    early = _sweep(account, ended + AFTER_S - 0.5)
    assert early["acted"] is False and "acts after" in early["why"]
    assert _open_links(account.rest) == {"entry", "take-profit"}

    acted = _sweep(account, ended + AFTER_S + 0.5)
    assert acted["acted"] is True and acted["cancel"]["cancelled"] == ["entry"]
    assert acted["cancel"]["keptReduceOnly"] == ["take-profit"]
    assert _open_links(account.rest) == {"take-profit"}
    assert len(account.rest.positions()) == 1  # cancel_entries closes nothing
    state = services.failover_state_get(run_id=account.env.run_id)
    assert state.safe_mode and state.reason == "DEADMAN"
    (audit,) = OperatorAction.objects.filter(action="DEADMAN")
    assert audit.username == "guardian" and audit.details["episode"] == acted["episode"]
    alert = Alert.objects.get(type="DEADMAN_TRIGGERED")
    assert alert.level == "CRIT" and alert.run_id == account.env.run_id

    account.rest.place_order(PlaceOrder(symbol="ETHUSDT", side=BUY, qty=Decimal("0.1"), order_link_id="entry-2",
                                        order_type="Limit", price=Decimal("2500"), time_in_force="GTC"))
    again = _sweep(account, ended + AFTER_S + 30)
    assert again["acted"] is False and "already acted" in again["why"]
    assert "entry-2" in _open_links(account.rest)  # the same episode: nothing more is done
    assert OperatorAction.objects.filter(action="DEADMAN").count() == 1


def test_flatten_cancels_entries_then_closes_the_position_reduce_only(account: Account):
    account.configure("flatten")
    _resting_entry_and_a_reduce_only_order(account.rest)
    ended = account.lease_held_then_lost()
    acted = _sweep(account, ended + AFTER_S + 1)
    assert acted["acted"] is True and acted["done"] is True
    assert acted["cancel"]["cancelled"] == ["entry"] and acted["flatten"]["closed"]
    assert account.rest.positions() == []
    assert "entry" not in _open_links(account.rest)


def test_action_none_only_alerts_and_turns_safe_mode_on(account: Account):
    account.configure("none")
    _resting_entry_and_a_reduce_only_order(account.rest)
    ended = account.lease_held_then_lost()
    acted = _sweep(account, ended + AFTER_S + 1)
    assert acted["acted"] is True and acted["action"] == "none"
    assert _open_links(account.rest) == {"entry", "take-profit"} and len(account.rest.positions()) == 1
    assert services.failover_state_get(run_id=account.env.run_id).reason == "DEADMAN"
    assert Alert.objects.filter(type="DEADMAN_TRIGGERED").count() == 1


def test_a_held_lease_means_nothing_is_done(account: Account):
    account.configure("flatten")
    _resting_entry_and_a_reduce_only_order(account.rest)
    held = lease.AccountLease(account.client, account.id, ttl_s=30.0, run_id=account.env.run_id)
    assert held.try_acquire().held
    result = _sweep(account, time.time() + 3600)
    assert result["acted"] is False and result["why"].startswith("held by")
    assert _open_links(account.rest) == {"entry", "take-profit"}
    assert not services.failover_state_get(run_id=account.env.run_id).safe_mode
    assert not OperatorAction.objects.filter(action="DEADMAN").exists()


def test_a_new_leader_starts_a_new_episode_the_guardian_acts_for_again(account: Account):
    account.configure("cancel_entries")
    first = account.lease_held_then_lost()
    assert _sweep(account, first + AFTER_S + 1)["acted"] is True
    account.rest.place_order(PlaceOrder(symbol="BTCUSDT", side=BUY, qty=Decimal("0.01"), order_link_id="entry-b",
                                        order_type="Limit", price=Decimal("45000"), time_in_force="GTC"))
    second = account.lease_held_then_lost()
    acted = _sweep(account, second + AFTER_S + 1)
    assert acted["acted"] is True and acted["cancel"]["cancelled"] == ["entry-b"]
    assert OperatorAction.objects.filter(action="DEADMAN").count() == 2


def test_garbage_in_the_lease_key_counts_as_unattended(account: Account):
    account.configure("cancel_entries")
    ended = account.lease_held_then_lost()
    account.client.set(lease.lease_key(account.id), b"\xff not a lease")
    acted = _sweep(account, ended + AFTER_S + 1)
    assert acted["acted"] is True


def test_an_ended_integration_run_is_no_longer_guarded(account: Account):
    account.configure("cancel_entries")
    _resting_entry_and_a_reduce_only_order(account.rest)
    ended = account.lease_held_then_lost()
    services.environment_retire(run_id=account.env.run_id)
    swept = deadman.deadman_sweep(client=account.client, now=ended + AFTER_S + 1)
    assert account.id not in swept
    assert _open_links(account.rest) == {"entry", "take-profit"}
    assert not OperatorAction.objects.filter(action="DEADMAN").exists()
    assert FailoverStateRecord.objects.get(run_id=account.env.run_id).context["retired"] is True


def test_the_product_environment_is_never_retired():
    with pytest.raises(ValueError):
        services.environment_retire(run_id="")


# -- the episode's claim: a lost worker or a short action is acted for again -----------------------------------

LOST_GUARDIAN = """
import sys, time, django
django.setup()
from django.conf import settings
from django.db import connection
from failover.recovery import deadman
from trading.exchange import lease

class Hangs:
    def open_orders(self, symbol=None):
        print("acting", flush=True)  # the claim is taken and safe mode is on: now the worker is lost
        time.sleep(600)

deadman.deadman_sweep(client=lease.redis_client(settings.REDIS_URL), now=float(sys.argv[1]),
                      rest_for=lambda context: Hangs())
"""


class Unreachable:
    """An exchange that never answers a read: every action on it falls short."""

    def open_orders(self, symbol=None):
        raise TemporaryExchangeError("open orders: connection refused")

    def positions(self, symbol=None):
        raise TemporaryExchangeError("positions: connection refused")


def _claim_record(account: Account, episode: str) -> dict[str, Any]:
    return json.loads(account.client.get(deadman.episode_key(account.id, episode)))


def test_a_guardian_killed_mid_action_is_replaced_once_its_claim_runs_out(account: Account):
    account.configure("cancel_entries")
    _resting_entry_and_a_reduce_only_order(account.rest)
    at = account.lease_held_then_lost() + AFTER_S + 1
    env = env_on_test_database(connection, REDIS_URL=settings.REDIS_URL, DJANGO_SETTINGS_MODULE="scalper_site.settings")
    worker = subprocess.Popen([sys.executable, "-c", LOST_GUARDIAN, str(at)], cwd=BASE_DIR, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "acting"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    assert services.failover_state_get(run_id=account.env.run_id).reason == "DEADMAN"
    assert _open_links(account.rest) == {"entry", "take-profit"}  # the lost worker cancelled nothing

    waiting = _sweep(account, at + ACTION_CLAIM_S - 1)
    assert waiting["acted"] is False and "another guardian is acting" in waiting["why"]

    replaced = _sweep(account, at + ACTION_CLAIM_S + 1)
    assert replaced["acted"] is True and replaced["try"] == 2 and replaced["cancel"]["cancelled"] == ["entry"]
    assert _open_links(account.rest) == {"take-profit"}
    assert _claim_record(account, replaced["episode"])["state"] == "done"
    assert _sweep(account, at + 10 * ACTION_CLAIM_S)["acted"] is False
    assert OperatorAction.objects.filter(action="DEADMAN").count() == 1  # the lost worker audited nothing


def test_an_action_that_fell_short_is_tried_again_after_the_pause(account: Account):
    account.configure("cancel_entries")
    _resting_entry_and_a_reduce_only_order(account.rest)
    at = account.lease_held_then_lost() + AFTER_S + 1

    short = deadman.deadman_sweep(client=account.client, now=at, rest_for=lambda c: Unreachable(),
                                  sleep=lambda s: None)[account.id]
    assert short["acted"] is True and short["done"] is False
    assert f"try 1 of {MAX_TRIES}, the next in {RETRY_AFTER_S:g} s" in Alert.objects.get().message
    assert _claim_record(account, short["episode"])["state"] == "incomplete"
    assert "trying again after" in _sweep(account, at + RETRY_AFTER_S - 1)["why"]

    again = _sweep(account, at + RETRY_AFTER_S + 5)  # the pause counts from the action's end; the exchange answers
    assert again["acted"] is True and again["done"] is True and again["try"] == 2
    assert _open_links(account.rest) == {"take-profit"}
    assert "already acted" in _sweep(account, at + 100 * RETRY_AFTER_S)["why"]


def test_a_guardian_that_keeps_falling_short_stops_after_its_tries_and_says_so(account: Account):
    account.configure("cancel_entries")
    at = account.lease_held_then_lost() + AFTER_S + 1
    results = [deadman.deadman_sweep(client=account.client, now=at + n * (RETRY_AFTER_S + 5),
                                     rest_for=lambda c: Unreachable(), sleep=lambda s: None)[account.id]
               for n in range(MAX_TRIES + 2)]

    assert [r["acted"] for r in results] == [True] * MAX_TRIES + [False, False]
    assert f"already acted {MAX_TRIES} times" in results[-1]["why"]
    audits = [a.details for a in OperatorAction.objects.filter(action="DEADMAN").order_by("id")]
    assert [a["try"] for a in audits] == list(range(1, MAX_TRIES + 1))
    assert all(a["done"] is False for a in audits)
    assert audits[0]["summary"].endswith(f"try 1 of {MAX_TRIES}, the next in {RETRY_AFTER_S:g} s")
    assert audits[-1]["summary"].endswith("no more tries: act on the account by hand")
    # The alerts said the same; tries this close together are deduplicated (90 s apart in life, they are not).
    assert "NOT complete; try 1 of" in Alert.objects.get(type="DEADMAN_TRIGGERED").message


def test_garbage_in_the_claim_is_acted_on_rather_than_trusted(account: Account):
    account.configure("cancel_entries")
    _resting_entry_and_a_reduce_only_order(account.rest)
    ended = account.lease_held_then_lost()
    token = lease.last_lease(account.client, account.id).token
    account.client.set(deadman.episode_key(account.id, str(token)), b"\xff" * 10_000)

    acted = _sweep(account, ended + AFTER_S + 1)

    assert acted["acted"] is True and acted["cancel"]["cancelled"] == ["entry"]


def test_an_account_redis_forgot_is_guarded_from_when_the_guardian_first_saw_it(account: Account):
    account.configure("cancel_entries")
    _resting_entry_and_a_reduce_only_order(account.rest)
    ended = account.lease_held_then_lost()
    for key in account.client.keys(f"scalper:lease:{account.id}*"):
        account.client.delete(key)  # Redis came back empty: no lease, no last lease, no token counter
    first_seen = ended + 100.0

    seen = _sweep(account, first_seen)
    assert seen["acted"] is False and "holds no record" in seen["why"]
    assert _sweep(account, first_seen + AFTER_S - 0.5)["acted"] is False  # counted from when it was seen

    acted = _sweep(account, first_seen + AFTER_S + 0.5)
    assert acted["acted"] is True and acted["cancel"]["cancelled"] == ["entry"]
    assert acted["episode"] == f"forgotten-{int(first_seen)}"
    assert _sweep(account, first_seen + 10 * AFTER_S)["acted"] is False  # once for that episode


def test_a_lease_taken_again_after_redis_forgot_ends_the_count(account: Account):
    account.configure("cancel_entries")
    _resting_entry_and_a_reduce_only_order(account.rest)
    account.lease_held_then_lost()
    for key in account.client.keys(f"scalper:lease:{account.id}*"):
        account.client.delete(key)
    now = time.time()
    assert _sweep(account, now)["acted"] is False  # the count starts
    held = lease.AccountLease(account.client, account.id, ttl_s=30.0, run_id=account.env.run_id)
    assert held.try_acquire().held  # a trader is back
    assert _sweep(account, now + 5)["why"].startswith("held by")
    assert account.client.get(deadman.forgotten_key(account.id)) is None
    assert _open_links(account.rest) == {"entry", "take-profit"}
