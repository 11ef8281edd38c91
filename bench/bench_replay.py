"""REPLAY from a file through the CLI, per-message latency, and typed decoding beside the standard library's.

Run from the project root: ``python bench/bench_replay.py [--events N] [--seed S]``.

Measured in one run, on the same generated data set (2 symbols, written once under a
temp data folder exactly as ``run_trader --events N --seed S`` caches it):
- the CLI: ``manage.py run_trader --mode REPLAY --replay FILE`` in a child process, its
  printed events/s (the pipeline's time with decoding, the file's reading between
  chunks), its wall time and peak RSS;
- per message, in this process: the same path (``BacktestEngine.run_lines``), each
  message's decode and pipeline timed as the gap between two lines handed on;
- baseline: the path REPLAY took before, ``json.loads`` of each line then the plain
  dict pipeline (the normaliser and the exchange parsing strings), in the same loop;
- decoding alone: ``json.loads`` plus the float parsing the pipeline needs (book
  levels, ticker fields) against msgspec's typed decode (``wire.PublicDecoder``);
- where the time goes, per message: the same in-process run with the signal stages,
  then also the exchange, made free (each replaced by a function that does nothing),
  and the lines only decoded. What is left when both are free is the ceiling the
  decoder and the normaliser allow on this machine, printed beside the target.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trading.engine.replay import REPLAY_START_MS, BacktestEngine  # noqa: E402
from trading.marketdata.datasets import generated_file  # noqa: E402
from trading.marketdata.jsonl import TypedLines, read_line_chunks  # noqa: E402
from trading.marketdata.wire import PublicDecoder  # noqa: E402

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
_TICKER_FLOATS = ("lastPrice", "bid1Price", "ask1Price", "bid1Size", "ask1Size")


def _stdlib_decode(line: bytes) -> dict[str, Any]:
    """What decoding cost before: ``json.loads``, then floats for the book levels and ticker fields."""
    message: dict[str, Any] = json.loads(line)
    data = message.get("data")
    if isinstance(data, dict):
        if "b" in data:
            data["b"] = {float(p): float(q) for p, q in data["b"]}
            data["a"] = {float(p): float(q) for p, q in data["a"]}
        else:
            for key in _TICKER_FLOATS:
                if key in data:
                    data[key] = float(data[key])
    return message


def _rate(count: int, work: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)


def _gaps(lines: Iterable[bytes], out: list[int]) -> Iterator[bytes]:
    """Hand lines on, recording the time between two: one message's decode and pipeline, with this loop's cost."""
    clock = time.perf_counter_ns
    last = clock()
    for line in lines:
        yield line
        now = clock()
        out.append(now - last)
        last = now


def _percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def _cli(path: Path, data_dir: Path) -> tuple[str, float, float]:
    """Run the CLI on ``path``; return its summary line, wall seconds and peak RSS of the child in MB."""
    env = {**os.environ, "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "bench-only-secret"),
           "SCALPER_DATA_DIR": str(data_dir)}
    command = [sys.executable, "manage.py", "run_trader", "--mode", "REPLAY", "--symbols", ",".join(SYMBOLS),
               "--replay", str(path)]
    started = time.perf_counter()
    # Started from a small interpreter: a child forked from this large process would count its pages as its peak.
    done = subprocess.run([sys.executable, "-c", _MEASURED, *command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900, check=True)
    wall = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    return lines[-2], wall, int(lines[-1]) / 1024


_MEASURED = """import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)
"""


def _in_process(lines: list[bytes], path: Path) -> tuple[float, float, float, int]:
    """The CLI's path in this process: events/s, p50 and p99 per message in us, trades."""
    engine = BacktestEngine(symbols=SYMBOLS)
    gaps: list[int] = []
    gc.collect()
    result = engine.run_lines(_gaps(lines, gaps), source=str(path))
    return result.events_per_second, _percentile(gaps, 0.5), _percentile(gaps, 0.99), len(result.trades)


def _parts(lines: list[bytes], path: Path) -> tuple[float, float, float, float, float]:
    """us per message: the full run, signal stages free, signal stages and exchange free, decode only; and
    market events per message."""

    def timed(free_signals: bool, free_venue: bool) -> tuple[float, float]:
        engine = BacktestEngine(symbols=SYMBOLS)
        if free_signals:
            engine.core.pipeline.on_event = lambda event: None  # type: ignore[method-assign]
        if free_venue:
            engine.venue.on_public = lambda message: None  # type: ignore[method-assign]
        gc.collect()
        result = engine.run_lines(lines, source=str(path))
        return result.seconds / len(lines) * 1e6, result.events / len(lines)

    decoder = TypedLines(SYMBOLS)
    gc.collect()
    started = time.perf_counter()
    for _ in decoder.decoded(lines, source=str(path)):
        pass
    decode_us = (time.perf_counter() - started) / len(lines) * 1e6
    full, events_per_message = timed(False, False)
    no_signals, no_venue = timed(True, False)[0], timed(True, True)[0]
    return full, no_signals, no_venue, decode_us, events_per_message


