"""Incidents: what opens one (pure), and the admin's two emails per incident from a real daemon."""

from __future__ import annotations

import asyncio
import math
import socket
import time

import pytest

from lab.configs import ALWAYS_OPEN, base_config, write_config
from tests.providers.common import serving
from tests.test_outbox_outage import MINUTE, FastClock, Provider, missed_call, outbox  # noqa: F401
from lab.harness import SMTP_SINK_PORT, eventually, in_process, start_smtp_sink
from textback import daemon as daemon_module
from textback.config import ConfigError, IncidentsConfig, load
from textback.daemon import Daemon
from textback.core.incidents import (Key, Observed, Opened, PbxView, active, judge,
                                     opened_mail, recovered_mail, seen_on)

NOW = 1_800_000_000.0
HELD = PbxView(listened=True, held_since=NOW - 3600, call_event_at=NOW - 1800)
CALM = Observed(now=NOW, ami_down_since={}, quiet_open_hours={"": 0.5},
                gateway_failures_in_row=0, gateway_error="", expired=None, mail_error=None,
                reply_listener_error=None, routing_error=None, pbxs={"": HELD})


def seen(**changes) -> Observed:
    return Observed(**{**CALM.__dict__, **changes})


def test_nothing_is_wrong_when_all_is_calm():
    assert active(CALM, IncidentsConfig()) == {}


@pytest.mark.parametrize("changes, kind, summary", [
    ({"ami_down_since": {"": NOW - 301}}, "ami_down", "not logged in to AMI for 5 minutes"),
    ({"quiet_open_hours": {"": 4.5}}, "no_call_events", "no call event from AMI for 4.5 hours"),
    ({"gateway_failures_in_row": 5, "gateway_error": "HTTP 503"}, "gateway_failing",
     "5 sends in a row failed; the last: HTTP 503"),
    ({"expired": "the text to +12125550123 expired unsent"}, "texts_expiring", "expired unsent"),
    ({"mail_error": "SMTPRecipientsRefused"}, "mail_refused", "SMTPRecipientsRefused"),
    ({"reply_listener_error": "cannot listen on 0.0.0.0:25"}, "reply_listener", "0.0.0.0:25"),
    ({"routing_error": "cannot write /x/routing.json"}, "routing_table", "routing.json"),
    ({"ami_behind_at": {"": NOW - 60}}, "ami_behind", "calls are being recorded late"),
    ({"calls_late_at": {"": NOW - 60}}, "ami_behind",
     "calls were read on time but committed more than 5 s after they ended"),
    ({"database_down_since": NOW - 301, "database_error": "OperationalError: refused"},
     "database_down", "the database has not answered for 5 minutes: OperationalError: refused"),
])
def test_each_condition_opens_its_incident(changes, kind, summary):
    found = active(seen(**changes), IncidentsConfig())
    assert list(found) == [Key(kind)] and summary in found[Key(kind)]


def test_falling_behind_ends_after_five_quiet_minutes():
    assert active(seen(ami_behind_at={"": NOW - 299}), IncidentsConfig())
    assert active(seen(ami_behind_at={"": NOW - 301}), IncidentsConfig()) == {}
    assert active(seen(calls_late_at={"": NOW - 299}), IncidentsConfig())
    assert active(seen(calls_late_at={"": NOW - 301}), IncidentsConfig()) == {}


def test_a_commit_backlog_is_one_incident_with_reading_late_and_says_which_is_recent():
    """Reading AMI late and committing late are one incident per PBX (calls recorded late);
    its summary names the sign seen within the last five minutes, AMI's first."""
    both = active(seen(ami_behind_at={"north": NOW - 10}, calls_late_at={"north": NOW - 5,
                                                                          "south": NOW - 20}),
                  IncidentsConfig())
    assert set(both) == {Key("ami_behind", "north"), Key("ami_behind", "south")}
    assert "AMI's answer to a Ping waited" in both[Key("ami_behind", "north")]
    assert both[Key("ami_behind", "south")].startswith("PBX south: calls were read on time")


def test_thresholds_are_the_configured_ones():
    settings = IncidentsConfig(ami_down_minutes=10, no_calls_hours=None, gateway_failures=3)
    assert active(seen(ami_down_since={"": NOW - 301}, quiet_open_hours={"": 99},
                       gateway_failures_in_row=2), settings) == {}
    assert list(active(seen(ami_down_since={"": NOW - 601}, gateway_failures_in_row=3),
                       settings)) == [Key("ami_down"), Key("gateway_failing")]


