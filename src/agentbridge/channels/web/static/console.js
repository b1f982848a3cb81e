// agentbridge console: dashboard + per-agent chat. Vanilla JS, no build step, no CDN.
// Everything shown comes from the ledger: snapshots over JSON, then live ledger events over
// Server-Sent Events whose ids are ledger event ids (a reconnect resumes with Last-Event-ID).
// Text from messages is only ever set with textContent: nothing from the ledger is HTML.

const STATUS_REFRESH_MS = 5000;

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clock(at) {
  return new Date(at * 1000).toLocaleTimeString([], { hour12: false });
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} m ${Math.floor(seconds % 60)} s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} m`;
  return `${Math.floor(seconds / 86400)} d`;
}

function randomId(bytes = 16) {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  const raw = crypto.getRandomValues(new Uint8Array(bytes)); // works outside secure contexts
  return Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: { Accept: "application/json" }, ...options };
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.headers = { ...init.headers, "Content-Type": "application/json" };
    init.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = new Error((data && data.error) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// ---------------------------------------------------------------------------- live stream

const conn = {
  set(state, label) {
    const node = $("#conn");
    node.dataset.state = state;
    $(".label", node).textContent = label || state;
  },
};

class LiveStream {
  // One EventSource; the browser reconnects by itself with Last-Event-ID. If it gives up
  // (readyState CLOSED, e.g. the bridge restarted), we reopen with ?after=<last id seen>.
  constructor(params, cursor, handlers) {
    this.params = params;
    this.cursor = cursor;
    this.handlers = handlers;
    this.source = null;
    this.retryTimer = null;
    this.closed = false;
    this.open();
  }

  open() {
    const query = new URLSearchParams({ ...this.params, after: String(this.cursor) });
    const source = new EventSource(`/api/events?${query}`);
    this.source = source;
    source.addEventListener("open", () => conn.set("live"));
    source.addEventListener("ledger", (event) => {
      const id = Number(event.lastEventId);
      if (id <= this.cursor) return; // already applied (never render an event twice)
      this.cursor = id;
      this.handlers.ledger(JSON.parse(event.data), id);
    });
    source.addEventListener("receipt", (event) => this.handlers.receipt?.(JSON.parse(event.data)));
    source.addEventListener("error", () => {
      if (this.closed) return;
      if (source.readyState === EventSource.CLOSED) {
        // the browser gave up (bridge down, or restarted with a new token): find out which
        clearTimeout(this.retryTimer);
        fetch("/api/status", { credentials: "same-origin" })
          .then((r) => r.status)
          .catch(() => 0)
          .then((status) => {
            conn.set(
              "offline",
              status === 401 ? "signed out – open the link agentbridge up printed" : "offline – retrying",
            );
            this.retryTimer = setTimeout(() => this.closed || this.open(), status === 401 ? 5000 : 2000);
          });
      } else {
        conn.set("reconnecting");
      }
    });
  }

  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.source?.close();
  }
}

// ---------------------------------------------------------------------------- shared state

const app = {
  status: null,
  statusFetchedAt: 0,
  stream: null,
  route: { view: "dashboard", agent: null },
  conversation: null,
  messages: new Map(), // id -> { view, events: Map(eventId -> event) }
  pending: new Map(), // key -> article (sent, not yet acknowledged by the server)
  statusTimer: null,
};

function conversationId() {
  let id = localStorage.getItem("agentbridge.conversation");
  if (!id || !/^[A-Za-z0-9._:@+-]{1,80}$/.test(id)) {
    id = `web-${randomId().replace(/-/g, "").slice(0, 10)}`;
    localStorage.setItem("agentbridge.conversation", id);
  }
  return id;
}

function agentsOf(status) {
  return Object.entries((status && status.status && status.status.agents) || {}).sort(([a], [b]) =>
    a.localeCompare(b),
  );
}

function healthClass(health) {
  // the supervisor's AgentHealth: healthy | starting | waiting | restarting | degraded | stopped
  const value = String(health || "unknown").toLowerCase();
  if (value === "healthy") return "ok";
  if (["degraded", "stopped", "not running", "dead", "failed"].includes(value)) return "bad";
  return "warn";
}

async function refreshStatus() {
  try {
    app.status = await api("/api/status");
    app.statusFetchedAt = Date.now() / 1000;
  } catch (error) {
    if (error.status === 401) conn.set("offline", "signed out – reopen the printed link");
    return;
  }
  renderTabs();
  if (app.route.view === "dashboard") renderDashboard();
  else renderChatHead();
}

let refreshQueued = null;
function scheduleStatus() {
  // many ledger events → one status fetch (trailing, at most every 300 ms)
  if (refreshQueued) return;
  refreshQueued = setTimeout(() => {
    refreshQueued = null;
    refreshStatus();
  }, 300);
}

function renderTabs() {
  const tabs = $("#tabs");
  for (const node of tabs.querySelectorAll("[data-agent]")) node.remove();
  for (const [name, info] of agentsOf(app.status)) {
    tabs.append(
      el(
        "a",
        { href: `#/chat/${encodeURIComponent(name)}`, dataset: { agent: name, route: `chat:${name}` } },
        el("span", { class: `dot ${healthClass(info.health)}` }),
        name,
      ),
    );
  }
  const current = app.route.view === "dashboard" ? "dashboard" : `chat:${app.route.agent}`;
  for (const link of tabs.querySelectorAll("a")) {
    link.classList.toggle("active", link.dataset.route === current);
  }
}

