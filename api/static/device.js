// Device page: live values with quality and age, open alarms, online/offline history, and a
// chart (uPlot, vendored) of any numeric point over the last hour, day or month; the API picks
// the bucket size. Events about this device reload it; values refresh every few seconds.
"use strict";
const NAME = $("device").dataset.device;
const Dev = { range: "hour", point: null, plot: null };
const VALUES_MS = 5000;

function age(s) { return s < 60 ? `${Math.round(s)} s` : s < 3600 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`; }

async function loadDevice() {
  const d = await api(`/devices/${NAME}`);
  $("device-title").textContent = `${d.display_name || d.name} (${d.name})`;
  $("device-status").textContent = `${d.status}${d.status_reason ? " · " + d.status_reason : ""} · gateway ${d.gateway_status}`;
  $("device-meta").textContent = `${d.type} · ${d.profile} · ${d.protocol} · building ${d.building} · gateway ${d.gateway}`;
  $("values").replaceChildren(...Object.entries(d.values).map(([p, v]) =>
    el("tr", { dataset: { point: p } }, el("td", {}, p), el("td", {}, `${v.value} ${v.unit}`),
       el("td", { className: `quality-${v.quality}` }, v.quality), el("td", {}, age(v.age_s)))));
  $("device-alarms").replaceChildren(...(d.open_alarms.length ? d.open_alarms.map((a) =>
    el("li", {}, el("span", { className: `prio prio-${a.priority}` }, a.priority), ` ${a.message || a.type} · ${a.state} · ${clock(a.raised_at)}`))
    : [el("li", { className: "meta" }, "none 无")]));
}

async function loadHistory() {
  const rows = await api(`/devices/${NAME}/status-history?limit=20`);
  $("history").replaceChildren(...rows.map((r) => el("tr", {}, el("td", {}, stamp(r.time)),
    el("td", { className: `st-${r.state}` }, r.state), el("td", { className: "meta" }, r.reason))));
}

async function loadPoints() {
  const points = (await api(`/devices/${NAME}/points`)).filter((p) => p.type !== "string");
  $("point").replaceChildren(...points.map((p) => el("option", { value: p.name }, `${p.name}${p.unit ? " (" + p.unit + ")" : ""}`)));
  Dev.point = points.length ? points[0].name : null;
}

async function loadChart() {
  if (!Dev.point) return;
  const s = await api(`/devices/${NAME}/telemetry?point=${encodeURIComponent(Dev.point)}&range=${Dev.range}`);
  $("chart-info").textContent = `${s.samples.length} samples · bucket ${s.bucket_s ? s.bucket_s + " s" : "raw"}`;
  const xs = s.samples.map((p) => new Date(p.time).getTime() / 1000);
  const data = [xs, s.samples.map((p) => p.avg), s.samples.map((p) => p.min), s.samples.map((p) => p.max)];
  const width = Math.max(300, $("chart").clientWidth || 800);
  if (Dev.plot) Dev.plot.destroy();
  Dev.plot = new uPlot({
    width, height: 280, scales: { x: { time: true } },
    series: [{}, { label: `${s.point} avg ${s.unit}`, stroke: "#1a73e8", width: 2 },
             { label: "min", stroke: "#9aa0a6" }, { label: "max", stroke: "#f29900" }],
  }, data, $("chart"));
}

for (const b of document.querySelectorAll(".ranges button")) {
  b.addEventListener("click", () => {
    Dev.range = b.dataset.range;
    for (const o of document.querySelectorAll(".ranges button")) o.setAttribute("aria-pressed", String(o === b));
    loadChart().catch(showError);
  });
}
$("point").addEventListener("change", () => { Dev.point = $("point").value; loadChart().catch(showError); });

const reload = debounce(() => Promise.all([loadDevice(), loadHistory()]).then(() => showError(null), showError), 150);
window.Page = {
  async start() {
    await Promise.all([loadDevice(), loadHistory(), loadPoints()]);
    await loadChart();
    setInterval(() => loadDevice().catch(showError), VALUES_MS);
  },
  onEvent(kind, data) { if (kind === "ready" || data.device === NAME || data.source === NAME) reload(); },
};
