"""RESYNC_POSITIONS and RESYNC_ORDERS: make the local database agree with the exchange, the truth.

Both diff with ``failover.domain.reconcile`` and apply the diff in one
transaction with conditional updates (a row the trader changed meanwhile is
left to it); each difference also goes to ``data/events/<symbol>.jsonl``. An
order intent that was never confirmed is looked up by its orderLinkId and never
sent again: found, it takes the exchange's status; not found, it never reached
the exchange and is CANCELED. A confirmed order the exchange no longer lists
takes its final state (filled, cancelled) from the exchange's order history,
never a guess. Whatever is too young to judge is asked about again; a step that
skipped anything has not converged.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction

from failover.domain import enums
from failover.domain.reconcile import diff_orders, diff_positions, exchange_link_id, external_link_id
from failover.domain.types import OrderSnapshot, PositionSnapshot
from failover.recovery import records
from failover.recovery.kit import StepContext, StepFailed, trader_command, write_event
from trading.exchange.port import ExchangeError, ExchangeOrder, ExchangePosition
from trading.models import Order, OrderStatus, Origin, Position, PositionStatus

NEVER_REACHED = "never reached the exchange"
_BYBIT_STATUS = {
    "New": OrderStatus.NEW, "Untriggered": OrderStatus.NEW, "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Filled": OrderStatus.FILLED, "Rejected": OrderStatus.REJECTED,
}  # anything else (Cancelled, Deactivated, PartiallyFilledCanceled, ...) is CANCELED
_SNAPSHOT_STATUS = {
    OrderStatus.NEW: enums.OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED: enums.OrderStatus.PARTIALLY_FILLED,
    OrderStatus.FILLED: enums.OrderStatus.FILLED,
}  # anything else is CANCELED
INTENT_STATUSES = (OrderStatus.INTENT, OrderStatus.SUBMITTED)
SKIPPED = "SKIPPED_TOO_YOUNG"
LEFT_IN_FLIGHT = "LEFT_IN_FLIGHT"
CONVERGE_WAIT_S = 45.0  # within the step task's soft time limit; a longer window fails the step and retries
OPEN_CONFIRMED = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _long(side: str) -> bool:
    return side.lower() in ("buy", "long")


def _local_position(p: Position) -> PositionSnapshot:
    return PositionSnapshot(symbol=p.symbol, side=enums.PositionSide(p.side), entry_price=float(p.entry_price),
                            qty=float(p.qty), leverage=float(p.leverage) or 1.0, pnl_unrealized=float(p.pnl_unrealized),
                            exchange_position_id=p.exchange_position_id or None)


def _exchange_position(x: ExchangePosition) -> PositionSnapshot:
    side = enums.PositionSide.LONG if _long(x.side) else enums.PositionSide.SHORT
    return PositionSnapshot(symbol=x.symbol, side=side,
                            entry_price=float(x.avg_price), qty=float(x.size), leverage=float(x.leverage) or 1.0,
                            pnl_unrealized=float(x.unrealised_pnl))


def _origin_of(ctx: StepContext, symbol: str) -> str:
    """LOCAL when one of the run's own entries since the symbol's last position explains it (a fill the
    trader died before storing), else EXTERNAL_POSITION_RECOVERED: someone else opened it."""
    last = (Position.objects.filter(run_id=ctx.run_id, symbol=symbol).order_by("-opened_at")
            .values_list("closed_at", "opened_at").first())
    entries = Order.objects.filter(run_id=ctx.run_id, symbol=symbol, purpose="ENTRY").exclude(
        status__in=(OrderStatus.CANCELED, OrderStatus.REJECTED))
    if last is not None:
        entries = entries.filter(created_at__gt=last[0] or last[1])
    return Origin.LOCAL if entries.exists() else Origin.EXTERNAL_POSITION_RECOVERED


def resync_positions(ctx: StepContext) -> dict[str, Any]:
    """Adopt exchange-only positions, close local-only ones, correct the ones that differ."""
    try:
        theirs = {x.symbol: x for x in ctx.rest().positions()}
    except ExchangeError as exc:
        raise StepFailed(f"positions request failed: {exc}") from exc
    ctx.beat()
    rows = {p.symbol: p for p in Position.objects.filter(run_id=ctx.run_id, status=PositionStatus.OPEN)}
    local = [_local_position(p) for p in rows.values()]
    # A position the previous process believed in but never stored still deserves its evidence.
    from_snapshot = [p for p in (ctx.previous_state.open_positions_snapshot if ctx.previous_state else ())
                     if p.symbol not in rows]
    diff = diff_positions([*local, *from_snapshot], [_exchange_position(x) for x in theirs.values()])
    at = records.now()
    done: list[dict[str, Any]] = []
    with transaction.atomic():
        for snap in diff.adopt:
            x = theirs[snap.symbol]
            try:
                with transaction.atomic():
                    origin = _origin_of(ctx, x.symbol)
                    Position.objects.create(
                        run_id=ctx.run_id, symbol=x.symbol, side=snap.side.value, qty=x.size, entry_price=x.avg_price,
                        leverage=x.leverage or 1, pnl_unrealized=x.unrealised_pnl, status=PositionStatus.OPEN,
                        origin=origin, opened_at=at)
                done.append({"symbol": x.symbol, "action": "ADOPTED", "origin": origin})
            except IntegrityError:  # the trader recorded it meanwhile: one open position per symbol
                done.append({"symbol": x.symbol, "action": "ALREADY_OPEN_LOCALLY"})
        for snap in diff.close:
            row = rows.get(snap.symbol)
            changed = row is not None and Position.objects.filter(pk=row.pk, status=PositionStatus.OPEN).update(
                status=PositionStatus.CLOSED, close_reason="POSITION_CLOSED_BY_EXCHANGE", closed_at=at)
            done.append({"symbol": snap.symbol, "action": "CLOSED" if changed else "SNAPSHOT_ONLY"})
        for mismatch in diff.correct:
            row = rows.get(mismatch.local.symbol)
            x = theirs[mismatch.exchange.symbol]
            if row is not None:
                Position.objects.filter(pk=row.pk, status=PositionStatus.OPEN).update(
                    side=mismatch.exchange.side.value, qty=x.size, entry_price=x.avg_price)
                done.append({"symbol": row.symbol, "action": "CORRECTED"})
            else:
                try:
                    with transaction.atomic():
                        origin = _origin_of(ctx, x.symbol)
                        Position.objects.create(
                            run_id=ctx.run_id, symbol=x.symbol, side=mismatch.exchange.side.value, qty=x.size,
                            entry_price=x.avg_price, leverage=x.leverage or 1, status=PositionStatus.OPEN,
                            origin=origin, opened_at=at)
                    done.append({"symbol": x.symbol, "action": "ADOPTED", "origin": origin})
                except IntegrityError:
                    done.append({"symbol": x.symbol, "action": "ALREADY_OPEN_LOCALLY"})
    evidence = diff.to_details()
    _position_events(ctx, evidence, diff)
    evidence.update(localCount=len(local), snapshotOnly=[p.symbol for p in from_snapshot],
                    exchangeCount=len(theirs), applied=done, trader=trader_command(ctx.run_id, "reload_state"))
    return evidence


def _position_events(ctx: StepContext, evidence: dict[str, Any], diff: Any) -> None:
    log = ctx.events()
    try:
        seen = set()
        for entry in evidence["differences"]:
            seen.add(entry["symbol"])
            write_event(log, entry["symbol"], "POSITION_RESYNC", kind=entry["kind"], action=entry["action"],
                        local=entry["local"], exchange=entry["exchange"], difference=entry["difference"])
            if entry["kind"] in ("POSITION_CLOSED_BY_EXCHANGE", "EXTERNAL_POSITION_RECOVERED"):
                write_event(log, entry["symbol"], entry["kind"], local=entry["local"], exchange=entry["exchange"])
        for symbol in [*evidence["matched"], *ctx.details.get("symbols", [])]:
            if symbol not in seen:
                seen.add(symbol)
                write_event(log, symbol, "POSITION_RESYNC", kind="IN_SYNC", action="NONE")
    finally:
        log.close()


def _local_order(o: Order) -> OrderSnapshot:
    return OrderSnapshot(symbol=o.symbol, side=enums.OrderSide(o.side), client_order_id=o.order_link_id,
                         exchange_order_id=o.exchange_order_id or None, price=float(o.price or 0),
                         qty=float(o.qty), status=_SNAPSHOT_STATUS.get(o.status, enums.OrderStatus.CANCELED))


def _exchange_order(x: ExchangeOrder) -> OrderSnapshot:
    status = _BYBIT_STATUS.get(x.status, OrderStatus.CANCELED)
    return OrderSnapshot(symbol=x.symbol, side=enums.OrderSide.BUY if _long(x.side) else enums.OrderSide.SELL,
                         client_order_id=x.order_link_id or None, exchange_order_id=x.order_id or None,
                         price=float(x.price), qty=float(x.qty),
                         status=_SNAPSHOT_STATUS.get(status, enums.OrderStatus.CANCELED))


def _lookup(ctx: StepContext, order: Order, evidence: dict[str, Any] | None = None) -> ExchangeOrder | None:
    """Ask the exchange for one order in any status: by the orderLinkId it was sent with, or by its exchange id
    when it came without one (an external order); a failed lookup fails the step with ``evidence``."""
    try:
        found = ctx.rest().get_order(order.symbol, exchange_link_id(order.order_link_id),
                                     order_id=order.exchange_order_id or "")
    except ExchangeError as exc:
        raise StepFailed(f"order lookup of {order.order_link_id} failed: {exc}", evidence) from exc
    ctx.beat()
    return found


def _resolve_intents(ctx: StepContext, now_ms: int, window_ms: int) -> list[dict[str, Any]]:
    """Look every unconfirmed intent up by orderLinkId: adopt what the exchange has, cancel what it never saw."""
    resolved = []
    for order in Order.objects.filter(run_id=ctx.run_id, status__in=INTENT_STATUSES).order_by("created_at"):
        age = now_ms - _ms(order.created_at)
        gone = ctx.restart_cutoff is not None and order.created_at <= ctx.restart_cutoff
        if age < window_ms and not gone:  # its sender may still be waiting for the answer
            resolved.append({"orderLinkId": order.order_link_id, "action": LEFT_IN_FLIGHT, "ageMs": age})
            continue
        found = _lookup(ctx, order, {"intents": resolved})
        pending = Order.objects.filter(pk=order.pk, status__in=INTENT_STATUSES)
        at = records.now()
        if found is None:
            changed = pending.update(status=OrderStatus.CANCELED, reject_reason=NEVER_REACHED, updated_at=at)
            entry = {"orderLinkId": order.order_link_id, "symbol": order.symbol, "local": order.status,
                     "exchange": None, "action": "CANCELED_NEVER_SENT" if changed else "CHANGED_MEANWHILE"}
        else:
            status = _BYBIT_STATUS.get(found.status, OrderStatus.CANCELED)
            changed = pending.update(status=status, exchange_order_id=found.order_id, filled_qty=found.cum_exec_qty,
                                     avg_fill_price=found.avg_price or None, updated_at=at)
            entry = {"orderLinkId": order.order_link_id, "symbol": order.symbol, "local": order.status,
                     "exchange": {"orderId": found.order_id, "status": found.status, "qty": str(found.qty),
                                  "cumExecQty": str(found.cum_exec_qty)},
                     "action": f"ADOPTED_{status}" if changed else "CHANGED_MEANWHILE"}
        resolved.append(entry)
    return resolved


def _final_states(ctx: StepContext, missing: list[Any], now_ms: int, window_ms: int) -> list[dict[str, Any]]:
    """Give every local open order the exchange no longer lists its final state from the exchange.

    Filled or cancelled, the exchange's order history says which (a guess would turn a fill into a
    cancel); an order it never saw is CANCELED once older than the window, and a younger one is
    left for the next pass (``SKIPPED``).
    """
    rows = {o.order_link_id: o for o in Order.objects.filter(
        run_id=ctx.run_id, order_link_id__in=[m.client_order_id for m in missing], status__in=OPEN_CONFIRMED)}
    applied = []
    for row in rows.values():
        found = _lookup(ctx, row)
        at = records.now()
        still_open = Order.objects.filter(pk=row.pk, status__in=OPEN_CONFIRMED)
        if found is not None:
            status = _BYBIT_STATUS.get(found.status, OrderStatus.CANCELED)
            changed = still_open.update(status=status, exchange_order_id=found.order_id,
                                        filled_qty=found.cum_exec_qty, avg_fill_price=found.avg_price or None,
                                        updated_at=at)
            action = f"FINAL_STATE_{status}" if changed else "CHANGED_MEANWHILE"
            if found.is_open and changed:
                action = "STILL_OPEN_ON_EXCHANGE"  # listed again: the open list was read a moment earlier
        elif now_ms - _ms(row.created_at) < window_ms:
            action = SKIPPED
        else:
            changed = still_open.update(status=OrderStatus.CANCELED, reject_reason="ORDER_MISSING_ON_EXCHANGE",
                                        updated_at=at)
            action = "CANCELED_NEVER_SEEN" if changed else "CHANGED_MEANWHILE"
        applied.append({"orderLinkId": row.order_link_id, "symbol": row.symbol, "action": action,
                        "exchange": None if found is None else {"orderId": found.order_id, "status": found.status,
                                                                "cumExecQty": str(found.cum_exec_qty)}})
    return applied


def _adopt(ctx: StepContext, snap: OrderSnapshot, x: ExchangeOrder) -> dict[str, Any]:
    """Track an order only the exchange lists, dated by the exchange, not by the moment we saw it."""
    link = x.order_link_id or external_link_id(x.order_id)
    at = records.now()
    created = datetime.fromtimestamp(x.created_ms / 1000, UTC) if x.created_ms else at
    _, made = Order.objects.get_or_create(run_id=ctx.run_id, order_link_id=link, defaults=dict(
        exchange_order_id=x.order_id, symbol=x.symbol, side=snap.side.value, order_type=x.order_type or "Limit",
        qty=x.qty, price=x.price or None, reduce_only=x.reduce_only, filled_qty=x.cum_exec_qty,
        status=_BYBIT_STATUS.get(x.status, OrderStatus.NEW), origin=Origin.EXTERNAL_ORDER_RECOVERED,
        purpose="EXTERNAL", created_at=created, updated_at=at))
    return {"orderLinkId": link, "action": "TRACKED" if made else "ALREADY_TRACKED"}


def _resync_orders_once(ctx: StepContext) -> dict[str, Any]:
    at = records.now()
    now_ms, window_ms = _ms(at), ctx.config.failover.recent_order_window_ms
    intents = _resolve_intents(ctx, now_ms, window_ms)
    try:
        theirs = ctx.rest().open_orders()
    except ExchangeError as exc:
        raise StepFailed(f"open orders request failed: {exc}", {"intents": intents}) from exc
    ctx.beat()
    rows = {o.order_link_id: o for o in Order.objects.filter(run_id=ctx.run_id, status__in=OPEN_CONFIRMED)}
    # Closed local rows the exchange still lists take part too, so they are corrected, not adopted twice.
    link_ids = [x.order_link_id for x in theirs if x.order_link_id and x.order_link_id not in rows]
    rows.update({o.order_link_id: o for o in Order.objects.filter(run_id=ctx.run_id, order_link_id__in=link_ids)})
    created = {link: _ms(o.created_at) for link, o in rows.items()}
    diff = diff_orders([_local_order(o) for o in rows.values()], [_exchange_order(x) for x in theirs],
                       now_ms=now_ms, recent_window_ms=window_ms,
                       created_ms_of=lambda snap: created.get(snap.client_order_id or ""))
    by_id: dict[str | None, ExchangeOrder] = {x.order_id or None: x for x in theirs}  # keyed as the snapshots
    applied: list[dict[str, Any]] = []
    with transaction.atomic():
        applied += [_adopt(ctx, snap, by_id[snap.exchange_order_id]) for snap in diff.adopt]
        for mismatch in diff.correct:
            x = by_id[mismatch.exchange.exchange_order_id]
            Order.objects.filter(run_id=ctx.run_id, order_link_id=mismatch.local.client_order_id).update(
                status=_BYBIT_STATUS.get(x.status, OrderStatus.CANCELED), exchange_order_id=x.order_id,
                qty=x.qty, price=x.price or None, filled_qty=x.cum_exec_qty, updated_at=at)
            applied.append({"orderLinkId": mismatch.local.client_order_id, "action": "CORRECTED"})
    # A local open order the exchange no longer lists, young or old, takes its final state from the exchange.
    applied += _final_states(ctx, [*diff.cancel, *(f.order for f in diff.in_flight)], now_ms, window_ms)
    evidence = diff.to_details()
    skipped = [e["orderLinkId"] for e in [*intents, *applied] if e["action"] in (SKIPPED, LEFT_IN_FLIGHT)]
    evidence.update(intents=intents, localCount=len(rows), exchangeCount=len(theirs), applied=applied,
                    skipped=skipped, converged=not skipped)
    return evidence


def resync_orders(ctx: StepContext) -> dict[str, Any]:
    """Resolve unconfirmed intents, track exchange-only orders, settle local-only ones from the exchange.

    The step converges only when nothing was skipped: an order too young to judge (its sender may
    still be waiting for the answer) is asked about again until it is old enough, within
    ``CONVERGE_WAIT_S``; past that the step fails and its plan retries, so a plan never ends DONE
    (nor safe mode OFF) with an order whose state is unknown.
    """
    window_s = ctx.config.failover.recent_order_window_ms / 1000
    deadline = time.monotonic() + min(window_s + 1.0, CONVERGE_WAIT_S)
    passes = 0
    done: dict[str, list[dict[str, Any]]] = {"applied": [], "intents": [], "differences": []}
    while True:
        passes += 1
        evidence = _resync_orders_once(ctx)
        # Each pass reports what it changed; the evidence keeps every change, and what is still skipped.
        for key, entries in done.items():
            waiting = [e for e in evidence[key] if e.get("action") in (SKIPPED, LEFT_IN_FLIGHT)]
            entries += [e for e in evidence[key] if e.get("action") not in (SKIPPED, LEFT_IN_FLIGHT)]
            evidence[key] = entries + waiting
        if evidence["converged"]:
            break
        if time.monotonic() >= deadline:
            _order_events(ctx, evidence["intents"], evidence)
            raise StepFailed(f"not converged: {len(evidence['skipped'])} order(s) too young to judge "
                             f"({', '.join(evidence['skipped'][:5])})", evidence | {"passes": passes})
        ctx.beat()
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
    _order_events(ctx, evidence["intents"], evidence)
    evidence.update(passes=passes, trader=trader_command(ctx.run_id, "reload_state"))
    return evidence


def _order_events(ctx: StepContext, intents: list[dict[str, Any]], evidence: dict[str, Any]) -> None:
    log = ctx.events()
    try:
        for entry in intents:
            if "symbol" in entry:
                write_event(log, entry["symbol"], "INTENT_RESOLVED",
                            **{k: v for k, v in entry.items() if k != "symbol"})
        for entry in evidence["differences"]:
            write_event(log, entry["symbol"], "ORDER_RESYNC", kind=entry["kind"], action=entry["action"],
                        local=entry["local"], exchange=entry["exchange"], difference=entry["difference"])
            if entry["kind"] in ("ORDER_MISSING_ON_EXCHANGE", "EXTERNAL_ORDER_RECOVERED"):
                write_event(log, entry["symbol"], entry["kind"], local=entry["local"], exchange=entry["exchange"])
    finally:
        log.close()
