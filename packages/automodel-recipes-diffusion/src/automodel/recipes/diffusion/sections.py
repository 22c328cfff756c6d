"""The `model:` and `prompts:` sections as both diffusion routes (train and preprocess) read them."""

from __future__ import annotations

from automodel.config import ConfigNode, build_section, config_error, errors_named_by, plain_section
from automodel.models import DiffusionPipelineForTraining, pipeline_kind

DEFAULT_MAX_SEQUENCE_LENGTH = 256


def build_pipeline(cfg: ConfigNode, components: str) -> DiffusionPipelineForTraining:
    """Build ``model:`` with ``components`` (``all``, or ``denoiser`` for a latent cache) and return it.

    Raises:
        ConfigError: ``model:`` builds something else, or a pipeline the training step does not support.
    """
    pipeline = build_section(cfg, "model", components=components)
    if not isinstance(pipeline, DiffusionPipelineForTraining):
        raise config_error(
            cfg,
            f"builds a {type(pipeline).__name__}, not a diffusion pipeline",
            "model",
            "use automodel.models.AutoDiffusionPipeline.from_pretrained or .from_config",
        )
    with errors_named_by(cfg, "model"):
        pipeline_kind(pipeline.pipeline)
    return pipeline


def max_sequence_length(cfg: ConfigNode) -> int:
    """Return ``prompts.max_sequence_length`` (default 256, Stable Diffusion 3's)."""
    prompts = plain_section(cfg, "prompts", ("max_sequence_length",))
    return int(prompts.get("max_sequence_length") or DEFAULT_MAX_SEQUENCE_LENGTH)
