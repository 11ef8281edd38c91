"""The dead-man rule, pure: held, never held, not yet, due, and an unreadable last lease."""

from __future__ import annotations

from failover.domain.deadman import UNKNOWN_EPISODE, LastLease, deadman_verdict

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
