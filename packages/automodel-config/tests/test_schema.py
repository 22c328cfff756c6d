"""One strict schema per recipe: unknown keys anywhere, wrong kinds, out-of-range values, all before building."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from automodel.config import (
    BUILT,
    NO_DEFAULT,
    OWNED,
    ConfigError,
    boolean,
    check_config,
    integer,
    load_config,
    number,
    signature_settings,
    text,
)


@dataclass
class Settings:
    dir: Path
    keep_last_n: int | None = None
    async_save: bool = False
    max_shard_size: str | int = "5GB"


@dataclass
class Tracker:
    tags: list[str] = field(default_factory=list)


def scheduler(dataloader, global_batch_size: int, local_batch_size: int, max_steps: int | None = None) -> None:
    """A stand-in with a StepScheduler-like signature."""


SCHEMA = {
    "seed": integer(0, "the random seed"),
    "model": BUILT,
    "distributed": OWNED,
    "dataloader": {"shuffle": boolean(), "num_workers": integer(0)},
    "validation": {"generation": {"max_new_tokens": integer(1), "mode": text(("greedy", "sample"))}},
    "clip_grad_norm": {"max_norm": number(0)},
    "checkpoint": signature_settings(Settings),
    "step_scheduler": signature_settings(scheduler, skip=("dataloader",), minimums={"local_batch_size": 1}),
}
GOOD = """
seed: 1
model: {_target_: torch.nn.Linear, in_features: 2, out_features: 2}
distributed: {anything: [goes, here]}
dataloader: {shuffle: true, num_workers: 0}
validation: {generation: {max_new_tokens: 4, mode: greedy}}
clip_grad_norm: {max_norm: 1}
checkpoint: {dir: runs/x, keep_last_n: null, max_shard_size: 500}
step_scheduler: {global_batch_size: 8, local_batch_size: 2}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD, encoding="utf-8")
    return path


def _check(path: Path, *overrides: str) -> None:
    check_config(load_config(path, list(overrides)), SCHEMA, ("model",), "train_ft", "examples/llm_finetune")


def test_a_good_config_passes(config_file: Path) -> None:
    _check(config_file)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (("--dataloader.shufle", "true"), r"`dataloader.shufle`: is not a dataloader setting; did you mean `shuffle`"),
        (("--validation.generation.max_new_token", "3"), r"is not a generation setting; did you mean `max_new_tokens`"),
        (("--seed", "-1"), r"`seed`: must be a whole number of at least 0 \(the random seed\), not -1"),
        (("--seed", "abc"), r"`seed`: must be a whole number .* not a string"),
        (("--seed", "true"), r"`seed`: must be a whole number .* not true or false"),
        (("--seed", "1.5"), r"`seed`: must be a whole number .* not a number"),
        (("--dataloader.num_workers", "-2"), r"`dataloader.num_workers`: must be a whole number of at least 0"),
        (("--clip_grad_norm.max_norm", ".nan"), r"`clip_grad_norm.max_norm`: must be a number of at least 0, not nan"),
        (("--validation.generation.mode", "beam"), r"must be one of greedy, sample"),
        (("--checkpoint.keep_last_n", "two"), r"`checkpoint.keep_last_n`: must be a whole number, not a string"),
        (("--checkpoint.async_save", "1"), r"`checkpoint.async_save`: must be true or false, not a whole number"),
        (("--checkpoint.max_shard_size", "[1]"), r"must be a string or a whole number, not a list"),
        (("--step_scheduler.local_batch_size", "0"), r"`step_scheduler.local_batch_size`: .* at least 1, not 0"),
        (("--step_scheduler.global_batch_size", "null"), r"`step_scheduler.global_batch_size`: .* not null"),
        (("--model", "3"), r"`model`: must be a section with a `_target_`"),
        (("--dataloader", "4"), r"`dataloader`: must be a mapping of shuffle, num_workers"),
        (("--+optimiser.lr", "1"), r"`optimiser`: is not a section train_ft knows"),
    ],
)
def test_each_mistake_names_its_key_and_what_it_must_be(config_file: Path, override: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _check(config_file, *override)


def test_a_bad_value_is_reported_at_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD.replace("num_workers: 0", "num_workers: many"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        _check(path)
    assert (caught.value.file, caught.value.line) == (str(path), 5)


def test_a_missing_required_section_points_at_the_examples(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"no `model:` section, which train_ft needs.*examples/llm_finetune"):
        _check(config_file, "--~model")


def test_signature_settings_read_kinds_from_annotations() -> None:
    settings = signature_settings(Settings)
    assert settings["dir"].kinds == ("str",) and not settings["dir"].nullable
    assert settings["keep_last_n"].kinds == ("int",) and settings["keep_last_n"].nullable
    assert settings["max_shard_size"].kinds == ("str", "int")


def test_signature_settings_take_each_keywords_default() -> None:
    settings = signature_settings(scheduler, skip=("dataloader",), minimums={"max_steps": 1})
    assert settings["global_batch_size"].default is NO_DEFAULT  # a required keyword has none
    assert settings["max_steps"].default is None and settings["max_steps"].minimum == 1
    checkpoint = signature_settings(Settings)
    assert (checkpoint["async_save"].default, checkpoint["max_shard_size"].default) == (False, "5GB")


def test_an_override_without_a_default_keeps_the_keywords_and_one_with_its_own_keeps_that() -> None:
    settings = signature_settings(Settings, keep_last_n=integer(1, "steps kept"), async_save=boolean(default=True))
    assert settings["keep_last_n"] == integer(1, "steps kept", default=None)
    assert settings["async_save"].default is True


def test_a_default_factory_is_not_a_known_default() -> None:
    assert signature_settings(Tracker)["tags"].default is NO_DEFAULT
