"""generate.llm: a quick look at a trained run, greedy answers from a saved step for a few prompts.

``automodel generate llm -c cfg.yaml --prompt "Write 125 in words."`` reads the run's training
config (its ``checkpoint.dir``, its dataset's prompt format), loads ``<step>/model`` with
``transformers`` (or ``peft`` for an adapter) exactly as a user would, and prints each prompt
with its answer. It trains nothing and writes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from automodel.checkpoint import CHECKPOINT_KEYS, Checkpointer, CheckpointSettings
from automodel.config import ConfigNode, check_config, config_error, load_config_from_argv, plain_section
from automodel.data.llm import format_prompt
from automodel.recipes.llm.schema import GENERATE, GENERATE_REQUIRED
from automodel.training import main_reporting_user_errors

SCHEMA, REQUIRED = GENERATE, GENERATE_REQUIRED
INSTRUCTION_DATASETS = ("ColumnMappedTextInstructionDataset", "make_squad_dataset")
PROMPT_FORMATS = ("auto", "raw", "instruction", "chat")


def step_model_dir(cfg: ConfigNode) -> Path:
    """The ``model/`` folder of the step ``step`` names (``latest``, a step number or a step folder) in
    ``checkpoint.dir``; a missing step is a config error naming ``step`` or ``checkpoint``."""
    settings = CheckpointSettings.from_options(plain_section(cfg, "checkpoint", CHECKPOINT_KEYS))
    step = cfg.get("step", "latest")
    if step == "latest":
        folder = Checkpointer(settings.dir).latest()
        if folder is None:
            raise config_error(
                cfg,
                f"{settings.dir} holds no saved step yet",
                "checkpoint",
                "train first (automodel finetune llm -c <this config>), or set checkpoint.dir to the run's folder",
            )
    elif isinstance(step, int):
        folder = settings.dir / f"step_{step:06d}"
    else:
        folder = Path(str(step)).expanduser()
    if not (folder / "model").is_dir():
        raise config_error(
            cfg, f"{folder} has no model/ folder", "step", "give latest, a saved step number or a step folder"
        )
    return folder / "model"


def load_step_model(model_dir: Path) -> tuple[torch.nn.Module, Any]:
    """Load ``model_dir`` as a user would: an adapter folder through ``peft.AutoPeftModelForCausalLM``,
    a full model through ``transformers.AutoModelForCausalLM``; return ``(model in eval mode, tokenizer)``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (model_dir / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    return model.eval(), AutoTokenizer.from_pretrained(model_dir)


def prompt_format(cfg: ConfigNode) -> str:
    """The prompt format to use: ``prompt_format`` unless ``auto``, else the training dataset's
    (``chat`` with ``use_chat_template``, ``instruction`` for the question-answer datasets, else ``raw``)."""
    chosen = cfg.get("prompt_format", "auto")
    if chosen != "auto":
        return chosen
    dataset = cfg.get("dataset")
    if not isinstance(dataset, ConfigNode):
        return "raw"
    if dataset.get("use_chat_template"):
        return "chat"
    return "instruction" if str(dataset.get("_target_", "")).endswith(INSTRUCTION_DATASETS) else "raw"


def encode_prompt(tokenizer: Any, prompt: str, style: str) -> list[int]:
    """Token ids of ``prompt`` as the model was trained to see one: raw text, the instruction datasets'
    ``Question: ...\\nAnswer:`` or a user turn through the chat template with the generation prompt."""
    if style == "chat":
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
        )
        return list(rendered["input_ids"] if isinstance(rendered, dict) else rendered)
    text = format_prompt("", prompt) if style == "instruction" else prompt
    return tokenizer(text)["input_ids"]


@torch.no_grad()
def generate_answers(
    model: torch.nn.Module, tokenizer: Any, prompts: list[str], style: str, max_new_tokens: int
) -> list[str]:
    """Greedy answers of ``model`` to ``prompts`` (one at a time, so no padding changes them), decoded
    without special tokens and stripped."""
    answers = []
    for prompt in prompts:
        ids = torch.tensor([encode_prompt(tokenizer, prompt, style)])
        output = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
        answers.append(tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip())
    return answers


def generate(cfg: ConfigNode) -> list[tuple[str, str]]:
    """Check ``cfg`` (a training config plus ``prompt``), load its step and return ``[(prompt, answer)]``."""
    check_config(cfg, SCHEMA, REQUIRED, "generate", "examples/llm_finetune")
    prompts = cfg.prompt if isinstance(cfg.prompt, str) else list(cfg.prompt)
    prompts = [prompts] if isinstance(prompts, str) else prompts
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise config_error(cfg, "needs a prompt", "prompt", 'pass --prompt "your text" (or a list of prompts)')
    model, tokenizer = load_step_model(step_model_dir(cfg))
    answers = generate_answers(model, tokenizer, prompts, prompt_format(cfg), int(cfg.get("max_new_tokens", 32)))
    return list(zip(prompts, answers, strict=True))


def main(cfg: ConfigNode | None = None) -> int:
    """Print each prompt and the saved model's answer for ``cfg`` (default: ``-c`` and overrides in sys.argv)."""
    cfg = load_config_from_argv() if cfg is None else cfg
    for prompt, answer in generate(cfg):
        print(f"{prompt}\n  -> {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main_reporting_user_errors(main))

__all__ = ["generate", "generate_answers", "load_step_model", "main", "prompt_format", "step_model_dir"]
