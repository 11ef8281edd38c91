"""One symbol of the seeded market: its hidden fair price, its book in integer ticks, and its streams.

The fair price diffuses with the regime's volatility, drift and jumps; makers
quote a ``depth``-level book around it in integer ticks and qty steps; taker
orders arrive as a Hawkes process and sweep it from the touch. Each step returns
the Bybit message it produces (``orderbook`` deltas against the book published
so far, ``publicTrade``, ``tickers`` deltas, ``kline``), formatted by integer
arithmetic: this is the inner loop of every generated market.
"""

from __future__ import annotations

import math
import random
import sys
from bisect import bisect_left, insort
from collections.abc import Callable
from typing import Any

from trading.marketdata import messages as m
from trading.marketdata.instruments import InstrumentSpec
from trading.marketdata.market_model import MarketModelConfig

_MS_PER_YEAR = 365 * 86_400_000
_FUNDING_PERIOD_MS = 8 * 3_600_000
_TABLE_BITS = 12  # size of the precomputed random tables (4096 draws each)
Tables = tuple[list[float], list[float]]  # lognormal(0, 0.5) and exponential(1) draws
# Ticker fields in Bybit's order with how each number prints: p price ticks, q qty steps,
# e6/e4/e2 integers scaled by 10**n, s as is.
_TICKER_FIELDS = (
    ("tickDirection", "s"), ("price24hPcnt", "e6"), ("lastPrice", "p"), ("prevPrice24h", "p"),
    ("highPrice24h", "p"), ("lowPrice24h", "p"), ("prevPrice1h", "p"), ("markPrice", "p"), ("indexPrice", "p"),
    ("openInterest", "q"), ("openInterestValue", "e2"), ("turnover24h", "e4"), ("volume24h", "q"),
    ("nextFundingTime", "s"), ("fundingRate", "e6"), ("bid1Price", "p"), ("bid1Size", "q"), ("ask1Price", "p"),
    ("ask1Size", "q"),
)  # fmt: skip


def random_tables(rng: random.Random) -> Tables:
    """Draw the tables the symbols share; a look-up by random index is far cheaper than a draw per level."""
    return (
        [rng.lognormvariate(0.0, 0.5) for _ in range(1 << _TABLE_BITS)],
        [rng.expovariate(1.0) for _ in range(1 << _TABLE_BITS)],
    )


class _BookSide:
    """One side of a book keyed so the best level comes first: ask prices, or bid prices negated."""

    __slots__ = ("keys", "sizes", "pub", "dirty", "sign", "stop")

    def __init__(self, sign: int) -> None:
        self.keys: list[int] = []  # ascending, best first
        self.sizes: dict[int, int] = {}  # key -> size in qty steps
        self.pub: dict[int, int] = {}  # the book as the stream has shown it so far
        self.dirty: set[int] = set()  # keys touched since the last push
        self.sign = sign  # price in ticks = sign * key
        self.stop = -1 if sign < 0 else sys.maxsize  # last key whose price is still positive


