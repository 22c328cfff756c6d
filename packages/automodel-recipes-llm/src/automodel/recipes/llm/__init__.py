"""automodel.recipes.llm: LLM recipes (train_ft: supervised fine-tuning and pre-training)."""

__version__ = "0.6.0"
