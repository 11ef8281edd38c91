"""The dead-man guardian: protect an account that no trader has held the lease of for ``deadman.after_s``.

``deadman_sweep`` runs on the Celery side (``failover.deadman_guard``, every
``SCALPER_DEADMAN_EVERY_S`` through the one-beat lock of ``failover/beat.py``),
independent of any trader. For each account an environment registered
(``leaseAccount`` in its context; SIM and LIVE only, the modes that send
orders) it reads the lease and the last lease written
(``trading.exchange.lease``) and applies the pure rule
``failover.domain.deadman.deadman_verdict`` with the environment's config,
read at every sweep (hot-reloaded). When due, it claims the episode in Redis
(``scalper:deadman:<account>:<last token>``, taken with ``SET NX``, changed
only by compare-and-swap: one actor at a time, whichever guardian runs), puts
safe mode on (reason ``DEADMAN``) in every environment on the account, carries
out ``deadman.action`` through the exchange port the recovery steps use, then
raises a CRIT ``DEADMAN_TRIGGERED`` alert, audits it all (user ``guardian``)
and marks the claim done, or incomplete when the exchange kept failing. Safe
mode stays on until a trader takes the lease again and its startup recovery
completes.

Once per lost leader, unless that once did not finish: a claim still "acting"
``ACTION_CLAIM_S`` after it was taken belongs to a worker that was lost
mid-action, and an incomplete action is tried again after ``RETRY_AFTER_S``, up
to ``MAX_TRIES`` (``failover.domain.deadman.claim_verdict``). Acting twice is
safe: cancels re-read the open orders, closes are reduce-only with one
``orderLinkId`` per episode, pass and symbol.

The guardian holds no lease: its writes only cancel entries and reduce
positions, which a trader starting meanwhile would do or undo safely in its own
startup recovery.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from failover.domain.deadman import (
    ACTING,
    ACTION_CLAIM_S,
    DONE,
    INCOMPLETE,
    MAX_TRIES,
    RETRY_AFTER_S,
    LastLease,
    Verdict,
    claim_verdict,
    deadman_verdict,
)
from failover.models import FailoverStateRecord
from failover.recovery import records
from failover.recovery.alerts import alert_on_commit
from failover.recovery.audit import operator_action_record
from failover.recovery.kit import shared_rest
from trading.alerts import CRIT
from trading.domain.alert_types import DEADMAN_TRIGGERED
from trading.exchange import lease
from trading.exchange.port import BUY, SELL, DuplicateOrderLinkId, ExchangeError, ExchangePort, PlaceOrder

logger = logging.getLogger(__name__)

DEADMAN = "DEADMAN"  # the safe-mode reason and the audit action
GUARDIAN = "guardian"  # the audit trail's user
ACTING_MODES = frozenset({"SIM", "LIVE"})  # REPLAY and DRY_RUN send nothing to an account
EPISODE_TTL_S = 30 * 86_400
CLAIM_LIMIT = 4096  # bytes: a claim record is ~200; anything larger is not ours
# Replace the claim only if it is still the value read: one actor wins a retake, a late finisher changes nothing.
_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
ATTEMPTS = 4  # passes of cancel and of close, each re-reading the exchange
BACKOFF_S = (0.25, 0.5, 1.0, 2.0)

RestFor = Callable[[dict[str, Any]], ExchangePort]
Sleep = Callable[[float], None]


def episode_key(account: str, episode: str) -> str:
    return f"scalper:deadman:{account}:{episode}"


def deadman_sweep(*, client: redis.Redis | None = None, now: float | None = None, rest_for: RestFor | None = None,
                  sleep: Sleep = time.sleep) -> dict[str, Any]:
    """Check every registered account once; act for each one unattended past its limit. Returns what each did."""
    client = client or lease.redis_client(settings.REDIS_URL)
    at = time.time() if now is None else now
    done: dict[str, Any] = {}
    for account, rows in environments_by_account().items():
        try:
            done[account] = _guard(account, rows, client=client, now=at, rest_for=rest_for or _rest, sleep=sleep)
        except Exception as exc:  # one account's trouble (Redis, database) never leaves the others unguarded
            logger.exception("dead-man guard of account %s failed", account)
            done[account] = {"acted": False, "error": f"{type(exc).__name__}: {exc}"}
    return done


def environments_by_account() -> dict[str, list[FailoverStateRecord]]:
    """The environments that trade under a lease, by account (the product first), in modes that send orders."""
    grouped: dict[str, list[FailoverStateRecord]] = {}
    for row in FailoverStateRecord.objects.filter(context__has_key="leaseAccount").order_by("run_id"):
        context = row.context or {}
        account = context.get("leaseAccount")
        if context.get("mode") in ACTING_MODES and isinstance(account, str) and account:
            grouped.setdefault(account, []).append(row)
    return grouped


def _rest(context: dict[str, Any]) -> ExchangePort:
    exchange = context.get("exchange")
    if not isinstance(exchange, dict) or not exchange:
        raise ExchangeError("the environment registered no exchange")
    return shared_rest(exchange)


def _read(client: redis.Redis, account: str) -> tuple[str | None, LastLease | None, bool]:
    """Who holds the lease (None: nobody validly), the last lease written, whether that one was garbage."""
    try:
        current = lease.read_lease(client, account)
    except lease.LeaseCorrupt:  # garbage in the key: no trader can hold or take it, the account is unattended
        current = None
    try:
        last, unreadable = lease.last_lease(client, account), False
    except lease.LeaseCorrupt:
        last, unreadable = None, True
    held_by = None if current is None else f"{current.holder} (token {current.token})"
    if last is None:
        return held_by, None, unreadable
    return held_by, LastLease(last.token, last.holder, last.expires_at, last.run_id), unreadable


def forgotten_key(account: str) -> str:
    return episode_key(account, "forgotten-since")


def _forgotten_since(client: redis.Redis, account: str, held_by: str | None, last: LastLease | None,
                     unreadable: bool, now: float) -> float | None:
    """Since when Redis has held no record of this registered account's lease (None: it holds one).

    An environment registers its account only once its trader holds the lease, so a registered account
    with no lease and no last lease is one Redis forgot (it keeps nothing on disk). The first sweep to see
    that writes the time; a lease seen again removes it.
    """
    key = forgotten_key(account)
    if held_by is not None or last is not None or unreadable:
        if held_by is not None:
            client.delete(key)
        return None
    client.set(key, repr(now), nx=True, ex=EPISODE_TTL_S)
    raw = client.get(key)
    try:
        since = float(raw) if raw is not None and len(raw) < 40 else None
    except ValueError:
        since = None
    if since is None or not math.isfinite(since) or since > now:  # garbage, inf, NaN or the future: from now
        client.set(key, repr(now), ex=EPISODE_TTL_S)
        since = now
    return since


def _owner(rows: list[FailoverStateRecord], last: LastLease | None) -> FailoverStateRecord:
    """The environment whose trader held the lease last (its config rules), else the first one."""
    return next((row for row in rows if last is not None and row.run_id == last.run_id), rows[0])


def _guard(account: str, rows: list[FailoverStateRecord], *, client: redis.Redis, now: float, rest_for: RestFor,
           sleep: Sleep) -> dict[str, Any]:
    held_by, last, unreadable = _read(client, account)
    owner = _owner(rows, last)
    config = records.environment_config(records.data_dir(owner)).deadman
    verdict = deadman_verdict(held_by=held_by, last=last, last_unreadable=unreadable, now=now,
                              after_s=config.after_s, forgotten_since=_forgotten_since(client, account, held_by,
                                                                                     last, unreadable, now))
    if not verdict.due or verdict.episode is None:
        return {"acted": False, "why": verdict.why}
    key = episode_key(account, verdict.episode)
    claim, tries, why_not = _claim(client, key, now=now, action=config.action, why=verdict.why)
    if claim is None:
        return {"acted": False, "why": f"episode {verdict.episode}: {why_not}"}
    started = time.monotonic()
    result = _act(account, rows, owner, verdict, action=config.action, rest_for=rest_for, sleep=sleep, tries=tries)
    _finish(client, key, claim, done=bool(result.get("done", True)), now=now + time.monotonic() - started)
    return result


def _claim(client: redis.Redis, key: str, *, now: float, action: str, why: str) -> tuple[str | None, int, str]:
    """Take the episode's claim when ``claim_verdict`` says so; return (the value written, try number, why not)."""
    raw = client.get(key)
    decision = claim_verdict(None if raw is None else _record(raw), now=now)
    if not decision.act:
        return None, decision.tries, decision.why
    tries = decision.tries + 1
    value = json.dumps({"at": now, "action": action, "why": why, "state": ACTING, "until": now + ACTION_CLAIM_S,
                        "tries": tries})
    if raw is None:
        taken = client.set(key, value, nx=True, ex=EPISODE_TTL_S)
    else:
        taken = client.register_script(_SWAP)(keys=[key], args=[raw, value, EPISODE_TTL_S])
    if not taken:
        return None, decision.tries, "another guardian claimed it first"
    if raw is not None:
        logger.warning("dead-man guardian acting again: %s", decision.why)
    return value, tries, ""