class SymbolMarket:
    """One symbol's hidden state, book and stream counters."""

    def __init__(self, spec: InstrumentSpec, cfg: MarketModelConfig, rng: random.Random, tables: Tables, t0: int):
        self.cfg, self.rng, self.symbol = cfg, rng, spec.symbol
        self.lognorm, self.expo = tables
        self.fp, self.fq = m.unit_formatter(spec.tick_size), m.unit_formatter(spec.qty_step)
        self.text: dict[str, Callable[[Any], str]] = {
            "p": self.fp, "q": self.fq, "s": str,
            "e6": lambda v: f"{v / 1e6:.6f}", "e4": lambda v: f"{v / 1e4:.4f}", "e2": lambda v: f"{v / 1e2:.2f}",
        }  # fmt: skip
        start = int(spec.start_price / spec.tick_size)
        self.step_notional = float(spec.tick_size) * float(spec.qty_step)  # USDT of one step at one tick
        self.min_steps = max(1, int(spec.min_qty / spec.qty_step))
        self.level_steps = cfg.level_notional / (start * self.step_notional)
        # Where a tick is a tiny fraction of a basis point (BTC at 0.1) makers leave most ticks
        # empty, so the top 50 levels span tens of ticks as on Bybit.
        self.base_gap = min(3.0, max(0.0, 0.05 * start / 1e4 - 1.0))  # 0.05 bp over the tick in bp
        self.book_topic = m.orderbook_topic(spec.symbol, cfg.depth)
        self.trade_topic, self.ticker_topic = m.trade_topic(spec.symbol), m.ticker_topic(spec.symbol)
        self.kline_topic = m.kline_topic(spec.symbol)
        self.regime, self.regime_end = cfg.start_regime, 0.0
        self.reg = cfg.regimes[cfg.start_regime]
        self._switch_regime(float(t0))
        self.last_book_t, self.fair, self.mom, self.extra = float(t0), start + 0.5, 0.0, 0
        self.exc = self.exc_t = 0.0
        self.bids, self.asks = _BookSide(-1), _BookSide(1)
        self.u = rng.randrange(10**6, 10**8)
        self.xseq = rng.randrange(10**9, 10**10)
        self.last_px, self.tick_dir, self.last_T = start, m.PLUS_TICK, 0
        self.vol24 = int(rng.uniform(5_000, 15_000) * self.level_steps)
        self.turn24 = self.vol24 * self.step_notional * start
        self.prev24 = int(start * (1 + rng.uniform(-0.03, 0.03)))
        self.prev1h = int(start * (1 + rng.uniform(-0.005, 0.005)))
        self.high = max(start, self.prev24, self.prev1h) + int(start * rng.uniform(0.002, 0.02))
        self.low = min(start, self.prev24, self.prev1h) - int(start * rng.uniform(0.002, 0.02))
        self.mark, self.basis = float(start), rng.uniform(-2e-4, 2e-4)
        self.oi, self.funding = self.vol24 // 5, rng.uniform(-1e-4, 2e-4)
        self.sent: list[Any] = []
        self.k_start = t0 - t0 % 60_000
        self.k_open = self.k_high = self.k_low = start
        self.k_vol, self.k_turn = 0, 0.0
        self.k_closed: dict[str, Any] | None = None
        self._requote_both()
        for side in (self.bids, self.asks):
            side.pub = dict(side.sizes)
            side.dirty.clear()

    # --- hidden dynamics -------------------------------------------------------------------

    def _switch_regime(self, t: float) -> None:
        """Leave the regime when its dwell ends: Markov step, new dwell, new drift sign."""
        cfg, rng = self.cfg, self.rng
        if self.regime_end:  # zero only when the symbol starts, in the configured regime
            row, draw, nxt = cfg.transitions[self.regime], rng.random(), 0
            while nxt < len(row) - 1 and draw >= row[nxt]:
                draw -= row[nxt]
                nxt += 1
            self.regime, self.reg = nxt, cfg.regimes[nxt]
        reg = self.reg
        self.gap_mean = self.base_gap + reg.gap_ticks
        self.size_base = self.level_steps * reg.depth_mult
        self.regime_end = t + rng.expovariate(1.0 / (reg.mean_dwell_s * 1000.0))
        self.drift = (1.0 if rng.random() < 0.5 else -1.0) * reg.drift_per_hour / 3_600_000.0

    def _requote_both(self) -> None:
        """Aim the touch at the fair price with a sticky, regime-dependent spread."""
        rng, extra = self.rng, self.reg.spread_extra_ticks
        if rng.random() < 0.2:  # spreads persist, so re-draw only now and then
            self.extra = int(rng.expovariate(1.0 / extra)) if extra > 0 else 0
        spread = 1 + self.extra
        bb = math.floor(self.fair + 0.5 - spread / 2.0)
        self._requote(self.bids, -bb)
        self._requote(self.asks, bb + spread)

    def _requote(self, side: _BookSide, touch: int) -> None:
        """Pull levels through the touch key, quote up to it, and keep exactly ``depth`` levels."""
        keys, sizes, dirty = side.keys, side.sizes, side.dirty
        depth, bits, lognorm, expo = self.cfg.depth, self.rng.getrandbits, self.lognorm, self.expo
        base, gm, floor_ = self.size_base, self.gap_mean, self.min_steps
        i = bisect_left(keys, touch)
        if i:
            gone = keys[:i]
            del keys[:i]
            for k in gone:
                del sizes[k]
            dirty.update(gone)
        limit = min(keys[0], touch + depth) if keys else touch + depth
        if touch < limit:
            new: list[int] = []
            k = touch
            while k < limit:
                sizes[k] = int(base * (0.3 + 0.07 * len(new)) * lognorm[bits(_TABLE_BITS)]) + floor_
                new.append(k)
                k += 1 + int(gm * expo[bits(_TABLE_BITS)])
            dirty.update(new)
            keys[:0] = new
        n = len(keys)
        if n > depth:
            gone = keys[depth:]
            del keys[depth:]
            for k in gone:
                del sizes[k]
            dirty.update(gone)
            return
        k, stop = keys[-1], side.stop
        while n < depth:  # levels that enter the top ``depth`` from below
            k += 1 + int(gm * expo[bits(_TABLE_BITS)])
            if k > stop:
                break
            sizes[k] = int(base * (0.3 + 0.07 * n) * lognorm[bits(_TABLE_BITS)]) + floor_
            keys.append(k)
            dirty.add(k)
            n += 1

    def _make(self, side: _BookSide) -> None:
        """Let makers cancel, add behind, or resize a few levels of one side."""
        rng, lognorm, keys, sizes, dirty = self.rng, self.lognorm, side.keys, side.sizes, side.dirty
        for _ in range(1 + rng.getrandbits(1) + rng.getrandbits(1)):
            n = len(keys)
            j = int(rng.random() * n)
            k, r = keys[j], rng.random()
            if r < 0.15 and n > 2:
                keys.pop(j)
                del sizes[k]
                dirty.add(k)
            elif r < 0.3:
                q = k + 1  # one tick further from the touch, so a new level can never cross
                if q not in sizes and q <= side.stop:
                    insort(keys, q)
                    sizes[q] = (
                        int(self.size_base * (0.3 + 0.07 * j) * lognorm[rng.getrandbits(_TABLE_BITS)]) + self.min_steps
                    )
                    dirty.add(q)
            else:
                sizes[k] = max(self.min_steps, int(sizes[k] * lognorm[rng.getrandbits(_TABLE_BITS)]))
                dirty.add(k)

    def _levels(self, side: _BookSide) -> m.Levels:
        """Return one side's changes since the last push and remember them; "0" deletes a shown level."""
        out: m.Levels = []
        sizes, pub, fp, fq, sign = side.sizes, side.pub, self.fp, self.fq, side.sign
        for k in sorted(side.dirty):
            q = sizes.get(k, 0)
            if pub.get(k, 0) != q:
                if q:
                    pub[k] = q
                    out.append([fp(sign * k), fq(q)])
                else:
                    del pub[k]  # only a shown level gets "0": a level added and pulled unseen is skipped
                    out.append([fp(sign * k), "0"])
        side.dirty.clear()
        return out

    def book_snapshot(self, ts: int) -> dict[str, Any]:
        """Build the orderbook snapshot of the published book."""
        fp, fq = self.fp, self.fq
        bids, asks = self.bids.pub, self.asks.pub
        b = [[fp(-k), fq(bids[k])] for k in sorted(bids)]
        a = [[fp(k), fq(asks[k])] for k in sorted(asks)]
        cts = ts - self.cfg.book_latency_ms
        return m.orderbook_message(self.book_topic, "snapshot", ts, self.symbol, b, a, self.u, self.xseq, cts)

    def book_tick(self, t: float) -> dict[str, Any] | None:
        """Advance the fair price to ``t``, let makers re-quote, and return the delta (None if unchanged)."""
        rng, reg = self.rng, self.reg
        if t >= self.regime_end:
            self._switch_regime(t)
            reg = self.reg
        dt = t - self.last_book_t
        self.last_book_t = t
        z = rng.gauss(0.0, 1.0)
        ret = self.drift * dt + reg.vol_annual * math.sqrt(dt / _MS_PER_YEAR) * z
        if rng.random() < reg.jumps_per_hour * dt / 3_600_000.0:
            ret += rng.gauss(0.0, reg.jump_sigma)
        self.fair = max(self.fair * math.exp(ret), 4.0 * self.cfg.depth)
        # the short-term drift takers lean into: recent shocks plus the trend's sign
        self.mom = self.cfg.momentum_decay * self.mom + z + (0.5 if self.drift > 0 else -0.5 if self.drift < 0 else 0.0)
        self._make(self.bids)
        self._make(self.asks)
        self._requote_both()
        b, a = self._levels(self.bids), self._levels(self.asks)
        if not b and not a:
            return None
        self.u += 1
        self.xseq += 1 + rng.getrandbits(4)
        ts = int(t)
        cts = ts - self.cfg.book_latency_ms
        return m.orderbook_message(self.book_topic, "delta", ts, self.symbol, b, a, self.u, self.xseq, cts)

    def book_wait(self) -> float:
        """Draw the time until the next orderbook push; never below Bybit's 20 ms cadence."""
        return 20.0 + self.rng.expovariate(1.0 / max(self.reg.book_interval_ms - 20.0, 1.0))

    # --- trades ----------------------------------------------------------------------------

    def next_trade_time(self, t: float) -> float:
        """Draw the next taker arrival after ``t`` by thinning the Hawkes intensity."""
        rng, beta = self.rng, self.cfg.hawkes_beta / 1000.0
        mu = self.reg.trade_rate / 1000.0
        exc = self.exc * math.exp(-beta * (t - self.exc_t))
        while True:
            bound = mu + exc  # valid because the excitation only decays until the next arrival
            w = rng.expovariate(bound)
            t += w
            exc *= math.exp(-beta * w)
            if rng.random() * bound <= mu + exc:
                self.exc, self.exc_t = exc, t
                return t

    def trade(self, t: float) -> dict[str, Any]:
        """Let one taker order sweep the book from the touch and return its publicTrade message."""
        cfg, rng = self.cfg, self.rng
        self.exc += cfg.hawkes_alpha / 1000.0
        buy = rng.random() < 0.5 + cfg.flow_sensitivity * math.tanh(self.mom / 3.0)
        notional = cfg.trade_notional * self.reg.trade_size_mult * rng.lognormvariate(0.0, cfg.trade_size_sigma)
        want = max(self.min_steps, int(notional / (self.fair * self.step_notional)))
        side = self.asks if buy else self.bids
        keys, sizes, dirty, sign = side.keys, side.sizes, side.dirty, side.sign
        ts = int(t)
        T = self.last_T = max(self.last_T, ts - cfg.trade_latency_ms)
        if ts - self.k_start >= 60_000:
            self._roll_candle(ts)
        taker = m.BUY if buy else m.SELL
        fp, fq, fills, done, turnover = self.fp, self.fq, [], 0, 0.0
        levels = min(cfg.max_sweep_levels, len(keys) - 1)  # a taker never empties a side
        while want > done and levels > 0:
            k = keys[0]
            q = sizes[k]
            take = min(q, want - done)
            if take == q:
                del sizes[k]
                keys.pop(0)
                levels -= 1
            else:
                sizes[k] = q - take
            dirty.add(k)
            p = sign * k
            done += take
            turnover += p * take
            if p != self.last_px:
                self.tick_dir = m.PLUS_TICK if p > self.last_px else m.MINUS_TICK
            elif self.tick_dir == m.PLUS_TICK:
                self.tick_dir = m.ZERO_PLUS_TICK
            elif self.tick_dir == m.MINUS_TICK:
                self.tick_dir = m.ZERO_MINUS_TICK
            self.last_px = p
            self.xseq += 1 + rng.getrandbits(2)
            trade_id = m.format_trade_id(rng.getrandbits(128))
            fills.append(m.trade_entry(T, self.symbol, taker, fq(take), fp(p), self.tick_dir, trade_id, self.xseq))
        p = self.last_px
        self.high, self.low = max(self.high, p), min(self.low, p)
        self.k_high, self.k_low = max(self.k_high, p), min(self.k_low, p)
        turnover *= self.step_notional
        self.vol24 += done
        self.turn24 += turnover
        self.k_vol += done
        self.k_turn += turnover
        impact = cfg.impact_bps * 1e-4 * self.fair * math.sqrt(turnover / cfg.level_notional)
        self.fair += impact if buy else -impact
        return m.trade_message(self.trade_topic, ts, fills)

    # --- tickers and klines ----------------------------------------------------------------

    def _ticker_values(self, t: float) -> list[Any]:
        """Nudge mark, index, OI and funding, then return the ticker fields as numbers in _TICKER_FIELDS order."""
        rng = self.rng
        self.mark += 0.3 * (self.fair - self.mark)  # the mark follows the fair price smoothly
        self.basis = min(5e-4, max(-5e-4, self.basis + (rng.random() - 0.5) * 2e-6))
        if rng.random() < 0.1:
            self.oi = max(self.min_steps, self.oi + int((rng.random() - 0.48) * self.level_steps))
        if rng.random() < 0.01:
            self.funding += (rng.random() - 0.5) * 4e-6
        mark, bid, ask = round(self.mark), self.bids.keys[0], self.asks.keys[0]
        return [
            self.tick_dir, round((self.last_px / self.prev24 - 1.0) * 1e6), self.last_px, self.prev24, self.high,
            self.low, self.prev1h, mark, round(self.mark * (1.0 + self.basis)), self.oi,
            round(self.oi * self.step_notional * mark * 100), round(self.turn24 * 1e4), self.vol24,
            (int(t) // _FUNDING_PERIOD_MS + 1) * _FUNDING_PERIOD_MS, round(self.funding * 1e6),
            -bid, self.bids.sizes[bid], ask, self.asks.sizes[ask],
        ]  # fmt: skip

    def ticker_snapshot(self, ts: int) -> dict[str, Any]:
        """Build the tickers snapshot."""
        self.sent = values = self._ticker_values(ts)
        data = {"symbol": self.symbol}
        for (name, kind), value in zip(_TICKER_FIELDS, values, strict=True):
            data[name] = self.text[kind](value)
        self.xseq += 1
        return m.ticker_message(self.ticker_topic, "snapshot", ts, self.xseq, data)

    def ticker_tick(self, t: float) -> dict[str, Any] | None:
        """Return a tickers delta with the fields that changed, or None; numbers are compared before printing."""
        values, sent, text = self._ticker_values(t), self.sent, self.text
        data = {"symbol": self.symbol}
        for i, value in enumerate(values):
            if value != sent[i]:
                name, kind = _TICKER_FIELDS[i]
                data[name] = text[kind](value)
        if len(data) == 1:
            return None
        self.sent = values
        self.xseq += 1
        return m.ticker_message(self.ticker_topic, "delta", int(t), self.xseq, data)

    def _candle(self, confirm: bool, ts: int) -> dict[str, Any]:
        """Build the current 1-minute candle."""
        fp = self.fp
        prices = (fp(self.k_open), fp(self.last_px), fp(self.k_high), fp(self.k_low))
        return m.kline_entry(self.k_start, 60_000, "1", prices, self.fq(self.k_vol), f"{self.k_turn:.4f}", confirm, ts)

    def _roll_candle(self, ts: int) -> None:
        """Close the candle whose minute has passed (kept for the next push) and open the next one."""
        self.k_closed = self._candle(True, ts)
        self.k_start = ts - ts % 60_000
        self.k_vol, self.k_turn = 0, 0.0
        self.k_open = self.k_high = self.k_low = self.last_px

    def kline_tick(self, t: float) -> dict[str, Any]:
        """Return the confirmed candle of a finished minute if one is pending, else the running one."""
        ts = int(t)
        if ts - self.k_start >= 60_000:
            self._roll_candle(ts)
        entry, self.k_closed = self.k_closed or self._candle(False, ts), None
        return m.kline_message(self.kline_topic, ts, [entry])
