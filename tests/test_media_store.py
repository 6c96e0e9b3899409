"""The media rows' state machine in the store: claims, a stop mid-fetch, and the waiting alert."""

from __future__ import annotations

import time

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from textback.store import NewMedia

URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME"


async def test_a_fetch_interrupted_by_a_stop_is_pending_again_and_claimed_once(store):
    record = await store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "", "twilio", "MM1", "dana",
                                        media=[NewMedia(URL + "1", "image/jpeg"),
                                               NewMedia(URL + "2", "image/png", 2048)])
    again = await store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "", "twilio", "MM1", "dana",
                                       media=[NewMedia(URL + "1", "image/jpeg")])
    assert again.duplicate  # a webhook delivered twice adds no second set of rows
    first = await store.claim_media(time.time(), 10)
    assert [(r["url"], r["declared_size"], r["gateway"]) for r in first] == [
        (URL + "1", None, "twilio"), (URL + "2", 2048, "twilio")]
    assert await store.claim_media(time.time(), 10) == []  # claimed: nobody else fetches them
    assert await store.recover_interrupted_media() == 2
    assert len(await store.claim_media(time.time(), 10)) == 2
    rows = (await store.media_of([record.message_id]))[record.message_id]
    assert [r["attempts"] for r in rows] == [2, 2]


async def test_an_alert_waits_for_its_photos_and_goes_once_they_settle(store):
    record = await store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "", "twilio", "MM2", "dana",
                                        media=[NewMedia(URL + "1", "image/jpeg")])
    now = time.time()
    alert = await store.claim_mail("alerts", record.alert_id, now)
    waiting = await store.media_unsettled(record.message_id)
    await store.defer_alert(alert["id"], waiting["created_at"] + 60)
    row = await store._one("SELECT state, attempts, retry_at FROM alerts WHERE id = ?",
                           (record.alert_id,))
    assert (row["state"], row["attempts"]) == ("pending", 0)  # waiting spends no try
    assert row["retry_at"] == waiting["created_at"] + 60
    [item] = await store.claim_media(now, 10)
    await store.fail_media(item["id"], "refused: HTTP 404")
    row = await store._one("SELECT retry_at FROM alerts WHERE id = ?", (record.alert_id,))
    assert row["retry_at"] == 0  # due at once
    assert await store.media_unsettled(record.message_id) is None
    [untold] = await store.untold_media_failures()
    assert (untold["message_id"], untold["owner_id"]) == (record.message_id, "dana")
    await store.mark_media_told(record.message_id)
    assert await store.untold_media_failures() == []


async def test_photos_that_settle_while_their_alert_is_claimed_do_not_hold_it_back(store):
    record = await store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "", "twilio", "MM3", "dana",
                                        media=[NewMedia(URL + "1", "image/jpeg")])
    alert = await store.claim_mail("alerts", record.alert_id, time.time())
    [item] = await store.claim_media(time.time(), 10)
    await store.keep_media(item["id"], "ab" * 32, "image/jpeg", True, 100)  # while it is claimed
    await store.defer_alert(alert["id"], time.time() + 60)
    row = await store._one("SELECT retry_at FROM alerts WHERE id = ?", (record.alert_id,))
    assert row["retry_at"] == 0
