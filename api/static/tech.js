// Technician's page (phone): my open work orders, overdue first, each a card with its SLA
// countdown and the next action: accept, arrived on site, the procedure's steps to tick with
// a note, resolve. Orders nobody has taken yet are listed below to accept. Live: any
// work-order event reloads the lists; open cards stay open and typed notes are kept.
"use strict";
// drafts: notes typed but not yet sent, by "order:step", so a live re-render keeps them.
const Tech = { me: null, orders: [], pool: [], details: new Map(), open: new Set(),
               drafts: new Map() };
const NEXT = { open: ["accepted", "Accept 接单"], assigned: ["accepted", "Accept 接单"],
               accepted: ["on_site", "Arrived 到场"], on_site: ["resolved", "Resolve 完成"] };

async function move(id, to, note = "") {
  try {
    await api(`/work-orders/${id}/transition`, { method: "POST", json: { to, note } });
    showError(null); Tech.open.add(id); await load();
  } catch (e) { showError(e); }
}

async function tick(id, seq, noteInput) {
  try {
    await api(`/work-orders/${id}/steps/${seq}`, { method: "POST", json: { note: noteInput.value } });
    Tech.drafts.delete(`${id}:${seq}`);
    showError(null); await load();
  } catch (e) { showError(e); }
}

function steps(w, detail) {
  const editable = w.state === "on_site" || w.state === "accepted";
  return el("ol", { className: "steps" }, detail.steps.map((s) => {
    const key = `${w.id}:${s.seq}`;
    const note = el("input", { className: "note", placeholder: "备注 Note",
                               value: Tech.drafts.get(key) ?? (s.note || ""),
                               disabled: !!s.done_at || !editable, maxLength: 2000,
                               oninput: () => Tech.drafts.set(key, note.value) });
    const box = el("input", { type: "checkbox", checked: !!s.done_at, disabled: !!s.done_at || !editable,
                              onchange: () => tick(w.id, s.seq, note) });
    box.setAttribute("aria-label", `Step ${s.seq}`);
    return el("li", { className: s.done_at ? "done" : "", dataset: { seq: s.seq } },
      el("label", {}, box, el("span", {},
        el("span", { className: "action" }, `${s.seq}. ${s.action}`), el("br"),
        el("span", { className: "meta" }, s.action_en),
        s.required ? null : el("span", { className: "optional" }, " (optional 可选)"),
        s.done_at ? el("span", { className: "meta" }, ` ✓ ${s.done_by} ${clock(s.done_at)}`) : null,
        stepTimer(s),
        s.done_at && s.note ? el("span", { className: "done-note" }, `备注 ${s.note}`) : null)),
      s.done_at ? null : note);
  }));
}

function stepTimer(s) {
  // A timed step: its countdown once its clock runs (from the alarm, or from accepting).
  if (s.done_at) return s.due_at && new Date(s.done_at) > new Date(s.due_at)
    ? el("span", { className: "late-note" }, " late 超时完成") : null;
  if (!s.due_at) return s.time_limit_s
    ? el("span", { className: "meta" }, ` 限时 ${Math.round(s.time_limit_s / 60)} min (${s.clock === "raised" ? "from the alarm" : "from accepting"})`) : null;
  const c = countdown(s.due_at);
  return el("span", { className: `step-timer${c.late ? " late" : ""}`, dataset: { deadline: s.due_at } },
            ` 限时 limit ${c.text}`);
}

