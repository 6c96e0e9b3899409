"""Text templates: a fixed set of placeholders, checked when the config loads.

Templates use `{name}` placeholders, or `{name|fallback}` where `fallback`
is the text used when the value is empty at send time (so a text never says
"Hi ,"). Only the names in PLACEHOLDERS exist; format specs, conversions and
attribute access are refused so a template can never reach into Python
objects.
"""

from __future__ import annotations

import string

PLACEHOLDERS = {
    "business_name": "the business name from business.name",
    "business_number": "the number the caller dialled, in national format",
    "owner_name": "the full name of the owner of the conversation",
    "owner_first_name": "the first name of the owner of the conversation",
    "caller_number": "the caller's number, in national format",
    "caller_name": "the caller's name, when the number is in `contacts`",
    "next_opening": "when the business next opens, e.g. 'Monday 7:00 AM'",
}


class TemplateError(ValueError):
    pass


def placeholders_in(template: str) -> list[tuple[str, bool]]:
    """(name, has a fallback) for each placeholder, in order; raise TemplateError on bad syntax."""
    found = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"template syntax: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        name, bar, _fallback = field.partition("|")
        if spec or conversion or not name.isidentifier():
            raise TemplateError(f"placeholder {{{field}}} must be a plain name such as {{business_name}}")
        found.append((name, bool(bar)))
    return found


# Placeholders whose value can be empty at send time, with an example fallback:
# a template must give these one, so a text never has a blank where they stand.
MAY_BE_EMPTY = {"caller_name": "there", "next_opening": "soon"}


def check_template(template: str) -> None:
    placeholders = placeholders_in(template)
    unknown = [name for name, _ in placeholders if name not in PLACEHOLDERS]
    if unknown:
        known = ", ".join(sorted(PLACEHOLDERS))
        raise TemplateError(f"unknown placeholder(s) {', '.join('{%s}' % n for n in unknown)}; known: {known}")
    for name, has_fallback in placeholders:
        if name in MAY_BE_EMPTY and not has_fallback:
            raise TemplateError(f"{{{name}}} can be empty when the text is sent; give it a fallback, "
                                f"e.g. {{{name}|{MAY_BE_EMPTY[name]}}}")


def render(template: str, values: dict[str, str]) -> str:
    """Fill a checked template: control characters flattened, empty values replaced by fallbacks."""
    out = []
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            name, _, fallback = field.partition("|")
            out.append(_one_line(values.get(name, "")) or fallback)
    return "".join(out)


def _one_line(value: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
