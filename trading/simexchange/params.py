"""Typed reading of Bybit request parameters; every failure is a 10001 envelope, never a trace."""

from __future__ import annotations

import builtins
from decimal import Decimal, InvalidOperation
from typing import Any

from . import errors as E


class Params:
    """Request parameters (query string values or JSON body fields).

    The readers are named after the types they return, so below ``str`` the builtin is ``builtins.str``.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def has(self, name: str) -> bool:
        return self.data.get(name) not in (None, "")

    def str(self, name: str, *, required: bool = False, choices: tuple[str, ...] | None = None) -> str | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise E.param_error(f"params error: {name} is required")
            return None
        if not isinstance(value, str):
            raise E.param_error(f"params error: {name} must be a string")
        if choices is not None and value not in choices:
            raise E.param_error(f"params error: {name} invalid")
        return value

    def decimal(self, name: builtins.str, *, required: bool = False) -> Decimal | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise E.param_error(f"params error: {name} is required")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise E.param_error(f"params error: {name} invalid")
        try:
            out = Decimal(str(value))
        except InvalidOperation:
            raise E.param_error(f"params error: {name} invalid") from None
        if not out.is_finite():
            raise E.param_error(f"params error: {name} invalid")
        return out

    def int(
        self, name: builtins.str, *, default: int | None = None, lo: int | None = None, hi: int | None = None
    ) -> int | None:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise E.param_error(f"params error: {name} invalid")
        try:
            out = int(value)
        except (TypeError, ValueError):
            raise E.param_error(f"params error: {name} invalid") from None
        if (lo is not None and out < lo) or (hi is not None and out > hi):
            raise E.param_error(f"params error: {name} out of range [{lo}, {hi}]")
        return out

    def bool(self, name: builtins.str, *, default: bool = False) -> bool:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if value in ("true", "false", 0, 1, "0", "1"):
            return value in ("true", 1, "1")
        raise E.param_error(f"params error: {name} invalid")

    def category(self) -> builtins.str:
        cat = self.str("category", required=True)
        if cat != "linear":
            raise E.param_error("params error: only category linear is simulated")
        return cat
