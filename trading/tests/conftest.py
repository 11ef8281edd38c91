"""Fixtures shared by the trading tests."""

from __future__ import annotations

from trading.tests.process_kit import environment  # noqa: F401 (a fixture, found by name)
