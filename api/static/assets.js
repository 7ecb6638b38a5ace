// Asset ledger: every device of the site with its ledger entry; managers and
// admins edit an entry and import a CSV; everyone signed in sees the inspections falling due
// and a device's history (work orders with time spent, parts and cost; alarms).
"use strict";
const SITE = document.body.dataset.site;
const FIELDS = ["model", "manufacturer", "serial_number", "registration_code", "installed_on",
  "warranty_until", "contractor", "contractor_phone", "inspection_due", "notes"];
let me = null;
let devices = [];
let ledger = new Map();
let current = null;
const mins = (s) => (s === null || s === undefined ? "—" : `${(s / 60).toFixed(0)} min`);
const canEdit = () => me && (me.role === "manager" || me.role === "admin");

async function loadLedger() {
  const [rows, due] = await Promise.all([api("/assets"), api("/assets/inspections-due?within_days=30")]);
  ledger = new Map(rows.map((a) => [a.device, a]));
  $("assets").replaceChildren(...devices.map((d) => {
    const a = ledger.get(d.name) || {};
    const link = el("a", { href: `#${d.name}`, dataset: { device: d.name } }, d.display_name || d.name);
    link.addEventListener("click", (ev) => { ev.preventDefault(); openDevice(d.name).catch(showError); });
    return el("tr", { dataset: { device: d.name } }, el("td", {}, link), el("td", {}, a.model || ""),
      el("td", {}, a.manufacturer || ""), el("td", {}, a.registration_code || ""),
      el("td", {}, a.contractor || ""), el("td", {}, a.contractor_phone || ""),
      el("td", {}, a.inspection_due || ""), el("td", {}, a.warranty_until || ""));
  }));
  $("due").replaceChildren(...(due.length ? due.map((d) => el("li", { className: d.overdue ? "late" : "soon", dataset: { device: d.device } },
    `${d.device} ${d.registration_code}: ${d.inspection_due} (${d.overdue ? t("overdue") : t("%(n)s days", { n: d.days_left })}) ${d.contractor} ${d.contractor_phone}`))
    : [el("li", {}, t("none"))]));
}

async function openDevice(name) {
  current = name;
  const detail = await api(`/assets/${encodeURIComponent(name)}`);
  const a = detail.asset || {};
  $("editor").hidden = false;
  $("edit-device").textContent = name;
  const form = $("asset-form");
  for (const f of FIELDS) form.elements[f].value = a[f] ?? "";
  for (const input of form.elements) input.disabled = !canEdit();
  $("saved").textContent = "";
  $("history").replaceChildren(...detail.work_orders.map((w) => el("tr", {},
    el("td", {}, w.id), el("td", {}, w.title), el("td", {}, word("state", w.state)), el("td", {}, stamp(w.created_at)),
    el("td", {}, mins(w.time_spent_s)), el("td", {}, w.parts.join(", ")), el("td", {}, Number(w.parts_cost).toFixed(2)))));
  $("alarm-history").replaceChildren(...detail.alarms.map((x) => el("tr", {},
    el("td", {}, x.id), el("td", {}, word("alarm", x.alarm_type)), el("td", {}, word("priority", x.priority)), el("td", {}, stamp(x.raised_at)),
    el("td", {}, stamp(x.cleared_at)))));
}

$("asset-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {};
  for (const f of FIELDS) {
    const v = event.target.elements[f].value.trim();
    body[f] = f.endsWith("_on") || f.endsWith("_until") || f.endsWith("_due") ? (v || null) : v;
  }
  try {
    await api(`/assets/${encodeURIComponent(current)}`, { method: "PUT", json: body });
    $("saved").textContent = t("Saved"); showError(null); await loadLedger();
  } catch (e) { $("saved").textContent = ""; showError(e); }
});

$("import").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("csv-file").files[0];
  if (!file) return;
  try {
    const r = await api("/assets/import", { method: "POST", body: await file.text(), headers: { "Content-Type": "text/csv" } });
    $("imported").textContent = t("Imported %(n)s", { n: r.imported }); showError(null); await loadLedger();
  } catch (e) { $("imported").textContent = ""; showError(e); }
});

$("export").addEventListener("click", async (event) => {
  event.preventDefault();
  try {
    const text = await api("/assets/export.csv");
    const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: "assets.csv" });
    document.body.append(link); link.click(); link.remove();
  } catch (e) { showError(e); }
});

window.Page = {
  async start(user) {
    me = user;
    $("import-panel").hidden = !canEdit();
    devices = await api(`/devices${SITE ? "?site=" + SITE : ""}`);
    await loadLedger();
    if (location.hash.length > 1) await openDevice(decodeURIComponent(location.hash.slice(1)));
  },
};
