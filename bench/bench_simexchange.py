"""Benchmark the exchange simulator through the real pybit client, on loopback only.

Prints, each beside a baseline measured in the same run:
- order round trips (pybit place_order + cancel_order, requests per second) against the simulator as its
  own process (``manage.py run_simexchange``, state file and change log on disk, every change fsynced before
  its answer by the group commit) vs the same pybit client against a trivial loopback HTTP handler (an
  aiohttp app in its own process answering every request with a fixed Bybit envelope): with
  ``--threads`` client threads (each its own pybit session, as the trader's and the tests' callers run
  side by side) and with one thread; the changes per fsync the simulator made;
- WebSocket messages per second fanned out to N pybit subscribers (trades played through the
  market feed and matching engine) vs a bare broadcast of prebuilt frames to raw sockets;
- peak RSS of the simulator process and of this process (clients, and the fan-out's in-process server).

Run: .venv/bin/python bench/bench_simexchange.py [--seconds 5] [--threads 8] [--subscribers 10] [--messages 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
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
from trading.simexchange.control_auth import token_path_for  # noqa: E402
from trading.simexchange.core import SimExchange  # noqa: E402
from trading.simexchange.pybit_target import sim_http, sim_websocket  # noqa: E402
from trading.simexchange.server import SimServer  # noqa: E402

TIME_CAP_S = 30.0
READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
TRIVIAL_BODY = (b'{"retCode":0,"retMsg":"OK","result":{"orderId":"1","orderLinkId":"x"},'
                b'"retExtInfo":{},"time":0}')


def serve_trivial() -> None:
    """The baseline server: answer every request at once with a fixed envelope (run in its own process)."""
    import asyncio

    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=TRIVIAL_BODY, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(f"trivial listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        match = READY.search(line)
        if match:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
            return proc, match.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"server did not start: {argv}")


def round_trips(url: str, threads: int, seconds: float) -> float:
    """Run create + cancel pairs from ``threads`` threads for ``seconds``; return requests per second."""
    clients = [sim_http(url, retry_codes={-1}, timeout=10) for _ in range(threads)]
    for c in clients:  # warm each connection
        c.get_server_time()
    counts = [0] * threads
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(index: int) -> None:
        http = clients[index]
        n = 0
        try:
            while not stop.is_set():
                res = http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit",
                                       qty="0.001", price="49000", orderLinkId=f"b{threads}-{index}-{n}")
                http.cancel_order(category="linear", symbol="BTCUSDT", orderId=res["result"]["orderId"])
                n += 1
                counts[index] = n * 2
        except BaseException as exc:  # reported below: a failed request is a failed benchmark
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join(timeout=TIME_CAP_S)
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"round trips failed: {errors[0]!r}")
    return sum(counts) / elapsed


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a live process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_rest(threads: int, seconds: float) -> dict[str, float]:
    """Order round trips against the simulator and the trivial handler, both in processes of their own."""
    out: dict[str, float] = {}
    trivial, trivial_url = start_server([sys.executable, __file__, "--trivial-server"])
    with tempfile.TemporaryDirectory(prefix="simbench-") as tmp:
        state = Path(tmp) / "exchange_state.json"
        sim, sim_url = start_server([sys.executable, "manage.py", "run_simexchange", "--port", "0", "--no-market",
                                     "--reset", "--state", str(state)])
        try:
            ctl = SimControl(sim_url, token_file=token_path_for(state))
            ctl.set_book("BTCUSDT", [("50000.0", "5")], [("50001.0", "5")])
            ctl.trade("BTCUSDT", "50000.5", "0.001")
            for n in (threads, 1):
                out[f"trivial_{n}"] = round_trips(trivial_url, n, seconds)
                before = ctl.state()["commit"]
                out[f"sim_{n}"] = round_trips(sim_url, n, seconds)
                after = ctl.state()["commit"]
                writes = max(1, after["writes"] - before["writes"])
                out[f"per_fsync_{n}"] = (after["changes"] - before["changes"]) / writes
            out["sim_rss"] = peak_rss_mb(sim.pid)
        finally:
            for proc in (sim, trivial):
                proc.terminate()
                proc.wait(timeout=10)
    return out


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


def report_rest(r: dict[str, float], threads: int) -> None:
    for n in (threads, 1):
        ratio = r[f"sim_{n}"] / r[f"trivial_{n}"]
        print(f"REST  {n} client thread(s): trivial handler {r[f'trivial_{n}']:8.0f} req/s | simulator "
              f"{r[f'sim_{n}']:8.0f} req/s (create+cancel) | ratio {ratio:.2f} | "
              f"{r[f'per_fsync_{n}']:.1f} changes per fsync")
    print(f"REST  simulator process peak RSS: {r['sim_rss']:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each round-trip measurement")
    parser.add_argument("--threads", type=int, default=8, help="client threads of the concurrent measurement")
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--messages", type=int, default=2000, help="messages per subscriber")
    parser.add_argument("--trivial-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trivial_server:
        serve_trivial()
        return
    logging.disable(logging.WARNING)
    rest = bench_rest(args.threads, args.seconds)
    with SimServer() as sim:
        bare_ws, fanout = bench_fanout(sim, args.subscribers, args.messages)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report_rest(rest, args.threads)
    print(f"WS    baseline bare broadcast, {args.subscribers} raw sockets : {bare_ws:10.0f} msg/s delivered")
    print(f"WS    played trades to {args.subscribers} pybit subscribers   : {fanout:10.0f} msg/s delivered  "
          f"({fanout / bare_ws:.0%} of baseline)")
    print(f"peak RSS of this process (clients + in-process fan-out server): {peak_mb:.1f} MB")


if __name__ == "__main__":
    main()
