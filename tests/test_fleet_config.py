"""A fleet's configuration: the main file's shared sections, inherited by each company's file
in its companies directory, section by section (textback/fleet_config.py); every problem
named by the file and line it is written in; `--company` on every command; `check --fleet`."""

from __future__ import annotations

import html
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lab.configs import base_config
from textback.cli import main as cli
from textback.config import ConfigError
from textback.fleet_config import FleetError, load_company, load_fleet

URL = "postgresql://textback@db.example.internal/textback"
SHARED = {
    "storage": {"url": URL, "password": {"file": "db.secret"}},
    "smtp": {"host": "relay.installer.example", "port": 587, "username": "fleet",
             "password": {"file": "smtp.secret"}, "sender": "textback@installer.example"},
    "logging": {"level": "WARNING"},
    "admin_email": "it@installer.example",
}
COMPANY_OWN = ("business", "ami", "inbound", "owners", "numbers", "text", "gateway")


def write(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def fleet(tmp_path: Path, shared: dict | None = None) -> Path:
    """A main file at tmp_path/etc/fleet.yaml (its secrets beside it), companies in companies.d."""
    etc = tmp_path / "etc"
    (etc / "companies.d").mkdir(parents=True)
    (etc / "db.secret").write_text("database-password\n")
    (etc / "smtp.secret").write_text("relay-password\n")
    return write(etc / "fleet.yaml", {**(SHARED if shared is None else shared),
                                      "companies": "companies.d"})


def company(main: Path, slug: str, numbers: list[str], **sections) -> Path:
    """A company's file: its own sections of a whole config, and `sections` over them."""
    whole = base_config(main.parent / "companies.d")
    own = {key: whole[key] for key in COMPANY_OWN}
    own["numbers"] = [{"number": number, "owner": "dana"} for number in numbers]
    return write(main.parent / "companies.d" / f"{slug}.yaml",
                 {"company": {"id": slug, "name": slug.title()}, **own, **sections})


def line_of(path: Path, text: str) -> int:
    return 1 + next(i for i, row in enumerate(path.read_text().splitlines()) if text in row)


def test_a_company_inherits_each_shared_section_and_its_own_state_directory(tmp_path):
    main = fleet(tmp_path)
    company(main, "acme", ["+12125550100"])
    loaded = load_company(main, "acme")
    config = loaded.config
    assert config.company.id == "acme" and config.business.name == "Acme Remodeling"
    assert config.storage.url == URL and config.smtp.host == "relay.installer.example"
    assert config.logging.level == "WARNING" and config.admin_email == "it@installer.example"
    # The main file's relative secret files are read beside the main file.
    assert loaded.secrets.storage_password.get_secret_value() == "database-password"
    assert loaded.secrets.smtp_password.get_secret_value() == "relay-password"
    # The company's own run lock, photos and routing table: textback@acme's state directory.
    assert config.storage.path == Path("/var/lib/textback/acme/textback.db")
    assert config.agi.routing_file == Path("/var/lib/textback/acme/routing.json")
    assert loaded.source == main.parent / "companies.d" / "acme.yaml"


def test_a_section_a_company_writes_replaces_the_main_files_whole(tmp_path):
    main = fleet(tmp_path)
    company(main, "acme", ["+12125550100"],
            smtp={"host": "mail.acme.example", "sender": "textback@acme.example"},
            logging={"level": "DEBUG"})
    loaded = load_company(main, "acme")
    smtp = loaded.config.smtp
    assert (smtp.host, smtp.sender, smtp.port) == ("mail.acme.example", "textback@acme.example", 587)
    # Nothing of the main file's smtp is merged in: its login never goes to acme's host.
    assert smtp.username is None and smtp.password is None
    assert loaded.secrets.smtp_password is None
    assert loaded.config.logging.level == "DEBUG"
    assert loaded.config.storage.url == URL  # the sections it did not write: inherited


def test_company_in_the_main_files_storage_path_is_each_companys_id(tmp_path):
    main = fleet(tmp_path, {**SHARED, "storage": {**SHARED["storage"],
                                                   "path": "/srv/textback/{company}/t.db"}})
    company(main, "acme", ["+12125550100"])
    company(main, "birch", ["+12125550101"])
    assert load_company(main, "birch").config.storage.path == Path("/srv/textback/birch/t.db")
    assert load_company(main, "acme").config.storage.path == Path("/srv/textback/acme/t.db")


def test_a_problem_is_named_by_the_line_of_the_file_it_is_written_in(tmp_path):
    main = fleet(tmp_path, {**SHARED, "smtp": {**SHARED["smtp"], "port": "submission"}})
    acme = company(main, "acme", ["+12125550100"], text={"delay_seconds": "soon",
                                                         "template": "Hi from {business_name}"})
    with pytest.raises(ConfigError) as raised:
        load_company(main, "acme")
    text, smtp = raised.value.described()
    assert text.startswith(f"{acme}: text.delay_seconds (line {line_of(acme, 'soon')}): ")
    assert smtp.startswith(f"{main}: smtp.port (line {line_of(main, 'submission')}): ")
    assert raised.value.files == [str(acme), str(main)]  # in the order of the config's sections


def test_a_key_of_the_company_file_over_an_inherited_one_is_the_company_files(tmp_path):
    main = fleet(tmp_path)
    acme = company(main, "acme", ["+12125550100"], storage={"url": "mysql://x/y"})
    with pytest.raises(ConfigError) as raised:
        load_company(main, "acme")
    assert raised.value.described() == [
        f"{acme}: storage (line {line_of(acme, 'storage:')}): url must be "
        "postgresql://user@host/database or sqlite:///path"]


@pytest.mark.parametrize("main_sections, key, said", [
    ({"business": {"name": "Acme"}}, "business", "not a fleet-wide section: write it in each "
                                                 "company's file"),
    ({"storage": {"url": URL, "path": "/var/lib/textback/textback.db"}}, "storage.path",
     "would be every company's run lock"),
])
def test_the_main_file_holds_shared_sections_only(tmp_path, main_sections, key, said):
    main = fleet(tmp_path, {**SHARED, **main_sections})
    company(main, "acme", ["+12125550100"])
    with pytest.raises(ConfigError) as raised:
        load_company(main, "acme")
    [(where, message)] = raised.value.problems
    assert re.fullmatch(rf"{re.escape(key)} \(line \d+\)", where) and message.startswith(said)
    assert raised.value.source == str(main)


def test_a_main_file_without_its_companies_directory_is_refused(tmp_path):
    main = write(tmp_path / "fleet.yaml", SHARED)
    with pytest.raises(ConfigError, match="companies: required key is missing"):
        load_fleet(main)
    write(main, {**SHARED, "companies": "nowhere.d"})
    with pytest.raises(ConfigError) as raised:
        load_fleet(main)
    assert raised.value.problems == [(f"companies (line {line_of(main, 'nowhere.d')})",
                                      f"{tmp_path / 'nowhere.d'} is not a directory")]


def test_a_company_is_found_by_its_file_and_its_file_names_it(tmp_path):
    main = fleet(tmp_path)
    company(main, "acme", ["+12125550100"])
    cedar = company(main, "cedar", ["+12125550109"], company={"id": "cedars"})
    with pytest.raises(ConfigError, match=r"no company 'birch': .*birch.yaml does not exist "
                                          r"\(companies here: acme, cedar\)"):
        load_company(main, "birch")
    with pytest.raises(ConfigError, match="'../acme' is not a company id"):
        load_company(main, "../acme")
    with pytest.raises(ConfigError) as raised:
        load_company(main, "cedar")
    [line] = raised.value.described()
    assert line.startswith(f"{cedar}: company.id (line {line_of(cedar, 'cedars')}): is 'cedars', "
                           "but a company's file is named after it")
    write(cedar, {key: value for key, value in yaml.safe_load(cedar.read_text()).items()
                  if key != "company"})
    with pytest.raises(ConfigError, match=r"company: required in a fleet's company file"):
        load_company(main, "cedar")


def test_load_fleet_gives_every_company_and_refuses_a_number_in_two(tmp_path):
    main = fleet(tmp_path)
    company(main, "acme", ["+12125550100"])
    company(main, "birch", ["+12125550101", "+12125550102"])
    loaded = load_fleet(main)
    assert [one.config.company.id for one in loaded.companies] == ["acme", "birch"]
    assert loaded.company("birch").config.storage.path == Path("/var/lib/textback/birch/textback.db")
    assert loaded.companies_dir == main.parent / "companies.d"
    birch = company(main, "birch", ["+12125550101", "+12125550100"])
    with pytest.raises(FleetError) as raised:
        load_fleet(main)
    assert raised.value.problems == [
        f"{birch}: numbers[1].number (line {line_of(birch, '+12125550100')}): +12125550100 "
        f"already belongs to company 'acme' ({main.parent / 'companies.d' / 'acme.yaml'})"]


def check(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["check", *args])
    return result.exit_code, result.output.splitlines()


def test_check_fleet_says_each_companys_file_ok(tmp_path):
    main = fleet(tmp_path)
    acme = company(main, "acme", ["+12125550100"])
    birch = company(main, "birch", ["+12125550101", "+12125550102"])
    code, lines = check("--fleet", str(main))
    assert lines == [
        f"ok    fleet: {main} (shares storage, smtp, logging, admin_email; companies in "
        f"{main.parent / 'companies.d'})",
        f"ok    company acme: {acme} (1 business number(s), 1 owner(s))",
        f"ok    company birch: {birch} (2 business number(s), 1 owner(s))"]
    assert code == 0


def test_check_fleet_says_a_main_file_problem_once_against_its_line(tmp_path):
    main = fleet(tmp_path, {**SHARED, "storage": {"path": "/tmp/{company}/x.db"},
                            "smtp": {**SHARED["smtp"], "port": 0}})
    company(main, "acme", ["+12125550100"])
    birch = company(main, "birch", ["+12125550101", "+12125550100"])
    code, lines = check("--fleet", str(main))
    assert code == 1
    assert lines[0].startswith(f"ok    fleet: {main} ")
    port, storage = line_of(main, "port: 0"), line_of(main, "storage:")
    # Every company inherits the port: one line, against the main file's, for all of them.
    assert lines[1:] == [
        f"FAIL  {main}: smtp.port (line {port}): Input should be greater than or equal to 1"]
    # With the port fixed, the files load, and the SQLite storage the main file gives is
    # refused against the main file's line, once for all its companies.
    write(main, {**yaml.safe_load(main.read_text()), "smtp": SHARED["smtp"]})
    code, lines = check("--fleet", str(main))
    assert code == 1
    assert lines[1:] == [
        f"FAIL  {main}: storage (line {storage}): a fleet's companies share one PostgreSQL "
        f"database: give storage.url",
        f"FAIL  {birch}: numbers[1].number (line {line_of(birch, '+12125550100')}): "
        f"+12125550100 already belongs to company 'acme' "
        f"({main.parent / 'companies.d' / 'acme.yaml'})"]


def test_check_fleet_names_a_wrong_main_file_and_checks_nothing_else(tmp_path):
    main = fleet(tmp_path, {**SHARED, "gateway": {"type": "log"}})
    company(main, "acme", ["+12125550100"])
    code, lines = check("--fleet", str(main))
    assert code == 1
    assert lines == [f"FAIL  {main}: gateway (line {line_of(main, 'gateway:')}): not a "
                     "fleet-wide section: write it in each company's file (the main file holds "
                     "storage, smtp, logging, admin_email, incidents, metrics, retention, "
                     "companies and msp)"]


def test_company_and_config_are_one_or_the_other(tmp_path):
    main = fleet(tmp_path)
    company(main, "acme", ["+12125550100"])
    both = CliRunner().invoke(cli, ["calls", "-c", str(main), "--company", "acme",
                                           "--fleet", str(main)])
    assert both.exit_code == 2 and "give -c FILE or --company ID, not both" in both.output
    alone = CliRunner().invoke(cli, ["calls", "--fleet", str(main)])
    assert alone.exit_code == 2 and "give the company too" in alone.output
    wrong = CliRunner().invoke(cli, ["calls", "--company", "birch", "--fleet", str(main)])
    assert wrong.exit_code == 2 and "no company 'birch'" in wrong.output
    # A company's unit is the package's template, never a single install's unit from -c.
    unit = CliRunner().invoke(cli, ["install", "--systemd", "--company", "acme", "--fleet",
                                    str(main), "--unit-dir", str(tmp_path / "units")])
    assert unit.exit_code == 2 and "textback@ID.service" in unit.output
    assert not (tmp_path / "units").exists()


@pytest.fixture
def two_companies(tmp_path, store_location):
    """A fleet of two companies on each backend: SQLite (a file per company, by `{company}`
    in the main file's storage.path) or one PostgreSQL database for both."""
    storage = {"path": str(tmp_path / "state" / "{company}" / "textback.db")}
    if isinstance(store_location, str):
        storage["url"] = store_location
    main = fleet(tmp_path, {"storage": storage, "smtp": SHARED["smtp"]})
    for slug in ("acme", "birch"):
        (tmp_path / "state" / slug).mkdir(parents=True)
    company(main, "acme", ["+12125550100"])
    company(main, "birch", ["+12125550101"])
    return main


def test_company_picks_its_file_and_store_on_real_commands(two_companies):
    main = two_companies

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, [*args, "--fleet", str(main)])
        assert result.exit_code == 0, result.output
        return result.output

    assert run("optout", "add", "+12125550123", "--company", "acme") == "+12125550123 suppressed.\n"
    assert "+12125550123" in run("optout", "list", "--company", "acme")
    assert run("optout", "list", "--company", "birch") == "No suppressed numbers.\n"
    state = main.parent.parent / "state"
    if not yaml.safe_load(main.read_text())["storage"].get("url"):  # SQLite: a file each
        assert (state / "acme" / "textback.db").is_file() and (state / "birch" / "textback.db").is_file()
    assert run("inbox", "--company", "birch", "--json") == "[]\n"
    checked = CliRunner().invoke(cli, ["check", "--company", "birch", "--fleet", str(main)])
    assert checked.output.splitlines()[0] == (
        f"ok    config: {main.parent / 'companies.d' / 'birch.yaml'} (1 business number(s), "
        f"1 owner(s))")


