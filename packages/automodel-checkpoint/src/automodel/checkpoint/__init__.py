"""automodel.checkpoint: consolidated Hugging Face safetensors and exact, atomic resume checkpoints."""

from automodel.checkpoint.checkpointer import Checkpointer
from automodel.checkpoint.errors import CheckpointError
from automodel.checkpoint.fingerprint import config_fingerprint
from automodel.checkpoint.hf_weights import IncompatibleKeys, load_hf_weights, load_hf_weights_into, save_hf_weights
from automodel.checkpoint.signals import SaveOnSignal

__version__ = "0.2.0"

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "IncompatibleKeys",
    "SaveOnSignal",
    "config_fingerprint",
    "load_hf_weights",
    "load_hf_weights_into",
    "save_hf_weights",
]
