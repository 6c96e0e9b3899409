"""The homeowner's quiet hours: the rules table, where a number is, DST, and a held text sent
when the window opens."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lab.configs import BUSINESS_NUMBER
from sms_gateway.log import LogGateway
from textback.core.quiet_hours import RULES, judge, locate, rules_for
from textback.store import CallRow, PlannedText
from textback.core.views import inbox_rows, timeline, when
from textback.workers.common import SystemClock

EASTERN, CENTRAL, MOUNTAIN = (ZoneInfo("America/New_York"), ZoneInfo("America/Chicago"),
                              ZoneInfo("America/Denver"))
MIAMI, PENSACOLA, TALLAHASSEE = "+13055550123", "+18504325555", "+18502245555"
DALLAS, EL_PASO, TULSA, MANHATTAN = "+12145550123", "+19155550123", "+19185550123", "+12125550123"


class SetClock(SystemClock):
    """The outbox's clock at a moment the test sets (waits are the wall clock's)."""

    def __init__(self, moment: float):
        self.moment = moment

    def now(self) -> float:
        return self.moment


def at(zone: ZoneInfo, *when: int) -> float:
    return datetime(*when, tzinfo=zone).timestamp()


def local(moment: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(moment, zone).strftime("%a %Y-%m-%d %H:%M %Z")


def test_the_rules_table_names_its_sources():
    table = {rule.name: rule for rule in RULES}
    assert set(table) == {"federal", "Florida", "Oklahoma", "Texas"}
    assert table["federal"].describe() == "federal: every day 08:00-21:00 (47 CFR 64.1200(c)(1))"
    assert table["Florida"].describe() == "Florida: every day 08:00-20:00 (Fla. Stat. 501.616(6)(a))"
    assert table["Oklahoma"].describe() == "Oklahoma: every day 08:00-20:00 (15 Okla. Stat. 775C.1 ff.)"
    assert table["Texas"].describe() == ("Texas: Mon-Sat 09:00-21:00; Sun 12:00-21:00 "
                                         "(Tex. Bus. & Com. Code 301.051)")
    assert [r.name for r in rules_for(locate(MANHATTAN, "UTC"))] == ["federal"]
    assert [r.name for r in rules_for(locate(TULSA, "UTC"))] == ["federal", "Oklahoma"]


@pytest.mark.parametrize("number, zone, moment, allowed, opens", [
    # New York: the federal 8 am-9 pm only
    (MANHATTAN, EASTERN, (2026, 12, 7, 20, 30), True, None),
    (MANHATTAN, EASTERN, (2026, 12, 7, 21, 0), False, "Tue 2026-12-08 08:00 EST"),
    (MANHATTAN, EASTERN, (2026, 12, 8, 7, 59), False, "Tue 2026-12-08 08:00 EST"),
    # Florida and Oklahoma close at 8 pm
    (MIAMI, EASTERN, (2026, 12, 7, 19, 59), True, None),
    (MIAMI, EASTERN, (2026, 12, 7, 21, 30), False, "Tue 2026-12-08 08:00 EST"),
    (TULSA, CENTRAL, (2026, 12, 7, 20, 15), False, "Tue 2026-12-08 08:00 CST"),
    # Texas: 9 am on weekdays and Saturday, noon on Sunday
    (DALLAS, CENTRAL, (2026, 12, 12, 8, 30), False, "Sat 2026-12-12 09:00 CST"),
    (DALLAS, CENTRAL, (2026, 12, 12, 21, 30), False, "Sun 2026-12-13 12:00 CST"),
    (DALLAS, CENTRAL, (2026, 12, 13, 11, 0), False, "Sun 2026-12-13 12:00 CST"),
    (DALLAS, CENTRAL, (2026, 12, 13, 12, 0), True, None),
])
def test_the_window_at_the_homeowners_own_location(number, zone, moment, allowed, opens):
    verdict = judge(number, at(zone, *moment), "America/Los_Angeles")
    assert verdict.allowed is allowed
    assert (local(verdict.until, zone) if verdict.until else None) == opens


def test_area_codes_near_borders_and_overlays():
    # The Florida panhandle's 850: Pensacola's exchanges are Central, Tallahassee's Eastern.
    assert locate(PENSACOLA, "UTC").zones == ("America/Chicago",)
    assert locate(TALLAHASSEE, "UTC").zones == ("America/New_York",)
    evening = at(EASTERN, 2026, 12, 7, 20, 30)  # 7:30 pm in Pensacola, 8:30 pm in Tallahassee
    assert judge(PENSACOLA, evening, "UTC").allowed
    assert not judge(TALLAHASSEE, evening, "UTC").allowed
    # El Paso's 915 is Texas on Mountain time; Dallas's overlays 214, 469, 972 and 945 alike.
    assert (locate(EL_PASO, "UTC").state, locate(EL_PASO, "UTC").zones) == ("TX", ("America/Denver",))
    for overlay in ("+14695550123", "+19725550123", "+19455550123"):
        assert locate(overlay, "UTC") == locate(DALLAS, "UTC")
    assert locate("+17865550123", "UTC").state == "FL"  # Miami's overlay of 305
    assert locate("+15395550123", "UTC").state == "OK"  # Tulsa's overlay of 918
    # Idaho's 208 spans two zones: the window must be open in both.
    idaho = locate("+12085550123", "UTC")
    assert set(idaho.zones) == {"America/Boise", "America/Los_Angeles"}
    verdict = judge("+12085550123", at(MOUNTAIN, 2026, 12, 7, 8, 30), "UTC")
    assert not verdict.allowed and local(verdict.until, MOUNTAIN) == "Mon 2026-12-07 09:00 MST"
    # A toll-free number is nowhere: the business's own zone.
    assert locate("+18005550123", "America/Chicago").zones == ("America/Chicago",)
    assert locate("+18005550123", "America/Chicago").known == "unknown"


def test_dst_changes_keep_the_local_hours():
    # Spring forward (2027-03-14): 8 am EDT is 12:00 UTC, not 13:00.
    verdict = judge(MIAMI, at(EASTERN, 2027, 3, 13, 22, 0), "UTC")
    assert local(verdict.until, EASTERN) == "Sun 2027-03-14 08:00 EDT"
    assert verdict.until == datetime(2027, 3, 14, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    # Fall back (2026-11-01): 8 am EST is 13:00 UTC; 1:30 am happens twice and is closed both times.
    for fold in (0, 1):
        moment = datetime(2026, 11, 1, 1, 30, fold=fold, tzinfo=EASTERN).timestamp()
        verdict = judge(MANHATTAN, moment, "UTC")
        assert not verdict.allowed
        assert verdict.until == datetime(2026, 11, 1, 13, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert "quiet hours" in verdict.explain() and "47 CFR 64.1200(c)(1)" in verdict.explain()


async def test_a_held_text_is_released_when_the_window_opens(offline_daemon, backend_storage):
    evening = at(EASTERN, 2026, 12, 7, 21, 30)
    morning = at(EASTERN, 2026, 12, 8, 8, 0)
    clock = SetClock(evening)  # the outbox's clock reads 9:30 pm in Miami
    daemon = await offline_daemon(clock=clock, send_with=LogGateway(), **backend_storage,
                                  **{"compliance.homeowner_hours": {"missed_call": "hold"}})
    now = time.time()
    await daemon.store.record_call(
        CallRow("q.1", BUSINESS_NUMBER, MIAMI, MIAMI, "", now, None, now, "missed", "no_answer",
                "missed_call_text"), PlannedText("dana", "Sorry we missed you", now))
    [item] = await daemon.store.due(now + 1)
    assert await daemon.store.claim_all([item])
    await daemon.outbox.send(item)
    [row] = await daemon.store._all("SELECT o.state, o.due_at, o.first_due_at, o.held_until,"
                                    " o.attempts, m.status, m.error FROM outbox o"
                                    " JOIN messages m ON m.id = o.message_id")
    assert (row["state"], row["due_at"], row["first_due_at"], row["held_until"], row["attempts"]) \
        == ("pending", morning, morning, morning, 0)
    assert row["status"] == "held" and row["error"].startswith("until Tue 2026-12-08 08:00 EST")
    assert "Florida" in row["error"]
    conversation = (await daemon.store.conversation_for(MIAMI, BUSINESS_NUMBER))["id"]
    [shown] = [e for e in timeline(daemon.config, await daemon.store.thread(conversation))
               if e.kind == "text_out"]  # the inbox's thread page
    assert shown.detail.startswith("held: until Tue 2026-12-08 08:00 EST")
    [listed] = inbox_rows(daemon.config, await daemon.store.inbox_page("all", now), now)
    assert listed.held_until == when(morning, daemon.config.business.timezone)
    assert await daemon.store.due(morning - 1) == []
    clock.moment = morning
    [item] = await daemon.store.due(morning)
    assert await daemon.store.claim_all([item])
    await daemon.outbox.send(item)
    [row] = await daemon.store._all("SELECT status, error, gateway FROM messages")
    assert (row["status"], row["error"], row["gateway"]) == ("sent", "", "log")
    [listed] = inbox_rows(daemon.config, await daemon.store.inbox_page("all", now), now)
    assert listed.held_until == ""
    facts = [(r["fact"], r["kind"]) for r in await daemon.store.consent_record(MIAMI)]
    assert facts == [("call", ""), ("text_queued", "auto"), ("text_held", "auto"),
                     ("text_sent", "auto")]


async def test_send_is_the_default_and_replies_to_keywords_always_go(offline_daemon):
    daemon = await offline_daemon(clock=SetClock(at(EASTERN, 2026, 12, 7, 23, 0)),
                                  send_with=LogGateway(),
                                  **{"compliance.homeowner_hours": {"missed_call": "hold",
                                                                    "owner_reply": "hold"}})
    assert daemon.config.compliance.homeowner_hours.policy_for("help") == "send"
    default = (await offline_daemon()).config.compliance.homeowner_hours
    assert default.policy_for("auto") == "send" and default.policy_for("owner") == "send"
    now = time.time()
    await daemon.store.record_call(CallRow("q.2", BUSINESS_NUMBER, MIAMI, MIAMI, "", now, None,
                                           now, "missed", "no_answer", "x"), owner_id="dana")
    conversation = (await daemon.store.conversation_for(MIAMI, BUSINESS_NUMBER))["id"]
    await daemon.store.queue_reply(conversation, BUSINESS_NUMBER, MIAMI, "Help", "help",
                                   channel="sms")
    await daemon.store.queue_reply(conversation, BUSINESS_NUMBER, MIAMI, "Hi", "owner",
                                   channel="cli")
    for item in await daemon.store.due(now + 1):
        assert await daemon.store.claim_all([item])
        await daemon.outbox.send(item)
    statuses = await daemon.store._all("SELECT kind, status FROM messages ORDER BY id")
    assert [(r["kind"], r["status"]) for r in statuses] == [("help", "sent"), ("owner", "held")]


def test_explain_shows_the_homeowners_hours_and_the_rule(tmp_path):
    from click.testing import CliRunner

    from lab.configs import base_config, write_config
    from textback.cli import main

    def explain(policy: str) -> str:
        path = write_config(tmp_path, base_config(tmp_path, **{
            "compliance.homeowner_hours": {"missed_call": policy}, "text.delay_seconds": 0}))
        result = CliRunner().invoke(main, ["explain", "-c", str(path), "--caller", MIAMI,
                                           "--at", "2026-12-07 21:30"])
        assert result.exit_code == 0, result.output
        return next(line for line in result.output.splitlines() if line.startswith("quiet hrs"))

    assert explain("hold") == (
        "quiet hrs  hold: until Tue 2026-12-08 08:00 EST, the end of the homeowner's quiet hours "
        "in FL, America/New_York (from the area code): Florida: every day 08:00-20:00 "
        "(Fla. Stat. 501.616(6)(a))")
    assert explain("send").startswith("quiet hrs  send: sent anyway (missed_call: send)")
