"""Incremental per-symbol features, constant work and no allocation per event.

Every statistic is a time-decayed sum: on each event all sums are multiplied by
``exp(-dt * ln2 / half_life)`` for the time since the previous event, then the
new observation is added. That makes the decay follow exchange time (``ts_ms``)
rather than the event count, so a burst of 500 book updates in one second
weighs the same as one update per second would.

Price series: when the feed carries quotes (book events, or tickers with
bid/ask) returns are taken on the mid price, and trade prints feed only order
flow and VWAP; mixing trade prints into the return series would add bid-ask
bounce to the volatility. A trade-only feed (no quote ever seen) uses the trade
price.
"""

from __future__ import annotations

import math

from trading.domain.config import FeatureConfig
from trading.marketdata.events import TRADE, MarketEvent

_LN2 = math.log(2.0)
BPS = 10_000.0


class Features:
    """The latest features of one symbol; the engine reuses this object, so copy out the values you keep."""

    __slots__ = (
        "symbol",
        "ts_ms",
        "price",
        "bid",
        "ask",
        "spread_bps",
        "ret_bps",
        "vol_bps",
        "ofi",
        "vwap",
        "vwap_dev_bps",
        "mom_fast_bps",
        "mom_slow_bps",
        "updates",
        "ready",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.ts_ms = 0
        self.price = 0.0  # reference price: mid when quoted, else last trade/ticker price
        self.bid = 0.0
        self.ask = 0.0
        self.spread_bps = 0.0
        self.ret_bps = 0.0  # log return of the reference price at this event, in bps
        self.vol_bps = 0.0  # 1-sigma log move over the configured horizon, in bps
        self.ofi = 0.0  # order-flow imbalance in [-1, 1]: decayed signed / total traded volume
        self.vwap = 0.0  # time-decayed VWAP; 0 until the first trade
        self.vwap_dev_bps = 0.0  # (price - vwap) / vwap
        self.mom_fast_bps = 0.0  # decayed sum of log returns, fast half-life
        self.mom_slow_bps = 0.0  # ... slow half-life
        self.updates = 0  # price observations that produced a return
        self.ready = False


class FeatureEngine:
    """Fold market events of one symbol into ``Features``."""

    __slots__ = (
        "symbol",
        "_f",
        "_k_vol",
        "_k_flow",
        "_k_vwap",
        "_k_fast",
        "_k_slow",
        "_horizon_ms",
        "_warmup",
        "_last_ts",
        "_last_price",
        "_quoted",
        "_var_sum",
        "_time_sum",
        "_flow_signed",
        "_flow_total",
        "_vwap_pv",
        "_vwap_v",
        "_mom_fast",
        "_mom_slow",
        "_decays",
    )

    def __init__(self, symbol: str, config: FeatureConfig) -> None:
        self.symbol = symbol
        self._f = Features(symbol)
        self._last_ts = -1
        self._last_price = 0.0
        self._quoted = False
        self._var_sum = 0.0  # decayed sum of squared log returns
        self._time_sum = 0.0  # decayed sum of elapsed ms, same decay: their ratio is variance per ms
        self._flow_signed = 0.0
        self._flow_total = 0.0
        self._vwap_pv = 0.0
        self._vwap_v = 0.0
        self._mom_fast = 0.0
        self._mom_slow = 0.0
        self.apply_config(config)

    def apply_config(self, config: FeatureConfig) -> None:
        """Take new half-lives and warm-up; accumulated state is kept."""
        self._k_vol = _LN2 / config.vol_half_life_ms
        self._k_flow = _LN2 / config.flow_half_life_ms
        self._k_vwap = _LN2 / config.vwap_half_life_ms
        self._k_fast = _LN2 / config.momentum_fast_half_life_ms
        self._k_slow = _LN2 / config.momentum_slow_half_life_ms
        self._horizon_ms = config.vol_horizon_ms
        self._warmup = config.warmup_events
        # Decay factors by elapsed ms: a feed's gaps take a few hundred values, so the five exps of
        # a gap are computed once and looked up after (bounded: a hostile feed cannot grow it).
        self._decays: dict[int, tuple[float, float, float, float, float]] = {}

    @property
    def features(self) -> Features:
        """Return the current features (the reused object)."""
        return self._f

    @property
    def ready(self) -> bool:
        """Tell whether enough returns were seen for the features to mean something."""
        return self._f.ready

    def update(self, event: MarketEvent) -> Features:
        """Fold ``event`` in and return the (reused) ``Features``."""
        f = self._f
        # One unpacking and the sums in locals: each attribute read and write is a step of the hot loop.
        kind, _, ts, event_price, qty, side, bid, ask, _, _ = event
        var_sum, time_sum = self._var_sum, self._time_sum
        flow_signed, flow_total = self._flow_signed, self._flow_total
        vwap_pv, vwap_v = self._vwap_pv, self._vwap_v
        mom_fast, mom_slow = self._mom_fast, self._mom_slow
        last_ts = self._last_ts
        if last_ts < 0:
            self._last_ts = ts
        elif ts > last_ts:
            self._last_ts = ts
            step = ts - last_ts
            decays = self._decays.get(step)
            if decays is None:
                decays = self._decay(step)
            d_vol, d_flow, d_vwap, d_fast, d_slow = decays
            var_sum *= d_vol
            time_sum = time_sum * d_vol + step
            flow_signed *= d_flow
            flow_total *= d_flow
            vwap_pv *= d_vwap
            vwap_v *= d_vwap
            mom_fast *= d_fast
            mom_slow *= d_slow
        # else: the same millisecond, or out of order: no time passes; never run the clock backwards.

        price = 0.0
        if bid > 0.0 and ask >= bid:
            mid = (bid + ask) * 0.5
            f.bid = bid
            f.ask = ask
            f.spread_bps = (ask - bid) / mid * BPS
            self._quoted = True
            price = mid
        elif not self._quoted and event_price > 0.0:
            price = event_price

        if kind == TRADE and qty > 0.0:
            flow_signed += side * qty
            flow_total += qty
            vwap_pv += event_price * qty
            vwap_v += qty

        ret_bps = 0.0
        if price > 0.0:
            last_price = self._last_price
            if last_price > 0.0:
                r = math.log(price / last_price)
                var_sum += r * r
                ret_bps = r * BPS
                mom_fast += ret_bps
                mom_slow += ret_bps
                f.updates += 1
            self._last_price = price
            f.price = price
        else:
            price = f.price

        self._var_sum, self._time_sum = var_sum, time_sum
        self._flow_signed, self._flow_total = flow_signed, flow_total
        self._vwap_pv, self._vwap_v = vwap_pv, vwap_v
        self._mom_fast, self._mom_slow = mom_fast, mom_slow
        f.ts_ms = ts
        f.ret_bps = ret_bps
        f.vol_bps = math.sqrt(var_sum / time_sum * self._horizon_ms) * BPS if time_sum > 0.0 else 0.0
        f.ofi = flow_signed / flow_total if flow_total > 0.0 else 0.0
        if vwap_v > 0.0 and price > 0.0:
            vwap = vwap_pv / vwap_v
            f.vwap = vwap
            f.vwap_dev_bps = (price - vwap) / vwap * BPS
        else:
            f.vwap = 0.0
            f.vwap_dev_bps = 0.0
        f.mom_fast_bps = mom_fast
        f.mom_slow_bps = mom_slow
        f.ready = f.updates >= self._warmup and time_sum > 0.0
        return f

    def _decay(self, step: int) -> tuple[float, float, float, float, float]:
        """Return the decay factors of ``step`` ms (vol, flow, vwap, fast and slow momentum), kept for reuse."""
        dt = float(step)
        exp = math.exp
        decays = (
            exp(-self._k_vol * dt), exp(-self._k_flow * dt), exp(-self._k_vwap * dt),
            exp(-self._k_fast * dt), exp(-self._k_slow * dt),
        )  # fmt: skip
        if len(self._decays) < 4_096:
            self._decays[step] = decays
        return decays
