// Shared state: the status snapshot, the route, the conversation id; status refresh and tabs.

import { $, api, conn, el, randomId } from "./util.js";

export const app = {
  status: null,
  statusFetchedAt: 0,
  stream: null,
  route: { view: "dashboard", agent: null },
  conversation: null,
  messages: new Map(), // id -> { view, events: Map(eventId -> event) }
  pending: new Map(), // key -> article (sent, not yet acknowledged by the server)
  statusTimer: null,
  clockSkew: 0, // server clock − browser clock, seconds
  onStatus: null, // set by the page: re-render what shows the status
};

export function conversationId() {
  let id = localStorage.getItem("agentbridge.conversation");
  if (!id || !/^[A-Za-z0-9._:@+-]{1,80}$/.test(id)) {
    id = `web-${randomId().replace(/-/g, "").slice(0, 10)}`;
    localStorage.setItem("agentbridge.conversation", id);
  }
  return id;
}

export function agentsOf(status) {
  return Object.entries((status && status.status && status.status.agents) || {}).sort(([a], [b]) =>
    a.localeCompare(b),
  );
}

export function healthClass(health) {
  // the supervisor's AgentHealth: healthy | starting | waiting | restarting | degraded | stopped
  const value = String(health || "unknown").toLowerCase();
  if (value === "healthy") return "ok";
  if (["degraded", "stopped", "not running", "dead", "failed"].includes(value)) return "bad";
  return "warn";
}

export async function refreshStatus() {
  try {
    app.status = await api("/api/status");
    app.statusFetchedAt = Date.now() / 1000;
    if (app.status.server_time) app.clockSkew = app.status.server_time - app.statusFetchedAt;
  } catch (error) {
    if (error.status === 401) conn.set("offline", "signed out – reopen the printed link");
    return;
  }
  renderTabs();
  app.onStatus?.();
}

let refreshQueued = null;
export function scheduleStatus() {
  // many ledger events → one status fetch (trailing, at most every 300 ms)
  if (refreshQueued) return;
  refreshQueued = setTimeout(() => {
    refreshQueued = null;
    refreshStatus();
  }, 300);
}

export function renderTabs() {
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
