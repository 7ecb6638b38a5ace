// Duty-room board of a monitoring centre (one estate or hundreds): a summary first (open
// alarms by priority, sites and buildings with problems, devices offline, fault orders and how
// many are late), then the alarms grouped by site and building, filters (site, building,
// trade, priority) and a device search; fault and request orders apart from planned
// maintenance (due first); buildings with nothing wrong collapsed under their site. The page
// asks only for what it shows: the overview (/sites), the open lists, the devices with
// problems, and one building's devices when it is opened. An event from the live stream
// reloads the part it touches; a slow reconcile catches what has no event. A new critical
// alarm beeps (Web Audio) until it is acknowledged.
"use strict";
const ACTIVE_ALARMS = "state=unack&state=ack&state=rtn_unack&limit=1000";
const RECONCILE_MS = 30000;
const BEEP_EVERY_MS = 2000;
const SMALL_ESTATE = 12;  // up to this many buildings every building shows its devices
const MAINTENANCE_SHOWN = 40;
const PRIORITIES = ["critical", "high", "medium", "low"];
const Board = { alarms: [], orders: [], maintenance: [], sites: [], problemDevices: [],
                devices: new Map(), open: new Set(), filter: { site: "", building: "", trade: "", priority: "" },
                sound: true, audio: null, beeper: null, shelving: null, ready: false, handover: false };

function unlockAudio() {
  // Browsers allow sound only after a user gesture: the sign-in click or the sound button.
  try {
    Board.audio = Board.audio || new (window.AudioContext || window.webkitAudioContext)();
    if (Board.audio.state === "suspended") Board.audio.resume();
  } catch (e) { Board.audio = null; }
}

function beep() {
  if (!Board.sound || !Board.audio) return;
  const ctx = Board.audio, t = ctx.currentTime;
  for (const [start, freq] of [[0, 880], [0.25, 660]]) {
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.frequency.value = freq; osc.type = "square";
    gain.gain.setValueAtTime(0.15, t + start); gain.gain.exponentialRampToValueAtTime(0.001, t + start + 0.2);
    osc.connect(gain).connect(ctx.destination); osc.start(t + start); osc.stop(t + start + 0.22);
  }
}

function updateAlert() {
  // Alert while any annunciated critical alarm is unacknowledged.
  const now = Date.now();
  const pending = Board.alarms.filter((a) => a.priority === "critical" && a.state === "unack"
    && !a.suppressed && !a.out_of_service && !(a.shelved_until && new Date(a.shelved_until) > now));
  const on = pending.length > 0;
  document.body.dataset.alerting = on ? "yes" : "no";
  $("alerting").hidden = !on;
  if (on && !Board.beeper) { beep(); Board.beeper = setInterval(beep, BEEP_EVERY_MS); }
  if (!on && Board.beeper) { clearInterval(Board.beeper); Board.beeper = null; }
}

async function act(path, json) {
  try { await api(path, { method: "POST", json }); showError(null); await loadAlarms(); }
  catch (e) { showError(e); }
}

function shelve(alarm) {
  Board.shelving = alarm;
  $("shelve-what").textContent = `${alarm.device || alarm.source} · ${alarm.type}`;
  $("shelve-form").reset();
  $("shelve-dialog").showModal();
}

$("shelve-dialog").addEventListener("close", () => {
  const alarm = Board.shelving;
  Board.shelving = null;
  if (!alarm || $("shelve-dialog").returnValue !== "ok") return;
  const form = new FormData($("shelve-form"));
  act(`/alarms/${alarm.id}/shelve`, { minutes: Number(form.get("minutes")), comment: form.get("comment") });
});

