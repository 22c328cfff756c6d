"""The ``freeze_config:`` section: which parts of a vision-language model keep their weights."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from automodel.config import ConfigNode, config_error

FREEZE_KEYS = ("freeze_vision_tower", "freeze_multimodal_projector", "freeze_language_model", "freeze_embeddings")
# Attribute names transformers' VLMs use for each part, on the model or on its inner ``.model``.
PART_NAMES = {
    "freeze_vision_tower": ("vision_tower", "visual", "vision_model"),
    "freeze_multimodal_projector": ("multi_modal_projector", "mm_projector", "connector"),
    "freeze_language_model": ("language_model",),
}


def find_part(model: torch.nn.Module, names: tuple[str, ...]) -> torch.nn.Module | None:
    """The first of ``names`` that is a module on ``model`` or on its inner ``model.model``, or None."""
    for holder in (model, getattr(model, "model", None)):
        for name in names:
            part = getattr(holder, name, None) if holder is not None else None
            if isinstance(part, torch.nn.Module):
                return part
    return None


def freeze_modules(model: torch.nn.Module, options: Mapping[str, bool], cfg: ConfigNode) -> list[str]:
    """Turn off gradients for the parts ``options`` (the ``freeze_config:`` section) names.

    ``freeze_language_model`` also freezes the LM head; ``freeze_embeddings`` the input embeddings.

    Args:
        model: a transformers image-text-to-text model.
        options: the section's keys (``FREEZE_KEYS``) with true/false values.
        cfg: the config, for errors naming ``freeze_config.<key>``.

    Returns:
        The keys that froze something, in section order.

    Raises:
        ConfigError: a value that is not true/false, or a part this model does not have.
    """
    frozen = []
    for key, value in options.items():
        if not isinstance(value, bool):
            raise config_error(cfg.freeze_config, f"must be true or false, not {value!r}", key)
        if not value:
            continue
        if key == "freeze_embeddings":
            parts = [model.get_input_embeddings()]
        else:
            part = find_part(model, PART_NAMES[key])
            if part is None:
                names = " or ".join(f"`{n}`" for n in PART_NAMES[key])
                raise config_error(
                    cfg.freeze_config, f"{type(model).__name__} has no {names} to freeze", key, "remove the key"
                )
            parts = [part, model.get_output_embeddings()] if key == "freeze_language_model" else [part]
        for part in parts:
            if part is not None:
                part.requires_grad_(False)
        frozen.append(key)
    return frozen