def _record(raw: bytes | str) -> object:
    """The claim's record, or the raw bytes when they are not one (``claim_verdict`` reads that as unreadable)."""
    if len(raw) > CLAIM_LIMIT:
        return raw
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return raw


def _finish(client: redis.Redis, key: str, claim: str, *, done: bool, now: float) -> None:
    """Mark the claim done, or incomplete (tried again ``RETRY_AFTER_S`` after ``now``, the action's end).

    A failure to write leaves it "acting": after ``ACTION_CLAIM_S`` it looks lost and is acted on again (safely).
    """
    record = {**json.loads(claim), "state": DONE if done else INCOMPLETE, "until": now + RETRY_AFTER_S}
    try:
        client.register_script(_SWAP)(keys=[key], args=[claim, json.dumps(record), EPISODE_TTL_S])
    except redis.RedisError:
        logger.exception("dead-man guardian could not mark its claim %s", record["state"])


def _act(account: str, rows: list[FailoverStateRecord], owner: FailoverStateRecord, verdict: Verdict, *,
         action: str, rest_for: RestFor, sleep: Sleep, tries: int) -> dict[str, Any]:
    for row in rows:
        _safe_mode_on(row.run_id)
    try:
        outcome = protect(rest_for(owner.context or {}), action=action, episode=str(verdict.episode), sleep=sleep)
    except Exception as exc:  # whatever failed, the alert and the audit still go out, saying so
        logger.exception("dead-man action %s on account %s failed", action, account)
        outcome = {"action": action, "done": False, "error": f"{type(exc).__name__}: {exc}"}
    details = {"account": account, "episode": verdict.episode, "why": verdict.why, "idleS": verdict.idle_s,
               "environments": [row.run_id for row in rows], "try": tries, **outcome,
               "summary": _summary(outcome, tries)}
    operator_action_record(run_id=owner.run_id, user=GUARDIAN, action=DEADMAN, details=details)
    alert_on_commit(level=CRIT, type=DEADMAN_TRIGGERED, run_id=owner.run_id, details=details,
                    message=f"No trader holds the account's lease: {verdict.why}. Safe mode ON; action {action}: "
                            f"{details['summary']}.")
    return {"acted": True, **details}


