"""A fleet's configuration: one main file of shared sections, one file per company.

An installer who runs textback for many companies writes what is the same for all of them
once, in the fleet's main file (/etc/textback/fleet.yaml): the database, the mail relay, the
log level, the admin's address and when they are emailed, metrics and retention. Each
company's file in the directory it names (`companies: /etc/textback/companies.d`,
`acme.yaml` holding `company: {id: acme}`) holds the rest, as a single install's config
does, and inherits those sections.

Merging is by whole section: a top-level section a company's file writes replaces the main
file's section of that name entirely; one it does not write is the main file's, as written
there. Nothing is merged key by key, so a section reads in one place as it is in effect,
and a secret of the main file (the relay's password) is never sent to a host that a
company's file wrote. A key that comes from the main file is named, when it is wrong, by
the main file's line.

The host's paths are each company's: in a fleet, a storage section without `path` is
/var/lib/textback/<id>/textback.db (the run lock and the photos' directory beside it) and
the AGI's routing table /var/lib/textback/<id>/routing.json, the state directory the
template unit `textback@<id>.service` gives the company's daemon. A main file's
`storage.path` must hold `{company}`, which stands for the company's id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

from pydantic import Field, IPvAnyNetwork, ValidationError, model_validator

from textback.config import (COMPANY_ID_PATTERN, EMAIL_PATTERN, ConfigError, Identifier, Loaded,
                             Origins, _describe, read_mapping, read_text, validated)
from textback.config_schema import Strict
from textback.core.companies import web_host
from textback.core.msp import MspAdmin
from textback.unit import STATE_DIRECTORY

DEFAULT_FLEET_PATH = Path("/etc/textback/fleet.yaml")
# The sections the main file may hold: the installer's own infrastructure and policy, the
# same for every company. A company's business, hours, numbers, owners, templates, gateway,
# PBXs (each lists the company's numbers), web listener, webhooks and CRM are its own.
FLEET_SECTIONS = ("storage", "smtp", "logging", "admin_email", "incidents", "metrics",
                  "retention")
COMPANY_PLACEHOLDER = "{company}"
# The main file's own keys besides its shared sections: where the companies are, and the MSP
# console (never inherited: a company's web app learns of the MSP admins from the process).
MAIN_KEYS = ("companies", "msp")
ARGON2ID_PREFIX = "$argon2id$"


class MspAdminConfig(Strict):
    """An MSP admin: signs in to the console and opens any company of the process."""

    id: Identifier
    name: str = Field(min_length=1, max_length=80)
    email: str = Field(pattern=EMAIL_PATTERN)
    # An argon2id hash (`textback msp-password ID` writes it), in a file like every secret.
    password_hash_file: Path

    def admin(self) -> MspAdmin:
        return MspAdmin(self.id, self.name, self.email)


class MspConfig(Strict):
    """The MSP console of a fleet's process: served on its own host name by the process's web
    front, at `public_url` (whose scheme sets the cookies' Secure flag, as a company's does)."""

    public_url: str = Field(pattern=r"^https?://[A-Za-z0-9.-]+(:\d+)?/?$")
    admins: list[MspAdminConfig] = Field(min_length=1, max_length=200)
    session_idle_minutes: float = Field(60, ge=1, le=24 * 60)
    signin_failures_per_account: int = Field(5, ge=1, le=1000)
    signin_failures_per_address: int = Field(20, ge=1, le=10_000)
    signin_window_minutes: float = Field(15, gt=0, le=24 * 60)
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _unique(self) -> "MspConfig":
        seen: set[str] = set()
        for admin in self.admins:
            if admin.id in seen:
                raise ValueError(f"admin id {admin.id!r} is given twice")
            seen.add(admin.id)
        return self

    @property
    def host(self) -> str:
        return web_host(self.public_url)

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")

    def admin(self, admin_id: str) -> MspAdminConfig | None:
        return next((admin for admin in self.admins if admin.id == admin_id), None)


@dataclass(frozen=True)
class FleetMain:
    """The fleet's main file: its shared sections, as written, and where its companies are."""

    source: Path
    companies_dir: Path
    sections: Mapping[str, Any]
    origins: Origins
    msp: MspConfig | None = None

    def company_file(self, company_id: str) -> Path:
        """The file of company `company_id`; ConfigError when there is none."""
        if not re.fullmatch(COMPANY_ID_PATTERN, company_id):
            raise self.origins.refused([("companies", f"{company_id!r} is not a company id "
                                         "(lowercase letters, digits, - and _)")])
        path = self.companies_dir / f"{company_id}.yaml"
        if not path.is_file():
            known = ", ".join(p.stem for p in company_files(self.companies_dir)) or "none"
            raise self.origins.refused([("companies", f"no company {company_id!r}: {path} does "
                                         f"not exist (companies here: {known})")])
        return path


@dataclass(frozen=True)
class Fleet:
    """A fleet's companies, each one's config resolved with the sections it inherits."""

    source: Path
    companies_dir: Path
    companies: tuple[Loaded, ...]  # by file name

    def company(self, company_id: str) -> Loaded:
        """Company `company_id`'s config; KeyError when the fleet has no such company."""
        for one in self.companies:
            if one.config.company.id == company_id:
                return one
        raise KeyError(company_id)


