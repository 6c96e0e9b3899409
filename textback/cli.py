"""The `textback` command line: run the daemon, check an install, read the inbox."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from textback.commands import COMMANDS
from textback.commands.common import (CONFIG_HELP, ROW_LIMIT, age_of, as_table, config_option,
                                      exits_if_unusable, fleet_choice, load_config,
                                      load_configs, local_time, read_store, unusable, visible,
                                      with_store)
from textback.config import Loaded
from textback import redact, service
from textback.unit import CONFIG_REFUSED_STATUS
from textback.core.call_words import CALL_DECISIONS, missed_because
from textback.core.gateway_errors import described
from textback.core.media import summary
from textback.core.views import by_whom
from textback.core.numbers import to_e164
from textback.core.media import shown_items

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="textback")
def main() -> None:
    """Text back the callers your company could not answer.

    textback watches your Asterisk PBX over AMI. When a caller from outside
    rings and nobody answers, it texts them from the number they dialled,
    threads their reply, and emails it to the owner of the call.

    Start with `textback check -c config.yaml`, then `textback run`.
    """


@main.command()
@config_option(several=True)
@click.option("--record-ami", type=click.Path(dir_okay=False, path_type=Path),
              help="Append every AMI event received to this file as JSON lines (for traces).")
def run(config_paths: tuple[str, ...], record_ami: Path | None) -> None:
    """Run the daemon until SIGTERM or Ctrl-C."""
    companies = load_configs(config_paths)
    choice = fleet_choice()
    console = (_msp_console(choice.main_file, companies)
               if choice.companies or choice.fleet is not None else None)
    if len(companies) > 1 and record_ami is not None:
        click.echo("textback: --record-ami records one company's PBX: give one company", err=True)
        sys.exit(CONFIG_REFUSED_STATUS)
    service.configure_logging(companies[0].config.logging.level)
    redact.install(_all_secrets(companies))
    from textback.companies import CompaniesRefused, CompanyFailed, run_companies
    from textback.daemon import Daemon
    from textback.runlock import AlreadyRunning
    from textback.store import StoreRefused

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if len(companies) == 1 and console is None:
            await Daemon(companies[0], record_ami=record_ami).run(stop)
        else:
            await run_companies(companies, stop, Daemon, record_ami=record_ami, console=console)

    try:
        asyncio.run(serve())
    except CompaniesRefused as exc:
        click.echo("textback: these companies cannot share one process:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(CONFIG_REFUSED_STATUS)
    except (AlreadyRunning, CompanyFailed, StoreRefused) as exc:
        click.echo(f"textback: {exc}", err=True)
        # A store a person must mend first would be refused again: not restarted (unit.py).
        refused = isinstance(exc, StoreRefused) or isinstance(
            getattr(exc, "error", None), StoreRefused)
        sys.exit(CONFIG_REFUSED_STATUS if refused else 1)


def _all_secrets(companies: list[Loaded]):
    """One redactor masking every company's secrets: a line of one may quote another's."""
    redactors = [loaded.secrets.redactor() for loaded in companies]
    return redactors[0] if len(redactors) == 1 else redact.Redactor.union(redactors)


def _msp_console(main_file: Path, companies: list[Loaded]):
    """The fleet's MSP console (None when fleet.yaml has no msp: section), its admins' hashes
    read now; exits 2 naming each problem (a hash file missing, a host a company has)."""
    from textback.fleet_config import msp_problems, read_main, read_password_hash

    with exits_if_unusable():
        main = read_main(main_file)
    if main.msp is None:
        return None
    problems = msp_problems(main, companies)
    if not any(one.config.web is not None for one in companies):
        problems.append(f"{main.source}: msp: no company of this process has a web: listener "
                        "to serve the console on")
    if problems:
        unusable(problems)
    from textback.web.msp import MspConsole

    return MspConsole(main.msp, {admin.id: read_password_hash(admin.password_hash_file)
                                 for admin in main.msp.admins})


@main.command()
@config_option
@click.option("--companies", "companies_dir", type=click.Path(file_okay=False, exists=True),
              help="A fleet's companies directory (companies.d) without a main file: check "
                   "every company's file and them against each other, instead of one config's "
                   "connections.")
def check(config_path: str | None, companies_dir: str | None) -> None:
    """Check the config, AMI, the SMS gateway and SMTP: one line each.

    With --fleet alone, check the fleet's main file and every company's file, each with the
    sections it inherits, and the companies against each other."""
    choice = fleet_choice()
    if companies_dir is not None:
        _check_companies(Path(companies_dir))
        return
    if choice.fleet is not None and choice.company is None and config_path is None:
        _check_fleet(choice.fleet)
        return
    loaded = load_config(config_path)
    click.echo(f"ok    config: {loaded.source} ({len(loaded.config.numbers)} business number(s), "
               f"{len(loaded.config.owners)} owner(s))")
    from textback.checks import run_checks, template_report

    for line in template_report(loaded.config):
        click.echo(f"      {line}")
    results = asyncio.run(run_checks(loaded))
    masked = loaded.secrets.redactor()
    for name, ok, detail in results:
        click.echo(f"{'ok' if ok else 'FAIL':<5} {name}: {masked.url(detail)}")
    sys.exit(0 if all(ok for _, ok, _ in results) else 1)


def _check_companies(directory: Path) -> None:
    """Every company file of `directory`, one line each, then each problem; exit 1 if any."""
    from textback.fleet_config import load_members

    _report_companies(*load_members(directory))


def _check_fleet(main_path: Path) -> None:
    """The fleet's main file, then each company's file with what it inherits, as
    `_check_companies`; a problem in the main file is said once, against its line."""
    from textback.config import ConfigError
    from textback.fleet_config import load_members, msp_problems, read_main

    try:
        main = read_main(main_path)
    except ConfigError as exc:
        for line in exc.located():
            click.echo(f"FAIL  {line}")
        sys.exit(1)
    click.echo(f"ok    fleet: {main.source} (shares {', '.join(main.sections) or 'nothing'}; "
               f"companies in {main.companies_dir})")
    loaded, problems = load_members(main.companies_dir, main)
    if main.msp is not None:
        msp = msp_problems(main, loaded.values())
        if msp:
            problems.setdefault(main.source, []).extend(msp)
        else:
            click.echo(f"ok    msp: console at {main.msp.public_url} "
                       f"({len(main.msp.admins)} admin(s), each with a password hash)")
    _report_companies(loaded, problems)


def _report_companies(loaded: dict[Path, Loaded], problems: dict[Path, list[str]]) -> None:
    """An ok line for each company with no problem, then each problem once; exit 1 if any."""
    from textback.fleet_config import said_once

    for path, one in loaded.items():
        if path not in problems:
            click.echo(f"ok    company {one.config.company.id}: {path} "
                       f"({len(one.config.numbers)} business number(s), "
                       f"{len(one.config.owners)} owner(s))")
    for problem in said_once(problems):
        click.echo(f"FAIL  {problem}")
    sys.exit(1 if problems else 0)


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=50, show_default=True, type=ROW_LIMIT,
              help="At most this many conversations.")
@click.option("--project", default="", metavar="TYPE",
              help="Only those whose intake names this project type (kitchen, bath, ...).")
@click.option("--area", type=click.Choice(["in", "out"]),
              help="Only those in (or out of) the service area.")
def inbox(config_path: str | None, as_json: bool, limit: int, project: str,
          area: str | None) -> None:
    """Open conversations, newest first; filtered by intake facts as the web inbox is."""
    loaded = load_config(config_path)
    projects = loaded.config.intake.vocabulary().projects
    if project and project not in projects:
        raise click.BadParameter(f"no such project type; one of {', '.join(projects)}",
                                 param_hint="--project")
    show_inbox(loaded, as_json, limit, project, area or "")


def show_inbox(loaded: Loaded, as_json: bool = False, limit: int = 50, project: str = "",
               area: str = "") -> None:
    """`textback inbox`'s output for the store `loaded` names."""
    rows = asyncio.run(read_store(loaded, "inbox", limit, project, area))
    if not as_table(rows, as_json, "No open conversations."):
        return
    tz = loaded.config.business.timezone
    click.echo(f"{'':<2}{'CALLER':<16} {'DIALLED':<16} {'OWNER':<10} {'CALLS':>5} "
               f"{'REPLY AGE':>9}  LAST REPLY")
    for row in rows:
        reply = visible((row["last_reply"] or "").replace("\n", " "))
        flag = "! " if row["unanswered"] else "  "
        click.echo(f"{flag}{row['caller']:<16} {row['business_number']:<16} {row['owner_id']:<10} "
                   f"{row['missed_calls']:>5} {age_of(row['last_reply_at']):>9}  "
                   f"{reply[:60] or '(no reply yet)'}")
        if row["held_until"] is not None:
            click.echo(f"{'':<18}text held until {local_time(row['held_until'], tz)}"
                       " (their quiet hours)")
        if row["intake_labels"]:
            click.echo(f"{'':<18}{visible(row['intake_labels'])}")
    click.echo("\n! = the homeowner's last text has no answer yet.")
    click.echo(f"\n{len(rows)} conversation(s); times in {tz}.")


