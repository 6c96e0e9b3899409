"""An owner's own mobile: a homeowner's reply texted to it, and the owner's answers from it.

An object with explicit dependencies, composed by the daemon: the config, the store, the
outbox's wake-up, `notify` (an owner's email notice) and `command` (the bookkeeping commands
an email reply runs too). Every text to the mobile goes through the outbox (claims, retries,
deadlines, the suppression list, the owner's quiet hours); every answer goes to the homeowner
through the one owner-reply policy (`core/replies` measures it, `Store.queue_owner_reply`
refuses it for a number that opted out).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Awaitable, Callable

from textback.config import Config, NumberConfig, OwnerConfig
from textback.core.alerts import one_line
from textback.core.numbers import national
from textback.core.optout import Keyword, classify
from textback.core.relay import (HELP_INTERVAL_SECONDS, HELP_TEXT, OWNER_STOP_CONFIRMATION,
                                 START_TEXT, STOP_TEXT, alert_text, failure_reason, not_sent,
                                 parse_answer)
from textback.core.replies import measure, segment_limit
from textback.store import Store

timeline = logging.getLogger("textback.timeline")

OWNER_HELP = "owner_help"  # the template name of the help reply (messages.template)

# (subject, text): tell the owner something, by text or (alert texts off) by email.
Tell = Callable[[str, str], Awaitable[None]]
# (conversation id, caller, owner, command, argument, source, tell): the daemon runs it.
Command = Callable[[int, str, OwnerConfig, str, str, str, Tell], Awaitable[None]]
# (owner, subject, text): an email notice, committed and then mailed.
Notify = Callable[[OwnerConfig, str, str], Awaitable[None]]


class OwnerPhone:
    """Alert texts to owners' mobiles, and what their texts back mean."""

    def __init__(self, config: Config, store: Store, wake_outbox: Callable[[], None],
                 notify: Notify, command: Command):
        self.config = config
        self.store = store
        self._wake_outbox = wake_outbox
        self._notify = notify
        self._command = command

    async def alert(self, conversation_id: int, number: NumberConfig, caller: str,
                    words: str) -> None:
        """A homeowner's reply was committed: text it to its owner's mobile, if they take alert
        texts and have not turned them off (STOP). `words` is the text, or what it carried."""
        conversation = await self.store.conversation(conversation_id)
        if conversation is None or conversation["selftest"] or conversation["owner_line"]:
            return
        owner = next((o for o in self.config.owners if o.id == conversation["owner_id"]), None)
        if owner is None or "sms" not in owner.alerts.chosen(await self.store.alert_channels(owner.id)):
            return
        if await self.store.is_suppressed(owner.alerts.sms):
            timeline.info("no alert text to %s: they turned alert texts off (STOP)", owner.id)
            return
        contact = self.config.contact(caller)
        name = contact.name if contact and contact.name else conversation["contact_name"]
        body = alert_text(caller, name, words, conversation_id, conversation["intake_labels"])
        await self.store.queue_owner_alert(owner.id, owner.alerts.sms,
                                           owner.alerts.sms_from or number.number,
                                           conversation_id, body)
        timeline.info("alert text to %s queued: %s", owner.id, one_line(body, 200))
        self._wake_outbox()

    async def answer(self, owner: OwnerConfig, number: NumberConfig, body: str, media: int,
                     gateway: str, gateway_id: str | None) -> None:
        """A text from `owner`'s mobile to the business `number`: committed first, then STOP,
        START or HELP for the alert texts, a command, or an answer relayed to the homeowner.
        `media` counts what it carried besides words (never relayed: the owner is told)."""
        mobile = owner.alerts.sms
        if await self.store.record_owner_text(owner.id, mobile, number.number, body, gateway,
                                              gateway_id) is None:
            timeline.info("duplicate delivery of a text from %s's mobile ignored", owner.id)
            return
        tell = partial(self._tell, owner, number.number)
        keyword = classify(body)
        if keyword is Keyword.STOP:
            # The owner's own alert texts, no homeowner's opt-out: nothing to publish.
            if await self.store.suppress(mobile, "sms", number.number, publish=False):
                timeline.info("%s turned alert texts off (STOP); no homeowner is touched", owner.id)
                await self.store.queue_owner_notice(owner.id, mobile, number.number, STOP_TEXT,
                                                    kind=OWNER_STOP_CONFIRMATION)
                self._wake_outbox()
            return
        if keyword is Keyword.START and await self.store.unsuppress(mobile, "sms", number.number,
                                                                    publish=False):
            timeline.info("%s turned alert texts on again (START)", owner.id)
            await tell("alert texts on", START_TEXT)
            return
        if keyword is Keyword.HELP:
            await self._help(owner, number.number, rate_limited=False)
            return
        answer = parse_answer(body)
        conversation = await self.store.alerted_conversation(owner.id, answer.code)
        if conversation is None:
            if answer.code is not None:
                await tell(f"no conversation #{answer.code}",
                           f"textback: #{answer.code} is not a conversation alerted to you, so "
                           f"nothing was sent. Start with the code an alert text showed.")
            else:
                await self._help(owner, number.number, rate_limited=True)
            return
        caller = conversation["caller"]
        if answer.command:
            async def refused(subject: str, text: str) -> None:
                await tell(subject, f"textback: {subject}. {text}")

            await self._command(conversation["id"], caller, owner, answer.command,
                                answer.argument, f"sms:{owner.id}", refused)
            return
        if not answer.text:
            why = ("photos and files are never texted on; write your answer in words." if media
                   else "it had no words after the code.")
            await tell(f"Not sent to {caller}: nothing to send", not_sent(caller, why))
            return
        await self._relay(owner, conversation, answer.text, tell)
        if media:
            await tell(f"Your photos were not sent to {caller}",
                       f"textback: your photos or files were not sent to {national(caller)}: "
                       f"only words are texted on.")

    async def _relay(self, owner: OwnerConfig, conversation: dict, text: str, tell: Tell) -> None:
        """The one owner-reply policy: the segment limit, then the opt-out (kept in the
        consent ledger), then queued from the number the homeowner dialled."""
        caller = conversation["caller"]
        length = measure(text, segment_limit(self.config.reply_mail))
        if length.too_long:
            await tell(f"Not sent to {caller}: too long", not_sent(
                caller, f"it is {length.segments} segments; the limit is {length.limit}. "
                        f"Shorten it and send again."))
            return
        outbox_id = await self.store.queue_owner_reply(
            conversation["id"], conversation["business_number"], caller, text, f"sms:{owner.id}",
            author=owner.id)
        if outbox_id is None:
            await tell(f"Not sent to {caller}: they opted out", not_sent(
                caller, "they texted STOP, so nothing more is texted to them. Call them instead."))
            return
        await self.store.note_owner_answer(outbox_id, owner.id)
        timeline.info("owner %s answered by text; texting %s: %s", owner.id, caller,
                      one_line(text, 200))
        self._wake_outbox()

    async def answer_failed(self, message_id: int, caller: str, business_number: str,
                            state: str, gateway: str, error: str) -> bool:
        """The outbox could not get an answer to the homeowner: when it came from an owner's
        mobile, tell them by text (by email after STOP) and say True; else False."""
        owner_id = await self.store.owner_answer_by(message_id)
        owner = next((o for o in self.config.owners if o.id == owner_id), None)
        if owner is None or owner.alerts.sms is None:
            return False
        await self._tell(owner, owner.alerts.sms_from or business_number,
                         f"Not sent to {caller}", not_sent(caller, failure_reason(state, gateway,
                                                                                   error)))
        return True

    async def _help(self, owner: OwnerConfig, business_number: str, rate_limited: bool) -> None:
        """The short help reply; for texts that match nothing, at most one per
        HELP_INTERVAL_SECONDS, so an auto-reply and the help never answer each other."""
        if rate_limited and await self.store.owner_notice_since(
                owner.alerts.sms, OWNER_HELP, time.time() - HELP_INTERVAL_SECONDS):
            timeline.info("text from %s's mobile matched no conversation; help sent recently",
                          owner.id)
            return
        await self._tell(owner, business_number, "how to answer by text", HELP_TEXT, OWNER_HELP)

    async def _tell(self, owner: OwnerConfig, business_number: str, subject: str, text: str,
                    template: str = "") -> None:
        """Tell the owner by text from the number they texted; by email when they turned alert
        texts off (STOP), so a refusal still reaches them."""
        mobile = owner.alerts.sms
        if await self.store.is_suppressed(mobile):
            await self._notify(owner, subject, text)
            return
        await self.store.queue_owner_notice(owner.id, mobile, business_number, text,
                                            template=template)
        self._wake_outbox()
