"""The public consent page (/consent): how a homeowner comes to get a text, what is sent, how
to stop it, and the privacy statement, for a 10DLC campaign's "proof of consent" field.

No sign-in, no script, no personal data: only what the config says of the business
(textback/core/campaign.py). The web server adds the strict CSP to it like every page.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
from aiohttp import web

from textback.core import campaign
from textback.core.optout import STOP_WORDS

if TYPE_CHECKING:
    from textback.web.context import HttpContext

TEMPLATES = Path(__file__).resolve().parent / "templates"


def consent_routes(context: "HttpContext"):
    """The RouteProvider of the public consent page; the page is rendered once, from the config."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)

    def page(config) -> str:
        compliance = config.compliance
        stop_words = ", ".join(sorted(w.upper() for w in STOP_WORDS if w.isalpha() and w != "stop"))
        return environment.get_template("consent.html").render(
            business=config.business.name, flow=campaign.message_flow(config, link_the_page=False),
            samples=[s for s in campaign.samples(config) if s.key.startswith("text.")],
            stop_words=stop_words,
            stop_reply=campaign.render_sample(config, compliance.stop_confirmation),
            start_reply=campaign.render_sample(config, compliance.start_confirmation),
            help_reply=campaign.render_sample(config, compliance.help_text),
            privacy=campaign.privacy_statement(config))

    def provide(app: web.Application) -> None:
        body = page(context.config)

        async def consent(request: web.Request) -> web.Response:
            return web.Response(text=body, content_type="text/html", charset="utf-8",
                                headers={"Cache-Control": "public, max-age=3600"})

        app.router.add_get(campaign.CONSENT_PATH, consent)

    return provide
