// The dashboard: tiles, agents, quarantine (requeue/drop), outbox needing attention, activity.

import { LiveStream } from "./live.js";
import { renderPermissions } from "./permissions.js";
import { agentsOf, app, healthClass, refreshStatus, scheduleStatus } from "./state.js";
import { $, age, api, clock, el } from "./util.js";

function tile(label, value, tone, hint) {
  return el(
    "div",
    { class: `tile ${tone || ""}`, dataset: { tile: label.toLowerCase().replace(/\s+/g, "-") } },
    el("div", { class: "tile-value", text: String(value) }),
    el("div", { class: "tile-label", text: label }),
    hint ? el("div", { class: "tile-hint", text: hint }) : null,
  );
}

export function renderDashboard() {
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
  renderPermissions(data);
  const sup = data.status.supervisor;
  $("#agents-hint").textContent = !agents.length
    ? "no agents reported yet"
    : sup
      ? `supervisor pid ${sup.pid} · up ${age(sup.uptime)} · channels: ${(sup.channels || []).join(", ") || "–"}`
      : "";

  const flight = data.in_flight || [];
  $("#flight tbody").replaceChildren(
    ...flight.map((m) =>
      el(
        "tr",
        { dataset: { messageId: m.id } },
        el("td", { class: "num mono", text: m.id }),
        el("td", { text: m.agent }),
        el("td", {}, el("span", { class: `chip ${m.status}`, text: m.state })),
        el("td", { class: "num", text: m.attempt }),
        el("td", { class: "muted narrow", text: `${m.channel} · ${m.sender}`, title: `${m.channel} · ${m.conversation} · ${m.sender}` }),
        el("td", { class: "grow", text: m.text, title: m.text }),
        el("td", { class: "muted mono narrow", text: m.lease_owner || "–", title: m.lease_owner || "" }),
        m.lease_expires_at ? el("td", { class: "num", dataset: { expires: m.lease_expires_at } }) : el("td", { class: "num", text: "–" }),
      ),
    ),
  );
  $("#flight-count").textContent = flight.length;
  $("#flight-empty").hidden = flight.length > 0;
  $("#flight").hidden = flight.length === 0;

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

export async function quarantineAction(event) {
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

export async function showDashboard() {
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

export function tick() {
  // ages move even when nothing else does; only the age cells are touched. Ledger times are
  // the server's clock: compare them with the server's now (skew measured at each fetch).
  const now = Date.now() / 1000;
  const serverNow = now + (app.clockSkew || 0);
  for (const cell of document.querySelectorAll("[data-since]")) {
    cell.textContent = age(Math.max(0, serverNow - Number(cell.dataset.since)));
  }
  for (const cell of document.querySelectorAll("[data-age-base]")) {
    cell.textContent = age(Number(cell.dataset.ageBase) + now - Number(cell.dataset.fetched));
  }
  for (const cell of document.querySelectorAll("[data-expires]")) {
    const left = Number(cell.dataset.expires) - serverNow;
    cell.textContent = left >= 0 ? `${age(left)} left` : `stale ${age(-left)}`;
    cell.classList.toggle("bad-text", left < 0);
  }
}
