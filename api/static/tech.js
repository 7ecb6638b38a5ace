// Technician's page (phone): my open work orders, overdue first, each a card with its SLA
// countdown and the next action: accept, arrived on site, the procedure's steps to tick with
// a note, resolve. Orders nobody has taken yet are listed below to accept. Live: any
// work-order event reloads the lists; open cards stay open and typed notes are kept.
"use strict";
// drafts: notes typed but not yet sent, by "order:step", so a live re-render keeps them.
const Tech = { me: null, orders: [], pool: [], details: new Map(), open: new Set(),
               drafts: new Map() };
const NEXT = { open: ["accepted", "Accept"], assigned: ["accepted", "Accept"],
               accepted: ["on_site", "Arrived"], on_site: ["resolved", "Resolve"] };

// Every write goes through the outbox (offline.js): sent at once when online, kept and sent in
// order when the network returns; the page shows it done meanwhile (marked pending).
async function move(id, to, note = "", label = to) {
  try {
    await outboxAdd({ method: "POST", path: `/work-orders/${id}/transition`, json: { to, note },
                      label: t(label), order: id, to });
    showError(null); Tech.open.add(id); await load();
  } catch (e) { showError(e); }
}

async function tick(id, seq, noteInput) {
  // The draft is what was typed last: the input on screen may be a newer copy from a live
  // re-render that came while the text was going into the one it replaced.
  const note = Tech.drafts.get(`${id}:${seq}`) ?? noteInput.value;
  try {
    await outboxAdd({ method: "POST", path: `/work-orders/${id}/steps/${seq}`,
                      json: { note }, label: t("Step %(n)s", { n: seq }), order: id, step: seq });
    Tech.drafts.delete(`${id}:${seq}`);
    showError(null); await load();
  } catch (e) { showError(e); }
}

function overlay() {
  // What is still in the outbox, shown as done (pending) on the orders read from the server.
  for (const item of Outbox.pending) {
    const w = [...Tech.orders, ...Tech.pool].find((o) => o.id === item.order);
    if (!w) continue;
    if (item.to) {
      Object.assign(w, { state: item.to, pending: true });
      if (Tech.pool.includes(w)) { Tech.pool = Tech.pool.filter((o) => o !== w); Tech.orders.push(w); }
    }
    const detail = Tech.details.get(item.order);
    const step = item.step && detail ? detail.steps.find((s) => s.seq === item.step) : null;
    if (step && !step.done_at) Object.assign(step, { done_at: item.at, done_by: Tech.me.username,
                                                     note: item.json.note, pending: true });
  }
}

function steps(w, detail) {
  const editable = w.state === "on_site" || w.state === "accepted";
  return el("ol", { className: "steps" }, detail.steps.map((s) => {
    const key = `${w.id}:${s.seq}`;
    const note = el("input", { className: "note", placeholder: t("Note"),
                               value: Tech.drafts.get(key) ?? (s.note || ""),
                               disabled: !!s.done_at || !editable, maxLength: 2000, dataset: { draft: key },
                               oninput: () => Tech.drafts.set(key, note.value) });
    const box = el("input", { type: "checkbox", checked: !!s.done_at, disabled: !!s.done_at || !editable,
                              onchange: () => tick(w.id, s.seq, note) });
    box.setAttribute("aria-label", t("Step %(n)s", { n: s.seq }));
    return el("li", { className: `${s.done_at ? "done" : ""}${s.pending ? " pending" : ""}`, dataset: { seq: s.seq } },
      el("label", {}, box, el("span", {},
        el("span", { className: "action" }, `${s.seq}. ${pick(s.action, s.action_en)}`),
        s.required ? null : el("span", { className: "optional" }, ` (${t("optional")})`),
        s.done_at ? el("span", { className: "meta" }, ` ✓ ${s.done_by} ${clock(s.done_at)}`) : null,
        stepTimer(s),
        s.done_at && s.note ? el("span", { className: "done-note" }, `${t("Note")}: ${s.note}`) : null)),
      s.done_at ? null : note);
  }));
}

function stepTimer(s) {
  // A timed step: its countdown once its clock runs (from the alarm, or from accepting).
  if (s.done_at) return s.due_at && new Date(s.done_at) > new Date(s.due_at)
    ? el("span", { className: "late-note" }, ` ${t("done late")}`) : null;
  if (!s.due_at) return s.time_limit_s
    ? el("span", { className: "meta" }, ` ${s.clock === "raised"
      ? t("limit %(n)s min from the alarm", { n: Math.round(s.time_limit_s / 60) })
      : t("limit %(n)s min from accepting", { n: Math.round(s.time_limit_s / 60) })}`) : null;
  const c = countdown(s.due_at);
  return el("span", { className: `step-timer${c.late ? " late" : ""}`, dataset: { deadline: s.due_at } },
            ` ${t("limit")} ${c.text}`);
}

