// Staff accounts for the admin (issue 23): each user's role, trade, scope (every site, or the
// sites and buildings they look after), language and active flag, edited in place; a new
// account below. The API records every change in the audit log and signs a user whose scope
// changed out everywhere (their pages sign in again under the new scope).
"use strict";

const scopeText = (scope) => (scope === null ? "" : scope.join(", "));
const scopeValue = (text) => {
  const entries = text.split(",").map((x) => x.trim()).filter(Boolean);
  return entries.length ? entries : null;
};

function select(name, value, options) {
  return el("select", { name }, ...options.map(([v, label]) =>
    el("option", { value: v, selected: v === value }, label)));
}

function userRow(u) {
  const scope = el("input", { name: "scope", value: scopeText(u.scope), placeholder: t("every site") });
  const role = select("role", u.role, ["operator", "technician", "manager", "admin"].map((r) => [r, word("role", r)]));
  const language = select("language", u.language, [["zh-CN", "中文"], ["en", "English"]]);
  const active = el("input", { type: "checkbox", name: "active", checked: u.active });
  const saved = el("span", { className: "ok", role: "status" });
  const save = el("button", { onclick: async () => {
    try {
      const changes = { role: role.value, language: language.value, active: active.checked,
                        scope: scopeValue(scope.value) };
      await api(`/users/${encodeURIComponent(u.username)}`, { method: "PATCH", json: changes });
      saved.textContent = t("Saved");
      showError(null);
    } catch (e) { saved.textContent = ""; showError(e); }
  } }, t("Save"));
  return el("tr", { dataset: { username: u.username } }, el("td", {}, u.username),
    el("td", {}, u.display_name), el("td", {}, role), el("td", {}, u.trade || ""),
    el("td", {}, scope), el("td", {}, language), el("td", {}, active), el("td", {}, save, " ", saved));
}

async function loadUsers() {
  const users = await api("/users");
  $("users").replaceChildren(...users.map(userRow));
}

$("user-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { username: form.get("username"), password: form.get("password"),
                 display_name: form.get("display_name"), role: form.get("role"),
                 trade: form.get("trade") || null, scope: scopeValue(form.get("scope")), language: LANG };
  try {
    await api("/users", { method: "POST", json: body });
    event.target.reset();
    $("user-saved").textContent = t("Created");
    showError(null);
    await loadUsers();
  } catch (e) { $("user-saved").textContent = ""; showError(e); }
});

window.Page = { start: loadUsers };
