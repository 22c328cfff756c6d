"""Building objects from `_target_` sections: depth first, runtime kwargs win, errors point at the YAML."""

from __future__ import annotations

import functools
import sys

import config_test_targets as targets
import pytest

from automodel.config import ConfigError, config_from_dict, instantiate, load_config


def test_a_target_is_called_with_its_sibling_keys_as_keywords(allow_test_targets) -> None:
    cfg = config_from_dict({"optimizer": {"_target_": "config_test_targets.Adam", "lr": 1e-4}})
    optimizer = instantiate(cfg.optimizer)
    assert isinstance(optimizer, targets.Adam)
    assert (optimizer.lr, optimizer.betas) == (1e-4, (0.9, 0.999))


def test_the_environment_variable_allows_a_target_too(allow_test_targets) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "lr": 0.5}})
    assert instantiate(cfg.opt).lr == 0.5


def test_config_node_instantiate_is_the_same_as_the_function(allow_test_targets) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "lr": 0.5}})
    assert cfg.opt.instantiate(params=[1]).params == [1]


def test_nested_targets_are_built_first_and_passed_in(write_yaml, allow_test_targets) -> None:
    path = write_yaml(
        """
        model:
          _target_: config_test_targets.build_model
          name: tiny
          optimizer:
            _target_: config_test_targets.Adam
            lr: 0.01
            betas: [0.8, 0.9]
        """
    )
    model = instantiate(load_config(path).model)
    assert model["name"] == "tiny" and model["layers"] == 2
    assert isinstance(model["optimizer"], targets.Adam)
    assert model["optimizer"].betas == [0.8, 0.9]


def test_lists_are_built_element_wise_and_plain_sections_become_dicts(allow_test_targets) -> None:
    cfg = config_from_dict(
        {
            "callbacks": {
                "_target_": "config_test_targets.collect",
                "items": [{"_target_": "config_test_targets.Adam", "lr": 1}, {"plain": {"x": [1, 2]}}, 3],
                "options": {"a": {"b": 1}},
            }
        }
    )
    built = instantiate(cfg.callbacks)
    first, second, third = built["items"]
    assert isinstance(first, targets.Adam) and first.lr == 1
    assert second == {"plain": {"x": [1, 2]}} and type(second) is dict and type(second["plain"]["x"]) is list
    assert third == 3
    assert built["options"] == {"a": {"b": 1}}


def test_a_top_level_list_of_targets_is_built_element_wise(allow_test_targets) -> None:
    cfg = config_from_dict({"opts": [{"_target_": "config_test_targets.Adam", "lr": n} for n in (1, 2)]})
    assert [o.lr for o in instantiate(cfg.opts)] == [1, 2]


def test_runtime_kwargs_win_over_the_file_and_are_not_built(allow_test_targets) -> None:
    cfg = config_from_dict(
        {
            "opt": {
                "_target_": "config_test_targets.Adam",
                "lr": 0.1,
                "params": {"_target_": "config_test_targets.explode", "message": "never built"},
            }
        }
    )
    optimizer = instantiate(cfg.opt, params=["w"], lr=0.2)
    assert (optimizer.params, optimizer.lr) == (["w"], 0.2)


def test_references_are_resolved_before_the_call(allow_test_targets) -> None:
    cfg = config_from_dict({"base_lr": 0.3, "opt": {"_target_": "config_test_targets.Adam", "lr": "${base_lr}"}})
    assert instantiate(cfg.opt).lr == 0.3


def test_partial_returns_a_functools_partial_with_the_file_kwargs(allow_test_targets) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "_partial_": True, "lr": 0.1}})
    factory = instantiate(cfg.opt)
    assert isinstance(factory, functools.partial)
    optimizer = factory(params=["w"])
    assert (optimizer.params, optimizer.lr) == (["w"], 0.1)


def test_partial_false_calls_the_target(allow_test_targets) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "_partial_": False}})
    assert isinstance(instantiate(cfg.opt), targets.Adam)


def test_a_root_section_target_does_not_receive_the_configs_own_settings(allow_test_targets) -> None:
    cfg = config_from_dict({"_target_": "config_test_targets.collect", "recipe": "finetune.llm", "a": 1})
    assert instantiate(cfg) == {"a": 1}


def test_a_target_taking_kwargs_accepts_any_keyword(allow_test_targets) -> None:
    cfg = config_from_dict({"c": {"_target_": "config_test_targets.collect", "anything": 1, "else": "x"}})
    assert instantiate(cfg.c, more=True) == {"anything": 1, "else": "x", "more": True}


def test_plain_dicts_and_lists_can_be_instantiated(allow_test_targets) -> None:
    assert instantiate({"_target_": "config_test_targets.Adam", "lr": 2}).lr == 2
    assert instantiate([{"_target_": "config_test_targets.Adam", "lr": 3}, 4])[0].lr == 3


def test_instantiate_does_not_change_the_config(allow_test_targets) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "lr": "${x}"}, "x": 1})
    before = cfg.to_container(resolve=False)
    instantiate(cfg.opt, params=[1])
    assert cfg.to_container(resolve=False) == before


# ---- bad input ---------------------------------------------------------------------------------


def test_an_unknown_keyword_names_the_path_file_line_and_closest_keyword(write_yaml, allow_test_targets) -> None:
    path = write_yaml(
        """
        optimizer:
          _target_: config_test_targets.Adam
          lrr: 0.1
        """
    )
    with pytest.raises(ConfigError) as info:
        instantiate(load_config(path).optimizer)
    assert str(info.value) == (
        f"{path}:3: `optimizer.lrr`: `config_test_targets.Adam` takes no argument `lrr`; did you mean `lr`?"
    )


