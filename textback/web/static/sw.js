// textback's service worker: the offline page, and owner alerts shown as notifications.
// Every push shows a notification (browsers end subscriptions that get silent pushes), and
// tapping one opens its thread: directly with a session, else through the push's single-use
// sign-in link.
"use strict";

const SHELL = "textback-shell-v1";
const OFFLINE = "/offline";
const SHELL_FILES = [OFFLINE, "/static/app.css", "/icons/icon-192.png"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(SHELL_FILES))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== SHELL).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

// Pages always come from the network (they are one person's, never cached); with no network,
// the offline page.
self.addEventListener("fetch", (event) => {
  if (event.request.mode !== "navigate") return;
  event.respondWith(fetch(event.request).catch(() => caches.match(OFFLINE)));
});

// What a push may make the phone show: text only (a notification is never markup).
function notificationOf(data) {
  const title = (data && typeof data.title === "string" && data.title) || "New in your inbox";
  const body = (data && typeof data.body === "string") ? data.body : "";
  return [title, {
    body,
    tag: (data && typeof data.tag === "string") ? data.tag : undefined,
    renotify: true,
    icon: "/icons/icon-192.png",
    data: { thread: data && data.thread, link: data && data.link },
  }];
}

self.addEventListener("push", (event) => {
  let data = null;
  try { data = event.data ? event.data.json() : null; } catch (error) { data = null; }
  const [title, options] = notificationOf(data);
  event.waitUntil(self.registration.showNotification(title, options));
});

// Where a tap goes: the thread on this site (only a /c/<id> path), or the inbox; through the
// signed link (only one on this site's /link/) when this browser has no session.
async function targetOf(data) {
  const thread = (data && /^\/c\/\d{1,12}$/.test(data.thread || "")) ? data.thread : "/";
  const threadUrl = new URL(thread, self.location.origin).href;
  let link = null;
  try {
    const parsed = new URL(data && data.link);
    if (parsed.origin === self.location.origin && parsed.pathname.startsWith("/link/")) link = parsed.href;
  } catch (error) { link = null; }
  if (!link) return threadUrl;
  try {
    // Signed in: the thread answers 200; without a session it redirects to sign-in.
    const probe = await fetch(threadUrl, { credentials: "same-origin", redirect: "manual" });
    return probe.ok ? threadUrl : link;
  } catch (error) {
    return link;
  }
}
self.targetOf = targetOf;  // for the browser tests, which cannot tap a notification

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const target = await targetOf(event.notification.data);
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const client of windows) {
      if (new URL(client.url).origin === self.location.origin && "navigate" in client) {
        await client.focus();
        return client.navigate(target);
      }
    }
    return self.clients.openWindow(target);
  })());
});
