"""Which Linear modules a LoRAConfig selects: names, globs, regexes, exclusions and match_all_linear."""

from __future__ import annotations

import pytest
from peft_test_helpers import ATTENTION, MLP, layer_paths, tiny_llama, tiny_qwen2, tiny_sequential

from automodel.peft import LoRAConfig, PeftError, target_module_names

SELECTION_CASES = {
    "names match the end of the path": (
        {"target_modules": ["q_proj", "v_proj"]},
        layer_paths(["q_proj", "v_proj"]),
    ),
    "a dotted name matches the end of the path": ({"target_modules": "self_attn.o_proj"}, layer_paths(["o_proj"])),
    "a glob matches the whole path": ({"target_modules": ["*_proj"]}, layer_paths(ATTENTION + MLP)),
    "a glob can select a block": ({"target_modules": ["*.mlp.*"]}, layer_paths(MLP)),
    "a regex fullmatches the whole path": (
        {"target_modules": [r"re:model\.layers\.1\..*\.(q|k)_proj"]},
        layer_paths(["q_proj", "k_proj"], layers=(1,)),
    ),
    "exclude drops a module and everything under it": (
        {"target_modules": ["*_proj"], "exclude_modules": ["layers.0", "mlp.down_proj"]},
        layer_paths([*ATTENTION, "gate_proj", "up_proj"], layers=(1,)),
    ),
    "match_all_linear takes every Linear except lm_head": ({"match_all_linear": True}, layer_paths(ATTENTION + MLP)),
    "match_all_linear combines with exclude": (
        {"match_all_linear": True, "exclude_modules": ["mlp"]},
        layer_paths(ATTENTION),
    ),
}


@pytest.mark.parametrize("kwargs, expected", SELECTION_CASES.values(), ids=SELECTION_CASES.keys())
def test_target_patterns_select_the_expected_linear_modules(kwargs: dict, expected: list[str]) -> None:
    assert target_module_names(tiny_llama(), LoRAConfig(**kwargs)) == expected


def test_match_all_linear_on_a_plain_sequential_takes_every_linear() -> None:
    assert target_module_names(tiny_sequential(), LoRAConfig(match_all_linear=True)) == [
        "1.0",
        "1.2",
        "2.0",
        "2.2",
        "3",
    ]


def test_match_all_linear_skips_a_head_tied_to_the_input_embedding_whatever_its_name() -> None:
    model = tiny_sequential()
    model[3].weight = model[0].weight
    assert target_module_names(model, LoRAConfig(match_all_linear=True)) == ["1.0", "1.2", "2.0", "2.2"]
    tied_llama = tiny_llama(tie_word_embeddings=True)
    assert tied_llama.lm_head.weight is tied_llama.model.embed_tokens.weight
    assert target_module_names(tied_llama, LoRAConfig(match_all_linear=True)) == layer_paths(ATTENTION + MLP)


NO_MATCH_CASES = {
    "a misspelled name": ({"target_modules": ["qproj"]}, "target_modules: 'qproj' matches no nn.Linear", "q_proj"),
    "a glob": ({"target_modules": ["*.attention.*"]}, "'*.attention.*' matches no nn.Linear", None),
    "a regex": ({"target_modules": ["re:.*gate"]}, "'re:.*gate' matches no nn.Linear", "gate_proj"),
    "an exclude": ({"target_modules": ["q_proj"], "exclude_modules": ["self_atn"]}, "matches no module", "self_attn"),
}


@pytest.mark.parametrize("kwargs, message, closest", NO_MATCH_CASES.values(), ids=NO_MATCH_CASES.keys())
def test_a_pattern_that_matches_nothing_names_the_closest_candidates_first(
    kwargs: dict, message: str, closest: str | None
) -> None:
    with pytest.raises(PeftError, match="Closest") as caught:
        target_module_names(tiny_qwen2(), LoRAConfig(**kwargs))
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    candidates = text.split("names: ", 1)[1].split(" (", 1)[0].split(", ")
    if closest is not None:
        assert candidates[0] == closest
    assert set(candidates) <= {name for path, _ in tiny_qwen2().named_modules() for name in path.split(".")}


def test_excluding_every_targeted_module_is_an_error() -> None:
    with pytest.raises(PeftError, match="excludes every targeted Linear"):
        target_module_names(tiny_llama(), LoRAConfig(target_modules=["q_proj"], exclude_modules=["model"]))
