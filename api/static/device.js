// Device page: live values under each point's display name (Chinese and English, from the
// profile, in the page's language) with units and enum labels (fault_code 3: safety circuit), open
// and recent alarms, the device's work orders, online/offline history, and one chart (uPlot,
// vendored) of several points together over the last hour, day or month; the API picks the
// bucket size per series and the series are joined on time. Events about this device reload
// it; values refresh every few seconds. Beside a point's quality, what its device last said of it
// (BACnet status flags and reliability: "fault,open-loop"), each word translated when the
// catalogue knows it, the device's own words on hover.
"use strict";
const NAME = $("device").dataset.device;
const Dev = { range: "hour", points: [], chosen: new Set(), plot: null };
const VALUES_MS = 5000;
const MAX_SERIES = 6;
const COLOURS = ["#1a73e8", "#d93025", "#188038", "#f29900", "#9334e6", "#12b5cb"];

function age(s) { return s < 60 ? `${Math.round(s)} s` : s < 3600 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`; }
function pointInfo(name) { return Dev.points.find((p) => p.name === name) || { name, label: "", label_en: "", unit: "", enum_labels: {} }; }
function pointName(p) { return pick(p.label, p.label_en) || p.name; }

function qualityCell(v) {
  const cell = el("td", { className: `quality-${v.quality}` }, word("quality", v.quality));
  if (v.flags) {
    cell.title = v.flags;
    cell.append(el("div", { className: "meta flags" }, v.flags.split(",").map((w) => word("flag", w)).join(", ")));
  }
  return cell;
}

function valueText(p, v) {
  // An enumerated value reads as its label; a boolean as yes/no; else the number and its unit.
  if (v.value === null || v.value === undefined) return "—";
  const label = p.enum_labels && p.enum_labels[String(Number(v.value))];
  if (label && typeof v.value !== "boolean") return `${pick(label.zh, label.en)} (${v.value})`;
  if (typeof v.value === "boolean") return v.value ? t("yes") : t("no");
  return `${v.value}${v.unit ? " " + v.unit : ""}`;
}

async function loadDevice() {
  const d = await api(`/devices/${NAME}`);
  $("device-title").textContent = `${d.display_name || d.name} (${d.name})`;
  $("device-status").textContent = `${word("state", d.status)}${d.status_reason ? " · " + d.status_reason : ""} · ${t("gateway")} ${word("state", d.gateway_status)}`;
  $("device-meta").textContent = `${word("type", d.type)} · ${d.profile} · ${d.protocol} · ${d.site} · ${t("building")} ${d.building} · ${t("gateway")} ${d.gateway}`;
  const order = new Map(Dev.points.map((p, i) => [p.name, i]));
  const entries = Object.entries(d.values).sort((a, b) => (order.get(a[0]) ?? 999) - (order.get(b[0]) ?? 999));
  $("values").replaceChildren(...entries.map(([name, v]) => {
    const p = pointInfo(name);
    return el("tr", { dataset: { point: name } },
      el("td", {}, pointName(p), el("div", { className: "meta" }, name)),
      el("td", { className: "value" }, valueText(p, v)),
      qualityCell(v), el("td", {}, age(v.age_s)));
  }));
  $("device-alarms").replaceChildren(...(d.open_alarms.length ? d.open_alarms.map((a) =>
    el("li", {}, el("span", { className: `prio prio-${a.priority}` }, word("priority", a.priority)), ` ${word("alarm", a.type)} · ${word("state", a.state)} · ${clock(a.raised_at)}`))
    : [el("li", { className: "meta" }, t("none"))]));
}

async function loadRecent() {
  const [alarms, orders] = await Promise.all([api(`/alarms?device=${NAME}&limit=10`),
                                              api(`/work-orders?device=${NAME}&limit=10`)]);
  $("recent-alarms").replaceChildren(...(alarms.length ? alarms.map((a) => el("tr", {},
    el("td", {}, stamp(a.raised_at)), el("td", {}, el("span", { className: `prio prio-${a.priority}` }, word("priority", a.priority))),
    el("td", {}, pick(a.message, a.message_en) || word("alarm", a.type)), el("td", { className: "state" }, word("state", a.state)))) : [el("tr", {}, el("td", { className: "meta" }, t("none")))]));
  $("device-orders").replaceChildren(...(orders.length ? orders.map((w) => el("tr", { dataset: { workOrderId: w.id } },
    el("td", {}, `#${w.id}`), el("td", {}, stamp(w.created_at)), el("td", {}, orderTitle(w)),
    el("td", { className: "state" }, word("state", w.state)), el("td", {}, w.assignee || "—"))) : [el("tr", {}, el("td", { className: "meta" }, t("none")))]));
}

