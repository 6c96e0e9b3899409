"""What an owner's email reply means, decided from values. No I/O.

The mail edge (textback/mailin.py) hands over the parsed message and what the
store knows about the reply token; this module says whether to refuse it,
drop it (automatic mail only), record a bookkeeping command, tell the owner
why nothing can be sent, or text the homeowner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from email.headerregistry import Address
from email.message import EmailMessage

import authres
from mailparser_reply import EmailReplyParser

from textback.core.media import Attachment
from textback.core.intake import BUDGET, LOCATION, PROJECT, SERVICE_AREA, TIMING
from textback.core.segments import count_segments
from textback.core.htmlmail import new_words

TOKEN_LOCAL = re.compile(r"^reply\+([a-z2-7]{24})$")
COMMAND = re.compile(r"^#(assign|booked|qualified|won|lost|spam|project|budget|timing|when|"
                     r"location|zip|area)\b\s*(.*)$", re.IGNORECASE)
STAGES = ("booked", "qualified", "won", "lost", "spam")
# Commands that correct an intake fact (textback/core/intake.py), and the field each sets:
# "#project kitchen", "#budget 80k", "#when next month", "#zip 11215", "#area out".
INTAKE_COMMANDS = {"project": PROJECT, "budget": BUDGET, "timing": TIMING, "when": TIMING,
                   "location": LOCATION, "zip": LOCATION, "area": SERVICE_AREA}
RFC3834_KEYWORDS = ("auto-generated", "auto-replied", "auto-notified")
# What the quote parser reads at most: its regexes cost more than linearly in the line count,
# and an owner's new words are at the top. Runs of blank lines count as one.
MAX_PARSED_LINES = 1000
MAX_PARSED_CHARS = 50_000
_BLANK_RUN = re.compile(r"\n(?:[ \t]*\n){2,}")


@dataclass(frozen=True)
class Verdict:
    """What to do with a reply; every accepted one but an automatic reply reaches the owner.

    `action` is refuse (SMTP 5xx: the sender's server tells them), drop (an
    automatic reply: accepted, logged, nobody answered), command, text,
    too_long, nothing_to_send or unreadable (the owner is emailed why). `reason` is
    textback's own wording, never the sender's; `attachments` are the names
    of the files a reply carried, as the sender wrote them. A `text` may have no
    words when it carries `files`: the daemon sends them as MMS, or tells the
    owner why it cannot.
    """

    action: str
    reason: str = ""
    text: str = ""
    command: str = ""
    argument: str = ""
    attachments: tuple[str, ...] = ()
    files: tuple[Attachment, ...] = ()  # a text's files, to go as MMS where the gateway can
    in_body: tuple[str, ...] = ()  # pictures in the HTML body (cid:), not texted; named back


def token_of(recipient: str, domain: str) -> str | None:
    """The token in reply+TOKEN@domain, or None for any other address."""
    local, _, host = recipient.strip().lower().rpartition("@")
    if host != domain.lower():
        return None
    match = TOKEN_LOCAL.match(local)
    return match.group(1) if match else None


def automatic_because(message: EmailMessage, envelope_sender: str | None) -> str | None:
    """What marks the message as automatic (RFC 3834), or None for mail a person sent.

    Vacation notices, bounces and list mail must never turn into texts. The
    answer names the header and at most a known keyword, never the sender's text.
    """
    auto = (message.get("Auto-Submitted") or "no").split(";")[0].strip().lower()
    precedence = (message.get("Precedence") or "").strip().lower()
    if auto != "no":
        return f"Auto-Submitted: {auto if auto in RFC3834_KEYWORDS else 'another value'}"
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    if not envelope_sender or envelope_sender == "<>":
        return "empty envelope sender (a bounce)"
    for header in ("X-Autoreply", "X-Autorespond"):
        if message.get(header) is not None:
            return f"{header} header"
    return None


def from_address(message: EmailMessage) -> str | None:
    """The single From address, lower-cased; None when absent, several, or malformed."""
    try:
        header = message["From"]
        addresses: tuple[Address, ...] = header.addresses if header is not None else ()
    except (AttributeError, IndexError, ValueError):
        return None
    if len(addresses) != 1 or not addresses[0].addr_spec or "@" not in addresses[0].addr_spec:
        return None
    return addresses[0].addr_spec.lower()


def authenticated(message: EmailMessage, authserv_id: str | None, sender: str) -> bool:
    """With an authserv-id configured, our own MX must vouch for the From domain.

    Only the topmost Authentication-Results header counts (our MX adds it last;
    anything below it came with the message), parsed per RFC 8601 (authres), so
    comments and look-alike methods (`x-dkim`) never pass. It must carry our
    authserv-id, no DMARC result other than pass, and a pass that is aligned
    with the From domain: dmarc by header.from, dkim by header.d, spf by
    smtp.mailfrom. Aligned means the same domain or a subdomain of it.
    """
    if authserv_id is None:
        return True
    headers = message.get_all("Authentication-Results") or []
    if not headers:
        return False
    try:
        parsed = authres.AuthenticationResultsHeader.parse_value(" ".join(str(headers[0]).split()))
    except Exception:  # noqa: BLE001 - authres raises SyntaxError and its own errors on junk
        return False
    if (parsed.authserv_id or "").lower() != authserv_id.lower():
        return False
    domain = sender.rpartition("@")[2].lower()
    results = [r for r in parsed.results if str(r.result).lower() == "pass" or r.method == "dmarc"]
    if any(r.method == "dmarc" and str(r.result).lower() != "pass" for r in results):
        return False
    vouched = {"dmarc": ("header", "from"), "dkim": ("header", "d"), "spf": ("smtp", "mailfrom")}
    for result in results:
        wanted = vouched.get(str(result.method).lower())
        for prop in result.properties if wanted else ():
            if (prop.type.lower(), prop.name.lower()) == wanted and _aligned(prop.value, domain):
                return True
    return False


def _aligned(value: str, domain: str) -> bool:
    found = str(value).rpartition("@")[2].strip().lower().rstrip(".")
    return bool(domain) and (found == domain or found.endswith("." + domain))


def new_text(message: EmailMessage, owner_name: str = "", quoted: tuple[str, ...] = ()) -> str:
    """The owner's new words: the body without quoted history, signature or sign-off.

    The plain part when there is one, else the HTML part as text (some phones
    send HTML only). The library removes quotes and signature blocks; a bare
    sign-off with the owner's own name ("Dana") above a signature is dropped
    here, since the homeowner already sees who writes. `quoted` is every line
    the alert showed (textback.core.alerts.quoted_lines): whatever repeats it is cut,
    however the owner's mail client marked it up (strip_repeats).
    """
    part = message.get_body(("plain", "html"))
    if part is None:
        return ""
    body = _decoded(part)
    if part.get_content_subtype() == "html":
        body = new_words(body[:MAX_PARSED_CHARS * 4])
    body = _bounded(body.replace("\r\n", "\n"))
    replies = EmailReplyParser(languages=["en"]).read(body).replies
    # A part the library splits off at "On ... wrote:" or a header block (it has headers) is
    # the quoted alert, with perhaps an answer written below it.
    known = Repeats(quoted)
    lines: list[str] = []
    for reply in replies:
        lines += strip_repeats(reply.body.splitlines(), known, quoted_region=bool(reply.headers))
    names = {owner_name.lower(), owner_name.split()[0].lower()} if owner_name.strip() else set()
    lines = _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip().splitlines()
    while len(lines) > 1 and lines[-1].strip(" ,.-–—").lower() in names:
        lines.pop()
    return "\n".join(lines).strip()


# The line a mail client puts above a forwarded message; what follows is the alert itself.
_FORWARD_MARK = re.compile(r"^\s*(?:-{2,}\s*(?:forwarded|original) message\s*-{2,}"
                           r"|begin forwarded message:)\s*$", re.IGNORECASE)
_ANGLED = re.compile(r"<[^<>\s]*>")  # an address or a link a client writes beside a name
_WORD = re.compile(r"\w+")
# A repeat this short may well be the owner's own answer ("Yes", "Thanks!") and is kept,
# unless it sits next to longer repeats (a table cell of a quoted thread line, say).
MIN_REPEAT_WORDS = 3
# A line that repeats only part of one of the alert's lines ("Tuesday at 10" out of the
# homeowner's "Can you come Tuesday at 10 or Wednesday?") is an owner's echo unless it is
# this long; a whole line, or a repeat that runs over several lines, is a quote.
MIN_PARTIAL_WORDS = 8


def _words(line: str) -> str:
    """A line reduced to its words, lower case: the form in which two lines are compared.

    Quote marks, punctuation, table layout and addresses in angle brackets differ from one
    mail client to the next; the words a quote repeats do not.
    """
    return " ".join(_WORD.findall(_ANGLED.sub(" ", line).casefold()))


class Repeats:
    """What an alert showed, to tell whether lines of a reply repeat it (pure)."""

    def __init__(self, quoted: tuple[str, ...]):
        # One string, each line's words between spaces and lines apart: words never span two.
        self._text = "\n" + "\n".join(f" {words} " for words in map(_words, quoted) if words) + "\n"

    def repeats(self, words: str) -> bool:
        """Whether these words (a line, or lines a client wrapped) appear in the alert as they are."""
        return bool(words) and f" {words} " in self._text

    def whole(self, words: str) -> bool:
        """Whether these words are the whole of one of the alert's lines."""
        return bool(words) and f"\n {words} \n" in self._text


