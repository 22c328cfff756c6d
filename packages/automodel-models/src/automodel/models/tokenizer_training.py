"""build_tokenizer: train a small byte-level BPE tokenizer offline and save it as a Hugging Face tokenizer.

The command line for it is ``python -m automodel.models.tokenizer_builder``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from automodel.models.chat_template import CHATML_TEMPLATE
from automodel.models.errors import ModelError

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN, *CHAT_TOKENS)
_BYTES = 256


def build_tokenizer(
    texts: Iterable[str],
    save_dir: str | os.PathLike,
    *,
    vocab_size: int = 512,
    model_max_length: int = 2048,
    chat_template: str = CHATML_TEMPLATE,
    extra_special_tokens: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and save it where ``AutoTokenizer`` loads it.

    Digits are split one per token before byte-level pre-tokenization. The special tokens come
    first, with ids 0-3: ``<|endoftext|>`` (bos and eos), ``<|pad|>`` (pad), ``<|im_start|>`` and
    ``<|im_end|>``, then ``extra_special_tokens`` from id 4 on. Any text encodes, and decodes back
    exactly, whatever it was trained on.

    Args:
        texts: the documents to learn merges from (an iterable of strings, read once).
        save_dir: the directory to write (created if needed); it then holds the files
            ``save_pretrained`` writes, including the chat template.
        vocab_size: the largest vocabulary, at least 256 bytes plus the special tokens (260 without extras);
            fewer tokens result when the texts offer fewer merges.
        model_max_length: the longest input the tokenizer will report as fitting.
        chat_template: the Jinja chat template (default: ChatML with tool calls, ``CHATML_TEMPLATE``).
        extra_special_tokens: more special tokens, never split, with ids 4, 5, ... in order
            (``["<image>"]`` for a vision-language model).

    Returns:
        The tokenizer, equal to what ``transformers.AutoTokenizer.from_pretrained(save_dir)`` loads.

    Raises:
        ModelError: when ``texts`` or ``extra_special_tokens`` is a single string, an extra special
            token repeats a special token, or the sizes are too small.
    """
    if isinstance(texts, str):
        raise ModelError("texts must be an iterable of documents, not one string; wrap it in a list: [text].")
    extra = _checked_extra_special_tokens(extra_special_tokens)
    special = [*SPECIAL_TOKENS, *extra]
    smallest = _BYTES + len(special)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < smallest:
        raise ModelError(
            f"vocab_size must be an integer of at least {smallest} (256 bytes + {len(special)} special tokens), "
            f"got {vocab_size!r}."
        )
    if isinstance(model_max_length, bool) or not isinstance(model_max_length, int) or model_max_length <= 0:
        raise ModelError(f"model_max_length must be a positive integer, got {model_max_length!r}.")
    backend = _byte_level_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[*CHAT_TOKENS, *extra],
        model_max_length=model_max_length,
        chat_template=chat_template,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(str(save_dir))
    return tokenizer


def _checked_extra_special_tokens(tokens: Sequence[str]) -> list[str]:
    """Return ``tokens`` as a list after checking each is a new, non-empty string; raise ModelError otherwise."""
    if isinstance(tokens, str):
        raise ModelError(f"extra_special_tokens must be a list of tokens, not one string; write [{tokens!r}].")
    checked: list[str] = []
    for token in tokens:
        if not isinstance(token, str) or not token or token in (*SPECIAL_TOKENS, *checked):
            raise ModelError(
                f"extra special token {token!r} is empty, not a string, or already a special token; "
                f"give new strings other than {', '.join(SPECIAL_TOKENS)}."
            )
        checked.append(token)
    return checked


def _byte_level_bpe() -> Tokenizer:
    """Return an untrained BPE tokenizer: digits split one by one, then GPT-2 style byte-level pieces."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return backend
