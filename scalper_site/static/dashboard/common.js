// Helpers every dashboard module shares, on window.Scalper: API calls, element building, formatting,
// the confirmation dialog. Plain JS, no build step; loaded first (the other modules are deferred after it).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // A JSON call; a GET that is refused for want of a session goes back to the login page.
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

  // POST an action and say how it went on a message line; returns the body when it succeeded.
  async function post(path, payload, messageId, doneText) {
    say(messageId, "Sending...");
    try {
      const { status, ok, body } = await api(path, { method: "POST", body: JSON.stringify(payload || {}) });
      if (ok) say(messageId, typeof doneText === "function" ? doneText(body) : doneText || "Done.");
      else say(messageId, `${status}: ${body.detail || JSON.stringify(body)}`, true);
      return ok ? body : null;
    } catch (err) {
      say(messageId, String(err.message || err), true);
      return null;
    }
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
    return node;
  }

  // A small line icon (no emoji font needed): "check", "cross", "dot", "ring", "clock".
  const ICONS = {
    check: "M3 8.5l3.2 3.2L13 5",
    cross: "M4 4l8 8M12 4l-8 8",
    dot: "M8 5.5a2.5 2.5 0 1 0 0.01 0",
    ring: "M8 2.5a5.5 5.5 0 1 0 0.01 0",
    clock: "M8 2.5a5.5 5.5 0 1 0 0.01 0M8 5v3.2l2 1.3",
  };
  function icon(name) {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("class", `icon icon-${name}`);
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name] || ICONS.dot);
    svg.append(path);
    return svg;
  }

  const pill = (text) => el("span", { class: `pill ${text}` }, text);
  const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "-");
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "-";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 7200000) return `${Math.round(ms / 60000)} min`;
    return `${(ms / 3600000).toFixed(1)} h`;
  }
  function fmtDuration(start, end) {
    if (!start) return "-";
    return fmtMs((end ? new Date(end) : new Date()) - new Date(start));
  }
  function fmtNum(value, digits) {
    if (value === null || value === undefined) return "-";
    const n = Number(value);
    return digits === undefined ? String(n) : n.toFixed(digits);
  }
  // A signed amount in USDT with its sign's colour class.
  function money(value) {
    const n = Number(value || 0);
    return el("span", { class: n > 0 ? "gain" : n < 0 ? "loss" : "" }, `${n > 0 ? "+" : ""}${n.toFixed(2)}`);
  }

  function fillTable(id, rows, emptyText, columns) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren();
    if (!rows.length) {
      body.append(el("tr", {}, el("td", { colspan: String(columns), class: "muted" }, emptyText)));
      return;
    }
    for (const cells of rows) {
      body.append(el("tr", {}, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))));
    }
  }

  const guard = (fn) => (...args) => Promise.resolve().then(() => fn(...args)).catch((err) => console.warn(err));

  function say(id, text, isError = false) {
    const node = $(id);
    if (!node) return;
    node.textContent = text;
    node.classList.toggle("error", isError);
  }

  // The one confirmation dialog for dangerous buttons. Resolves to null (cancelled) or {reason}.
  function confirmAction({ title, text, confirm, reason = false }) {
    const dialog = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = confirm;
    const field = $("confirm-reason");
    field.value = "";
    $("confirm-reason-row").hidden = !reason;
    field.required = reason;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        const ok = dialog.returnValue === "confirm" && (!reason || field.value.trim());
        resolve(ok ? { reason: field.value.trim() } : null);
      }, { once: true });
      dialog.returnValue = "";
      dialog.showModal();
      (reason ? field : $("confirm-cancel")).focus();
    });
  }

  const main = document.querySelector("main");
  window.Scalper = {
    $, api, post, el, icon, pill, fmtTime, fmtMs, fmtDuration, fmtNum, money, fillTable, guard, say, confirmAction,
    staff: main.dataset.staff === "1",
    operator: main.dataset.operator === "1",
  };
})();
