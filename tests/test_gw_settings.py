"""The gateway YAML sections: typos and bad values are refused, secrets resolve, the docs' examples load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from sms_gateway.settings import (HttpSettings, KannelSettings, PluginSettings, TelnyxSettings,
                                  TwilioSettings, CallbackSettings, resolve_secrets)

DOCS = Path(__file__).parents[1] / "docs" / "gateways.md"
SECTIONS = {"twilio": TwilioSettings, "telnyx": TelnyxSettings, "kannel": KannelSettings,
            "http": HttpSettings, "plugin": PluginSettings}
SID = "AC" + "0" * 32


def doc_examples() -> list[dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    return [yaml.safe_load(block)["gateway"] for block in blocks if block.startswith("gateway:")]


def test_every_yaml_example_in_the_docs_is_a_valid_section():
    examples = doc_examples()
    assert {e["type"] for e in examples} == set(SECTIONS)
    for example in examples:
        SECTIONS[example["type"]].model_validate(example[example["type"]])
        if "callbacks" in example:
            CallbackSettings.model_validate(example["callbacks"])


@pytest.mark.parametrize("section, message", [
    ({"account_sid": "AC123", "auth_token": {"env": "T"}}, "account_sid"),
    ({"account_sid": SID, "auth_token": {"env": "T"}, "senders": {"2125550100": "+12125550199"}},
     "E.164"),
    ({"account_sid": SID, "auth_token": {"env": "T"}, "senders": {"+12125550100": "Acme"}},
     "Messaging Service SID"),
    ({"account_sid": SID, "auth_token": {"env": "T"}, "api_base_url": "api.twilio.com"},
     "not an http"),
    ({"account_sid": SID, "auth_token": "inline-secret"}, "auth_token"),
    ({"account_sid": SID, "auth_token": {"env": "T"}, "statuscallback": True}, "statuscallback"),
])
def test_twilio_section_problems_are_named(section, message):
    with pytest.raises(ValidationError, match=message):
        TwilioSettings.model_validate(section)


def test_a_telnyx_public_key_must_be_an_ed25519_key():
    with pytest.raises(ValidationError, match="public_key"):
        TelnyxSettings.model_validate({"api_key": {"env": "K"}, "public_key": "c2hvcnQ="})


def test_webhook_public_url_is_normalised_and_checked():
    assert CallbackSettings(public_base_url="https://x.example/hooks/").public_base_url == \
        "https://x.example/hooks"
    with pytest.raises(ValidationError, match="not an http"):
        CallbackSettings(public_base_url="x.example")
    with pytest.raises(ValidationError, match="no query string"):
        CallbackSettings(public_base_url="https://x.example/?a=1")


def test_secrets_resolve_relative_to_the_config_folder_and_problems_name_their_key(tmp_path,
                                                                                  monkeypatch):
    (tmp_path / "pw").write_text("kannel-pw\n")
    monkeypatch.setenv("KANNEL_TOKEN", "tok")
    section = KannelSettings(username="textback", password={"file": "pw"},
                             webhook_token={"env": "KANNEL_TOKEN"})
    values, problems = resolve_secrets(section, tmp_path)
    assert problems == []
    assert {k: v.get_secret_value() for k, v in values.items()} == {
        "password": "kannel-pw", "webhook_token": "tok"}
    monkeypatch.delenv("KANNEL_TOKEN")
    values, problems = resolve_secrets(section, tmp_path)
    assert problems == [("webhook_token", "environment variable KANNEL_TOKEN is not set or empty")]
    assert "tok" not in repr(values)


def test_the_http_section_lists_every_secret_it_uses():
    section = HttpSettings.model_validate({
        "url": "https://x.example/send",
        "auth": {"type": "basic", "username": "u", "password": {"env": "P"}},
        "secret_fields": {"api_password": {"env": "A"}},
        "inbound": {"token": {"env": "T"}}})
    assert set(section.secret_refs()) == {"auth.password", "secret_fields.api_password",
                                          "inbound.token"}
