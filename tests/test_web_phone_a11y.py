"""The inbox in Chromium as two owners at once, on a 390x844 phone, with a keyboard only, and
under axe-core: a stale page cannot undo another owner's change, live updates keep focus and are
announced, every page fits a phone, and no page has a WCAG 2.1 A/AA violation."""

from __future__ import annotations

import json
import time

from lab.configs import BUSINESS_NUMBER
from lab.harness import eventually
from textback.core.delivery import OWNER_REPLY
from textback.config import load
from textback.signin import LinkClaim, make_link_token
from textback.web.links import LINK_KEY
from textback.store import CallRow, PlannedText
from textback.core import views
from tests.browser import (ARTIFACTS, DESKTOP, LAYOUT_PROBLEMS, PHONE, axe_violations, chromium,
                           contact_sheet, page_of, screenshot, sign_in)
from tests.web_helpers import (BASE, OWNERS, PASSWORDS, homeowner_writes, set_passwords, web_config,
                               web_daemon)

CAROL = {"id": "carol", "name": "Carol Diaz", "email": "carol@example.com"}
CALLER = "+12125550123"
# Every page a signed-in owner sees, then the other inbox views, and the pages anyone may open:
# sign-in, an alert's link, the consent page, offline. The README's pictures are all but the views.
PAGES = (("inbox", "/?view=all"), ("thread", "/c/{id}"), ("calls", "/calls"),
         ("scorecard", "/scorecard"), ("admin", "/admin"), ("settings", "/settings"))
MORE_VIEWS = (("inbox-mine", "/?view=mine"), ("inbox-unassigned", "/?view=unassigned"),
              ("inbox-waiting", "/?view=waiting"), ("inbox-snoozed", "/?view=snoozed"),
              ("inbox-done", "/?view=done"))
PUBLIC_PAGES = (("signin", "/signin"), ("link", "/link/{token}"), ("consent", "/consent"),
                ("offline", "/offline"))


def three_owners(tmp_path):
    return web_config(tmp_path, owners=[*OWNERS, CAROL], numbers=[{
        "number": BUSINESS_NUMBER, "owner": "dana", "label": "Main line"}])


async def a_long_thread(daemon) -> int:
    """A missed call that was texted, then 16 texts from the homeowner and 15 replies (31
    messages), each text alerting Dana by email; booked by Dana. Returns the conversation id."""
    now = time.time()
    await daemon.store.record_call(CallRow(
        "1.1", BUSINESS_NUMBER, CALLER, CALLER, "Pat O'Brien", now - 900, None, now - 890,
        "missed", "no_answer", "missed_call_text"),
        PlannedText("dana", "Hi, this is Acme Remodeling. Sorry we missed your call!", now - 880))
    [row] = await daemon.store.inbox()
    for n in range(16):
        await homeowner_writes(daemon, f"Question {n + 1}: can you do the kitchen floor too?",
                               sender=CALLER)
        if n < 14:
            await daemon.store.queue_reply(row["id"], BUSINESS_NUMBER, CALLER,
                                           f"Answer {n + 1}: yes, we can.", OWNER_REPLY, author="dana")
    await daemon.store.record_outcome(row["id"], "booked", None, "web:dana")
    return row["id"]


async def alerts_sent(daemon, conversation_id: int, count: int) -> None:
    async def sent():
        alerts = (await daemon.store.thread(conversation_id))["alerts"]
        return sum(a["state"] == "sent" for a in alerts) >= count
    await eventually(sent, 30, f"{count} owner alerts sent")


