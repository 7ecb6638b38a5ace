// A printable work order: procedure, steps with who and when, timeline, parts, photos and
// sign-off lines; "Print / PDF" opens the browser's own print dialog (save as PDF there).
"use strict";
const ORDER = Number($("order-sheet").dataset.workOrderId);

function fact(k, v) { return el("tr", {}, el("th", {}, k), el("td", {}, v ?? "—")); }

async function loadOrder() {
  const [w, parts] = await Promise.all([api(`/work-orders/${ORDER}`), api(`/work-orders/${ORDER}/parts`)]);
  $("wo-title").textContent = `${t("Work order #%(id)s", { id: w.id })} · ${orderTitle(w)}`;
  $("wo-facts").replaceChildren(fact(t("Device"), w.device || w.source), fact(t("Building"), w.building),
    fact(t("Fault"), w.fault), fact(t("Priority"), word("priority", w.priority)), fact(t("State"), word("state", w.state)),
    fact(t("Assignee"), w.assignee), fact(t("Created"), stamp(w.created_at)),
    fact(t("Resolved"), stamp(w.resolved_at)), fact(t("Description"), w.description));
  if (w.device) {
    // the maintenance contractor to call (an entrapment's procedure does), from the ledger
    const ledger = await api(`/assets/${encodeURIComponent(w.device)}`).catch(() => null);
    const a = ledger && ledger.asset;
    if (a) $("wo-facts").append(fact(t("Registration code"), a.registration_code),
      fact(t("Contractor"), `${a.contractor} ${a.contractor_phone}`.trim()));
  }
  $("wo-procedure").textContent = pick(w.procedure_title, w.procedure_title_en) || "";
  $("wo-steps").replaceChildren(...w.steps.map((s) => el("tr", { dataset: { seq: s.seq } },
    el("td", {}, s.seq), el("td", {}, s.role), el("td", {}, pick(s.action, s.action_en)),
    el("td", { className: "done-by" }, s.done_by || ""), el("td", {}, stamp(s.done_at)), el("td", {}, s.note || ""))));
  $("wo-events").replaceChildren(...w.events.map((e) => el("tr", {}, el("td", {}, stamp(e.time)),
    el("td", {}, word("event", e.event)), el("td", {}, e.actor), el("td", {}, (e.detail && e.detail.note) || ""))));
  $("wo-parts").replaceChildren(...parts.map((p) => el("tr", {}, el("td", {}, p.part), el("td", {}, p.quantity),
    el("td", {}, p.unit_cost), el("td", {}, p.added_by))));
  $("wo-photos").replaceChildren(photoSection(ORDER, false));
}

$("print").addEventListener("click", () => window.print());
window.Page = { async start() { await loadOrder(); } };
