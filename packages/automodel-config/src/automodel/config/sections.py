"""Recipes' view of a config: which top-level sections it may hold, and building one with errors named by it."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from automodel.config.errors import ConfigError, did_you_mean
from automodel.config.node import ConfigNode, config_error


@contextmanager
def errors_named_by(cfg: ConfigNode, section: str) -> Iterator[None]:
    """Re-raise a component's user error (DataError, ModelError, PeftError, ...) as a ConfigError naming ``section``.

    A user error is any exception with ``user_error = True``. ConfigErrors already carry their
    own YAML path and pass through unchanged, as do all other exceptions.

    Args:
        cfg: the config whose ``section`` configured the component.
        section: the top-level key the error is reported at (file and line included).
    """
    try:
        yield
    except Exception as exc:
        if getattr(exc, "user_error", False) and not isinstance(exc, ConfigError):
            raise config_error(cfg, str(exc), section) from None
        raise


def refuse_moved_sections(cfg: ConfigNode, moved: Mapping[str, str], why: str) -> None:
    """Raise a ConfigError at the first top-level key of ``cfg`` that ``moved`` says belongs elsewhere.

    Args:
        cfg: the whole config.
        moved: ``{top-level key: where it belongs}``, e.g. ``{"wandb": "logging.wandb"}`` (NeMo's layout).
        why: the rule, for the message (``experiment trackers are set under `logging:```).
    """
    for key, place in moved.items():
        if key in cfg:
            raise config_error(cfg, f"is not a top-level section: {why}", key, f"move this section to `{place}`")


def build_section(cfg: ConfigNode, section: str, **runtime: Any) -> Any:
    """Instantiate ``cfg[section]`` (a ``_target_`` call) with ``runtime`` keyword arguments added.

    Returns:
        What the target returned. A user error raised by the component is re-raised as a
        ConfigError naming ``section``, and so is a TypeError or ValueError raised while
        building it (``torch.optim.AdamW`` refusing ``lr: -1`` or a string): the section's
        values are what the user wrote.
    """
    with errors_named_by(cfg, section):
        try:
            return cfg[section].instantiate(**runtime)
        except (TypeError, ValueError) as exc:
            if getattr(exc, "user_error", False):
                raise
            target = cfg[section].get("_target_")
            raise config_error(
                cfg,
                f"{target} refused the section's values ({type(exc).__name__}: {exc})",
                section,
                "check the values of this section's keys against what the target takes",
            ) from None


def check_sections(
    cfg: ConfigNode,
    sections: Collection[str],
    required: Collection[str],
    recipe: str,
    examples: str,
) -> None:
    """Check a recipe's top-level sections before anything is built.

    Args:
        cfg: the whole config.
        sections: the top-level keys the recipe knows.
        required: the keys it cannot run without.
        recipe: the recipe's name, for the messages (``train_ft``).
        examples: where its example configs are, for the messages (``examples/llm_finetune``).

    Raises:
        ConfigError: for a key not in ``sections`` (naming the closest) or a missing required one.
    """
    for key in cfg:
        if key not in sections:
            raise config_error(cfg, f"is not a section {recipe} knows", key, did_you_mean(str(key), sections))
    for key in required:
        if key not in cfg:
            raise ConfigError(f"the config has no `{key}:` section, which {recipe} needs", hint=f"see {examples}")


def plain_section(cfg: ConfigNode, section: str, known: Collection[str]) -> dict[str, Any]:
    """Return a section of plain keys (no ``_target_``) as a dict, after checking every key is known.

    Args:
        cfg: the config holding the section (the whole config, or a parent section).
        section: the section's key; an absent or null section gives ``{}``.
        known: the keys the section may hold.

    Raises:
        ConfigError: at the unknown key's file and line, naming the closest known key.
    """
    node = cfg.get(section)
    if node is None:
        return {}
    if not isinstance(node, ConfigNode):
        raise config_error(cfg, f"must be a mapping of {', '.join(sorted(known))}", section)
    for key in node:
        if key not in known:
            raise config_error(node, f"is not a {section} setting", key, did_you_mean(str(key), known))
    return node.to_container()