def strip_repeats(lines: list[str], known: Repeats, quoted_region: bool = False) -> list[str]:
    """The lines that are the owner's own: without "> " lines, forward marks and repeats of the alert.

    A run of consecutive lines, each of which (or which, joined) appears in the alert, is
    a quote when it holds at least MIN_REPEAT_WORDS words in all, and is a whole line of
    the alert, runs over several lines, or holds MIN_PARTIAL_WORDS words. In a `quoted_region` (the part
    the parser found below "On ... wrote:" or a header block) everything up to the last
    quoted line is the quote, and only what follows it (a bottom-posted answer) is kept;
    a region that quotes nothing of the alert is someone else's message and is dropped.
    """
    marked = {k for k, line in enumerate(lines)
              if line.lstrip().startswith(">") or _FORWARD_MARK.match(line)}
    unmarked = ["" if k in marked else line for k, line in enumerate(lines)]
    spans = [(start, end) for start, end, whole in _repeat_spans(unmarked, known)
             if _count(lines[start:end]) >= MIN_REPEAT_WORDS
             and (whole or end - start > 1 or _count(lines[start:end]) >= MIN_PARTIAL_WORDS)]
    if quoted_region:
        ends = [end for _, end in spans] + [k + 1 for k in marked]
        return lines[max(ends):] if ends else []
    return _without(lines, spans + [(k, k + 1) for k in marked])


