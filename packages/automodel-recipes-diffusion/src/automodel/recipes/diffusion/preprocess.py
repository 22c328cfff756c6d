"""preprocess: encode an image-caption dataset once into a latent cache for ``train diffusion``.

    automodel preprocess diffusion -c cfg.yaml
    python -m automodel.recipes.diffusion.preprocess -c cfg.yaml

Reads ``model:`` (the pipeline whose VAE and text encoders encode), ``dataset:`` (an
image-caption dataset), ``prompts.max_sequence_length`` and ``latent_cache:`` (``dir``,
``batch_size``, ``samples_per_shard``). Writes safetensors shards and ``index.json`` (see
automodel.data.diffusion.write_latent_cache), with the empty caption's embeddings for caption
dropout. A stopped run continues where it stopped; several processes split the shards.
Training then reads the cache with ``automodel.data.diffusion.LatentCacheDataset`` and loads
neither the VAE nor the text encoders.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from automodel.config import (
    ConfigNode,
    build_section,
    check_config,
    errors_named_by,
    load_config_from_argv,
    plain_section,
)
from automodel.data.diffusion import finalize_latent_cache, write_latent_cache
from automodel.distributed import destroy_distributed, setup_parallelism
from automodel.recipes.diffusion.conditioning import encode_batch, encoder_fingerprint, null_conditioning
from automodel.recipes.diffusion.schema import PREPROCESS, PREPROCESS_REQUIRED
from automodel.recipes.diffusion.sections import build_pipeline, max_sequence_length
from automodel.training import ProgressReporter, main_reporting_user_errors, set_seed

# This route's config, as `automodel <command> <domain> --help` lists it (read through the entry point).
SCHEMA, REQUIRED = PREPROCESS, PREPROCESS_REQUIRED


def preprocess(cfg: ConfigNode) -> Path:
    """Write the latent cache that ``cfg`` describes and return its folder."""
    check_config(cfg, PREPROCESS, PREPROCESS_REQUIRED, "preprocess (diffusion)", "examples/diffusion")
    section = cfg.get("distributed")
    with errors_named_by(cfg, "distributed"):
        parallel = setup_parallelism(section.to_container() if isinstance(section, ConfigNode) else section)
    set_seed(int(cfg.get("seed", 42)))
    prompt_length = max_sequence_length(cfg)
    settings = plain_section(cfg, "latent_cache", ("dir", "batch_size", "samples_per_shard"))
    trainable = build_pipeline(cfg, "all")
    for name in trainable.frozen_components:
        getattr(trainable.pipeline, name).to(parallel.device)
    dataset = build_section(cfg, "dataset")
    out_dir = Path(settings.get("dir") or "latent_cache")
    progress = ProgressReporter(len(dataset), 0, enabled=parallel.is_rank0)
    with torch.no_grad(), errors_named_by(cfg, "latent_cache"):
        write_latent_cache(
            dataset,
            lambda batch: {
                k: v
                for k, v in encode_batch(trainable.pipeline, batch, parallel.device, prompt_length).items()
                if k != "indices"
            },
            out_dir,
            fingerprint=encoder_fingerprint(trainable.source, prompt_length),
            batch_size=int(settings.get("batch_size") or 16),
            samples_per_shard=int(settings.get("samples_per_shard") or 1024),
            null_conditioning=null_conditioning(trainable.pipeline, prompt_length),
            dp_rank=parallel.dp_rank,
            dp_size=parallel.dp_size,
            progress=lambda done, total: progress.update(done, {"samples": total}),
        )
        if parallel.dp_size > 1:
            torch.distributed.barrier()
            if parallel.is_rank0:
                finalize_latent_cache(out_dir)
            torch.distributed.barrier()
    progress.close()
    progress.message(f"latent cache of {len(dataset)} samples written to {out_dir}")
    return out_dir


def main(cfg: ConfigNode | None = None) -> int:
    """Run the preprocessing recipe on ``cfg`` (default: the config named by ``-c`` in sys.argv); return 0."""
    cfg = load_config_from_argv() if cfg is None else cfg
    try:
        preprocess(cfg)
    finally:
        destroy_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main_reporting_user_errors(main))

__all__ = ["main", "preprocess"]
