// textback inbox: the live segment counter, live updates that keep focus, and a thread that opens
// at its newest entry. Everything works without it.
"use strict";

// GSM 03.38: the basic set, and the extension set that costs two septets (see sms_gateway/segments.py).
const GSM7_BASIC = new Set(Array.from(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"));
const GSM7_EXTENSION = new Set(Array.from("^{}\\[~]|€\f"));

function countSegments(text) {
  const chars = Array.from(text);
  const ucs2 = chars.some((c) => !GSM7_BASIC.has(c) && !GSM7_EXTENSION.has(c));
  const costs = chars.map((c) => ucs2 ? c.length : (GSM7_EXTENSION.has(c) ? 2 : 1));
  const units = costs.reduce((a, b) => a + b, 0);
  const single = ucs2 ? 70 : 160, perPart = ucs2 ? 67 : 153;
  let segments = 1;
  if (units > single) {
    let used = 0;
    for (const cost of costs) {
      if (used + cost > perPart) { segments += 1; used = 0; }
      used += cost;
    }
  }
  return { encoding: ucs2 ? "UCS-2" : "GSM-7", characters: chars.length, segments };
}

function watchSegments(area) {
  const output = document.getElementById("segments");
  const limit = Number(area.dataset.segments);
  const show = () => {
    const c = countSegments(area.value);
    output.textContent = `${c.characters} characters · ${c.encoding} · ${c.segments} segment${c.segments === 1 ? "" : "s"}` +
      (c.segments > limit ? ` (limit ${limit})` : "");
    output.classList.toggle("over", c.segments > limit);
  };
  area.addEventListener("input", show);
  show();
}

function setUnread(count) {
  const base = document.body.dataset.title;
  document.title = count ? `(${count}) ${base}` : base;
  const badge = document.getElementById("unread");
  if (badge) badge.textContent = count ? String(count) : "";
}

// -- live updates ------------------------------------------------------------------------
// A change re-reads the page and brings every part that can change up to date: the inbox's
// rows; a thread's state (owner, done, snooze, outcome, contact), timeline and forms. Focus
// and the scroll position stay on the same row or field, and changes are announced politely.

function announce(text) {
  const region = document.getElementById("announce");
  if (!region || !text) return;
  region.textContent = "";
  // A fresh text node, a moment later, so a screen reader announces even a repeated message.
  setTimeout(() => { region.textContent = text; }, 50);
}

async function fetchPage() {
  const url = new URL(document.body.dataset.url || window.location.href, window.location.href);
  url.searchParams.delete("said");
  const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
  if (!response.ok) return null;
  return new DOMParser().parseFromString(await response.text(), "text/html");
}

// Where focus is, said so that it can be found again in new markup: an element with an id,
// or an inbox row (by conversation id) and which of its links.
function focusKey() {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  if (el.id) return { id: el.id };
  const row = el.closest("[data-id]");
  if (row) return { row: row.dataset.id, index: Array.from(row.querySelectorAll("a, button")).indexOf(el) };
  return null;
}

function restoreFocus(key, top) {
  if (!key) return;
  let el = null;
  if (key.id) el = document.getElementById(key.id);
  else if (key.row) {
    const row = document.querySelector(`[data-id="${CSS.escape(key.row)}"]`);
    if (row) el = row.querySelectorAll("a, button")[Math.max(0, key.index)] || null;
  }
  if (el && document.activeElement !== el) el.focus({ preventScroll: true });
  // Keep the focused thing where it was on the screen, whatever moved above it.
  if (el && top !== null) window.scrollBy(0, el.getBoundingClientRect().top - top);
}

async function refreshInbox() {
  const fresh = await fetchPage();
  const rows = document.getElementById("rows");
  const newRows = fresh && fresh.getElementById("rows");
  if (!rows || !newRows) return;
  const key = focusKey();
  const focusedTop = key ? document.activeElement.getBoundingClientRect().top : null;
  const scrollY = window.scrollY;
  const before = new Map(Array.from(rows.querySelectorAll("[data-id]"), (r) => [r.dataset.id, r.dataset]));
  const news = [];
  for (const row of newRows.querySelectorAll("[data-id]")) {
    const old = before.get(row.dataset.id);
    if (old && old.owner !== row.dataset.owner) news.push(`${row.dataset.caller} now belongs to ${row.dataset.owner}.`);
    if (row.classList.contains("unread") && (!old || old.last !== row.dataset.last)) {
      const preview = row.querySelector(".preview");
      news.push(`New from ${row.dataset.caller}: ${preview ? preview.textContent : ""}`);
    }
  }
  rows.replaceChildren(...Array.from(newRows.childNodes, (n) => document.importNode(n, true)));
  window.scrollTo(0, scrollY);
  restoreFocus(key, focusedTop);
  announce(news.join(" "));
}

// A form whose fields the user has not touched: it can take the new state and its version.
// A touched one keeps its old version, so sending it is refused rather than applied blindly.
function untouched(form) {
  return Array.from(form.elements).every((el) => {
    if (el.type === "hidden" || el.tagName === "BUTTON") return true;
    if (el.tagName === "SELECT") return Array.from(el.options).every((o) => o.selected === o.defaultSelected);
    return el.value === el.defaultValue;
  });
}

function updateForm(form, fresh) {
  if (!untouched(form)) return;
  for (const el of fresh.elements) {
    if (!el.name) continue;
    const mine = Array.from(form.elements).find((m) => m.name === el.name && m.type === el.type &&
                                                  (m.type !== "submit" || m.value === el.value));
    if (!mine || el.type === "submit" || el.type === "file") continue;  // a chosen file stays
    if (el.tagName === "SELECT") {
      Array.from(mine.options).forEach((o, i) => {
        o.defaultSelected = el.options[i] ? el.options[i].defaultSelected : false;
        o.selected = o.defaultSelected;
      });
    } else if (el.tagName !== "TEXTAREA") {
      mine.defaultValue = el.defaultValue;
      mine.value = el.defaultValue;
    }
  }
}

async function refreshThread() {
  const fresh = await fetchPage();
  if (!fresh) return;
  const key = focusKey();
  const focusedTop = key ? document.activeElement.getBoundingClientRect().top : null;
  const scrollY = window.scrollY;
  const state = document.getElementById("state"), newState = fresh.getElementById("state");
  const timeline = document.getElementById("timeline"), newTimeline = fresh.getElementById("timeline");
  const news = [];
  if (state && newState) {
    if (state.dataset.owner !== newState.dataset.owner) news.push(`The owner is now ${newState.dataset.owner}.`);
    state.replaceWith(document.importNode(newState, true));
  }
  // The intake facts a new text (or someone else's correction) changed.
  const facts = document.getElementById("intake-facts"), newFacts = fresh.getElementById("intake-facts");
  if (facts && newFacts && facts.innerHTML !== newFacts.innerHTML) {
    facts.replaceWith(document.importNode(newFacts, true));
  }
  if (timeline && newTimeline) {
    const count = timeline.querySelectorAll(".text_in").length;
    const texts = newTimeline.querySelectorAll(".text_in");
    for (const entry of Array.from(texts).slice(count)) {
      const body = entry.querySelector(".body");
      news.push(`New text: ${body ? body.textContent : ""}`);
    }
    timeline.replaceChildren(...Array.from(newTimeline.childNodes, (n) => document.importNode(n, true)));
  }
  for (const form of document.querySelectorAll("form[data-form]")) {
    const newForm = fresh.querySelector(`form[data-form="${CSS.escape(form.dataset.form)}"]`);
    if (newForm) updateForm(form, newForm);
  }
  window.scrollTo(0, scrollY);
  restoreFocus(key, focusedTop);
  announce(news.join(" "));
}

function live() {
  const body = document.body;
  if (!body.dataset.live || !window.EventSource) return;
  // The page's own version: a change between rendering and connecting is caught up at once;
  // after a drop, the browser sends Last-Event-ID and the server sends what was missed.
  const events = new EventSource(`/events?since=${encodeURIComponent(body.dataset.version)}`);
  let running = Promise.resolve();
  events.addEventListener("changed", (event) => {
    const change = JSON.parse(event.data);
    setUnread(change.unread);
    // One refresh at a time, in order: two overlapping ones could restore a stale focus.
    if (body.dataset.live === "inbox") {
      running = running.then(refreshInbox, refreshInbox);
    } else if (change.conversations.includes(Number(body.dataset.conversation))) {
      running = running.then(refreshThread, refreshThread);
    }
  });
}

// A thread opens at its newest entry with the reply box in view, older history a scroll up;
// after an action, focus goes to its confirmation (which sits just above the reply box).
function openThread() {
  if (document.body.dataset.live !== "thread") return;
  if (document.body.dataset.url && window.location.pathname !== document.body.dataset.url) {
    // A refused form answers at its action's address; the page is the thread's.
    history.replaceState(null, "", document.body.dataset.url);
  }
  if (window.location.hash) return;
  const reply = document.getElementById("reply");
  if (reply) reply.scrollIntoView({ block: "end" });
  const said = document.getElementById("said");
  if (said) said.focus({ preventScroll: true });
}

document.addEventListener("DOMContentLoaded", () => {
  const area = document.querySelector("textarea[data-segments]");
  if (area) watchSegments(area);
  openThread();
  live();
});
