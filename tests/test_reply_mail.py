"""Reply by email -> SMS: textback's own aiosmtpd server, a real SMTP client (smtplib), a real relay sink."""

from __future__ import annotations

import asyncio
import smtplib
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import in_process
from sms_gateway.base import InboundText
from textback.config import load
from textback.daemon import Daemon
from textback.core.replies import new_text
from tests.providers.common import serving
from tests.providers.twilio import FakeTwilio

REPLY_PORT = 15026
DOMAIN = "reply.acme.example"

QUOTED = """Great, I can come by Tuesday at 10. Does that work?

Thanks,
Dana
--
Dana Reyes | Acme Remodeling
Sent from my iPhone

On Thu, Nov 26, 2026 at 1:17 PM Acme Remodeling textback <textback@acme.example> wrote:
> (212) 555-0123 replied to Acme Remodeling's text on (212) 555-0100:
>     Yes please, kitchen remodel
"""


def mail(sender: str, to: str, body: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Re: Text from (212) 555-0123"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def send_raw(reply_to: str, raw: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send bytes as they are, from the owner; returns the answer to DATA."""
    with smtplib.SMTP("127.0.0.1", REPLY_PORT, timeout=timeout) as client:
        client.ehlo()
        client.mail("dana@acme.example")
        client.rcpt(reply_to)
        return client.data(raw)


def send(message: EmailMessage, envelope_from: str | None = None) -> None:
    """Send as a mail client would; raises smtplib exceptions on refusal."""
    with smtplib.SMTP("127.0.0.1", REPLY_PORT, timeout=10) as client:
        client.send_message(message, from_addr=envelope_from)


async def sent_texts(daemon: Daemon) -> list[tuple[str, str]]:
    rows = await daemon.store.timeline(HOMEOWNER)
    return [(r["status"], r["body"]) for r in rows if r["kind"] == "text_out"]


async def until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not (value := await predicate()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return value


@pytest.fixture
async def running(tmp_path, smtp_sink):
    config = base_config(tmp_path, **{
        "ami.port": 15099,
        "smtp.port": 15025,
        "owners": [{"id": "dana", "name": "Dana Reyes", "email": "dana@acme.example"},
                   {"id": "sam", "name": "Sam Ortiz", "email": "sam@acme.example"}],
        "reply_mail": {"domain": DOMAIN, "listen_port": REPLY_PORT, "max_segments": 2,
                       "team_senders": ["office@acme.example"]},
    })
    async with in_process(Daemon(load(write_config(tmp_path, config)))) as daemon:
        await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER,
                                              "Yes please, kitchen remodel"), "log")
        [alert] = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
        reply_to = alert.message["Reply-To"]
        assert reply_to.startswith("reply+") and reply_to.endswith("@" + DOMAIN)
        yield daemon, reply_to, smtp_sink


async def test_the_owners_new_words_reach_the_homeowner(running):
    daemon, reply_to, _ = running
    await asyncio.to_thread(send, mail("Dana Reyes <dana@acme.example>", reply_to, QUOTED))
    status, body = await until(lambda: _sent(daemon))
    assert body == "Great, I can come by Tuesday at 10. Does that work?"
    assert len(await sent_texts(daemon)) == 1


async def _sent(daemon):
    texts = await sent_texts(daemon)
    return texts[0] if texts and texts[0][0] == "sent" else None


@pytest.mark.parametrize("sender", ["stranger@evil.example", "sam@acme.example"])
async def test_a_stranger_or_another_owner_is_refused_and_nothing_is_sent(running, sender):
    daemon, reply_to, _ = running
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await asyncio.to_thread(send, mail(sender, reply_to, "Send this to them"))
    assert refused.value.smtp_code == 550
    await asyncio.sleep(0.3)
    assert await sent_texts(daemon) == []


