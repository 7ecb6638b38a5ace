// The technician's page offline (issue 23): a service worker served at /sw.js (scope /) that
// keeps the page, its scripts, styles and strings (installed with the worker), and the last
// answers the technician's page had from the API for its open orders, their procedures and
// photos (network first; the cached answer when there is no network). Only the technician's
// page's requests are kept, and signing out forgets them. Writes are never touched here: the
// page queues them itself (offline.js) and sends them with idempotency keys.
"use strict";
const VERSION = "v1";
const SHELL = `facility-shell-${VERSION}`;
const DATA = `facility-data-${VERSION}`;
const SHELL_URLS = ["/tech", "/static/common.js", "/static/tech.js", "/static/photos.js",
  "/static/offline.js", "/static/app.css", "/static/icon.svg", "/manifest.webmanifest",
  "/i18n/zh-CN.json", "/i18n/en.json"];
const KEPT_API = [/^\/api\/v1\/me$/, /^\/api\/v1\/work-orders(\/\d+(\/attachments)?)?$/,
  /^\/api\/v1\/attachments\/\d+$/];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(SHELL_URLS)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (![SHELL, DATA].includes(name)) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "signed-out") event.waitUntil(caches.delete(DATA));
});

async function networkFirst(request, cacheName, key) {
  const cache = await caches.open(cacheName);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(key || request, response.clone());
    return response;
  } catch (e) {
    const kept = await cache.match(key || request);
    if (kept) return kept;
    return new Response(JSON.stringify({ detail: "offline" }), {
      status: 503, headers: { "Content-Type": "application/json" } });
  }
}

async function fromTechPage(clientId) {
  const client = clientId ? await self.clients.get(clientId) : null;
  return Boolean(client) && new URL(client.url).pathname.startsWith("/tech");
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate" && url.pathname === "/tech") {
    event.respondWith(networkFirst(request, SHELL, "/tech"));
  } else if (SHELL_URLS.includes(url.pathname)) {
    event.respondWith(networkFirst(request, SHELL, url.pathname));
  } else if (KEPT_API.some((re) => re.test(url.pathname))) {
    event.respondWith((async () => (await fromTechPage(event.clientId)
      ? networkFirst(request, DATA) : fetch(request)))());
  }
});
