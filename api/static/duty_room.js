// Duty-room board: alarms by priority (acknowledge, shelve), open work orders with SLA
// countdowns, buildings with their devices' states. Loads from the API and reloads the part
// an event from the live stream touches; a slow reconcile catches what has no event (latest
// values). A new critical alarm beeps (Web Audio) until it is acknowledged.
"use strict";
const ACTIVE_ALARMS = "state=unack&state=ack&state=rtn_unack";
const RECONCILE_MS = 30000;
const BEEP_EVERY_MS = 2000;
const Board = { alarms: [], orders: [], devices: [], sites: [], sound: true, audio: null,
                beeper: null, shelving: null };

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
      ? el("button", { onclick: () => act(`/alarms/${a.id}/acknowledge`, {}) }, "Acknowledge 确认") : null,
    !shelved && a.state !== "normal"
      ? el("button", { className: "secondary", onclick: () => shelve(a) }, "Shelve 搁置") : null,
    shelved ? el("button", { className: "secondary", onclick: () => act(`/alarms/${a.id}/unshelve`, {}) },
      "Unshelve 取消搁置") : null);
  const state = a.state + (a.active ? "" : " (cleared)") + (shelved ? ` · shelved to ${clock(a.shelved_until)}` : "")
    + (a.out_of_service ? " · out of service" : "") + (a.suppressed ? " · suppressed" : "");
  return el("tr", { className: `${a.state} prio-row-${a.priority}${shelved ? " shelved" : ""}`,
                    dataset: { alarmId: a.id } },
    el("td", {}, el("span", { className: `prio prio-${a.priority}` }, a.priority)),
    el("td", {}, a.device ? el("a", { href: `/devices/${a.device}` }, a.device) : a.source),
    el("td", {}, a.message || a.type),
    el("td", { className: "state" }, state),
    el("td", {}, clock(a.raised_at)),
    buttons);
}

function renderAlarms() {
  const unack = Board.alarms.filter((a) => a.state === "unack").length;
  $("alarm-count").textContent = `(${unack} unacknowledged)`;
  $("alarms").replaceChildren(...Board.alarms.map(alarmRow));
  updateAlert();
}

function renderOrders() {
  $("order-count").textContent = `(${Board.orders.length})`;
  $("work-orders").replaceChildren(...Board.orders.map((w) => {
    const sla = w.next_deadline ? countdown(w.next_deadline) : null;
    return el("tr", { dataset: { workOrderId: w.id }, className: sla && sla.late ? "late" : "" },
      el("td", {}, w.id), el("td", {}, w.procedure_title || w.title),
      el("td", {}, w.device || w.source), el("td", { className: "state" }, w.state),
      el("td", {}, w.assignee || "—"),
      el("td", { className: `sla${sla && sla.late ? " late" : ""}`,
                 dataset: { deadline: w.next_deadline || "" },
                 title: w.next_deadline_kind ? `${w.next_deadline_kind} by ${stamp(w.next_deadline)}` : "" },
        sla ? `${w.next_deadline_kind} ${sla.text}` : ""));
  }));
}

function tickCountdowns() {
  for (const cell of document.querySelectorAll("td.sla[data-deadline]")) {
    if (!cell.dataset.deadline) continue;
    const c = countdown(cell.dataset.deadline);
    cell.textContent = cell.textContent.replace(/\s\S+$/, ` ${c.text}`);
    cell.classList.toggle("late", c.late);
    cell.parentElement.classList.toggle("late", c.late);
  }
}

function deviceState(d) {
  if (d.open_alarms.some((a) => a.state !== "normal")) return "alarm";
  if (d.status === "offline" || d.gateway_status === "offline") return "offline";
  return d.status;
}

function renderBuildings() {
  const names = Object.fromEntries(JSON.parse($("board").dataset.buildings || "[]").map((b) => [b.id, b.name]));
  for (const s of Board.sites) for (const b of s.buildings) names[b.id] = names[b.id] || b.name;
  const byBuilding = new Map();
  for (const d of Board.devices) {
    if (!byBuilding.has(d.building)) byBuilding.set(d.building, []);
    byBuilding.get(d.building).push(d);
  }
  $("buildings").replaceChildren(...[...byBuilding].map(([b, devs]) =>
    el("div", { className: "building", dataset: { building: b } }, el("h3", {}, names[b] || b),
      ...devs.map((d) => {
        const st = deviceState(d);
        return el("a", { className: `dev st-${st}`, href: `/devices/${d.name}`, dataset: { device: d.name, state: st },
                         title: d.status_reason || st }, `${d.display_name || d.name} · ${st}`);
      }))));
}

async function loadAlarms() { Board.alarms = await api(`/alarms?${ACTIVE_ALARMS}`); renderAlarms(); }
async function loadOrders() { Board.orders = await api("/work-orders?open=true"); renderOrders(); }
async function loadDevices() {
  [Board.devices, Board.sites] = await Promise.all([api("/devices"), api("/sites")]);
  renderBuildings();
}

async function guarded(fn) { try { await fn(); showError(null); } catch (e) { showError(e); } }
const refreshAlarms = debounce(() => guarded(async () => { await loadAlarms(); await loadDevices(); }), 100);
const refreshOrders = debounce(() => guarded(loadOrders), 100);
const refreshDevices = debounce(() => guarded(loadDevices), 300);

window.Page = {
  gesture: unlockAudio,
  async start() {
    await Promise.all([loadAlarms(), loadOrders(), loadDevices()]);
    setInterval(tickCountdowns, 1000);
    setInterval(() => guarded(async () => { await Promise.all([loadAlarms(), loadOrders(), loadDevices()]); }), RECONCILE_MS);
  },
  onEvent(kind) {
    if (kind === "ready") { refreshAlarms(); refreshOrders(); return; }
    if (kind.startsWith("alarm.")) refreshAlarms();
    else if (kind.startsWith("work_order.")) refreshOrders();
    else if (kind.startsWith("device.") || kind.startsWith("gateway.")) refreshDevices();
  },
};

$("sound").addEventListener("click", () => {
  unlockAudio();
  Board.sound = !Board.sound;
  $("sound").setAttribute("aria-pressed", String(Board.sound));
  $("sound").textContent = Board.sound ? "Sound on 声音开" : "Sound off 声音关";
});
