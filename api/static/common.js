// Shared by every page: sign in against /api/v1/auth/token (token in sessionStorage), call the
// API with the bearer token, and follow the live stream /api/v1/stream. EventSource cannot
// send an Authorization header, so the stream is read with fetch() and parsed here (SSE
// format: "id:", "event:", "data:" lines, blank line ends a message, ":" lines are comments).
// It reconnects with backoff, resuming from the last id seen (Last-Event-ID), and shows the
// #stream-banner while disconnected. Signing out revokes the token on the server; a stream
// whose token was revoked or expired ends with a "signed_out" event. The pages run under a
// Content-Security-Policy without inline scripts or style attributes: no inline handlers, and
// styles only through the CSSOM (node.style.width = ...).
// A page defines window.Page = {start(me), onEvent(ev)}.
// One language at a time: the page's language is <html lang> (the server rendered the template
// in it, from the facility_lang cookie); its scripts' strings come from the JSON catalogue
// /i18n/{lang}.json (the same gettext catalogue as the templates) through t(). The user's
// choice is remembered on the server (PUT /api/v1/me/language) and in the cookie; signing in
// on another device brings the remembered language back. API errors come in that language too
// (Accept-Language).
"use strict";
const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const LANG = document.documentElement.lang || "zh-CN";
const LANG_COOKIE = "facility_lang";
let Strings = {};
// t("Acknowledge") -> the text in the page's language; t("%(n)s open", {n: 3}) fills it in.
function t(msgid, values) {
  const text = Strings[msgid] || msgid;
  return values ? text.replace(/%\((\w+)\)s/g, (m, k) => (k in values ? String(values[k]) : m)) : text;
}
// A state, priority, role or trade code shown as a word of the page's language.
// A code the catalogue does not know shows as itself.
const word = (kind, code) => (code ? Strings[`${kind}:${code}`] || code : "");
// Data kept in both languages (procedure titles and steps, point names, alarm messages): the
// page's language, else the other one (data that has no English shows in Chinese).
const pick = (zh, en) => (LANG === "en" ? en || zh : zh || en);
// An order's title: an alarm's order is titled "<procedure's Chinese title>: <device>".
const orderTitle = (w) => (w.procedure_title && w.title.startsWith(w.procedure_title)
  ? pick(w.procedure_title, w.procedure_title_en) + w.title.slice(w.procedure_title.length) : w.title);
async function loadStrings() {
  try {
    const res = await fetch(`/i18n/${LANG}.json`);
    if (res.ok) Strings = await res.json();
  } catch (e) { /* offline: msgids (English) until the catalogue can be read */ }
}
function setLanguageCookie(lang) {
  document.cookie = `${LANG_COOKIE}=${lang}; path=/; max-age=31536000; samesite=strict`;
}
async function chooseLanguage(lang) {
  // The switch in the header: remembered for the user (when signed in) and on this device.
  setLanguageCookie(lang);
  if (sessionStorage.getItem("token")) {
    try { await api("/me/language", { method: "PUT", json: { language: lang } }); } catch (e) { /* kept in the cookie */ }
  } else sessionStorage.setItem("lang-chosen", lang);
  location.reload();
}
const Live = { connected: false, lastId: null, controller: null, events: 0 };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false)
    node.append(c instanceof Node ? c : String(c));
  return node;
}
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString(LANG, { hour12: false }) : "");
const stamp = (iso) => (iso ? new Date(iso).toLocaleString(LANG, { hour12: false }) : "");

