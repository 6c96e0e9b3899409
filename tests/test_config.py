"""Configuration: every problem named by its YAML path and line; exit status 2 from the CLI."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from lab.configs import base_config, write_config
from textback.cli import main
from textback.config import ConfigError, load


def problems_of(tmp_path, config) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(write_config(tmp_path, config))
    return caught.value.problems


def test_the_example_config_is_valid_once_its_secrets_exist(tmp_path, monkeypatch):
    example = yaml.safe_load(open("config.example.yaml"))
    (tmp_path / "ami.secret").write_text("x")
    monkeypatch.setenv("TEXTBACK_SMTP_PASSWORD", "y")
    loaded = load(write_config(tmp_path, example))
    assert loaded.config.numbers[0].number == "+12125550100"
    assert loaded.secrets.ami.get_secret_value() == "x"


def test_a_valid_config_loads_and_resolves_the_secret_relative_to_the_file(tmp_path):
    loaded = load(write_config(tmp_path, base_config(tmp_path)))
    assert loaded.secrets.ami.get_secret_value() == "not-the-real-one"
    assert "not-the-real-one" not in repr(loaded)


def test_unknown_key_is_named_with_its_path_and_line(tmp_path):
    config = base_config(tmp_path)
    config["ami"]["usrname"] = "typo"
    [(where, message)] = problems_of(tmp_path, config)
    assert where.startswith("ami.usrname (line ")
    assert "unknown key" in message


def test_unknown_key_in_a_list_item(tmp_path):
    config = base_config(tmp_path)
    config["owners"][0]["phone"] = "x"
    [(where, _)] = problems_of(tmp_path, config)
    assert where.startswith("owners[0].phone")


def test_wrong_type_is_named(tmp_path):
    config = base_config(tmp_path, **{"ami.port": "five thousand"})
    [(where, message)] = problems_of(tmp_path, config)
    assert where.startswith("ami.port")
    assert "five thousand" in message


def test_missing_secret_file_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    config = base_config(tmp_path)
    config["ami"]["secret"] = {"file": "nowhere.secret"}
    config["smtp"].update(username="u", password={"env": "NO_SUCH_SECRET"})
    found = dict(problems_of(tmp_path, config))
    assert any(k.startswith("ami.secret") and "nowhere.secret" in v for k, v in found.items())
    assert any(k.startswith("smtp.password") and "NO_SUCH_SECRET" in v for k, v in found.items())


@pytest.mark.parametrize("change, path", [
    ({"ami.secret": "hunter2-inline"}, "ami.secret"),
    ({"smtp.password": "hunter2-inline"}, "smtp.password"),
    ({"gateway": {"type": "twilio", "twilio": {"account_sid": "AC" + "0" * 32,
                                                "auth_token": "hunter2-inline"}}}, "gateway.twilio.auth_token"),
    ({"gateway": {"type": "kannel", "kannel": {
        "sendsms_url": "http://127.0.0.1:13013/cgi-bin/sendsms", "username": "u",
        "password": "hunter2-inline", "webhook_token": {"env": "X"}}}}, "gateway.kannel.password"),
])
def test_a_secret_written_inline_is_refused_without_echoing_it(tmp_path, change, path):
    [(where, message)] = problems_of(tmp_path, base_config(tmp_path, **change))
    assert where.startswith(f"{path} (line ")
    assert "{file: /path/to/secret} or {env: VARIABLE_NAME}" in message
    assert "hunter2" not in where + message


def test_template_with_unknown_placeholder(tmp_path):
    config = base_config(tmp_path, **{"text.template": "Hi from {busines_name}"})
    [(where, message)] = problems_of(tmp_path, config)
    assert where.startswith("text.template")
    assert "{busines_name}" in message


def test_template_cannot_reach_into_objects(tmp_path):
    config = base_config(tmp_path, **{"text.template": "{business_name.__class__}"})
    [(where, _)] = problems_of(tmp_path, config)
    assert where.startswith("text.template")


def test_every_problem_is_reported_at_once(tmp_path):
    config = base_config(tmp_path, **{"ami.port": 0, "business.timezone": "Mars/Olympus"})
    config["numbers"][0]["number"] = "555-not"
    wheres = [w.split(" ")[0] for w, _ in problems_of(tmp_path, config)]
    assert {"ami.port", "business.timezone", "numbers[0].number"} <= set(wheres)


def test_number_owner_must_exist(tmp_path):
    config = base_config(tmp_path)
    config["numbers"][0]["owner"] = "nobody"
    [(_, message)] = problems_of(tmp_path, config)
    assert "nobody" in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("business:\n  name: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert "line" in caught.value.problems[0][0]


@pytest.mark.parametrize("change", [
    {"ami.bogus": 1},
    {"ami.port": "x"},
    {"ami.secret": {"env": "TEXTBACK_TEST_UNSET"}},
    {"text.template": "{nope}"},
])
def test_cli_exits_2_and_names_the_path(tmp_path, change):
    path = write_config(tmp_path, base_config(tmp_path, **change))
    result = CliRunner().invoke(main, ["check", "-c", str(path)])
    assert result.exit_code == 2
    dotted = next(iter(change))
    assert dotted in result.output


def test_contacts_import_from_csv_with_bad_rows_named(tmp_path):
    (tmp_path / "crm.csv").write_text("number,name,class\n+12125550150,Jane Smith,Client\n"
                                      "+12125550151,Lumber Supply,vendor\n")
    loaded = load(write_config(tmp_path, base_config(tmp_path, contacts_csv="crm.csv")))
    assert loaded.config.contact("+12125550150").kind == "client"
    assert loaded.config.contact("+12125550151").name == "Lumber Supply"
    (tmp_path / "crm.csv").write_text("number,name,class\n+12125550150,Jane,client\n"
                                      "555-not,Bad,client\n+12125550152,X,friend\n")
    problems = problems_of(tmp_path, base_config(tmp_path, contacts_csv="crm.csv"))
    assert [where for where, _ in problems] == ["contacts_csv (crm.csv line 3)",
                                                "contacts_csv (crm.csv line 4)"]


def test_template_names_must_exist_and_named_templates_are_checked(tmp_path):
    config = base_config(tmp_path, **{
        "text.templates": {"weekend": "{business_name}: back Monday!", "spanish": "Hola {nombre}"},
        "hours": {"windows": [{"days": ["sat"], "start": "09:00", "end": "13:00", "template": "weeknd"}]}})
    config["numbers"][1]["after_hours_template"] = "nope"
    found = dict(problems_of(tmp_path, config))
    assert any(k.startswith("text.templates") and "templates.spanish" in v and "{nombre}" in v
               for k, v in found.items())
    config["text"]["templates"]["spanish"] = "Hola, le escribe el equipo."
    found = [message for _, message in problems_of(tmp_path, config)]
    assert any("text.templates.spanish: the first text must name the business" in m for m in found)
    config["text"]["templates"]["spanish"] = "Hola, le escribe {business_name}."
    [(_, message)] = problems_of(tmp_path, config)
    assert "hours.windows[0].template: no template 'weeknd' in text.templates (spanish, weekend)" in message
    config["hours"]["windows"][0]["template"] = "weekend"
    [(_, message)] = problems_of(tmp_path, config)
    assert "numbers[1].after_hours_template: no template 'nope'" in message


def test_contact_numbers_in_any_shape_are_stored_canonical(tmp_path):
    """A CRM export writes numbers as people do; they must match the caller's E.164 number."""
    (tmp_path / "crm.csv").write_text('number,name,class\n(212) 555-0150,Jane Smith,client\n'
                                      '"""Lumber"" <sip:+1-212-555-0151@supplier.example>",Lumber,vendor\n')
    config = base_config(tmp_path, contacts_csv="crm.csv",
                         contacts=[{"number": "212.555.0152", "name": "Al", "class": "staff"}])
    loaded = load(write_config(tmp_path, config)).config
    assert {c.number: c.kind for c in loaded.contacts} == {
        "+12125550152": "staff", "+12125550150": "client", "+12125550151": "vendor"}
    config["contacts"][0]["number"] = "555-0152"
    [(where, message)] = problems_of(tmp_path, config)
    assert where.startswith("contacts[0].number (line ")
    assert "'555-0152' is not a valid phone number in US" in message


