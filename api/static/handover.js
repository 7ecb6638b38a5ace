// The shift handover log (交接班记录, issue 23). The outgoing shift sees what it hands over (the
// open alarms and work orders of its estates, read live from /handovers/draft), adds its notes
// and hands over: the server keeps the open items as they were at that moment. The next shift
// acknowledges the current handover (not the one who wrote it). The log below is searchable.
// Live: an alarm or order event refreshes the draft's lists.
"use strict";
const Handover = { current: null, me: null };

const itemCount = (h) => t("%(alarms)s alarms, %(orders)s orders",
  { alarms: h.open_alarms.length, orders: h.open_orders.length });
const alarmItem = (a) => el("li", { dataset: { alarmId: a.id } },
  `${word("priority", a.priority)} · ${a.source} · ${word("alarm", a.type)} · ${word("state", a.state)}`);
const orderItem = (w) => el("li", { dataset: { orderId: w.id } },
  `#${w.id} ${pick(w.title, w.title_en)} · ${word("state", w.state)}${w.assignee ? " · " + w.assignee : ""}`);

async function loadDraft() {
  const site = $("handover-site").value;
  const draft = await api(`/handovers/draft${site ? "?site=" + encodeURIComponent(site) : ""}`);
  $("draft-alarms").replaceChildren(...draft.open_alarms.map(alarmItem));
  $("draft-orders").replaceChildren(...draft.open_orders.map(orderItem));
  $("draft-alarm-count").textContent = String(draft.open_alarms.length);
  $("draft-order-count").textContent = String(draft.open_orders.length);
}

function showCurrent(h) {
  Handover.current = h;
  $("current-none").hidden = Boolean(h);
  $("current-body").hidden = !h;
  document.body.dataset.handover = !h ? "none" : h.acknowledged_by ? "acknowledged" : "waiting";
  if (!h) { $("current-state").textContent = ""; return; }
  $("current-state").textContent = h.acknowledged_by ? t("acknowledged") : t("awaiting acknowledgement");
  $("current-shift").textContent = h.shift || t("Shift handover");
  $("current-by").textContent = h.written_by;
  $("current-at").textContent = stamp(h.written_at);
  $("current-notes").textContent = h.notes;
  $("current-items").textContent = itemCount(h);
  $("current-ack").textContent = h.acknowledged_by
    ? t("Acknowledged by %(who)s at %(when)s", { who: h.acknowledged_by, when: stamp(h.acknowledged_at) }) : "";
  $("ack-form").hidden = Boolean(h.acknowledged_by) || h.written_by === Handover.me.username;
}

function logRow(h) {
  return el("tr", { dataset: { handoverId: h.id, state: h.acknowledged_by ? "acknowledged" : "waiting" } },
    el("td", {}, stamp(h.written_at)), el("td", {}, h.site || t("every site")), el("td", {}, h.shift),
    el("td", {}, h.written_by), el("td", {}, h.acknowledged_by || "—"), el("td", {}, itemCount(h)),
    el("td", { className: "notes" }, h.notes));
}

async function loadLog() {
  const q = $("log-search").value.trim();
  const found = await api(`/handovers?limit=50${q ? "&q=" + encodeURIComponent(q) : ""}`);
  $("log").replaceChildren(...found.map(logRow));
  if (!q) showCurrent(found[0] || null);
}

$("handover-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    await api("/handovers", { method: "POST", json: {
      site: form.get("site") || null, shift: form.get("shift"), notes: form.get("notes") } });
    event.target.reset();
    $("handover-saved").textContent = t("Handed over");
    showError(null);
    $("log-search").value = "";
    await loadLog();
  } catch (e) { $("handover-saved").textContent = ""; showError(e); }
});

$("ack-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const note = new FormData(event.target).get("note");
  try {
    await api(`/handovers/${Handover.current.id}/acknowledge`, { method: "POST", json: { note } });
    event.target.reset();
    showError(null);
    $("log-search").value = "";
    await loadLog();
  } catch (e) { showError(e); }
});

$("log-search").addEventListener("input", debounce(() => loadLog().catch(showError), 300));
$("handover-site").addEventListener("change", () => loadDraft().catch(showError));

async function start(me) {
  Handover.me = me;
  const sites = await api("/sites");
  $("handover-site").append(...sites.map((s) => el("option", { value: s.id }, s.name)));
  if (me.scope !== null) $("handover-site").querySelector("option[value=\"\"]").remove();  // no centre-wide one
  await Promise.all([loadDraft(), loadLog()]);
}

window.Page = {
  start,
  onEvent: debounce(() => loadDraft().catch(showError), 500),
};
