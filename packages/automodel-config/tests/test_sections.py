"""A recipe's sections: unknown and missing ones, and components' user errors reported at their section."""

from __future__ import annotations

import config_test_targets as targets
import pytest

from automodel.config import (
    ConfigError,
    build_section,
    check_sections,
    config_from_dict,
    errors_named_by,
    plain_section,
    refuse_moved_sections,
)

SECTIONS = {"model", "optimizer"}


def test_an_unknown_section_names_the_recipe_and_the_closest_one() -> None:
    cfg = config_from_dict({"model": {}, "optimiser": {}})
    with pytest.raises(ConfigError, match=r"`optimiser`: is not a section train_ft knows; did you mean `optimizer`\?"):
        check_sections(cfg, SECTIONS, ("model",), "train_ft", "examples/llm_finetune")


def test_a_section_that_belongs_elsewhere_is_named_with_where_to_move_it() -> None:
    moved = {"wandb": "logging.wandb"}
    refuse_moved_sections(config_from_dict({"logging": {"wandb": {}}}), moved, "trackers go under `logging:`")
    cfg = config_from_dict({"model": {}, "wandb": {"project": "p"}})
    with pytest.raises(
        ConfigError, match=r"`wandb`: is not a top-level section: trackers go under `logging:`"
    ) as error:
        refuse_moved_sections(cfg, moved, "trackers go under `logging:`")
    assert "move this section to `logging.wandb`" in str(error.value)


def test_a_missing_required_section_points_at_the_examples() -> None:
    with pytest.raises(ConfigError, match=r"no `model:` section, which finetune needs.*examples/vlm_finetune"):
        check_sections(config_from_dict({"optimizer": {}}), SECTIONS, ("model",), "finetune", "examples/vlm_finetune")


def test_build_section_passes_runtime_arguments(allow_test_targets) -> None:
    cfg = config_from_dict({"optimizer": {"_target_": "config_test_targets.Adam", "lr": 0.1}})
    optimizer = build_section(cfg, "optimizer", params=[1, 2])
    assert (optimizer.lr, optimizer.params) == (0.1, [1, 2])


def test_a_components_user_error_is_reported_at_its_section(allow_test_targets) -> None:
    cfg = config_from_dict({"model": {"_target_": "config_test_targets.refuse", "reason": "no such model"}})
    with pytest.raises(ConfigError, match=r"`model`: no such model") as caught:
        build_section(cfg, "model")
    assert not isinstance(caught.value, targets.UserMistake)


def test_other_errors_pass_through_unchanged() -> None:
    cfg = config_from_dict({"model": {}})
    with pytest.raises(KeyError), errors_named_by(cfg, "model"):
        raise KeyError("a bug, not a user error")


def test_a_plain_section_is_a_dict_and_an_unknown_key_names_the_closest() -> None:
    cfg = config_from_dict({"checkpoint": {"dir": "runs/x", "keep_last_n": 2}})
    assert plain_section(cfg, "checkpoint", {"dir", "keep_last_n"}) == {"dir": "runs/x", "keep_last_n": 2}
    assert plain_section(cfg, "restore_from", {"path"}) == {}
    bad = config_from_dict({"checkpoint": {"keep_lats_n": 2}})
    with pytest.raises(ConfigError, match=r"`checkpoint.keep_lats_n`: is not a checkpoint setting; did you mean"):
        plain_section(bad, "checkpoint", {"dir", "keep_last_n"})
    with pytest.raises(ConfigError, match=r"`checkpoint`: must be a mapping of dir, keep_last_n"):
        plain_section(config_from_dict({"checkpoint": 3}), "checkpoint", {"dir", "keep_last_n"})
