"""The first text names the owner the conversation actually gets, not just the number's default."""

from __future__ import annotations

import time

from lab.configs import BUSINESS_NUMBER
from textback.core.tracker import CallFinished

OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com"},
          {"id": "sam", "name": "Sam Ortiz", "email": "sam@example.com"}]


def missed_from(caller: str, linkedid: str) -> CallFinished:
    now = time.time()
    return CallFinished(linkedid, BUSINESS_NUMBER, caller, "", "PJSIP/carrier-1", now - 20, now,
                        "missed", "no_answer")


async def test_round_robin_texts_name_each_conversations_owner(offline_daemon):
    daemon = await offline_daemon(**{
        "owners": OWNERS, "text.dedupe_hours": 0,
        "text.template": "Hi, {owner_first_name} at {business_name} here. We'll call you back.",
        "numbers": [{"number": BUSINESS_NUMBER, "owner": "dana", "assignment": "round_robin",
                     "owners": ["sam", "dana"]}]})
    for linkedid, caller in (("1.1", "+12125550171"), ("1.2", "+12125550172"), ("1.3", "+12125550171")):
        await daemon.finish_call(missed_from(caller, linkedid))
    due = await daemon.store.due(time.time() + 60)
    bodies = [(item.recipient, item.body.split(" at ")[0]) for item in due]
    # The third call is the first caller again: their conversation, and its owner, stay.
    assert bodies == [("+12125550171", "Hi, Sam"), ("+12125550172", "Hi, Dana"),
                      ("+12125550171", "Hi, Sam")]
    conversations = {c["caller"]: c["owner_id"] for c in await daemon.store.inbox()}
    assert conversations == {"+12125550171": "sam", "+12125550172": "dana"}
