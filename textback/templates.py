"""Text templates: a fixed set of placeholders, checked when the config loads.

Templates use `{name}` placeholders. Only the names in PLACEHOLDERS exist;
format specs, conversions and attribute access are refused so a template can
never reach into Python objects.
"""

from __future__ import annotations

import string

PLACEHOLDERS = {
    "business_name": "the business name from business.name",
    "business_number": "the number the caller dialled, in national format",
    "owner_name": "the full name of the owner of the conversation",
    "owner_first_name": "the first name of the owner of the conversation",
    "caller_number": "the caller's number, in national format",
}


class TemplateError(ValueError):
    pass


def placeholders_in(template: str) -> list[str]:
    """The placeholder names a template uses, in order; raise TemplateError on bad syntax."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"template syntax: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion or not field.isidentifier():
            raise TemplateError(f"placeholder {{{field}}} must be a plain name such as {{business_name}}")
        names.append(field)
    return names


def check_template(template: str) -> None:
    unknown = [name for name in placeholders_in(template) if name not in PLACEHOLDERS]
    if unknown:
        known = ", ".join(sorted(PLACEHOLDERS))
        raise TemplateError(f"unknown placeholder(s) {', '.join('{%s}' % n for n in unknown)}; known: {known}")


def render(template: str, values: dict[str, str]) -> str:
    """Fill a checked template; missing values render as empty text, stripped of control characters."""
    clean = {name: _one_line(values.get(name, "")) for name in PLACEHOLDERS}
    return template.format_map(clean)


def _one_line(value: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