// ---------------------------------------------------------------------------- dashboard

function tile(label, value, tone, hint) {
  return el(
    "div",
    { class: `tile ${tone || ""}`, dataset: { tile: label.toLowerCase().replace(/\s+/g, "-") } },
    el("div", { class: "tile-value", text: String(value) }),
    el("div", { class: "tile-label", text: label }),
    hint ? el("div", { class: "tile-hint", text: hint }) : null,
  );
}

function renderDashboard() {
  const data = app.status;
  if (!data) return;
  const agents = agentsOf(data);
  const sum = (field) => agents.reduce((total, [, a]) => total + (Number(a[field]) || 0), 0);
  const oldest = Math.max(0, ...agents.map(([, a]) => Number(a.oldest_queued_age) || 0));
  const healthy = agents.filter(([, a]) => healthClass(a.health) === "ok").length;
  const outbox = data.status.outbox || {};
  const troubled = (outbox.failed || 0) + (outbox.unknown || 0);
  $("#tiles").replaceChildren(
    tile("Agents", `${healthy}/${agents.length}`, healthy === agents.length ? "ok" : "bad", "healthy"),
    tile("Queued", sum("queued"), sum("queued") ? "info" : "", oldest ? `oldest ${age(oldest)}` : "none waiting"),
    tile("In flight", sum("in_flight"), sum("in_flight") ? "work" : ""),
    tile("Stale", sum("stale"), sum("stale") ? "bad" : "", "expired leases"),
    tile("Quarantined", data.quarantined.length, data.quarantined.length ? "warn" : ""),
    tile("Outbox", (outbox.pending || 0) + (outbox.sending || 0), "", `${outbox.sent || 0} sent`),
    tile("Undelivered", troubled, troubled ? "bad" : "", "failed + unknown"),
  );

  const rows = agents.map(([name, a]) =>
    el(
      "tr",
      { dataset: { agent: name } },
      el("td", {}, el("a", { href: `#/chat/${encodeURIComponent(name)}`, class: "strong", text: name })),
      el("td", {}, el("span", { class: `badge ${healthClass(a.health)}`, text: a.health || "unknown" })),
      el("td", { class: "muted", text: [a.runtime || a.state, a.pid ? `pid ${a.pid}` : null].filter(Boolean).join(" · ") || "–" }),
      el("td", { class: "num", text: a.queued ?? 0 }),
      a.queued
        ? el("td", { class: "num", dataset: { ageBase: a.oldest_queued_age || 0, fetched: app.statusFetchedAt } })
        : el("td", { class: "num", text: "–" }),
      el("td", { class: "num", text: a.in_flight_message ? `${a.in_flight ?? 0} · #${a.in_flight_message}` : a.in_flight ?? 0 }),
      el("td", { class: `num ${a.stale ? "bad-text" : ""}`, text: a.stale ?? 0 }),
      el("td", { class: `num ${a.quarantined ? "warn-text" : ""}`, text: a.quarantined ?? 0 }),
      el("td", { class: "num", text: a.restarts ?? 0 }),
      el("td", { class: "muted clip", text: a.detail || "", title: a.detail || "" }),
    ),
  );
  $("#agents tbody").replaceChildren(...rows);
  const sup = data.status.supervisor;
  $("#agents-hint").textContent = !agents.length
    ? "no agents reported yet"
    : sup
      ? `supervisor pid ${sup.pid} · up ${age(sup.uptime)} · channels: ${(sup.channels || []).join(", ") || "–"}`
      : "";

  const quarantine = data.quarantined.map((m) =>
    el(
      "tr",
      { dataset: { messageId: m.id } },
      el("td", { class: "num mono", text: m.id }),
      el("td", { text: m.agent }),
      el("td", { class: "muted narrow", text: `${m.channel} · ${m.sender}`, title: `${m.channel} · ${m.conversation} · ${m.sender}` }),
      el("td", { class: "grow", text: m.text, title: m.text }),
      el("td", { class: "muted narrow", text: m.reason || "", title: m.reason || "" }),
      el("td", { class: "num", dataset: { since: m.updated_at } }),
      el(
        "td",
        { class: "actions" },
        el("button", { type: "button", class: "small", text: "Requeue", dataset: { action: "requeue", id: m.id } }),
        el("button", { type: "button", class: "small danger", text: "Drop", dataset: { action: "drop", id: m.id } }),
      ),
    ),
  );
  $("#quarantine tbody").replaceChildren(...quarantine);
  $("#quarantine-count").textContent = data.quarantined.length;
  $("#quarantine-empty").hidden = data.quarantined.length > 0;
  $("#quarantine").hidden = data.quarantined.length === 0;

  const items = data.outbox_attention;
  $("#outbox tbody").replaceChildren(
    ...items.map((o) =>
      el(
        "tr",
        { dataset: { outboxId: o.id } },
        el("td", { class: "num mono", text: o.id }),
        el("td", {
          class: "muted narrow",
          text: `${o.channel} · ${o.conversation}${o.message_id ? ` · #${o.message_id}` : ""}`,
          title: o.text,
        }),
        el("td", {}, el("span", { class: `badge ${o.state === "pending" || o.state === "sending" ? "info" : "bad"}`, text: o.state })),
        el("td", { class: "num", text: o.attempts }),
        el("td", { class: "muted grow", text: o.last_error || "", title: o.last_error || "" }),
        el("td", { class: "num", dataset: { since: o.created_at } }),
      ),
    ),
  );
  $("#outbox-count").textContent = items.length;
  $("#outbox-empty").hidden = items.length > 0;
  $("#outbox").hidden = items.length === 0;
  $("#outbox-hint").textContent = `${outbox.sent || 0} sent · ${outbox.expired || 0} expired`;
  tick();
}