def _count(lines: list[str]) -> int:
    return sum(len(_words(line).split()) for line in lines)


def _repeat_spans(lines: list[str], known: Repeats) -> list[tuple[int, int, bool]]:
    """[start, end) of each maximal run of consecutive lines that repeats the alert, and
    whether one of its parts is the whole of an alert line."""
    spans: list[tuple[int, int, bool]] = []
    i = 0
    while i < len(lines):
        end, whole = _run_from(lines, i, known)
        if end == i:
            i += 1
        elif spans and spans[-1][1] == i:
            spans[-1], i = (spans[-1][0], end, spans[-1][2] or whole), end
        else:
            spans.append((i, end, whole))
            i = end
    return spans


def _run_from(lines: list[str], start: int, known: Repeats) -> tuple[int, bool]:
    """The end of the longest run from `start` whose joined words repeat one alert line (or
    `start`), and whether they are that whole line.

    A client may wrap a long text over several lines, so lines are joined before comparing.
    """
    end, joined, whole = start, "", False
    for k in range(start, len(lines)):
        words = _words(lines[k])
        if not words:
            break
        joined = f"{joined} {words}".strip()
        if not known.repeats(joined):
            break
        end, whole = k + 1, known.whole(joined)
    return end, whole


def _without(lines: list[str], spans: list[tuple[int, int]]) -> list[str]:
    cut = {k for start, end in spans for k in range(start, end)}
    return [line for k, line in enumerate(lines) if k not in cut]


