"""Permissions come from the user, never from the config: `--allow-target`, the environment, `--trust-remote-code`."""

from __future__ import annotations

import pytest

from automodel.config import (
    ConfigError,
    instantiate,
    load_config,
    load_config_from_argv,
    remote_code_allowed,
    trusts_remote_code,
)


def test_a_target_allowlist_in_the_file_is_refused_at_load_naming_its_line(write_yaml) -> None:
    path = write_yaml("model:\n  name: x\ntarget_allowlist: [os]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.file, info.value.line, info.value.path) == (str(path), 3, "target_allowlist")
    assert "a config may not grant itself permissions" in info.value.message
    assert "--allow-target NAME" in info.value.hint and "AUTOMODEL_TARGET_ALLOWLIST" in info.value.hint


def test_a_target_allowlist_added_by_an_override_is_refused_too(write_yaml) -> None:
    with pytest.raises(ConfigError, match="may not grant itself permissions") as info:
        load_config(write_yaml("model: {}\n"), ["--+target_allowlist", "[os]"])
    assert info.value.file == "command line"


def test_argv_carries_allowances_and_trust_that_are_not_overrides(write_yaml) -> None:
    path = write_yaml("m:\n  _target_: config_test_targets.Adam\nmodel:\n  trust_remote_code: true\n")
    argv = ["-c", str(path), "--allow-target", "config_test_targets", "--trust-remote-code", "--m.lr", "0.5"]
    cfg = load_config_from_argv(argv)
    assert instantiate(cfg.m).lr == 0.5
    assert trusts_remote_code(cfg)
    with pytest.raises(ConfigError, match="trust_remote_code"):
        load_config_from_argv(argv[:4])


def test_an_allow_target_flag_without_a_name_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--allow-target: expected one argument"):
        load_config_from_argv(["-c", "x.yaml", "--allow-target"])


# ---- trust_remote_code -------------------------------------------------------------------------

TRUSTING = "model:\n  name: x\n  trust_remote_code: true\ndata:\n  - {name: d, trust_remote_code: false}\n"


def test_trust_remote_code_in_the_file_is_refused_naming_key_file_and_line(write_yaml) -> None:
    path = write_yaml(TRUSTING)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.path, info.value.file, info.value.line) == ("model.trust_remote_code", str(path), 3)
    assert "run Python code shipped with the model" in info.value.message
    assert info.value.hint == (
        "if you trust that code, pass --trust-remote-code to the automodel command, set "
        "AUTOMODEL_TRUST_REMOTE_CODE=1, or give the value on the command line yourself (--model.trust_remote_code true)"
    )


@pytest.mark.parametrize(
    "text",
    [
        "datasets:\n  - name: x\n    trust_remote_code: true\n",
        "a:\n  b:\n    kwargs: {trust_remote_code: yes}\n",
        "flag: true\nmodel:\n  trust_remote_code: ${flag}\n",
    ],
)
def test_trust_remote_code_is_refused_in_any_section_and_whatever_makes_it_true(write_yaml, text) -> None:
    with pytest.raises(ConfigError, match="a config file may not turn that on by itself"):
        load_config(write_yaml(text))


def test_trust_remote_code_read_from_the_environment_is_refused(write_yaml, monkeypatch) -> None:
    monkeypatch.setenv("AMC_TRUST", "true")
    with pytest.raises(ConfigError, match=r"model\.trust_remote_code"):
        load_config(write_yaml("model:\n  trust_remote_code: ${env:AMC_TRUST}\n"))


def test_the_flag_allows_it(write_yaml) -> None:
    assert trusts_remote_code(load_config(write_yaml(TRUSTING), trust_remote_code=True))


@pytest.mark.parametrize(("value", "allowed"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_the_environment_variable_allows_it(write_yaml, monkeypatch, value, allowed) -> None:
    monkeypatch.setenv("AUTOMODEL_TRUST_REMOTE_CODE", value)
    assert remote_code_allowed() is allowed
    if allowed:
        assert trusts_remote_code(load_config(write_yaml(TRUSTING)))
    else:
        with pytest.raises(ConfigError, match="trust_remote_code"):
            load_config(write_yaml(TRUSTING))


def test_a_value_the_user_typed_as_an_override_is_allowed(write_yaml) -> None:
    path = write_yaml("model:\n  name: x\n")
    assert trusts_remote_code(load_config(path, ["--model.trust_remote_code", "true"]))
    assert trusts_remote_code(load_config(path, ["--model", "{name: y, trust_remote_code: true}"]))


def test_false_values_and_overrides_to_false_need_no_permission(write_yaml) -> None:
    assert not trusts_remote_code(load_config(write_yaml(TRUSTING), ["--model.trust_remote_code", "false"]))
    assert not trusts_remote_code(load_config(write_yaml("model:\n  trust_remote_code: false\n")))
