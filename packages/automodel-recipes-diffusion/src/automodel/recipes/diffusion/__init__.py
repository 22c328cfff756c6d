"""automodel.recipes.diffusion: train.diffusion (flow matching, LoRA, EMA) and preprocess.diffusion (latent cache)."""

__version__ = "0.2.1"
