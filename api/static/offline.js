// The technician's outbox (issue 23): every write of the technician's page (accept, arrive,
// resolve, decline, a step ticked with its note, a photo) is put in an IndexedDB queue first
// and sent from there in the order it was made, each with its own Idempotency-Key, so a request
// whose answer was lost is sent again and done once (the API answers the repeat with the first
// result). Without network the queue waits: it is sent when the browser is online again (the
// "online" event, and a retry every few seconds). An answer that refuses the request (the order
// was reassigned, closed or cancelled meanwhile: 403, 404, 409, 422) takes it off the queue
// and shows it to the technician with the server's reason: never dropped silently.
"use strict";
const Outbox = { db: null, pending: [], conflicts: [], sending: false, onSent: null };
const RETRY_MS = 5000;

function idb(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function outboxStore(mode) {
  if (!Outbox.db) {
    const open = indexedDB.open("facility-outbox", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("requests", { keyPath: "seq", autoIncrement: true });
    Outbox.db = await idb(open);
  }
  return Outbox.db.transaction("requests", mode).objectStore("requests");
}

async function outboxLoad() {
  Outbox.pending = await idb((await outboxStore("readonly")).getAll());
  renderOutbox();
}

function newKey() {
  // crypto.randomUUID needs a secure context (HTTPS or 127.0.0.1); a phone on plain http to
  // the server's LAN address has getRandomValues only (and no service worker: the outbox
  // still keeps and orders the writes while the page is open).
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// entry: { method, path, json?, photo?: { file, stage }, label, order, step?, to? }
async function outboxAdd(entry) {
  const item = { ...entry, key: newKey(), at: new Date().toISOString(),
                 user: sessionStorage.getItem("user") };
  await idb((await outboxStore("readwrite")).add(item));
  await outboxLoad();
  outboxFlush();
}

function body(item) {
  if (item.photo) {
    const form = new FormData();
    form.append("file", item.photo.file, item.photo.name);
    form.append("stage", item.photo.stage);
    return { body: form, headers: {} };
  }
  return { body: JSON.stringify(item.json || {}), headers: { "Content-Type": "application/json" } };
}

async function sendOne(item) {
  // "sent", "refused" (a conflict, shown) or "wait" (no network, server trouble, signed out)
  const { body: payload, headers } = body(item);
  let res;
  try {
    res = await fetch(API + item.path, { method: item.method, body: payload, headers: {
      ...headers, Authorization: `Bearer ${sessionStorage.getItem("token")}`,
      "Accept-Language": LANG, "Idempotency-Key": item.key } });
  } catch (e) { return "wait"; }
  if (res.ok) return "sent";
  if (res.status === 401 || res.status === 429 || res.status >= 500) return "wait";
  if (res.status === 409 && (await res.clone().json().catch(() => ({}))).detail === "request in progress: retry") return "wait";
  const reason = (await res.json().catch(() => ({}))).detail || res.statusText;
  Outbox.conflicts.push({ label: item.label, order: item.order, reason, at: item.at });
  return "refused";
}

async function outboxFlush() {
  if (Outbox.sending || !sessionStorage.getItem("token")) return;
  Outbox.sending = true;
  let sent = 0;
  try {
    const me = sessionStorage.getItem("user");
    let waiting = false, done = new Set();
    while (!waiting) {  // again while writes were added during a pass
      const items = (await idb((await outboxStore("readonly")).getAll()))
        .filter((item) => !done.has(item.seq) && (!item.user || item.user === me));  // not another technician's
      if (!items.length) break;
      for (const item of items) {
        if (await sendOne(item) === "wait") { waiting = true; break; }
        await idb((await outboxStore("readwrite")).delete(item.seq));
        done.add(item.seq);
        sent += 1;
      }
    }
  } finally {
    Outbox.sending = false;
    await outboxLoad();
  }
  if (sent && Outbox.onSent) Outbox.onSent();
}

function renderOutbox() {
  const box = $("outbox");
  if (!box) return;
  box.hidden = !Outbox.pending.length && !Outbox.conflicts.length && navigator.onLine;
  $("offline-note").hidden = navigator.onLine;
  $("outbox-count").textContent = Outbox.pending.length ? t("%(n)s waiting to be sent", { n: Outbox.pending.length }) : "";
  $("outbox-count").dataset.pending = String(Outbox.pending.length);
  $("conflicts").replaceChildren(...Outbox.conflicts.map((c) => el("li", { className: "late", dataset: { order: c.order } },
    `#${c.order} ${c.label} — ${t("Not applied: %(reason)s", { reason: c.reason })}`)));
}

window.addEventListener("online", () => { renderOutbox(); outboxFlush(); });
window.addEventListener("offline", renderOutbox);
setInterval(() => { if (Outbox.pending.length) outboxFlush(); }, RETRY_MS);
