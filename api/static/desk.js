// Service desk: log an owner's repair request as a work order and see the recent
// ones with their state, live.
"use strict";
const SITE = document.body.dataset.site;
let devices = [];

function fillDevices() {
  const b = $("building").value;
  $("device-select").replaceChildren(el("option", { value: "" }, "—"),
    ...devices.filter((d) => !b || d.building === b).map((d) => el("option", { value: d.name }, d.display_name || d.name)));
}

async function loadRequests() {
  const rows = await api("/work-orders?origin=request&limit=20");
  $("requests").replaceChildren(...rows.map((w) => el("tr", { dataset: { workOrderId: w.id } },
    el("td", {}, w.id), el("td", {}, w.title), el("td", {}, word("trade", w.trade)), el("td", {}, word("state", w.state)),
    el("td", {}, w.assignee || "—"), el("td", {}, stamp(w.created_at)))));
}

$("building").addEventListener("change", fillDevices);
$("request").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = Object.fromEntries(new FormData(event.target));
  const body = { site: SITE, category: form.category, trade: form.trade, priority: form.priority,
                 title: form.title, description: form.description, location: form.location,
                 reporter_name: form.reporter_name, reporter_phone: form.reporter_phone };
  if (form.building) body.building = form.building;
  if (form.device) body.device = form.device;
  try {
    const wo = await api("/work-orders", { method: "POST", json: body });
    $("created").textContent = t("Work order #%(id)s created", { id: wo.id });
    event.target.reset(); fillDevices(); showError(null); await loadRequests();
  } catch (e) { $("created").textContent = ""; showError(e); }
});

const reload = debounce(() => loadRequests().catch(showError), 200);
window.Page = {
  async start() {
    devices = await api(`/devices${SITE ? "?site=" + SITE : ""}`);
    fillDevices(); await loadRequests();
  },
  onEvent(kind) { if (kind.startsWith("work_order.")) reload(); },
};
