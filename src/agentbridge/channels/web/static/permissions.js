// Pending permission requests: an agent waits for a decision. Allow / Always / Deny answer
// through the bridge's relay, as a reply in the chat would: the first answer wins.

import { refreshStatus } from "./state.js";
import { $, api, el } from "./util.js";

const CHOICES = [
  ["yes", "Allow", ""],
  ["always", "Always", ""],
  ["no", "Deny", "danger"],
];

function buttons(request, canAnswer) {
  return CHOICES.filter(([answer]) => answer !== "always" || request.can_always).map(([answer, label, tone]) =>
    el("button", {
      type: "button",
      class: `small ${tone}`,
      text: label,
      disabled: !canAnswer,
      title: canAnswer ? `answer "${answer} ${request.short_id}"` : "no relay: answer it in its chat",
      dataset: { answer, id: request.short_id },
    }),
  );
}

export function renderPermissions(data) {
  const pending = data.permissions || [];
  const canAnswer = Boolean(data.can_answer_permissions);
  $("#permissions tbody").replaceChildren(
    ...pending.map((p) =>
      el(
        "tr",
        { dataset: { shortId: p.short_id } },
        el("td", { class: "mono strong", text: p.short_id }),
        el("td", { text: p.agent }),
        el("td", {
          class: "muted narrow",
          text: `${p.channel || "–"} · ${p.conversation || ""}${p.message_id ? ` · #${p.message_id}` : ""}`,
        }),
        el("td", { text: p.tool }),
        el("td", { class: "grow mono", text: p.summary, title: p.summary }),
        el("td", { class: "num", dataset: { expires: p.expires_at } }),
        el("td", { class: "actions" }, ...buttons(p, canAnswer)),
      ),
    ),
  );
  $("#permissions-count").textContent = pending.length;
  $("#permissions-empty").hidden = pending.length > 0;
  $("#permissions").hidden = pending.length === 0;
}

export async function permissionAction(event) {
  const button = event.target.closest("button[data-answer]");
  if (!button) return;
  const { answer, id } = button.dataset;
  for (const b of button.parentElement.querySelectorAll("button")) b.disabled = true;
  const note = $("#permissions-note");
  try {
    const data = await api(`/api/permissions/${encodeURIComponent(id)}`, { json: { answer } });
    const { state, always } = data.permission;
    note.textContent = `Permission ${id}: ${state}${always ? " for this session" : ""} (by console)`;
  } catch (error) {
    note.textContent = `Permission ${id}: ${error.message}`;
  }
  note.hidden = false;
  await refreshStatus();
}
