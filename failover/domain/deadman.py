"""The dead-man rule: when the guardian acts for an account no trader holds the lease of.

Pure: it takes what Redis said about the lease (as plain values) and the time,
and says whether the guardian is due, why (or why not), and which episode it
would act for. An episode is the last lease's fencing token: a trader that
takes the lease again starts a new one, so the guardian acts at most once per
lost leader.
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN_EPISODE = "unknown"  # the last lease value could not be read: one episode until it is rewritten


@dataclass(frozen=True, slots=True)
class LastLease:
    """The last lease written for the account: its token, holder and when it ran out (epoch s)."""

    token: int
    holder: str
    expires_at: float
    run_id: str = ""  # the environment whose trader held it


@dataclass(frozen=True, slots=True)
class Verdict:
    due: bool
    why: str
    episode: str | None = None  # the episode the guardian acts for, when due
    idle_s: float | None = None  # how long no trader has held the lease


def deadman_verdict(*, held_by: str | None, last: LastLease | None, last_unreadable: bool, now: float,
                    after_s: float) -> Verdict:
    """Decide whether the account has gone unattended for longer than ``after_s``.

    ``held_by`` names the lease's holder (None: nobody holds a valid lease, a garbage value included);
    ``last`` is the last lease written, ``last_unreadable`` says it was there but garbage.
    """
    if held_by is not None:
        return Verdict(False, f"held by {held_by}")
    if last is None:
        if last_unreadable:  # held once, but when it ended is unknown: the safe reading is "long ago"
            return Verdict(True, "no lease held; the last lease value is unreadable", UNKNOWN_EPISODE)
        return Verdict(False, "never held: no trader has traded this account under a lease")
    idle_s = max(0.0, now - last.expires_at)
    if idle_s < after_s:
        return Verdict(False, f"no lease for {idle_s:.1f} s (the guardian acts after {after_s:g} s)", idle_s=idle_s)
    why = f"no lease for {idle_s:.1f} s since {last.holder} (token {last.token}); the limit is {after_s:g} s"
    return Verdict(True, why, str(last.token), idle_s)
