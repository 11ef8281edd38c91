"""Bybit V5 business errors (retCode, retMsg) raised by the simulated exchange."""

from __future__ import annotations

# Codes and meanings from Bybit's V5 error table (docs/v5/error) unless noted.
PARAM_ERROR = 10001
TIMESTAMP_ERROR = 10002
INVALID_API_KEY = 10003
SIGN_ERROR = 10004
PERMISSION_DENIED = 10005  # also what the simulator answers an account without DCP (Bybit does not document it)
RATE_LIMITED = 10006
ORDER_NOT_EXISTS = 110001
PRICE_OUT_OF_RANGE = 110003
INSUFFICIENT_AVAILABLE = 110007
AVAILABLE_NOT_ENOUGH = 110012  # set-leverage: the margin the new leverage needs exceeds the available balance
# Bybit documents 110017 as "Reduce-only rule not satisfied" (derivatives error table)
# and V5 also returns it for "orderQty will be truncated to zero".
REDUCE_ONLY_NOT_SATISFIED = 110017
LEVERAGE_NOT_MODIFIED = 110043
ORDER_LINK_ID_DUPLICATE = 110072
NOTIONAL_TOO_LOW = 110094


class ExchangeError(Exception):
    """A refusal the exchange answers with a retCode; never changes state."""

    def __init__(self, ret_code: int, ret_msg: str) -> None:
        super().__init__(f"{ret_code}: {ret_msg}")
        self.ret_code = ret_code
        self.ret_msg = ret_msg


def param_error(msg: str) -> ExchangeError:
    """Build a 10001 error with Bybit's 'params error' wording."""
    return ExchangeError(PARAM_ERROR, msg)