_KIND = {"call": "call", "text_out": "text sent", "text_in": "reply", "alert": "owner alert",
         "intake": "intake"}


@main.command()
@config_option
@click.argument("number")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def thread(config_path: str | None, number: str, as_json: bool) -> None:
    """One caller's calls, texts, replies and alerts, in order."""
    loaded = load_config(config_path)
    caller = _number_argument(loaded, number)
    rows = asyncio.run(read_store(loaded, "timeline", caller))
    if not as_table(rows, as_json, f"Nothing recorded for {caller}."):
        return
    tz = loaded.config.business.timezone
    for row in rows:
        when = local_time(row["at"], tz)
        kind = _KIND[row["kind"]]
        if row["kind"] == "call":
            why = missed_because(row["detail"])  # the inbox's and the alert email's words
            detail = f"{row['status']}{f' ({why})' if why else ''} on {row['business_number']}"
        elif row["kind"] == "alert":
            detail = f"{row['status']} to {row['detail'] or row['extra']}: {row['body']}"
        elif row["kind"] == "intake":
            detail = (f"{row['detail']}: {row['body']} "
                      + ("(read from the reply)" if row["status"] == "extracted"
                         else f"(set by {by_whom(loaded.config, row['extra']) or 'a person'})"
                         if row["status"] == "person"
                         else "(suggested, not confirmed)"))
        else:
            items = row.get("media", [])
            body = row["body"].replace("\n", " / ")
            body = summary(body, shown_items(items))  # a photo-only text: "A photo"
            detail = f"[{row['status']}] {body}"
            if row["kind"] == "text_out" and row["detail"]:
                detail += f"  ({described(row['gateway'], row['detail'])})"
        click.echo(f"{when}  {kind:<11}  {visible(detail)}")
        for item in row.get("media", []):
            click.echo(f"{'':>{len(when)}}  {'':<11}  + {visible(media_line(item))}")