def test_run_refuses_a_fleet_it_cannot_serve_before_starting_anything(tmp_path):
    main = fleet(tmp_path)

    def run(*args: str):
        return CliRunner().invoke(cli, ["run", *args])

    empty = run("--fleet", str(main))
    assert empty.exit_code == 2 and "no company file (*.yaml) here" in empty.output
    acme = company(main, "acme", ["+12125550100"])
    both = run("-c", str(acme), "--company", "acme", "--fleet", str(main))
    assert both.exit_code == 2 and "not both" in both.output
    company(main, "birch", ["+12125550100"])
    shared_number = run("--fleet", str(main))
    assert shared_number.exit_code == 2 and "+12125550100" in shared_number.output
    twice = run("--company", "acme", "--company", "acme", "--fleet", str(main))
    assert twice.exit_code == 2 and "cannot share one process" in twice.output
    nosuch = run("--company", "nosuch", "--fleet", str(main))
    assert nosuch.exit_code == 2 and "acme" in nosuch.output  # the companies there are named


def test_run_reads_each_company_as_every_command_reads_one(tmp_path, monkeypatch):
    """`run --company` (repeatable) and a command's single --company take one path
    (`load_config`/`load_configs`): the same problems named the same way, the same exit, and
    the same main file when --fleet is not given."""
    main = fleet(tmp_path)
    company(main, "acme", ["+12125550100"], colour="blue")

    def both(*args: str) -> tuple[int, str]:
        run = CliRunner().invoke(cli, ["run", *args])
        calls = CliRunner().invoke(cli, ["calls", *args])
        assert (run.exit_code, run.output) == (calls.exit_code, calls.output)
        return run.exit_code, run.output

    code, output = both("--company", "acme", "--fleet", str(main))
    acme = main.parent / "companies.d" / "acme.yaml"
    assert code == 2 and output == (
        "textback: configuration has 1 problem(s):\n"
        f"  {acme}: colour (line {line_of(acme, 'colour:')}): unknown key (check the spelling "
        "against config.example.yaml)\n")
    nosuch = (f"no company 'nosuch': {main.parent / 'companies.d' / 'nosuch.yaml'} does not "
              "exist (companies here: acme)")
    code, output = both("--company", "nosuch", "--fleet", str(main))
    assert code == 2 and nosuch in output
    # Without --fleet, each reads the default main file.
    monkeypatch.setattr("textback.commands.common.DEFAULT_FLEET_PATH", main)
    code, output = both("--company", "nosuch")
    assert code == 2 and nosuch in output


