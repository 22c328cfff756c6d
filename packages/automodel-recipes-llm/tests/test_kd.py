"""kd: a student distilled from a frozen teacher ends closer to it than one trained on labels alone."""

from __future__ import annotations

import shutil

import pytest
import torch
from kd_test_helpers import kd_config, run_kd, setup_error, train_teacher
from recipe_test_helpers import read_jsonl

from automodel.config import ConfigError
from automodel.distributed.testing import run_on_ranks
from automodel.models import build_tokenizer
from automodel.recipes.llm.kd import KnowledgeDistillationRecipeForNextTokenPrediction, main

BAD_INPUT = {"step_scheduler": {"global_batch_size": 16, "local_batch_size": 16, "max_steps": 1}}


@pytest.fixture(scope="module")
def teacher(task, tmp_path_factory):
    return train_teacher(task, tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def distilled(task, teacher, tmp_path_factory):
    """The KD run (default kd_ratio 0.5, KDLoss at temperature 1) and the CE-only run (kd_ratio 0), same seed and
    budget: ``{name: run_kd's result}``."""
    runs = {}
    for name, sections in (("kd", {}), ("ce", {"kd_ratio": 0.0})):
        runs[name] = run_kd(str(task), str(tmp_path_factory.mktemp(name)), str(teacher), sections)
    return runs


def _setup(cfg):
    KnowledgeDistillationRecipeForNextTokenPrediction(cfg).setup()


def test_the_distilled_student_is_closer_to_the_teacher_than_a_student_trained_on_labels(distilled):
    kd, ce = (distilled[name]["validation"][-1] for name in ("kd", "ce"))
    assert kd["step"] == ce["step"] == 100
    assert kd["val_kl"] < 0.5 * ce["val_kl"], (kd, ce)
    assert kd["val_kl"] < 0.1 * distilled["kd"]["validation"][0]["val_kl"]


def test_the_training_log_has_the_ce_and_kd_terms_that_make_the_loss(distilled):
    for name, ratio in (("kd", 0.5), ("ce", 0.0)):
        records = distilled[name]["training"]
        assert [r["step"] for r in records] == [20, 40, 60, 80, 100]
        for record in records:
            mixed = (1 - ratio) * record["ce_loss"] + ratio * record["kd_loss"]
            assert record["loss"] == pytest.approx(mixed, rel=1e-5), name


def test_the_teacher_is_frozen_in_eval_mode_and_never_gets_adapters(task, teacher, tmp_path):
    lora = {"_target_": "automodel.peft.LoRAConfig", "dim": 4, "alpha": 8, "match_all_linear": True}
    schedule = {"global_batch_size": 16, "local_batch_size": 16, "max_steps": 2}
    cfg = kd_config(task, tmp_path, teacher, peft=lora, step_scheduler=schedule, validation_dataset=None)
    recipe = KnowledgeDistillationRecipeForNextTokenPrediction(cfg)
    recipe.setup()
    frozen = recipe.distillation.teacher
    before = {name: p.detach().clone() for name, p in frozen.named_parameters()}
    recipe.run_train_validation_loop()
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    assert not any("lora" in name for name in before)
    assert any("lora" in name for name, p in recipe.model.named_parameters() if p.requires_grad)
    for name, p in frozen.named_parameters():
        assert torch.equal(p, before[name]), name


def test_main_prints_the_held_out_kl_at_the_end(task, teacher, tmp_path, capsys):
    schedule = {"global_batch_size": 16, "local_batch_size": 16, "max_steps": 2, "log_interval": 1}
    assert main(kd_config(task, tmp_path, teacher, step_scheduler=schedule)) == 0
    last = read_jsonl(tmp_path / "validation.jsonl")[-1]
    assert f"student KL to teacher on held-out data: {last['val_kl']:.4g}" in capsys.readouterr().err


def test_a_teacher_with_another_vocab_size_is_an_error_naming_teacher_model(task, teacher, tmp_path):
    other = {
        "_target_": "automodel.models.AutoModelForCausalLM.from_config",
        "config": {"model_type": "llama", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1},
    }
    cfg = kd_config(task, tmp_path, teacher, teacher_model=other, **BAD_INPUT)
    with pytest.raises(ConfigError, match=r"`teacher_model`: the teacher's vocab_size is 300 and the student's 320"):
        _setup(cfg)


def test_a_teacher_saved_with_another_tokenizer_is_an_error_naming_teacher_model(task, teacher, tmp_path):
    copy = shutil.copytree(teacher, tmp_path / "teacher")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (copy / name).unlink()
    build_tokenizer(["ein zwei drei vier fünf"] * 4, copy, vocab_size=300)
    cfg = kd_config(task, tmp_path / "run", copy, **BAD_INPUT)
    with pytest.raises(ConfigError, match=r"`teacher_model`: the tokenizer saved with the teacher .* is not the"):
        _setup(cfg)


@pytest.mark.parametrize("ratio", [1.5, -0.1, "half", True])
def test_kd_ratio_outside_zero_to_one_is_an_error(task, teacher, tmp_path, ratio):
    with pytest.raises(ConfigError, match=r"`kd_ratio`: must be a number (from 0 to 1|of at least 0)"):
        _setup(kd_config(task, tmp_path, teacher, kd_ratio=ratio, **BAD_INPUT))


def test_a_missing_teacher_model_section_is_an_error(task, teacher, tmp_path):
    with pytest.raises(ConfigError, match=r"no `teacher_model:` section, which kd needs"):
        _setup(kd_config(task, tmp_path, teacher, teacher_model=None, **BAD_INPUT))


def test_a_misspelt_section_suggests_the_kd_one(task, teacher, tmp_path):
    cfg = kd_config(task, tmp_path, teacher, kd_loss={"temperature": 2.0}, **BAD_INPUT)
    with pytest.raises(ConfigError, match=r"`kd_loss`: is not a section kd knows; did you mean `kd_loss_fn`\?"):
        _setup(cfg)


def test_a_loss_without_logits_is_an_error_naming_loss_fn(task, teacher, tmp_path):
    chunked = {"_target_": "automodel.training.ChunkedCrossEntropy"}
    with pytest.raises(ConfigError, match=r"`loss_fn`: ChunkedCrossEntropy never builds the student's logits"):
        _setup(kd_config(task, tmp_path, teacher, loss_fn=chunked, **BAD_INPUT))


def _two_rank_sections(distributed: dict | None) -> dict:
    schedule = {"global_batch_size": 16, "local_batch_size": 4, "max_steps": 4, "log_interval": 1}
    sections = {"step_scheduler": schedule}
    return sections if distributed is None else {**sections, "distributed": distributed}


@pytest.mark.parametrize(
    ("strategy", "student", "teacher_wrapper"),
    [("fsdp2", "FSDPLlamaForCausalLM", "FSDPLlamaForCausalLM"), ("ddp", "DistributedDataParallel", "LlamaForCausalLM")],
)
def test_two_processes_give_the_one_process_losses_and_held_out_kl(
    task, teacher, tmp_path, strategy, student, teacher_wrapper
):
    single = run_kd(str(task), str(tmp_path / "one"), str(teacher), _two_rank_sections(None))
    args = (str(task), str(tmp_path / "two"), str(teacher), _two_rank_sections({"strategy": strategy}))
    ranks = run_on_ranks(run_kd, 2, args=args, preload=["kd_test_helpers"], timeout_s=300)
    assert (ranks[0]["student"], ranks[0]["teacher"]) == (student, teacher_wrapper)
    for log, keys in (("training", ("loss", "ce_loss", "kd_loss")), ("validation", ("val_loss", "val_kl"))):
        assert [r["step"] for r in ranks[0][log]] == [r["step"] for r in single[log]]
        for two, one in zip(ranks[0][log], single[log], strict=True):
            for key in keys:
                assert two[key] == pytest.approx(one[key], abs=1e-5), (log, key, one["step"])


def test_tensor_parallelism_is_refused_naming_distributed(task, teacher, tmp_path):
    args = (str(task), str(tmp_path), str(teacher), {**BAD_INPUT, "distributed": {"tp_size": 2}})
    messages = run_on_ranks(setup_error, 2, args=args, preload=["kd_test_helpers"])
    assert "`distributed`: kd compares the teacher's and the student's logits" in messages[0]
