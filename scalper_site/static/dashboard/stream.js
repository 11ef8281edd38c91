// One live stream for the page: the websocket /ws/failover/, every message tagged with the failover
// state's version it was read at ({type, version, data}).
//
// The rule: no panel shows a state older than the SAFE MODE badge. A message older than the badge is not
// rendered; the page reads GET /api/dashboard/panels (everything at one version) instead. A panel newer
// than the badge is shown and the badge is read again. While the socket is down the page polls that same
// endpoint every 5 s, and says so; the socket reconnects with backoff and polling stops.
"use strict";

(function () {
  const S = window.Scalper;
  const POLL_MS = 5000;
  const REFETCH_DELAY_MS = 200;  // coalesce a burst of state changes (a recovery plan makes several) into one read
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];

  // options: onStatus(data, version); panels: {name: render(data, version)}; sections: {name: element id};
  // pushes: {type: {render(data), refetch()}}; poll: [functions also run while polling]; onConnection(up, text).
  function createStream(options) {
    const { onStatus, panels, sections = {}, pushes = {}, poll = [], onConnection } = options;
    let badge = -1;          // the version of the status the badge shows
    const shown = {};        // panel name -> the version it shows
    let refetchTimer = null;
    let refetching = false;
    let again = false;
    let pollTimer = null;
    let attempt = 0;

    function markBehind() {
      for (const [name, id] of Object.entries(sections)) {
        const node = S.$(id);
        if (node) node.classList.toggle("behind", (shown[name] ?? -1) < badge);
      }
    }

    function refetchSoon(delay = REFETCH_DELAY_MS) {
      if (refetchTimer === null) refetchTimer = window.setTimeout(refetch, delay);
    }

    async function refetch() {
      refetchTimer = null;
      if (refetching) { again = true; return; }
      refetching = true;
      try {
        const { ok, body } = await S.api("/api/dashboard/panels");
        if (!ok) return;
        if (body.version < badge) { again = true; return; }  // a newer state arrived meanwhile: read again
        badge = body.version;
        onStatus(body.status, badge);
        for (const name of Object.keys(panels)) {
          if (name in body) { shown[name] = badge; panels[name](body[name], badge); }
        }
        markBehind();
      } catch (err) {
        console.warn(err);
      } finally {
        refetching = false;
        if (again) { again = false; refetchSoon(); }
      }
    }

    function onStatusMessage(version, data) {
      if (version < badge) return;  // a late push: the badge already shows a newer state
      badge = version;
      onStatus(data, version);
      markBehind();
      // A panel shown at an older version is read again; one not shown yet comes on the socket by itself.
      if (Object.keys(panels).some((name) => name in shown && shown[name] < badge)) refetchSoon();
    }

    function onPanelMessage(name, version, data) {
      if (version < badge) { refetchSoon(); return; }  // older than the badge: never shown
      shown[name] = version;
      panels[name](data, version);
      markBehind();
      if (version > badge) refetchSoon();  // the badge is behind this panel: read it again
    }

    function handle(raw) {
      let message;
      try { message = JSON.parse(raw); } catch { return; }
      const version = Number.isInteger(message.version) ? message.version : -1;
      if (message.type === "failover.status") onStatusMessage(version, message.data);
      else if (message.type in panels) onPanelMessage(message.type, version, message.data);
      else if (message.type in pushes) {
        const push = pushes[message.type];
        if (version < badge && push.refetch) S.guard(push.refetch)();
        else push.render(message.data, version);
      }
    }

    function pollOnce() {
      refetchSoon(0);
      for (const fn of poll) S.guard(fn)();
    }

    function startPolling() {
      if (pollTimer !== null) return;
      pollTimer = window.setInterval(pollOnce, POLL_MS);
      pollOnce();
    }

    function stopPolling() {
      if (pollTimer !== null) window.clearInterval(pollTimer);
      pollTimer = null;
    }

    function connect() {
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${window.location.host}/ws/failover/`);
      socket.addEventListener("open", () => {
        attempt = 0;
        stopPolling();
        onConnection(true, "live");
      });
      socket.addEventListener("message", (event) => handle(event.data));
      socket.addEventListener("close", () => {
        const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)] * (0.8 + Math.random() * 0.4);
        attempt += 1;
        onConnection(false, "polling every 5 s, live connection down",
          `reconnecting in ${(delay / 1000).toFixed(1)} s`);
        startPolling();
        window.setTimeout(connect, delay);
      });
    }

    return { connect, refetch: () => refetchSoon(0), version: () => badge };
  }

  S.createStream = createStream;
})();
