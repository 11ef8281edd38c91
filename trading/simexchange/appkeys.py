"""Typed keys of the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from .core import SimExchange
from .ratelimit import RateWindow

SIM = web.AppKey("sim", SimExchange)
RATES = web.AppKey("rates", RateWindow)