function alarmRow(a) {
  const shelved = a.shelved_until && new Date(a.shelved_until) > Date.now();
  const buttons = el("td", { className: "actions" },
    (a.state === "unack" || a.state === "rtn_unack")
      ? el("button", { onclick: () => act(`/alarms/${a.id}/acknowledge`, {}) }, t("Acknowledge")) : null,
    !shelved && a.state !== "normal"
      ? el("button", { className: "secondary", onclick: () => shelve(a) }, t("Shelve")) : null,
    shelved ? el("button", { className: "secondary", onclick: () => act(`/alarms/${a.id}/unshelve`, {}) },
      t("Unshelve")) : null);
  const state = word("state", a.state) + (a.active ? "" : ` (${t("cleared")})`)
    + (shelved ? ` · ${t("shelved to %(time)s", { time: clock(a.shelved_until) })}` : "")
    + (a.out_of_service ? ` · ${t("out of service")}` : "") + (a.suppressed ? ` · ${t("suppressed")}` : "")
    + (a.escalation_level ? ` · ${t("escalated L%(n)s", { n: a.escalation_level })}` : "");
  const ack = a.state === "unack" && a.ack_due_at ? countdown(a.ack_due_at) : null;
  return el("tr", { className: `${a.state} prio-row-${a.priority}${shelved ? " shelved" : ""}${ack && ack.late ? " late" : ""}`,
                    dataset: { alarmId: a.id, state: a.state } },
    el("td", {}, el("span", { className: `prio prio-${a.priority}` }, word("priority", a.priority))),
    el("td", {}, a.device ? el("a", { href: `/devices/${a.device}` }, a.device) : a.source),
    el("td", {}, pick(a.message, a.message_en) || word("alarm", a.type)),
    el("td", { className: "state" }, state),
    el("td", {}, clock(a.raised_at)),
    el("td", { className: `sla-ack${ack && ack.late ? " late" : ""}`, dataset: { deadline: ack ? a.ack_due_at : "" },
               title: ack ? t("acknowledge by %(time)s", { time: stamp(a.ack_due_at) }) : "" },
      ack ? `${t("ack")} ${ack.text}` : ""),
    buttons);
}

const key = (site, building) => `${site}/${building}`;
const rank = (p) => { const i = PRIORITIES.indexOf(p); return i < 0 ? 9 : i; };
function siteName(id) { const s = Board.sites.find((x) => x.id === id); return s ? s.name : id; }
function buildingName(site, b) {
  const s = Board.sites.find((x) => x.id === site);
  const found = s && s.buildings.find((x) => x.id === b);
  return found ? found.name : b;
}
function totalBuildings() { return Board.sites.reduce((n, s) => n + s.buildings.length, 0); }
const hasProblem = (b) => b.open_alarms > 0 || b.offline > 0;

function passes(item, trade) {
  const f = Board.filter;
  return (!f.site || item.site === f.site) && (!f.building || item.building === f.building)
    && (!f.trade || trade === f.trade) && (!f.priority || item.priority === f.priority);
}

function renderSummary() {
  const shown = Board.alarms.filter((a) => passes(a, a.trade));
  for (const p of PRIORITIES) $(`sum-${p}`).textContent = shown.filter((a) => a.priority === p).length;
  const sites = Board.sites.filter((s) => !Board.filter.site || s.id === Board.filter.site);
  const buildings = sites.flatMap((s) => s.buildings.filter((b) => !Board.filter.building || b.id === Board.filter.building));
  $("sum-sites").textContent = sites.filter((s) => s.buildings.some(hasProblem)).length;
  $("sum-sites-of").textContent = `/ ${sites.length}`;
  $("sum-buildings").textContent = buildings.filter(hasProblem).length;
  $("sum-buildings-of").textContent = `/ ${buildings.length}`;
  $("sum-offline").textContent = buildings.reduce((n, b) => n + b.offline, 0);
  $("sum-devices-of").textContent = `/ ${buildings.reduce((n, b) => n + b.devices, 0)}`;
  const orders = Board.orders.filter((w) => passes(w, w.trade));
  $("sum-orders").textContent = orders.length;
  $("sum-overdue").textContent = orders.filter((w) => (w.next_deadline && countdown(w.next_deadline).late)
    || (w.step_due_at && countdown(w.step_due_at).late)).length;
  for (const tile of document.querySelectorAll("#summary [data-tile]"))
    tile.classList.toggle("lit", Number(tile.querySelector("b").textContent) > 0);
}

function groupBy(items, keyOf) {
  const groups = new Map();
  for (const item of items) {
    const k = keyOf(item);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(item);
  }
  return groups;
}

