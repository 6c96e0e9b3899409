"""The calls, scorecard and admin pages of the inbox (the admin page for the admin role only)."""

from __future__ import annotations

import csv
import io
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aiohttp import web

from textback.core import consent
from textback.core.call_words import CALL_DECISIONS, CALL_REASONS, call_title
from textback.core.numbers import national, parse_address, to_e164
from textback.core.scorecard import report_csv
from textback.store.web import CALL_FILTERS
from textback.core import views
from textback.web.chart import funnels
from textback.web.request_keys import FORM, USER

if TYPE_CHECKING:
    from textback.web.inbox import Inbox

timeline = logging.getLogger("textback.timeline")
OUTCOMES = ("missed", "answered")
MAX_FILTER_CHARS = 40
RECENT_INCIDENTS = 10  # recovered incidents the admin page lists
RECENT_DELIVERIES = 50  # webhook deliveries the admin page lists, as `textback webhooks log`


def month_period(month: str, timezone: str) -> tuple[float, float]:
    """'YYYY-MM' -> its first moment and the next month's, in the business's time zone."""
    first = datetime.strptime(month, "%Y-%m").replace(tzinfo=ZoneInfo(timezone))
    after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return first.timestamp(), after.timestamp()


class Reports:
    def __init__(self, inbox: "Inbox", app: web.Application):
        self.inbox = inbox
        self.config = inbox.config
        page = inbox.page
        app.router.add_get("/calls", page(self.calls))
        app.router.add_get("/scorecard", page(self.scorecard))
        app.router.add_get("/scorecard.csv", page(self.scorecard_csv))
        app.router.add_get("/admin", page(self.admin, admin=True))
        app.router.add_post("/admin/optout", page(self.optout, admin=True))
        app.router.add_get("/admin/consent.csv", page(self.consent_csv, admin=True))

    @property
    def store(self):
        return self.inbox.store

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.config.business.timezone)

    async def calls(self, request: web.Request) -> web.StreamResponse:
        """Every inbound call, filtered: why was (or wasn't) this caller texted?"""
        query = request.query
        equal = {}
        for column in CALL_FILTERS:
            value = query.get(column, "").strip()
            if len(value) > MAX_FILTER_CHARS:
                raise web.HTTPBadRequest(text=f"Bad request: {column} is too long")
            if value:
                equal[column] = value
        today = datetime.now(self.zone).date()
        try:
            start = datetime.strptime(query.get("from") or f"{today - timedelta(days=7)}", "%Y-%m-%d")
            end = datetime.strptime(query.get("to") or f"{today}", "%Y-%m-%d")
        except ValueError:
            raise web.HTTPBadRequest(text="Bad request: dates are YYYY-MM-DD") from None
        since = start.replace(tzinfo=self.zone).timestamp()
        until = (end.replace(tzinfo=self.zone) + timedelta(days=1)).timestamp()
        rows = await self.store.calls_page(since, until, **equal)
        tz = self.config.business.timezone
        calls = [{**row, "when": views.when(row["started_at"], tz),
                  "who": national(row["caller"]) if row["caller"] else row["caller_raw"],
                  "number_label": views.number_label(self.config, row["business_number"]),
                  "title": call_title(row["outcome"], row["reason"], row["decision"] or "")}
                 for row in rows]
        return self.inbox.render("calls.html", request, {
            "calls": calls, "filters": equal, "from": f"{start:%Y-%m-%d}", "to": f"{end:%Y-%m-%d}",
            "numbers": self.config.numbers, "outcomes": OUTCOMES,
            "reasons": CALL_REASONS, "decisions": CALL_DECISIONS})

    async def _cards(self, request: web.Request) -> tuple[str, list[dict]]:
        """The month asked for (default this one) and its scorecard: what `textback report` prints."""
        month = request.query.get("month") or datetime.now(self.zone).strftime("%Y-%m")
        try:
            start, end = month_period(month, self.config.business.timezone)
        except ValueError:
            raise web.HTTPBadRequest(text="Bad request: the month is YYYY-MM") from None
        return month, await self.store.scorecard(start, end, month)

    async def scorecard(self, request: web.Request) -> web.StreamResponse:
        month, cards = await self._cards(request)
        start, end = month_period(month, self.config.business.timezone)
        labels = {n.number: views.number_label(self.config, n.number) for n in self.config.numbers}
        return self.inbox.render("scorecard.html", request, {
            "month": month, "cards": cards, "funnels": funnels(cards, labels), "labels": labels,
            "by_intake": await self.store.scorecard_by_intake(start, end)})

    async def scorecard_csv(self, request: web.Request) -> web.StreamResponse:
        month, cards = await self._cards(request)
        by_intake = await self.store.scorecard_by_intake(
            *month_period(month, self.config.business.timezone))
        out = io.StringIO()
        csv.writer(out).writerows(report_csv(cards, by_intake, month))
        return web.Response(text=out.getvalue(), content_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="textback-scorecard-{month}.csv"'})

    async def admin(self, request: web.Request) -> web.StreamResponse:
        users = await self.store.web_users()
        tz = self.config.business.timezone
        people = [{"owner": o, "password": bool(users.get(o.id, {}).get("has_password")),
                   "last_sign_in": views.when(users.get(o.id, {}).get("last_sign_in_at"), tz)}
                  for o in self.config.owners]
        suppressed = [{**row, "since": views.when(row["since"], tz)}
                      for row in await self.store.suppressions()]
        fraud = [{**row, "when": views.when(row["started_at"], tz),
                  "who": national(row["caller"]) if row["caller"] else row["caller_raw"]}
                 for row in await self.store.fraud_events()]
        return self.inbox.render("admin.html", request, {
            "people": people, "suppressed": suppressed, "fraud": fraud,
            "open_incidents": views.incident_rows(await self.store.open_incidents(), tz),
            "closed_incidents": views.incident_rows(
                await self.store.closed_incidents(RECENT_INCIDENTS), tz),
            "deliveries": views.delivery_rows(await self.store.delivery_log(RECENT_DELIVERIES), tz),
            "said": views.SAID.get(request.query.get("said", ""), "")})

    async def consent_csv(self, request: web.Request) -> web.StreamResponse:
        """One number's consent ledger as a CSV download, as `textback consent --format csv`."""
        number = parse_address(request.query.get("number", "")[:MAX_FILTER_CHARS * 2],
                               self.config.numbers[0].region).number
        if number is None:
            raise web.HTTPBadRequest(text="Bad request: that is not a valid phone number")
        rows = await self.store.consent_record(number)
        body = consent.render(rows, "csv", self.config.business.timezone)
        return web.Response(text=body, content_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="textback-consent-{number[1:]}.csv"'})

    async def optout(self, request: web.Request) -> web.StreamResponse:
        """Add or lift a suppression with the rules of `textback optout`."""
        form = request[FORM]
        number = to_e164(str(form.get("number", ""))[:40], self.config.numbers[0].region)
        if number is None:
            raise web.HTTPBadRequest(text="Bad request: that is not a valid phone number")
        user = request[USER]
        if form.get("action") == "add":
            said = "optout_added" if await self.store.suppress(number, f"web:{user.id}") \
                else "optout_already"
        elif form.get("action") == "remove":
            said = "optout_removed" if await self.store.unsuppress(number, f"web:{user.id}") \
                else "optout_absent"
        else:
            raise web.HTTPBadRequest(text="Bad request: add or remove")
        timeline.info("opt-out list (web, %s): %s %s", user.id, said, number)
        raise web.HTTPSeeOther(f"/admin?said={said}")
