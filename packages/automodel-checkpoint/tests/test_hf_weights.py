"""save_hf_weights / load_hf_weights / load_hf_weights_into: the safetensors layout transformers reads and writes."""

from __future__ import annotations

import json

import pytest
import torch
from checkpoint_test_helpers import TinyNet, tiny_llama
from safetensors import safe_open

from automodel.checkpoint import CheckpointError, load_hf_weights, load_hf_weights_into, save_hf_weights


def _state(**shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {name: torch.randn(*shape, generator=generator) for name, shape in shapes.items()}


def test_a_model_that_fits_is_one_model_safetensors_marked_as_pytorch(tmp_path) -> None:
    state = _state(a=(4, 4), b=(3,))
    files = save_hf_weights(state, tmp_path)
    assert files == [tmp_path / "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    with safe_open(files[0], framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    assert all(torch.equal(load_hf_weights(tmp_path)[k], v) for k, v in state.items())


def test_a_small_max_shard_size_writes_numbered_shards_and_an_index(tmp_path) -> None:
    state = _state(a=(100,), b=(100,), c=(300,), d=(100,))  # 400, 400, 1200, 400 bytes
    files = save_hf_weights(state, tmp_path, max_shard_size=1000)
    assert [f.name for f in files] == [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
    ]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index == {
        "metadata": {"total_size": 2400},
        "weight_map": {
            # Larger than a shard, c gets a file of its own, closed at once (as huggingface_hub does).
            "c": "model-00001-of-00003.safetensors",
            "a": "model-00002-of-00003.safetensors",
            "b": "model-00002-of-00003.safetensors",
            "d": "model-00003-of-00003.safetensors",
        },
    }
    assert all(p.exists() for p in files)


def test_shards_and_index_are_those_save_pretrained_writes(tmp_path) -> None:
    model = tiny_llama(tie_word_embeddings=True)
    model.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    save_hf_weights(model.state_dict(), tmp_path / "ours", max_shard_size="20KB")
    ours = sorted(p.name for p in (tmp_path / "ours").iterdir())
    assert ours == sorted(p.name for p in (tmp_path / "hf").iterdir() if "safetensors" in p.name)
    hf_index = json.loads((tmp_path / "hf" / "model.safetensors.index.json").read_text())
    our_index = json.loads((tmp_path / "ours" / "model.safetensors.index.json").read_text())
    assert our_index["weight_map"] == hf_index["weight_map"]
    assert our_index["metadata"]["total_size"] == hf_index["metadata"]["total_size"]


def test_tied_weights_are_written_once_under_the_first_name(tmp_path) -> None:
    model = tiny_llama(tie_word_embeddings=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    save_hf_weights(model.state_dict(), tmp_path)
    saved = load_hf_weights(tmp_path)
    assert "model.embed_tokens.weight" in saved
    assert "lm_head.weight" not in saved
    assert len(saved) == len(model.state_dict()) - 1


@pytest.mark.parametrize("save_dtype", ["bf16", "bfloat16", torch.bfloat16])
def test_save_dtype_casts_floating_tensors_only(tmp_path, save_dtype) -> None:
    state = {"weight": torch.randn(4, 4), "steps": torch.arange(3)}
    save_hf_weights(state, tmp_path, save_dtype=save_dtype)
    saved = load_hf_weights(tmp_path)
    assert saved["weight"].dtype == torch.bfloat16
    assert torch.equal(saved["weight"], state["weight"].bfloat16())
    assert saved["steps"].dtype == torch.int64
    assert state["weight"].dtype == torch.float32  # the model's own tensors are untouched


def test_save_dtype_counts_toward_max_shard_size_after_the_cast(tmp_path) -> None:
    state = _state(a=(250,), b=(250,))  # 1000 bytes each in fp32, 500 in fp16
    assert len(save_hf_weights(state, tmp_path / "fp32", max_shard_size="1KB")) == 2
    assert len(save_hf_weights(state, tmp_path / "fp16", max_shard_size="1KB", save_dtype="fp16")) == 1


@pytest.mark.parametrize(
    ("max_shard_size", "expected_files"),
    [("5GB", 1), ("1KB", 2), ("1.5KB", 2), ("1KiB", 2), (" 2kb ", 1), (2000, 1), (1000, 2)],
)
def test_max_shard_size_takes_units_or_bytes(tmp_path, max_shard_size, expected_files) -> None:
    assert len(save_hf_weights(_state(a=(250,), b=(250,)), tmp_path, max_shard_size=max_shard_size)) == expected_files


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_shard_size", "5 gigabytes"),
        ("max_shard_size", "0MB"),
        ("max_shard_size", -1),
        ("max_shard_size", True),
        ("save_dtype", "int8"),
        ("save_dtype", "fp8"),
        ("save_dtype", torch.int32),
    ],
)
def test_a_bad_max_shard_size_or_save_dtype_names_the_setting_and_writes_nothing(tmp_path, setting, value) -> None:
    with pytest.raises(CheckpointError, match=setting) as error:
        save_hf_weights(_state(a=(2,)), tmp_path / "out", **{setting: value})
    assert error.value.user_error is True
    assert not (tmp_path / "out").exists()


def test_load_reads_one_file_a_sharded_folder_and_shards_without_an_index(tmp_path) -> None:
    state = _state(a=(100,), b=(100,), c=(100,))
    save_hf_weights(state, tmp_path / "single")
    save_hf_weights(state, tmp_path / "sharded", max_shard_size=500)
    save_hf_weights(state, tmp_path / "no_index", max_shard_size=500)
    (tmp_path / "no_index" / "model.safetensors.index.json").unlink()
    for source in ("single", "single/model.safetensors", "sharded", "no_index"):
        loaded = load_hf_weights(tmp_path / source)
        assert loaded.keys() == state.keys(), source
        assert all(torch.equal(loaded[k], v) for k, v in state.items()), source


def test_a_missing_shard_or_folder_is_an_error_naming_it(tmp_path) -> None:
    save_hf_weights(_state(a=(100,), b=(100,)), tmp_path, max_shard_size=500)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002\.safetensors is missing"):
        load_hf_weights(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_hf_weights(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no safetensors weights"):
        load_hf_weights(tmp_path / "empty")


def test_saving_again_replaces_the_weight_files_of_the_earlier_save(tmp_path) -> None:
    state = _state(a=(100,), b=(100,), c=(100,))
    save_hf_weights(state, tmp_path, max_shard_size=500)
    (tmp_path / "config.json").write_text("{}")
    save_hf_weights(state, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_load_into_a_module_restores_tied_weights(tmp_path) -> None:
    source = tiny_llama(tie_word_embeddings=True, seed=0)
    save_hf_weights(source.state_dict(), tmp_path)
    target = tiny_llama(tie_word_embeddings=True, seed=1)
    assert load_hf_weights_into(target, tmp_path) == ([], [])
    assert target.lm_head.weight is target.model.embed_tokens.weight
    assert all(torch.equal(value, target.state_dict()[name]) for name, value in source.state_dict().items())


def test_strict_load_lists_missing_and_unexpected_keys_with_the_closest_names(tmp_path) -> None:
    state = TinyNet().state_dict()
    state["outt.weight"] = state.pop("out.weight")
    save_hf_weights(state, tmp_path)
    target = TinyNet()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as error:
        load_hf_weights_into(target, tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message
    assert "missing keys the module has: out.weight (closest: outt.weight)" in message
    assert "unexpected keys the module lacks: outt.weight (closest: out.weight)" in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # nothing copied


def test_non_strict_load_copies_what_matches_and_returns_the_rest(tmp_path) -> None:
    source = TinyNet()
    state = source.state_dict()
    state["extra"] = torch.ones(2)
    del state["out.bias"]
    save_hf_weights(state, tmp_path)
    target = TinyNet()
    assert load_hf_weights_into(target, tmp_path, strict=False) == (["out.bias"], ["extra"])
    assert torch.equal(target.inp.weight, source.inp.weight)


def test_a_shape_mismatch_is_an_error_showing_both_shapes(tmp_path) -> None:
    save_hf_weights({**TinyNet().state_dict(), "out.bias": torch.zeros(3)}, tmp_path)
    with pytest.raises(CheckpointError, match=r"out\.bias \(3,\) vs \(1,\)"):
        load_hf_weights_into(TinyNet(), tmp_path)