async function loadHistory() {
  const rows = await api(`/devices/${NAME}/status-history?limit=20`);
  $("history").replaceChildren(...rows.map((r) => el("tr", {}, el("td", {}, stamp(r.time)),
    el("td", { className: `st-${r.state}` }, word("state", r.state)), el("td", { className: "meta" }, r.reason))));
}

async function loadPoints() {
  Dev.points = await api(`/devices/${NAME}/points`);
  const numeric = Dev.points.filter((p) => p.type !== "string");
  // First chosen: the first measurement with a unit, else the first point.
  const first = numeric.find((p) => p.unit) || numeric[0];
  if (first) Dev.chosen.add(first.name);
  $("point-picker").replaceChildren(...numeric.map((p) => el("label", {},
    el("input", { type: "checkbox", value: p.name, checked: Dev.chosen.has(p.name), onchange: (ev) => choose(p.name, ev.target) }),
    `${pointName(p)}${p.unit ? " (" + p.unit + ")" : ""}`)));
}

function choose(name, box) {
  if (box.checked && Dev.chosen.size >= MAX_SERIES) { box.checked = false; showError(new Error(t("at most %(n)s points", { n: MAX_SERIES }))); return; }
  if (box.checked) Dev.chosen.add(name); else Dev.chosen.delete(name);
  showError(null);
  loadChart().catch(showError);
}

async function loadChart() {
  const names = [...Dev.chosen];
  const series = await Promise.all(names.map((n) =>
    api(`/devices/${NAME}/telemetry?point=${encodeURIComponent(n)}&range=${Dev.range}`)));
  const buckets = [...new Set(series.map((s) => (s.bucket_s ? s.bucket_s + " s" : "raw")))];
  $("chart-info").textContent = t("%(n)s samples · bucket %(bucket)s", { n: series.reduce((n, s) => n + s.samples.length, 0), bucket: buckets.join(", ") || "—" });
  const tables = series.map((s) => [s.samples.map((p) => new Date(p.time).getTime() / 1000), s.samples.map((p) => p.avg)]);
  const data = tables.length ? uPlot.join(tables) : [[]];
  const units = [...new Set(series.map((s) => s.unit || "·"))];
  const width = Math.max(300, $("chart").clientWidth || 800);
  if (Dev.plot) Dev.plot.destroy();
  const scales = { x: { time: true } };
  for (const u of units) scales[u] = { auto: true };
  Dev.plot = new uPlot({
    width, height: 300, scales,
    series: [{}, ...series.map((s, i) => ({ label: `${pointName(pointInfo(s.point))}${s.unit ? " " + s.unit : ""}`,
      stroke: COLOURS[i % COLOURS.length], width: 2, scale: s.unit || "·", spanGaps: true }))],
    axes: [{}, ...units.slice(0, 2).map((u, i) => ({ scale: u, side: i ? 1 : 3, label: u === "·" ? "" : u, grid: { show: i === 0 } }))],
  }, data, $("chart"));
}

for (const b of document.querySelectorAll(".ranges button")) {
  b.addEventListener("click", () => {
    Dev.range = b.dataset.range;
    for (const o of document.querySelectorAll(".ranges button")) o.setAttribute("aria-pressed", String(o === b));
    loadChart().catch(showError);
  });
}

const reload = debounce(() => Promise.all([loadDevice(), loadHistory(), loadRecent()]).then(() => showError(null), showError), 150);
window.Page = {
  async start() {
    await loadPoints();
    await Promise.all([loadDevice(), loadHistory(), loadRecent()]);
    await loadChart();
    setInterval(() => loadDevice().catch(showError), VALUES_MS);
  },
  onEvent(kind, data) { if (kind === "ready" || data.device === NAME || data.source === NAME) reload(); },
};