FLEET_WEB_PORT = 18196


@pytest.mark.parametrize("chosen", [(), ("--company", "acme", "--company", "birch")],
                         ids=["every company", "two by name"])
def test_run_serves_the_fleets_companies_in_one_process_each_under_its_host(
        tmp_path, chosen, postgres_server, postgres_template):
    """`textback run --fleet MAIN` (every company), or with --company once per company: one
    process, one web port, each company's pages under its own host name, on one PostgreSQL
    database as a role row-level security binds."""
    state = tmp_path / "state"
    url = postgres_server.new_database(template=postgres_template,
                                       owner=postgres_server.daemon_role())
    main = fleet(tmp_path, {"storage": {"url": url,
                                        "path": str(state / "{company}" / "textback.db")},
                            "smtp": SHARED["smtp"]})
    names = {"acme": "Acme Remodeling", "birch": "Birch & Sons"}
    for n, (slug, name) in enumerate(names.items()):
        (state / slug).mkdir(parents=True)
        company(main, slug, [f"+1212555010{n}"],
                business={"name": name, "timezone": "America/New_York"},
                web={"port": FLEET_WEB_PORT, "public_url": f"http://{slug}.localhost:{FLEET_WEB_PORT}"},
                agi={"routing_file": str(state / slug / "routing.json")})
    log = tmp_path / "run.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "textback", "run", "--fleet", str(main),
                                    *chosen], stdout=output, stderr=subprocess.STDOUT, text=True)
    try:
        pages, tried = {}, {}
        deadline = time.monotonic() + 120
        while len(pages) < len(names):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no pages ({tried}):\n{log.read_text()}"
            for slug in names:
                try:
                    pages[slug] = signin_page(slug)
                except OSError as exc:  # not listening yet, or 503 while a company joins
                    tried[slug] = repr(exc)
                    time.sleep(0.2)
        for slug, name in names.items():
            assert f"Sign in to {html.escape(name)}" in pages[slug]
            assert html.escape(names["birch" if slug == "acme" else "acme"]) not in pages[slug]
        with pytest.raises(urllib.error.HTTPError) as unknown:
            signin_page("carol")
        assert unknown.value.code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    output = log.read_text()
    assert process.returncode == 0, output
    assert "[acme]" in output and "[birch]" in output  # each company's lines name it


def signin_page(slug: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{FLEET_WEB_PORT}/signin",
                                     headers={"Host": f"{slug}.localhost:{FLEET_WEB_PORT}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.read().decode()
