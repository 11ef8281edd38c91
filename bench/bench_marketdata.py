"""Benchmark market data generation and normalisation against json baselines from the same run.

Run from the project root: ``python bench/bench_marketdata.py [--messages N]``. Each
figure sits beside a baseline measured on the same messages in the same process,
so the ratios carry over between machines even when the absolute rates do not.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trading.marketdata.generator import generate_messages  # noqa: E402
from trading.marketdata.normalise import Normaliser  # noqa: E402

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
START_MS = 1_767_225_600_000


def _rate(count: int, work: Callable[[], object]) -> tuple[float, float]:
    """Run ``work`` once with the collector paused; return (items per second, seconds)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        work()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return count / elapsed, elapsed


def _peak_rss_mb() -> float:
    """Return the peak resident set size of this process in MB (Linux reports KB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


def main(argv: list[str] | None = None) -> int:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    n = args.messages

    def generate_only() -> None:
        for _ in generate_messages(SYMBOLS, args.seed, START_MS, max_messages=n):
            pass

    gen_rate, gen_s = _rate(n, generate_only)
    rss_after_generation = _peak_rss_mb()

    messages = list(generate_messages(SYMBOLS, args.seed, START_MS, max_messages=n))
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    lines: list[str] = []
    dumps_rate, _ = _rate(n, lambda: lines.extend(dumps(m) for m in messages))
    loads_rate, _ = _rate(n, lambda: [json.loads(line) for line in lines])

    normaliser = Normaliser()
    events: list[object] = []
    norm_rate, norm_s = _rate(n, lambda: events.extend(normaliser.normalise_all(messages)))
    event_rate = len(events) / norm_s
    replay = Normaliser()
    read_rate, _ = _rate(n, lambda: [replay.normalise(json.loads(line)) for line in lines])

    span_s = (messages[-1]["ts"] - messages[0]["ts"]) / 1000
    print(f"{n} messages, {len(SYMBOLS)} symbols, {span_s:.0f} s of simulated market, seed {args.seed}")
    print(f"{'generate_messages':<36}{gen_rate:>12,.0f} msg/s  ({gen_s:.2f} s)")
    print(f"{'  baseline json.dumps same msgs':<36}{dumps_rate:>12,.0f} msg/s  ratio {gen_rate / dumps_rate:.2f}")
    print(f"{'Normaliser.normalise':<36}{norm_rate:>12,.0f} msg/s  {event_rate:,.0f} events/s ({len(events)} events)")
    print(f"{'  baseline json.loads same msgs':<36}{loads_rate:>12,.0f} msg/s  ratio {norm_rate / loads_rate:.2f}")
    print(f"{'json.loads + normalise (replay)':<36}{read_rate:>12,.0f} msg/s")
    print(f"{'rejected':<36}{sum(normaliser.rejected.values()) + sum(replay.rejected.values()):>12}")
    print(f"peak RSS {rss_after_generation:.0f} MB after streaming generation, {_peak_rss_mb():.0f} MB at the end")
    print(f"(the end figure holds all {n} messages, their JSON lines and events in memory at once)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
