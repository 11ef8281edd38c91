"""The database behind the trader's local state (SIM, DRY_RUN, LIVE).

Each call is one short transaction, so a row is durable when the call returns:
an order intent is on disk before its request leaves the process. Equity
samples are the exception: they are a record, not state the trader acts on, so
``record_equity`` only queues them for ``EquityWriter``'s own thread and the
pipeline never waits for the database on their account.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from scalper_site.db_threads import closing_on_error
from trading.engine.localstate import OPEN_LOCAL, ClosedTrade, LocalOrder, LocalPosition
from trading.models import EquitySample, Fill, Order, Position, PositionStatus, Trade

logger = logging.getLogger("scalper.trader")

EQUITY_QUEUE_BOUND = 256  # samples waiting for the database; past it a new one is dropped (and counted)
EQUITY_BATCH = 64  # samples written in one statement when the writer fell behind
EQUITY_STOP_WAIT_S = 2.0  # at exit, how long queued samples may take to reach the database


def _dt(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def order_from_row(row: Order) -> LocalOrder:
    return LocalOrder(
        order_link_id=row.order_link_id,
        symbol=row.symbol,
        side=row.side,
        qty=row.qty,
        order_type=row.order_type,
        price=row.price,
        reduce_only=row.reduce_only,
        take_profit=row.take_profit,
        stop_loss=row.stop_loss,
        status=row.status,
        exchange_order_id=row.exchange_order_id,
        filled_qty=row.filled_qty,
        avg_fill_price=row.avg_fill_price,
        expected_price=row.expected_price,
        purpose=row.purpose,
        origin=row.origin,
        reject_reason=row.reject_reason,
        created_ms=_ms(row.created_at),
        updated_ms=_ms(row.updated_at),
    )


def position_from_row(row: Position) -> LocalPosition:
    return LocalPosition(
        symbol=row.symbol,
        side=row.side,
        qty=row.qty,
        entry_price=row.entry_price,
        leverage=row.leverage,
        pnl_unrealized=row.pnl_unrealized,
        origin=row.origin,
        exchange_position_id=row.exchange_position_id,
        opened_ms=_ms(row.opened_at),
    )


class EquityWriter:
    """Write equity samples on a thread of their own; callers only put them on a bounded queue.

    A slow or unreachable database delays the samples, never the caller: when
    ``bound`` samples wait, a new one is dropped and counted in ``dropped``; a
    failed write is logged, counted in ``failed`` and not retried (the next
    sample follows within the sampling interval). The thread starts with the
    first sample and, at interpreter exit, gets ``EQUITY_STOP_WAIT_S`` to write
    what is queued.
    """

    def __init__(self, *, bound: int = EQUITY_QUEUE_BOUND) -> None:
        self.dropped = 0
        self.failed = 0
        self.written = 0
        self._queue: queue.Queue[EquitySample | None] = queue.Queue(maxsize=bound)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, sample: EquitySample) -> bool:
        """Queue ``sample`` (an unsaved row) without waiting; False when the queue is full and it was dropped."""
        self._ensure_started()
        try:
            self._queue.put_nowait(sample)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until every queued sample was written (or failed); True if none is left."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def stop(self, timeout_s: float = EQUITY_STOP_WAIT_S) -> None:
        """Write what is queued (waiting up to ``timeout_s``) and end the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return  # the database is stuck: the daemon thread dies with the process
        thread.join(timeout=timeout_s)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="equity-writer", daemon=True)
                self._thread.start()
                atexit.register(self.stop)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < EQUITY_BATCH and batch[-1] is not None:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            samples = [sample for sample in batch if sample is not None]
            if samples:
                self._write(samples)
            for _ in batch:
                self._queue.task_done()
            if batch[-1] is None:
                return

    def _write(self, samples: list[EquitySample]) -> None:
        try:
            EquitySample.objects.bulk_create(samples)
            self.written += len(samples)
        except Exception as exc:  # the database is down or refused the rows: log, count, go on
            self.failed += len(samples)
            logger.warning("%d equity sample(s) not written: %s", len(samples), exc)
        finally:
            # Samples are a minute apart: hold no connection (or pool slot) in between, and get a fresh one
            # after a database restart.
            connection.close()


