// The chat page: one agent, this browser's conversation; receipts and replies live.

import { LiveStream } from "./live.js";
import { app, conversationId, healthClass, refreshStatus, scheduleStatus } from "./state.js";
import { $, age, api, clock, conn, el, randomId } from "./util.js";

export function renderChatHead() {
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
      el("ul", { class: "files" }),
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
  interrupted: "interrupted",
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
  const text = view.progress ? "" : (STATUS_TEXT[view.status] ?? view.status);
  const detail = view.status_detail ? `${text ? " – " : ""}${view.status_detail}` : "";
  $(".status-text", article).textContent = view.status === "replied" ? "" : `${text}${detail}`;
  $(".status-line", article).hidden = view.status === "replied";
  const reply = $(".bubble.agent", article);
  const files = view.files || [];
  if (files.length || (view.reply !== null && view.reply !== undefined)) {
    reply.hidden = false;
    $(".who", reply).textContent = view.agent;
  }
  if (view.reply !== null && view.reply !== undefined) {
    $(".reply", reply).replaceChildren(richText(view.reply));
  }
  $(".files", reply).replaceChildren(...files.map(fileItem));
  if (stick) scrollToEnd();
}

function fileSize(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

function fileItem(file) {
  // a file the agent sent: a download link once delivered, else why not (yet)
  const label = `${file.name} (${fileSize(file.size)})`;
  const body = file.url
    ? el("a", { class: "file-link", href: file.url, download: file.name }, label)
    : el("span", { class: "file-pending" }, file.error ? `${label} – not sent: ${file.error}` : `${label} – sending…`);
  return el(
    "li",
    { class: "file", dataset: { outboxId: file.outbox_id, state: file.state } },
    body,
    file.caption ? el("div", { class: "caption", text: file.caption }) : null,
  );
}

function nearBottom() {
  const thread = $("#thread");
  return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
}

function scrollToEnd() {
  const thread = $("#thread");
  thread.scrollTop = thread.scrollHeight;
}

export async function showChat(agent) {
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
      const progress = Boolean(receipt.progress); // "working (12 s, 3 steps): …", in place
      entry.view = { ...entry.view, status: receipt.status, status_detail: receipt.detail, progress };
      renderTurn(entry);
    },
  });
  $("#text").focus();
}

async function send(text, files = []) {
  const key = randomId();
  const article = turnArticle(key);
  const names = files.map((f) => `[${f.name}]`).join(" ");
  $(".bubble.user .text", article).textContent = names ? `${text} ${names}`.trim() : text;
  $(".status-text", article).textContent = STATUS_TEXT.sending;
  app.pending.set(key, article);
  $("#thread-empty").hidden = true;
  $("#thread").append(article);
  scrollToEnd();
  const body = { agent: app.route.agent, conversation: app.conversation, text, key };
  for (let attempt = 0; ; attempt++) {
    try {
      const result = files.length
        ? await api("/api/send", { form: formOf(body, files) })
        : await api("/api/send", { json: body });
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

function formOf(body, files) {
  const form = new FormData();
  for (const [name, value] of Object.entries(body)) if (value) form.append(name, value);
  if (!body.text) form.append("text", "");
  for (const file of files) form.append("file", file, file.name);
  return form;
}

export function setupComposer(restart) {
  // ``restart``: reopen the current view (after "New thread" picked a new conversation id)
  const text = $("#text");
  const button = $("#send");
  const picker = $("#files");
  const update = () => {
    button.disabled = !text.value.trim() && !picker.files.length;
  };
  text.addEventListener("input", update);
  picker.addEventListener("change", update);
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = text.value;
    const files = Array.from(picker.files);
    if (!value.trim() && !files.length) return;
    text.value = "";
    picker.value = "";
    update();
    send(value, files);
  });
  $("#new-thread").addEventListener("click", () => {
    localStorage.removeItem("agentbridge.conversation");
    app.conversation = conversationId();
    restart();
  });
}
