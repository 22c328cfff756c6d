"""The denylist: loaders of untrusted data and code runners are refused under any name unless allowed exactly."""

from __future__ import annotations

import os
import pickle

import pytest

from automodel.config import ConfigError, config_from_dict, find_problems, import_target, instantiate, load_config
from automodel.config.targets import allowed_prefixes

ALIASES = [
    ("config_test_targets.load_pickle", "_pickle.load belongs to `_pickle`, which runs pickled code from a file"),
    ("config_test_targets.evaluate", "builtins.eval imports or runs arbitrary Python code"),
    ("config_test_targets.open_file", "builtins.open opens any file for reading or writing"),
    ("config_test_targets.run_command", "posix.system belongs to `posix`, which runs commands"),
]


@pytest.mark.parametrize(("target", "reason"), ALIASES)
def test_a_denied_callable_under_an_allowed_name_is_refused_by_what_it_is(allow_test_targets, target, reason) -> None:
    cfg = config_from_dict({"x": {"_target_": target, "_partial_": True}})
    with pytest.raises(ConfigError) as info:
        instantiate(cfg.x)
    assert info.value.path == "x._target_"
    assert reason in info.value.message and "configs may not call" in info.value.message
    assert f"allow exactly this callable with `--allow-target {target}`" in info.value.hint
    assert "a config file cannot allow it" in info.value.hint


@pytest.mark.parametrize(("target", "reason"), ALIASES)
def test_validation_gives_the_same_verdict_as_building(allow_test_targets, target, reason) -> None:
    [problem] = find_problems(config_from_dict({"x": {"_target_": target}}))
    assert problem.path == "x._target_" and reason in problem.message


def test_the_refusal_for_a_pickle_loader_says_why_in_the_words_of_the_issue(allow_test_targets) -> None:
    with pytest.raises(ConfigError, match="configs may not call loaders of untrusted data"):
        import_target("config_test_targets.load_pickle")


def test_a_module_prefix_does_not_lift_the_denylist(monkeypatch) -> None:
    monkeypatch.setenv("AUTOMODEL_TARGET_ALLOWLIST", "pickle,os,subprocess")
    for target in ["pickle.loads", "os.system", "os.path.join", "subprocess.run"]:
        with pytest.raises(ConfigError, match="configs may not call"):
            import_target(target)


def test_an_allowance_naming_the_exact_callable_lifts_it() -> None:
    assert import_target("os.path.join", allowed_prefixes(["os.path.join"])) is os.path.join
    assert import_target("pickle.loads", ["pickle.loads"]) is pickle.loads


def test_an_exact_allowance_names_the_callable_however_it_is_reached(allow_test_targets) -> None:
    prefixes = allowed_prefixes(["builtins.eval", "_pickle.load"])
    assert import_target("config_test_targets.evaluate", prefixes) is eval
    assert import_target("config_test_targets.load_pickle", prefixes) is pickle.load
    with pytest.raises(ConfigError, match="configs may not call"):
        import_target("config_test_targets.open_file", prefixes)


def test_the_allowances_of_load_config_lift_an_exact_callable(write_yaml) -> None:
    path = write_yaml("join:\n  _target_: os.path.join\n  _partial_: true\n")
    assert instantiate(load_config(path, allow_targets=["os.path.join"]).join)("a", "b") == os.path.join("a", "b")
    with pytest.raises(ConfigError, match="goes through `os`"):
        instantiate(load_config(path, allow_targets=["os"]).join)


TORCH_ALIASES = [
    ("torch.load", "torch.load runs pickled code from a file; configs may not call loaders of untrusted data"),
    ("torch.serialization.load", "torch.load runs pickled code"),
    ("torch.jit.load", "torch.jit.load runs pickled code"),
    ("torch.hub.load", "downloads and runs code"),
    ("torch.hub.load_state_dict_from_url", "downloads and runs code"),
    ("torch.utils.model_zoo.load_url", "downloads and runs code"),
    ("torch.ops.load_library", "compiles or loads native code"),
    ("torch.classes.load_library", "compiles or loads native code"),
    ("torch.utils.cpp_extension.load", "compiles or loads native code"),
    ("torch.utils.cpp_extension.load_inline", "compiles or loads native code"),
    ("torch.package.PackageImporter", "runs pickled code"),
    ("torch.export.load", "runs pickled code"),
    ("torch.distributed.checkpoint.load", "runs pickled code"),
]


@pytest.mark.parametrize(("target", "reason"), TORCH_ALIASES)
def test_torch_loaders_are_refused_although_torch_is_allowed(target, reason) -> None:
    pytest.importorskip("torch")
    with pytest.raises(ConfigError) as info:
        import_target(target)
    assert reason in info.value.message
    assert f"`--allow-target {target}`" in info.value.hint


def test_torch_load_is_allowed_only_by_naming_it() -> None:
    torch = pytest.importorskip("torch")
    assert import_target("torch.load", allowed_prefixes(["torch.load"])) is torch.load
    assert import_target("torch.serialization.load", allowed_prefixes(["torch.load"])) is torch.load
    with pytest.raises(ConfigError, match=r"torch\.load runs pickled code"):
        import_target("torch.load", allowed_prefixes(["torch", "torch.serialization"]))


def test_numpy_load_is_refused_even_when_numpy_is_allowed() -> None:
    pytest.importorskip("numpy")
    with pytest.raises(ConfigError, match=r"numpy\.load runs pickled code from a file"):
        import_target("numpy.load", allowed_prefixes(["numpy"]))
