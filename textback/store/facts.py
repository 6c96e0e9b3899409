"""The facts a decision needs, each read as one statement (one snapshot of the store)."""

from __future__ import annotations

from textback.core.inbound import SenderFacts
from textback.core.missed_call import CallFacts
from textback.core.rules import RecentTexts, prefix_of
from textback.store.connection import Connection


class FactRows(Connection):
    """Reads that gather a decision's facts at once: a finished call's, an inbound text's."""

    async def call_facts(self, caller: str, business_number: str | None, now: float) -> CallFacts:
        """What deciding a call from `caller` ("" if none) to `business_number` (None: not one of
        ours) at `now` needs: the conversation's owner, the number's turn, the automatic texts
        of the last hour and day (all, and to the caller's prefix), the caller's class and
        opt-out."""
        row = await self._one(
            "SELECT"
            " (SELECT owner_id FROM conversations WHERE caller = ? AND business_number = ?)"
            "  AS owner_id,"
            " (SELECT started FROM conversation_turns WHERE business_number = ?) AS started,"
            " (SELECT class FROM contact_classes WHERE number = ?) AS class,"
            " EXISTS (SELECT 1 FROM suppressions WHERE number = ?) AS opted_out,"
            " recent.hour, recent.day, recent.prefix"
            " FROM (SELECT COUNT(CASE WHEN m.created_at >= ? THEN 1 END) AS hour,"
            "  COUNT(*) AS day,"
            "  COUNT(CASE WHEN m.created_at >= ? AND o.recipient LIKE ? || '%' THEN 1 END)"
            "  AS prefix"
            "  FROM messages m JOIN outbox o ON o.message_id = m.id"
            "  WHERE m.kind = 'auto' AND m.created_at >= ?) AS recent",
            (caller, business_number, business_number, caller, caller,
             now - 3600, now - 3600, prefix_of(caller), now - 86400))
        return CallFacts(row["owner_id"], row["started"] or 0,
                         RecentTexts(row["hour"], row["day"], row["prefix"]),
                         row["class"], bool(row["opted_out"]))

    async def sender_facts(self, sender: str, business_number: str) -> SenderFacts:
        """What deciding a text from `sender` to `business_number` needs: the number's turn and
        whether the sender opted out."""
        row = await self._one(
            "SELECT (SELECT started FROM conversation_turns WHERE business_number = ?) AS started,"
            " EXISTS (SELECT 1 FROM suppressions WHERE number = ?) AS opted_out",
            (business_number, sender))
        return SenderFacts(row["started"] or 0, bool(row["opted_out"]))