class FleetError(Exception):
    """The fleet cannot run as configured; `problems` lists `file: key (line N): message`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def load_company(main_path: Path, company_id: str) -> Loaded:
    """Company `company_id`'s config: its file in the fleet's companies directory, with the
    sections it inherits from the main file `main_path`. Raises ConfigError naming each
    problem's file, key and line. Other companies' files are not read: one company's broken
    file never stops another's daemon (`textback check --fleet` checks them together)."""
    main = read_main(main_path)
    return load_member(main.company_file(company_id), main)


def load_fleet(main_path: Path) -> Fleet:
    """Every company of the fleet, each resolved as `load_company` does, checked against each
    other (`cross_checked`). Raises ConfigError when the main file is wrong, FleetError
    listing every problem of every file otherwise."""
    main = read_main(main_path)
    loaded, problems = load_members(main.companies_dir, main)
    if problems:
        raise FleetError(said_once(problems))
    return Fleet(main.source, main.companies_dir, tuple(loaded.values()))


def read_main(path: Path) -> FleetMain:
    """The main file: only fleet-wide sections and `companies:`, the directory of the company
    files (relative to the main file's own directory)."""
    source = str(path)
    raw, lines = read_mapping(read_text(path), source)
    origins = Origins(source, lines)
    problems: list[tuple[str, str]] = []
    base = path.resolve().parent
    for key in raw:
        if key not in MAIN_KEYS and key not in FLEET_SECTIONS:
            problems.append((key, "not a fleet-wide section: write it in each company's file "
                                  f"(the main file holds {', '.join(FLEET_SECTIONS)}, "
                                  "companies and msp)"))
    directory = raw.get("companies")
    companies_dir = base
    if directory is None:
        problems.append(("companies", "required key is missing: the directory of the company "
                                      "files, e.g. companies: /etc/textback/companies.d"))
    elif not isinstance(directory, str):
        problems.append(("companies", "give the directory of the company files as a path"))
    else:
        companies_dir = base / directory
        if not companies_dir.is_dir():
            problems.append(("companies", f"{companies_dir} is not a directory"))
    storage = raw.get("storage")
    if isinstance(storage, dict) and "path" in storage \
            and COMPANY_PLACEHOLDER not in str(storage["path"]):
        problems.append(("storage.path", f"would be every company's run lock and photos' "
                                         f"directory: write {COMPANY_PLACEHOLDER} in it (its "
                                         f"id), or leave it out for {_state(COMPANY_PLACEHOLDER)}"
                                         f"/textback.db"))
    msp = None
    if "msp" in raw:
        try:
            msp = MspConfig.model_validate(_anchored_files(raw["msp"], base))
        except ValidationError as exc:
            for err in exc.errors():
                key, message = _describe(err)
                problems.append((f"msp.{key}" if key != "(top)" else "msp", message))
    if problems:
        raise origins.refused(problems)
    sections = {key: _anchored(value, base) for key, value in raw.items() if key not in MAIN_KEYS}
    return FleetMain(path, companies_dir, sections, origins, msp)


def msp_problems(main: FleetMain, companies: Iterable[Loaded]) -> list[str]:
    """The console against the companies of the process, and each admin's password hash file
    (unreadable, empty, or not an argon2id hash); `file: key (line N): message` each."""
    msp = main.msp
    if msp is None:
        return []
    problems: list[tuple[str, str]] = []
    for one in companies:
        web = one.config.web
        if web is not None and web_host(web.public_url) == msp.host:
            problems.append(("msp.public_url", f"{msp.host} is company "
                                               f"{one.config.company.id}'s web host: give the "
                                               "console a host name of its own"))
    for index, admin in enumerate(msp.admins):
        try:
            read_password_hash(admin.password_hash_file)
        except ValueError as exc:
            problems.append((f"msp.admins[{index}].password_hash_file", str(exc)))
    return main.origins.refused(problems).located() if problems else []


