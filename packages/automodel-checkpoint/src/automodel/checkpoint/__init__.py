"""automodel.checkpoint: consolidated Hugging Face safetensors and exact, atomic resume checkpoints."""

from automodel.checkpoint.checkpointer import Checkpointer
from automodel.checkpoint.errors import CheckpointError
from automodel.checkpoint.fingerprint import config_fingerprint
from automodel.checkpoint.hf_weights import IncompatibleKeys, load_hf_weights, load_hf_weights_into, save_hf_weights
from automodel.checkpoint.hub import model_folder, push_to_hub
from automodel.checkpoint.run_lock import RunDirLock, lock_run_dir
from automodel.checkpoint.run_settings import (
    CHECKPOINT_KEYS,
    CheckpointSettings,
    build_checkpointer,
    restore_step,
    write_model_metadata,
)
from automodel.checkpoint.signals import SaveOnSignal

__version__ = "0.5.0"

__all__ = [
    "CHECKPOINT_KEYS",
    "CheckpointError",
    "CheckpointSettings",
    "Checkpointer",
    "IncompatibleKeys",
    "RunDirLock",
    "SaveOnSignal",
    "build_checkpointer",
    "config_fingerprint",
    "load_hf_weights",
    "load_hf_weights_into",
    "lock_run_dir",
    "model_folder",
    "push_to_hub",
    "restore_step",
    "save_hf_weights",
    "write_model_metadata",
]