def test_a_csv_cdr_without_call_ids_is_refused(tmp_path):
    config = base_config(tmp_path, recovery={"cdr": {"csv": {"loguniqueid": False, "newcdrcolumns": False}}})
    [(where, message)] = problems_of(tmp_path, config)
    assert where.startswith("recovery.cdr.csv (line ") and "newcdrcolumns = yes" in message


def test_a_mysql_cdr_needs_its_section_and_its_secret(tmp_path):
    [(where, message)] = problems_of(tmp_path, base_config(tmp_path, recovery={"cdr": {"type": "mysql"}}))
    assert where.startswith("recovery.cdr") and "mysql section" in message
    config = base_config(tmp_path, recovery={"cdr": {"type": "mysql", "mysql": {
        "user": "textback", "secret": {"file": "cdrdb.secret"}, "timezone": "America/New_York"}}})
    [(where, message)] = problems_of(tmp_path, config)
    assert where.startswith("recovery.cdr.mysql.secret") and "cdrdb.secret" in message
    (tmp_path / "cdrdb.secret").write_text("s3cret\n")
    assert load(write_config(tmp_path, config)).secrets.pbx_cdr["main"].get_secret_value() == "s3cret"


KANNEL = {"sendsms_url": "http://127.0.0.1:13013/cgi-bin/sendsms", "username": "textback",
          "password": {"env": "KANNEL_PASSWORD"}, "webhook_token": {"env": "KANNEL_TOKEN"}}


