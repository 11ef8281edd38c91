"""Generated data sets kept as files: ``run_trader --mode REPLAY --events N --seed S`` generates once.

The seeded generator makes tens of thousands of messages a second, several times
slower than REPLAY runs them, so a generated data set is written once to a file
named by everything that decides its bytes (symbols, seed, count, start, and the
generator's own source), and every later REPLAY with the same arguments reads
that file. A change to the generator's code names a new file; only the newest
``KEEP`` files are kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from trading.marketdata import generator, market_model, messages, symbol_market
from trading.marketdata.generator import generate_messages
from trading.marketdata.jsonl import write_messages

KEEP = 4
_PREFIX = "generated-"


def _code_digest() -> str:
    """Return a digest of the generator's source: what decides the bytes besides the arguments."""
    digest = hashlib.sha256()
    for module in (generator, market_model, messages, symbol_market):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


def generated_name(symbols: Sequence[str], seed: int, events: int, start_ms: int) -> str:
    """Return the file name of a generated data set: readable arguments, then a key over them and the code."""
    spec = json.dumps({"symbols": list(symbols), "seed": seed, "events": events, "startMs": start_ms,
                       "code": _code_digest()}, sort_keys=True)
    key = hashlib.sha256(spec.encode()).hexdigest()[:16]
    return f"{_PREFIX}{'-'.join(symbols)}-seed{seed}-n{events}-{key}.jsonl.gz"


def generated_file(folder: Path, symbols: Sequence[str], seed: int, events: int, start_ms: int) -> Path:
    """Return the file of a generated data set under ``folder``, generating it first if it is not there yet."""
    path = folder / generated_name(symbols, seed, events, start_ms)
    if not path.is_file():
        # Written atomically: a REPLAY started meanwhile with the same arguments writes the same bytes.
        write_messages(path, generate_messages(list(symbols), seed, start_ms, max_messages=events), compresslevel=1)
        _prune(folder, keep=path)
    return path


def _prune(folder: Path, *, keep: Path) -> None:
    """Delete all but the ``KEEP`` newest generated files (never ``keep``)."""
    files = sorted(folder.glob(f"{_PREFIX}*.jsonl.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[KEEP:]:
        if old != keep:
            old.unlink(missing_ok=True)
