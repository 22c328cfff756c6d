"""The ``compile:`` section: ``torch.compile`` of each transformer block (regional compilation)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from automodel.distributed.blocks import transformer_blocks
from automodel.distributed.errors import DistributedError

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class CompileConfig:
    """A validated ``compile:`` section.

    Attributes:
        enabled: compile each transformer block (off by default).
        backend: the ``torch.compile`` backend (``inductor``, which runs on CPU and CUDA).
        mode: ``torch.compile``'s mode (None: its default).
        fullgraph: fail instead of falling back to eager at a graph break.
        dynamic: mark shapes dynamic up front (None: torch decides after the first new shape).
    """

    enabled: bool = False
    backend: str = "inductor"
    mode: str | None = None
    fullgraph: bool = False
    dynamic: bool | None = None


KEYS = tuple(f.name for f in fields(CompileConfig))


def parse_compile_config(section: Mapping[str, Any] | None) -> CompileConfig:
    """Check a ``compile:`` mapping key by key and return it as a CompileConfig.

    Args:
        section: the YAML section as a mapping (None or empty: compilation off).

    Returns:
        The CompileConfig.

    Raises:
        DistributedError: naming ``compile.<key>`` for an unknown key (with the closest known
            one) or a value of the wrong type.
    """
    section = dict(section or {})
    for key in section:
        if key not in KEYS:
            match = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"did you mean `{match[0]}`? " if match else ""
            raise DistributedError(f"compile.{key} is not a compile setting; {hint}known keys: {', '.join(KEYS)}")
    for key in ("enabled", "fullgraph"):
        if not isinstance(section.get(key, False), bool):
            raise DistributedError(f"compile.{key} must be true or false, got {section[key]!r}")
    dynamic = section.get("dynamic")
    if dynamic is not None and not isinstance(dynamic, bool):
        raise DistributedError(f"compile.dynamic must be true, false or null, got {dynamic!r}")
    mode = section.get("mode")
    if mode is not None and mode not in MODES:
        raise DistributedError(f"compile.mode is {mode!r}; choose one of {', '.join(MODES)} or leave it out")
    backend = section.get("backend", "inductor")
    if backend not in torch._dynamo.list_backends():
        raise DistributedError(
            f"compile.backend is {backend!r}, which torch.compile does not know; "
            f"choose one of {', '.join(torch._dynamo.list_backends())}"
        )
    return CompileConfig(
        enabled=section.get("enabled", False),
        backend=backend,
        mode=mode,
        fullgraph=section.get("fullgraph", False),
        dynamic=dynamic,
    )


def compile_blocks(model: torch.nn.Module, config: CompileConfig) -> int:
    """Compile each transformer block of ``model`` in place with ``torch.compile`` when ``config.enabled``.

    Each block is compiled with ``nn.Module.compile``: the module keeps its class, parameter
    names and state dict (checkpoints are unchanged), and the identical blocks share one
    compiled graph, so compile time does not grow with depth. Works after FSDP2, DDP
    (pass the inner model) and activation checkpointing; the embedding, the final norm, the
    LM head and the loss stay eager.

    Args:
        model: the model to compile (a Hugging Face causal LM, or any model with repeated blocks).
        config: the parsed ``compile:`` section.

    Returns:
        How many blocks were compiled (0 when compilation is off).

    Raises:
        DistributedError: when compilation is on and the model has no blocks to compile.
    """
    if not config.enabled:
        return 0
    blocks = transformer_blocks(model)
    if not blocks:
        raise DistributedError(
            f"compile.enabled: {type(model).__name__} has no repeated transformer blocks to compile "
            "(no _no_split_modules and no ModuleList); set compile.enabled: false"
        )
    options = {"backend": config.backend, "mode": config.mode, "fullgraph": config.fullgraph, "dynamic": config.dynamic}
    for block in blocks:
        block.compile(**options)
    return len(blocks)
