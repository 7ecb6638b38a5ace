// On-call rosters for managers and admins: a roster's shifts and backups edited as
// text, shift swaps added and cancelled, and the record of changes (who, when, what). The
// rules service reloads rosters and swaps every few seconds: no restart.
"use strict";
const SITE = document.body.dataset.site;
let rosters = [];

function expandDays(text) {
  const t = text.trim().toLowerCase();
  if (t === "all" || t === "") return [1, 2, 3, 4, 5, 6, 7];
  const out = [];
  for (const part of t.split(",")) {
    const [a, b] = part.split("-").map((x) => Number(x.trim()));
    for (let d = a; d <= (b || a); d += 1) out.push(d);
  }
  return out;
}
const hm = (t) => t.slice(0, 5);
const shiftLine = (s) => [s.name, s.days.join(","), hm(s.start), hm(s.end), s.on_call.join(",")].join(" | ");
const list = (text) => text.split(",").map((x) => x.trim()).filter(Boolean);

function parseShifts(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((line, i) => {
    const parts = line.split("|").map((x) => x.trim());
    if (parts.length !== 5) throw new Error(`shift line ${i + 1}: name | days | start | end | on call`);
    return { name: parts[0], days: expandDays(parts[1]), start: parts[2], end: parts[3], on_call: list(parts[4]) };
  });
}

function current() { return rosters.find((r) => r.roster === $("roster-select").value); }

function showRoster() {
  const r = current();
  if (!r) return;
  const form = $("roster-form");
  form.elements.shifts.value = r.shifts.map(shiftLine).join("\n");
  form.elements.backup.value = r.backup.join(", ");
  $("roster-edited").textContent = r.edited_by ? t("edited by %(who)s %(when)s", { who: r.edited_by, when: stamp(r.edited_at) }) : t("from the dispatch file");
}

async function loadAll() {
  const keep = $("roster-select").value;
  rosters = await api(`/rosters${SITE ? "?site=" + SITE : ""}`);
  $("roster-select").replaceChildren(...rosters.map((r) => el("option", { value: r.roster }, r.roster)));
  if (keep) $("roster-select").value = keep;
  showRoster();
  const swaps = await api(`/roster-swaps${SITE ? "?site=" + SITE : ""}`);
  $("swaps").replaceChildren(...swaps.map((s) => {
    const cancel = el("button", { type: "button", className: "secondary", disabled: Boolean(s.cancelled_at) }, s.cancelled_at ? t("cancelled") : t("Cancel"));
    cancel.addEventListener("click", async () => {
      try { await api(`/roster-swaps/${s.id}/cancel`, { method: "POST" }); await loadAll(); } catch (e) { showError(e); }
    });
    return el("tr", { dataset: { swapId: s.id } }, el("td", {}, s.id), el("td", {}, s.roster), el("td", {}, s.original),
      el("td", {}, s.substitute), el("td", {}, stamp(s.starts_at)), el("td", {}, stamp(s.ends_at)), el("td", {}, s.reason), el("td", {}, cancel));
  }));
  const changes = await api("/roster-changes");
  $("changes").replaceChildren(...changes.map((c) => el("tr", {}, el("td", {}, stamp(c.at)), el("td", {}, c.actor),
    el("td", {}, word("action", c.action)), el("td", {}, c.target))));
}

$("roster-select").addEventListener("change", showRoster);
$("roster-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const r = current();
  try {
    const body = { shifts: parseShifts(event.target.elements.shifts.value), backup: list(event.target.elements.backup.value) };
    await api(`/rosters/${encodeURIComponent(r.site)}/${encodeURIComponent(r.roster)}`, { method: "PUT", json: body });
    $("roster-saved").textContent = t("Saved"); showError(null); await loadAll();
  } catch (e) { $("roster-saved").textContent = ""; showError(e); }
});
$("swap-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const r = current();
  const f = event.target.elements;
  try {
    await api(`/rosters/${encodeURIComponent(r.site)}/${encodeURIComponent(r.roster)}/swaps`, { method: "POST", json: {
      original: f.original.value.trim(), substitute: f.substitute.value.trim(),
      starts_at: new Date(f.starts_at.value).toISOString(), ends_at: new Date(f.ends_at.value).toISOString(),
      reason: f.reason.value } });
    $("swap-saved").textContent = t("Added"); event.target.reset(); showError(null); await loadAll();
  } catch (e) { $("swap-saved").textContent = ""; showError(e); }
});

window.Page = { async start() { await loadAll(); } };
