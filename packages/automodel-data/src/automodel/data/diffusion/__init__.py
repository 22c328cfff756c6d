"""automodel.data.diffusion: image-caption data for text-to-image diffusion training, and a latent cache.

``ImageCaptionDataset`` reads an image folder (``metadata.jsonl`` or ``metadata.csv``) or
another dataset and fits each image to its aspect-ratio bucket; ``build_dataloader`` batches
samples of one bucket together. ``write_latent_cache`` encodes every sample once with a
caller's ``encode`` (VAE and text encoders) into safetensors shards that
``LatentCacheDataset`` reads back.
"""

from automodel.data.diffusion.buckets import closest_bucket, normalize_buckets
from automodel.data.diffusion.image_caption import ImageCaptionDataset, collate_image_captions
from automodel.data.diffusion.latent_cache import finalize_latent_cache, write_latent_cache
from automodel.data.diffusion.latent_dataset import LatentCacheDataset, collate_latents

__all__ = [
    "ImageCaptionDataset",
    "LatentCacheDataset",
    "closest_bucket",
    "collate_image_captions",
    "collate_latents",
    "finalize_latent_cache",
    "normalize_buckets",
    "write_latent_cache",
]
