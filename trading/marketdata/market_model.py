"""The parameters of the seeded market model: its regimes and everything else the generator draws from.

A regime sets how the hidden fair price moves (volatility, drift, jumps), how
busy and heavy the takers are, and how thick the makers quote; a Markov chain
over ``transitions`` moves a symbol between regimes. The other fields shape the
book, the Hawkes arrivals of taker orders, the stream's cadence and latencies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RegimeParams:
    name: str
    vol_annual: float  # diffusion volatility of the fair price
    drift_per_hour: float  # size of the drift; its sign is drawn on entering the regime
    jumps_per_hour: float
    jump_sigma: float  # log-size of a jump
    trade_rate: float  # Hawkes baseline of taker orders per second
    trade_size_mult: float
    spread_extra_ticks: float  # mean spread in ticks above the one-tick minimum
    depth_mult: float  # size of newly quoted levels; below 1 thins the book
    gap_ticks: float  # mean empty ticks the regime adds between quoted levels (thinner book)
    book_interval_ms: float  # mean time between orderbook pushes
    mean_dwell_s: float


CALM = RegimeParams("calm", 0.25, 0.0, 0.5, 0.002, 1.5, 1.0, 0.05, 1.0, 0.0, 100.0, 240.0)
TRENDING = RegimeParams("trending", 0.45, 0.03, 1.0, 0.003, 3.0, 1.3, 0.3, 0.7, 0.3, 60.0, 120.0)
STRESSED = RegimeParams("stressed", 1.2, 0.0, 6.0, 0.006, 6.0, 1.8, 3.0, 0.3, 1.5, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class MarketModelConfig:
    regimes: tuple[RegimeParams, ...] = (CALM, TRENDING, STRESSED)
    # transitions[i][j]: chance that leaving regime i enters regime j
    transitions: tuple[tuple[float, ...], ...] = ((0.0, 0.75, 0.25), (0.6, 0.0, 0.4), (0.7, 0.3, 0.0))
    start_regime: int = 0
    hawkes_alpha: float = 3.0  # taker intensity added by each taker order, per second
    hawkes_beta: float = 5.0  # decay of that excitation, per second; alpha/beta < 1 keeps it stationary
    depth: int = 50
    level_notional: float = 40_000.0  # typical USDT resting at a level ten ticks deep in calm
    trade_notional: float = 2_000.0  # median taker order in calm
    trade_size_sigma: float = 1.3  # lognormal spread of taker orders: most small, a few sweep
    max_sweep_levels: int = 10
    impact_bps: float = 0.1  # permanent fair-price move of a level-sized taker order
    flow_sensitivity: float = 0.3  # how far short-term drift tilts takers from 50/50
    momentum_decay: float = 0.8
    ticker_interval_ms: int = 100
    klines: bool = False
    kline_push_ms: int = 1_000
    trade_latency_ms: int = 3  # publicTrade ts lags the match time T
    book_latency_ms: int = 2  # orderbook ts lags the matching-engine cts

    def __post_init__(self) -> None:
        n = len(self.regimes)
        if len(self.transitions) != n or any(len(row) != n for row in self.transitions):
            raise ValueError("transitions must be a square matrix over the regimes")
        if any(abs(sum(row) - 1.0) > 1e-9 for row in self.transitions):
            raise ValueError("each transitions row must sum to 1")
        if not 0 <= self.start_regime < n:
            raise ValueError("start_regime out of range")
        if not 0 <= self.hawkes_alpha < self.hawkes_beta:
            raise ValueError("need 0 <= hawkes_alpha < hawkes_beta for a stationary trade process")
        if self.depth < 2:
            raise ValueError("depth must be at least 2")