async def test_a_forged_from_with_the_owners_envelope_mismatch_is_refused(running):
    daemon, reply_to, _ = running
    with pytest.raises(smtplib.SMTPDataError):
        await asyncio.to_thread(send, mail("dana@acme.example", reply_to, "hi"),
                                "attacker@evil.example")
    assert await sent_texts(daemon) == []


async def test_unknown_reply_addresses_are_refused_at_rcpt(running):
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await asyncio.to_thread(send, mail("dana@acme.example",
                                           f"reply+{'a' * 24}@{DOMAIN}", "hi"))
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await asyncio.to_thread(send, mail("dana@acme.example", f"dana@{DOMAIN}", "hi"))


async def test_a_bare_sign_off_with_the_owners_name_is_dropped(running):
    daemon, reply_to, _ = running
    body = "Tuesday at 10 works.\n\nDana\n--\nAcme Remodeling | 212-555-0100\n"
    await asyncio.to_thread(send, mail("dana@acme.example", reply_to, body))
    assert (await until(lambda: _sent(daemon)))[1] == "Tuesday at 10 works."


async def test_a_team_address_may_answer(running):
    daemon, reply_to, _ = running
    await asyncio.to_thread(send, mail("office@acme.example", reply_to, "We'll call you at 3."))
    assert (await until(lambda: _sent(daemon)))[1] == "We'll call you at 3."


async def test_auto_replies_are_accepted_dropped_and_logged_without_a_notice(running, caplog):
    """RFC 3834: an out-of-office is never texted nor answered, and nobody is mailed about it."""
    daemon, reply_to, sink = running
    await asyncio.to_thread(send, mail("dana@acme.example", reply_to, "I am out of office",
                                       Auto_Submitted="auto-replied"))
    await asyncio.sleep(0.5)
    assert await sent_texts(daemon) == []
    assert len(sink.received) == 1  # the alert the owner's responder answered; no notice
    [logged] = [r.getMessage() for r in caplog.records if r.name == "textback.mailin"
                and "dropped" in r.getMessage()]
    assert "from dana@acme.example" in logged
    assert logged.endswith("automatic reply: Auto-Submitted: auto-replied")


async def test_won_command_is_recorded_not_texted(running):
    daemon, reply_to, _ = running
    await asyncio.to_thread(send, mail("dana@acme.example", reply_to, "#won 82,000\n\n" + QUOTED))
    await asyncio.sleep(0.3)
    assert await sent_texts(daemon) == []
    rows = await daemon.store._all("SELECT stage, value FROM outcomes")
    assert [tuple(r) for r in rows] == [("won", 82000.0)]


async def test_too_long_is_never_truncated_and_the_owner_is_told(running):
    daemon, reply_to, sink = running
    long_text = "We can start next week. " * 20  # 480 characters: 4 segments, over the limit of 2
    await asyncio.to_thread(send, mail("dana@acme.example", reply_to, long_text))
    [_, notice] = await asyncio.to_thread(sink.wait_for, 2, 10)
    assert "too long" in notice.message["Subject"]
    assert await sent_texts(daemon) == []


async def test_an_opted_out_homeowner_is_not_texted_and_the_owner_is_told(running):
    daemon, reply_to, sink = running
    await daemon.store.suppress(HOMEOWNER, "sms")
    await asyncio.to_thread(send, mail("dana@acme.example", reply_to, "Are you still there?"))
    [_, notice] = await asyncio.to_thread(sink.wait_for, 2, 10)
    assert "opted out" in notice.message["Subject"]
    assert await sent_texts(daemon) == []


async def test_a_bare_lf_in_the_header_is_refused(running):
    _, reply_to, _ = running
    raw = (f"From: dana@acme.example\r\nTo: {reply_to}\r\nSubject: hi\nBcc: x@evil.example\r\n"
           f"\r\nhello\r\n").encode()

    assert (await asyncio.to_thread(send_raw, reply_to, raw))[0] == 550


# -- HTML-only replies, and replies with nothing to text -------------------------------------