function renderAlarms() {
  const unack = Board.alarms.filter((a) => a.state === "unack").length;
  const overdue = Board.alarms.filter((a) => a.state === "unack" && a.ack_due_at && countdown(a.ack_due_at).late).length;
  $("alarm-count").textContent = `(${t("%(n)s unacknowledged", { n: unack })}${overdue ? `, ${t("%(n)s not acknowledged in time", { n: overdue })}` : ""})`;
  const shown = Board.alarms.filter((a) => passes(a, a.trade));
  const worst = (list) => Math.min(...list.map((a) => rank(a.priority)));
  const bySite = [...groupBy(shown, (a) => a.site)].sort((x, y) => worst(x[1]) - worst(y[1]) || x[0].localeCompare(y[0]));
  $("alarms").replaceChildren(...(bySite.length ? bySite.map(([site, list]) => {
    const byBuilding = [...groupBy(list, (a) => a.building || "")].sort((x, y) => worst(x[1]) - worst(y[1]));
    return el("div", { className: "site-group", dataset: { site } },
      el("h3", {}, siteName(site), el("span", { className: "count" }, ` ${list.length}`)),
      ...byBuilding.map(([b, rows]) => el("div", { className: "building-group", dataset: { building: b } },
        el("h4", {}, b ? buildingName(site, b) : t("whole site"), el("span", { className: "count" }, ` ${rows.length}`)),
        el("table", { className: "alarms" }, el("tbody", {}, ...rows.map(alarmRow))))));
  }) : [el("p", { className: "meta" }, t("No active alarms"))]));
  updateAlert();
  renderSummary();
}

function orderRow(w) {
  const sla = w.next_deadline ? countdown(w.next_deadline) : null;
  const step = w.step_due_at ? countdown(w.step_due_at) : null;
  const late = (sla && sla.late) || (step && step.late);
  return el("tr", { dataset: { workOrderId: w.id, state: w.state }, className: late ? "late" : "" },
    el("td", {}, w.id), el("td", {}, orderTitle(w)),
    el("td", {}, w.device ? el("a", { href: `/devices/${w.device}` }, w.device) : w.source,
       el("div", { className: "meta" }, `${siteName(w.site)} · ${w.building ? buildingName(w.site, w.building) : ""}`)),
    el("td", { className: "state" }, word("state", w.state)),
    el("td", {}, w.assignee || "—"),
    el("td", { className: `sla${sla && sla.late ? " late" : ""}`,
               dataset: { deadline: w.next_deadline || "" },
               title: w.next_deadline_kind ? t("%(what)s by %(time)s", { what: word("deadline", w.next_deadline_kind), time: stamp(w.next_deadline) }) : "" },
      sla ? `${word("deadline", w.next_deadline_kind)} ${sla.text}` : ""),
    el("td", { className: `sla-step${step && step.late ? " late" : ""}`, dataset: { deadline: w.step_due_at || "" },
               title: w.step_due_at ? t("next step by %(time)s", { time: stamp(w.step_due_at) }) : "" },
      step ? `${t("step")} ${step.text}` : ""));
}

function maintenanceRow(w) {
  const late = w.due_at && new Date(w.due_at) < Date.now();
  return el("tr", { dataset: { workOrderId: w.id, state: w.state }, className: late ? "late" : "" },
    el("td", { className: `due${late ? " late" : ""}` }, w.due_at ? stamp(w.due_at).replace(/:\d\d$/, "") : "—"),
    el("td", {}, w.id), el("td", {}, w.title),
    el("td", {}, `${siteName(w.site)} · ${w.building ? buildingName(w.site, w.building) : ""}`),
    el("td", { className: "state" }, word("state", w.state)));
}

function renderOrders() {
  const faults = Board.orders.filter((w) => passes(w, w.trade));
  $("order-count").textContent = `(${faults.length})`;
  $("work-orders").replaceChildren(...(faults.length ? faults.map(orderRow)
    : [el("tr", { className: "meta" }, el("td", { colSpan: 7 }, t("none open")))]));
  const planned = Board.maintenance.filter((w) => passes(w, w.trade));
  const late = planned.filter((w) => w.due_at && new Date(w.due_at) < Date.now()).length;
  $("maintenance-count").textContent = `(${planned.length}${planned.length >= 200 ? "+" : ""}, ${t("%(n)s late", { n: late })})`;
  const rows = planned.slice(0, MAINTENANCE_SHOWN).map(maintenanceRow);
  if (!planned.length) rows.push(el("tr", { className: "meta" }, el("td", { colSpan: 5 }, t("none due"))));
  if (planned.length > MAINTENANCE_SHOWN)
    rows.push(el("tr", { className: "meta" }, el("td", { colSpan: 5 }, `… ${t("%(n)s more", { n: planned.length - MAINTENANCE_SHOWN })}`)));
  $("maintenance").replaceChildren(...rows);
  renderSummary();
}

