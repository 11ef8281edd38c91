"""SCENARIO_6: panic close through the trader's command: every position closed, every order gone."""

from __future__ import annotations

import time
from decimal import Decimal

from itests import probes
from itests.environment import IsolatedEnvironment
from itests.scenario import IntegrationScenario
from trading.control import send_command

OPENED = [("BTCUSDT", "LONG", Decimal("0.01")), ("ETHUSDT", "SHORT", Decimal("0.1"))]


class PanicClose(IntegrationScenario):
    id = "SCENARIO_6"
    name = "Panic close"
    description = "Open SIM positions and a resting order; panic close: all closed, all cancelled, trades logged."
    prerequisite = "A SIM trader tracking two open positions (BTCUSDT long, ETHUSDT short) and a resting order."
    action = "send_command('panic_close') to the run's trader."
    expected_events = ("positions adopted (NON_SYNC_STATE resync)", "PANIC_CLOSE", "POSITION_CLOSED per symbol")
    pass_criteria = ("no position open on the exchange or locally", "no order open on the exchange or locally",
                     "a closing trade per position in the Trade table", "risk heat 0 and daily PnL refreshed")
    time_limit_s = 120.0

    def scenario(self, env: IsolatedEnvironment) -> None:
        run = self.run_id
        self.boot(env)
        version = probes.version(run)
        self.progress("open two positions and rest an order behind the trader's back")
        env.control.open_position("BTCUSDT", "Buy", "0.010")
        env.control.open_position("ETHUSDT", "Sell", "0.10")
        bid = env.best_bid("ETHUSDT")
        env.control.place_order("ETHUSDT", "Buy", "0.10", order_type="Limit",
                                price=str((bid * Decimal("0.95")).quantize(Decimal("0.01"))))
        self.wait_for("the trader tracks both positions and the order after its resync",
                      lambda: probes.open_positions(run) == OPENED and len(probes.open_order_links(run)) == 1
                      and probes.safe_mode_off_after(run, version),
                      timeout=45, expected={"positions": OPENED, "openOrders": 1},
                      actual=lambda: {"positions": probes.open_positions(run),
                                      "openOrders": sorted(probes.open_order_links(run)),
                                      "state": probes.state_summary(run)})
        trades_before = probes.trades(run)
        panic_ms = int(time.time() * 1000)
        self.progress("panic close")
        ack = send_command("panic_close", run_id=run, wait_s=30)
        result = ack.get("result") or {}
        self.expect("the trader acknowledges panic_close without error", (True, None),
                    (ack.get("ok"), ack.get("error")))
        self.expect("panic close reports success and no open position", (True, []),
                    (result.get("success"), result.get("openPositions")), fatal=False)
        exchange = env.exchange()
        self.expect("no position is open on the exchange", [], probes.exchange_positions(exchange), fatal=False)
        self.expect("no order is open on the exchange", [], exchange["orders"], fatal=False)
        self.wait_for("no position is open locally", lambda: probes.open_positions(run) == [], timeout=15,
                      expected=[], actual=lambda: probes.open_positions(run))
        self.wait_for("every local order is cancelled or filled", lambda: not probes.unfinished_orders(run),
                      timeout=15, expected=[], actual=lambda: probes.unfinished_orders(run))
        self.wait_for("a closing trade per position in the trade log",
                      lambda: probes.trades(run) - trades_before >= len(OPENED), timeout=15,
                      expected=f">= {len(OPENED)} new trades", actual=lambda: probes.trades(run) - trades_before)
        trades = probes.closed_trades(run)
        closed = sorted((t["symbol"], t["side"]) for t in trades)
        self.expect("the closing trades are the positions that were open", sorted((s, side) for s, side, _ in OPENED),
                    closed, fatal=False)
        self.expect("risk heat is 0 after the close", Decimal(0), Decimal(str(result.get("heatPct", "nan"))),
                    fatal=False)
        booked = sum((t["realized_pnl"] for t in trades), Decimal(0))
        cents = Decimal("0.00000001")  # the Trade table keeps 10 places; compare what both can hold
        self.expect("daily PnL is refreshed with the closing trades' realised PnL", booked.quantize(cents),
                    Decimal(str(result.get("dailyPnl", "nan"))).quantize(cents), fatal=False)
        self.expect("the trader logged PANIC_CLOSE", True, bool(self.trader_saw("PANIC_CLOSE", after_ms=panic_ms)))
