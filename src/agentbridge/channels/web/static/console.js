// agentbridge console: dashboard + per-agent chat. Vanilla JS modules, no build step, no CDN.
// Everything shown comes from the ledger: snapshots over JSON, then live ledger events over
// Server-Sent Events whose ids are ledger event ids (a reconnect resumes with Last-Event-ID).
// Text from messages is only ever set with textContent: nothing from the ledger is HTML.

import { renderChatHead, setupComposer, showChat } from "./chat.js";
import { quarantineAction, renderDashboard, showDashboard, tick } from "./dashboard.js";
import { permissionAction } from "./permissions.js";
import { app, conversationId, refreshStatus, renderTabs } from "./state.js";
import { $, conn } from "./util.js";

const STATUS_REFRESH_MS = 5000;

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

function main() {
  app.conversation = conversationId();
  app.onStatus = () => (app.route.view === "dashboard" ? renderDashboard() : renderChatHead());
  setupComposer(route);
  $("#quarantine").addEventListener("click", quarantineAction);
  $("#permissions").addEventListener("click", permissionAction);
  window.addEventListener("hashchange", route);
  app.statusTimer = setInterval(refreshStatus, STATUS_REFRESH_MS);
  setInterval(tick, 1000);
  window.agentbridgeConsole = app; // for debugging from the devtools console
  route();
}

main();
