"""Benchmark the exchange simulator through the real pybit client, on loopback only.

Prints, each beside a baseline measured in the same run:
- order round trips per second (pybit place_order + cancel_order) vs bare GET /v5/market/time;
- WebSocket messages per second fanned out to N pybit subscribers (trades played through the
  market feed and matching engine) vs a bare broadcast of prebuilt frames to raw sockets;
- the process's peak RSS (server and clients share this process).

Run: .venv/bin/python bench/bench_simexchange.py [--orders 300] [--subscribers 10] [--messages 2000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scalper_site.settings_test")

import logging  # noqa: E402

import websocket  # noqa: E402

from trading.simexchange.control import SimControl  # noqa: E402
from trading.simexchange.core import SimExchange  # noqa: E402
from trading.simexchange.pybit_target import sim_http, sim_websocket  # noqa: E402
from trading.simexchange.server import SimServer  # noqa: E402

TIME_CAP_S = 30.0


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:10.0f}/s  ({count} in {seconds:.2f}s)"


def bench_rest(sim: SimServer, n: int) -> tuple[float, float]:
    http = sim_http(sim.base_url, retry_codes={-1})
    for _ in range(20):  # warm the connection pool
        http.get_server_time()
    started = time.perf_counter()
    for _ in range(n):
        http.get_server_time()
    bare = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(n // 2):
        res = http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001",
                               price="49000", orderLinkId=f"bench-{i}")
        http.cancel_order(category="linear", symbol="BTCUSDT", orderId=res["result"]["orderId"])
        if time.perf_counter() - started > TIME_CAP_S:
            raise SystemExit("order round trips exceeded the time cap")
    orders = time.perf_counter() - started
    return n / bare, (n // 2) * 2 / orders


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self, msg: Any) -> None:
        if msg.get("topic") == "publicTrade.BTCUSDT":
            with self.lock:
                self.n += 1


def wait_all(counters: list[Any], target: int, started: float) -> float:
    while any(c.n < target for c in counters):
        if time.perf_counter() - started > TIME_CAP_S:
            raise SystemExit(f"fan-out did not finish: {[c.n for c in counters]} of {target}")
        time.sleep(0.002)
    return time.perf_counter() - started


def bench_fanout(sim: SimServer, subscribers: int, messages: int) -> tuple[float, float]:
    # Baseline: prebuilt frames broadcast by the hub to raw websocket-client sockets.
    raw_socks = [websocket.create_connection(f"{sim.ws_base}/v5/public/linear", timeout=10)
                 for _ in range(subscribers)]
    for s in raw_socks:
        s.send('{"op":"subscribe","args":["publicTrade.BTCUSDT"]}')
        s.recv()
    raw_counters = []
    for s in raw_socks:
        c = Counter()
        raw_counters.append(c)

        def pump(sock: Any = s, counter: Counter = c) -> None:
            while counter.n < messages:
                sock.recv()
                with counter.lock:
                    counter.n += 1

        threading.Thread(target=pump, daemon=True).start()
    frame = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 0,
             "data": [{"T": 0, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "50000.0", "i": "x", "BT": False}]}

    def broadcast(s: SimExchange) -> None:
        for _ in range(messages):
            s.hub.publish_public(frame)

    started = time.perf_counter()
    sim.call(broadcast)
    bare = wait_all(raw_counters, messages, started)
    for s in raw_socks:
        s.close()
    # Measured: trades played through the feed (engine, klines, tickers) to pybit subscribers.
    counters = [Counter() for _ in range(subscribers)]
    sockets = []
    for c in counters:
        ws = sim_websocket("linear", sim.ws_base, callback_function=c)
        ws.trade_stream("BTCUSDT", c)
        sockets.append(ws)
    time.sleep(0.3)  # subscriptions are answered after a network-like delay
    trades = [{"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 0,
               "data": [{"T": 0, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": f"{50000 + i % 7}.0"}]}
              for i in range(messages)]

    def play_all(s: SimExchange) -> None:
        for t in trades:
            s.play(t)

    started = time.perf_counter()
    sim.call(play_all)
    played = wait_all(counters, messages, started)
    for ws in sockets:
        ws.exit()
    total = subscribers * messages
    return total / bare, total / played


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=400, help="REST calls per measurement")
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--messages", type=int, default=2000, help="messages per subscriber")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    tmp = tempfile.TemporaryDirectory(prefix="simbench-")
    with tmp, SimServer(state_path=Path(tmp.name) / "state.json", reset=True) as sim:
        ctl = SimControl(sim.base_url, token=sim.token)
        ctl.set_book("BTCUSDT", [("50000.0", "5")], [("50001.0", "5")])
        ctl.trade("BTCUSDT", "50000.5", "0.001")
        bare_rest, orders = bench_rest(sim, args.orders)
        bare_ws, fanout = bench_fanout(sim, args.subscribers, args.messages)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"REST  baseline GET /v5/market/time via pybit : {bare_rest:10.0f} req/s")
    print(f"REST  order round trips (create+cancel) pybit: {orders:10.0f} req/s  "
          f"({orders / bare_rest:.0%} of baseline; state file fsync'd on every change)")
    print(f"WS    baseline bare broadcast, {args.subscribers} raw sockets : {bare_ws:10.0f} msg/s delivered")
    print(f"WS    played trades to {args.subscribers} pybit subscribers   : {fanout:10.0f} msg/s delivered  "
          f"({fanout / bare_ws:.0%} of baseline)")
    print(f"peak RSS (server + clients in one process): {peak_mb:.1f} MB")


if __name__ == "__main__":
    main()
