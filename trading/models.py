"""Local truth of trading: orders (with their durable intents), fills, positions, trades, alerts, equity samples.

Every row carries ``run_id``: empty for the product itself, the integration
run's id for rows an integration scenario writes, so runs never see each
other's state.
"""

from __future__ import annotations

from django.db import models


class OrderSide(models.TextChoices):
    BUY = "BUY"
    SELL = "SELL"


class PositionSide(models.TextChoices):
    LONG = "LONG"
    SHORT = "SHORT"


class Origin(models.TextChoices):
    LOCAL = "LOCAL"
    EXTERNAL_ORDER_RECOVERED = "EXTERNAL_ORDER_RECOVERED"
    EXTERNAL_POSITION_RECOVERED = "EXTERNAL_POSITION_RECOVERED"


class OrderStatus(models.TextChoices):
    """The spec's order statuses, plus the intent states before the exchange confirmed anything."""

    INTENT = "INTENT"  # recorded, request not yet sent
    SUBMITTED = "SUBMITTED"  # request sent, no answer yet: after a crash, look it up, never resend
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"


OPEN_ORDER_STATUSES = (OrderStatus.INTENT, OrderStatus.SUBMITTED, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class Order(models.Model):
    run_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    order_link_id = models.CharField(max_length=36)
    exchange_order_id = models.CharField(max_length=64, blank=True, default="")
    symbol = models.CharField(max_length=32, db_index=True)
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    order_type = models.CharField(max_length=8, default="Market")  # Market | Limit, as Bybit names them
    qty = models.DecimalField(max_digits=28, decimal_places=10)
    price = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    reduce_only = models.BooleanField(default=False)
    take_profit = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    stop_loss = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.INTENT, db_index=True)
    filled_qty = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    avg_fill_price = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    expected_price = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    origin = models.CharField(max_length=32, choices=Origin.choices, default=Origin.LOCAL)
    purpose = models.CharField(max_length=16, default="ENTRY")  # ENTRY | EXIT | PANIC_CLOSE | PROTECTIVE
    reject_reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["run_id", "order_link_id"], name="order_link_id_unique_per_run")]

    def __str__(self) -> str:
        return f"{self.order_link_id} {self.side} {self.qty} {self.symbol} {self.status}"


class Fill(models.Model):
    run_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    exec_id = models.CharField(max_length=64)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="fills")
    order_link_id = models.CharField(max_length=36, blank=True, default="")
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    price = models.DecimalField(max_digits=28, decimal_places=10)
    qty = models.DecimalField(max_digits=28, decimal_places=10)
    fee = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    is_maker = models.BooleanField(default=False)
    executed_at = models.DateTimeField()

    class Meta:
        ordering = ["-executed_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["run_id", "exec_id"], name="exec_id_unique_per_run")]


class PositionStatus(models.TextChoices):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class Position(models.Model):
    run_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=5, choices=PositionSide.choices)
    qty = models.DecimalField(max_digits=28, decimal_places=10)
    entry_price = models.DecimalField(max_digits=28, decimal_places=10)
    leverage = models.DecimalField(max_digits=10, decimal_places=2, default=1)
    pnl_unrealized = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    exchange_position_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=8, choices=PositionStatus.choices, default=PositionStatus.OPEN, db_index=True)
    origin = models.CharField(max_length=32, choices=Origin.choices, default=Origin.LOCAL)
    close_reason = models.CharField(max_length=40, blank=True, default="")
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # One-way mode: at most one open position per symbol. This is what
            # makes a duplicate position impossible to record, not merely unlikely.
            models.UniqueConstraint(
                fields=["run_id", "symbol"],
                condition=models.Q(status="OPEN"),
                name="one_open_position_per_symbol",
            )
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.qty} {self.symbol} @ {self.entry_price} ({self.status})"


class Trade(models.Model):
    """A closed round trip, for the trade log and the daily PnL."""

    run_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    symbol = models.CharField(max_length=32, db_index=True)
    side = models.CharField(max_length=5, choices=PositionSide.choices)
    qty = models.DecimalField(max_digits=28, decimal_places=10)
    entry_price = models.DecimalField(max_digits=28, decimal_places=10)
    exit_price = models.DecimalField(max_digits=28, decimal_places=10)
    realized_pnl = models.DecimalField(max_digits=28, decimal_places=10)
    fees = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    close_reason = models.CharField(max_length=40, blank=True, default="")
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-closed_at", "-id"]


class EquityTrigger(models.TextChoices):
    """Why the trader took an equity sample."""

    TIMER = "TIMER"  # every SCALPER_EQUITY_SAMPLE_EVERY_S
    POSITION_CLOSED = "POSITION_CLOSED"  # right after a position closed


class EquitySample(models.Model):
    """The account as the exchange's wallet reported it at one moment: the equity curve, point by point.

    Written by the trader off its pipeline thread (``trading.persistence.EquityWriter``); kept
    ``SCALPER_EQUITY_RETENTION_DAYS`` (``trading.prune_equity_samples``).
    """

    run_id = models.CharField(max_length=64, blank=True, default="")  # indexed with ``at`` below
    at = models.DateTimeField()
    equity = models.DecimalField(max_digits=28, decimal_places=10)  # wallet balance plus unrealized PnL
    wallet_balance = models.DecimalField(max_digits=28, decimal_places=10)
    unrealized_pnl = models.DecimalField(max_digits=28, decimal_places=10)
    available = models.DecimalField(max_digits=28, decimal_places=10)
    trigger = models.CharField(max_length=16, choices=EquityTrigger.choices, default=EquityTrigger.TIMER)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["run_id", "at"], name="equity_sample_run_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} equity {self.equity}"


class AlertLevel(models.TextChoices):
    INFO = "INFO"
    WARN = "WARN"
    CRIT = "CRIT"


class Alert(models.Model):
    run_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    level = models.CharField(max_length=4, choices=AlertLevel.choices, db_index=True)
    type = models.CharField(max_length=60, db_index=True)
    symbol = models.CharField(max_length=32, blank=True, default="")
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    suppressed_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.level} {self.type}: {self.message[:60]}"
