"""Defaults of the simulated account and exchange, in one place."""

from __future__ import annotations

from decimal import Decimal

# The simulated account's key pair. Not a secret: it only opens the loopback simulator.
DEFAULT_API_KEY = "SIMKEY000000000000"
DEFAULT_API_SECRET = "SIMSECRET00000000000000000000000000"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

# Bybit's base VIP0 rates for USDT perpetuals.
MAKER_FEE = Decimal("0.0002")
TAKER_FEE = Decimal("0.00055")

INITIAL_BALANCE = Decimal("10000")
DEFAULT_LEVERAGE = Decimal("10")
# The leverage filter of every simulated linear perpetual: [MIN_LEVERAGE, the instrument's maxLeverage].
MIN_LEVERAGE = Decimal("1")
LEVERAGE_STEP = Decimal("0.01")
SETTLE_COIN = "USDT"

# Bybit's default order-entry limit (10 requests/s per UID), reported in X-Bapi-Limit.
RATE_LIMIT = 10

# How many executions and closed orders the exchange remembers (Bybit keeps 7 days).
MAX_EXECUTIONS = 5000
MAX_CLOSED_ORDERS = 2000
