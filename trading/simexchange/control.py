"""Client of the simulator's ``/sim`` control API, for tests and integration scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from .control_auth import TOKEN_HEADER, read_token, token_path_for

__all__ = ["SimControl", "SimControlError", "token_path_for"]  # token_path_for: where a simulator keeps its token


MAX_HISTORY_PAGES = 1000  # history_all reads at most this many pages (a million records at the default size)


class SimControlError(Exception):
    """The simulator refused a control call."""


class SimControl:
    """Inject faults, read and reset state, move the market, act behind the client's back.

    ``/sim`` asks for the simulator's control token: pass it (``SimServer.token``)
    or the file it is kept in (``control_auth.token_path_for(state_path)``), which
    is read at the first call, so a client may be made before the simulator starts.
    """

    def __init__(
        self, base_url: str, *, token: str | None = None, token_file: Path | None = None, timeout: float = 5.0
    ) -> None:
        if (token is None) == (token_file is None):
            raise ValueError("pass the control token or the file that holds it (one of the two)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._token_file = token_file
        self._http = requests.Session()

    def _auth(self) -> str:
        if self._token is None:
            assert self._token_file is not None
            self._token = read_token(self._token_file)
            if self._token is None:
                raise SimControlError(f"no control token in {self._token_file}: has the simulator started?")
        return self._token

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        # Every call but a read sends a JSON body: the simulator takes application/json only.
        payload = None if method == "GET" else (body if body is not None else {})
        resp = self._http.request(method, f"{self.base_url}{path}", json=payload, timeout=self.timeout,
                                  headers={TOKEN_HEADER: self._auth()})
        if resp.status_code >= 400:
            raise SimControlError(f"{method} {path}: HTTP {resp.status_code}: {resp.text}")
        return resp.json()

    # -- faults ---------------------------------------------------------------------
    def inject(self, kind: str, *, duration_s: float | None = None, count: int | None = None, **params: Any) -> str:
        """Start a fault (see ``faults.FAULT_KINDS``); return its id."""
        body = {"kind": kind, "params": params, "duration_s": duration_s, "count": count}
        return self._call("POST", "/sim/faults", body)["id"]

    def clear(self, fault_id: str | None = None, *, kind: str | None = None) -> list[str]:
        """End one fault by id, or all faults (of one kind)."""
        if fault_id is not None:
            return self._call("DELETE", f"/sim/faults/{fault_id}")["cleared"]
        return self._call("POST", "/sim/faults/clear", {"kind": kind} if kind else {})["cleared"]

    def faults(self) -> list[dict[str, Any]]:
        return self.state()["faults"]

    # -- state ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Return open orders, positions, wallet, active faults and connections."""
        return self._call("GET", "/sim/state")

    def reset(self) -> None:
        """Clear orders, positions, executions and faults; refill the wallet."""
        self._call("POST", "/sim/reset")

    def set_dcp(self, *, enabled: bool) -> dict[str, Any]:
        """Say whether the account has Bybit's DCP (False: the retail answer); return the DCP state."""
        return self._call("POST", "/sim/dcp", {"enabled": enabled})

    # -- history ------------------------------------------------------------------------
    def history(self, after: int = 0, limit: int = 1000) -> dict[str, Any]:
        """Return ``{"records": [...], "lastSeq": int}``: up to ``limit`` history records with seq above ``after``."""
        return self._call("GET", "/sim/history?" + urlencode({"after": after, "limit": limit}))

    def history_all(self, after: int = 0, *, page: int = 1000) -> list[dict[str, Any]]:
        """Return every history record with seq above ``after``, reading page after page until the last.

        Raise ``SimControlError`` past ``MAX_HISTORY_PAGES`` pages rather than
        return a history cut short.
        """
        records: list[dict[str, Any]] = []
        for _ in range(MAX_HISTORY_PAGES):
            answer = self.history(after, page)
            got = answer["records"]
            records += got
            if len(got) < page or got[-1]["seq"] >= answer["lastSeq"]:
                return records
            after = got[-1]["seq"]
        raise SimControlError(f"history longer than {MAX_HISTORY_PAGES} pages of {page} records after seq {after}")

    # -- market -----------------------------------------------------------------------
    def publish(self, *messages: dict[str, Any]) -> int:
        """Play Bybit public messages now, as if the market had sent them."""
        return self._call("POST", "/sim/market", {"messages": list(messages)})["played"]

    def set_book(self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        """Replace a symbol's book with an ``orderbook.50`` snapshot."""
        self.publish({"topic": f"orderbook.50.{symbol}", "type": "snapshot", "ts": 0,
                      "data": {"s": symbol, "b": [list(b) for b in bids], "a": [list(a) for a in asks],
                               "u": 1, "seq": 1}})

    def trade(self, symbol: str, price: str, qty: str, side: str = "Buy") -> None:
        """Print one public trade."""
        self.publish({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": 0,
                      "data": [{"T": 0, "s": symbol, "S": side, "v": qty, "p": price, "BT": False}]})

    # -- behind the client's back -------------------------------------------------------
    def close_position(self, symbol: str) -> dict[str, Any]:
        """Close a position at market, as a manual action in the Bybit app would."""
        return self._call("POST", "/sim/actions/close-position", {"symbol": symbol})

    def cancel_order(self, symbol: str, *, order_id: str | None = None, order_link_id: str | None = None) -> str:
        """Cancel an order the client believes open."""
        body = {"symbol": symbol, "orderId": order_id, "orderLinkId": order_link_id}
        return self._call("POST", "/sim/actions/cancel-order", body)["orderId"]

    def fill_order(self, symbol: str, *, order_id: str | None = None, order_link_id: str | None = None,
                   qty: str | None = None) -> dict[str, Any]:
        """Fill a resting limit order now at its price (all it leaves, or ``qty``), as the market never showed."""
        body = {"symbol": symbol, "orderId": order_id, "orderLinkId": order_link_id, "qty": qty}
        return self._call("POST", "/sim/actions/fill-order", body)

    def amend_order(self, symbol: str, *, order_id: str | None = None, order_link_id: str | None = None,
                    **changes: str) -> dict[str, Any]:
        """Amend an open order as a manual action would (``qty``, ``price``, ``takeProfit``, ``stopLoss``)."""
        body = {"symbol": symbol, "orderId": order_id, "orderLinkId": order_link_id, **changes}
        return self._call("POST", "/sim/actions/amend-order", body)

    def place_order(self, symbol: str, side: str, qty: str, *, order_type: str = "Market",
                    price: str | None = None, **extra: Any) -> dict[str, Any]:
        """Create an order the client never sent (a limit rests; a market one opens a position)."""
        body = {"symbol": symbol, "side": side, "qty": qty, "orderType": order_type, "price": price, **extra}
        return self._call("POST", "/sim/actions/place-order", body)

    def open_position(self, symbol: str, side: str, qty: str) -> dict[str, Any]:
        """Make an unknown position appear."""
        return self.place_order(symbol, side, qty)
