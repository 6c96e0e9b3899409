// textback inbox: the live segment counter and live updates. Everything works without it.
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

async function refresh(targetId, part) {
  const url = new URL(window.location.href);
  url.searchParams.set("part", part);
  url.searchParams.delete("said");
  const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
  if (response.ok) document.getElementById(targetId).innerHTML = await response.text();
}

function live() {
  const body = document.body;
  if (!body.dataset.live || !window.EventSource) return;
  // The page's own version: a change between rendering and connecting is caught up at once;
  // after a drop, the browser sends Last-Event-ID and the server sends what was missed.
  const events = new EventSource(`/events?since=${encodeURIComponent(body.dataset.version)}`);
  events.addEventListener("changed", (event) => {
    const change = JSON.parse(event.data);
    setUnread(change.unread);
    if (body.dataset.live === "inbox") {
      refresh("rows", "rows");
    } else if (change.conversations.includes(Number(body.dataset.conversation))) {
      refresh("timeline", "timeline");
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const area = document.querySelector("textarea[data-segments]");
  if (area) watchSegments(area);
  live();
});