def _summary(outcome: dict[str, Any], tries: int) -> str:
    if outcome.get("error"):
        said = f"failed ({outcome['error']})"
    else:
        cancel, flatten = outcome.get("cancel") or {}, outcome.get("flatten") or {}
        parts = [f"{len(cancel.get('cancelled', []))} entry orders cancelled"] if cancel else ["nothing sent"]
        if flatten:
            parts.append(f"{len(flatten.get('closed', []))} closing orders sent")
        said = ", ".join(parts)
        if outcome.get("done", True):
            return said
        said += ", NOT complete"
    if tries < MAX_TRIES:
        return f"{said}; try {tries} of {MAX_TRIES}, the next in {RETRY_AFTER_S:g} s"
    return f"{said}; try {tries} of {MAX_TRIES}, no more tries: act on the account by hand"


def _safe_mode_on(run_id: str) -> None:
    """Safe mode ON with reason DEADMAN; the next trader's startup recovery turns it off (no operator hold)."""
    with transaction.atomic():
        row = records.state_lock(run_id)
        if not row.safe_mode:
            row.safe_mode, row.since = True, records.now()
        row.reason, row.planned = DEADMAN, False
        records.state_commit(row)


# -- the action on the exchange ---------------------------------------------------------------


def protect(rest: ExchangePort, *, action: str, episode: str, sleep: Sleep = time.sleep) -> dict[str, Any]:
    """Carry out ``deadman.action``: none, cancel_entries, or flatten (cancel_entries, then reduce-only closes)."""
    if action == "none":
        return {"action": action, "done": True}
    outcome: dict[str, Any] = {"action": action, "cancel": cancel_entries(rest, sleep=sleep)}
    if action == "flatten":
        outcome["flatten"] = flatten(rest, episode=episode, sleep=sleep)
    outcome["done"] = all(part["done"] for part in (outcome["cancel"], outcome.get("flatten") or {"done": True}))
    return outcome


