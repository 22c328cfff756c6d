"""load_processor: AutoProcessor with a pad token guaranteed and the same path errors as models."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import transformers

from automodel.models import AutoModelForImageTextToText, ModelError, check_processor_matches, load_processor


def test_loads_the_tiny_vlm_processor_keeping_its_own_pad_token(tiny_vlm_dir):
    processor = load_processor(tiny_vlm_dir)
    assert isinstance(processor, transformers.LlavaProcessor)
    assert processor.tokenizer.pad_token == "<|pad|>"


def test_a_processor_whose_tokenizer_has_no_pad_token_pads_with_eos(tiny_vlm_dir, tmp_path):
    copy = shutil.copytree(tiny_vlm_dir, tmp_path / "vlm")
    config_file = copy / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    del config["pad_token"]
    config_file.write_text(json.dumps(config), encoding="utf-8")
    assert transformers.AutoProcessor.from_pretrained(copy).tokenizer.pad_token is None
    processor = load_processor(str(copy))
    assert processor.tokenizer.pad_token == processor.tokenizer.eos_token == "<|endoftext|>"


def test_a_directory_with_only_a_tokenizer_gives_the_tokenizer(tokenizer_dir):
    assert isinstance(load_processor(tokenizer_dir), transformers.PreTrainedTokenizerBase)


def test_missing_local_path_is_named(tmp_path):
    missing = tmp_path / "processor"
    with pytest.raises(ModelError, match=re.escape(f"local path {missing} does not exist; check the path")):
        load_processor(missing)


def test_directory_without_processor_files_says_what_it_lacks(tmp_path):
    with pytest.raises(ModelError, match=re.escape(f"directory {tmp_path} holds none of processor_config.json")):
        load_processor(tmp_path)


def test_uncached_hub_id_offline_mentions_hf_hub_offline():
    with pytest.raises(ModelError, match=r"processor `automodel-tests/no-such-processor`.*HF_HUB_OFFLINE=1"):
        load_processor("automodel-tests/no-such-processor")


def test_a_processor_that_does_not_match_the_model_is_named(tiny_vlm_dir):
    processor = load_processor(tiny_vlm_dir)
    check_processor_matches(AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir), processor)
    moved = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir, image_token_index=7)
    with pytest.raises(ModelError, match=r"image token <image> has id 4 but the model expects .* at id 7"):
        check_processor_matches(moved, processor)
    processor.tokenizer.add_tokens([f"word{i}" for i in range(200)])
    with pytest.raises(ModelError, match=r"tokenizer has \d+ tokens but the model embeds only 512"):
        check_processor_matches(AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir), processor)
