// The dashboard: reads the API, listens on /ws/failover/, reconnects with backoff.
// Plain JS, no build step; every element it fills is in templates/dashboard.html.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const staff = document.querySelector("main").dataset.staff === "1";
  const REFRESH_MS = 5000;          // health, positions, orders: cheap reads, polled as a backup to pushes
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
  let lastStatusAt = "";            // ISO timestamp of the status shown; older pushes are dropped
  let integrationAvailable = true;

  // -- helpers ---------------------------------------------------------------
  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(path, options = {}) {
    const init = { credentials: "same-origin", headers: { Accept: "application/json" }, ...options };
    if (init.method && init.method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRFToken"] = csrfToken();
    }
    const response = await fetch(path, init);
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      if (!init.method || init.method === "GET") window.location.assign("/accounts/login/?next=/");
      throw new Error(body.detail || `HTTP ${response.status}`);
    }
    const body = await response.json().catch(() => ({}));
    return { status: response.status, ok: response.ok, body };
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
    return node;
  }

  const pill = (text) => el("span", { class: `pill ${text}` }, text);
  const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "-");
  function fmtDuration(start, end) {
    if (!start) return "-";
    const ms = (end ? new Date(end) : new Date()) - new Date(start);
    return ms < 1000 ? `${ms} ms` : ms < 120000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`;
  }

  function fillTable(id, rows, emptyText, columns) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren();
    if (!rows.length) {
      body.append(el("tr", {}, el("td", { colspan: String(columns), class: "muted" }, emptyText)));
      return;
    }
    for (const cells of rows) body.append(el("tr", {}, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))));
  }

  const guard = (fn) => () => fn().catch((err) => console.warn(err));

  function say(id, text, isError = false) {
    const node = $(id);
    node.textContent = text;
    node.classList.toggle("error", isError);
  }

  // -- failover ----------------------------------------------------------------
  function renderStatus(status) {
    if (status.timestamp && lastStatusAt && status.timestamp < lastStatusAt) return;  // a late push
    lastStatusAt = status.timestamp || lastStatusAt;
    const badge = $("safe-mode-badge");
    badge.textContent = `SAFE MODE: ${status.safeMode ? "ON" : "OFF"}`;
    badge.dataset.state = status.safeMode ? "on" : "off";
    badge.classList.remove("unknown", "on", "off");
    badge.classList.add(status.safeMode ? "on" : "off");

    $("fo-safe").textContent = status.safeMode ? `ON${status.planned ? " (planned)" : ""}` : "OFF";
    $("fo-reason").textContent = status.reason || "-";
    $("fo-since").textContent = fmtTime(status.since);
    $("fo-recovery").textContent = status.recoveryInProgress ? "in progress" : "idle";
    const failure = status.lastFailure;
    $("fo-failure").textContent = failure
      ? `${failure.type} from ${failure.source} at ${fmtTime(failure.timestamp)}: ${failure.message}` : "-";

    const plan = status.currentPlan;
    $("fo-plan-id").textContent = plan ? `${plan.planId || ""} ${plan.status ? "- " + plan.status : ""}` : "";
    const steps = plan ? [...plan.completedSteps, ...plan.pendingSteps] : [];
    fillTable("plan-steps", steps.map((step, i) => [
      String(i + 1), step.type, pill(step.status), fmtTime(step.startedAt),
      step.startedAt ? fmtDuration(step.startedAt, step.finishedAt) : "-", step.errorMessage || "",
    ]), "No recovery plan.", 6);
  }

  async function loadStatus() {
    const { ok, body } = await api("/api/failover/status");
    if (ok) renderStatus(body);
  }

  async function failoverAction(path, payload) {
    say("failover-message", "Sending...");
    try {
      const { status, ok, body } = await api(path, { method: "POST", body: JSON.stringify(payload) });
      if (ok) { renderStatus(body); say("failover-message", "Done."); }
      else say("failover-message", `${status}: ${body.detail || JSON.stringify(body)}`, true);
    } catch (err) { say("failover-message", String(err.message || err), true); }
  }

  // -- health, alerts, positions, orders --------------------------------------
  async function loadHealth() {
    const { ok, body } = await api("/api/health");
    if (!ok) return;
    const overall = $("health-overall");
    overall.textContent = body.status;
    overall.className = `pill ${body.status}`;
    fillTable("health-table", Object.entries(body.services).map(([name, svc]) => [name, pill(svc.status), svc.message]),
      "No services.", 3);
  }

  const alertRow = (a) => [fmtTime(a.createdAt), pill(a.level), a.type, a.message + (a.suppressed ? ` (+${a.suppressed})` : "")];
  let alertRows = [];
  async function loadAlerts() {
    const { ok, body } = await api("/api/alerts?limit=20");
    if (!ok) return;
    alertRows = body.results.map(alertRow);
    fillTable("alerts-table", alertRows, "No alerts.", 4);
  }

  async function loadTrading() {
    const [positions, orders] = await Promise.all([api("/api/positions"), api("/api/orders")]);
    if (positions.ok) fillTable("positions-table", positions.body.map((p) => [
      p.symbol, p.side, String(p.qty), String(p.entryPrice), String(p.leverage), String(p.pnlUnrealized),
    ]), "No open positions.", 6);
    if (orders.ok) fillTable("orders-table", orders.body.map((o) => [
      o.symbol, o.side, o.orderType, String(o.qty), o.price === null ? "market" : String(o.price), pill(o.status),
    ]), "No open orders.", 6);
  }

  // -- integration runs --------------------------------------------------------
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MARK_PATHS = { pass: "M3 8.5l3.2 3.2L13 5", fail: "M4 4l8 8M12 4l-8 8" };
  const ACTIVE = new Set(["QUEUED", "RUNNING"]);
  const runButtons = new Map();     // scenarioId -> its Run button
  const requestsOut = new Set();    // scenarioIds whose POST has not answered yet
  const activeScenarios = new Set();  // scenarioIds with a QUEUED or RUNNING run in the list
  let followedRunId = null;         // the run this page started: the message line follows it

  // A pass or fail mark as inline SVG beside its word: no emoji font needed.
  function mark(passed, word) {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("class", "mark-icon");
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", passed ? MARK_PATHS.pass : MARK_PATHS.fail);
    svg.append(path);
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
    const { ok, body } = await api(`/api/tests/integration/runs/${encodeURIComponent(runId)}`);
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
    const { ok, body } = await api("/api/tests/integration/runs?limit=10");
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
      const { status, ok, body } = await api("/api/tests/integration/run", {
        method: "POST", body: JSON.stringify({ scenarioId }) });
      if (ok) { followedRunId = body.runId; followRun(body); }
      else say("integration-message", `${status}: ${body.detail || JSON.stringify(body)}`, true);
      requestsOut.delete(scenarioId);
      await loadRuns();
    } catch (err) { say("integration-message", String(err.message || err), true); }
    finally { requestsOut.delete(scenarioId); refreshRunButtons(); }
  }

  async function loadScenarios() {
    const { status, ok, body } = await api("/api/tests/integration/scenarios");
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

  // -- websocket ---------------------------------------------------------------
  let attempt = 0;
  let socket = null;
  function setConnection(up, text) {
    const node = $("ws-status");
    node.textContent = text;
    node.dataset.state = up ? "up" : "down";
    node.className = `conn ${up ? "up" : "down"}`;
    // Without a live socket the badge may be out of date: say so instead of showing a confident colour.
    $("safe-mode-badge").classList.toggle("stale", !up);
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${window.location.host}/ws/failover/`);
    socket.addEventListener("open", () => { attempt = 0; setConnection(true, "live"); });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type === "failover.status") renderStatus(message.data);
      else if (message.type === "alert") {
        alertRows = [alertRow({ ...message.data, createdAt: new Date().toISOString() }), ...alertRows].slice(0, 20);
        fillTable("alerts-table", alertRows, "No alerts.", 4);
      } else if (message.type === "integration.progress") onRunProgress(message.data);
    });
    socket.addEventListener("close", () => {
      const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)] * (0.8 + Math.random() * 0.4);
      attempt += 1;
      setConnection(false, `disconnected, retrying in ${(delay / 1000).toFixed(1)} s`);
      window.setTimeout(connect, delay);
    });
  }

  // -- wiring ------------------------------------------------------------------
  $("panic-close").addEventListener("click", () => $("panic-dialog").showModal());
  $("panic-dialog").addEventListener("close", async () => {
    if ($("panic-dialog").returnValue !== "confirm") return;
    say("execution-message", "Closing...");
    try {
      const { status, ok, body } = await api("/api/execution/panic-close", { method: "POST", body: "{}" });
      say("execution-message", ok ? `Panic close: ${body.ok ? "done" : body.error}` : `${status}: ${body.detail}`, !ok || !body.ok);
      loadTrading();
    } catch (err) { say("execution-message", String(err.message || err), true); }
  });
  $("retry-recovery").addEventListener("click", () => failoverAction("/api/failover/retry-recovery", {}));
  $("exit-safe-mode").addEventListener("click", () => failoverAction("/api/failover/exit-safe-mode", { force: $("exit-force").checked }));

  connect();
  guard(loadStatus)();
  guard(loadHealth)();
  guard(loadAlerts)();
  guard(loadTrading)();
  guard(loadScenarios)().then(guard(loadRuns));
  window.setInterval(() => { guard(loadHealth)(); guard(loadTrading)(); guard(loadRuns)(); }, REFRESH_MS);
})();