SAMPLES = Path(__file__).parent / "mail"  # the HTML each client writes for a reply
CLIENTS = {"gmail": "Gmail", "apple": "iPhone Mail (22B83)", "outlook": "Microsoft Outlook 16.0"}
NOTHING_TO_SEND = "Not sent to +12125550123: nothing to send"


def html_only(to: str, sample: str) -> EmailMessage:
    """A reply whose only body is one client's HTML, quoted-printable as those clients send it."""
    message = EmailMessage()
    message["From"] = "Dana Reyes <dana@acme.example>"
    message["To"] = to
    message["Subject"] = "Re: Text from (212) 555-0123: Yes please, kitchen remodel"
    message["X-Mailer"] = CLIENTS[sample.split("_")[0]]
    message.set_content((SAMPLES / sample).read_text(), subtype="html", cte="quoted-printable")
    return message


async def notice(sink) -> EmailMessage:
    """The one email after the alert, parsed as the owner's mail client would."""
    [_, received] = await asyncio.to_thread(sink.wait_for, 2, 10)
    return BytesParser(policy=policy.default).parsebytes(received.message.as_bytes())


@pytest.mark.parametrize("sample, words", [
    ("gmail_reply.html", "Hi Maria,\n\nTuesday at 10 works. I'll bring tile samples & the quote."),
    ("gmail_no_quote.html", "Yes, we do bathrooms too. Can you send a photo of the space?"),
    # Only the markup gives this quote away: the parser knows English "On ... wrote:" lines.
    ("gmail_spanish_reply.html", "S\u00ed, el martes a las 10 est\u00e1 bien."),
    ("apple_ios_reply.html", "Running 15 min late, sorry!\nSee you at 10:15"),
    ("apple_macos_no_quote.html",
     "Hello,\n\nWe\u2019re booked this week. Does Monday the 30th at 8:00 AM suit you?"),
    ("outlook_web_reply.html", "Sure \u2013 the estimate is free. I can come Thursday between 1 and 3."),
    ("outlook_desktop_reply.html",
     "Good news: the permit came through. We can start the demo on the 7th."),
    ("outlook_no_quote.html", "We\u2019re closed for the holiday. I\u2019ll call you Monday morning."),
])
async def test_an_html_only_reply_texts_the_owners_new_words(running, sample, words):
    daemon, reply_to, sink = running
    await asyncio.to_thread(send, html_only(reply_to, sample))
    assert await until(lambda: _sent(daemon)) == ("sent", words)
    assert len(await sent_texts(daemon)) == 1
    assert len(sink.received) == 1  # no notice: it was sent


async def test_with_both_parts_the_plain_one_is_texted(running):
    daemon, reply_to, _ = running
    message = mail("dana@acme.example", reply_to, QUOTED)
    message.add_alternative("<div dir=\"ltr\">The HTML part says something else.</div>",
                            subtype="html")
    await asyncio.to_thread(send, message)
    assert (await until(lambda: _sent(daemon)))[1] == (
        "Great, I can come by Tuesday at 10. Does that work?")


@pytest.mark.parametrize("message", [
    lambda to: mail("dana@acme.example", to, QUOTED[QUOTED.index("On Thu"):]),
    lambda to: html_only(to, "gmail_quote_only.html"),
], ids=["plain", "html"])
async def test_a_reply_with_only_the_quote_is_not_sent_and_the_owner_is_told(running, message):
    daemon, reply_to, sink = running
    await asyncio.to_thread(send, message(reply_to))
    told = await notice(sink)
    assert told["To"] == "Dana Reyes <dana@acme.example>"
    assert told["Subject"] == NOTHING_TO_SEND
    assert told.get_content() == (
        "Your email reply to +12125550123 was not sent: it had no new words above the quoted "
        "message.\n\nWrite your answer above the quoted message and reply again. A photo is "
        "texted only when attached as a file, on a gateway that sends MMS.\n")
    assert await sent_texts(daemon) == []


