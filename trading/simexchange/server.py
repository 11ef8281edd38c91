"""Assemble and run the simulator: one aiohttp server for REST, WebSocket and ``/sim`` control.

Two ways to run it:
- ``python manage.py run_simexchange`` (``serve_forever``), a process of its own;
- ``SimServer(...).start()`` in tests: its own asyncio loop on a background thread,
  on a free loopback port.

Either way ``/sim`` asks for a control token (``control_auth``): the command keeps
it in a file next to the state file, ``SimServer`` exposes it as ``token``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from trading.marketdata.jsonl import MarketFileError

from . import control_routes, rest, ws
from .appkeys import RATES, SIM
from .constants import DEFAULT_HOST
from .control_auth import control_guard, load_or_create_token, new_token, token_path_for
from .core import SimExchange
from .ratelimit import RateWindow

log = logging.getLogger(__name__)

MAINTENANCE_S = 0.1
IO_SWITCH_INTERVAL_S = 0.0005
YIELD_EVERY = 100  # messages played between two yields to the loop when behind schedule

T = TypeVar("T")


def build_app(sim: SimExchange, *, control_token: str) -> web.Application:
    """Return the aiohttp application serving ``sim``; ``/sim`` calls must carry ``control_token``."""
    app = web.Application(middlewares=[control_guard(control_token)], client_max_size=1 << 20)
    app[SIM] = sim
    app[RATES] = RateWindow()
    app.router.add_get("/v5/public/linear", ws.public_handler)
    app.router.add_get("/v5/private", ws.private_handler)
    control_routes.add_routes(app)
    app.router.add_route("*", "/v5/{tail:.*}", rest.dispatch)
    return app


async def play(sim: SimExchange, source: Iterator[dict[str, Any]], speed: float) -> None:
    """Play a time-ordered message source at ``speed`` times real time (0 = as fast as possible)."""
    loop = asyncio.get_running_loop()
    try:
        await _play_all(sim, source, speed, loop)
    except MarketFileError as exc:  # the recording itself is unreadable from here on: the market stops, said why
        log.error("simexchange: market playback stopped: %s", exc)
        return
    log.info("simexchange: market source exhausted after %s messages", sim.messages_played)


async def _play_all(
    sim: SimExchange, source: Iterator[dict[str, Any]], speed: float, loop: asyncio.AbstractEventLoop
) -> None:
    first_ts: int | None = None
    started = loop.time()
    for n, msg in enumerate(source):
        ts = msg.get("ts") if isinstance(msg, dict) else None
        if speed > 0 and isinstance(ts, int):
            if first_ts is None:
                first_ts = ts
            wait = started + (ts - first_ts) / 1000.0 / speed - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        elif n % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        try:
            sim.play(msg)
        except Exception:  # one bad line in a recording must not stop the market
            log.exception("simexchange: cannot play message %r", msg)


async def maintain(sim: SimExchange) -> None:
    """Expire faults and watch DCP (state changes reach the disk through the group commit's writer)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(MAINTENANCE_S)
        if sim.faults.expire():
            sim.sync_fault_effects()
        sim.check_dcp(loop.time())


class Running:
    """A started server on the current loop."""

    def __init__(self, sim: SimExchange, runner: web.AppRunner, sock: socket.socket, tasks: list[asyncio.Task]):
        self.sim = sim
        self.runner = runner
        self.host, self.port = sock.getsockname()[:2]
        self.tasks = tasks

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in list(self.sim.hub.conns):
            await conn.drop("abort")
        await self.runner.cleanup()
        self.sim.persist()
        self.sim.close()


async def start(
    sim: SimExchange,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    source: Iterator[dict[str, Any]] | None = None,
    speed: float = 1.0,
    control_token: str,
) -> Running:
    """Bind, start serving and start the market player; return the handle."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    app = build_app(sim, control_token=control_token)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(sim.commit.run()), loop.create_task(maintain(sim))]
    if source is not None:
        tasks.append(loop.create_task(play(sim, source, speed)))
    return Running(sim, runner, sock, tasks)


class SimServer:
    """The simulator on a background thread with its own loop (for tests and benchmarks)."""

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        source: Iterator[dict[str, Any]] | None = None,
        speed: float = 1.0,
        state_path: Path | None = None,
        reset: bool = False,
        control_token: str | None = None,
        **sim_kwargs: Any,
    ) -> None:
        self.sim = SimExchange(state_path=state_path, reset=reset, **sim_kwargs)
        if control_token is None:
            # With a state file the token sits next to it, as the command keeps it; without one, in memory only.
            control_token = new_token() if state_path is None else load_or_create_token(token_path_for(state_path))
        self.token = control_token
        self._host, self._port, self._source, self._speed = host, port, source, speed
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simexchange", daemon=True)
        self._running: Running | None = None

    def start(self) -> SimServer:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            start(self.sim, host=self._host, port=self._port, source=self._source, speed=self._speed,
                  control_token=self.token),
            self._loop,
        )
        self._running = fut.result(timeout=10)
        return self

    @property
    def port(self) -> int:
        assert self._running is not None, "start() first"
        return self._running.port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self._host}:{self.port}"

    def call(self, fn: Callable[[SimExchange], T]) -> T:
        """Run ``fn(sim)`` on the server's loop thread and return its result."""

        async def run() -> T:
            return fn(self.sim)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._running is not None:
            asyncio.run_coroutine_threadsafe(self._running.close(), self._loop).result(timeout=10)
            self._running = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve_forever(
    sim: SimExchange,
    *,
    host: str,
    port: int,
    source: Iterator[dict[str, Any]] | None,
    speed: float,
    stop: asyncio.Event,
    control_token: str,
    on_ready: Callable[[Running], None] | None = None,
) -> None:
    """Run until ``stop`` is set, then save the state and close every connection."""
    # The process's own: the group commit's I/O thread gets the interpreter back within 0.5 ms of its
    # fsync instead of the default 5 ms a busy loop thread may keep it waiting (the answers wait on it).
    sys.setswitchinterval(IO_SWITCH_INTERVAL_S)
    running = await start(sim, host=host, port=port, source=source, speed=speed, control_token=control_token)
    if on_ready is not None:
        on_ready(running)
    try:
        await stop.wait()
    finally:
        await running.close()