function countdown(iso, now = Date.now()) {
  // "12:34" left, or "-03:10" late; hours shown past an hour.
  const ms = new Date(iso).getTime() - now;
  const s = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const body = (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + `:${String(sec).padStart(2, "0")}`;
  return { text: (ms < 0 ? "-" : "") + body, late: ms < 0 };
}

async function api(path, options = {}) {
  const token = sessionStorage.getItem("token");
  const headers = { Authorization: `Bearer ${token}`, "Accept-Language": LANG, ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const res = await fetch(API + path, { ...options, headers });
  if (res.status === 401) { dropSession(); throw new Error("signed out"); }
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json().catch(() => ({})) : await res.text();
  if (!res.ok) throw new Error((body && body.detail) || res.statusText);
  return body;
}

function showError(e) {
  const box = $("board-error");
  if (box && sessionStorage.getItem("token")) box.textContent = e ? e.message || String(e) : "";
}

async function signOut() {
  // The Sign out button: revoke the token on the server, then forget it here.
  const token = sessionStorage.getItem("token");
  if (token) {
    try {
      await fetch(`${API}/auth/sign-out`, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    } catch (e) { /* the server is away: the token still expires */ }
  }
  dropSession();
}

function dropSession() {
  sessionStorage.removeItem("token");
  // the technician's page's kept answers (service worker) go with the session
  if (navigator.serviceWorker && navigator.serviceWorker.controller)
    navigator.serviceWorker.controller.postMessage({ type: "signed-out" });
  if (Live.controller) Live.controller.abort();
  $("board").hidden = true;
  $("login").hidden = false;
  $("sign-out").hidden = true;
  $("stream-banner").hidden = true;
  $("who").textContent = "";
}

function setLive(connected) {
  Live.connected = connected;
  document.body.dataset.live = connected ? "yes" : "no";
  $("stream-banner").hidden = connected;
}

function parseSse(block) {
  const ev = { id: null, event: "message", data: "" };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "id") ev.id = value;
    else if (field === "event") ev.event = value;
    else if (field === "data") data.push(value);
  }
  ev.data = data.join("\n");
  return ev;
}

async function follow(onEvent) {
  // Read the stream until aborted; reconnect with capped backoff.
  let backoff = 1000;
  for (;;) {
    Live.controller = new AbortController();
    try {
      const headers = { Authorization: `Bearer ${sessionStorage.getItem("token")}` };
      if (Live.lastId !== null) headers["Last-Event-ID"] = Live.lastId;
      const res = await fetch(`${API}/stream`, { headers, signal: Live.controller.signal });
      if (res.status === 401) { dropSession(); return; }
      if (!res.ok || !res.body) throw new Error(`stream: ${res.status}`);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const ev = parseSse(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (ev.id !== null) Live.lastId = ev.id;
          if (ev.event === "ready") { setLive(true); backoff = 1000; }
          if (ev.event === "signed_out") { dropSession(); return; }
          if (!ev.data) continue;
          Live.events += 1;
          try { onEvent(ev.event, JSON.parse(ev.data)); } catch (e) { console.error(e); }
        }
      }
    } catch (e) {
      if (Live.controller.signal.aborted && !sessionStorage.getItem("token")) return;
    }
    setLive(false);
    if (!sessionStorage.getItem("token")) return;
    await new Promise((r) => setTimeout(r, backoff * (0.8 + Math.random() * 0.4)));
    backoff = Math.min(backoff * 2, 15000);
  }
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

async function boot() {
  let me;
  try { me = await api("/me"); } catch (e) { return; }
  const chosen = sessionStorage.getItem("lang-chosen");
  sessionStorage.removeItem("lang-chosen");
  if (chosen && chosen !== me.language) {
    try { me = await api("/me/language", { method: "PUT", json: { language: chosen } }); } catch (e) { /* cookie only */ }
  } else if (me.language !== LANG && !sessionStorage.getItem("lang-synced")) {
    sessionStorage.setItem("lang-synced", "1");  // once: a browser without cookies stays put
    setLanguageCookie(me.language);  // the user's remembered language, on this device too
    location.reload();
    return;
  }
  $("who").textContent = `${me.username} (${word("role", me.role)})`;
  sessionStorage.setItem("user", me.username);
  $("login").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = false;
  const page = window.Page || {};
  // Only a page that follows the stream can be disconnected from it (not the report).
  if (page.onEvent) setLive(false);
  try { if (page.start) await page.start(me); } catch (e) { showError(e); }
  if (page.onEvent) follow(page.onEvent);
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (window.Page && window.Page.gesture) window.Page.gesture();
  const res = await fetch(`${API}/auth/token`, {
    method: "POST", headers: { "Accept-Language": LANG },
    body: new URLSearchParams(new FormData(event.target)) });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) { $("login-error").textContent = body.detail || res.statusText; return; }
  $("login-error").textContent = "";
  sessionStorage.setItem("token", body.access_token);
  boot();
});
$("sign-out").addEventListener("click", signOut);
$("language").addEventListener("change", (event) => chooseLanguage(event.target.value));

window.addEventListener("DOMContentLoaded", async () => {
  await loadStrings();
  if (sessionStorage.getItem("token")) boot(); else dropSession();
});
