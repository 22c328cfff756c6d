"""push_to_hub: huggingface_hub's real upload against a local server speaking the Hub's commit API
(create repo, preupload, commit): exactly the model folder's files arrive, byte for byte; without
a token nothing is sent."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from automodel.checkpoint import CheckpointError, push_to_hub


class LocalHub(BaseHTTPRequestHandler):
    """The three Hub endpoints an upload of small files uses; every request is recorded on the server."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        if self.path == "/api/repos/create":
            request = json.loads(body)
            return self._json({"url": f"{self.server.endpoint}/{request['organization']}/{request['name']}"})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self._json(
                {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        if "/commit/" in self.path:
            for line in body.decode().splitlines():
                record = json.loads(line)
                if record["key"] == "file":
                    self.server.files[record["value"]["path"]] = base64.b64decode(record["value"]["content"])
                elif record["key"] == "header":
                    self.server.message = record["value"]["summary"]
            return self._json({"commitUrl": f"{self.server.endpoint}/user/tiny/commit/abc123", "commitOid": "abc123"})
        self.send_error(404)

    def _json(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        """Quiet."""


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the server is on this machine
    server = ThreadingHTTPServer(("127.0.0.1", 0), LocalHub)
    server.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    server.requests, server.files, server.message = [], {}, None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture
def step(tmp_path) -> Path:
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    )
    model.save_pretrained(tmp_path / "step_000010" / "model")
    (tmp_path / "step_000010" / "optim").mkdir()
    (tmp_path / "step_000010" / "optim" / "state.bin").write_bytes(b"resume state")
    (tmp_path / "step_000010" / "train_state.json").write_text("{}")
    return tmp_path / "step_000010"


def test_the_model_folder_of_a_step_arrives_byte_for_byte(hub, step):
    url = push_to_hub(step, "user/tiny", token="hf_test_token", endpoint=hub.endpoint)
    assert url == f"{hub.endpoint}/user/tiny/commit/abc123"
    model_files = {p.name: p.read_bytes() for p in (step / "model").iterdir()}
    assert hub.files == model_files and "model.safetensors" in hub.files
    assert [path.split("/")[-2:] for path, _ in hub.requests[1:]] == [["preupload", "main"], ["commit", "main"]]
    assert {auth for _, auth in hub.requests} == {"Bearer hf_test_token"}
    assert hub.message == "Upload model with automodel"


def test_without_a_token_nothing_is_sent(hub, step, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(CheckpointError, match=r"needs a Hugging Face token.*hf auth login"):
        push_to_hub(step, "user/tiny", endpoint=hub.endpoint)
    assert hub.requests == []


def test_a_folder_without_a_model_is_refused_before_any_request(hub, tmp_path):
    with pytest.raises(CheckpointError, match="holds no model"):
        push_to_hub(tmp_path, "user/tiny", token="hf_test_token", endpoint=hub.endpoint)
    assert hub.requests == []
