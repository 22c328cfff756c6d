"""Validation without building: every problem at once, each located, nothing reported when clean."""

from __future__ import annotations

import pytest

from automodel.config import ConfigError, ConfigErrors, config_from_dict, find_problems, load_config, validate

GOOD = """
base_lr: 0.1
model:
  _target_: config_test_targets.build_model
  name: tiny
  optimizer:
    _target_: config_test_targets.Adam
    lr: ${base_lr}
    _partial_: true
callbacks:
  - _target_: config_test_targets.collect
    anything: 1
data:
  path: ${model.name}.json
"""

BAD = """
optimizer:
  _target_: config_test_targets.Adamm
  lr: 0.1
scheduler:
  _target_: config_test_targets.Adam
  lrr: 0.1
  bettas: [0.9, 0.9]
data:
  path: ${optimiser.lr}
"""


def test_a_clean_config_has_no_problems(write_yaml, allow_test_targets) -> None:
    cfg = load_config(write_yaml(GOOD))
    assert find_problems(cfg) == []
    assert validate(cfg) is None


def test_validation_builds_nothing(write_yaml) -> None:
    path = write_yaml("boom:\n  _target_: config_test_targets.explode\n  message: x\n")
    cfg = load_config(path, allow_targets=["config_test_targets"])
    assert find_problems(cfg) == []


def test_find_problems_reports_every_problem_at_once_with_locations(write_yaml, allow_test_targets) -> None:
    path = write_yaml(BAD)
    problems = find_problems(load_config(path))
    assert [(p.path, p.line) for p in problems] == [
        ("optimizer._target_", 2),
        ("scheduler.lrr", 6),
        ("scheduler.bettas", 7),
        ("data.path", 9),
    ]
    assert all(p.file == str(path) for p in problems)
    assert [p.hint for p in problems] == [
        "did you mean `config_test_targets.Adam`?",
        "did you mean `lr`?",
        "did you mean `betas`?",
        "did you mean `optimizer`?",
    ]


def test_validate_raises_all_problems_in_one_error(write_yaml, allow_test_targets) -> None:
    path = write_yaml(BAD)
    with pytest.raises(ConfigErrors) as info:
        validate(load_config(path))
    assert isinstance(info.value, ConfigError)
    assert len(info.value.errors) == 4
    lines = str(info.value).splitlines()
    assert lines[0] == "4 problem(s) in the config:"
    assert lines[2] == (
        f"  - {path}:6: `scheduler.lrr`: `config_test_targets.Adam` takes no argument `lrr`; did you mean `lr`?"
    )


def test_validate_raises_a_single_problem_as_itself(allow_test_targets) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "lrr": 1}})
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert type(info.value) is ConfigError
    assert info.value.path == "opt.lrr"


def test_targets_inside_lists_are_checked(allow_test_targets) -> None:
    cfg = config_from_dict({"callbacks": [{"_target_": "config_test_targets.Adam"}, {"_target_": "os.system"}]})
    [problem] = find_problems(cfg)
    assert problem.path == "callbacks.1._target_"
    assert "outside the allowed modules" in problem.message


def test_a_partial_flag_that_is_not_a_boolean_is_a_problem(allow_test_targets) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "_partial_": "yes"}})
    [problem] = find_problems(cfg)
    assert (problem.path, problem.message) == ("opt._partial_", "`_partial_` must be true or false")


def test_a_section_reached_by_reference_is_checked_once(allow_test_targets) -> None:
    cfg = config_from_dict({"opt": {"_target_": "config_test_targets.Adam", "lrr": 1}, "again": "${opt}"})
    assert [p.path for p in find_problems(cfg)] == ["opt.lrr"]


def test_a_missing_environment_variable_is_a_problem(monkeypatch) -> None:
    monkeypatch.delenv("AMC_NOT_SET", raising=False)
    [problem] = find_problems(config_from_dict({"logger": {"key": "${env:AMC_NOT_SET}"}}))
    assert problem.path == "logger.key"
    assert "environment variable AMC_NOT_SET is not set" in problem.message


def test_an_unresolvable_target_is_reported_once(monkeypatch) -> None:
    monkeypatch.delenv("AMC_NOT_SET", raising=False)
    [problem] = find_problems(config_from_dict({"x": {"_target_": "${env:AMC_NOT_SET}"}}))
    assert problem.path == "x._target_"


def test_a_reference_cycle_is_a_problem() -> None:
    problems = find_problems(config_from_dict({"a": "${b}", "b": "${a}"}))
    assert problems and all("references form a cycle" in p.message for p in problems)


def test_a_self_granted_allowlist_is_the_only_problem_reported() -> None:
    [problem] = find_problems(config_from_dict({"target_allowlist": ["os"], "x": {"_target_": "os.system"}}))
    assert problem.path == "target_allowlist"
    assert "may not grant itself permissions" in problem.message


def test_validation_refuses_a_denied_target_as_building_does(allow_test_targets) -> None:
    [problem] = find_problems(config_from_dict({"x": {"_target_": "config_test_targets.load_pickle", "file": "f"}}))
    assert problem.path == "x._target_"
    assert "_pickle.load" in problem.message and "configs may not call loaders of untrusted data" in problem.message
    assert "--allow-target config_test_targets.load_pickle" in problem.hint
