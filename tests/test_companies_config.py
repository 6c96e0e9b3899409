"""A fleet's companies directory: `textback check --companies DIR` checks every company's file
and the files against each other, naming file, key and line; and `company:` itself."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from lab.configs import base_config, write_config
from textback.cli import main
from textback.config import ConfigError, load

URL = "postgresql://textback@db.example.internal/textback"


def company_file(directory, slug: str, numbers: list[str], **overrides) -> None:
    config = base_config(directory, **{
        "company": {"id": slug, "name": slug.title()}, "storage": {"url": URL},
        "numbers": [{"number": number, "owner": "dana"} for number in numbers], **overrides})
    write_config(directory, config, name=f"{slug}.yaml")


def check(directory) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["check", "--companies", str(directory)])
    return result.exit_code, result.output.splitlines()


def test_companies_that_agree_are_each_ok(tmp_path):
    company_file(tmp_path, "acme", ["+12125550100"])
    company_file(tmp_path, "birch", ["+12125550101", "+12125550102"])
    code, lines = check(tmp_path)
    assert lines == [
        f"ok    company acme: {tmp_path / 'acme.yaml'} (1 business number(s), 1 owner(s))",
        f"ok    company birch: {tmp_path / 'birch.yaml'} (2 business number(s), 1 owner(s))"]
    assert code == 0


def test_each_problem_names_its_file_key_and_line(tmp_path):
    company_file(tmp_path, "acme", ["+12125550100"])
    company_file(tmp_path, "birch", ["+12125550101", "+12125550100"],
                 storage={"url": URL + "_other"})
    company_file(tmp_path, "cedar", ["+12125550109"], company={"id": "cedars"})
    company_file(tmp_path, "dogwood", ["+12125550108"], storage={"path": "/tmp/x.db"},
                 numbrs=[])
    company_file(tmp_path, "elm", ["+12125550107"], storage={"path": "/tmp/y.db"})
    code, lines = check(tmp_path)
    assert code == 1
    assert lines[0] == f"ok    company acme: {tmp_path / 'acme.yaml'} (1 business number(s), 1 owner(s))"
    failures = lines[1:]
    assert all(line.startswith("FAIL  ") for line in failures)

    def one(pattern: str) -> None:
        assert sum(bool(re.fullmatch(pattern, line)) for line in failures) == 1, (pattern, failures)

    birch, cedar, dogwood, elm = (re.escape(str(tmp_path / f"{n}.yaml"))
                                  for n in ("birch", "cedar", "dogwood", "elm"))
    acme = re.escape(str(tmp_path / "acme.yaml"))
    one(rf"FAIL  {birch}: numbers\[1\]\.number \(line \d+\): \+12125550100 already belongs to"
        rf" company 'acme' \({acme}\)")
    one(rf"FAIL  {birch}: storage\.url \(line \d+\): {re.escape(URL)}_other is not {acme}'s"
        rf" database \({re.escape(URL)}\): a fleet's companies share one")
    one(rf"FAIL  {cedar}: company\.id \(line \d+\): is 'cedars', but a company's file is named"
        rf" after it: .*")
    one(rf"FAIL  {dogwood}: numbrs.*")  # a file that does not load: the config's own error
    one(rf"FAIL  {elm}: storage \(line \d+\): a fleet's companies share one PostgreSQL"
        rf" database: give storage.url")
    assert len(failures) == 5
    text = (tmp_path / "birch.yaml").read_text().splitlines()
    line = 1 + next(i for i, row in enumerate(text) if "+12125550100" in row)
    assert f"numbers[1].number (line {line})" in "\n".join(failures)  # the very line


def test_an_empty_directory_is_a_failure(tmp_path):
    code, lines = check(tmp_path)
    assert code == 1 and lines == [f"FAIL  {tmp_path}: no company file (*.yaml) here"]


def test_a_config_without_company_is_the_company_default(tmp_path):
    assert load(write_config(tmp_path, base_config(tmp_path))).config.company.id == "default"


@pytest.mark.parametrize("company", [{"id": "Acme"}, {"id": "-acme"}, {"id": "acme", "nmae": "x"}])
def test_a_company_id_is_a_plain_lowercase_name(tmp_path, company):
    with pytest.raises(ConfigError, match="company"):
        load(write_config(tmp_path, base_config(tmp_path, company=company)))
