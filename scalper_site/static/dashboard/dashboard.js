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
  const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
  function fmtDuration(start, end) {
    if (!start) return "—";
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
    $("fo-reason").textContent = status.reason || "—";
    $("fo-since").textContent = fmtTime(status.since);
    $("fo-recovery").textContent = status.recoveryInProgress ? "in progress" : "idle";
    const failure = status.lastFailure;
    $("fo-failure").textContent = failure
      ? `${failure.type} from ${failure.source} at ${fmtTime(failure.timestamp)}: ${failure.message}` : "—";

    const plan = status.currentPlan;
    $("fo-plan-id").textContent = plan ? `${plan.planId || ""} ${plan.status ? "· " + plan.status : ""}` : "";
    const steps = plan ? [...plan.completedSteps, ...plan.pendingSteps] : [];
    fillTable("plan-steps", steps.map((step, i) => [
      String(i + 1), step.type, pill(step.status), fmtTime(step.startedAt),
      step.startedAt ? fmtDuration(step.startedAt, step.finishedAt) : "—", step.errorMessage || "",
    ]), "No recovery plan.", 6);
  }

  async function loadStatus() {
    const { ok, body } = await api("/api/failover/status");
    if (ok) renderStatus(body);
  }

  async function failoverAction(path, payload) {
    say("failover-message", "Sending…");
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
  function runResult(run) {
    // The words beside the marks: a machine without an emoji font still reads the result.
    if (run.success === true) return "✅ passed";
    if (run.success === false) return "❌ failed";
    return pill(run.status || "RUNNING");
  }

  async function showReport(runId) {
    const { ok, body } = await api(`/api/tests/integration/runs/${encodeURIComponent(runId)}`);
    $("report-title").textContent = `Run ${runId}`;
    $("report-body").textContent = ok ? JSON.stringify(body, null, 2) : body.detail || "not found";
    $("report-dialog").showModal();
  }

  async function loadRuns() {
    if (!integrationAvailable) return;
    const { ok, body } = await api("/api/tests/integration/runs?limit=10");
    if (!ok) return;
    // The spec's list shape: an array, newest first (further pages are in the Link header).
    fillTable("runs-table", body.map((run) => {
      const link = el("a", { href: `/api/tests/integration/runs/${encodeURIComponent(run.runId)}`, class: "run-link",
        onclick: (event) => { event.preventDefault(); showReport(run.runId); } }, run.runId);
      return [link, run.scenarioId, el("td", { class: "run-result", "data-success": String(run.success) }, runResult(run)),
        fmtTime(run.startedAt), fmtDuration(run.startedAt, run.finishedAt), String(run.errorsCount)];
    }), "No runs yet.", 6);
  }

  async function startRun(scenarioId, button) {
    button.disabled = true;
    say("integration-message", `Starting ${scenarioId}…`);
    try {
      const { status, ok, body } = await api("/api/tests/integration/run", {
        method: "POST", body: JSON.stringify({ scenarioId }) });
      if (ok) say("integration-message", `Run ${body.runId} ${body.status}.`);
      else say("integration-message", `${status}: ${body.detail || JSON.stringify(body)}`, true);
      await loadRuns();
    } catch (err) { say("integration-message", String(err.message || err), true); }
    finally { button.disabled = false; }
  }

  async function loadScenarios() {
    const { status, ok, body } = await api("/api/tests/integration/scenarios");
    if (status === 404) {
      integrationAvailable = false;
      fillTable("scenarios-table", [], "Integration runner not installed.", 4);
      return;
    }
    if (!ok) return;
    fillTable("scenarios-table", body.map((s) => {
      const button = el("button", { type: "button", class: "primary run-button", "data-scenario": s.id }, "Run");
      button.addEventListener("click", () => startRun(s.id, button));
      if (!staff) button.disabled = true;
      return [s.id, s.name, s.description, button];
    }), "No scenarios.", 4);
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
      } else if (message.type === "integration.progress") loadRuns();
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
    say("execution-message", "Closing…");
    try {
      const { status, ok, body } = await api("/api/execution/panic-close", { method: "POST", body: "{}" });
      say("execution-message", ok ? `Panic close: ${body.ok ? "done" : body.error}` : `${status}: ${body.detail}`, !ok || !body.ok);
      loadTrading();
    } catch (err) { say("execution-message", String(err.message || err), true); }
  });
  $("retry-recovery").addEventListener("click", () => failoverAction("/api/failover/retry-recovery", {}));
  $("exit-safe-mode").addEventListener("click", () => failoverAction("/api/failover/exit-safe-mode", { force: $("exit-force").checked }));

  const guard = (fn) => () => fn().catch((err) => console.warn(err));
  connect();
  guard(loadStatus)();
  guard(loadHealth)();
  guard(loadAlerts)();
  guard(loadTrading)();
  guard(loadScenarios)().then(guard(loadRuns));
  window.setInterval(() => { guard(loadHealth)(); guard(loadTrading)(); guard(loadRuns)(); }, REFRESH_MS);
})();
