"""Publishing a saved model folder to the Hugging Face Hub with ``huggingface_hub``'s own upload."""

from __future__ import annotations

import os
from pathlib import Path

from automodel.checkpoint.errors import CheckpointError


def model_folder(path: str | os.PathLike[str]) -> Path:
    """Return the folder to publish for ``path``: a step folder's ``model/``, or ``path`` itself when it
    is a model folder (``model/``, ``merged/``, any folder holding a ``config.json`` or an adapter).

    Raises:
        CheckpointError: ``path`` is not a folder, or holds no model files.
    """
    folder = Path(path).expanduser()
    if (folder / "model").is_dir():
        folder = folder / "model"
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder; give a step folder (step_000400) or its model/ folder")
    markers = ("config.json", "adapter_config.json", "model_index.json", "pytorch_lora_weights.safetensors")
    if not any((folder / marker).is_file() for marker in markers):
        raise CheckpointError(
            f"{folder} holds no model (no {', '.join(markers)}); give a step folder or the model/ folder inside it"
        )
    return folder


def push_to_hub(
    path: str | os.PathLike[str],
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = True,
    revision: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Upload a saved model folder to the Hub model repo ``repo_id`` (created if missing) and return the commit URL.

    Args:
        path: a step folder (its ``model/`` is uploaded) or a model folder (``model/``, ``merged/``).
            Only the model's files go up; the resume state beside them never does.
        repo_id: ``user/name`` or ``org/name``.
        token: a Hub token with write access; default the one ``huggingface_hub`` finds
            (``HF_TOKEN``, or the one ``hf auth login`` stored). It is never printed or written.
        private: create the repo private (the default) when it does not exist yet.
        revision: the branch to commit to (default ``main``).
        commit_message: default ``Upload <folder name> with automodel``.
        endpoint: the Hub's address (default ``huggingface_hub``'s, i.e. ``HF_ENDPOINT`` or huggingface.co).

    Raises:
        CheckpointError: no token, or a folder without a model; the Hub's own errors pass through.
    """
    from huggingface_hub import HfApi, get_token

    folder = model_folder(path)
    token = token or get_token()
    if not token:
        raise CheckpointError(
            f"pushing {folder} to {repo_id} needs a Hugging Face token with write access; run `hf auth login` "
            "or set HF_TOKEN, then try again"
        )
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        repo_type="model",
        revision=revision,
        commit_message=commit_message or f"Upload {folder.name} with automodel",
    )
    return str(commit.commit_url)
