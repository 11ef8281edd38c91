// The trading view: PnL windows, the equity and balance chart (uPlot, vendored under static/vendor/uplot),
// trade history with pages, open positions and orders with their per-row actions, per-symbol status.
"use strict";

(function () {
  const S = window.Scalper;
  const { $, el, fmtNum, fmtTime, fmtMs, money, pill } = S;
  const TRADES_PAGE = 10;
  const EQUITY_POINTS = 720;
  const CHART_HEIGHT = 220;
  let tradesOffset = 0;
  let tradesCount = 0;
  let lastTradeTotal = null;  // all-time trade count last shown: a change reloads history and the curve
  let chart = null;

  // -- PnL -----------------------------------------------------------------------------------------------
  const WINDOWS = [["today", "Today (UTC)"], ["last7Days", "Last 7 days"], ["allTime", "All time"]];

  function pnlCard(title, w) {
    const rate = w.winRate === null ? "-" : `${(w.winRate * 100).toFixed(1)} %`;
    return el("div", { class: "stat" },
      el("div", { class: "stat-title" }, title),
      el("div", { class: "stat-value" }, money(w.realizedPnl), el("span", { class: "unit" }, " USDT")),
      el("dl", { class: "stat-facts" },
        el("dt", {}, "Trades"), el("dd", {}, `${w.trades} (${w.wins} won, ${w.losses} lost)`),
        el("dt", {}, "Win rate"), el("dd", {}, rate),
        el("dt", {}, "Fees"), el("dd", {}, fmtNum(w.fees, 4))));
  }

  function renderPnl(summary) {
    $("pnl-cards").replaceChildren(...WINDOWS.map(([key, title]) => pnlCard(title, summary[key])));
    const total = summary.allTime.trades;
    if (lastTradeTotal !== null && total !== lastTradeTotal) {
      S.guard(loadTrades)();
      S.guard(loadEquity)();
    }
    lastTradeTotal = total;
  }

  // -- equity chart ----------------------------------------------------------------------------------------
  function chartWidth() {
    return Math.max(240, $("equity-chart").clientWidth);
  }

  function drawEquity(points) {
    const box = $("equity-chart");
    if (!points.length) {
      if (chart) { chart.destroy(); chart = null; }
      box.replaceChildren(el("p", { class: "muted" }, "No equity samples yet: the trader records one every minute "
        + "and after every close."));
      return;
    }
    const data = [points.map((p) => Date.parse(p.at) / 1000), points.map((p) => p.equity),
      points.map((p) => p.walletBalance)];
    if (chart) { chart.setData(data); return; }
    box.replaceChildren();
    chart = new window.uPlot({
      width: chartWidth(), height: CHART_HEIGHT,
      // One sample (a fresh account) would stretch the time axis over years: show an hour around it.
      scales: { x: { time: true, range: (u, min, max) => (max - min < 60 ? [min - 1800, max + 1800] : [min, max]) } },
      axes: [{}, { size: 64 }],
      series: [{}, { label: "Equity", stroke: "#1f5fbf", width: 2 },
        { label: "Wallet balance", stroke: "#2e7d32", width: 1.5, dash: [6, 4] }],
    }, data, box);
  }

  async function loadEquity() {
    const { ok, body } = await S.api(`/api/equity?limit=${EQUITY_POINTS}`);
    if (!ok) return;
    drawEquity(body.results);
    const last = body.results[body.results.length - 1];
    $("equity-now").textContent = last
      ? `equity ${fmtNum(last.equity, 2)}, wallet ${fmtNum(last.walletBalance, 2)}, available ${fmtNum(last.available, 2)} USDT at ${fmtTime(last.at)}`
      : "";
  }

  // -- trade history --------------------------------------------------------------------------------------
  function tradeRow(t) {
    return [t.symbol, t.side, fmtNum(t.entryPrice), fmtNum(t.exitPrice), fmtNum(t.qty), fmtNum(t.fees, 4),
      el("td", { class: "num pnl" }, money(t.realizedPnl)), t.exitReason, fmtMs(t.durationMs), fmtTime(t.closedAt)];
  }

  async function loadTrades() {
    const { ok, body } = await S.api(`/api/trades?limit=${TRADES_PAGE}&offset=${tradesOffset}`);
    if (!ok) return;
    tradesCount = body.count;
    S.fillTable("trades-table", body.results.map(tradeRow), "No closed trades yet.", 10);
    const first = body.count ? tradesOffset + 1 : 0;
    $("trades-page").textContent = `${first}-${tradesOffset + body.results.length} of ${body.count}`;
    $("trades-prev").disabled = tradesOffset === 0;
    $("trades-next").disabled = tradesOffset + TRADES_PAGE >= tradesCount;
  }

  function turnPage(step) {
    tradesOffset = Math.max(0, tradesOffset + step * TRADES_PAGE);
    S.guard(loadTrades)();
  }

  // -- positions and orders with their row actions --------------------------------------------------------
  function rowButton(label, onClick) {
    if (!S.operator) return "";
    return el("button", { type: "button", class: "row-action", onclick: onClick }, label);
  }

  async function closePosition(p) {
    const answer = await S.confirmAction({
      title: `Close the ${p.symbol} position?`,
      text: `Sends a reduce-only market order for the whole ${p.side} position of ${p.qty} ${p.symbol}. `
        + "It is never blocked by safe mode and cannot be undone.",
      confirm: `Close ${p.symbol}`,
    });
    if (!answer) return;
    await S.post(`/api/positions/${encodeURIComponent(p.symbol)}/close`, {}, "execution-message",
      (body) => `Close of ${p.symbol} sent (${(body.result && body.result.reason) || "accepted"}).`);
  }

  async function cancelOrder(o) {
    const answer = await S.confirmAction({
      title: `Cancel order ${o.clientOrderId}?`,
      text: `Cancels the ${o.side} ${o.orderType} order of ${o.qty} ${o.symbol} on the exchange.`,
      confirm: "Cancel the order",
    });
    if (!answer) return;
    await S.post(`/api/orders/${encodeURIComponent(o.clientOrderId)}/cancel`, {}, "execution-message",
      (body) => `Order ${o.clientOrderId}: ${(body.result && body.result.status) || "cancel sent"}.`);
  }

  function renderPositions(positions) {
    S.fillTable("positions-table", positions.map((p) => {
      const row = [p.symbol, p.side, fmtNum(p.qty), fmtNum(p.entryPrice), fmtNum(p.leverage),
        el("td", { class: "num" }, money(p.pnlUnrealized)), rowButton("Close", () => closePosition(p))];
      return row;
    }), "No open positions.", 7);
    [...$("positions-table").tBodies[0].rows].forEach((tr, i) => { if (positions[i]) tr.dataset.symbol = positions[i].symbol; });
  }

  function renderOrders(orders) {
    S.fillTable("orders-table", orders.map((o) => [
      o.symbol, o.side, o.orderType, fmtNum(o.qty), o.price === null ? "market" : fmtNum(o.price), pill(o.status),
      o.reduceOnly ? `${o.purpose} (reduce-only)` : o.purpose, rowButton("Cancel", () => cancelOrder(o)),
    ]), "No open orders.", 8);
    [...$("orders-table").tBodies[0].rows].forEach((tr, i) => { if (orders[i]) tr.dataset.link = orders[i].clientOrderId; });
  }

  // -- per-symbol status ----------------------------------------------------------------------------------
  function score(s) {
    if (!s.score) return "-";
    return `L ${fmtNum(s.score.long, 2)} / S ${fmtNum(s.score.short, 2)}`;
  }

  function blocked(s) {
    if (s.entryBlockedBy === null) return el("span", { class: "muted" }, "unknown");
    if (!s.entryBlockedBy.length) return el("span", { class: "gain" }, "entries allowed");
    return el("span", { class: "loss" }, s.entryBlockedBy.join(", "));
  }

  function renderSymbols(body) {
    const t = body.trader;
    $("trader-liveness").textContent = t.alive
      ? `Trader alive: ${t.mode || "?"} mode, phase ${t.phase || "?"}, heartbeat ${fmtMs(t.heartbeatAgeMs)} ago.`
      : `No live trader: ${t.message}`;
    $("trader-liveness").classList.toggle("error", !t.alive);
    S.fillTable("symbols-table", body.symbols.map((s) => [
      s.symbol, s.lastPrice === null ? "-" : fmtNum(s.lastPrice), s.regime || "-", score(s),
      el("td", {}, s.state || "-", s.stateReason ? el("div", { class: "muted small" }, s.stateReason) : ""),
      el("td", {}, blocked(s)), fmtMs(s.marketDataAgeMs),
    ]), "No symbols.", 7);
  }

  function init() {
    $("trades-prev").addEventListener("click", () => turnPage(-1));
    $("trades-next").addEventListener("click", () => turnPage(1));
    window.addEventListener("resize", () => { if (chart) chart.setSize({ width: chartWidth(), height: CHART_HEIGHT }); });
    S.guard(loadTrades)();
    S.guard(loadEquity)();
    window.setInterval(S.guard(loadEquity), 60000);  // a TIMER sample a minute: the curve moves on its own
  }

  S.trading = { init, renderPnl, renderPositions, renderOrders, renderSymbols, loadTrades, loadEquity };
})();