def test_each_pbx_down_is_an_incident_of_its_own_naming_it():
    """Two PBXs: one down, one incident naming it; both down, two; the one back recovers on
    its own, its email naming it."""
    one_down = active(seen(ami_down_since={"south": NOW - 400}), IncidentsConfig())
    assert one_down == {Key("ami_down", "south"): "PBX south: not logged in to AMI for 7 minutes"}
    both_down = active(seen(ami_down_since={"south": NOW - 400, "north": NOW - 301}),
                       IncidentsConfig())
    assert list(both_down) == [Key("ami_down", "north"), Key("ami_down", "south")]
    subject, text = opened_mail(Key("ami_down", "south"), one_down[Key("ami_down", "south")],
                                NOW, "America/New_York")
    assert subject == "textback incident: textback is not connected to the Asterisk of PBX south"
    assert "PBX south: not logged in to AMI" in text
    back = seen(pbxs={"north": HELD, "south": PbxView(False, NOW - 3600)})
    assert ended(both_down, one_down, back) == [Key("ami_down", "north")]
    subject, _ = recovered_mail(Key("ami_down", "north"), "", NOW - 600, NOW, "America/New_York")
    assert subject == "textback recovered: textback is not connected to the Asterisk of PBX north"
    # The single `ami:` form's PBX is never named: its incident reads as it always did.
    assert opened_mail(Key("ami_down"), "x", NOW, "UTC")[0] == (
        "textback incident: textback is not connected to Asterisk")


def ended(open_keys, under_way, observed: Observed, opened_at: float = NOW - 600) -> list[Key]:
    """The keys `judge` closes, each opened by this daemon at `opened_at`."""
    return judge({key: Opened(opened_at) for key in open_keys}, under_way, observed,
                 IncidentsConfig()).ended


def test_a_standby_leaves_the_incident_of_a_pbx_another_daemon_holds_to_that_daemon():
    """In a fleet, the daemon standing by for PBX south sees nothing of it: the holder's
    incidents about south stay open until the holder sees south back (or lets it go)."""
    open_now = [Key("ami_down", "south"), Key("no_call_events", "south"),
                Key("ami_behind", "south"), Key("routing_table")]
    standby = seen(pbxs={"south": PbxView(None)}, quiet_open_hours={})
    assert ended(open_now, {}, standby) == [Key("routing_table")]
    # A PBX no daemon has any more (taken out of the config): nobody judges it, so it ends.
    assert ended(open_now, {}, seen(pbxs={}, quiet_open_hours={})) == open_now


def test_each_pbx_is_judged_on_its_own_no_call_events_and_ami_behind_naming_it():
    found = active(seen(quiet_open_hours={"north": 0.5, "south": 4.5},
                        ami_behind_at={"north": NOW - 10}), IncidentsConfig())
    assert found == {
        Key("no_call_events", "south"): "PBX south: no call event from AMI for 4.5 hours of "
                                        "business hours",
        Key("ami_behind", "north"): "PBX north: AMI's answer to a Ping waited behind the events "
                                    "still to be read: calls are being recorded late"}
    subject, _ = opened_mail(Key("no_call_events", "south"), "x", NOW, "UTC")
    assert subject == "textback incident: no calls seen on PBX south during business hours"
    subject, _ = recovered_mail(Key("ami_behind", "north"), "x", NOW - 60, NOW, "UTC")
    assert subject == ("textback recovered: textback records the calls of PBX north more slowly "
                       "than they happen")
    # The single `ami:` form's PBX is never named.
    assert opened_mail(Key("no_call_events"), "x", NOW, "UTC")[0] == (
        "textback incident: no calls seen during business hours")


def test_a_new_holder_keeps_a_pbx_incident_until_it_sees_the_pbx_recover_itself():
    """South moved to this daemon a minute ago: the former holder's incidents about it are
    not under way here yet (one minute is neither four quiet hours nor a sign of falling
    behind), and no evidence of recovery was seen either, so they stay open."""
    just_taken = PbxView(listened=False, held_since=NOW - 60)  # not logged in yet
    observed = seen(pbxs={"south": just_taken}, quiet_open_hours={"south": 60 / 3600},
                    ami_down_since={"south": NOW - 60})
    open_now = [Key("ami_down", "south"), Key("no_call_events", "south"),
                Key("ami_behind", "south")]
    assert active(observed, IncidentsConfig()) == {}
    assert ended(open_now, {}, observed) == []
    # Logged in, a call event since the incident opened, five minutes read: each recovers.
    logged_in = PbxView(listened=True, held_since=NOW - 60, call_event_at=NOW - 5)
    assert ended(open_now, {}, seen(pbxs={"south": logged_in},
                                    quiet_open_hours={"south": 0.0})) == open_now[:2]
    read_long = PbxView(listened=True, held_since=NOW - 301, call_event_at=NOW - 900)
    assert ended(open_now, {}, seen(pbxs={"south": read_long}, quiet_open_hours={"south": 0.1}),
                 opened_at=NOW - 600) == [Key("ami_down", "south"), Key("ami_behind", "south")]
    # A call event before the incident opened is no recovery (it is what the quiet counts from).
    assert ended([Key("no_call_events", "south")], {},
                 seen(pbxs={"south": read_long}, quiet_open_hours={"south": 0.1}),
                 opened_at=NOW - 800) == []
    # No calls counted any more (no business hours, or no_calls_hours off): nothing to judge.
    assert ended([Key("no_call_events", "south")], {},
                 seen(pbxs={"south": just_taken}, quiet_open_hours={})) == [
        Key("no_call_events", "south")]


