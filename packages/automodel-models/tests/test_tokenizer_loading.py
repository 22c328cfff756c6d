"""load_tokenizer: AutoTokenizer with a pad token guaranteed and the same path errors as models."""

from __future__ import annotations

import re

import pytest
import transformers

from automodel.models import ModelError, load_tokenizer


def test_loads_a_saved_tokenizer_keeping_its_own_pad_token(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    assert tokenizer.pad_token == "<|pad|>"
    assert tokenizer.chat_template is not None


def test_a_tokenizer_without_pad_token_pads_with_eos(tokenizer_dir, tmp_path):
    no_pad = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_dir / "tokenizer.json"), eos_token="<|endoftext|>"
    )
    no_pad.save_pretrained(tmp_path)
    assert transformers.AutoTokenizer.from_pretrained(tmp_path).pad_token is None
    tokenizer = load_tokenizer(str(tmp_path))
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer(["a", "abc def"], padding=True).input_ids[0][-1] == tokenizer.eos_token_id


def test_missing_local_path_is_named(tmp_path):
    missing = tmp_path / "tokenizer"
    with pytest.raises(ModelError, match=re.escape(f"local path {missing} does not exist; check the path")):
        load_tokenizer(missing)


def test_directory_without_tokenizer_files_says_what_it_lacks(tmp_path):
    with pytest.raises(ModelError, match=re.escape(f"directory {tmp_path} holds none of tokenizer.json")):
        load_tokenizer(tmp_path)


def test_uncached_hub_id_offline_mentions_hf_hub_offline():
    with pytest.raises(ModelError, match=r"tokenizer `automodel-tests/no-such-tokenizer`.*HF_HUB_OFFLINE=1"):
        load_tokenizer("automodel-tests/no-such-tokenizer")
