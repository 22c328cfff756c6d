"""Pick and build the diffusion objective that matches a diffusers scheduler config."""

from __future__ import annotations

import inspect

from automodel.training.diffusion.ddpm import DDPMObjective
from automodel.training.diffusion.flow_matching import FlowMatchingObjective
from automodel.training.errors import TrainingError


def _check_settings(objective: type, settings: dict, excluded: tuple[str, ...] = ()) -> None:
    """Raise TrainingError naming any key of ``settings`` that ``objective``'s constructor does not take."""
    allowed = [name for name in inspect.signature(objective).parameters if name not in excluded]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise TrainingError(
            f"Unknown {objective.__name__} settings {unknown}; the allowed settings are {', '.join(allowed)}."
        )


def _flow_shift_settings(config: dict) -> dict:
    """The shift a flow matching scheduler config trains with: Flux's dynamic shift or a static ``shift``."""
    if config.get("use_dynamic_shifting", False):
        return {
            "resolution_shift": {
                "base_shift": config.get("base_shift", 0.5),
                "max_shift": config.get("max_shift", 1.15),
                "base_seq_len": config.get("base_image_seq_len", 256),
                "max_seq_len": config.get("max_image_seq_len", 4096),
            }
        }
    return {"flow_shift": float(config.get("shift", 1.0))}


def objective_from_scheduler_config(config: dict, settings: dict) -> FlowMatchingObjective | DDPMObjective:
    """Return the training objective of a diffusers scheduler config.

    Args:
        config: the scheduler's ``scheduler_config.json`` as a dict.
        settings: the objective's constructor arguments chosen by the user (e.g. ``timestep_sampling``,
            ``caption_dropout``, ``seed``); unknown keys raise TrainingError.

    Returns:
        A FlowMatchingObjective when ``config["_class_name"]`` contains ``FlowMatch``, with the
        config's ``num_train_timesteps`` and its shift (``use_dynamic_shifting`` with ``base_shift``,
        ``max_shift``, ``base_image_seq_len``, ``max_image_seq_len``, else ``shift``) unless
        ``settings`` gives ``flow_shift`` or ``resolution_shift``; otherwise a DDPMObjective of the
        config's betas and ``prediction_type``.
    """
    if "FlowMatch" in config.get("_class_name", ""):
        _check_settings(FlowMatchingObjective, settings)
        defaults = {"num_train_timesteps": int(config.get("num_train_timesteps", 1000))}
        if "flow_shift" not in settings and "resolution_shift" not in settings:
            defaults.update(_flow_shift_settings(config))
        return FlowMatchingObjective(**{**defaults, **settings})
    _check_settings(DDPMObjective, settings, excluded=("alphas_cumprod",))
    return DDPMObjective.from_scheduler_config(config, **settings)