async function quarantineAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const { action, id } = button.dataset;
  if (action === "drop" && !confirm(`Drop message #${id}? It will be marked failed.`)) return;
  for (const b of button.parentElement.querySelectorAll("button")) b.disabled = true;
  try {
    await api(`/api/messages/${id}/${action}`, { json: {} });
  } catch (error) {
    alert(`Could not ${action} #${id}: ${error.message}`);
  }
  await refreshStatus();
}

function addActivity(payload) {
  const { event, message } = payload;
  const list = $("#activity");
  $("#activity-empty").hidden = true;
  if (list.querySelector(`[data-event-id="${event.id}"]`)) return;
  const what =
    event.kind === "transition"
      ? `${event.from || "new"} → ${event.to}`
      : event.kind === "outbox"
        ? `reply ${event.from || ""} → ${event.to}`
        : event.kind.replace(/_/g, " ");
  list.prepend(
    el(
      "li",
      { dataset: { eventId: event.id }, class: event.receipt ? `r-${event.receipt}` : "" },
      el("time", { text: clock(event.at) }),
      el("span", { class: "mono muted", text: event.message_id ? `#${event.message_id}` : "" }),
      el("span", { class: "what", text: what }),
      event.receipt ? el("span", { class: `chip ${event.receipt}`, text: event.receipt }) : el("span"),
      el("span", { class: "muted", text: message ? `${message.agent} · ${message.channel}` : "" }),
      el("span", { class: "muted clip", text: [event.actor, event.detail].filter(Boolean).join(": ") }),
    ),
  );
  while (list.children.length > 200) list.lastElementChild.remove();
}

async function showDashboard() {
  await refreshStatus();
  $("#activity").replaceChildren();
  $("#activity-empty").hidden = false;
  const cursor = app.status ? app.status.cursor : 0;
  // start a little in the past so the feed is not empty on arrival
  app.stream = new LiveStream({}, Math.max(0, cursor - 60), {
    ledger: (payload) => {
      addActivity(payload);
      scheduleStatus();
    },
  });
}

// ---------------------------------------------------------------------------- chat

