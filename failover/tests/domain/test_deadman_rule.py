"""The dead-man rule, pure: held, never held, not yet, due, an unreadable last lease; and the episode's claim."""

from __future__ import annotations

import pytest

from failover.domain.deadman import (
    ACTING,
    DONE,
    INCOMPLETE,
    MAX_TRIES,
    UNKNOWN_EPISODE,
    ClaimVerdict,
    LastLease,
    claim_verdict,
    deadman_verdict,
)

LAST = LastLease(token=7, holder="host-a:123:ab", expires_at=1_000.0, run_id="")


def test_a_held_lease_is_never_due_however_old_the_last_one():
    verdict = deadman_verdict(held_by="host-b (token 8)", last=LAST, last_unreadable=False, now=9_999.0, after_s=60)
    assert not verdict.due and verdict.why == "held by host-b (token 8)"


def test_an_account_never_held_is_not_guarded():
    verdict = deadman_verdict(held_by=None, last=None, last_unreadable=False, now=9_999.0, after_s=60)
    assert not verdict.due and verdict.why.startswith("never held")


def test_due_only_once_after_s_has_passed_since_the_last_lease_ran_out():
    early = deadman_verdict(held_by=None, last=LAST, last_unreadable=False, now=1_059.9, after_s=60)
    assert not early.due and early.idle_s is not None and round(early.idle_s, 1) == 59.9
    due = deadman_verdict(held_by=None, last=LAST, last_unreadable=False, now=1_060.0, after_s=60)
    assert due.due and due.episode == "7" and due.idle_s == 60.0 and "host-a:123:ab" in due.why


def test_a_last_lease_from_the_future_counts_as_just_ended():
    verdict = deadman_verdict(held_by=None, last=LAST, last_unreadable=False, now=900.0, after_s=60)
    assert not verdict.due and verdict.idle_s == 0.0


def test_an_unreadable_last_lease_is_due_as_one_unknown_episode():
    verdict = deadman_verdict(held_by=None, last=None, last_unreadable=True, now=0.0, after_s=60)
    assert verdict.due and verdict.episode == UNKNOWN_EPISODE


# -- the episode's claim ------------------------------------------------------------------------------------


def _claim(state: str, until: float = 1_000.0, tries: int = 1) -> dict:
    return {"state": state, "until": until, "tries": tries, "at": 0.0, "action": "cancel_entries", "why": "w"}


def test_the_first_guardian_acts_and_a_done_episode_is_never_acted_for_again():
    assert claim_verdict(None, now=0.0) == ClaimVerdict(True, "first action for this episode")
    done = claim_verdict(_claim(DONE), now=1e12)
    assert not done.act and "already acted" in done.why


def test_a_claim_still_acting_waits_for_its_worker_then_counts_it_lost():
    assert not claim_verdict(_claim(ACTING, until=1_000.0), now=999.0).act
    lost = claim_verdict(_claim(ACTING, until=1_000.0, tries=2), now=1_000.0)
    assert lost.act and lost.tries == 2 and "was lost" in lost.why


def test_an_incomplete_action_is_tried_again_after_the_pause_up_to_the_limit():
    assert not claim_verdict(_claim(INCOMPLETE, until=500.0), now=499.0).act
    again = claim_verdict(_claim(INCOMPLETE, until=500.0, tries=1), now=500.0)
    assert again.act and f"try 2 of {MAX_TRIES}" in again.why
    spent = claim_verdict(_claim(INCOMPLETE, until=500.0, tries=MAX_TRIES), now=1e12)
    assert not spent.act and f"already acted {MAX_TRIES} times" in spent.why


@pytest.mark.parametrize("record", [b"\xff garbage", "a string", [1, 2], {}, {"state": "acting"},
                                    {"state": "acting", "until": "soon"}, {"state": "acting", "until": float("nan")},
                                    {"state": "acting", "until": True}, {"state": "weird", "until": 1.0}])
def test_a_claim_that_cannot_be_read_never_keeps_the_account_unguarded(record):
    verdict = claim_verdict(record, now=0.0)
    assert verdict.act and "unreadable" in verdict.why


def test_an_unreadable_try_count_allows_no_more_retries_of_a_short_action():
    record = {"state": INCOMPLETE, "until": 0.0, "tries": "many"}
    assert not claim_verdict(record, now=1.0).act
    assert claim_verdict({**record, "state": ACTING}, now=1.0).act  # a lost worker is still replaced


def test_an_account_redis_forgot_is_due_once_it_has_been_forgotten_for_after_s():
    early = deadman_verdict(held_by=None, last=None, last_unreadable=False, now=1_030.0, after_s=60,
                            forgotten_since=1_000.0)
    assert not early.due and "no record" in early.why and early.idle_s == 30.0
    due = deadman_verdict(held_by=None, last=None, last_unreadable=False, now=1_060.0, after_s=60,
                          forgotten_since=1_000.0)
    assert due.due and due.episode == "forgotten-1000" and "came back empty" in due.why
    held = deadman_verdict(held_by="host-b (token 1)", last=None, last_unreadable=False, now=9e9, after_s=60,
                           forgotten_since=1_000.0)
    assert not held.due