async def test_an_attachment_only_reply_is_not_sent_and_the_owner_is_told(running):
    daemon, reply_to, sink = running
    message = EmailMessage()
    message["From"] = "dana@acme.example"
    message["To"] = reply_to
    message["Subject"] = "Re: Text from (212) 555-0123"
    message.add_attachment(b"\xff\xd8\xff\xe0 not really a JPEG", maintype="image",
                           subtype="jpeg", filename="IMG_0042.JPG")
    await asyncio.to_thread(send, message)
    told = await notice(sink)
    assert told["Subject"] == NOTHING_TO_SEND
    assert told.get_content() == (
        "Your email reply to +12125550123 was not sent: it had no words, and none of its files "
        "can be texted:\n    IMG_0042.JPG: not sent: the log gateway texts words only\n\n"
        "Write your answer above the quoted message and reply again.\n")
    assert await sent_texts(daemon) == []


async def test_a_hostile_attachment_name_never_reaches_a_header_of_the_notice(running):
    daemon, reply_to, sink = running
    raw = (f"From: dana@acme.example\r\nTo: {reply_to}\r\nSubject: photo\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;"
           " filename*=utf-8''plan%0D%0ABcc%3A%20victim%40evil.example%0D%0A%0D%0Abody.pdf\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\n").encode()

    def raw_session() -> None:
        with smtplib.SMTP("127.0.0.1", REPLY_PORT, timeout=10) as client:
            client.sendmail("dana@acme.example", [reply_to], raw)

    await asyncio.to_thread(raw_session)
    told = await notice(sink)
    assert told["Bcc"] is None and told["Subject"] == NOTHING_TO_SEND
    assert ("\n    plan Bcc: victim@evil.example body.pdf: not sent: the log gateway texts "
            "words only\n") in told.get_content()
    [recipients] = [r.recipients for r in sink.received[1:]]
    assert recipients == ["dana@acme.example"]


async def test_a_reply_the_gateway_refuses_after_the_250_is_reported_to_the_owner(tmp_path,
                                                                                   smtp_sink):
    """The listener answered 250, so the owner thinks it went: a refusal at the gateway is mailed."""
    twilio = FakeTwilio("AC" + "3" * 32, "twilio-token", opted_out={HOMEOWNER})  # 21610 at Twilio
    (tmp_path / "twilio.token").write_text(twilio.auth_token)
    async with serving(twilio.app()) as api:
        config = base_config(tmp_path, **{
            "ami.port": 15099, "smtp.port": 15025,
            "gateway": {"type": "twilio",
                        "twilio": {"account_sid": twilio.account_sid,
                                   "auth_token": {"file": "twilio.token"}, "api_base_url": api},
                        "callbacks": {"listen_port": 15181,
                                     "public_base_url": "https://textback.example.com/hooks"}},
            "owners": [{"id": "dana", "name": "Dana Reyes", "email": "dana@acme.example"}],
            "reply_mail": {"domain": DOMAIN, "listen_port": REPLY_PORT},
        })
        async with in_process(Daemon(load(write_config(tmp_path, config)))) as daemon:
            await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "Kitchen remodel?"),
                                      "twilio")
            [alert] = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
            await asyncio.to_thread(send, mail("dana@acme.example", alert.message["Reply-To"],
                                               "Yes, we do kitchens. Tuesday?"))
            told = await notice(smtp_sink)
            assert daemon.metrics.registry.get_sample_value(
                "textback_reply_mail_verdicts_total", {"verdict": "text"}) == 1
    assert told["Subject"] == "Not sent to +12125550123: your reply"
    assert told.get_content() == (
        "Your reply to +12125550123 was refused by the SMS gateway.\n"
        "Why: they asked not to be texted (STOP).\nCall them, or reply again later."
        "\n\nThe text: Yes, we do kitchens. Tuesday?\n"
        "Last error: recipient opted out (Twilio 21610)\n")
    assert twilio.accepted == [] and twilio.attempts == 1