function card(w, mine) {
  const sla = w.next_deadline ? countdown(w.next_deadline) : null;
  const stepDue = w.step_due_at ? countdown(w.step_due_at) : null;
  const detail = Tech.details.get(w.id);
  const next = NEXT[w.state];
  const missing = detail ? detail.steps.filter((s) => s.required && !s.done_at).length : 1;
  const action = next && (mine || w.state === "open")
    ? el("button", { className: "primary", disabled: next[0] === "resolved" && missing > 0,
                     onclick: () => move(w.id, next[0]) }, next[1]) : null;
  const decline = mine && w.state === "assigned"
    ? el("button", { className: "secondary", onclick: () => move(w.id, "open", "declined") }, "Decline 退回") : null;
  const body = Tech.open.has(w.id) && detail
    ? el("div", {}, detail.description ? el("p", {}, detail.description) : null,
         detail.requester && detail.requester.name
           ? el("p", { className: "meta" }, `报修人 ${detail.requester.name} ${detail.requester.phone || ""} ${detail.requester.location || ""}`) : null,
         steps(w, detail), photoSection(w.id, mine && ["accepted", "on_site"].includes(w.state)),
         el("a", { href: `/work-orders/${w.id}/print`, className: "print-link" }, "Print 打印")) : null;
  const late = (sla && sla.late) || (stepDue && stepDue.late);
  return el("article", { className: `card prio-card-${w.priority}${late ? " overdue" : ""}`,
                         dataset: { workOrderId: w.id, state: w.state } },
    el("h3", {}, `#${w.id} `, el("span", { className: `prio prio-${w.priority}` }, w.priority), " ",
       w.procedure_title || w.title),
    el("div", { className: "meta" }, `${w.device || w.source} · ${w.building || ""} · `,
       el("span", { className: "state" }, w.state), ` · ${w.steps_done}/${w.steps_total} steps`),
    sla ? el("div", { className: `sla${sla.late ? " late" : ""}`, dataset: { deadline: w.next_deadline } },
             `${w.next_deadline_kind} ${sla.text}`) : null,
    stepDue ? el("div", { className: `step-due${stepDue.late ? " late" : ""}`, dataset: { deadline: w.step_due_at } },
                 `step 步骤 ${stepDue.text}`) : null,
    body,
    el("div", {}, action, decline,
       el("button", { className: "secondary", onclick: () => toggle(w.id) },
          Tech.open.has(w.id) ? "Hide 收起" : "Steps 步骤")));
}

async function toggle(id) {
  if (Tech.open.has(id)) Tech.open.delete(id); else Tech.open.add(id);
  await load();
}

function render() {
  const late = (w) => (w.overdue || w.steps_overdue ? 0 : 1);
  const mine = [...Tech.orders].sort((a, b) => late(a) - late(b) || a.id - b.id);
  $("mine-count").textContent = `(${mine.length}, ${mine.filter((w) => w.overdue).length} overdue)`;
  $("mine").replaceChildren(...(mine.length ? mine.map((w) => card(w, true)) : [el("p", { className: "meta" }, "Nothing assigned to you 暂无工单")]));
  $("pool-count").textContent = `(${Tech.pool.length})`;
  $("pool").replaceChildren(...Tech.pool.map((w) => card(w, false)));
}

async function load() {
  const [orders, pool] = await Promise.all([
    api("/work-orders?mine=true&open=true"), api("/work-orders?state=open")]);
  Tech.orders = orders;
  Tech.pool = pool.filter((w) => !w.assignee);
  const wanted = [...orders, ...Tech.pool].filter((w) => Tech.open.has(w.id) || w.state === "on_site");
  await Promise.all(wanted.map(async (w) => {
    Tech.details.set(w.id, await api(`/work-orders/${w.id}`));
    if (w.state === "on_site") Tech.open.add(w.id);
  }));
  render();
}

function tickCountdowns() {
  for (const node of document.querySelectorAll(".sla[data-deadline], .step-due[data-deadline], .step-timer[data-deadline]")) {
    const c = countdown(node.dataset.deadline);
    node.textContent = node.textContent.replace(/\s\S+$/, ` ${c.text}`);
    node.classList.toggle("late", c.late);
  }
}

const reload = debounce(() => load().then(() => showError(null), showError), 150);
window.Page = {
  async start(me) { Tech.me = me; await load(); setInterval(tickCountdowns, 1000); },
  onEvent(kind) { if (kind === "ready" || kind.startsWith("work_order.")) reload(); },
};