class DatabasePersistence:
    """Local truth in the database, scoped to one environment (``run_id``).

    Its calls come from the trader's pipeline thread: after a database error its connection is closed when
    unusable (``closing_on_error``), so a database restart costs the calls made while it was down, not every
    call after.
    """

    def __init__(self, run_id: str = "") -> None:
        self.run_id = run_id
        self.equity_writer = EquityWriter()

    @property
    def equity_every_s(self) -> float:
        """Seconds between two timed equity samples (``SCALPER_EQUITY_SAMPLE_EVERY_S``)."""
        return float(settings.SCALPER_EQUITY_SAMPLE_EVERY_S)

    def record_equity(
        self,
        *,
        at_ms: int,
        equity: Decimal,
        wallet_balance: Decimal,
        unrealized_pnl: Decimal,
        available: Decimal,
        trigger: str,
    ) -> bool:
        """Queue one equity sample for the writer thread; False when it was dropped (the writer is behind)."""
        sample = EquitySample(
            run_id=self.run_id,
            at=_dt(at_ms),
            equity=equity,
            wallet_balance=wallet_balance,
            unrealized_pnl=unrealized_pnl,
            available=available,
            trigger=trigger,
        )
        return self.equity_writer.submit(sample)

    @closing_on_error
    def save_order(self, order: LocalOrder) -> None:
        Order.objects.update_or_create(
            run_id=self.run_id,
            order_link_id=order.order_link_id,
            defaults={
                "exchange_order_id": order.exchange_order_id,
                "symbol": order.symbol,
                "side": order.side,
                "order_type": order.order_type,
                "qty": order.qty,
                "price": order.price,
                "reduce_only": order.reduce_only,
                "take_profit": order.take_profit,
                "stop_loss": order.stop_loss,
                "status": order.status,
                "filled_qty": order.filled_qty,
                "avg_fill_price": order.avg_fill_price,
                "expected_price": order.expected_price,
                "origin": order.origin,
                "purpose": order.purpose,
                "reject_reason": order.reject_reason,
                "created_at": _dt(order.created_ms),
                "updated_at": _dt(order.updated_ms or order.created_ms),
            },
        )

    @closing_on_error
    def save_fill(
        self,
        *,
        exec_id: str,
        order_link_id: str,
        symbol: str,
        side: str,
        price: Decimal,
        qty: Decimal,
        fee: Decimal,
        is_maker: bool,
        exec_ms: int,
    ) -> bool:
        order = Order.objects.filter(run_id=self.run_id, order_link_id=order_link_id).first() if order_link_id else None
        try:
            with transaction.atomic():
                Fill.objects.create(
                    run_id=self.run_id,
                    exec_id=exec_id,
                    order=order,
                    order_link_id=order_link_id,
                    symbol=symbol,
                    side=side,
                    price=price,
                    qty=qty,
                    fee=fee,
                    is_maker=is_maker,
                    executed_at=_dt(exec_ms),
                )
        except IntegrityError:
            return False  # the same execution again (a replayed or re-fetched message)
        return True

    @closing_on_error
    def save_position(self, position: LocalPosition) -> None:
        changing = {
            "side": position.side,
            "qty": position.qty,
            "entry_price": position.entry_price,
            "leverage": position.leverage,
            "pnl_unrealized": position.pnl_unrealized,
            "exchange_position_id": position.exchange_position_id,
        }
        # Origin and opening time belong to the position's first record and are never rewritten.
        Position.objects.update_or_create(
            run_id=self.run_id,
            symbol=position.symbol,
            status=PositionStatus.OPEN,
            defaults=changing,
            create_defaults={**changing, "origin": position.origin, "opened_at": _dt(position.opened_ms)},
        )

    @closing_on_error
    def close_position(self, symbol: str, *, reason: str, closed_ms: int) -> None:
        Position.objects.filter(run_id=self.run_id, symbol=symbol, status=PositionStatus.OPEN).update(
            status=PositionStatus.CLOSED, close_reason=reason, closed_at=_dt(closed_ms)
        )

    @closing_on_error
    def save_trade(self, trade: ClosedTrade) -> None:
        Trade.objects.create(
            run_id=self.run_id,
            symbol=trade.symbol,
            side=trade.side,
            qty=trade.qty,
            entry_price=trade.entry_price,
            exit_price=trade.exit_price,
            realized_pnl=trade.realized_pnl,
            fees=trade.fees,
            close_reason=trade.close_reason,
            opened_at=_dt(trade.opened_ms),
            closed_at=_dt(trade.closed_ms),
        )

    @closing_on_error
    def load(self) -> tuple[list[LocalOrder], list[LocalPosition]]:
        orders = Order.objects.filter(run_id=self.run_id, status__in=list(OPEN_LOCAL))
        positions = Position.objects.filter(run_id=self.run_id, status=PositionStatus.OPEN)
        return [order_from_row(o) for o in orders], [position_from_row(p) for p in positions]
