"""Stable reason codes for refused (and allowed) orders.

They appear in risk decisions, execution results, the event log, the API and
the state machine's suppression counters; dashboards and tests match on them,
so the strings never change.
"""

from __future__ import annotations

ALLOWED = "ALLOWED"
REDUCE_ONLY_ALLOWED = "REDUCE_ONLY_ALLOWED"

# Global blocks (set by failover through RiskEngine.set_global_block).
SAFE_MODE_ACTIVE = "SAFE_MODE_ACTIVE"
RISK_OFF = "RISK_OFF"
HALTED = "HALTED"  # an operator's HALT (or a panic close): no new entries until an operator's RESUME

# Account-level limits.
TRADING_DISABLED = "TRADING_DISABLED"
RISK_OFF_DAILY_LOSS = "RISK_OFF_DAILY_LOSS"
MAX_OPEN_POSITIONS = "MAX_OPEN_POSITIONS"
MAX_HEAT = "MAX_HEAT"
INVALID_EQUITY = "INVALID_EQUITY"

# Symbol-level blocks.
SYMBOL_BLOCKED_EXECUTION_QUALITY = "SYMBOL_BLOCKED_EXECUTION_QUALITY"
POSITION_ALREADY_OPEN = "POSITION_ALREADY_OPEN"
UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
LEVERAGE_NOT_APPLIED = "LEVERAGE_NOT_APPLIED"  # the exchange has not confirmed the symbol's leverage yet

# Order shape.
INVALID_PRICE = "INVALID_PRICE"
INVALID_STOP_DISTANCE = "INVALID_STOP_DISTANCE"
QTY_BELOW_MINIMUM = "QTY_BELOW_MINIMUM"
NOTIONAL_BELOW_MINIMUM = "NOTIONAL_BELOW_MINIMUM"
INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"  # not even the minimum quantity's initial margin is free
