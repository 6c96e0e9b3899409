"""An HTML email body as plain text, without the history mail clients mark up. No I/O.

Some phones and mail clients send a reply as HTML only. Their quoted history
and signature are elements, not "> " lines, so they are cut from the tree
here (lxml) before inscriptis lays the rest out as text; textback.core.replies
then strips whatever plain-text quote or signature is left, as for a text/plain
reply.
"""

from __future__ import annotations

from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.html_engine import Inscriptis
from inscriptis.model.config import ParserConfig
from lxml import etree
from lxml.html import HTMLParser, HtmlElement, document_fromstring


def _has_class(name: str) -> str:
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


# Elements that hold quoted history or a client's signature, and nothing the owner wrote.
QUOTED = etree.XPath(" | ".join([
    f"//body//*[{_has_class('gmail_quote')}]",              # Gmail: attribution and quote
    f"//body//*[{_has_class('gmail_signature')}]",          # Gmail: signature ...
    f"//body//*[{_has_class('gmail_signature_prefix')}]",   # ... and its "-- " line
    "//body//blockquote[@type='cite']",                     # Apple Mail, Thunderbird
    f"//body//*[{_has_class('moz-cite-prefix')}]",          # Thunderbird: "On ... wrote:"
    f"//body//*[{_has_class('yahoo_quoted')}]",             # Yahoo Mail
    "//body//*[@id='Signature']",                           # Outlook on the web, new Outlook
    "//body//*[@id='ms-outlook-mobile-signature']",         # Outlook for iOS and Android
]))

# Outlook does not wrap the history: it starts at one of these and runs to the end of the body.
HISTORY_STARTS = etree.XPath(
    "//body//*[@id='appendonsend' or @id='divRplyFwdMsg' "
    "or @id='mail-editor-reference-message-container']")

# Firefox's defaults; inscriptis's "relaxed" profile indents every <div>.
_LAYOUT = ParserConfig(css=CSS_PROFILES["strict"])
# The text is already decoded: a <meta charset> or <?xml encoding?> in it must not re-decode it.
_PARSER = HTMLParser(encoding="utf-8")


def _cut_from(start: HtmlElement) -> None:
    """Remove `start` and everything after it in document order."""
    node: HtmlElement | None = start
    while node is not None and node.tag != "body":
        for later in list(node.itersiblings()):
            node.getparent().remove(later)
        node.tail = None
        node = node.getparent()
    start.getparent().remove(start)


def new_words(html: str) -> str:
    """The text of an HTML reply, with the markup of quoted history and signatures removed."""
    try:
        tree = document_fromstring(html.encode("utf-8", "replace"), parser=_PARSER)
    except etree.ParserError:  # nothing but whitespace or comments
        return ""
    starts = HISTORY_STARTS(tree)
    if starts:
        _cut_from(starts[0])
    for element in QUOTED(tree):
        element.drop_tree()  # keeps the text that follows it: a bottom-posted answer
    return Inscriptis(tree, _LAYOUT).get_text()