async def test_a_reply_of_blank_lines_never_stalls_the_event_loop(running):
    """40 KB of "ok" and 20,000 CRLFs once froze calls, texts and webhooks for over 45 s."""
    daemon, reply_to, _ = running
    raw = (f"From: dana@acme.example\r\nTo: {reply_to}\r\nSubject: Re: x\r\n"
           f"Content-Type: text/plain; charset=utf-8\r\n\r\nok" + "\r\n" * 20_000).encode()
    lateness, ticking = [], True

    async def ticker():
        while ticking:
            before = time.monotonic()
            await asyncio.sleep(0.02)
            lateness.append(time.monotonic() - before - 0.02)

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    assert (await asyncio.to_thread(send_raw, reply_to, raw, 30))[0] == 250
    took = time.monotonic() - started
    ticking = False
    await tick
    assert (await until(lambda: _sent(daemon)))[1] == "ok"
    assert took < 5 and max(lateness) < 0.5, (took, max(lateness))


@pytest.mark.parametrize("charset", ["unknown-8bit", "x-unknown", "utf-8"])
async def test_a_reply_in_an_unknown_charset_is_read_leniently(running, charset):
    daemon, reply_to, sink = running
    raw = (f"From: dana@acme.example\r\nTo: {reply_to}\r\nSubject: Re: x\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n"
           f"\r\nSee you at 10, caf\u00e9 after.\r\n").encode()

    code, answer = await asyncio.to_thread(send_raw, reply_to, raw)
    assert code == 250 and b"Error" not in answer
    assert (await until(lambda: _sent(daemon)))[1] == "See you at 10, caf\u00e9 after."


# -- whatever the markup, what the alert showed never goes back to the homeowner ---------------

ASKED = "Yes, kitchen remodel. When can you come?"
ANSWER = "Thursday at 8 works. I'll bring samples."


@pytest.fixture
async def alerted(tmp_path, smtp_sink):
    """A daemon whose owner has the alert for ASKED; yields it, the reply address and the alert."""
    config = base_config(tmp_path, **{
        "ami.port": 15099, "smtp.port": 15025,
        "owners": [{"id": "dana", "name": "Dana Reyes", "email": "dana@acme.example"}],
        "reply_mail": {"domain": DOMAIN, "listen_port": REPLY_PORT},
    })
    async with in_process(Daemon(load(write_config(tmp_path, config)))) as daemon:
        await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, ASKED), "log")
        [received] = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
        alert = BytesParser(policy=policy.default).parsebytes(received.message.as_bytes())
        yield daemon, alert["Reply-To"], alert


def _alert_parts(alert: EmailMessage) -> tuple[str, str]:
    """The alert's plain text, and the inside of its HTML body, as a mail client quotes them."""
    html = alert.get_body(("html",)).get_content()
    inside = html[html.index("<body"):]
    return (alert.get_body(("plain",)).get_content(),
            inside[inside.index(">") + 1:inside.rindex("</body>")])


