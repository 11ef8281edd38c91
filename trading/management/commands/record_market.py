"""Record Bybit public streams into the JSONL format the simulator plays.

Each line is one message exactly as the exchange sent it (pybit's raw
``callback_function`` sees it before any merging).
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from trading.marketdata.jsonl import write_messages


class Command(BaseCommand):
    help = "Record Bybit public WS messages (orderbook.50, publicTrade, tickers) to a JSONL file."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--duration", type=float, default=60.0, help="seconds to record")
        parser.add_argument("--testnet", action="store_true", help="record Bybit testnet instead of mainnet")
        parser.add_argument(
            "--ws-url", default=None, help="another V5 host, e.g. ws://127.0.0.1:8765 (the simulator itself)"
        )
        parser.add_argument("--depth", type=int, default=50, help="order book depth to record")

    def handle(self, *args: Any, **opts: Any) -> None:
        symbols = [s.strip() for s in opts["symbols"].split(",") if s.strip()]
        if not symbols:
            raise CommandError("--symbols is empty")
        # call_command passes options unparsed: coerce here.
        out, duration = Path(opts["out"]), float(opts["duration"])
        if duration <= 0:
            raise CommandError("--duration must be > 0")
        inbox: queue.Queue[dict[str, Any]] = queue.Queue()

        def on_message(msg: dict[str, Any]) -> None:
            # Keep data messages only: acks and pongs are not market data.
            if "topic" in msg:
                inbox.put(msg)

        kwargs: dict[str, Any] = {"testnet": opts["testnet"], "callback_function": on_message}
        if opts["ws_url"]:
            from trading.simexchange.pybit_target import sim_websocket

            ws: Any = sim_websocket("linear", opts["ws_url"], **kwargs)
        else:
            from pybit.unified_trading import WebSocket

            ws = WebSocket("linear", **kwargs)
        try:
            ws.orderbook_stream(int(opts["depth"]), symbols, on_message)
            ws.trade_stream(symbols, on_message)
            ws.ticker_stream(symbols, on_message)
            count = self._drain(inbox, out, duration)
        finally:
            ws.exit()
        self.stdout.write(f"recorded {count} messages to {out}")

    @staticmethod
    def _drain(inbox: queue.Queue[dict[str, Any]], out: Path, duration: float) -> int:
        deadline = time.monotonic() + duration
        done = threading.Event()

        def messages() -> Any:
            while not done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    yield inbox.get(timeout=min(left, 0.2))
                except queue.Empty:
                    continue

        out.parent.mkdir(parents=True, exist_ok=True)
        return write_messages(out, messages())
