"""automodel.training.diffusion: training text-to-image diffusion models on pre-encoded latents.

FlowMatchingObjective (SD3/Flux rectified flow) and DDPMObjective (UNet epsilon/v prediction)
draw every sample's noise, timestep and caption dropout from a generator keyed by
``(seed, step, dataset index)``, so results do not depend on the data-parallel split;
diffusion_train_step runs one optimizer step, ExponentialMovingAverage keeps averaged weights,
diffusion_validation_loss measures the loss at fixed timesteps with fixed noise.
"""

from automodel.training.diffusion.batch import Draw
from automodel.training.diffusion.ddpm import DDPMObjective, alphas_cumprod_from_config
from automodel.training.diffusion.ema import ExponentialMovingAverage
from automodel.training.diffusion.flow_matching import FlowMatchingObjective
from automodel.training.diffusion.from_config import objective_from_scheduler_config
from automodel.training.diffusion.randomness import sample_generator
from automodel.training.diffusion.step import diffusion_train_step
from automodel.training.diffusion.validation import diffusion_validation_loss

__all__ = [
    "DDPMObjective",
    "Draw",
    "ExponentialMovingAverage",
    "FlowMatchingObjective",
    "alphas_cumprod_from_config",
    "diffusion_train_step",
    "diffusion_validation_loss",
    "objective_from_scheduler_config",
    "sample_generator",
]