def _stdlib_path(lines: list[bytes]) -> tuple[float, float, int]:
    """The path before typed decoding: ``json.loads`` per line, then the pipeline on plain dicts."""
    engine = BacktestEngine(symbols=SYMBOLS)
    gaps: list[int] = []
    gc.collect()
    result = engine.run(json.loads(line) for line in _gaps(lines, gaps))
    return result.events_per_second, _percentile(gaps, 0.99), len(result.trades)


def _spread(values: list[float]) -> str:
    return f"{max(values):,.0f} (spread {min(values):,.0f}-{max(values):,.0f})"


def main(argv: list[str] | None = None) -> int:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="messages in the generated data set")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=3, help="each measurement, interleaved with its baseline")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench" / "results" / "replay",
                        help="where the generated data set is kept between runs")
    args = parser.parse_args(argv)
    data_dir = args.data_dir
    started = time.perf_counter()
    path = generated_file(data_dir / "market" / "generated", SYMBOLS, args.seed, args.events, REPLAY_START_MS)
    generation_s = time.perf_counter() - started
    lines = [line for _, chunk in read_line_chunks(path) for line in chunk]
    gc.collect()
    gc.freeze()  # the raw lines are the bench's, not the pipeline's heap

    cli, typed, plain, typed_dec, plain_dec, parts = [], [], [], [], [], []
    for _ in range(args.repeat):  # interleaved: a shared machine's load falls on both alike
        summary, wall, cli_peak = _cli(path, data_dir)
        cli.append(float(re.search(r"([\d,]+) events/s", summary).group(1).replace(",", "")))  # type: ignore[union-attr]
        typed.append(_in_process(lines, path))
        plain.append(_stdlib_path(lines))
        decoder = PublicDecoder()
        typed_dec.append(_rate(len(lines), lambda: [decoder.decode(line) for line in lines]))  # noqa: B023
        plain_dec.append(_rate(len(lines), lambda: [_stdlib_decode(line) for line in lines]))
        parts.append(_parts(lines, path))
    best, base = max(typed, key=lambda r: r[0]), max(plain, key=lambda r: r[0])

    print(f"{len(lines):,} messages of {','.join(SYMBOLS)}, seed {args.seed} (generated once in {generation_s:.1f} s); "
          f"best of {args.repeat}")
    print(f"CLI run_trader --mode REPLAY --replay FILE : {_spread(cli)} events/s   last wall {wall:.1f} s, "
          f"peak RSS {cli_peak:.0f} MB")
    print(f"  {summary}")
    print(f"same path in process (typed decode)        : {_spread([r[0] for r in typed])} events/s   "
          f"p50 {best[1]:.1f} us, p99 {best[2]:.1f} us per message (best run), {best[3]} trades")
    print(f"  baseline json.loads + plain dict pipeline: {_spread([r[0] for r in plain])} events/s   "
          f"p99 {base[1]:.1f} us, {base[2]} trades; ratio of bests {best[0] / base[0]:.2f}")
    print(f"decode only: msgspec typed (wire)          : {_spread(typed_dec)} msg/s")
    print(f"  baseline json.loads + float parsing      : {_spread(plain_dec)} msg/s   "
          f"ratio of bests {max(typed_dec) / max(plain_dec):.2f}")
    full, no_signals, no_venue, decode_only = (min(p[i] for p in parts) for i in range(4))
    events_per_message = parts[0][4]
    print(f"where the time goes, us per message (best of {args.repeat}): all {full:.2f} = "
          f"signal stages {full - no_signals:.2f} + exchange {no_signals - no_venue:.2f} + "
          f"normaliser, core and loop {no_venue - decode_only:.2f} + decode {decode_only:.2f}")
    ceiling = events_per_message / no_venue * 1e6
    print(f"  ceiling with the signal stages and the exchange free: {ceiling:,.0f} events/s "
          f"(target 150,000: {1e6 / 150_000 * events_per_message:.2f} us per message)")
    print(f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"(holds the {len(lines):,} raw lines and, decoding alone, their messages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
