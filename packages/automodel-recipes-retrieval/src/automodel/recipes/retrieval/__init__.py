"""automodel.recipes.retrieval: bi-encoder / cross-encoder fine-tuning (``finetune.retrieval``) and
hard-negative mining (``mine.retrieval``)."""

__version__ = "0.2.1"