function card(w, mine) {
  const sla = w.next_deadline ? countdown(w.next_deadline) : null;
  const stepDue = w.step_due_at ? countdown(w.step_due_at) : null;
  const detail = Tech.details.get(w.id);
  const next = NEXT[w.state];
  const missing = detail ? detail.steps.filter((s) => s.required && !s.done_at).length : 1;
  const action = next && (mine || w.state === "open")
    ? el("button", { className: "primary", disabled: next[0] === "resolved" && missing > 0,
                     onclick: () => move(w.id, next[0], "", next[1]) }, t(next[1])) : null;
  const decline = mine && w.state === "assigned"
    ? el("button", { className: "secondary", onclick: () => move(w.id, "open", "declined", "Decline") }, t("Decline")) : null;
  const body = Tech.open.has(w.id) && detail
    ? el("div", {}, detail.description ? el("p", {}, detail.description) : null,
         detail.requester && detail.requester.name
           ? el("p", { className: "meta" }, `${t("Reported by")} ${detail.requester.name} ${detail.requester.phone || ""} ${detail.requester.location || ""}`) : null,
         steps(w, detail), photoSection(w.id, mine && ["accepted", "on_site"].includes(w.state)),
         el("a", { href: `/work-orders/${w.id}/print`, className: "print-link" }, t("Print"))) : null;
  const late = (sla && sla.late) || (stepDue && stepDue.late);
  return el("article", { className: `card prio-card-${w.priority}${late ? " overdue" : ""}`,
                         dataset: { workOrderId: w.id, state: w.state } },
    el("h3", {}, `#${w.id} `, el("span", { className: `prio prio-${w.priority}` }, word("priority", w.priority)), " ",
       orderTitle(w)),
    el("div", { className: "meta" }, `${w.device || w.source} · ${w.building || ""} · `,
       el("span", { className: "state" }, word("state", w.state)),
       ` · ${t("%(done)s/%(total)s steps", { done: w.steps_done, total: w.steps_total })}`),
    sla ? el("div", { className: `sla${sla.late ? " late" : ""}`, dataset: { deadline: w.next_deadline, overdue: t("OVERDUE") } },
             `${word("deadline", w.next_deadline_kind)} ${sla.text}`) : null,
    stepDue ? el("div", { className: `step-due${stepDue.late ? " late" : ""}`, dataset: { deadline: w.step_due_at } },
                 `${t("step")} ${stepDue.text}`) : null,
    body,
    el("div", {}, action, decline,
       el("button", { className: "secondary", onclick: () => toggle(w.id) },
          Tech.open.has(w.id) ? t("Hide") : t("Steps"))));
}

async function toggle(id) {
  if (Tech.open.has(id)) Tech.open.delete(id); else Tech.open.add(id);
  await load();
}

function render() {
  // A live re-render replaces the cards: the note being typed keeps its focus and caret.
  const typing = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.draft : undefined;
  const caret = typing ? [document.activeElement.selectionStart, document.activeElement.selectionEnd] : null;
  const late = (w) => (w.overdue || w.steps_overdue ? 0 : 1);
  const mine = [...Tech.orders].sort((a, b) => late(a) - late(b) || a.id - b.id);
  $("mine-count").textContent = `(${mine.length}, ${t("%(n)s overdue", { n: mine.filter((w) => w.overdue).length })})`;
  $("mine").replaceChildren(...(mine.length ? mine.map((w) => card(w, true)) : [el("p", { className: "meta" }, t("Nothing assigned to you"))]));
  $("pool-count").textContent = `(${Tech.pool.length})`;
  $("pool").replaceChildren(...Tech.pool.map((w) => card(w, false)));
  const again = typing ? document.querySelector(`input[data-draft="${typing}"]`) : null;
  if (again && !again.disabled) { again.focus(); again.setSelectionRange(...caret); }
}

async function load() {
  try {
    const [orders, pool] = await Promise.all([
      api("/work-orders?mine=true&open=true"), api("/work-orders?state=open")]);
    Tech.orders = orders;
    Tech.pool = pool.filter((w) => !w.assignee);
    const wanted = [...orders, ...Tech.pool].filter((w) => Tech.open.has(w.id) || ["accepted", "on_site"].includes(w.state));
    await Promise.all(wanted.map(async (w) => {
      Tech.details.set(w.id, await api(`/work-orders/${w.id}`));  // kept for offline too
      if (w.state === "on_site") Tech.open.add(w.id);
    }));
  } catch (e) {
    if (navigator.onLine) throw e;  // offline and not kept: show what the page has
  }
  overlay();
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
  async start(me) {
    Tech.me = me;
    if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(console.error);
    Outbox.onSent = reload;
    await outboxLoad();
    await load();
    outboxFlush();
    setInterval(tickCountdowns, 1000);
  },
  onEvent(kind) { if (kind === "ready" || kind.startsWith("work_order.")) reload(); },
};