def test_an_unknown_keyword_in_a_nested_section_names_the_nested_path(write_yaml, allow_test_targets) -> None:
    path = write_yaml(
        """
        model:
          _target_: config_test_targets.build_model
          name: tiny
          optimizer:
            _target_: config_test_targets.Adam
            bettas: [0.9, 0.9]
        """
    )
    with pytest.raises(ConfigError) as info:
        instantiate(load_config(path).model)
    assert info.value.path == "model.optimizer.bettas"
    assert info.value.line == 6
    assert info.value.hint == "did you mean `betas`?"


def test_an_unknown_keyword_given_on_the_command_line_is_located_there(write_yaml, allow_test_targets) -> None:
    path = write_yaml("optimizer:\n  _target_: config_test_targets.Adam\n")
    cfg = load_config(path, ["--optimizer.lrr", "1e-4"])
    with pytest.raises(ConfigError, match=r"^command line: `optimizer.lrr`: .* did you mean `lr`\?"):
        instantiate(cfg.optimizer)


def test_an_unknown_keyword_with_nothing_close_says_to_remove_it(allow_test_targets) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "momentum": 0.9}})
    with pytest.raises(ConfigError, match="takes no argument `momentum`; remove it or check the target's signature"):
        instantiate(cfg.opt)


def test_a_refused_target_names_the_target_key_and_its_line(write_yaml) -> None:
    path = write_yaml("runner:\n  _target_: os.system\n  command: echo hi\n")
    with pytest.raises(ConfigError) as info:
        instantiate(load_config(path).runner)
    assert str(info.value).startswith(f"{path}:2: `runner._target_`: `_target_: os.system` is outside the allowed")
    assert "`--allow-target os.system`" in info.value.hint and "a config file cannot allow it" in info.value.hint


def test_a_misspelled_target_suggests_the_closest_name(allow_test_targets) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adamm"}})
    with pytest.raises(ConfigError, match=r"`opt._target_`: .*did you mean `config_test_targets.Adam`\?"):
        instantiate(cfg.opt)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes need Python 3.11")
def test_an_error_inside_the_target_propagates_with_a_note_naming_the_section(allow_test_targets) -> None:
    cfg = config_from_dict(
        {
            "model": {
                "_target_": "config_test_targets.build_model",
                "name": "x",
                "optimizer": {"_target_": "config_test_targets.explode", "message": "bad lr"},
            }
        }
    )
    with pytest.raises(RuntimeError, match="bad lr") as info:
        instantiate(cfg.model)
    assert info.value.__notes__ == [
        "while building config section `model.optimizer` (_target_: config_test_targets.explode)"
    ]


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_partial_that_is_not_a_boolean_is_an_error(allow_test_targets, value) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "_partial_": value}})
    with pytest.raises(ConfigError, match=r"`opt._partial_`: `_partial_` must be true or false"):
        instantiate(cfg.opt)


def test_a_section_without_a_target_cannot_be_instantiated() -> None:
    cfg = config_from_dict({"data": {"path": "x"}})
    with pytest.raises(ConfigError, match="`data`: this section has no `_target_` to build"):
        instantiate(cfg.data)


@pytest.mark.parametrize("value", [3, "config_test_targets.Adam", None])
def test_only_config_sections_and_lists_can_be_instantiated(value) -> None:
    with pytest.raises(ConfigError, match=r"cannot instantiate a .*; expected a config section with `_target_`"):
        instantiate(value)


@pytest.mark.parametrize("allowlist", [["os"], "os", [], None])
def test_a_config_cannot_grant_itself_permissions_with_a_target_allowlist(allowlist) -> None:
    cfg = config_from_dict({"target_allowlist": allowlist, "opt": {"_target_": "os.system", "command": "true"}})
    with pytest.raises(ConfigError) as info:
        instantiate(cfg.opt)
    assert info.value.path == "target_allowlist"
    assert "a config may not grant itself permissions" in info.value.message
    assert "--allow-target NAME" in info.value.hint and "AUTOMODEL_TARGET_ALLOWLIST" in info.value.hint


def test_the_allowances_a_config_was_loaded_with_reach_its_targets(write_yaml) -> None:
    path = write_yaml("opt:\n  _target_: config_test_targets.Adam\n  lr: 0.5\n")
    assert instantiate(load_config(path, allow_targets=["config_test_targets"]).opt).lr == 0.5
    with pytest.raises(ConfigError, match="outside the allowed modules"):
        instantiate(load_config(path).opt)


def test_a_target_read_from_the_environment_is_never_shown_in_a_refusal(monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "sekrit-123")
    cfg = config_from_dict({"opt": {"_target_": "${env:HF_TOKEN}", "_partial_": "${env:HF_TOKEN}"}})
    with pytest.raises(ConfigError) as info:
        instantiate(cfg.opt)
    assert "sekrit-123" not in str(info.value)
    assert "`_target_: ${env:HF_TOKEN}` does not name a callable" in str(info.value)


def test_a_partial_flag_read_from_the_environment_is_shown_as_written(monkeypatch, allow_test_targets) -> None:
    monkeypatch.setenv("AMC_PARTIAL", "sekrit-123")
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "_partial_": "${env:AMC_PARTIAL}"}})
    with pytest.raises(ConfigError) as info:
        instantiate(cfg.opt)
    assert "got '${env:AMC_PARTIAL}'" in str(info.value) and "sekrit-123" not in str(info.value)
