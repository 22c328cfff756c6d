"""The non-weight state: reversible JSON, RNG files, DCP metadata read without arbitrary pickle, SaveOnSignal."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import threading

import numpy
import pytest
import torch
from checkpoint_test_helpers import TinyNet, reseal

from automodel.checkpoint import Checkpointer, CheckpointError, SaveOnSignal
from automodel.checkpoint.json_state import decode_state, encode_state
from automodel.checkpoint.rng import capture_rng_state, restore_rng_state


def test_json_state_round_trips_what_plain_json_cannot_hold() -> None:
    state = {
        "tuple": (1, 2.5, "x"),
        "int_keys": {0: "a", (1, 2): [None, True]},
        "looks_tagged": {"__tuple__": [1]},
        "bytes": b"\x00\xff",
        "tensor": torch.tensor([[1.5, -2.0]], dtype=torch.bfloat16),
        "scalar": torch.tensor(7),
        "empty": torch.empty(0, 3),
        "nested": [{"lr": 0.1, "betas": (0.9, 0.95)}],
    }
    text = json.dumps(encode_state(state, "state"))
    restored = decode_state(json.loads(text))
    for key in ("tensor", "scalar", "empty"):
        assert restored[key].dtype == state[key].dtype and torch.equal(restored.pop(key), state.pop(key))
    assert restored == state


def test_rng_state_round_trips_python_numpy_and_torch_through_json() -> None:
    numpy.random.seed(3)
    saved = json.loads(json.dumps(capture_rng_state()))
    expected = (random.random(), numpy.random.rand(), torch.rand(2))
    random.seed(0)
    numpy.random.seed(0)
    torch.manual_seed(0)
    restore_rng_state(saved)
    actual = (random.random(), numpy.random.rand(), torch.rand(2))
    assert actual[:2] == expected[:2] and torch.equal(actual[2], expected[2])
    assert set(saved) >= {"python", "numpy", "torch"}


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_dcp_metadata_file_that_would_run_code_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    checkpointer = Checkpointer(tmp_path / "run")
    step_dir = checkpointer.save(1, model=TinyNet(), optimizer=None)
    (step_dir / "optim" / ".metadata").write_bytes(pickle.dumps(_RunsCode()))
    reseal(step_dir)  # a foreign checkpoint whose manifest agrees with its files
    with pytest.raises(CheckpointError, match=r"\.system is not part of a DCP metadata file"):
        checkpointer.load(step_dir, model=TinyNet())
    assert not (tmp_path / "pwned").exists()


def test_save_on_signal_records_the_signal_and_restores_the_previous_handler() -> None:
    previous = signal.getsignal(signal.SIGUSR1)
    with SaveOnSignal() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.requested and stop.signal == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) is previous
    with pytest.raises(CheckpointError, match="'SIGNOPE'"):
        SaveOnSignal(["SIGNOPE"])
    terminate = signal.getsignal(signal.SIGTERM)
    errors: list[Exception] = []

    def enter_outside_the_main_thread() -> None:
        try:
            SaveOnSignal().__enter__()
        except CheckpointError as error:
            errors.append(error)

    worker = threading.Thread(target=enter_outside_the_main_thread)
    worker.start()
    worker.join()
    assert "enter it in the main thread" in str(errors[0])
    assert signal.getsignal(signal.SIGTERM) is terminate


def test_sigint_is_caught_by_default_and_a_second_one_interrupts() -> None:
    previous = signal.getsignal(signal.SIGINT)
    assert signal.SIGINT in SaveOnSignal().signals
    with pytest.raises(KeyboardInterrupt), SaveOnSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: save at the next step boundary
        assert stop.requested and stop.signal == "SIGINT"
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again while waiting: stop now
        pytest.fail("the second SIGINT did not interrupt")
    assert signal.getsignal(signal.SIGINT) is previous