def _pause(sleep: Sleep, attempt: int) -> None:
    sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])


def cancel_entries(rest: ExchangePort, *, sleep: Sleep = time.sleep) -> dict[str, Any]:
    """Cancel every resting order that is not reduce-only (protective and closing orders stay); bounded retries."""
    cancelled: list[str] = []
    kept: list[str] = []
    errors: list[str] = []
    for attempt in range(ATTEMPTS + 1):
        try:
            orders = rest.open_orders()
        except ExchangeError as exc:
            errors.append(f"open orders: {exc}")
            _pause(sleep, attempt)
            continue
        kept = sorted(o.order_link_id or o.order_id for o in orders if o.reduce_only)
        entries = [o for o in orders if not o.reduce_only]
        if not entries:
            return {"cancelled": cancelled, "keptReduceOnly": kept, "errors": errors, "done": True}
        if attempt == ATTEMPTS:
            break
        failed_before = len(errors)
        for order in entries:
            name = order.order_link_id or order.order_id
            try:
                rest.cancel_order(order.symbol, order_id=order.order_id, order_link_id=order.order_link_id)
                cancelled.append(name)
            except ExchangeError as exc:
                errors.append(f"cancel {name}: {exc}")
        if len(errors) > failed_before:
            _pause(sleep, attempt)
    return {"cancelled": cancelled, "keptReduceOnly": kept, "errors": errors, "done": False}


def flatten(rest: ExchangePort, *, episode: str, sleep: Sleep = time.sleep) -> dict[str, Any]:
    """Close every position with reduce-only market orders, re-reading positions between passes (bounded)."""
    closed: list[str] = []
    errors: list[str] = []
    for attempt in range(ATTEMPTS + 1):
        try:
            positions = rest.positions()
        except ExchangeError as exc:
            errors.append(f"positions: {exc}")
            _pause(sleep, attempt)
            continue
        if not positions:
            return {"closed": closed, "errors": errors, "done": True}
        if attempt == ATTEMPTS:
            break
        for position in positions:
            # One id per episode, pass and symbol: a pass never sends two closes for a symbol, a retry is new.
            link_id = f"DMN-{episode}-{attempt}-{position.symbol}"[:36]
            order = PlaceOrder(symbol=position.symbol, side=SELL if position.side == BUY else BUY,
                               qty=position.size, order_link_id=link_id, reduce_only=True)
            try:
                rest.place_order(order)
                closed.append(link_id)
            except DuplicateOrderLinkId:
                closed.append(link_id)  # sent before (a redelivered pass): the exchange has it
            except ExchangeError as exc:
                errors.append(f"close {position.symbol}: {exc}")
        _pause(sleep, attempt)  # let the closes fill before reading positions again
    return {"closed": closed, "errors": errors, "done": False}
