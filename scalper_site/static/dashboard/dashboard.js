// The dashboard: the badge, health, alerts and integration runs, and the wiring of the page's modules
// (common.js helpers, stream.js the live stream, trading.js the trading view, safemode.js what holds safe mode).
// Plain JS, no build step; every element it fills is in templates/dashboard.html.
"use strict";

(function () {
  const S = window.Scalper;
  const { $, el, pill, fmtTime, fmtDuration, fillTable, guard, say, staff } = S;
  let integrationAvailable = true;

  // -- failover ----------------------------------------------------------------
  function haltText(status) {
    if (!("halted" in status)) return "-";
    if (!status.halted) return "allowed";
    const halt = status.halt || {};
    return `HALTED by ${halt.by || "?"} at ${fmtTime(halt.at)}: ${halt.reason || ""}`;
  }

  // The status the stream decided is the newest: the badge and the facts beside it.
  function renderStatus(status) {
    const badge = $("safe-mode-badge");
    badge.textContent = `SAFE MODE: ${status.safeMode ? "ON" : "OFF"}`;
    badge.dataset.state = status.safeMode ? "on" : "off";
    badge.classList.remove("unknown", "on", "off");
    badge.classList.add(status.safeMode ? "on" : "off");

    $("fo-safe").textContent = status.safeMode ? `ON${status.planned ? " (planned)" : ""}` : "OFF";
    $("fo-reason").textContent = status.reason || "-";
    $("fo-since").textContent = status.safeMode ? `${fmtTime(status.since)} (${fmtDuration(status.since)})` : "-";
    $("fo-recovery").textContent = status.recoveryInProgress ? "in progress" : "idle";
    $("fo-halt").textContent = haltText(status);
    $("fo-halt").classList.toggle("loss", Boolean(status.halted));
    const failure = status.lastFailure;
    $("fo-failure").textContent = failure
      ? `${failure.type} from ${failure.source} at ${fmtTime(failure.timestamp)}: ${failure.message}` : "-";
    S.safemode.onStatus(status);
  }

  // -- health and alerts --------------------------------------------------------
  function renderHealth(body) {
    const overall = $("health-overall");
    overall.textContent = body.status;
    overall.className = `pill ${body.status}`;
    fillTable("health-table", Object.entries(body.services).map(([name, svc]) => [name, pill(svc.status),
      el("td", { class: "wrap" }, svc.message)]), "No services.", 3);
    $("health-role").textContent = body.role || "no trader heartbeat";
    $("health-lease").textContent = leaseText(body.lease);
    $("health-dcp").textContent = dcpText(body.dcp);
  }

  // Who holds the account's lease (the fencing token every order is checked against) and until when.
  function leaseText(lease) {
    if (!lease) return "-";
    if (!lease.held) return `not held by this trader${lease.holder ? ` (holder: ${lease.holder})` : ""}`;
    const left = lease.expiresAt ? Math.max(0, Math.round(lease.expiresAt - Date.now() / 1000)) : null;
    return `held by ${lease.holder}, token ${lease.token}${left === null ? "" : `, expires in ${left} s unless renewed`}`;
  }

  function dcpText(dcp) {
    if (!dcp) return "-";
    if (dcp.armed) return `armed, ${dcp.windowS} s window`;
    return `not armed: ${dcp.reason || "unknown"}`;
  }

  const alertRow = (a) => [fmtTime(a.createdAt), pill(a.level), a.type,
    el("td", { class: "wrap" }, a.message + (a.suppressed ? ` (+${a.suppressed} suppressed)` : ""))];
  let alertRows = [];
  async function loadAlerts() {
    const { ok, body } = await S.api("/api/alerts?limit=20");
    if (!ok) return;
    alertRows = body.results.map((a) => alertRow({ ...a, suppressed: a.suppressedCount }));
    fillTable("alerts-table", alertRows, "No alerts.", 4);
  }

  // A pushed alert carries ``suppressed``; a listed one ``suppressedCount``: one name for the row.
  function onAlert(alert) {
    const row = alertRow({ ...alert, createdAt: alert.createdAt || new Date().toISOString() });
    alertRows = [row, ...alertRows].slice(0, 20);
    fillTable("alerts-table", alertRows, "No alerts.", 4);
  }

  // -- integration runs --------------------------------------------------------
  const ACTIVE = new Set(["QUEUED", "RUNNING"]);
  const runButtons = new Map();     // scenarioId -> its Run button
  const requestsOut = new Set();    // scenarioIds whose POST has not answered yet
  const activeScenarios = new Set();  // scenarioIds with a QUEUED or RUNNING run in the list
  let followedRunId = null;         // the run this page started: the message line follows it

  // A pass or fail mark as inline SVG beside its word: no emoji font needed.
  function mark(passed, word) {
    const svg = S.icon(passed ? "check" : "cross");
    svg.setAttribute("class", "mark-icon");
    return el("span", { class: `mark ${passed ? "pass" : "fail"}` }, svg, word);
  }

  function runResult(run) {
    if (run.success === true) return mark(true, "passed");
    if (run.success === false) return mark(false, "failed");
    return pill(run.status || "RUNNING");
  }

  function runVerdict(run) {
    if (run.success === true) return `Run ${run.runId} passed.`;
    if (run.success === false) {
      return `Run ${run.runId} failed${run.errorsCount ? ` (${run.errorsCount} errors)` : ""}.`;
    }
    return `Run ${run.runId} ${run.status || "QUEUED"}${run.step ? `: ${run.step}` : ""}.`;
  }

  // The message line follows the run this page started until it is done.
  function followRun(run) {
    if (!followedRunId || run.runId !== followedRunId) return;
    say("integration-message", runVerdict(run), run.success === false);
  }

  function refreshRunButtons() {
    for (const [scenarioId, button] of runButtons) {
      button.disabled = !staff || requestsOut.has(scenarioId) || activeScenarios.has(scenarioId);
    }
  }

  // A value of the report, compact: text as is, anything else as one-line JSON.
  const compact = (value) => (typeof value === "string" ? value : JSON.stringify(value) ?? "");
  const valueCell = (value) => el("td", { class: "value" }, compact(value));

  function reportSection(title, ...content) {
    return el("section", { class: "report-section" }, el("h3", {}, title), ...content);
  }

  function errorsTable(errors) {
    const rows = errors.map((e) => el("tr", {}, el("td", {}, e.expectation || ""), valueCell(e.expected),
      valueCell(e.actual), el("td", { class: "value" }, e.message || "")));
    return el("table", { class: "report-errors" },
      el("thead", {}, el("tr", {}, el("th", {}, "Expectation"), el("th", {}, "Expected"), el("th", {}, "Actual"),
        el("th", {}, "Message"))),
      el("tbody", {}, ...rows));
  }

  function checksTable(checks) {
    const rows = checks.map((c) => el("tr", { class: c.passed ? "check-pass" : "check-fail" },
      el("td", {}, c.expectation || ""), valueCell(c.expected), valueCell(c.actual),
      el("td", { class: "check-result" }, mark(Boolean(c.passed), c.passed ? "PASS" : "FAIL"))));
    return el("table", { class: "report-checks" },
      el("thead", {}, el("tr", {}, el("th", {}, "Expectation"), el("th", {}, "Expected"), el("th", {}, "Actual"),
        el("th", {}, "Result"))),
      el("tbody", {}, ...rows));
  }

  function metricsList(metrics) {
    const list = el("dl", { class: "report-metrics" });
    for (const [name, value] of Object.entries(metrics)) list.append(el("dt", {}, name), el("dd", {}, compact(value)));
    return list;
  }

  function renderReport(report) {
    const result = report.result || {};
    const errors = result.errors || [], checks = result.checks || [], metrics = result.metrics || {};
    const verdict = result.success === true ? mark(true, "passed") : result.success === false ? mark(false, "failed")
      : pill("RUNNING");
    const parts = [el("p", { class: "report-summary" }, verdict, ` ${report.scenarioId || ""}, started `,
      fmtTime(result.startedAt), ", took ", fmtDuration(result.startedAt, result.finishedAt))];
    if (errors.length) parts.push(reportSection(`Errors (${errors.length})`, el("div", { class: "scroll" }, errorsTable(errors))));
    parts.push(reportSection(`Checks (${checks.length})`, checks.length
      ? el("div", { class: "scroll" }, checksTable(checks)) : el("p", { class: "muted" }, "No checks recorded.")));
    parts.push(reportSection("Metrics", Object.keys(metrics).length
      ? metricsList(metrics) : el("p", { class: "muted" }, "No metrics.")));
    return parts;
  }

  async function showReport(runId) {
    const { ok, body } = await S.api(`/api/tests/integration/runs/${encodeURIComponent(runId)}`);
    $("report-title").textContent = `Run ${runId}`;
    $("report-body").replaceChildren(...(ok ? renderReport(body) : [el("p", { class: "error" }, body.detail || "not found")]));
    $("report-json").textContent = JSON.stringify(body, null, 2);
    $("report-raw").open = false;
    $("report-dialog").showModal();
  }

  function runRow(run) {
    const link = el("a", { href: `/api/tests/integration/runs/${encodeURIComponent(run.runId)}`, class: "run-link",
      onclick: (event) => { event.preventDefault(); showReport(run.runId); } }, run.runId);
    return [link, run.scenarioId, el("td", { class: "run-result", "data-success": String(run.success) }, runResult(run)),
      fmtTime(run.startedAt), fmtDuration(run.startedAt, run.finishedAt), String(run.errorsCount)];
  }

  async function loadRuns() {
    if (!integrationAvailable) return;
    const { ok, body } = await S.api("/api/tests/integration/runs?limit=10");
    if (!ok) return;
    // The spec's list shape: an array, newest first (further pages are in the Link header).
    fillTable("runs-table", body.map(runRow), "No runs yet.", 6);
    body.forEach((run, i) => { $("runs-table").tBodies[0].rows[i].dataset.runId = run.runId; });
    activeScenarios.clear();
    for (const run of body) if (ACTIVE.has(run.status)) activeScenarios.add(run.scenarioId);
    refreshRunButtons();
    body.forEach(followRun);
  }

  // A pushed step: show it in the run's row and the message line at once, then read the full row.
  function onRunProgress(progress) {
    const row = [...$("runs-table").tBodies[0].rows].find((r) => r.dataset.runId === progress.runId);
    const cell = row && row.querySelector("td.run-result");
    if (cell) {
      cell.dataset.success = String(progress.success);
      cell.replaceChildren(runResult(progress));
    }
    followRun(progress);
    guard(loadRuns)();
  }

  async function startRun(scenarioId) {
    requestsOut.add(scenarioId);
    refreshRunButtons();
    say("integration-message", `Starting ${scenarioId}...`);
    try {
      const { status, ok, body } = await S.api("/api/tests/integration/run", {
        method: "POST", body: JSON.stringify({ scenarioId }) });
      if (ok) { followedRunId = body.runId; followRun(body); }
      else say("integration-message", `${status}: ${body.detail || JSON.stringify(body)}`, true);
      requestsOut.delete(scenarioId);
      await loadRuns();
    } catch (err) { say("integration-message", String(err.message || err), true); }
    finally { requestsOut.delete(scenarioId); refreshRunButtons(); }
  }

  async function loadScenarios() {
    const { status, ok, body } = await S.api("/api/tests/integration/scenarios");
    if (status === 404) {
      integrationAvailable = false;
      fillTable("scenarios-table", [], "Integration runner not installed.", 4);
      return;
    }
    if (!ok) return;
    runButtons.clear();
    fillTable("scenarios-table", body.map((s) => {
      const button = el("button", { type: "button", class: "primary run-button", "data-scenario": s.id }, "Run");
      button.addEventListener("click", () => startRun(s.id));
      runButtons.set(s.id, button);
      return [s.id, s.name, s.description, button];
    }), "No scenarios.", 4);
    refreshRunButtons();
  }

  // -- the live stream and the wiring -------------------------------------------
  function setConnection(up, text, detail) {
    const node = $("ws-status");
    node.textContent = text;
    node.title = detail || "";
    node.dataset.state = up ? "up" : "down";
    node.className = `conn ${up ? "up" : "down"}`;
    // Without a live socket the badge may be out of date: say so instead of showing a confident colour.
    $("safe-mode-badge").classList.toggle("stale", !up);
  }

  $("panic-close").addEventListener("click", async () => {
    const answer = await S.confirmAction({
      title: "Close every position?", confirm: "Yes, close everything",
      text: "This sends market orders to close all open positions, cancels all open orders, and halts trading. "
        + "It cannot be undone.",
    });
    if (answer) {
      await S.post("/api/execution/panic-close", {}, "execution-message",
        (body) => `Panic close: ${body.ok ? "done" : body.error}`);
    }
  });

  const stream = S.createStream({
    onStatus: renderStatus,
    panels: {
      health: renderHealth, conditions: S.safemode.renderConditions, positions: S.trading.renderPositions,
      orders: S.trading.renderOrders, symbols: S.trading.renderSymbols, pnl: S.trading.renderPnl,
    },
    sections: { health: "health-panel", conditions: "conditions-box", positions: "positions-panel",
      orders: "positions-panel", symbols: "symbols-panel", pnl: "account-panel" },
    pushes: {
      alert: { render: onAlert, refetch: loadAlerts },
      "integration.progress": { render: onRunProgress, refetch: loadRuns },
    },
    poll: [loadAlerts, loadRuns],
    onConnection: setConnection,
  });

  S.safemode.wire();
  S.trading.init();
  stream.connect();
  guard(loadAlerts)();
  guard(loadScenarios)().then(guard(loadRuns));
})();
