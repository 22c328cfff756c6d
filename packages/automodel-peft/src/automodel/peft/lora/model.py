"""Adding LoRA to a model, and merging, unmerging and removing it again."""

from __future__ import annotations

from torch import nn

from automodel.peft.errors import PeftError
from automodel.peft.lora.config import LoRAConfig
from automodel.peft.lora.layer import LoRALinear, check_compile_available
from automodel.peft.targets import select_linear_modules


def target_module_names(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Return the paths of the nn.Linear modules ``apply_lora(model, config)`` would adapt, in model order."""
    return select_linear_modules(model, config.target_modules, config.exclude_modules, config.match_all_linear)


def apply_lora(model: nn.Module, config: LoRAConfig) -> nn.Module:
    """Replace the targeted nn.Linear modules of ``model`` by LoRALinear, in place, and return ``model``.

    Afterwards only adapter parameters (lora_A, lora_B, DoRA magnitudes) require grad. Raises
    PeftError when the model already has LoRA adapters or a pattern matches nothing.
    """
    if not isinstance(config, LoRAConfig):
        raise PeftError(f"apply_lora takes a LoRAConfig, got {type(config).__name__}.")
    if lora_modules(model):
        raise PeftError("The model already has LoRA adapters; call remove_lora(model) before applying new ones.")
    paths = target_module_names(model, config)
    if config.fused:
        check_compile_available(config.compile_backend)  # before the model changes
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for path in paths:
        parent, name = _parent(model, path)
        base = getattr(parent, name)
        setattr(parent, name, LoRALinear(base, config).train(base.training))
    return model


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """Return the model's LoRALinear modules by path (``model.layers.0.self_attn.q_proj``), in model order."""
    return {path: module for path, module in model.named_modules() if path and isinstance(module, LoRALinear)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight so the forward pass costs what the base model costs; returns ``model``.

    The outputs stay the same (to rounding). Undo with :func:`unmerge_lora`; make the result a plain model
    with :func:`remove_lora`.
    """
    for module in _required_lora_modules(model).values():
        module.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Take merged adapters back out of the base weights (the inverse of :func:`merge_lora`); returns ``model``."""
    for module in _required_lora_modules(model).values():
        module.unmerge()
    return model


def remove_lora(model: nn.Module) -> nn.Module:
    """Put each LoRALinear's base nn.Linear back in its place and return ``model``.

    Merged adapters stay in the weights (``merge_lora`` then ``remove_lora`` gives a plain model to save
    with ``save_pretrained``); unmerged adapters are dropped. Parameters keep their requires_grad flags.
    """
    for path, module in _required_lora_modules(model).items():
        parent, name = _parent(model, path)
        setattr(parent, name, module.base_layer)
    return model


def _required_lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """lora_modules(model), or PeftError when it has none."""
    modules = lora_modules(model)
    if not modules:
        raise PeftError(f"{type(model).__name__} has no LoRA adapters; add them with apply_lora or load_adapter.")
    return modules


def _parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    """The module that holds ``path`` as a child, and the child's attribute name."""
    parent_path, _, name = path.rpartition(".")
    return model.get_submodule(parent_path), name