def test_an_incident_of_a_daemons_own_view_is_closed_by_that_daemon_or_taken_over_once_it_is_gone():
    """gateway_failing opened by another daemon: this one, whose sends go through, leaves it
    alone while that daemon lives; once it is gone, this one judges it: closes it when it
    does not see it, takes it over when it does."""
    failing = Key("gateway_failing")
    others = {failing: Opened(NOW - 600, opened_here=False, opener_gone=False)}
    gone = {failing: Opened(NOW - 600, opened_here=False, opener_gone=True)}
    mine = {failing: Opened(NOW - 600)}
    settings = IncidentsConfig()
    assert judge(others, {}, CALM, settings).ended == []
    assert judge(others, {failing: "x"}, CALM, settings).adopted == []
    assert judge(gone, {}, CALM, settings).ended == [failing]
    taken = judge(gone, {failing: "x"}, CALM, settings)
    assert (taken.ended, taken.adopted) == ([], [failing])
    assert judge(mine, {}, CALM, settings).ended == [failing]
    assert judge(mine, {failing: "x"}, CALM, settings).ended == []


def test_in_a_fleet_an_own_view_incident_names_the_host_that_saw_it():
    assert seen_on(Key("reply_listener"), "cannot listen on 0.0.0.0:25", "pbx-b") == (
        "cannot listen on 0.0.0.0:25 (seen by the daemon on pbx-b)")
    assert seen_on(Key("ami_down", "south"), "PBX south: x", "pbx-b") == "PBX south: x"


def test_a_wrong_incidents_section_names_its_yaml_path(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path, incidents={"ami_down_minuts": 5,
                                                                   "gateway_failures": 0}))
    with pytest.raises(ConfigError) as caught:
        load(path)
    paths = sorted(where.split(" ")[0] for where, _ in caught.value.problems)
    assert paths == ["incidents.ami_down_minuts", "incidents.gateway_failures"]


async def admin_mails(sink, count: int) -> list:
    return await asyncio.to_thread(sink.wait_for, count, 10)