def test_the_old_name_of_gateway_callbacks_is_read_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KANNEL_PASSWORD", "p" * 12)
    monkeypatch.setenv("KANNEL_TOKEN", "t" * 24)
    old = base_config(tmp_path, gateway={"type": "kannel", "kannel": KANNEL, "webhooks": {
        "listen_port": 8781, "public_base_url": "https://textback.example/hooks"}})
    callbacks = load(write_config(tmp_path, old)).config.gateway.callbacks
    assert (callbacks.listen_port, callbacks.public_base_url) == (
        8781, "https://textback.example/hooks")
    assert any("gateway.webhooks is now called gateway.callbacks" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    new = base_config(tmp_path, gateway={"type": "kannel", "kannel": KANNEL, "callbacks": {
        "public_base_url": "https://textback.example/hooks"}})
    assert load(write_config(tmp_path, new)).config.gateway.callbacks.listen_port == 8780
    assert not any("gateway.webhooks" in r.getMessage() for r in caplog.records)


def test_both_names_of_gateway_callbacks_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KANNEL_PASSWORD", "p" * 12)
    monkeypatch.setenv("KANNEL_TOKEN", "t" * 24)
    hooks = {"public_base_url": "https://textback.example/hooks"}
    both = base_config(tmp_path, gateway={"type": "kannel", "kannel": KANNEL, "webhooks": hooks,
                                          "callbacks": hooks})
    [(where, message)] = problems_of(tmp_path, both)
    assert where.startswith("gateway") and "'webhooks' is its old name" in message


def test_a_gateway_that_receives_texts_needs_its_callbacks_section(tmp_path, monkeypatch):
    monkeypatch.setenv("KANNEL_PASSWORD", "p" * 12)
    monkeypatch.setenv("KANNEL_TOKEN", "t" * 24)
    [(_, message)] = problems_of(tmp_path, base_config(tmp_path, gateway={
        "type": "kannel", "kannel": KANNEL}))
    assert "add a 'callbacks:' section" in message
