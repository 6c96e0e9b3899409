"""When a conversation waits for the company's answer, and which waiting texts are reported.

A conversation waits when its homeowner's latest text has no owner answer after it. The
store keeps that on the conversation's own row, in the transaction of the change that
starts or ends it (`unanswered`, `waiting_since`, and the text that waits, `last_reply_id`):

* a homeowner's text starts it (and reopens a conversation marked done), but for an opt-out
  keyword from a number already opted out: kept in the thread, it starts nothing and alerts
  nobody;
* an owner's answer ends it, by any path: the inbox, the API, a reply email, the CLI, the
  owner's own phone;
* done ends it (marked done in the inbox, or an outcome that closes the conversation: won,
  lost, spam), so a call that reopens the conversation later does not bring the old text
  back: only a text after the call waits, from its own time;
* an opt-out of the caller's number ends it: nobody may text them an answer (a text they
  send later waits again);
* retention ends it when it deletes the text that waited.

A snoozed conversation still waits, but is not shown or reported until its snooze ends: no
write happens when it ends, so every reader asks `snoozed_until <= now` itself. Self-tests'
conversations and owners' own phones never wait for anyone.

The inbox's Waiting view lists every waiting conversation, oldest first, a page at a time.
The daily digest and escalation report only texts that came within the last
REPORTED_DAYS: enough for the longest escalation and its reminder (each at most 7 × 24
hours of business minutes: 21 eight-hour weekdays, so both together about nine calendar
weeks), and an owner's digest lists a text on up to that many days. Older ones stay in the
Waiting view. So the digest reads one index range as long as that window, whatever the history's length.
"""

from __future__ import annotations

REPORTED_DAYS = 90


def reported_since(now: float) -> float:
    """The oldest a waiting text can be and still be escalated or listed in the digest."""
    return now - REPORTED_DAYS * 86400
