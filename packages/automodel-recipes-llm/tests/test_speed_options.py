"""Speed options of train_ft: torch.compile per block (CPU and CUDA), and the CUDA-only Liger kernels and
Cut Cross-Entropy, which are clear errors on a machine without CUDA and match the plain run on a GPU."""

from __future__ import annotations

import pytest
import torch
from recipe_test_helpers import read_jsonl, run_recipe, sft_config
from transformers import AutoModelForCausalLM

from automodel.config import ConfigError
from automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction

STEPS = {"global_batch_size": 16, "local_batch_size": 8, "max_steps": 3, "log_interval": 1}
CONSTANT_LR = {"_target_": "automodel.training.constant"}
CUT_CROSS_ENTROPY = {"_target_": "automodel.training.CutCrossEntropy", "filter_eps": None}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


def _short_run(task, out, **sections):
    """A 3-step run at a constant learning rate, without validation; returns its losses and the recipe."""
    cfg = sft_config(task, out, step_scheduler=STEPS, validation_dataset=None, lr_scheduler=CONSTANT_LR, **sections)
    recipe = run_recipe(cfg)
    return [r["loss"] for r in read_jsonl(out / "training.jsonl")], recipe


def _model_section(task, tmp_path, **extra):
    section = sft_config(task, tmp_path).model.to_container()
    section.update(extra)
    return section


def test_compiled_blocks_give_the_eager_losses_and_a_checkpoint_transformers_loads(task, tmp_path):
    torch._dynamo.reset()
    eager, _ = _short_run(task, tmp_path / "eager")
    compiled, recipe = _short_run(task, tmp_path / "compiled", compile={"enabled": True})
    assert recipe.compiled_blocks == 2
    # fp32 on CPU: the same numbers; bf16 on CUDA: inductor's fused kernels round differently.
    assert compiled == (pytest.approx(eager, rel=1e-3) if torch.cuda.is_available() else pytest.approx(eager, abs=1e-5))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "compiled" / "step_000003" / "model")
    assert set(reloaded.state_dict()) == set(recipe.hf_model.state_dict())


def test_a_bad_compile_key_names_the_section(task, tmp_path):
    cfg = sft_config(task, tmp_path, compile={"enabled": True, "mod": "max-autotune"})
    with pytest.raises(ConfigError, match=r"`compile`: compile\.mod is not a compile setting; did you mean `mode`"):
        TrainFinetuneRecipeForNextTokenPrediction(cfg).setup()


@needs_no_cuda
def test_liger_kernels_without_cuda_are_a_clear_error_naming_the_model_section(task, tmp_path):
    cfg = sft_config(task, tmp_path, model=_model_section(task, tmp_path, use_liger_kernel=True))
    with pytest.raises(ConfigError, match=r"`model`: use_liger_kernel needs a CUDA GPU .* remove model\.use_liger"):
        TrainFinetuneRecipeForNextTokenPrediction(cfg).setup()


@needs_no_cuda
def test_cut_cross_entropy_without_cuda_is_a_clear_error_naming_loss_fn(task, tmp_path):
    cfg = sft_config(task, tmp_path, loss_fn=CUT_CROSS_ENTROPY)
    with pytest.raises(ConfigError, match=r"`loss_fn`: CutCrossEntropy needs a CUDA GPU .*ChunkedCrossEntropy"):
        TrainFinetuneRecipeForNextTokenPrediction(cfg).setup()


@pytest.fixture(scope="module")
def plain_bf16_losses(task, tmp_path_factory):
    """The plain run's losses on CUDA (bf16, eager, MaskedCrossEntropy)."""
    return _short_run(task, tmp_path_factory.mktemp("plain"))[0]


@needs_cuda
@pytest.mark.parametrize("option", ["compile", "cut_cross_entropy", "liger_kernel"])
def test_on_cuda_each_speed_option_follows_the_plain_bf16_run(task, tmp_path, plain_bf16_losses, option):
    sections = {
        "compile": {"compile": {"enabled": True}},
        "cut_cross_entropy": {"loss_fn": CUT_CROSS_ENTROPY},
        "liger_kernel": {"model": _model_section(task, tmp_path, use_liger_kernel=True)},
    }[option]
    if option != "compile":
        pytest.importorskip(option)
    losses, recipe = _short_run(task, tmp_path / option, **sections)
    assert next(recipe.hf_model.parameters()).dtype == torch.bfloat16
    if option == "liger_kernel":
        assert recipe.hf_model.model.norm._get_name() == "LigerRMSNorm"
    assert losses == pytest.approx(plain_bf16_losses, rel=5e-2)
    assert losses[-1] < losses[0]
