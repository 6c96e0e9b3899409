"""Opt-outs, and the replies and test texts queued past them."""

from __future__ import annotations

import time
from typing import Any, Sequence

from textback.core import consent
from textback.core.delivery import OWNER_REPLY
from textback.core.inbound import KeywordAnswer
from textback.core import events
from textback.store.connection import Connection
from textback.store.media import NewMedia
from textback.store.values import _canonical
from textback.store.web import NEXT_VERSION, STOP_WAITING


class OptOutRows(Connection):
    """Opt-outs, and the replies and test texts queued past them."""

    async def is_suppressed(self, number: str) -> bool:
        return await self._one("SELECT 1 FROM suppressions WHERE number = ?", (number,)) is not None

    async def suppress(self, number: str, source: str, business_number: str = "", *,
                       publish: bool = True) -> bool:
        """Put a number on the suppression list, for every business number and every kind of
        text (revoke-all); False if it already was. `source` is the channel the request came
        through (sms, web:USER, api:TOKEN, cli), kept in the consent ledger. `publish=False`:
        an owner's own mobile turning its alert texts off, kept in the ledger but no
        homeowner's opt-out, so no `optout.changed` goes to webhooks and CRMs."""
        _canonical(number)
        async with self._transaction():
            return await self._set_opted_out(number, True, source, business_number, time.time(),
                                             publish)

    async def unsuppress(self, number: str, source: str, business_number: str = "", *,
                         publish: bool = True) -> bool:
        """Take a number off the suppression list; False if it was not on it (`publish` as
        for `suppress`)."""
        _canonical(number)
        async with self._transaction():
            return await self._set_opted_out(number, False, source, business_number, time.time(),
                                             publish)

    async def _set_opted_out(self, number: str, opted_out: bool, source: str,
                             business_number: str, now: float, publish: bool = True) -> bool:
        """Inside a transaction: put `number` on the suppression list (or take it off), with its
        consent fact and, when `publish`, its event; False when the list already was so.

        An opt-out (even one the list already had) ends the waiting of that number's
        conversations: nobody may text it an answer (textback/core/waiting.py)."""
        if opted_out:
            await self._db.execute(
                f"UPDATE conversations SET {STOP_WAITING}, version = {NEXT_VERSION}"
                " WHERE caller = ? AND unanswered = 1", (number,))
            cursor = await self._db.execute(
                "INSERT INTO suppressions (number, since, source) VALUES (?,?,?)"
                " ON CONFLICT DO NOTHING",
                (number, now, source))
        else:
            cursor = await self._db.execute("DELETE FROM suppressions WHERE number = ?", (number,))
        if cursor.rowcount != 1:
            return False
        if publish:
            await self._emit(events.optout_changed(number=number, opted_out=opted_out,
                                                   source=source, at=now))
        await self._ledger(consent.Fact(consent.OPTED_OUT if opted_out else consent.OPTED_IN,
                                        number, now, business_number, source))
        return True

    async def _answer_keyword(self, conversation_id: int, business_number: str, caller: str,
                              answer: KeywordAnswer, now: float) -> int | None:
        """Inside a transaction: apply a keyword's opt-out or opt-in if the list still needs it,
        then queue its answer; the answer's outbox id, or None when nothing changed."""
        if answer.opt and not await self._set_opted_out(caller, answer.opt == "out", "sms",
                                                        business_number, now):
            return None  # already as the keyword asks: no second confirmation
        _, outbox_id = await self._queue(conversation_id, business_number, caller, answer.body,
                                         now, now, answer.kind, channel="sms")
        return outbox_id

    async def refuse_text(self, recipient: str, business_number: str, kind: str, body: str,
                          channel: str, why: str = "the number opted out") -> None:
        """Keep in the consent ledger a text refused before it was queued (a reply written to a
        number that opted out, through the inbox, the API, email or the CLI)."""
        async with self._transaction():
            await self._ledger(consent.Fact(consent.TEXT_REFUSED, _canonical(recipient),
                                            time.time(), business_number, channel, kind, body,
                                            {"why": why}))

    async def suppressions(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._all("SELECT * FROM suppressions ORDER BY since")]

    async def queue_test_text(self, recipient: str, business_number: str, owner_id: str,
                              body: str) -> int:
        """Queue a test text (`textback test-text`) in the recipient's conversation, due now."""
        now = time.time()
        async with self._transaction():
            conversation_id = await self._conversation(recipient, business_number, owner_id, now,
                                                       "test text")
            _, outbox_id = await self._queue(conversation_id, business_number, recipient, body, now,
                                             now, kind="test", channel="cli")
            return outbox_id

    async def queue_owner_reply(self, conversation_id: int, business_number: str, caller: str,
                                text: str, channel: str, author: str = "",
                                media: Sequence[NewMedia] = ()) -> int | None:
        """An owner's reply by any path (email, CLI, web, API): when the caller opted out, the
        refusal is kept in the consent ledger and None returned; else it is queued, due now,
        and its outbox id returned. The outbox checks the opt-out again as it sends. `media`:
        the photos it texts as MMS, already on disk, committed with it."""
        if await self.is_suppressed(caller):
            await self.refuse_text(caller, business_number, OWNER_REPLY, text, channel)
            return None
        return await self.queue_reply(conversation_id, business_number, caller, text, OWNER_REPLY,
                                      author=author, channel=channel, media=media)

    async def queue_reply(self, conversation_id: int, sender: str, recipient: str, body: str,
                          kind: str, author: str = "", channel: str = "",
                          media: Sequence[NewMedia] = ()) -> int:
        """Queue a text in an existing conversation, due now (confirmations, help, owner replies);
        `author` is the signed-in owner who wrote it in the web inbox; `channel` the path it
        came by (email:OWNER, web:USER, api:TOKEN, cli), kept in the consent ledger; `media`
        its photos' rows (kept files), in the same commit."""
        now = time.time()
        async with self._transaction() as db:
            message_id, outbox_id = await self._queue(conversation_id, sender, recipient, body,
                                                      now, now, kind, author=author,
                                                      channel=channel)
            if media:
                await self._insert_media(db, message_id, media, now)
            return outbox_id
