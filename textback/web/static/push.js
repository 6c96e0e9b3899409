// textback inbox as an app: registers the service worker (offline page, notifications) and offers
// to turn on notifications on this device. Subscribing is a CSRF-checked POST of the browser's
// subscription; the page works the same without any of it.
"use strict";

function csrfToken() {
  const field = document.querySelector("input[name=csrf]");
  return field ? field.value : "";
}

function base64UrlToBytes(text) {
  const padded = (text + "=".repeat((4 - text.length % 4) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function bytesToBase64Url(buffer) {
  return btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// iOS and iPadOS (16.4 and later) deliver push only to a web app opened from the Home Screen.
function isIos() {
  return /iP(hone|ad|od)/.test(navigator.userAgent) ||
    (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);
}

function isInstalled() {
  return window.matchMedia("(display-mode: standalone)").matches || navigator.standalone === true;
}

async function post(path, fields) {
  const form = new FormData();
  form.append("csrf", csrfToken());
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  const response = await fetch(path, { method: "POST", body: form, credentials: "same-origin" });
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

async function subscribe(registration, key) {
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true, applicationServerKey: base64UrlToBytes(key) });
  await post("/push/subscribe", {
    endpoint: subscription.endpoint,
    p256dh: bytesToBase64Url(subscription.getKey("p256dh")),
    auth: bytesToBase64Url(subscription.getKey("auth")) });
}

async function offerPush(registration) {
  const offer = document.getElementById("push-offer");
  if (!offer) return;  // not signed in
  const why = document.getElementById("push-why");
  const button = document.getElementById("push-on");
  const show = (text, withButton) => {
    why.textContent = text;
    button.hidden = !withButton;
    offer.hidden = false;
  };
  if (isIos() && !isInstalled()) {
    show("To get notifications on this iPhone or iPad, add the inbox to your Home Screen " +
         "(Share, then Add to Home Screen; iOS 16.4 or later) and open it from there.", false);
    return;
  }
  if (!("PushManager" in window) || !("Notification" in window)) return;
  const existing = await registration.pushManager.getSubscription();
  const query = existing ? `?endpoint=${encodeURIComponent(existing.endpoint)}` : "";
  const answer = await fetch(`/push/key${query}`, { credentials: "same-origin" });
  if (!answer.ok) return;
  const { key, subscribed } = await answer.json();
  if (existing && subscribed) return;  // this device already notifies this owner
  if (existing && Notification.permission === "granted") {
    // Known to the browser but not to textback (removed on the settings page, another owner,
    // a new key): subscribe again, quietly.
    try {
      await existing.unsubscribe();
      await subscribe(registration, key);
      return;
    } catch (error) { /* fall through to the offer */ }
  }
  if (Notification.permission === "denied") {
    show("Notifications are blocked for this site in the browser's settings.", false);
    return;
  }
  show("Get a notification on this device when a homeowner replies.", true);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (await Notification.requestPermission() !== "granted") {
        show("Notifications were not allowed.", false);
        return;
      }
      await subscribe(registration, key);
      show("Notifications are on for this device.", false);
    } catch (error) {
      show(`Notifications could not be turned on: ${error.message}`, false);
    } finally {
      button.disabled = false;
    }
  });
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" })
    .then((registration) => navigator.serviceWorker.ready.then(() => offerPush(registration)))
    .catch(() => { /* no worker: the inbox still works, without notifications */ });
}
