// Notices to residents: the drafts that outage alarms wrote and the published ones;
// the duty room edits the text and the expected restoration, publishes, closes. Live: a new
// alarm or a resolved order reloads the list (the database drafts and closes notices).
"use strict";
const SITE = document.body.dataset.site;
let current = null;

function localInput(iso) {
  // an ISO instant as a datetime-local value in the browser's zone
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

async function loadNotices() {
  const rows = await api(`/notices${SITE ? "?site=" + SITE : ""}`);
  $("notices").replaceChildren(...rows.map((n) => {
    const link = el("a", { href: `#${n.id}` }, n.title);
    link.addEventListener("click", (ev) => { ev.preventDefault(); openNotice(n.id).catch(showError); });
    return el("tr", { dataset: { noticeId: n.id, state: n.state } }, el("td", {}, n.id),
      el("td", { className: "state" }, word("state", n.state)), el("td", {}, n.building), el("td", {}, word("kind", n.kind)),
      el("td", {}, link), el("td", {}, stamp(n.since)), el("td", {}, stamp(n.expected_restore)));
  }));
}

async function openNotice(id) {
  const n = await api(`/notices/${id}`);
  current = n;
  $("notice-editor").hidden = false;
  $("notice-id").textContent = n.id;
  $("notice-state").textContent = word("state", n.state);
  const form = $("notice-form");
  form.elements.title.value = n.title;
  form.elements.body.value = n.body;
  form.elements.expected_restore.value = localInput(n.expected_restore);
  const closed = n.state === "closed";
  for (const input of form.elements) input.disabled = closed;
  $("publish").hidden = n.state !== "draft";
  $("notice-saved").textContent = "";
}

async function save() {
  const form = $("notice-form");
  const when = form.elements.expected_restore.value;
  await api(`/notices/${current.id}`, { method: "PATCH", json: {
    title: form.elements.title.value, body: form.elements.body.value,
    expected_restore: when ? new Date(when).toISOString() : null } });
}

$("notice-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try { await save(); $("notice-saved").textContent = t("Saved"); showError(null);
        await loadNotices(); await openNotice(current.id); } catch (e) { showError(e); }
});
$("publish").addEventListener("click", async () => {
  try { await save(); await api(`/notices/${current.id}/publish`, { method: "POST" });
        await loadNotices(); await openNotice(current.id);
        $("notice-saved").textContent = t("Published"); showError(null); } catch (e) { showError(e); }
});
$("close-notice").addEventListener("click", async () => {
  try { await api(`/notices/${current.id}/close`, { method: "POST" });
        await loadNotices(); await openNotice(current.id); showError(null); } catch (e) { showError(e); }
});

const reload = debounce(() => loadNotices().catch(showError), 300);
window.Page = {
  async start() {
    await loadNotices();
    if (location.hash.length > 1) await openNotice(Number(location.hash.slice(1)));
  },
  onEvent(kind) { if (kind.startsWith("alarm.") || kind.startsWith("work_order.")) reload(); },
};