function renderChatHead() {
  const agent = app.route.agent;
  const info = (app.status && app.status.status.agents && app.status.status.agents[agent]) || null;
  $("#chat-agent").textContent = agent;
  const badge = $("#chat-health");
  badge.textContent = info ? info.health || "unknown" : "not reported";
  badge.className = `badge ${info ? healthClass(info.health) : "warn"}`;
  $("#chat-stats").textContent = info
    ? `${info.queued || 0} queued · ${info.in_flight || 0} in flight` + (info.detail ? ` · ${info.detail}` : "")
    : "";
  $("#chat-conversation").textContent = app.conversation;
}

function richText(text) {
  // ``` fences become <pre>; everything else stays plain text (pre-wrap)
  const box = el("div", { class: "text" });
  const parts = String(text).split(/```[^\n]*\n?/);
  parts.forEach((part, index) => {
    if (!part) return;
    box.append(index % 2 ? el("pre", { text: part.replace(/\n$/, "") }) : el("span", { text: part }));
  });
  return box;
}

function turnArticle(key) {
  return el(
    "article",
    { class: "turn", dataset: { status: "sending", key: key || "" } },
    el(
      "div",
      { class: "bubble user" },
      el("div", { class: "text" }),
      el("div", { class: "meta" }, el("span", { class: "mid mono" }), el("time")),
    ),
    el("ol", { class: "receipts" }),
    el("div", { class: "status-line" }, el("span", { class: "spinner" }), el("span", { class: "status-text" })),
    el(
      "div",
      { class: "bubble agent", hidden: true },
      el("div", { class: "who" }),
      el("div", { class: "reply" }),
    ),
  );
}

function placeArticle(article, id) {
  const thread = $("#thread");
  $("#thread-empty").hidden = true;
  for (const other of thread.querySelectorAll("article.turn[data-message-id]")) {
    if (Number(other.dataset.messageId) > id) {
      thread.insertBefore(article, other);
      return;
    }
  }
  const firstPending = thread.querySelector("article.turn:not([data-message-id])");
  thread.insertBefore(article, firstPending);
}

const STATUS_TEXT = {
  sending: "sending…",
  queued: "queued – waiting for the agent",
  injected: "delivered to the agent's terminal",
  working: "the agent is working",
  replied: "",
  failed: "failed",
  waiting: "waiting",
};

function applyMessage(view, events = []) {
  let entry = app.messages.get(view.id);
  if (!entry) {
    entry = { view, events: new Map(), article: null };
    app.messages.set(view.id, entry);
    const adopted = view.key ? app.pending.get(view.key) : null;
    if (adopted) app.pending.delete(view.key);
    entry.article = adopted || turnArticle(view.key);
    entry.article.dataset.messageId = view.id;
    placeArticle(entry.article, view.id);
  }
  if (view.updated_at >= entry.view.updated_at || entry.view === view) entry.view = view;
  for (const event of events) entry.events.set(event.id, event);
  renderTurn(entry);
}

function renderTurn(entry) {
  const { view, article } = entry;
  const stick = nearBottom();
  article.dataset.status = view.status;
  article.dataset.state = view.state;
  $(".bubble.user .text", article).replaceWith(richText(view.text));
  $(".mid", article).textContent = `#${view.id}`;
  $(".meta time", article).textContent = clock(view.created_at);
  const chips = [...entry.events.values()].filter((e) => e.receipt).sort((a, b) => a.id - b.id);
  const list = $(".receipts", article);
  for (const event of chips) {
    if (list.querySelector(`[data-event-id="${event.id}"]`)) continue;
    const delta = event.at - view.created_at;
    const chip = el(
      "li",
      {
        class: `chip ${event.receipt}`,
        dataset: { eventId: event.id, receipt: event.receipt },
        title: `${clock(event.at)} · ${event.actor}${event.detail ? `: ${event.detail}` : ""}`,
      },
      event.receipt,
      el("small", { text: delta < 0.05 ? clock(event.at) : `+${age(delta)}` }),
    );
    const next = [...list.children].find((c) => Number(c.dataset.eventId) > event.id);
    list.insertBefore(chip, next || null);
  }
  const text = STATUS_TEXT[view.status] ?? view.status;
  const detail = view.status_detail ? ` – ${view.status_detail}` : "";
  $(".status-text", article).textContent = view.status === "replied" ? "" : `${text}${detail}`;
  $(".status-line", article).hidden = view.status === "replied";
  const reply = $(".bubble.agent", article);
  if (view.reply !== null && view.reply !== undefined) {
    reply.hidden = false;
    $(".who", reply).textContent = view.agent;
    $(".reply", reply).replaceChildren(richText(view.reply));
  }
  if (stick) scrollToEnd();
}

function nearBottom() {
  const thread = $("#thread");
  return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
}

function scrollToEnd() {
  const thread = $("#thread");
  thread.scrollTop = thread.scrollHeight;
}

async function showChat(agent) {
  app.messages.clear();
  app.pending.clear();
  $("#thread").replaceChildren($("#thread-empty"));
  $("#thread-empty").hidden = false;
  renderChatHead();
  refreshStatus();
  const query = new URLSearchParams({ agent, conversation: app.conversation, limit: "100" });
  let snapshot;
  try {
    snapshot = await api(`/api/messages?${query}`);
  } catch (error) {
    conn.set("offline", error.status === 401 ? "signed out" : "offline");
    return;
  }
  if (app.route.agent !== agent) return; // navigated away meanwhile
  for (const message of snapshot.messages) applyMessage(message, message.events);
  scrollToEnd();
  app.stream = new LiveStream({ agent, conversation: app.conversation }, snapshot.cursor, {
    ledger: ({ event, message }) => {
      if (message) applyMessage(message, [event]);
      scheduleStatus();
    },
    receipt: (receipt) => {
      const entry = app.messages.get(receipt.message_id);
      if (!entry) return;
      entry.view = { ...entry.view, status: receipt.status, status_detail: receipt.detail };
      renderTurn(entry);
    },
  });
  $("#text").focus();
}

async function send(text) {
  const key = randomId();
  const article = turnArticle(key);
  $(".bubble.user .text", article).textContent = text;
  $(".status-text", article).textContent = STATUS_TEXT.sending;
  app.pending.set(key, article);
  $("#thread-empty").hidden = true;
  $("#thread").append(article);
  scrollToEnd();
  const body = { agent: app.route.agent, conversation: app.conversation, text, key };
  for (let attempt = 0; ; attempt++) {
    try {
      const result = await api("/api/send", { json: body });
      applyMessage(result.message, result.message.events);
      return;
    } catch (error) {
      // same key on every try: the ledger stores the message once, however often we retry
      if (error.status && error.status < 500) {
        article.dataset.status = "failed";
        $(".status-text", article).textContent = `not sent – ${error.message}`;
        return;
      }
      $(".status-text", article).textContent = `retrying… (${error.message})`;
      await new Promise((resolve) => setTimeout(resolve, Math.min(8000, 500 * 2 ** attempt)));
    }
  }
}

function setupComposer() {
  const text = $("#text");
  const button = $("#send");
  const update = () => {
    button.disabled = !text.value.trim();
  };
  text.addEventListener("input", update);
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = text.value;
    if (!value.trim()) return;
    text.value = "";
    update();
    send(value);
  });
  $("#new-thread").addEventListener("click", () => {
    localStorage.removeItem("agentbridge.conversation");
    app.conversation = conversationId();
    route();
  });
}

