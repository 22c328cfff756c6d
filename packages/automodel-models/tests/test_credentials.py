"""Hub credentials given to the loaders reach the hub call only, never a saved file."""

from __future__ import annotations

from pathlib import Path

import pytest

from automodel.models import AutoModelForCausalLM, ModelError, build_tokenizer, load_tokenizer, tiny_llama_config
from automodel.models.credentials import hub_kwargs

SECRET = "hf_sekrit_0123456789"


def _files_holding(folder: Path, text: str) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(["one two three four five six seven eight nine ten"] * 4, folder, vocab_size=300)
    return folder


@pytest.mark.parametrize("name", ["token", "hf_token", "use_auth_token", "hub_token"])
def test_a_hub_token_never_reaches_the_saved_tokenizer(tokenizer_dir: Path, tmp_path: Path, name: str) -> None:
    tokenizer = load_tokenizer(tokenizer_dir, **{name: SECRET})
    tokenizer.save_pretrained(tmp_path)
    assert _files_holding(tmp_path, SECRET) == []
    assert SECRET not in str(tokenizer.init_kwargs)


def test_a_hub_token_never_reaches_the_saved_model(tmp_path: Path) -> None:
    source = tmp_path / "source"
    AutoModelForCausalLM.from_config(tiny_llama_config(), seed=0).save_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, hf_token=SECRET)
    model.save_pretrained(tmp_path / "saved")
    assert _files_holding(tmp_path / "saved", SECRET) == []


@pytest.mark.parametrize("name", ["api_key", "password", "aws_secret_key", "wandb_api_key", "client_secret"])
def test_other_credentials_are_refused_naming_the_key(tokenizer_dir: Path, name: str) -> None:
    with pytest.raises(ModelError, match=f"`{name}`, which looks like a credential") as info:
        load_tokenizer(tokenizer_dir, **{name: SECRET})
    assert SECRET not in str(info.value)


def test_a_credential_as_a_model_config_field_is_refused() -> None:
    with pytest.raises(ModelError, match="`hf_token`"):
        AutoModelForCausalLM.from_config(tiny_llama_config(), hf_token=SECRET)


def test_plain_token_settings_are_not_credentials() -> None:
    kwargs = {"pad_token": "<pad>", "num_key_value_heads": 2, "use_fast": True, "revision": "main"}
    assert hub_kwargs(kwargs, "tokenizer") == kwargs


def test_two_spellings_of_the_token_are_refused_and_an_empty_one_is_dropped() -> None:
    with pytest.raises(ModelError, match="token twice"):
        hub_kwargs({"token": "a", "hf_token": "b"}, "model")
    assert hub_kwargs({"hf_token": ""}, "model") == {}
    assert hub_kwargs({"use_auth_token": True}, "model") == {}