def media_line(item: dict) -> str:
    """One media item of a text, for `textback thread`: type, size, and what became of it."""
    kind = item["content_type"] or item["declared_type"] or "no type given"
    size = f"{item['size'] / 1024:.0f} KB" if item["size"] is not None else "size unknown"
    if item["state"] == "kept":
        state = "shown" if item["shown"] else f"kept as an attachment, not shown: {item['note']}"
    elif item["state"] == "failed":
        state = f"not fetched: {item['note']}"
    else:
        state = "being fetched"
    return f"{item['declared_type'] or kind}, {size}: {state}"


_SPAN = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _since(value: str) -> float:
    """'30m', '6h', '1d', '2w' -> the epoch time that long ago."""
    match = re.fullmatch(r"([0-9]{1,5})([mhdw])", value)
    if not match:
        raise click.BadParameter("use a number and a unit: 30m, 6h, 1d, 2w", param_hint="--since")
    return datetime.now().timestamp() - int(match.group(1)) * _SPAN[match.group(2)]


@main.command()
@config_option
@click.option("--since", "since", default="1d", show_default=True,
              help="How far back: 30m, 6h, 1d, 2w.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def calls(config_path: str | None, since: str, as_json: bool) -> None:
    """Recent inbound calls: outcome, reason, and whether a text went out and why."""
    show_calls(load_config(config_path), _since(since), as_json, f"in the last {since}")


def show_calls(loaded: Loaded, since: float, as_json: bool = False, span: str = "") -> None:
    """`textback calls`'s output for the store `loaded` names: the calls since `since`."""
    rows = asyncio.run(read_store(loaded, "calls", since))
    if not as_table(rows, as_json, f"No inbound calls {span}."):
        return
    tz = loaded.config.business.timezone
    click.echo(f"{'STARTED':<19}  {'CALLER':<16} {'DIALLED':<13} {'SEEN':<4} {'TEXT':<24} WHY")
    for row in rows:
        caller = row["caller"] or visible(row["caller_raw"])[:16] or "(none)"
        text = row["text_state"] or CALL_DECISIONS.get(row["decision"], "").removesuffix(".") \
            or f"not texted: {row['decision'].replace('_', ' ')}"
        if row["text_error"] and row["text_state"] != "sent":
            text += f": {visible(described(row['text_gateway'], row['text_error']))}"
        if row["selftest"]:  # placed by `textback selftest`: no owner, not in the scorecard
            text = f"self-test, {text}"
        seen = "cdr" if row["recovered"] else "ami"  # cdr: recovered after an AMI gap
        why = "answered" if row["outcome"] == "answered" else f"missed: {missed_because(row['reason'])}"
        click.echo(f"{local_time(row['started_at'], tz):<19}  {caller:<16} {row['business_number']:<13} "
                   f"{seen:<4} {text:<24} {why}")


@main.group()
def optout() -> None:
    """The suppression list: numbers that asked not to be texted."""


@optout.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def optout_list(config_path: str | None, as_json: bool) -> None:
    """Every suppressed number, oldest first."""
    loaded = load_config(config_path)
    rows = asyncio.run(read_store(loaded, "suppressions"))
    if not as_table(rows, as_json, "No suppressed numbers."):
        return
    for row in rows:
        click.echo(f"{row['number']:<16} since {local_time(row['since'], loaded.config.business.timezone)}"
                   f"  ({row['source']})")
    click.echo(f"{len(rows)} suppressed number(s).")


def _number_argument(loaded: Loaded, number: str) -> str:
    e164 = to_e164(number, loaded.config.numbers[0].region)
    if e164 is None:
        raise click.BadParameter(f"{number!r} is not a valid phone number", param_hint="NUMBER")
    return e164


@optout.command("add")
@config_option
@click.argument("number")
def optout_add(config_path: str | None, number: str) -> None:
    """Suppress NUMBER now (e.g. after a phone call asking not to be texted)."""
    loaded = load_config(config_path)
    e164 = _number_argument(loaded, number)
    added = asyncio.run(read_store(loaded, "suppress", e164, "cli"))
    click.echo(f"{e164} {'suppressed' if added else 'was already suppressed'}.")


@optout.command("remove")
@config_option
@click.argument("number")
def optout_remove(config_path: str | None, number: str) -> None:
    """Lift the suppression of NUMBER (only with the person's consent)."""
    loaded = load_config(config_path)
    e164 = _number_argument(loaded, number)
    removed = asyncio.run(read_store(loaded, "unsuppress", e164, "cli"))
    click.echo(f"{e164} {'may be texted again' if removed else 'was not suppressed'}.")


def _period(month: str | None, start: str | None, end: str | None, tz: str) -> tuple[float, float, str]:
    """A report period in the business's time zone: a month, or a date range (end exclusive)."""
    zone = ZoneInfo(tz)
    try:
        if month:
            first = datetime.strptime(month, "%Y-%m").replace(tzinfo=zone)
            after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
            return first.timestamp(), after.timestamp(), month
        if start and end:
            begin = datetime.strptime(start, "%Y-%m-%d").replace(tzinfo=zone)
            stop = datetime.strptime(end, "%Y-%m-%d").replace(tzinfo=zone)
            return begin.timestamp(), stop.timestamp(), f"{start} to {end}"
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    raise click.UsageError("give --month YYYY-MM, or --from YYYY-MM-DD and --to YYYY-MM-DD")


@main.command()
@config_option
@click.option("--month", help="A calendar month, YYYY-MM (default: this month).")
@click.option("--from", "start", help="First day, YYYY-MM-DD.")
@click.option("--to", "end", help="Day after the last, YYYY-MM-DD.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
def report(config_path: str | None, month: str | None, start: str | None, end: str | None,
           fmt: str) -> None:
    """The scorecard per business number: missed calls, texts, replies, booked, won."""
    loaded = load_config(config_path)
    tz = loaded.config.business.timezone
    if not (month or start or end):
        month = datetime.now(ZoneInfo(tz)).strftime("%Y-%m")
    show_report(loaded, month, start, end, fmt)


def show_report(loaded: Loaded, month: str | None, start: str | None, end: str | None,
                fmt: str = "table") -> None:
    """`textback report`'s output for the store `loaded` names, for a month or a range."""
    from textback.core.scorecard import render_intake_views, render_text

    tz = loaded.config.business.timezone
    begin, stop, label = _period(month, start, end, tz)

    async def read(store):
        return (await _scorecard(store, month, begin, stop, tz),
                await store.scorecard_by_intake(begin, stop))

    cards, intake_views = asyncio.run(with_store(loaded, read))
    if fmt == "json":
        click.echo(json.dumps({"period": label, "numbers": cards, "intake": intake_views},
                              indent=2))
        return
    if fmt == "csv":
        import csv

        from textback.core.scorecard import report_csv

        csv.writer(sys.stdout).writerows(report_csv(cards, intake_views, label))
        return
    click.echo(render_text(cards, label, tz) + "\n" + render_intake_views(intake_views))


async def _scorecard(store, month: str | None, begin: float, stop: float, tz: str) -> list[dict]:
    """A month's scorecard as kept when retention pruned it; else computed from the rows."""
    from textback.pruning import PRUNED_BEFORE

    pruned_before = await store.progress(PRUNED_BEFORE)
    if (pruned_before is not None and begin < pruned_before
            and (not month or await store.monthly_scorecard(month) is None)):
        click.echo("textback: calls, texts and alerts before "
                   f"{datetime.fromtimestamp(pruned_before, ZoneInfo(tz)):%Y-%m-%d} were pruned "
                   "(retention.months); whole months keep their scorecard (--month).", err=True)
    return await store.scorecard(begin, stop, month)


def _conversation(loaded: Loaded, store, number: str):
    async def find():
        e164 = _number_argument(loaded, number)
        conversation = await store.conversation_for(e164)
        if conversation is None:
            raise click.ClickException(f"no conversation with {e164}")
        return conversation
    return find()


TEST_TEXT = ("{business_name}: this is a test text from textback. Reply to it to test the owner "
             "email, or reply STOP to opt out.")


@main.command("test-text")
@config_option
@click.argument("number")
@click.option("--from", "dialled", help="The business number to send from (default: the first).")
def test_text(config_path: str | None, number: str, dialled: str | None) -> None:
    """Text NUMBER a test message through the running daemon's outbox and gateway.

    A reply to it reaches the owner by email like any homeowner's, so one
    command tests sending, receiving and the owner alert. Opt-outs apply.
    """
    from textback.core.rules import match_number, render_for

    loaded = load_config(config_path)
    config = loaded.config
    recipient = _number_argument(loaded, number)
    business = match_number(config, dialled) if dialled else config.numbers[0]
    if business is None:
        raise click.BadParameter(f"{dialled!r} is not one of the business numbers", param_hint="--from")
    body = render_for(config, TEST_TEXT, business, recipient)

    async def work(store):
        if await store.is_suppressed(recipient):
            await store.refuse_text(recipient, business.number, "test", body, "cli")
            raise click.ClickException(f"{recipient} opted out; nothing was sent.")
        return await store.queue_test_text(recipient, business.number, business.owner, body)

    asyncio.run(with_store(loaded, work))
    click.echo(f"Queued a test text from {business.number} to {recipient}; the running daemon "
               f"sends it. See `textback thread {recipient}`.")


@main.command()
@config_option
@click.argument("number")
@click.argument("owner")
def assign(config_path: str | None, number: str, owner: str) -> None:
    """Give the conversation with NUMBER to OWNER (an owner id from the config)."""
    loaded = load_config(config_path)
    ids = [o.id for o in loaded.config.owners]
    if owner not in ids:
        raise click.BadParameter(f"no owner {owner!r}; owners: {', '.join(ids)}", param_hint="OWNER")

    async def work(store):
        conversation = await _conversation(loaded, store, number)
        await store.assign(conversation["id"], owner, "cli")
        return conversation["caller"]

    click.echo(f"{asyncio.run(with_store(loaded, work))} now belongs to {owner}.")


@main.command()
@config_option
@click.argument("number")
@click.argument("text")
def reply(config_path: str | None, number: str, text: str) -> None:
    """Text NUMBER through the running daemon's outbox (same rules: opt-outs, length)."""
    from textback.core.replies import measure, segment_limit

    loaded = load_config(config_path)
    if not text.strip():
        raise click.BadParameter("the text is empty; nothing was sent", param_hint="TEXT")
    length = measure(text, segment_limit(loaded.config.reply_mail))
    if length.too_long:
        raise click.ClickException(f"{length.segments} segments ({length.encoding}); the limit is "
                                   f"{length.limit}. Shorten it; nothing was sent.")

    async def work(store):
        conversation = await _conversation(loaded, store, number)
        if await store.queue_owner_reply(conversation["id"], conversation["business_number"],
                                         conversation["caller"], text, "cli") is None:
            raise click.ClickException(f"{conversation['caller']} opted out; nothing was sent.")
        return conversation["caller"]

    click.echo(f"Queued for {asyncio.run(with_store(loaded, work))}; the daemon sends it.")


@main.command()
@config_option
@click.argument("number")
@click.argument("stage", type=click.Choice(["booked", "qualified", "won", "lost", "spam"]))
@click.argument("value", required=False)
def outcome(config_path: str | None, number: str, stage: str, value: str | None) -> None:
    """Record how the lead with NUMBER turned out (won takes an optional job VALUE)."""
    from textback.core.scorecard import MAX_JOB_VALUE, parse_amount

    loaded = load_config(config_path)
    amount = None
    if value is not None:
        amount = parse_amount(value)
        if stage != "won" or amount is None:
            raise click.BadParameter(f"only 'won' takes a value, written like 82000 or $82k, "
                                     f"at most {MAX_JOB_VALUE:,.0f}", param_hint="VALUE")

    async def work(store):
        conversation = await _conversation(loaded, store, number)
        await store.record_outcome(conversation["id"], stage, amount, "cli")
        return conversation["caller"]

    caller = asyncio.run(with_store(loaded, work))
    click.echo(f"{caller}: {stage}" + (f" ({amount:,.0f})" if amount else "") + ".")


@main.command()
@config_option
@click.option("--caller", required=True, help="The caller's number.")
@click.option("--at", "when", help="Local date and time, 'YYYY-MM-DD HH:MM' (default: now).")
@click.option("--number", "dialled", help="The business number dialled (default: the first).")
def explain(config_path: str | None, caller: str, when: str | None, dialled: str | None) -> None:
    """What would happen to a missed call: number, hours, caller class, template, text or why not."""
    from textback.core.quiet_hours import HOLD, judge
    from textback.routing import ring_plan, route_id
    from textback.core.rules import decide, hours_of, match_number
    from textback.core.tracker import CallFinished

    loaded = load_config(config_path)
    config = loaded.config
    zone = ZoneInfo(config.business.timezone)
    try:
        moment = (datetime.strptime(when, "%Y-%m-%d %H:%M").replace(tzinfo=zone) if when
                  else datetime.now(zone))
    except ValueError:
        raise click.BadParameter("write it as 'YYYY-MM-DD HH:MM'", param_hint="--at") from None
    number = match_number(config, dialled) if dialled else config.numbers[0]
    if number is None:
        raise click.BadParameter(f"{dialled!r} is not one of the business numbers",
                                 param_hint="--number")
    at = moment.timestamp()
    decision = decide(config, CallFinished("explain", number.number, caller, "", "", at - 20, at,
                                           "missed", "no_answer"))
    hours = hours_of(config, number)
    contact = config.contact(decision.caller)
    window = hours.window_at(at)
    if not hours.windows:
        state = "no business hours configured: always the in-hours template"
    elif window is not None:
        state = (f"open (window {','.join(window.days)} {window.start}-{window.end}"
                 f"{f', template {window.template}' if window.template else ''})")
    else:
        opening = hours.next_opening(at)
        state = "closed" + (f"; opens {datetime.fromtimestamp(opening, zone):%a %Y-%m-%d %H:%M}"
                            if opening else "")
    targets, timeout = ring_plan(number.ring, is_open=hours.in_hours(at))
    ring = (f"the AGI rings {targets} for {timeout} s" if targets
            else "no `ring` section: the AGI sets the dialplan's fallback targets and timeout")
    click.echo(f"number     {number.number} ({number.label or 'no label'}), owner {number.owner}")
    click.echo(f"route      {route_id(config, number.number)}: {ring}")
    click.echo(f"when       {moment:%a %Y-%m-%d %H:%M %Z}: {state}")
    click.echo(f"caller     {decision.caller or caller}: "
               f"{contact.kind if contact else 'new lead'}"
               f"{f' ({contact.name})' if contact and contact.name else ''}")
    if decision.send:
        due = datetime.fromtimestamp(decision.due_at, zone)
        click.echo(f"template   {decision.template}")
        click.echo(f"text       yes, at {due:%H:%M:%S} ({decision.reason}); opt-outs and the dedupe "
                   f"window are checked when the call is recorded")
        click.echo(f"body       {decision.body}")
        policy = config.compliance.homeowner_hours.policy_for("auto")
        quiet = judge(decision.caller, decision.due_at, config.business.timezone)
        click.echo(f"quiet hrs  {policy}: " + (quiet.explain() if policy == HOLD or quiet.allowed
                                               else f"sent anyway (missed_call: send), though "
                                                    f"held if `hold`: {quiet.explain()}"))
    else:
        click.echo(f"text       no: {decision.reason}")


@main.command("migrate-store")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--from", "source", required=True, metavar="sqlite:///PATH",
              help="The single install's SQLite store, e.g. sqlite:///var/lib/textback/textback.db.")
@click.option("--to", "target", required=True, metavar="postgresql://USER@HOST/DB",
              help="The fleet's PostgreSQL database (no password in the URL).")
@click.option("--company", required=True, metavar="ID",
              help="The new company's id in the database (a-z, 0-9, - and _), as its config's "
                   "company.id.")
@click.option("--company-name", default="", help="The company's name, as company.name.")
@click.option("--to-password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="A file holding the database role's password.")
@click.option("--to-password-env", metavar="NAME",
              help="An environment variable holding the database role's password.")
@click.option("--media-to", type=click.Path(file_okay=False, path_type=Path),
              help="Copy the photos and files the store's rows name into this directory (the "
                   "company's media.directory). Without it they stay where they are.")
def migrate_store(config_path: str | None, source: str, target: str, company: str,
                  company_name: str, to_password_file: Path | None, to_password_env: str | None,
                  media_to: Path | None) -> None:
    """Move a single install's SQLite store into a fleet's PostgreSQL as one new company,
    then check it: each table's rows, and `report`, `inbox` and `calls` alike on both.

    Stop `textback run` first. -c names the install's config (its business, owners and
    media directory), read as it is for the SQLite file and with --to and --company for the
    database. Exits 1 when the move is refused (nothing written) or its check fails.
    """
    import dataclasses

    from pydantic import ValidationError

    from textback.config import CompanyConfig, StorageConfig
    from textback.config_schema import SecretRef
    from textback.mediafiles import MediaStore, media_directory
    from textback.store import migrate

    loaded = load_config(config_path)
    try:
        if not source.startswith("sqlite:"):
            raise ValueError("--from must be sqlite:///path/to/textback.db")
        path = StorageConfig(url=source).path
        database = StorageConfig(url=target, password=None)
        if database.backend != "postgresql":
            raise ValueError("--to must be postgresql://user@host/database")
        chosen = CompanyConfig(id=company, name=company_name)
        if to_password_file is not None and to_password_env is not None:
            raise ValueError("give --to-password-file or --to-password-env, not both")
        ref = (SecretRef(file=to_password_file) if to_password_file is not None else
               SecretRef(env=to_password_env) if to_password_env is not None else None)
        secret = ref.resolve() if ref is not None else None
    except (ValidationError, ValueError) as exc:
        raise click.UsageError(str(exc).splitlines()[-1] if isinstance(exc, ValidationError)
                               else str(exc)) from None
    password = secret.get_secret_value() if secret is not None else None
    masked = redact.Redactor([password] if password else [])
    before = dataclasses.replace(loaded, config=loaded.config.model_copy(
        update={"storage": StorageConfig(path=path), "company": CompanyConfig()}))
    after = dataclasses.replace(
        loaded, secrets=dataclasses.replace(loaded.secrets, storage_password=secret),
        config=loaded.config.model_copy(update={
            "storage": database.model_copy(update={"path": loaded.config.storage.path}),
            "company": chosen}))
    files = MediaStore(media_directory(before.config))

    def copy_media(digests: set[str]) -> list[str]:
        """Before the database's transaction: the files the rows name, in place or copied."""
        if media_to is None:
            missing = sorted(d for d in digests if not files.path(d).is_file())
            return [f"media: {len(digests) - len(missing)} file(s) stay in {files.directory}; "
                    f"the company's config must name it (media.directory: {files.directory})"
                    ] + [f"media: MISSING {files.path(d)}" for d in missing]
        done = MediaStore(media_to).copy_from(files, digests)
        return ([f"media: {done.copied} file(s) copied from {files.directory} to {media_to}, "
                 f"{done.present} already there; the company's config must name it "
                 f"(media.directory: {media_to})"]
                + [f"media: MISSING {files.path(d)}" for d in done.missing]
                + [f"media: DAMAGED (bytes do not match the name) {files.path(d)}"
                   for d in done.damaged])

    try:
        moved = migrate.migrate(path, target, password, chosen.id, chosen.name,
                                media=copy_media)
    except migrate.MigrationRefused as exc:
        raise click.ClickException(masked(str(exc))) from None
    click.echo(f"Moved {path} into {migrate.redacted(target)} as company {chosen.id!r} "
               f"(id {moved.company_id}), in one transaction.\n")
    counts = migrate.count_rows(path, target, password, moved.company_id)
    copied = {c.table: c for c in moved.tables}
    bad = migrate.count_problems(moved, counts)
    click.echo(f"{'TABLE':<22} {'IN FILE':>8} {'COPIED':>8} {'IN TARGET':>9}  NOTE")
    for table, in_file, in_target in counts:
        row = copied[table]
        click.echo(f"{table:<22} {in_file:>8} {row.copied:>8} {in_target:>9}  {row.note}")
    click.echo("")
    for line in moved.media:
        click.echo(line)
        if "MISSING" in line or "DAMAGED" in line:
            bad.append(line)
    tz = loaded.config.business.timezone
    tomorrow = datetime.fromtimestamp(datetime.now().timestamp() + 86400, ZoneInfo(tz))
    views = {"textback report (all months)": lambda one: show_report(
                 one, None, "2000-01-01", f"{tomorrow:%Y-%m-%d}"),
             "textback inbox": lambda one: show_inbox(one, limit=10_000),
             "textback calls (all)": lambda one: show_calls(one, 0.0, span="at all")}
    for name, view in views.items():
        # Twice at most: an age printed in minutes may turn over between the two readings.
        for _ in range(2):
            old, new = _printed(view, before), _printed(view, after)
            if old == new:
                break
        if old == new:
            click.echo(f"verified: {name} prints the same on both ({len(old.splitlines())} "
                       "line(s))")
        else:
            import difflib

            bad.append(f"{name} differs")
            click.echo(f"DIFFERS: {name}, file (-) and database (+):")
            click.echo("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True))))
    if bad:
        click.echo("\nverification FAILED:\n  " + "\n  ".join(bad))
        sys.exit(1)
    click.echo(f"\nverification passed. Point the company's config at the database "
               f"(storage.url, storage.password, company.id: {chosen.id}) and start its "
               "daemon; keep the SQLite file as the archive of the move.")


def _printed(view, loaded: Loaded) -> str:
    """What a command's output function prints for `loaded`."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        view(loaded)
    return out.getvalue()


@main.command()
@config_option
@click.option("--agi-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/var/lib/asterisk/agi-bin"), show_default=True)
@click.option("--dialplan-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/etc/asterisk"), show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing textback.conf.")
@click.option("--systemd", is_flag=True,
              help="Instead: write textback.service and create the `textback` system user.")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/etc/systemd/system"), show_default=True)
@click.option("--create-user/--no-create-user", default=True, show_default=True,
              help="With --systemd: create the system user if it does not exist.")
def install(config_path: str | None, agi_dir: Path, dialplan_dir: Path, force: bool,
            systemd: bool, unit_dir: Path, create_user: bool) -> None:
    """Put the AGI script, the dialplan and the routing table where Asterisk finds them;
    with --systemd, install textback as a service."""
    import importlib.resources
    from datetime import date

    from textback.routing import write_routing_table

    if systemd and fleet_choice().company is not None:
        raise click.UsageError("a fleet's company runs as textback@ID.service, which the package "
                               "ships (`systemctl enable --now textback@ID`); --systemd writes "
                               "a single install's unit, for -c")
    loaded = load_config(config_path)
    if systemd:
        from textback.commands.ops import install_service

        install_service(loaded, unit_dir, create_user)
        return
    table = write_routing_table(loaded.config, date.today())
    click.echo(f"wrote   {table} (routing table; `textback run` rewrites it on start)")
    script = importlib.resources.files("agi_scripts").joinpath("textback_route.py").read_text()
    lines = script.splitlines(keepends=True)
    lines[0] = f"#!{sys.executable}\n"  # the interpreter that has textback and pyst2
    agi_dir.mkdir(parents=True, exist_ok=True)
    target = agi_dir / "textback_route.py"
    target.write_text("".join(lines))
    target.chmod(0o755)
    click.echo(f"wrote   {target}")
    dialplan = dialplan_dir / "textback.conf"
    if dialplan.exists() and not force:
        click.echo(f"kept    {dialplan} (exists; --force overwrites it)")
    else:
        dialplan_dir.mkdir(parents=True, exist_ok=True)
        dialplan.write_text(importlib.resources.files("dialplan").joinpath("textback.conf").read_text())
        click.echo(f"wrote   {dialplan}")
    click.echo("\nThen, in Asterisk:\n"
               "  extensions.conf   #include textback.conf; send inbound DIDs to [textback-inbound]\n"
               "                    (or call the AGI from your own inbound context)\n"
               "  pjsip.conf        message_context=textback-sms-in on the trunk endpoint (SMS over SIP)\n"
               "  manager.conf      the [textback] user from the README, and\n"
               "                    channelvars=TEXTBACK_ROUTE,TEXTBACK_RING_TIMEOUT,TEXTBACK_HOURS\n"
               "  asterisk -rx 'dialplan reload'")


for command in COMMANDS:
    main.add_command(command)