def read_password_hash(path: Path) -> str:
    """An MSP admin's argon2id hash from its file; ValueError saying what to do when it is not
    there yet or not a hash."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror}): set the admin's password with "
                         "`textback msp-password ID`") from None
    except UnicodeDecodeError:
        text = ""
    if not text.startswith(ARGON2ID_PREFIX) or "\n" in text:
        raise ValueError(f"{path} holds no argon2id hash: set the admin's password with "
                         "`textback msp-password ID`")
    return text


def company_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


def load_member(path: Path, main: FleetMain | None = None) -> Loaded:
    """One company's file, named after its company (`acme.yaml` is `company: {id: acme}`),
    with the sections it inherits from `main` (none without a main file: the file is the
    company's whole config)."""
    source = str(path)
    raw, lines = read_mapping(read_text(path), source)
    inherited = {key: main.origins for key in (main.sections if main else ()) if key not in raw}
    origins = Origins(source, lines, inherited)
    company = raw.get("company")
    company_id = company.get("id") if isinstance(company, dict) else None
    if company_id is None:
        raise origins.refused([("company", f"required in a fleet's company file: company: "
                                           f"{{id: {path.stem}, name: ...}}")])
    if company_id != path.stem:
        raise origins.refused([("company.id", f"is {company_id!r}, but a company's file is "
                                              f"named after it: name the company "
                                              f"{path.stem!r} here, or the file "
                                              f"{company_id}.yaml")])
    merged = {**{key: main.sections[key] for key in inherited}, **raw}
    if main is not None and re.fullmatch(COMPANY_ID_PATTERN, str(company_id)):
        merged = _host_paths(merged, company_id)
    return validated(merged, origins, path.resolve().parent)


def load_members(directory: Path, main: FleetMain | None = None
                 ) -> tuple[dict[Path, Loaded], dict[Path, list[str]]]:
    """Every company file of `directory` that loads, and the problems of each file (its own,
    and those `cross_checked` finds), each as `file: key (line N): message`, where the file
    is the main file for a key the company inherits."""
    files = company_files(directory)
    if not files:
        return {}, {directory: [f"{directory}: no company file (*.yaml) here"]}
    loaded: dict[Path, Loaded] = {}
    problems: dict[Path, list[str]] = {}
    for path in files:
        try:
            loaded[path] = load_member(path, main)
        except ConfigError as exc:
            problems[path] = exc.located()
    for path, problem in cross_checked(loaded):
        problems.setdefault(path, []).append(problem)
    return loaded, problems


def said_once(problems: Mapping[Path, list[str]]) -> list[str]:
    """Every company's problems, one a line; one in the main file that several companies
    inherit is said once."""
    return list(dict.fromkeys(line for lines in problems.values() for line in lines))


def cross_checked(loaded: Mapping[Path, Loaded]) -> list[tuple[Path, str]]:
    """The companies' files against each other: all share one PostgreSQL database, and no
    business number belongs to two companies (a call to it would be texted twice, under two
    names). Each problem with the company file it is found in."""
    problems: list[tuple[Path, str]] = []

    def problem(path: Path, key: str, message: str) -> None:
        file, where = loaded[path].origins.of(key)
        problems.append((path, f"{file}: {where}: {message}"))

    databases: dict[str, Path] = {}
    owners_of: dict[str, tuple[Path, str]] = {}
    for path, one in loaded.items():
        config = one.config
        if config.storage.backend != "postgresql":
            problem(path, "storage", "a fleet's companies share one PostgreSQL database: "
                                     "give storage.url")
        else:
            databases.setdefault(config.storage.url, path)
        for index, number in enumerate(config.numbers):
            first = owners_of.setdefault(number.number, (path, config.company.id))
            if first[0] != path:
                problem(path, f"numbers[{index}].number",
                        f"{number.number} already belongs to company {first[1]!r} ({first[0]})")
    if len(databases) > 1:
        first, *others = databases.items()
        for url, path in others:
            problem(path, "storage.url", f"{url} is not {first[1]}'s database ({first[0]}): "
                                         "a fleet's companies share one")
    return problems


def _state(company_id: str) -> PurePosixPath:
    """The company's state directory: StateDirectory=textback/%i of textback@.service."""
    return STATE_DIRECTORY / company_id


def _host_paths(raw: dict[str, Any], company_id: str) -> dict[str, Any]:
    """The company's own run lock, photos' directory and routing table on this host: the
    state directory's, unless its sections say otherwise; `{company}` in storage.path is its
    id."""
    raw = dict(raw)
    storage = raw.get("storage", {})
    if isinstance(storage, dict) and not str(storage.get("url") or "").startswith("sqlite:"):
        path = str(storage.get("path", _state(COMPANY_PLACEHOLDER) / "textback.db"))
        raw["storage"] = {**storage, "path": path.replace(COMPANY_PLACEHOLDER, company_id)}
    agi = raw.get("agi", {})
    if isinstance(agi, dict) and "routing_file" not in agi:
        raw["agi"] = {**agi, "routing_file": str(_state(company_id) / "routing.json")}
    return raw


def _anchored_files(msp: Any, base: Path) -> Any:
    """The msp section with each admin's relative password_hash_file made relative to the main
    file's directory."""
    if not isinstance(msp, dict) or not isinstance(msp.get("admins"), list):
        return msp
    admins = [{**admin, "password_hash_file": str(base / admin["password_hash_file"])}
              if isinstance(admin, dict) and isinstance(admin.get("password_hash_file"), str)
              else admin for admin in msp["admins"]]
    return {**msp, "admins": admins}


def _anchored(value: Any, base: Path) -> Any:
    """The main file's section with each relative secret file (`{file: db.secret}`) made
    relative to the main file's directory, as a single config's are to its own."""
    if isinstance(value, dict):
        anchored = {key: _anchored(item, base) for key, item in value.items()}
        if isinstance(value.get("file"), str) and not Path(value["file"]).is_absolute():
            anchored["file"] = str(base / value["file"])
        return anchored
    if isinstance(value, list):
        return [_anchored(item, base) for item in value]
    return value
