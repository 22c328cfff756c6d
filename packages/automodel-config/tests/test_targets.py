"""Resolving `_target_` names: only allowed module prefixes, no private names, closest-name suggestions."""

from __future__ import annotations

import config_test_targets as targets
import pytest

from automodel.config import DEFAULT_ALLOWED_PREFIXES, ConfigError, import_target
from automodel.config.targets import allowed_prefixes, is_allowed, keyword_problem, target_allowances

TEST_PREFIXES = (*DEFAULT_ALLOWED_PREFIXES, "config_test_targets")


def test_the_default_prefixes_cover_the_training_stack() -> None:
    assert {"automodel", "torch", "transformers", "datasets", "peft"} <= set(DEFAULT_ALLOWED_PREFIXES)


def test_import_target_returns_the_callable_under_an_allowed_prefix() -> None:
    assert import_target("config_test_targets.Adam", TEST_PREFIXES) is targets.Adam
    assert import_target("config_test_targets.collect", ["config_test_targets.collect"]) is targets.collect


def test_import_target_resolves_attributes_of_classes() -> None:
    assert import_target("automodel.config.ConfigNode.select") is not None


def test_the_environment_variable_extends_the_allowlist(monkeypatch) -> None:
    monkeypatch.setenv("AUTOMODEL_TARGET_ALLOWLIST", " other_pkg , config_test_targets,")
    assert allowed_prefixes()[-2:] == ("other_pkg", "config_test_targets")
    assert import_target("config_test_targets.Adam") is targets.Adam


def test_allowed_prefixes_keeps_defaults_first_and_drops_repeats() -> None:
    assert allowed_prefixes(["torch", "mine"]) == (*DEFAULT_ALLOWED_PREFIXES, "mine")


def test_target_allowances_say_where_each_extension_came_from(monkeypatch) -> None:
    monkeypatch.setenv("AUTOMODEL_TARGET_ALLOWLIST", "from_env,mine")
    allowances = target_allowances(["mine", "os.path.join"])
    assert allowances[: len(DEFAULT_ALLOWED_PREFIXES)] == [(p, "default") for p in DEFAULT_ALLOWED_PREFIXES]
    assert allowances[len(DEFAULT_ALLOWED_PREFIXES) :] == [
        ("mine", "--allow-target"),
        ("os.path.join", "--allow-target"),
        ("from_env", "$AUTOMODEL_TARGET_ALLOWLIST"),
    ]


@pytest.mark.parametrize(
    ("target", "prefixes", "allowed"),
    [
        ("torch.optim.AdamW", ["torch"], True),
        ("torch", ["torch"], True),
        ("torchvision.models.resnet18", ["torch"], False),
        ("torch_extra.x", ["torch"], False),
        ("mypkg.sub.f", ["mypkg.sub"], True),
        ("mypkg.other.f", ["mypkg.sub"], False),
    ],
)
def test_a_prefix_allows_itself_and_what_lies_under_it_only(target, prefixes, allowed) -> None:
    assert is_allowed(target, prefixes) is allowed


# ---- refusals (bad input) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "allowance"),
    [
        ("os.system", "os.system"),
        ("subprocess.run", "subprocess.run"),
        ("builtins.eval", "builtins"),
        ("shutil.rmtree", "shutil"),
        ("importlib.import_module", "importlib.import_module"),
        ("os.path.join", "os.path.join"),
        ("mypkg.models.Net", "mypkg.models"),
    ],
)
def test_a_target_outside_the_allowlist_is_refused_with_how_to_allow_it(target: str, allowance: str) -> None:
    with pytest.raises(ConfigError) as info:
        import_target(target)
    assert f"`_target_: {target}` is outside the allowed modules (automodel, torch" in str(info.value)
    assert info.value.hint == (
        f"if you trust it, allow it on the command line with `--allow-target {allowance}` "
        f"or in the environment with AUTOMODEL_TARGET_ALLOWLIST={allowance}; a config file cannot allow it"
    )


@pytest.mark.parametrize(
    "target", ["builtins.__import__", "config_test_targets._private", "os._exit", "config_test_targets.Adam.__init__"]
)
def test_private_and_dunder_names_are_refused_even_when_their_module_is_allowed(target: str) -> None:
    with pytest.raises(ConfigError, match="names a private or dunder attribute, which configs may not call"):
        import_target(target, ["builtins", "os", "config_test_targets"])


def test_a_module_reached_through_an_allowed_one_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        import_target("config_test_targets.os.system", TEST_PREFIXES)
    assert "reaches module `os` through `config_test_targets.os`, which is outside the allowed modules" in str(
        info.value
    )
    assert "`--allow-target config_test_targets.os.system`" in info.value.hint


@pytest.mark.parametrize("target", ["", None, 3, ["a.b"]])
def test_a_target_that_is_not_a_string_is_refused(target) -> None:
    with pytest.raises(ConfigError, match=r"`_target_` must be a dotted name like torch\.optim\.AdamW"):
        import_target(target)


@pytest.mark.parametrize("target", ["a..b", "torch.optim.Adam W", "torch.optim.AdamW()", "torch/optim", ".torch"])
def test_a_target_that_is_not_a_dotted_name_is_refused(target: str) -> None:
    with pytest.raises(ConfigError, match="is not a dotted Python name"):
        import_target(target)


def test_a_misspelled_attribute_suggests_the_closest_public_name() -> None:
    with pytest.raises(ConfigError) as info:
        import_target("config_test_targets.Adamm", TEST_PREFIXES)
    assert str(info.value) == (
        "`_target_: config_test_targets.Adamm`: `config_test_targets` has no attribute `Adamm`; "
        "did you mean `config_test_targets.Adam`?"
    )


def test_a_missing_attribute_with_nothing_close_says_to_check_the_spelling() -> None:
    with pytest.raises(ConfigError, match="has no attribute `zzz`; check the spelling"):
        import_target("config_test_targets.zzz", TEST_PREFIXES)


def test_a_module_that_is_not_installed_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="no module named `not_installed_pkg`"):
        import_target("not_installed_pkg.Thing", ["not_installed_pkg"])


def test_a_target_that_is_not_callable_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"`_target_: config_test_targets\.NOT_CALLABLE` is a int, not something"):
        import_target("config_test_targets.NOT_CALLABLE", TEST_PREFIXES)


# ---- keyword checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "keywords", "expected"),
    [
        (targets.Adam, ["lr", "betas", "params"], None),
        (targets.Adam, ["lr", "lrr"], ("lrr", "lr")),
        (targets.Adam, ["beta"], ("beta", "betas")),
        (targets.Adam, ["self"], ("self", None)),
        (targets.Adam, ["momentum"], ("momentum", None)),
        (targets.collect, ["anything", "at_all"], None),
        (targets.positional_only, ["y"], None),
        (targets.positional_only, ["x"], ("x", None)),
    ],
)
def test_keyword_problem_reports_the_first_keyword_a_callable_does_not_take(fn, keywords, expected) -> None:
    assert keyword_problem(fn, keywords) == expected


def test_keyword_problem_accepts_anything_when_the_signature_is_unknown() -> None:
    assert keyword_problem(max, ["whatever"]) is None  # builtin max has several signatures, none inspectable