def _decoded(part: EmailMessage) -> str:
    """The part's text; an unknown or wrong charset is read as UTF-8 with replacements, not refused."""
    try:
        return part.get_content()
    except (LookupError, UnicodeError, AssertionError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def _bounded(body: str) -> str:
    """What the quote parser may read: blank-line runs folded, then at most so many lines and chars."""
    body = _BLANK_RUN.sub("\n\n", body[:MAX_PARSED_CHARS * 4])
    return "\n".join(body[:MAX_PARSED_CHARS].split("\n")[:MAX_PARSED_LINES])


def _file_parts(message: EmailMessage) -> list[EmailMessage]:
    return [part for part in message.walk() if not part.is_multipart()
            and part.get_content_type() not in ("text/plain", "text/html")]


def _part_name(part: EmailMessage) -> str:
    return part.get_filename() or part.get_content_type()


_CID = re.compile(r"""\bsrc\s*=\s*["']?cid:([^"'\s>]+)""", re.IGNORECASE)


def attachments_of(message: EmailMessage) -> tuple[tuple[Attachment, ...], tuple[str, ...]]:
    """A reply's files to text as MMS, and the names of the pictures left out because they are
    part of the email's HTML body (an `<img src="cid:...">`: a signature's logo, a picture
    pasted into the text), which the owner is told about rather than texting them unasked.

    A file's type is as the email declared it: the MMS edge checks the bytes against it."""
    referenced: set[str] = set()
    for part in message.walk():
        if part.get_content_type() == "text/html":
            try:
                html = part.get_content()
            except (LookupError, ValueError):
                continue
            referenced |= {cid.strip().lower() for cid in _CID.findall(html)}
    files: list[Attachment] = []
    in_body: list[str] = []
    for part in _file_parts(message):
        cid = (part.get("Content-ID") or "").strip().strip("<>").lower()
        if cid and cid in referenced and part.get_content_disposition() != "attachment":
            in_body.append(_part_name(part))
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            data = b""
        files.append(Attachment(part.get_filename() or "", part.get_content_type(), data))
    return tuple(files), tuple(in_body)


# An owner's reply may take this many SMS segments when no `reply_mail:` section sets
# reply_mail.max_segments (its own default is the same).
DEFAULT_MAX_SEGMENTS = 3


def segment_limit(reply_mail: Any) -> int:
    """How many segments an owner's reply may take, by email, the CLI, the web inbox or the API
    alike: reply_mail.max_segments, else DEFAULT_MAX_SEGMENTS."""
    return reply_mail.max_segments if reply_mail is not None else DEFAULT_MAX_SEGMENTS


@dataclass(frozen=True)
class ReplyLength:
    """An owner's reply measured against the limit: every path refuses it whole when too long."""

    segments: int
    encoding: str
    limit: int

    @property
    def too_long(self) -> bool:
        return self.segments > self.limit


def measure(text: str, limit: int) -> ReplyLength:
    count = count_segments(text)
    return ReplyLength(count.segments, count.encoding, limit)


def parse_command(line: str) -> tuple[str, str] | None:
    """A bookkeeping command on a reply's first line (`#won 82000` -> ("won", "82000")), or None.

    The one parser of every path an owner answers by: email here, a text from the owner's own
    phone in textback.core.relay.
    """
    match = COMMAND.match(line.strip())
    return (match.group(1).lower(), match.group(2).strip()) if match else None


def judge(message: EmailMessage, envelope_sender: str | None, owner_email: str,
          team: frozenset[str], authserv_id: str | None, max_segments: int,
          owner_name: str = "", quoted: tuple[str, ...] = ()) -> Verdict:
    automatic = automatic_because(message, envelope_sender)
    if automatic is not None:
        return Verdict("drop", f"automatic reply: {automatic}")
    sender = from_address(message)
    allowed = {owner_email.lower()} | team
    if sender is None or sender not in allowed or (envelope_sender or "").lower() not in allowed:
        return Verdict("refuse", "sender is not the owner of this conversation")
    if not authenticated(message, authserv_id, sender):
        return Verdict("refuse", "no aligned DMARC, DKIM or SPF pass from the trusted authserv-id")
    text = new_text(message, owner_name, quoted)
    files, in_body = attachments_of(message)
    if not text:
        if files:  # photos only: an MMS, if the gateway sends them (the daemon decides)
            return Verdict("text", files=files, in_body=in_body)
        if in_body:
            return Verdict("nothing_to_send", "it had only pictures inside the email's text",
                           attachments=in_body)
        return Verdict("nothing_to_send", "it had no new words above the quoted message")
    command = parse_command(text.splitlines()[0])
    if command is not None:
        return Verdict("command", command=command[0], argument=command[1])
    length = measure(text, max_segments)
    if length.too_long:
        return Verdict("too_long", f"{length.segments} segments; the limit is {max_segments}",
                       text=text)
    return Verdict("text", text=text, files=files, in_body=in_body)
