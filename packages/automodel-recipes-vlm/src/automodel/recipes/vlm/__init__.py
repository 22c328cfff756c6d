"""automodel.recipes.vlm: fine-tuning recipes for vision-language models (route ``finetune.vlm``)."""

__version__ = "0.3.1"
