"""Market sources the simulator can play: a JSONL recording or the seeded generator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT")


def file_source(path: Path) -> Iterator[dict[str, Any]]:
    """Play a JSONL file of Bybit public messages, one message per line as Bybit sent it."""
    from trading.marketdata.jsonl import read_messages

    return read_messages(path)


def seeded_source(symbols: list[str], seed: int, start_ms: int | None = None) -> Iterator[dict[str, Any]]:
    """Play the seeded market generator, starting now, without end."""
    from trading.marketdata.generator import generate_messages

    return generate_messages(symbols, seed, start_ms if start_ms is not None else int(time.time() * 1000))