function tickCountdowns() {
  for (const cell of document.querySelectorAll("td.sla[data-deadline], td.sla-ack[data-deadline], td.sla-step[data-deadline]")) {
    if (!cell.dataset.deadline) continue;
    const c = countdown(cell.dataset.deadline);
    cell.textContent = cell.textContent.replace(/\s\S+$/, ` ${c.text}`);
    cell.classList.toggle("late", c.late);
    if (c.late) cell.parentElement.classList.add("late");  // a row is late once any cell is
  }
}

function deviceState(d) {
  if (d.open_alarms.some((a) => a.state !== "normal")) return "alarm";
  if (d.status === "offline" || d.gateway_status === "offline") return "offline";
  return d.status;
}

function deviceLink(d) {
  const st = deviceState(d);
  return el("a", { className: `dev st-${st}`, href: `/devices/${d.name}`, dataset: { device: d.name, state: st },
                   title: d.status_reason || word("state", st) }, `${d.display_name || d.name} · ${word("state", st)}`);
}

function buildingCard(site, b) {
  const k = key(site.id, b.id);
  const all = Board.devices.get(k);
  const devs = all || Board.problemDevices.filter((d) => d.site === site.id && d.building === b.id);
  const badge = PRIORITIES.filter((p) => b[p] > 0).map((p) => el("span", { className: `prio prio-${p}` }, `${b[p]}`));
  return el("div", { className: `building${hasProblem(b) ? " problem" : ""}`, dataset: { building: b.id, site: site.id } },
    el("h3", {}, b.name, " ", ...badge,
       el("span", { className: "count" }, ` ${t("%(n)s devices", { n: b.devices })}${b.offline ? ` · ${t("%(n)s offline", { n: b.offline })}` : ""}`)),
    ...devs.map(deviceLink),
    all ? null : el("button", { className: "link", onclick: () => openBuilding(site.id, b.id) },
      t("all %(n)s devices", { n: b.devices })));
}

function renderBuildings() {
  const small = totalBuildings() <= SMALL_ESTATE;
  const sites = Board.sites.filter((s) => !Board.filter.site || s.id === Board.filter.site);
  $("building-count").textContent = `(${totalBuildings()})`;
  $("buildings").replaceChildren(...sites.map((s) => {
    const list = s.buildings.filter((b) => !Board.filter.building || b.id === Board.filter.building);
    const shown = list.filter((b) => small || hasProblem(b) || Board.open.has(key(s.id, b.id)));
    const quiet = list.filter((b) => !shown.includes(b));
    return el("div", { className: "site-buildings", dataset: { site: s.id } },
      Board.sites.length > 1 ? el("h3", { className: "site-name" }, s.name) : null,
      ...shown.map((b) => buildingCard(s, b)),
      quiet.length ? el("details", { className: "quiet" },
        el("summary", {}, `${t("%(n)s buildings OK", { n: quiet.length })} · ${t("%(n)s devices", { n: quiet.reduce((n, b) => n + b.devices, 0) })}`),
        ...quiet.map((b) => el("button", { className: "link building-link", dataset: { building: b.id },
                                           onclick: () => openBuilding(s.id, b.id) }, b.name))) : null);
  }));
}

async function openBuilding(site, building) {
  Board.open.add(key(site, building));
  await guarded(() => loadBuilding(site, building));
}

async function loadBuilding(site, building) {
  Board.devices.set(key(site, building), await api(`/devices?site=${site}&building=${building}&values=false`));
  renderBuildings();
}

function fillFilters() {
  const site = $("f-site"), building = $("f-building");
  const keep = (sel, options) => { const v = sel.value; sel.replaceChildren(el("option", { value: "" }, t("all")), ...options); sel.value = v; };
  keep(site, Board.sites.map((s) => el("option", { value: s.id }, s.name)));
  const chosen = Board.sites.find((s) => s.id === site.value);
  keep(building, chosen ? chosen.buildings.map((b) => el("option", { value: b.id }, b.name)) : []);
  building.disabled = !chosen;
}

function renderAll() { renderAlarms(); renderOrders(); renderBuildings(); }

