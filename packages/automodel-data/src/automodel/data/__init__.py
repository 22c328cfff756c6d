"""automodel.data: load datasets, batch them and resume the loader mid-epoch.

The LLM datasets, collation and packing live in ``automodel.data.llm``; retrieval rows, batches and
BEIR evaluation sets in ``automodel.data.retrieval``; image-text
conversations and their collates in ``automodel.data.vlm``; image-caption folders, aspect-ratio
buckets and the pre-encoded latent cache in ``automodel.data.diffusion``.
"""

from automodel.data.dataloader import build_dataloader, fast_forward, set_epoch
from automodel.data.errors import DataError
from automodel.data.loading import load_hf_dataset

__version__ = "0.5.1"

__all__ = [
    "DataError",
    "build_dataloader",
    "fast_forward",
    "load_hf_dataset",
    "set_epoch",
]
