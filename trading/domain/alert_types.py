"""Every alert type the product raises: one stable string each, the names the ``alerts`` config may use.

A type names what happened, never how loud it is (the level says that), so a
webhook consumer or a mail filter can rely on it across versions. The config's
``alerts.muted_types`` is checked against ``ALERT_TYPES``: a misspelt type is a
config error, not a mute that silently mutes nothing.
"""

from __future__ import annotations

from failover.domain.enums import FailureType

# Raised by the trader.
SLIPPAGE_BLOCK = "SLIPPAGE_BLOCK"  # WARN: a symbol's execution quality fell below the threshold; entries blocked
SLIPPAGE_UNBLOCK = "SLIPPAGE_UNBLOCK"  # INFO: it recovered; entries allowed again
DAILY_LOSS_STOP = "DAILY_LOSS_STOP"  # CRIT: today's realised loss reached the limit; no entries until 00:00 UTC
PANIC_CLOSE = "PANIC_CLOSE"  # CRIT: an operator closed every position and cancelled every order
CONFIG_RELOADED = "CONFIG_RELOADED"  # INFO: a new config is in force (which fields changed)

# Raised by the FailoverManager: one per failure type (safe mode on), and the recovery's own.
RECOVERY_STEP_FAILED = "RECOVERY_STEP_FAILED"  # CRIT
RECOVERY_STALLED = "RECOVERY_STALLED"  # CRIT: the plan keeps failing; retried every 20 s
HALT = "HALT"  # CRIT: an operator (or a panic close) halted trading: no new entries until RESUME
RESUME = "RESUME"  # INFO: an operator lifted the HALT
DEADMAN_TRIGGERED = "DEADMAN_TRIGGERED"  # CRIT: no trader held the account's lease; the guardian acted

TRADER_TYPES = (SLIPPAGE_BLOCK, SLIPPAGE_UNBLOCK, DAILY_LOSS_STOP, PANIC_CLOSE, CONFIG_RELOADED)
FAILOVER_TYPES = (*(t.value for t in FailureType), RECOVERY_STEP_FAILED, RECOVERY_STALLED, HALT, RESUME,
                  DEADMAN_TRIGGERED)
ALERT_TYPES: frozenset[str] = frozenset((*TRADER_TYPES, *FAILOVER_TYPES))
