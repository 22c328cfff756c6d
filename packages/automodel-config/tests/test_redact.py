"""Secrets are hidden wherever a config is printed or saved; look-alike keys are left alone."""

from __future__ import annotations

import pytest

from automodel.config import (
    REDACTED,
    config_from_dict,
    is_secret_key,
    literal_secret_paths,
    parse_yaml_text,
    redact_override_args,
    redact_secrets,
)


@pytest.mark.parametrize(
    "key",
    [
        "hf_token",
        "token",
        "api_key",
        "wandbApiKey",
        "WANDB_API_KEY",
        "apikey",
        "APIKey",
        "password",
        "db-passwd",
        "secret",
        "client_secret",
        "secrets",
        "aws.credentials",
        "access_token",
        "auth-token",
        "key",
        "wandb_key",
        "ssh-private-key",
    ],
)
def test_keys_that_name_secrets_are_secret(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "pad_token",
        "eos_token",
        "bos_token",
        "mask_token",
        "image_token",
        "max_tokens",
        "max_new_tokens",
        "num_key_value_heads",
        "token_type_ids",
        "tokenizer",
        "tokenizer_name",
        "keys",
        "key_dim",
        "secret_santa_count",
        "text_key",
        "label_key",
        "sort_key",
        "",
        3,
        None,
    ],
)
def test_look_alike_keys_are_not_secret(key) -> None:
    assert not is_secret_key(key)


def test_redact_secrets_hides_secret_values_at_any_depth() -> None:
    data = {
        "hub": {"hf_token": "hf_abc", "repo": "me/model"},
        "loggers": [{"wandbApiKey": "w123", "project": "p"}],
        "db": {"password": 1234},
        "tokenizer": {"pad_token": "<pad>", "max_tokens": 512},
        "model": {"num_key_value_heads": 8, "token_type_ids": [0, 1]},
    }
    assert redact_secrets(data) == {
        "hub": {"hf_token": REDACTED, "repo": "me/model"},
        "loggers": [{"wandbApiKey": REDACTED, "project": "p"}],
        "db": {"password": REDACTED},
        "tokenizer": {"pad_token": "<pad>", "max_tokens": 512},
        "model": {"num_key_value_heads": 8, "token_type_ids": [0, 1]},
    }


@pytest.mark.parametrize("value", [None, "", True, False])
def test_empty_or_flag_values_under_secret_keys_stay_visible(value) -> None:
    assert redact_secrets({"hf_token": value}) == {"hf_token": value}


def test_everything_under_a_secret_section_is_hidden() -> None:
    data = {"secrets": {"wandb": "w123", "hub": ["hf_1", None]}, "credentials": {"user": "me", "port": 5}}
    assert redact_secrets(data) == {
        "secrets": {"wandb": REDACTED, "hub": [REDACTED, None]},
        "credentials": {"user": REDACTED, "port": REDACTED},
    }


def test_redact_secrets_does_not_change_its_input() -> None:
    data = {"api_key": "k"}
    redact_secrets(data)
    assert data == {"api_key": "k"}


def test_to_yaml_redacts_by_default_and_not_when_asked(monkeypatch) -> None:
    cfg = config_from_dict({"hub": {"hf_token": "hf_abc", "repo": "me/model"}})
    assert parse_yaml_text(cfg.to_yaml())[0] == {"hub": {"hf_token": REDACTED, "repo": "me/model"}}
    assert parse_yaml_text(cfg.to_yaml(redact=False))[0]["hub"]["hf_token"] == "hf_abc"
    assert "hf_abc" not in cfg.hub.to_yaml()


def test_a_value_read_from_a_secret_env_var_is_hidden_under_any_key(monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    monkeypatch.setenv("RUN_NAME", "exp1")
    cfg = config_from_dict({"auth": "${env:HF_TOKEN}", "header": "Bearer ${env:HF_TOKEN}", "name": "${env:RUN_NAME}"})
    assert parse_yaml_text(cfg.to_yaml())[0] == {"auth": REDACTED, "header": REDACTED, "name": "exp1"}


def test_a_value_copied_from_a_secret_key_is_hidden_under_any_key() -> None:
    cfg = config_from_dict(
        {
            "hub": {"hf_token": "hf_abc"},
            "login": "${hub.hf_token}",
            "tok": "${tokenizer.pad_token}",
            "tokenizer": {"pad_token": "<pad>"},
        }
    )
    dumped = parse_yaml_text(cfg.to_yaml())[0]
    assert dumped["login"] == REDACTED
    assert dumped["tok"] == "<pad>"
    assert "hf_abc" not in cfg.to_yaml()


def test_unresolved_dumps_keep_the_reference_text_and_still_hide_literal_secrets() -> None:
    cfg = config_from_dict({"api_key": "k123", "auth": "${env:HF_TOKEN}"})
    assert parse_yaml_text(cfg.to_yaml(resolve=False))[0] == {"api_key": REDACTED, "auth": REDACTED}


def test_literal_secret_paths_finds_literals_under_secret_keys_only() -> None:
    data = {
        "hub": {"hf_token": "hf_abc", "repo": "me/m", "token_ref": "${env:HF_TOKEN}"},
        "wandb": {"api_key": "${env:WANDB_API_KEY}", "project": "p"},
        "secrets": {"db": ["pw1", ""], "port": 5},
        "pad_token": "<pad>",
        "password": None,
    }
    assert literal_secret_paths(data) == [("hub", "hf_token"), ("secrets", "db", 0), ("secrets", "port")]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model.hf_token", "abc", "--lr", "1"], ["--model.hf_token", REDACTED, "--lr", "1"]),
        (["--wandb.api_key=abc"], [f"--wandb.api_key={REDACTED}"]),
        (["--+hub", "{token: abc, repo: x}"], ["--+hub", REDACTED]),
        (["--secrets.db.0", "pw"], ["--secrets.db.0", REDACTED]),
        (["--~hub.token", "--pad_token", "<pad>"], ["--~hub.token", "--pad_token", "<pad>"]),
        (["--a", "1", "oops", "--b=2"], ["--a", REDACTED, REDACTED, f"--b={REDACTED}"]),
    ],
)
def test_redact_override_args_hides_the_values_of_secret_keys(args, expected) -> None:
    assert redact_override_args(args) == expected