for (const [id, field] of [["f-site", "site"], ["f-building", "building"], ["f-trade", "trade"], ["f-priority", "priority"]]) {
  $(id).addEventListener("change", () => {
    Board.filter[field] = $(id).value;
    if (field === "site") { Board.filter.building = ""; $("f-building").value = ""; fillFilters(); }
    renderAll();
  });
}

const search = debounce(async () => {
  const q = $("search").value.trim(), list = $("search-results");
  if (!q) { list.hidden = true; list.replaceChildren(); return; }
  try {
    const found = await api(`/devices?q=${encodeURIComponent(q)}&values=false&limit=20`);
    list.replaceChildren(...(found.length ? found.map((d) => el("li", {}, deviceLink(d),
      el("span", { className: "meta" }, ` ${siteName(d.site)} · ${buildingName(d.site, d.building)}`)))
      : [el("li", { className: "meta" }, t("no device"))]));
    list.hidden = false;
  } catch (e) { showError(e); }
}, 250);
$("search").addEventListener("input", search);

async function loadAlarms() { Board.alarms = await api(`/alarms?${ACTIVE_ALARMS}`); renderAlarms(); }
async function loadOrders() {
  [Board.orders, Board.maintenance] = await Promise.all([
    api("/work-orders?open=true&kind=fault"), api("/work-orders?open=true&kind=maintenance")]);
  renderOrders();
}
async function loadPlaces() {
  // The overview, the devices with problems, and the devices of the buildings shown whole.
  const [sites, problems] = await Promise.all([api("/sites"), api("/devices?problems=true&values=false&limit=2000")]);
  Board.sites = sites; Board.problemDevices = problems;
  if (totalBuildings() <= SMALL_ESTATE)
    for (const s of sites) for (const b of s.buildings) Board.open.add(key(s.id, b.id));
  await Promise.all([...Board.open].map((k) => {
    const [site, building] = k.split("/");
    return api(`/devices?site=${site}&building=${building}&values=false`).then((d) => Board.devices.set(k, d));
  }));
  fillFilters();
  renderBuildings(); renderSummary();
}

async function loadHandover() {
  // The shift handover (交接班): has the shift on duty acknowledged the last one?
  if (!Board.handover) return;
  const [h] = await api("/handovers?limit=1");
  const state = !h ? "none" : h.acknowledged_by ? "acknowledged" : "waiting";
  $("handover-tile").dataset.state = state;
  $("handover-state").textContent = !h ? t("none yet") : h.acknowledged_by
    ? t("acknowledged by %(who)s", { who: h.acknowledged_by }) : t("awaiting acknowledgement");
  $("handover-tile").classList.toggle("late", state === "waiting");
}

async function guarded(fn) { try { await fn(); showError(null); } catch (e) { showError(e); } }
const refreshAlarms = debounce(() => guarded(async () => { await loadAlarms(); await loadPlaces(); }), 100);
const refreshOrders = debounce(() => guarded(loadOrders), 100);
const refreshPlaces = debounce(() => guarded(loadPlaces), 300);

window.Page = {
  gesture: unlockAudio,
  async start(me) {
    Board.handover = me.role !== "technician";  // the duty room's log
    $("handover-tile").hidden = !Board.handover;
    await Promise.all([loadPlaces(), loadOrders(), loadHandover()]);
    await loadAlarms();  // grouped under the names the overview brought
    Board.ready = true;
    document.body.dataset.boardReady = "yes";
    setInterval(tickCountdowns, 1000);
    setInterval(() => guarded(async () => {
      await Promise.all([loadAlarms(), loadOrders(), loadPlaces(), loadHandover()]);
    }), RECONCILE_MS);
  },
  onEvent(kind) {
    if (kind === "ready") { refreshAlarms(); refreshOrders(); return; }
    if (kind.startsWith("alarm.")) refreshAlarms();
    else if (kind.startsWith("work_order.")) refreshOrders();
    else if (kind.startsWith("device.") || kind.startsWith("gateway.")) refreshPlaces();
  },
};

$("sound").addEventListener("click", () => {
  unlockAudio();
  Board.sound = !Board.sound;
  $("sound").setAttribute("aria-pressed", String(Board.sound));
  $("sound").textContent = Board.sound ? t("Sound on") : t("Sound off");
});
