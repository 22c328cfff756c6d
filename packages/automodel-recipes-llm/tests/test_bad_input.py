"""Bad configs are ConfigErrors naming the YAML section and what to do, raised before training."""

from __future__ import annotations

import subprocess
import sys

import pytest
from recipe_test_helpers import sft_config

from automodel.config import ConfigError, dump_yaml
from automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction


def _setup(cfg):
    TrainFinetuneRecipeForNextTokenPrediction(cfg).setup()


def test_an_unknown_section_suggests_the_closest(task, tmp_path):
    cfg = sft_config(task, tmp_path, optimiser={"lr": 1})
    with pytest.raises(ConfigError, match=r"`optimiser`: is not a section train_ft knows; did you mean `optimizer`\?"):
        _setup(cfg)


def test_a_missing_required_section(task, tmp_path):
    with pytest.raises(ConfigError, match="no `optimizer:` section"):
        _setup(sft_config(task, tmp_path, optimizer=None))


def test_a_model_from_config_needs_a_tokenizer_section(task, tmp_path):
    with pytest.raises(ConfigError, match=r"`model`: the model is built from a config.*add a `tokenizer:` section"):
        _setup(sft_config(task, tmp_path, tokenizer=None))


def test_a_dataset_error_names_the_section(task, tmp_path):
    bad = {
        "_target_": "automodel.data.llm.ColumnMappedTextInstructionDataset",
        "path_or_dataset_id": str(task / "train.jsonl"),
        "column_mapping": {"question": "prompt", "answer": "answer"},
    }
    with pytest.raises(ConfigError, match=r"`dataset`: .*prompt"):
        _setup(sft_config(task, tmp_path, dataset=bad))


def test_generation_on_plain_text_is_an_error(task, tmp_path):
    corpus = {
        "_target_": "automodel.data.llm.PretrainTextDataset",
        "path_or_dataset_id": str(task / "corpus.jsonl"),
        "seq_length": 32,
    }
    cfg = sft_config(task, tmp_path, validation_dataset=corpus, validation={"generation": {"num_samples": 2}})
    with pytest.raises(ConfigError, match="`validation`: generation needs a dataset with prompts"):
        _setup(cfg)


def test_generation_without_a_validation_dataset_is_an_error(task, tmp_path):
    cfg = sft_config(task, tmp_path, validation_dataset=None, validation={"generation": {}})
    with pytest.raises(ConfigError, match="needs a `validation_dataset:`"):
        _setup(cfg)


def test_an_unknown_step_scheduler_key(task, tmp_path):
    cfg = sft_config(task, tmp_path, step_scheduler={"global_batch_size": 8, "local_batch_size": 8, "max_stepz": 3})
    with pytest.raises(
        ConfigError, match=r"`step_scheduler.max_stepz`: is not a step_scheduler setting; did you mean `max_steps`"
    ):
        _setup(cfg)


def test_batch_arithmetic_errors_reach_the_user(task, tmp_path):
    cfg = sft_config(task, tmp_path, step_scheduler={"global_batch_size": 10, "local_batch_size": 4})
    with pytest.raises(Exception, match=r"not a multiple of local_batch_size \(4\)") as info:
        _setup(cfg)
    assert getattr(info.value, "user_error", False)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"tp_size": 3}, r"world size \(1 processes\) is not divisible by tp_size x cp_size = 3 x 1 = 3"),
        ({"strategy": "fsdp"}, "did you mean `fsdp2`"),
        ({"tp_sise": 2}, "did you mean `tp_size`"),
    ],
)
def test_a_bad_distributed_section_names_the_section_and_the_arithmetic(task, tmp_path, section, message):
    with pytest.raises(ConfigError, match=message) as info:
        _setup(sft_config(task, tmp_path, distributed=section))
    assert "`distributed`" in str(info.value)


def test_chunked_cross_entropy_with_several_processes_is_refused_naming_loss_fn(task, tmp_path):
    from recipe_distributed_workers import run_train_ft

    from automodel.distributed.testing import run_on_ranks

    sections = {"loss_fn": {"_target_": "automodel.training.ChunkedCrossEntropy"}, "validation_dataset": None}
    with pytest.raises(RuntimeError, match=r"`loss_fn`.*ChunkedCrossEntropy reads the decoder's hidden states"):
        run_on_ranks(
            run_train_ft,
            2,
            args=(str(task), str(tmp_path), sections),
            preload=["automodel.recipes.llm.train_ft", "recipe_distributed_workers"],
        )


def test_several_processes_without_a_rendezvous_address_say_how_to_launch(task, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ConfigError, match=r"MASTER_ADDR and MASTER_PORT not set.*torchrun"):
        _setup(sft_config(task, tmp_path))


def test_python_dash_m_reports_a_user_error_as_one_paragraph(task, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_yaml(sft_config(task, tmp_path, optimiser={}).to_container()))
    result = subprocess.run(
        [sys.executable, "-m", "automodel.recipes.llm.train_ft", "-c", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("automodel: error:") and "did you mean `optimizer`" in result.stderr