// ---------------------------------------------------------------------------- routing

function parseRoute() {
  const match = location.hash.match(/^#\/chat\/(.+)$/);
  return match ? { view: "chat", agent: decodeURIComponent(match[1]) } : { view: "dashboard", agent: null };
}

async function route() {
  app.stream?.close();
  app.stream = null;
  conn.set("connecting");
  app.route = parseRoute();
  $("#dashboard").hidden = app.route.view !== "dashboard";
  $("#chat").hidden = app.route.view !== "chat";
  document.title = app.route.view === "chat" ? `${app.route.agent} · agentbridge` : "agentbridge console";
  renderTabs();
  if (app.route.view === "chat") await showChat(app.route.agent);
  else await showDashboard();
}

function tick() {
  // ages move even when nothing else does; only the age cells are touched
  const now = Date.now() / 1000;
  for (const cell of document.querySelectorAll("[data-since]")) {
    cell.textContent = age(Math.max(0, now - Number(cell.dataset.since)));
  }
  for (const cell of document.querySelectorAll("[data-age-base]")) {
    cell.textContent = age(Number(cell.dataset.ageBase) + now - Number(cell.dataset.fetched));
  }
}

function main() {
  app.conversation = conversationId();
  setupComposer();
  $("#quarantine").addEventListener("click", quarantineAction);
  window.addEventListener("hashchange", route);
  app.statusTimer = setInterval(refreshStatus, STATUS_REFRESH_MS);
  setInterval(tick, 1000);
  window.agentbridgeConsole = app; // for debugging from the devtools console
  route();
}

main();
