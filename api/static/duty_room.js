// Duty-room board: sign in against /api/v1/auth/token, keep the token in sessionStorage,
// then refresh alarms, open work orders and device states every few seconds.
"use strict";
const API = "/api/v1";
const REFRESH_MS = Number(document.body.dataset.refreshMs) || 2000;
const ACTIVE_ALARMS = "state=unack&state=ack&state=rtn_unack";
const OPEN_ORDERS = "state=open&state=assigned&state=accepted&state=on_site";
const $ = (id) => document.getElementById(id);
let timer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, attrs || {});
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");

async function api(path, options = {}) {
  const token = sessionStorage.getItem("token");
  const headers = { Authorization: `Bearer ${token}`, ...(options.headers || {}) };
  const res = await fetch(API + path, { ...options, headers });
  if (res.status === 401) { signOut(); throw new Error("signed out"); }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.detail || res.statusText);
  return body;
}

function signOut() {
  sessionStorage.removeItem("token");
  clearInterval(timer);
  $("board").hidden = true;
  $("login").hidden = false;
  $("who").textContent = "";
}

async function acknowledge(id) {
  try { await api(`/alarms/${id}/acknowledge`, { method: "POST" }); refresh(); }
  catch (e) { $("board-error").textContent = e.message; }
}

function renderAlarms(alarms) {
  $("alarm-count").textContent = `(${alarms.filter((a) => a.state === "unack").length} unacknowledged)`;
  $("alarms").replaceChildren(...alarms.map((a) => {
    const ack = a.state === "unack" || a.state === "rtn_unack"
      ? el("button", { onclick: () => acknowledge(a.id) }, "Acknowledge 确认") : "";
    return el("tr", { className: a.state },
      el("td", {}, el("span", { className: `prio prio-${a.priority}` }, a.priority)),
      el("td", {}, a.device || a.source), el("td", {}, a.message || a.type),
      el("td", {}, a.state + (a.active ? "" : " (cleared)")), el("td", {}, time(a.raised_at)),
      el("td", {}, ack));
  }));
}

function renderOrders(orders) {
  $("work-orders").replaceChildren(...orders.map((w) => el("tr", {},
    el("td", {}, w.id), el("td", {}, w.procedure_title || w.title),
    el("td", {}, w.device || w.source), el("td", {}, w.state),
    el("td", {}, w.assignee || "—"), el("td", {}, time(w.created_at)))));
}

function renderDevices(devices) {
  const names = JSON.parse($("buildings").dataset.names || "[]");
  const label = Object.fromEntries(names.map((b) => [b.id, b.name]));
  const byBuilding = new Map();
  for (const d of devices) {
    if (!byBuilding.has(d.building)) byBuilding.set(d.building, []);
    byBuilding.get(d.building).push(d);
  }
  $("buildings").replaceChildren(...[...byBuilding].map(([b, devs]) =>
    el("div", { className: "building" }, el("h3", {}, label[b] || b),
      ...devs.map((d) => el("span", { className: `dev st-${d.status}`, title: d.status_reason },
        `${d.name} · ${d.status}`)))));
}

async function refresh() {
  try {
    const [alarms, orders, devices] = await Promise.all([
      api(`/alarms?${ACTIVE_ALARMS}`), api(`/work-orders?${OPEN_ORDERS}`), api("/devices")]);
    renderAlarms(alarms); renderOrders(orders); renderDevices(devices);
    $("board-error").textContent = "";
  } catch (e) {
    if (sessionStorage.getItem("token")) $("board-error").textContent = e.message;
  }
}

async function start() {
  try {
    const me = await api("/me");
    $("who").textContent = `${me.username} (${me.role})`;
  } catch (e) { return; }
  $("login").hidden = true;
  $("board").hidden = false;
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const res = await fetch(`${API}/auth/token`, {
    method: "POST", body: new URLSearchParams(new FormData(event.target)) });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) { $("login-error").textContent = body.detail || res.statusText; return; }
  $("login-error").textContent = "";
  sessionStorage.setItem("token", body.access_token);
  start();
});

if (sessionStorage.getItem("token")) start(); else signOut();
