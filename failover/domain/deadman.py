"""The dead-man rule: when the guardian acts for an account no trader holds the lease of.

Pure: it takes what Redis said about the lease (as plain values) and the time,
and says whether the guardian is due, why (or why not), and which episode it
would act for. An episode is the last lease's fencing token: a trader that
takes the lease again starts a new one, so the guardian acts once per lost
leader; ``claim_verdict`` says when it acts again for the same one (its worker
was lost mid-action, or the action fell short).
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN_EPISODE = "unknown"  # the last lease value could not be read: one episode until it is rewritten
FORGOTTEN_EPISODE = "forgotten"  # Redis came back with no record of a lease: one episode per time it was seen so


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
                    after_s: float, forgotten_since: float | None = None) -> Verdict:
    """Decide whether the account has gone unattended for longer than ``after_s``.

    ``held_by`` names the lease's holder (None: nobody holds a valid lease, a garbage value included);
    ``last`` is the last lease written, ``last_unreadable`` says it was there but garbage.
    ``forgotten_since``: the account is known to have been traded under a lease (an environment registered
    it), yet Redis holds no record of one (it came back empty): unattended since the guardian first saw that.
    """
    if held_by is not None:
        return Verdict(False, f"held by {held_by}")
    if last is None:
        if last_unreadable:  # held once, but when it ended is unknown: the safe reading is "long ago"
            return Verdict(True, "no lease held; the last lease value is unreadable", UNKNOWN_EPISODE)
        if forgotten_since is None:
            return Verdict(False, "never held: no trader has traded this account under a lease")
        since, episode = forgotten_since, f"{FORGOTTEN_EPISODE}-{int(forgotten_since)}"
        lapse, holder = "no lease, and Redis holds no record of one (it came back empty),", ""
    else:
        since, episode = last.expires_at, str(last.token)
        lapse, holder = "no lease", f" since {last.holder} (token {last.token})"
    idle_s = max(0.0, now - since)
    if idle_s < after_s:
        return Verdict(False, f"{lapse} for {idle_s:.1f} s (the guardian acts after {after_s:g} s)", idle_s=idle_s)
    return Verdict(True, f"{lapse} for {idle_s:.1f} s{holder}; the limit is {after_s:g} s", episode, idle_s)


# -- the episode's claim: acted once, unless the acting worker was lost or the action fell short -------------

ACTING, DONE, INCOMPLETE = "acting", "done", "incomplete"  # a claim's states
ACTION_CLAIM_S = 120.0  # an action still "acting" this long after its claim: its worker is taken for lost
# An action that fell short (the exchange kept failing) is tried again after this: longer than the alerts'
# default dedupe window (60 s), so each try's CRIT alert goes out.
RETRY_AFTER_S = 90.0
MAX_TRIES = 5  # actions per episode, the first included; the last one's alert says the guardian gave up
_UNREADABLE = "the episode's claim is unreadable: acting again (safe to repeat)"


@dataclass(frozen=True, slots=True)
class ClaimVerdict:
    act: bool
    why: str
    tries: int = 0  # actions already started for the episode


def claim_verdict(record: object, *, now: float) -> ClaimVerdict:
    """Decide whether a guardian acts for an episode whose claim record is ``record`` (None: no claim yet).

    Acting again is safe: cancelling entries re-reads the open orders, and closes are
    reduce-only with one ``orderLinkId`` per episode, pass and symbol, so a second
    actor can neither cancel a protective order nor turn a position over. So a
    claim never keeps the account unguarded: a worker lost mid-action (the claim
    still "acting" past ``ACTION_CLAIM_S``), an action that fell short (after
    ``RETRY_AFTER_S``, up to ``MAX_TRIES``) and a claim that cannot be read are
    all acted on again.
    """
    if record is None:
        return ClaimVerdict(True, "first action for this episode")
    if not isinstance(record, dict):
        return ClaimVerdict(True, _UNREADABLE)
    state, until, tries = record.get("state"), record.get("until"), record.get("tries")
    tries = tries if type(tries) is int and tries > 0 else MAX_TRIES  # unreadable: as if every try was made
    if state == DONE:
        return ClaimVerdict(False, "already acted for this episode", tries)
    if not isinstance(until, int | float) or isinstance(until, bool) or until != until:
        return ClaimVerdict(True, _UNREADABLE, tries)
    if state == ACTING:
        if now < until:
            return ClaimVerdict(False, f"another guardian is acting for this episode (until {until:.0f})", tries)
        return ClaimVerdict(True, f"the guardian acting since {until - ACTION_CLAIM_S:.0f} was lost: acting again",
                            tries)
    if state == INCOMPLETE:
        if tries >= MAX_TRIES:
            return ClaimVerdict(False, f"already acted {tries} times for this episode, short each time", tries)
        if now < until:
            return ClaimVerdict(False, f"the last action fell short; trying again after {until:.0f}", tries)
        return ClaimVerdict(True, f"the last action fell short: try {tries + 1} of {MAX_TRIES}", tries)
    return ClaimVerdict(True, _UNREADABLE, tries)
