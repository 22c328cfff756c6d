"""Bad diffusion inputs through the real `automodel` command: exit status 2, no traceback, one paragraph
naming the YAML key or the file, and no checkpoint written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_fork import run_cli

ROOT = Path(__file__).resolve().parent.parent
QUIET = ["--+logging.progress_bar=false", "--step_scheduler.max_steps", "4", "--lr_scheduler.warmup_steps", "1"]


def _cache(tmp: Path, max_sequence_length: int) -> str:
    """A latent cache of the validation images encoded with ``max_sequence_length`` (preprocess.diffusion)."""
    config = tmp / "preprocess.yaml"
    config.write_text(
        json.dumps(
            {
                "recipe": "preprocess.diffusion",
                "model": {
                    "_target_": "automodel.models.AutoDiffusionPipeline.from_pretrained",
                    "pretrained_model_name_or_path": str(ROOT / "examples/data/tiny_t2i/pipeline"),
                },
                "dataset": {
                    "_target_": "automodel.data.diffusion.ImageCaptionDataset",
                    "path_or_dataset_id": str(ROOT / "examples/data/t2i_shapes/validation"),
                },
                "prompts": {"max_sequence_length": max_sequence_length},
                "latent_cache": {"dir": str(tmp / "cache")},
            }
        )
    )
    result = run_cli(["preprocess", "diffusion", "-c", str(config)], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return str(tmp / "cache")


def _case(name: str, tmp: Path) -> tuple[list[str], tuple[str, ...]]:
    """The extra arguments of one bad input and what its message must name."""
    if name == "unknown parallel scheme":
        return ["--parallel_scheme", "megatron"], ("parallel_scheme", "ddp", "fsdp2")
    if name == "not a diffusers pipeline":
        (tmp / "llm").mkdir()
        (tmp / "llm" / "config.json").write_text("{}")
        return ["--model.components_from", str(tmp / "llm")], ("model_index.json", str(tmp / "llm"))
    if name == "cache of another setup":
        cache = _cache(tmp, max_sequence_length=6)
        overrides = [
            "--dataset",
            json.dumps({"_target_": "automodel.data.diffusion.LatentCacheDataset", "path": cache}),
        ]
        overrides += [
            "--validation_dataset",
            json.dumps({"_target_": "automodel.data.diffusion.LatentCacheDataset", "path": cache}),
        ]
        return overrides, ("`dataset`", "max_sequence_length", cache)
    if name == "resolution the VAE cannot take":
        return ["--dataset.resolution", "30"], ("`dataset`", "30x30", "multiples of 4")
    raise AssertionError(name)


CASES = [
    "unknown parallel scheme",
    "not a diffusers pipeline",
    "cache of another setup",
    "resolution the VAE cannot take",
]


@pytest.mark.parametrize("name", CASES)
def test_a_bad_diffusion_input_is_exit_2_naming_the_key(name: str, tmp_path: Path) -> None:
    extra, names = _case(name, tmp_path)
    run = tmp_path / "run"
    argv = ["train", "diffusion", "-c", "examples/diffusion/tiny_t2i.yaml", "--checkpoint.dir", str(run)]
    result = run_cli([*argv, *extra, *QUIET], cwd=ROOT)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for part in names:
        assert part in result.stderr, (part, result.stderr[-2000:])
    assert not list(run.glob("step_*"))