async def test_a_stale_page_cannot_undo_another_owners_assignment(tmp_path):
    """Dana has the thread open; Sam gives it to Carol. Dana's live page shows Carol everywhere
    and announces it; a page without live updates that still shows Dana is refused, saying what
    changed, and the assignment stays Carol's."""
    path = three_owners(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser, \
            page_of(browser) as dana, page_of(browser) as sam:
        await homeowner_writes(daemon, "Can someone call me back?", sender=CALLER)
        [row] = await daemon.store.inbox()
        assert row["owner_id"] == "dana"
        await sign_in(dana, BASE, "dana", PASSWORDS["dana"])
        await sign_in(sam, BASE, "sam", PASSWORDS["sam"])
        await dana.goto(f"{BASE}/c/{row['id']}")
        await sam.goto(f"{BASE}/c/{row['id']}")
        assert await dana.input_value("#assign-owner") == "dana"
        await sam.select_option("#assign-owner", "carol")
        await sam.click("form[data-form=assign] button")
        await sam.wait_for_selector("#said")
        # Dana's live page: the header, the Assign control and the announcement follow.
        await dana.wait_for_function(
            "() => document.querySelector('#state .owner').textContent === 'Carol Diaz'", timeout=10000)
        assert await dana.input_value("#assign-owner") == "carol"
        assert "Sam gave it to Carol Diaz" in await dana.inner_text("#timeline")
        await dana.wait_for_function(
            "() => document.getElementById('announce').textContent.includes('Carol Diaz')", timeout=5000)
        # A form she had already changed when a change arrives keeps the version she saw, so
        # it is refused rather than applied over the change she had not seen.
        await dana.select_option("#assign-owner", "dana")
        await daemon.store.record_outcome(row["id"], "booked", None, "web:sam")
        await dana.wait_for_selector("#state .outcome", timeout=10000)
        assert await dana.input_value("#assign-owner") == "dana"  # her choice is kept
        await dana.click("form[data-form=assign] button")
        await dana.wait_for_selector("#said")
        assert await dana.inner_text("#said") == (
            "This changed while you were looking: it was marked booked. Nothing of yours was "
            "applied; here it is as it is now.")
        assert await dana.evaluate("() => document.activeElement.id") == "said"
        assert dana.url == f"{BASE}/c/{row['id']}"  # the thread's address, not the action's
        assert (await daemon.store.conversation(row["id"]))["owner_id"] == "carol"
        # A page that did not follow (JavaScript off) still shows Carol; its Assign is refused.
        context = await browser.new_context(viewport=DESKTOP, java_script_enabled=False)
        stale = await context.new_page()
        await sign_in(stale, BASE, "dana", PASSWORDS["dana"])
        await stale.goto(f"{BASE}/c/{row['id']}")
        await sam.select_option("#assign-owner", "sam")
        await sam.click("form[data-form=assign] button")
        await sam.wait_for_selector("#said")
        assert (await daemon.store.conversation(row["id"]))["owner_id"] == "sam"
        assert "Sam Ortiz" not in await stale.inner_text("#state")  # it still shows Carol
        await stale.select_option("#assign-owner", "dana")
        async with stale.expect_response(f"{BASE}/c/{row['id']}/assign") as answer:
            await stale.click("form[data-form=assign] button")
        assert (await answer.value).status == 409
        notice = await stale.inner_text("#said")
        assert notice.startswith("This changed while you were looking: Sam Ortiz owns it now")
        assert (await daemon.store.conversation(row["id"]))["owner_id"] == "sam"
        # The refusal shows the page as it is now: sending again is a choice made knowingly.
        assert "Sam Ortiz" in await stale.inner_text("#state")
        await stale.select_option("#assign-owner", "dana")
        await stale.click("form[data-form=assign] button")
        assert "Assigned." in await stale.inner_text("#said")
        assert (await daemon.store.conversation(row["id"]))["owner_id"] == "dana"
        await context.close()
        # The rest of the live page follows too: the contact's name in the header and in the
        # Contact form, a snooze, then done.
        await daemon.store.set_contact_name(row["id"], "Pat O'Brien")
        await daemon.store.snooze(row["id"], time.time() + 86400)
        await dana.wait_for_function(
            "() => document.querySelector('#state .meta').textContent.includes('snoozed until')",
            timeout=10000)
        assert "Pat O'Brien" in await dana.inner_text("#state h1")
        assert await dana.input_value("form[data-form=contact] input[name=name]") == "Pat O'Brien"
        await daemon.store.mark_done(row["id"])
        await dana.wait_for_function(
            "() => / · done/.test(document.querySelector('#state .meta').textContent)", timeout=10000)


async def test_a_live_refresh_keeps_focus_and_scroll_and_announces_what_changed(tmp_path):
    path = three_owners(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser, \
            page_of(browser, PHONE) as dana:
        for n in range(12):
            await homeowner_writes(daemon, f"Hello from caller {n}", sender=f"+1212555{n:04d}")
        rows = await daemon.store.inbox()
        await sign_in(dana, BASE, "dana", PASSWORDS["dana"])
        await dana.goto(f"{BASE}/?view=all")
        third = dana.locator(".row a").nth(2)
        third_id = await dana.locator(".row").nth(2).get_attribute("data-id")
        await third.focus()
        await dana.evaluate("() => window.scrollTo(0, 300)")
        top = await third.evaluate("(a) => a.getBoundingClientRect().top")
        # Another owner's change to another conversation refreshes the list.
        other = next(r for r in rows if str(r["id"]) != third_id)
        await daemon.store.assign(other["id"], "carol", "assigned by sam (web)")
        await dana.wait_for_function(
            "(id) => document.querySelector(`.row[data-id='${id}'] .owner`).textContent === 'Carol Diaz'",
            arg=str(other["id"]), timeout=10000)
        assert await dana.evaluate("() => document.activeElement.closest('.row').dataset.id") == third_id
        assert await dana.evaluate("() => document.activeElement.tagName") == "A"
        assert abs(await third.evaluate("(a) => a.getBoundingClientRect().top") - top) < 2
        await dana.wait_for_function(
            "() => document.getElementById('announce').textContent.includes('now belongs to Carol Diaz')",
            timeout=5000)
        # A new text is announced too, and focus stays.
        await homeowner_writes(daemon, "Are you there?", sender="+12125550005")
        await dana.wait_for_function(
            "() => document.getElementById('announce').textContent.includes('Are you there?')",
            timeout=10000)
        assert await dana.evaluate("() => document.activeElement.closest('.row').dataset.id") == third_id
        # In a thread: a note being typed keeps its text and focus while a text arrives.
        await dana.goto(f"{BASE}/c/{rows[0]['id']}")
        await dana.fill("#note-body", "Gate code is 1234")
        await dana.focus("#note-body")
        await homeowner_writes(daemon, "Also the porch, please", sender=rows[0]["caller"])
        await dana.wait_for_selector("#timeline >> text=Also the porch, please", timeout=10000)
        await dana.wait_for_function(
            "() => document.getElementById('announce').textContent.includes('Also the porch')",
            timeout=5000)
        assert await dana.evaluate("() => document.activeElement.id") == "note-body"
        assert await dana.input_value("#note-body") == "Gate code is 1234"


# Runs in the page: the focused element's ring, and its contrast against what is behind it
# (the ring is drawn outside the element, over its nearest ancestor with a background).
FOCUS_RING = """() => {
  const channels = (css) => css.match(/[\\d.]+/g).map(Number);
  const luminance = (css) => {
    const [r, g, b] = channels(css).slice(0, 3).map((v) => {
      v = v / 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const el = document.activeElement;
  if (!el || el === document.body) return null;  // Tab went past the last control
  let behind = el.parentElement;
  while (behind && channels(getComputedStyle(behind).backgroundColor)[3] === 0)
    behind = behind.parentElement;
  const background = behind ? getComputedStyle(behind).backgroundColor : 'rgb(255, 255, 255)';
  const ring = getComputedStyle(el);
  const [x, y] = [luminance(ring.outlineColor), luminance(background)].sort((p, q) => q - p);
  return { element: el.outerHTML.slice(0, 70), style: ring.outlineStyle,
           width: parseFloat(ring.outlineWidth), contrast: (x + 0.05) / (y + 0.05) };
}"""


async def tab_to(page, selector: str, rings: list[dict], presses: int = 80) -> None:
    """Press Tab until the focused element matches `selector` (fails if it never does), noting
    the focus ring of every element on the way."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if ring := await page.evaluate(FOCUS_RING):
            rings.append(ring)
        if await page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


async def test_reply_and_assign_with_the_keyboard_only(tmp_path):
    path = three_owners(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser, page_of(browser) as page:
        await homeowner_writes(daemon, "Do you do decks?", sender=CALLER)
        [row] = await daemon.store.inbox()
        rings: list[dict] = []
        await page.goto(f"{BASE}/signin")
        await tab_to(page, "input[name=account]", rings)
        await page.keyboard.type("dana")
        await page.keyboard.press("Tab")
        await page.keyboard.type(PASSWORDS["dana"])
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#rows")
        await tab_to(page, f".row[data-id='{row['id']}'] a", rings)
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#reply-body")
        await tab_to(page, "#reply-body", rings)
        await page.keyboard.type("Yes, we build decks. Tuesday?")
        await tab_to(page, "form.reply button[type=submit]", rings)
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#said")
        assert await page.evaluate("() => document.activeElement.id") == "said"
        assert "Queued" in await page.inner_text("#said")
        await tab_to(page, "#assign-owner", rings)
        await page.keyboard.press("ArrowDown")  # Dana -> Sam
        assert await page.input_value("#assign-owner") == "sam"
        await tab_to(page, "form[data-form=assign] button", rings)
        await page.keyboard.press("Enter")
        await page.wait_for_function("() => document.activeElement.id === 'said'", timeout=5000)
        assert await page.inner_text("#said") == "Assigned."
        assert (await daemon.store.conversation(row["id"]))["owner_id"] == "sam"
        [reply] = [m for m in (await daemon.store.thread(row["id"]))["messages"] if m["kind"] == "owner"]
        assert reply["body"] == "Yes, we build decks. Tuesday?" and reply["author"] == "dana"
        # Every control Tab reached on the way showed an explicit, strong focus ring, not the
        # browser's default: solid, at least 3 px, 3:1 against what is behind it (WCAG 1.4.11).
        assert len(rings) > 10
        weak = [r for r in rings if r["style"] != "solid" or r["width"] < 3 or r["contrast"] < 3]
        assert weak == [], weak


# Runs in the page: the phone-specific measurements, beyond LAYOUT_PROBLEMS.
PHONE_CHECKS = """() => {
  const luminance = (rgb) => {
    const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map((v) => {
      v = Number(v) / 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
                               return (x + 0.05) / (y + 0.05); };
  const header = document.querySelector('header.top');
  const fields = Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'));
  const words = [];
  for (const cell of document.querySelectorAll('.figures th, .figures td, header a, header button, .views a, summary')) {
    for (const node of cell.childNodes) {
      if (node.nodeType !== Node.TEXT_NODE) continue;
      for (const m of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
        if (range.getClientRects().length > 1) words.push(m[0]);
      }
    }
  }
  const chart = Array.from(document.querySelectorAll('svg.chart text'), (t) => {
    const svg = t.ownerSVGElement;
    const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    return parseFloat(getComputedStyle(t).fontSize) * scale;
  });
  const boxes = Array.from(document.querySelectorAll('svg.chart text'), (t) => t.getBoundingClientRect());
  const overlaps = boxes.filter((a, i) => boxes.some((b, j) => j !== i && a.left < b.right &&
    b.left < a.right && a.top < b.bottom && b.top < a.bottom)).length;
  // Header links and buttons whose words overflow their box or that overlap another.
  const controls = Array.from(document.querySelectorAll('header.top a, header.top button'))
    .filter((e) => e.getClientRects().length);
  const places = controls.map((e) => e.getBoundingClientRect());
  const crowded = controls.filter((e, i) => e.scrollWidth > e.clientWidth + 1 || places.some((b, j) =>
    j !== i && places[i].left < b.right - 0.5 && b.left < places[i].right - 0.5 &&
    places[i].top < b.bottom && b.top < places[i].bottom)).map((e) => e.textContent.trim());
  return {
    crowded, chartOverlaps: overlaps, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    headerHeight: header ? header.getBoundingClientRect().height : 0,
    h1: document.querySelectorAll('h1').length,
    weakBorders: fields.filter((f) => contrast(getComputedStyle(f).borderTopColor, 'rgb(255, 255, 255)') < 3)
                       .map((f) => f.name),
    brokenWords: words, smallestChartText: chart.length ? Math.min(...chart) : null,
    tabsCut: Array.from(document.querySelectorAll('.views a')).filter((a) => {
      const box = a.getBoundingClientRect(); return box.right > window.innerWidth || box.left < 0; })
      .map((a) => a.textContent),
  };
}"""


async def test_every_page_fits_a_phone_reads_plainly_passes_axe_and_is_photographed(tmp_path, smtp_sink):
    path = three_owners(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser:
        cid = await a_long_thread(daemon)
        await alerts_sent(daemon, cid, 16)
        await daemon.store.record_outcome(cid, "won", 82000, "web:dana")

        async def replies_sent():
            return all(m["status"] == "sent" for m in (await daemon.store.thread(cid))["messages"]
                       if m["direction"] == "out")
        await eventually(replies_sent, 30, "every reply sent")
        await homeowner_writes(daemon, "One more thing: the porch?", sender=CALLER)
        await alerts_sent(daemon, cid, 17)
        widths = {}
        sheets: dict[str, dict[str, bytes]] = {"phone": {}, "desktop": {}}
        link_key = await daemon.store.web_key(LINK_KEY)

        async def check(page, name: str, size: str, url: str) -> None:
            """The page at this size: axe finds nothing, one <h1>, field borders of 3:1, and on a
            phone nothing wider than the screen, 44 px targets, one header row, whole words."""
            await page.goto(BASE + url)
            if name == "thread":  # it opens at the newest entry
                await page.wait_for_function("() => window.scrollY > 0")
            if name in dict(PUBLIC_PAGES + PAGES):
                sheets[size][name] = await page.screenshot()
            measured = await page.evaluate(PHONE_CHECKS)
            assert await axe_violations(page) == [], (name, size)
            assert measured["h1"] == 1, (name, size)
            assert measured["weakBorders"] == [], (name, size)
            assert measured["crowded"] == [], (name, size)
            await screenshot(page, f"{name}-{size}")
            if size == "desktop":
                return
            widths[name] = measured["scrollWidth"]
            assert await page.evaluate(LAYOUT_PROBLEMS) == [], name
            assert measured["scrollWidth"] <= measured["innerWidth"] == 390, name
            assert measured["headerHeight"] <= 50, (name, measured)  # one row
            assert measured["tabsCut"] == [], name
            assert measured["brokenWords"] == [], name
            if name == "scorecard":
                assert measured["smallestChartText"] >= 14, measured
                assert measured["chartOverlaps"] == 0, measured

        for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
            async with page_of(browser, viewport) as page:
                token = make_link_token(link_key, LinkClaim("dana", cid, time.time() + 600, size))
                for name, url in PUBLIC_PAGES:
                    await check(page, name, size, url.format(token=token))
                await sign_in(page, BASE, "dana", PASSWORDS["dana"])
                await page.wait_for_selector("#rows")
                for name, url in PAGES + MORE_VIEWS:
                    await check(page, name, size, url.format(id=cid))
                if size == "phone":
                    await the_thread_on_a_phone(page, cid)
                    await the_calls_page_speaks_plainly(page)
                # axe is really running: a field without a label on this page is caught.
                await page.evaluate("() => document.querySelector('main').append("
                                    "Object.assign(document.createElement('input'), {type: 'text'}))")
                assert any(v.startswith("label ") for v in await axe_violations(page)), size
        assert set(widths) == {name for name, _ in PUBLIC_PAGES + PAGES + MORE_VIEWS}
        (ARTIFACTS / "phone-widths.json").write_text(json.dumps(widths, indent=1) + "\n")
        await contact_sheet(browser, {f"{n} at 390 px": png for n, png in sheets["phone"].items()},
                            "pages-phone", 234, 5)
        await contact_sheet(browser, {f"{n} at 1280 px": png for n, png in sheets["desktop"].items()},
                            "pages-desktop", 400, 3)


async def the_thread_on_a_phone(page, cid: int) -> None:
    await page.goto(f"{BASE}/c/{cid}")
    await page.wait_for_function("() => window.scrollY > 0")
    newest = await page.evaluate("""() => {
      const inView = (el) => { const b = el.getBoundingClientRect();
                               return b.top >= 0 && b.bottom <= window.innerHeight; };
      return { newest: inView(document.getElementById('newest')),
               reply: inView(document.getElementById('reply-body')),
               oldestAbove: document.querySelector('.timeline li').getBoundingClientRect().bottom < 0 };
    }""")
    assert newest == {"newest": True, "reply": True, "oldestAbove": True}, newest
    await screenshot(page, "thread-phone-opened", full_page=False)  # what the phone shows first
    assert "One more thing: the porch?" in await page.inner_text("#newest")
    timeline = await page.inner_text("#timeline")
    assert "Missed call: nobody picked up. We texted them." in timeline
    assert "Dana marked it booked" in timeline and "Dana marked it won ($82,000)" in timeline
    assert timeline.count("alerted Dana by email") == 17
    assert await page.locator(".entry.alert").count() == 0  # no alert failed: no alert rows
    assert "decision" not in timeline and "web:dana" not in timeline and "Owner alert" not in timeline
    # "Contact" looks like a control: a bordered button with a marker.
    summary = await page.evaluate("""() => { const s = document.querySelector('summary');
      return [parseFloat(getComputedStyle(s).borderTopWidth), getComputedStyle(s, '::before').content]; }""")
    assert summary[0] >= 1 and summary[1] == '"▸"'


async def the_calls_page_speaks_plainly(page) -> None:
    await page.goto(f"{BASE}/calls")
    assert await page.locator("input[name=reason], input[name=decision]").count() == 0
    await page.select_option("select[name=reason]", label="nobody picked up")
    await page.select_option("select[name=decision]", label="We texted them.")
    await page.click("form.filters button")
    await page.wait_for_url("**/calls?**reason=no_answer**")
    assert "Missed call: nobody picked up. We texted them." in await page.inner_text("main")


def test_owner_alerts_fold_into_their_text_and_only_a_failed_one_is_a_row(tmp_path):
    config = load(three_owners(tmp_path)).config
    text = {"id": 7, "conversation_id": 1, "direction": "in", "body": "Hello?", "created_at": 100.0, "sent_at": None}
    alert = {"message_id": 7, "owner_id": "dana", "recipient": "dana@example.com",
             "created_at": 101.0, "sent_at": 102.0, "last_error": ""}
    thread = {"calls": [], "messages": [text], "assignments": [], "outcomes": [], "notes": [],
              "alerts": [alert | {"state": "sent"}, alert | {"owner_id": "sam", "state": "pending",
                                                             "recipient": "sam@example.com"}]}
    [entry] = views.timeline(config, thread)
    assert entry.detail == "alerted Dana by email; alerting Sam by email"
    thread["alerts"] = [alert | {"state": "failed", "last_error": "550 mailbox unavailable"}]
    entry, failed = views.timeline(config, thread)
    assert (failed.kind, failed.title, failed.detail) == (
        "alert", "Could not alert Dana by email", "550 mailbox unavailable")
    assert entry.kind == "text_in" and entry.detail == ""
