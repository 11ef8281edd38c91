"""REPLAY throughput and per-message latency of the full trading pipeline, and memory with 10 symbols.

Run: .venv/bin/python bench/bench_pipeline.py [--messages N]

Measured in one process, on the same generated messages:
- baseline: a loop that only decodes them (the Normaliser turning Bybit
  messages into MarketEvents);
- pipeline: the whole REPLAY path per message: the in-process venue (the
  simulator's matching engine keeping its book), the normaliser, features,
  regime, scoring, state machine, risk and execution;
- stages: the SignalPipeline (what TradingCore runs per event) alone on
  pre-decoded events, to show where time goes;
- memory: peak RSS, and RSS sampled through a run over 10 symbols (it must
  stay flat: no growth with time).

The messages held for timing (millions of small objects) are frozen out of the
garbage collector once built: otherwise every full collection walks them, which
cost the decode baseline a third of its speed and is not the pipeline's work.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scalper_site.settings_test")

import django  # noqa: E402

django.setup()

from trading.domain.config import DEFAULT_CONFIG  # noqa: E402
from trading.domain.pipeline import SignalPipeline  # noqa: E402
from trading.engine.replay import BacktestEngine  # noqa: E402
from trading.marketdata.generator import generate_messages  # noqa: E402
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS  # noqa: E402
from trading.marketdata.normalise import Normaliser  # noqa: E402

T0 = 1_763_479_200_000


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=150_000)
    parser.add_argument("--memory-messages", type=int, default=300_000)
    args = parser.parse_args()
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    messages = list(generate_messages(symbols, 7, T0, max_messages=args.messages))
    gc.collect()
    gc.freeze()  # the timing data set is the bench's, not the pipeline's heap (see the docstring)

    started = time.perf_counter()
    normaliser = Normaliser()
    decoded = [event for message in messages for event in normaliser.normalise(message)]
    decode_s = time.perf_counter() - started
    events = len(decoded)

    engine = BacktestEngine(symbols=symbols)
    core, venue = engine.core, engine.venue
    latencies: list[int] = []
    clock = engine.clock
    started = time.perf_counter()
    for message in messages:
        t0 = time.perf_counter_ns()
        clock.set(message["ts"])
        venue.on_public(message)
        for private in venue.drain():
            core.on_private(private)
        core.on_public(message)
        for private in venue.drain():
            core.on_private(private)
        latencies.append(time.perf_counter_ns() - t0)
    pipeline_s = time.perf_counter() - started

    pipeline = SignalPipeline(DEFAULT_CONFIG, lambda symbol: None)
    stage_latencies: list[int] = []
    started = time.perf_counter()
    for event in decoded:
        t0 = time.perf_counter_ns()
        pipeline.on_event(event)
        stage_latencies.append(time.perf_counter_ns() - t0)
    stages_s = time.perf_counter() - started

    # Seed 7: entries, fills and exits happen in this data set, so execution is on the measured path.
    print(f"messages {len(messages):,}, market events {events:,}, trades {len(engine.persistence.trades)}, "
          f"entries sent {core.counters.entries_sent}")
    print(f"baseline decode only      : {events / decode_s:>10,.0f} events/s")
    print(
        f"full pipeline (REPLAY)    : {events / pipeline_s:>10,.0f} events/s   ratio to baseline "
        f"{(events / pipeline_s) / (events / decode_s):.2f}"
    )
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(f"  per message latency     : p50 {p50:.1f} us   p99 {p99:.1f} us")
    print(
        f"signal stages only        : {events / stages_s:>10,.0f} events/s   "
        f"p50 {percentile(stage_latencies, 0.5):.1f} us   p99 {percentile(stage_latencies, 0.99):.1f} us"
    )
    print(
        f"time split per message    : decode {decode_s / pipeline_s:.0%}, signal stages {stages_s / pipeline_s:.0%}, "
        f"venue matching and the rest {max(0.0, 1 - (decode_s + stages_s) / pipeline_s):.0%}"
    )

    ten = list(DEFAULT_INSTRUMENTS)[:10]
    engine10 = BacktestEngine(symbols=ten)
    samples = []
    chunk = args.memory_messages // 4
    stream = generate_messages(ten, 9, T0, max_messages=args.memory_messages)
    for _ in range(4):
        engine10.run(itertools.islice(stream, chunk))  # streamed, as REPLAY reads a file: only the engine is held
        samples.append(rss_mb())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"10 symbols, {args.memory_messages:,} messages: RSS after each quarter "
        f"{', '.join(f'{s:.0f}' for s in samples)} MB; growth {samples[-1] - samples[0]:+.1f} MB"
    )
    print(f"peak RSS of this process  : {peak:.0f} MB (includes the {len(messages):,} messages held for timing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
