"""The examples are found, listed with their commands, and copied out with the data their configs name."""

from __future__ import annotations

import importlib.metadata

import pytest
import yaml

import automodel.examples as examples
from automodel.examples import ExampleError, copy_example, find_example, list_examples


def test_every_example_is_listed_with_its_summary_and_command() -> None:
    listed = {e.name: e for e in list_examples()}
    assert {"llm_finetune/tiny_sft", "vlm_finetune/tiny_vlm", "diffusion/tiny_t2i", "retrieval/tiny_biencoder"} <= set(
        listed
    )
    tiny = listed["llm_finetune/tiny_sft"]
    assert tiny.command == "automodel finetune llm -c examples/llm_finetune/tiny_sft.yaml"
    assert tiny.summary.startswith("The default job")
    assert all(e.path.is_file() and e.summary for e in listed.values())


def test_a_copied_example_has_every_examples_path_its_config_names(tmp_path) -> None:
    config = copy_example("tiny_sft", tmp_path)
    assert config == tmp_path / "examples" / "llm_finetune" / "tiny_sft.yaml"
    data = yaml.safe_load(config.read_text())
    for path in (data["tokenizer"]["pretrained_model_name_or_path"], data["dataset"]["path_or_dataset_id"]):
        assert (tmp_path / path).exists(), path
    original = find_example("tiny_sft").path.parents[1]
    assert (tmp_path / "examples/data/number_words/train.jsonl").read_bytes() == (
        original / "data/number_words/train.jsonl"
    ).read_bytes()
    assert not (tmp_path / "examples/data/t2i_shapes").exists()  # only what this example names
    assert copy_example("llm_finetune/tiny_sft", tmp_path) == config  # the same files again: fine


def test_unknown_ambiguous_and_clashing_names_are_user_errors(tmp_path) -> None:
    with pytest.raises(ExampleError, match="no example `nope`"):
        find_example("nope")
    assert ExampleError.user_error is True
    config = copy_example("tiny_sft", tmp_path)
    config.write_text("changed")
    with pytest.raises(ExampleError, match="exists with other content"):
        copy_example("tiny_sft", tmp_path)


def test_version_matches_the_installed_distribution() -> None:
    assert examples.__version__ == importlib.metadata.version("automodel-examples")
