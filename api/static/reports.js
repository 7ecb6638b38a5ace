// Monthly PDCA review: MTTA, MTTR, SLA and PM compliance, work orders by trade and cause,
// alarm-load yardsticks, as tables with bar charts; CSV export (fetched with the token, then
// saved as a file).
"use strict";
const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const pct = (r) => (r === null || r === undefined ? "—" : `${(r * 100).toFixed(1)} %`);
const dur = (s) => (s === null || s === undefined ? "—" : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(2)} h`);

function query() {
  return `site=${encodeURIComponent($("site").value)}&month=${$("month").value}&tz=${encodeURIComponent(TZ)}`;
}

function kpis(r) {
  const w = r.work_orders;
  const cells = [["MTTA", t("MTTA of alarms"), dur(r.alarms.mtta_s)], ["MTTA", t("MTTA of orders"), dur(w.mtta_s)],
    ["MTTR", t("MTTR"), dur(w.mttr_s)], ["SLA", t("SLA accept"), pct(w.sla_accept)], ["SLA", t("SLA arrive"), pct(w.sla_arrive)],
    ["SLA", t("SLA resolve"), pct(w.sla_resolve)], ["PM", t("PM compliance"), pct(r.pm.compliance)],
    ["Work", t("Work orders"), w.count], ["Alarms", t("Alarms"), r.alarms.alarms],
    ["Ack-overdue", t("Alarms not acknowledged in time"), r.alarms.ack_overdue],
    ["Late", t("Late steps"), `${r.steps.late} / ${r.steps.timed}`]];
  return el("table", { id: "kpis", className: "kv" }, el("tbody", {}, cells.map(([kpi, k, v]) =>
    el("tr", {}, el("th", {}, k), el("td", { dataset: { kpi } }, String(v))))));
}

function bar(rem) {
  // Width through the CSSOM: the Content-Security-Policy forbids style attributes.
  const span = el("span", { className: "bar" });
  span.style.width = `${rem}rem`;
  return span;
}

function breakdown(title, rows, key) {
  const max = Math.max(1, ...rows.map((x) => x.count));
  return el("section", {}, el("h2", {}, title),
    el("table", {}, el("thead", {}, el("tr", {}, ["", t("count"), "", t("resolved"), "MTTR", t("SLA resolve")].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((x) => el("tr", {}, el("td", {}, x[key] === undefined || x[key] === null ? "—" : key === "trade" ? word("trade", x[key]) : x[key]), el("td", {}, x.count),
        el("td", {}, bar((x.count / max) * 12)),
        el("td", {}, x.resolved), el("td", {}, dur(x.mttr_s)), el("td", {}, pct(x.sla_resolve)))))));
}

function load(r) {
  const l = r.alarm_load;
  $("report").replaceChildren(
    el("h2", {}, `${r.site} · ${r.month} (${r.timezone})`), kpis(r),
    el("div", { className: "columns" }, breakdown(t("By trade"), r.by_trade, "trade"),
       breakdown(t("By cause"), r.by_cause, "cause")),
    el("section", { id: "by-device" }, el("h2", {}, t("By device (repeat failures, parts cost)")),
      el("table", {}, el("thead", {}, el("tr", {}, [t("device"), t("failures"), t("repeat"), t("parts cost ¥")].map((h) => el("th", {}, h)))),
        el("tbody", {}, (r.by_device || []).map((d) => el("tr", { dataset: { device: d.device } },
          el("td", {}, el("a", { href: `/assets#${d.device}` }, d.device)), el("td", {}, d.failures),
          el("td", {}, d.repeat_failures), el("td", {}, d.parts_cost.toFixed(2))))))),
    el("section", {}, el("h2", {}, t("Alarm load (ISA-18.2)")),
      el("table", { className: "kv" }, el("tbody", {},
        [["annunciated", l.annunciated], ["per operator per 10 min (avg)", l.per_10_min_avg],
         ["per 10 min (peak)", l.per_10_min_peak], ["floods (>10 in 10 min)", l.floods],
         ["share of alarms in floods", pct(l.flood_share)], ["chattering points", l.chattering.length],
         ["stale (active > 24 h)", l.stale]].map(([k, v]) => el("tr", {}, el("th", {}, t(k)), el("td", {}, String(v)))))),
      el("h3", {}, t("Top 10 bad actors")),
      el("table", {}, el("tbody", {}, l.top_bad_actors.map((a) =>
        el("tr", {}, el("td", {}, a.source), el("td", {}, word("alarm", a.alarm_type)), el("td", {}, a.count)))))));
}

$("pick").addEventListener("submit", async (event) => {
  event.preventDefault();
  try { load(await api(`/reports/monthly?${query()}`)); showError(null); } catch (e) { showError(e); }
});
$("csv").addEventListener("click", async () => {
  try {
    const text = await api(`/reports/monthly.csv?${query()}`);
    const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })),
                           download: `report-${$("site").value}-${$("month").value}.csv` });
    document.body.append(link); link.click(); link.remove();
  } catch (e) { showError(e); }
});

$("pdf").addEventListener("click", async () => {
  // PDF bytes: fetched with the token as a blob (api() reads text), then saved.
  try {
    const res = await fetch(`${API}/reports/monthly.pdf?${query()}`, { headers: { Authorization: `Bearer ${sessionStorage.getItem("token")}` } });
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).detail || res.statusText);
    const link = el("a", { href: URL.createObjectURL(await res.blob()), download: `report-${$("site").value}-${$("month").value}.pdf` });
    document.body.append(link); link.click(); link.remove(); showError(null);
  } catch (e) { showError(e); }
});

window.Page = {
  async start() {
    const sites = await api("/sites");
    $("site").replaceChildren(...sites.map((s) => el("option", { value: s.id }, s.name)));
    const now = new Date();
    $("month").value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
    if (sites.length) $("pick").requestSubmit();
  },
};
