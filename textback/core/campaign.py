"""10DLC campaign registration: what a carrier's campaign form asks, filled in from the config.

US carriers block unregistered business texting on local numbers (10DLC;
Twilio error 30034). The vetting (The Campaign Registry, through the
provider) asks for a use case and description, the message flow (how consent
is obtained, with a public page to show it: Twilio error 30909), consent
wording that names texting (30831, 30841), sample messages that carry the
brand name and STOP, the opt-in, opt-out and help keywords with their
replies, and a privacy statement that mobile data is not shared (CTIA
Messaging Principles and Best Practices).

textback's pattern is the one missed-call vendors document: the homeowner
called the business number, and textback answers that call once, with a way
to reply or opt out, and nothing more unless they reply.

Pure: config in, text out; no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textback.core.optout import HELP_WORDS, START_WORDS, STOP_WORDS
from textback.core.rules import render_for

if TYPE_CHECKING:  # the core reads config values; it never builds them
    from textback.config import Config

STOP_FOOTER = " Reply STOP to opt out."
# The caller the samples are rendered for: a reserved fictional number (NANPA 555-01xx).
SAMPLE_CALLER = "+12125550123"
# The public page with the disclosure and the privacy statement (no sign-in, no script).
CONSENT_PATH = "/consent"


@dataclass(frozen=True)
class Sample:
    key: str   # the config key of its template
    body: str  # rendered as the homeowner would get it, footer included


def _keywords(words: set[str]) -> str:
    return ", ".join(sorted(word.upper() for word in words if " " not in word and "-" not in word))


def samples(config: Config) -> list[Sample]:
    """Every text a conversation may start with, rendered with the first number and a sample
    caller, then the help answer: at least two, each as the homeowner would read it."""
    number = config.numbers[0]
    footer = STOP_FOOTER if config.text.reply_stop_footer else ""
    found = [Sample(key, render_for(config, template, number, SAMPLE_CALLER) + footer)
             for key, template in config.text.first_texts()]
    found.append(Sample("compliance.help_text", render_sample(config, config.compliance.help_text)))
    return found


def render_sample(config: Config, template: str) -> str:
    """A template as the sample caller of the first number would get it."""
    return render_for(config, template, config.numbers[0], SAMPLE_CALLER)


def description(config: Config) -> str:
    return config.compliance.campaign.description or (
        f"{config.business.name} answers each phone call it could not pick up with one text to "
        f"the caller, so they can reply by text instead of waiting for a call back. Replies "
        f"reach the business's staff, who answer them. No marketing is sent.")


def message_flow(config: Config, link_the_page: bool = True) -> str:
    """How consent is obtained, in the words the form's "message flow / call to action" wants;
    with the public consent page's address when the `web:` listener serves it."""
    numbers = ", ".join(n.number for n in config.numbers)
    flow = (f"The consumer starts the contact by calling {config.business.name} at {numbers}. "
            f"When that call is missed, {config.business.name} sends one text message to the "
            f"number that called, answering that call; it names the business and says "
            f"\"Reply STOP to opt out\". Nothing further is sent unless the consumer replies; "
            f"replies are answered by staff. Texting the number is the consumer's own choice; "
            f"STOP ends all messages at once and HELP gives contact details.")
    if link_the_page and config.web is not None:
        flow += (f" The consent disclosure is published at "
                 f"{config.web.public_url.rstrip('/')}{CONSENT_PATH}.")
    return flow


def privacy_statement(config: Config) -> str:
    return render_sample(config, config.compliance.campaign.privacy_statement)


def form(config: Config) -> list[tuple[str, str]]:
    """(field, value) in the order a campaign form asks them."""
    compliance = config.compliance
    fields = [("Brand name", config.business.name),
              ("Use case", compliance.campaign.use_case),
              ("Campaign description", description(config)),
              ("Message flow / call to action", message_flow(config))]
    fields += [(f"Sample message {i} ({sample.key})", sample.body)
               for i, sample in enumerate(samples(config), start=1)]
    fields += [
        ("Opt-in keywords", _keywords(START_WORDS)),
        ("Opt-in message", render_sample(config, compliance.start_confirmation)),
        ("Opt-out keywords", _keywords(STOP_WORDS) + ", and requests in plain words "
                                                     "(\"stop texting me\")"),
        ("Opt-out message", render_sample(config, compliance.stop_confirmation)),
        ("Help keywords", _keywords(HELP_WORDS)),
        ("Help message", render_sample(config, compliance.help_text)),
        ("Privacy statement", privacy_statement(config)),
        ("Embedded links", "no"),
        ("Embedded phone number",
         "yes" if any("{business_number" in t for _, t in config.text.first_texts())
         or "{business_number" in compliance.help_text else "no"),
        ("Age-gated content", "no"),
        ("Direct lending or loan arrangement", "no"),
    ]
    return fields


def template_warnings(config: Config) -> list[str]:
    """What a carrier's vetting would object to in the configured texts: a text without the
    business name or a way to opt out, or one longer than every sample registered."""
    registered = config.compliance.campaign.registered_samples
    longest = max((len(sample) for sample in registered), default=None)
    warnings = []
    for sample in samples(config):
        if config.business.name.lower() not in sample.body.lower():
            warnings.append(f"{sample.key}: does not name the business "
                            f"({config.business.name!r}); carriers require the brand name")
        if "stop" not in sample.body.lower() and sample.key.startswith("text."):
            warnings.append(f"{sample.key}: gives no way to opt out (\"Reply STOP to opt out\"); "
                            f"turn text.reply_stop_footer back on or write it in")
        if longest is not None and len(sample.body) > longest:
            warnings.append(f"{sample.key}: {len(sample.body)} characters, longer than every "
                            f"sample registered (at most {longest}); register it again")
    return warnings