async def test_one_email_when_an_incident_opens_and_one_when_it_recovers(offline_daemon, smtp_sink,
                                                                        tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    daemon = await offline_daemon(admin_email="it@acme.example",
                                  **{"agi.routing_file": str(blocked / "routing.json")})
    daemon.routing.write()  # the parent is a file: ENOTDIR, as real as it gets
    daemon.watch.ami_down_since.clear()  # only the routing table is wrong
    await daemon.incidents.check_incidents(time.time())
    await daemon.incidents.check_incidents(time.time())  # still broken: no second email
    [opened] = await admin_mails(smtp_sink, 1)
    assert opened.recipients == ["it@acme.example"]
    assert opened.message["Subject"] == "textback incident: the routing table cannot be written"
    assert "not-a-directory/routing.json" in opened.message.get_content()
    [row] = await daemon.store.open_incidents()
    assert row["kind"] == "routing_table"

    blocked.unlink()
    blocked.mkdir()
    daemon.routing.write()
    await daemon.incidents.check_incidents(time.time())
    _, recovered = await admin_mails(smtp_sink, 2)
    assert recovered.message["Subject"] == "textback recovered: the routing table cannot be written"
    assert await daemon.store.open_incidents() == []
    await daemon.incidents.check_incidents(time.time())
    assert len(smtp_sink.received) == 2


async def test_ami_down_and_no_calls_in_business_hours_open_incidents(offline_daemon, smtp_sink):
    daemon = await offline_daemon(admin_email="it@acme.example", hours={"windows": ALWAYS_OPEN},
                                  incidents={"ami_down_minutes": 1, "no_calls_hours": 1})
    now = time.time()
    daemon.watch.held_since[""] = now - 2 * 3600
    daemon.watch.ami_down_since[""] = now - 2 * 3600
    await daemon.incidents.check_incidents(now)
    subjects = sorted(m.message["Subject"] for m in await admin_mails(smtp_sink, 2))
    assert subjects == ["textback incident: no calls seen during business hours",
                        "textback incident: textback is not connected to Asterisk"]
    assert await daemon.store.progress("ami_logged_in") == 0.0


async def test_a_relay_that_refuses_mail_is_an_incident_that_never_stops_the_daemon(tmp_path,
                                                                                   monkeypatch):
    """The relay is down: the incident's own email waits in the notices table and goes out,
    with the recovery email, once the relay is back. Every failure is counted."""
    monkeypatch.setattr("textback.workers.owner_mail.retry_delay", lambda attempts: 0.2)
    monkeypatch.setattr("textback.workers.ops.INCIDENT_CHECK_SECONDS", 0.2)
    config = base_config(tmp_path, admin_email="it@acme.example", **{"smtp.port": SMTP_SINK_PORT,
                                                                      "ami.port": 15097})
    daemon = Daemon(load(write_config(tmp_path, config)))
    async with in_process(daemon):
        await daemon.mail.mail_notice("Dana", "dana@example.com", "Hello", "A notice")
        await eventually(lambda: _open_kinds(daemon, "mail_refused"), 10, "the incident")
        assert daemon.metrics.mail_failed.labels("notices")._value.get() >= 1
        sink, controller = start_smtp_sink()
        try:
            await eventually(lambda: _none_open(daemon), 15, "the recovery")
            mails = await asyncio.to_thread(sink.wait_for, 3, 10)
        finally:
            controller.stop()
    subjects = sorted(m.message["Subject"] for m in mails)
    assert subjects == ["Hello", "textback incident: the SMTP relay refuses mail",
                        "textback recovered: the SMTP relay refuses mail"]


async def _open_kinds(daemon, kind: str) -> bool:
    return kind in {row["kind"] for row in await daemon.store.open_incidents()}


async def _none_open(daemon) -> bool:
    return not any(row["kind"] == "mail_refused" for row in await daemon.store.open_incidents())


async def test_a_reply_mail_port_in_use_is_an_incident_until_the_listener_binds(tmp_path,
                                                                               monkeypatch):
    monkeypatch.setattr(daemon_module, "REPLY_LISTENER_RETRY_SECONDS", 0.2)
    monkeypatch.setattr("textback.workers.ops.INCIDENT_CHECK_SECONDS", 0.2)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", 15126))
    squatter.listen()
    config = base_config(tmp_path, admin_email="it@acme.example", **{
        "smtp.port": SMTP_SINK_PORT, "ami.port": 15097,
        "reply_mail": {"domain": "reply.acme.example", "listen_port": 15126}})
    sink, controller = start_smtp_sink()
    try:
        daemon = Daemon(load(write_config(tmp_path, config)))
        async with in_process(daemon):
            await eventually(lambda: _open_kinds(daemon, "reply_listener"), 10, "the incident")
            squatter.close()
            await eventually(lambda: _no_kind(daemon, "reply_listener"), 10, "the listener")
            reader, writer = await asyncio.open_connection("127.0.0.1", 15126)
            assert (await reader.readline()).startswith(b"220 ")
            writer.close()
            mails = await asyncio.to_thread(sink.wait_for, 2, 10)
    finally:
        squatter.close()
        controller.stop()
    assert [m.message["Subject"] for m in mails] == [
        "textback incident: the reply-mail listener is not running",
        "textback recovered: the reply-mail listener is not running"]
    assert "127.0.0.1:15126" in mails[0].message.get_content()


async def _no_kind(daemon, kind: str) -> bool:
    return not await _open_kinds(daemon, kind)


async def test_a_failing_gateway_and_an_expired_text_open_incidents_until_a_send_works(
        outbox, smtp_sink):
    clock = FastClock(speed=600)  # a simulated minute is 0.1 s
    up = False
    provider = Provider(clock, down=lambda: not up)
    async with serving(provider.app()) as url:
        daemon = await outbox(provider, url, admin_email="it@acme.example",
                              incidents={"gateway_failures": 3}, **{"text.max_age_minutes": 5})
        # No AMI here, and the clock is a fast one (a check's mail takes simulated minutes):
        # its down time never counts.
        daemon.watch.ami_down_since[""] = math.inf
        await missed_call(daemon.store, "+12125550201", clock.now())
        await clock.until(clock.now() + 7 * MINUTE)
        await daemon.incidents.check_incidents(clock.now())
        assert {row["kind"] for row in await daemon.store.open_incidents()} == {
            "gateway_failing", "texts_expiring"}
        assert daemon.metrics.texts.labels("retryable", "http")._value.get() >= 3
        assert daemon.metrics.texts.labels("expired", "http")._value.get() == 1
        up = True
        await missed_call(daemon.store, "+12125550202", clock.now())
        await clock.until(clock.now() + 1 * MINUTE)
        await daemon.incidents.check_incidents(clock.now())
        assert await daemon.store.open_incidents() == []
    admin = [m.message["Subject"] for m in smtp_sink.received if m.recipients == ["it@acme.example"]]
    assert sorted(admin) == sorted(f"textback {what}: {title}" for what in ("incident", "recovered")
                                   for title in ("the SMS gateway keeps failing",
                                                 "texts to callers are expiring unsent"))
