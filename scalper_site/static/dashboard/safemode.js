// What holds safe mode: every active condition with what clears it and a live countdown for quiet windows,
// the recovery plan as a timeline, past safe-mode episodes with filters, and the operator's buttons.
"use strict";

(function () {
  const S = window.Scalper;
  const { $, el, icon, pill, fmtTime, fmtMs, fmtDuration } = S;
  const EPISODES_SHOWN = 50;
  const WINDOWS_MS = { "24h": 86400000, "7d": 7 * 86400000, "30d": 30 * 86400000, all: null };
  let countdowns = [];      // [{node, bar, type, windowS, leftS, at}] of the conditions shown
  let lastSafeMode = null;
  let episodesTimer = null;
  const reasonsSeen = new Set();

  // -- conditions -------------------------------------------------------------------------------------------
  function secondsLeft(c) {
    return Math.max(0, c.leftS - (performance.now() - c.at) / 1000);
  }

  function countdownText(c) {
    const left = Math.ceil(secondsLeft(c));
    return left > 0 ? `${c.type} clears after ${c.windowS} s without incidents: ${left} s left`
      : `${c.type}: quiet window over, clearing`;
  }

  function tick() {
    for (const c of countdowns) {
      c.node.textContent = countdownText(c);
      c.bar.value = Math.max(0, c.windowS - secondsLeft(c));
    }
  }

  function conditionItem(c) {
    const item = el("li", { class: "condition", "data-type": c.type },
      el("div", { class: "condition-head" }, icon("ring"), el("strong", {}, c.type),
        el("span", { class: "muted" }, c.since ? `since ${fmtTime(c.since)} (${fmtDuration(c.since)})` : "")),
      el("div", { class: "condition-clears" }, el("span", { class: "muted" }, "Clears: "), c.clearedBy));
    if (c.quietWindowS !== null && c.clearsInS !== null) {
      const entry = { type: c.type, windowS: c.quietWindowS, leftS: c.clearsInS, at: performance.now() };
      entry.node = el("span", { class: "countdown-text" });
      entry.bar = el("progress", { max: String(c.quietWindowS), class: "countdown-bar" });
      item.append(el("div", { class: "countdown", "data-quiet-window": String(c.quietWindowS) },
        icon("clock"), entry.node, entry.bar));
      countdowns.push(entry);
      return item;  // the server's message says the same, frozen at its read: the countdown replaces it
    }
    if (c.quietWindowS !== null) {
      item.append(el("div", { class: "muted" }, `Clears after ${c.quietWindowS} s without incidents `
        + "(the trader does not report the time left)."));
    }
    if (c.message) item.append(el("div", { class: "muted small" }, c.message));
    return item;
  }

  function renderConditions(body) {
    countdowns = [];
    // Safe mode left by force while failures are still reported: they are shown, and said not to block.
    $("conditions-note").textContent = body.safeMode === false && body.conditions.length
      ? "Safe mode is OFF (left by force): these are still reported but no longer block entries." : "";
    const list = $("conditions-list");
    if (!body.conditions.length) {
      const text = body.safeMode ? "Nothing reported holds safe mode any more: it can be left (Exit safe mode)."
        : "Nothing holds safe mode: new entries are allowed.";
      list.replaceChildren(el("li", { class: "condition none" }, text));
    } else {
      list.replaceChildren(...body.conditions.map(conditionItem));
    }
    tick();
  }

  // -- the plan as a timeline --------------------------------------------------------------------------------
  const STEP_ICONS = { DONE: "check", FAILED: "cross", RUNNING: "clock", PENDING: "dot" };

  function stepItem(step, i) {
    const took = step.startedAt ? fmtDuration(step.startedAt, step.finishedAt) : "";
    return el("li", { class: `step step-${step.status}` },
      el("span", { class: "step-mark" }, icon(STEP_ICONS[step.status] || "dot")),
      el("div", { class: "step-body" },
        el("div", {}, el("span", { class: "step-no" }, `${i + 1}.`), " ", el("strong", {}, step.type), " ",
          pill(step.status)),
        el("div", { class: "muted small" }, step.startedAt ? `started ${fmtTime(step.startedAt)}, took ${took}` : "not started"),
        step.errorMessage ? el("div", { class: "error small" }, step.errorMessage) : ""));
  }

  function renderPlan(plan) {
    $("fo-plan-id").textContent = plan ? `${plan.planId || ""}${plan.status ? " - " + plan.status : ""}` : "";
    const steps = plan ? [...plan.completedSteps, ...plan.pendingSteps] : [];
    const timeline = $("plan-timeline");
    timeline.replaceChildren(...(steps.length ? steps.map(stepItem)
      : [el("li", { class: "muted" }, "No recovery plan.")]));
  }

  // -- episodes -----------------------------------------------------------------------------------------------
  function planCell(plans) {
    if (!plans.length) return el("span", { class: "muted" }, "no plan");
    return el("div", { class: "episode-plans" }, ...plans.map((p) => el("div", { class: "episode-plan" },
      el("span", { class: "muted" }, `${p.failureType} `), pill(p.status), " ",
      ...p.steps.map((s) => el("span", { class: `step-chip step-${s.status}`, title: s.status }, s.type)))));
  }

  function fillReasons() {
    const select = $("episode-reason");
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "any reason"),
      ...[...reasonsSeen].sort().map((r) => el("option", { value: r }, r)));
    select.value = chosen;
  }

  async function loadEpisodes() {
    const params = new URLSearchParams({ limit: String(EPISODES_SHOWN) });
    const reason = $("episode-reason").value;
    const span = WINDOWS_MS[$("episode-window").value];
    if (reason) params.set("reason", reason);
    if (span) params.set("since", new Date(Date.now() - span).toISOString());
    const { ok, body } = await S.api(`/api/failover/episodes?${params}`);
    if (!ok) return;
    let grew = false;
    for (const e of body.items) if (e.reason && !reasonsSeen.has(e.reason)) { reasonsSeen.add(e.reason); grew = true; }
    if (grew) fillReasons();
    S.fillTable("episodes-table", body.items.map((e) => [
      fmtTime(e.start), e.end ? fmtTime(e.end) : el("span", { class: "loss" }, "ongoing"),
      el("td", {}, e.reason || "-", e.halted ? el("div", { class: "small loss" }, "trading disabled") : "",
        e.operatorHalt ? el("div", { class: "small loss" }, "operator HALT") : ""),
      fmtMs(e.durationMs), el("td", {}, planCell(e.plans)),
    ]), "No safe-mode episode in this window.", 5);
  }

  function episodesSoon() {
    if (episodesTimer !== null) window.clearTimeout(episodesTimer);
    episodesTimer = window.setTimeout(() => { episodesTimer = null; S.guard(loadEpisodes)(); }, 1000);
  }

  // Called with each failover status the badge shows.
  function onStatus(status) {
    renderPlan(status.currentPlan);
    if (lastSafeMode !== null && status.safeMode !== lastSafeMode) episodesSoon();
    lastSafeMode = status.safeMode;
  }

  // -- operator buttons -------------------------------------------------------------------------------------
  async function guarded(path, question, payload = () => ({})) {
    const answer = await S.confirmAction(question);
    if (answer) await S.post(path, payload(answer), "failover-message");
  }

  function wire() {
    $("exit-safe-mode").addEventListener("click", () => guarded("/api/failover/exit-safe-mode", {
      title: "Leave safe mode?", confirm: "Exit safe mode",
      text: $("exit-force").checked ? "Forced: new entries are allowed again even though conditions still hold."
        : "Refused while recovery runs or a condition still holds (the reply names them).",
    }, () => ({ force: $("exit-force").checked })));
    $("enter-safe-mode").addEventListener("click", () => guarded("/api/failover/enter-safe-mode", {
      title: "Enter safe mode?", confirm: "Enter safe mode", reason: true,
      text: "New entries stop at once; open positions and their protective orders stay. Give a reason.",
    }, (a) => ({ reason: a.reason })));
    $("halt-trading").addEventListener("click", () => guarded("/api/trader/halt", {
      title: "Halt trading?", confirm: "Halt", reason: true,
      text: "Trading stays stopped, across restarts, until someone resumes it. Give a reason.",
    }, (a) => ({ reason: a.reason })));
    $("resume-trading").addEventListener("click", () => guarded("/api/trader/resume", {
      title: "Resume trading?", confirm: "Resume", text: "Lifts the halt; safe mode still decides entries.",
    }));
    $("retry-recovery").addEventListener("click", () => S.post("/api/failover/retry-recovery", {}, "failover-message"));
    $("episode-reason").addEventListener("change", S.guard(loadEpisodes));
    $("episode-window").addEventListener("change", S.guard(loadEpisodes));
    window.setInterval(tick, 1000);
    S.guard(loadEpisodes)();
  }

  S.safemode = { wire, onStatus, renderConditions };
})();