def _html_reply(to: str, html: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Dana Reyes <dana@acme.example>"
    message["To"] = to
    message["Subject"] = "Re: Text from (212) 555-0123"
    message.set_content(html, subtype="html")
    return message


def _quoted(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.splitlines())


@pytest.mark.parametrize("reply", [
    # The reported defect: no client markup, a bare blockquote of the homeowner's words.
    lambda to, alert: _html_reply(to, f"<p>{ANSWER}</p><blockquote>{ASKED}</blockquote>"),
    # The whole alert quoted in a styled div, as webmail clients without their own classes do.
    lambda to, alert: _html_reply(
        to, f"<div>{ANSWER}</div><br><div style=\"border-left:2px solid #ccc;padding-left:8px\">"
            f"{_alert_parts(alert)[1]}</div>"),
    # Apple Mail's forward of the alert back to its reply address: the alert, unmarked.
    lambda to, alert: mail("dana@acme.example", to,
                           f"{ANSWER}\n\nBegin forwarded message:\n\nFrom: {alert['From']}\n"
                           f"Subject: {alert['Subject']}\nDate: {alert['Date']}\n"
                           f"To: {alert['To']}\n\n{_alert_parts(alert)[0]}"),
    # Top-posted above Outlook's header block, the alert below it unmarked.
    lambda to, alert: mail("dana@acme.example", to,
                           f"{ANSWER}\n\n________________________________\n"
                           f"From: {alert['From']}\nSent: Monday, December 7, 2026 10:02 AM\n"
                           f"To: {alert['To']}\nSubject: {alert['Subject']}\n\n"
                           f"{_alert_parts(alert)[0]}"),
    # Bottom-posted below the "> " quote, in plain text ...
    lambda to, alert: mail("dana@acme.example", to,
                           f"On Mon, Dec 7, 2026 at 10:02 AM {alert['From']} wrote:\n"
                           f"{_quoted(_alert_parts(alert)[0])}\n\n{ANSWER}\n"),
    # ... and below a bare blockquote in HTML.
    lambda to, alert: _html_reply(to, f"<blockquote>{_alert_parts(alert)[1]}</blockquote>"
                                      f"<div>{ANSWER}</div>"),
], ids=["bare-blockquote", "styled-div", "forward", "top-posted", "bottom-posted-plain",
        "bottom-posted-html"])
async def test_a_quote_of_the_alert_is_never_texted_whatever_its_markup(alerted, reply):
    daemon, reply_to, alert = alerted
    await asyncio.to_thread(send, reply(reply_to, alert))
    assert await until(lambda: _sent(daemon)) == ("sent", ANSWER)
    assert len(await sent_texts(daemon)) == 1


async def test_a_short_answer_that_repeats_a_few_words_is_the_owners_own(alerted, smtp_sink):
    """ "Kitchen remodel?" is in the alert too, but an owner may well write two words like them."""
    daemon, reply_to, alert = alerted
    await asyncio.to_thread(send, mail("dana@acme.example", reply_to,
                                       f"Kitchen remodel!\n\n{_quoted(_alert_parts(alert)[0])}"))
    assert await until(lambda: _sent(daemon)) == ("sent", "Kitchen remodel!")


async def test_a_reply_that_only_forwards_the_alert_is_not_sent_and_the_owner_is_told(
        alerted, smtp_sink):
    daemon, reply_to, alert = alerted
    await asyncio.to_thread(send, mail("dana@acme.example", reply_to,
                                       "---------- Forwarded message ---------\n"
                                       f"From: {alert['From']}\nDate: {alert['Date']}\n"
                                       f"Subject: {alert['Subject']}\nTo: {alert['To']}\n\n"
                                       f"{_alert_parts(alert)[0]}"))
    told = await notice(smtp_sink)
    assert told["Subject"] == NOTHING_TO_SEND
    assert await sent_texts(daemon) == []


def test_an_echo_of_part_of_a_homeowners_line_is_the_owners_own_and_a_whole_quote_is_not():
    """new_text, the pure core: "Tuesday at 10" is in the homeowner's text, but only part of it."""
    quoted = ("Can you come Tuesday at 10 or Wednesday at 2?", "  Mon 07 Dec 2026 09:30 EST  "
              "They replied: Can you come Tuesday at 10 or Wednesday at 2?")
    echo = mail("dana@acme.example", "x@y", "Tuesday at 10\nSee you then.")
    assert new_text(echo, "Dana Reyes", quoted) == "Tuesday at 10\nSee you then."
    quote = mail("dana@acme.example", "x@y",
                 "Tuesday at 10 it is.\n\nCan you come Tuesday at 10 or\nWednesday at 2?\n")
    assert new_text(quote, "Dana Reyes", quoted) == "Tuesday at 10 it is."  # wrapped, still whole
