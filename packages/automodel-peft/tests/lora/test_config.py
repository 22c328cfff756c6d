"""LoRAConfig: defaults, the r alias, YAML-style values, and the values it refuses."""

from __future__ import annotations

import math

import pytest
import torch

from automodel.peft import LoRAConfig, PeftError


def test_defaults_follow_peft_and_r_is_an_alias_of_dim() -> None:
    config = LoRAConfig(target_modules=["q_proj"])
    assert (config.dim, config.r, config.alpha, config.dropout, config.init) == (8, 8, 8, 0.0, "kaiming")
    assert LoRAConfig(r=16, target_modules=["q_proj"]).dim == 16
    assert LoRAConfig(dim=16, r=16, target_modules=["q_proj"]).r == 16


def test_yaml_style_keyword_values_are_normalised() -> None:
    config = LoRAConfig(dim=4, alpha=32, target_modules="*_proj", lora_dtype="bf16", exclude_modules="lm_head")
    assert config.target_modules == ["*_proj"]
    assert config.exclude_modules == ["lm_head"]
    assert config.lora_dtype is torch.bfloat16
    assert LoRAConfig(match_all_linear=True, lora_dtype=torch.float16).lora_dtype is torch.float16


@pytest.mark.parametrize("use_rslora, expected", [(False, 32 / 4), (True, 32 / math.sqrt(4))])
def test_scaling_is_alpha_over_r_or_over_sqrt_r_with_rslora(use_rslora: bool, expected: float) -> None:
    config = LoRAConfig(dim=4, alpha=32, use_rslora=use_rslora, match_all_linear=True)
    assert config.scaling == pytest.approx(expected)


BAD_VALUES = {
    "zero rank": ({"dim": 0}, "dim \\(r\\) must be a positive integer, got 0"),
    "negative r": ({"r": -2}, "got -2"),
    "fractional rank": ({"dim": 2.5}, "got 2.5"),
    "boolean rank": ({"dim": True}, "got True"),
    "dim and r disagree": ({"dim": 4, "r": 8}, "dim=4 and r=8 disagree"),
    "zero alpha": ({"alpha": 0}, "alpha must be a positive number, got 0"),
    "negative alpha": ({"alpha": -16}, "got -16"),
    "alpha as text": ({"alpha": "16"}, "got '16'"),
    "dropout of one": ({"dropout": 1.0}, "dropout must be a probability in \\[0, 1\\), got 1.0"),
    "negative dropout": ({"dropout": -0.1}, "got -0.1"),
    "unknown dropout position": ({"dropout_position": "middle"}, "dropout_position must be one of"),
    "unknown init": ({"init": "xavier"}, "init must be one of \\('kaiming', 'gaussian', 'zeros'\\)"),
    "integer lora dtype": ({"lora_dtype": "int8"}, "lora_dtype: unknown dtype 'int8'"),
    "invalid regex": ({"target_modules": ["re:(q_proj"]}, "not a valid regular expression"),
    "empty pattern": ({"target_modules": [""]}, "is not a module name, glob or `re:` pattern"),
    "no targets": ({"target_modules": None}, "exactly one of target_modules"),
    "empty targets": ({"target_modules": []}, "exactly one of target_modules"),
    "targets and match_all_linear": ({"match_all_linear": True}, "exactly one of target_modules"),
}


@pytest.mark.parametrize("kwargs, message", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_values_that_cannot_work_raise_a_peft_error_saying_why(kwargs: dict, message: str) -> None:
    with pytest.raises(PeftError, match=message):
        LoRAConfig(**{"target_modules": ["q_proj"], **kwargs})
