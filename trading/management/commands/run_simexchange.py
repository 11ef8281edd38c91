"""Run the Bybit V5 exchange simulator (REST + WebSocket on one loopback port).

The default simulated account is ``trading.simexchange.constants.DEFAULT_API_KEY`` /
``DEFAULT_API_SECRET`` (SIMKEY000000000000 / SIMSECRET00000000000000000000000000).
The ``/sim`` control routes ask for the token in ``control_token`` next to the
state file (created 0600 on the first start, kept afterwards). The exchange's
history (``GET /sim/history``) is appended to ``exchange_history.jsonl`` there too.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trading.simexchange.constants import DEFAULT_API_KEY, DEFAULT_API_SECRET, DEFAULT_HOST, DEFAULT_PORT
from trading.simexchange.control_auth import load_or_create_token, token_path_for
from trading.simexchange.core import SimExchange
from trading.simexchange.server import Running, serve_forever
from trading.simexchange.sources import DEFAULT_SYMBOLS, file_source, seeded_source

log = logging.getLogger(__name__)


def default_state_path() -> Path:
    return Path(settings.DATA_DIR) / "sim" / "exchange_state.json"


class Command(BaseCommand):
    help = "Serve a Bybit V5-compatible exchange simulator that pybit can talk to."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (loopback by default)")
        parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--market", type=Path, help="JSONL file of Bybit public WS messages to play")
        source.add_argument("--seed", type=int, default=None, help="play the seeded generator (default seed 1)")
        source.add_argument("--no-market", action="store_true", help="no market source (move it via /sim/market)")
        parser.add_argument("--symbols", default=",".join(DEFAULT_SYMBOLS), help="symbols of the generator")
        parser.add_argument("--speed", type=float, default=1.0, help="playback speed; 0 = as fast as possible")
        parser.add_argument("--state", type=Path, default=None, help="state file (default DATA_DIR/sim/...)")
        parser.add_argument("--reset", action="store_true",
                            help="start with a clean account and a new history (the old one is kept as "
                                 "exchange_history.previous.jsonl)")
        parser.add_argument("--api-key", default=DEFAULT_API_KEY)
        parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["speed"] < 0:
            raise CommandError("--speed must be >= 0")
        if opts["market"] is not None and not opts["market"].exists():
            raise CommandError(f"market file {opts['market']} does not exist")
        state_path = opts["state"] or default_state_path()
        sim = SimExchange(
            api_key=opts["api_key"], api_secret=opts["api_secret"], state_path=state_path, reset=opts["reset"]
        )
        if opts["no_market"]:
            source = None
        elif opts["market"] is not None:
            source = file_source(opts["market"])
        else:
            symbols = [s.strip() for s in opts["symbols"].split(",") if s.strip()]
            unknown = [s for s in symbols if s not in sim.engine.instruments]
            if unknown:
                raise CommandError(f"unknown symbols: {', '.join(unknown)}")
            source = seeded_source(symbols, opts["seed"] if opts["seed"] is not None else 1)
        token_path = token_path_for(state_path)
        try:
            token = load_or_create_token(token_path)
        except OSError as exc:
            raise CommandError(f"cannot keep the control token in {token_path}: {exc}") from exc
        asyncio.run(self._serve(sim, opts, source, state_path, token))

    async def _serve(
        self, sim: SimExchange, opts: dict[str, Any], source: Any, state_path: Path, token: str
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(running: Running) -> None:
            # One parseable line: scripts and tests wait for it.
            self.stdout.write(
                f"simexchange listening on http://{running.host}:{running.port} "
                f"(ws://{running.host}:{running.port}/v5/public/linear, /v5/private) "
                f"state={state_path} control token in {token_path_for(state_path)}"
            )
            self.stdout.flush()

        await serve_forever(
            sim, host=opts["host"], port=opts["port"], source=source, speed=opts["speed"], stop=stop,
            control_token=token, on_ready=ready,
        )
        self.stdout.write("simexchange stopped; state saved")
