"""Every package published with tools/release.py to a real local index (pypiserver), then installed from
that index into fresh venvs the way a user of another project installs one component.

Each venv has only the local index plus uv's default (public) index for third-party packages, whose
versions are held to uv.lock's (constraints, so the outcome does not hang on the day's torch
release). What each install pulls in is checked against the dependencies listed here: a new
requirement, or a dependency reaching into a component it should not (torch under
automodel-config), fails the test until this list and the package's README say so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import workspace
from package_index import local_index, release_env
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "published-install-not-printed-7731"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

# What each automodel distribution requires (without extras), by name. The installs below must
# pull exactly these, transitively, and nothing else.
REQUIRES = {
    "automodel-config": {"pyyaml"},
    "automodel-examples": set(),
    "automodel-peft": {"torch", "safetensors"},
    "automodel-checkpoint": {"torch", "safetensors", "xxhash", "huggingface-hub"},
    "automodel-data": {"datasets", "numpy", "pillow", "safetensors", "torch", "torchdata"},
    "automodel-distributed": {"torch"},
    "automodel-models": {"diffusers", "pillow", "tokenizers", "torch", "transformers"},
    "automodel-training": {"matplotlib", "torch", "tqdm"},
    "automodel-cli": {"automodel-config", "automodel-examples", "rich", "typer"},
    "automodel-recipes-llm": {
        "automodel-checkpoint",
        "automodel-config",
        "automodel-data",
        "automodel-distributed",
        "automodel-models",
        "automodel-peft",
        "automodel-training",
        "torch",
    },
}

# Run inside a venv: every installed distribution with its requirements as written.
INSTALLED = """
import importlib.metadata as metadata, json
print(json.dumps({d.metadata["Name"]: d.requires or [] for d in metadata.distributions()}))
"""


PEFT_README = """
import json, sys, torch, transformers
from automodel.peft import LoRAConfig, apply_lora, save_adapter, trainable_parameter_count
base, adapter = sys.argv[1], sys.argv[2]
config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=4)
torch.manual_seed(0)
model = transformers.AutoModelForCausalLM.from_config(config)
model.save_pretrained(base)
apply_lora(model, LoRAConfig(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
trainable = trainable_parameter_count(model)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
ids = torch.randint(0, 64, (4, 16))
losses = []
for _ in range(20):
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(loss.item())
save_adapter(model, adapter, base_model_name_or_path=base)
with torch.no_grad():
    logits = model(input_ids=ids[:1]).logits[0].tolist()
print(json.dumps({"losses": losses, "trainable": trainable, "ids": ids[:1].tolist(), "logits": logits}))
"""

CHECKPOINT_README = """
import json, sys, torch
from safetensors.torch import load_file
from automodel.checkpoint import Checkpointer
def build(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)
def train(model, optimizer, steps):
    torch.manual_seed(99)
    for _ in range(steps):
        x = torch.randn(16, 8)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
model, optimizer = build(0)
train(model, optimizer, 5)
checkpointer = Checkpointer(sys.argv[1])
step_dir = checkpointer.save(5, model=model, optimizer=optimizer)
checkpointer.close()
fresh, fresh_optimizer = build(1)
checkpointer = Checkpointer(sys.argv[1])
step = checkpointer.load(checkpointer.resolve("latest"), model=fresh, optimizer=fresh_optimizer)["step"]
weights = load_file(str(step_dir / "model" / "model.safetensors"))
same = all(torch.equal(t, weights[n]) and torch.equal(t, fresh.state_dict()[n]) for n, t in model.state_dict().items())
train(model, optimizer, 3)
train(fresh, fresh_optimizer, 3)
resumed = all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
print(json.dumps({"step": step, "same_weights": same, "resumed_equal": resumed, "step_dir": str(step_dir)}))
"""


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Every workspace package released from a clean clone to a local pypiserver: yields (index URL, work dir,
    the uv.lock constraints file for third-party versions)."""
    work = tmp_path_factory.mktemp("published")
    clone = work / "repo"
    _run(["git", "clone", "-q", "--no-tags", str(ROOT), str(clone)], env=release_env())
    constraints = work / "constraints.txt"
    export = ["uv", "export", "--frozen", "--no-hashes", "--no-emit-workspace", "--all-packages"]
    _run([*export, "--no-default-groups", "--no-header", "--no-annotate", "-o", str(constraints)], cwd=ROOT)
    with local_index(work / "served") as url:
        for member in workspace.discover(clone):
            release = [sys.executable, str(clone / "tools" / "release.py"), member.name, "--index-url", url]
            credentials = release_env(UV_PUBLISH_USERNAME="release", UV_PUBLISH_PASSWORD=PASSWORD)
            done = _run(release, cwd=clone, env=credentials)
            assert PASSWORD not in done.stdout + done.stderr
            assert f"tagged {member.name}-v" in done.stdout
        yield url, work, constraints


def _install(published, name: str, *requirements: str) -> tuple[Path, dict[str, list[str]]]:
    """A fresh venv with ``requirements`` installed from the local index (then the public one); returns its
    python and what is installed in it, each distribution with its requirements as written."""
    url, work, constraints = published
    venv = work / f"venv-{name}"
    _run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)])
    python = venv / "bin" / "python"
    index = ["--index", f"{url}simple/", "--constraint", str(constraints)]
    _run(["uv", "pip", "install", "--quiet", "--python", str(python), *index, *requirements])
    requires = json.loads(_run([str(python), "-c", INSTALLED]).stdout)
    return python, {canonicalize_name(name): requirements for name, requirements in requires.items()}


def _applies(requirement: Requirement, extras: frozenset[str] = frozenset()) -> bool:
    """Whether ``requirement`` holds here for a dependant asking for ``extras`` (the venv runs this Python, so
    markers evaluate as they do in it)."""
    return requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in {"", *extras})


def _direct(requires: dict[str, list[str]], name: str) -> set[str]:
    """The names that installed distribution ``name`` requires when asked for without extras."""
    return {canonicalize_name(r.name) for r in map(Requirement, requires[name]) if _applies(r)}


def _pulled_in(requires: dict[str, list[str]], requested: set[str]) -> set[str]:
    """The installed distributions reachable from ``requested`` through their requirements, extras followed
    (torch asks for ``cuda-toolkit[cufft,...]``)."""
    reached, seen, frontier = set(), set(), [(name, frozenset()) for name in requested]
    while frontier:
        name, extras = frontier.pop()
        if (name, extras) in seen or name not in requires:
            continue
        seen.add((name, extras))
        reached.add(name)
        for requirement in map(Requirement, requires[name]):
            if _applies(requirement, extras):
                frontier.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return reached


def _check_pulled_only_declared(installed: dict[str, list[str]], requested: set[str], automodel: set[str]) -> None:
    """The automodel distributions installed are ``automodel``, each requires what REQUIRES lists, and nothing
    is installed that the requested names do not require."""
    assert {n for n in installed if n.startswith("automodel-")} == automodel
    for name in automodel:
        assert _direct(installed, name) == REQUIRES[name], f"{name} requires {sorted(_direct(installed, name))}"
    extra = set(installed) - _pulled_in(installed, requested)
    assert not extra, f"installed without being required: {sorted(extra)}"


def test_automodel_config_installs_with_pyyaml_alone(published, tmp_path):
    python, installed = _install(published, "config", "automodel-config")
    _check_pulled_only_declared(installed, {"automodel-config"}, {"automodel-config"})
    assert "torch" not in installed
    (tmp_path / "run.yaml").write_text("lr: 0.1\nsteps: 3\n")
    script = "import sys, automodel.config as c; print(c.load_config(sys.argv[1], ['--steps=4']).steps)"
    assert _run([str(python), "-c", script, str(tmp_path / "run.yaml")]).stdout.strip() == "4"


def test_automodel_cli_alone_brings_the_command_and_the_examples_without_torch(published):
    python, installed = _install(published, "cli-alone", "automodel-cli")
    automodel = {"automodel-cli", "automodel-config", "automodel-examples"}
    _check_pulled_only_declared(installed, {"automodel-cli"}, automodel)
    assert "torch" not in installed
    command = str(python.parent / "automodel")
    assert "llm_finetune/tiny_sft" in _run([command, "example", "list"]).stdout
    assert "automodel-cli" in _run([command, "--version"]).stdout


def test_automodel_peft_adapts_a_plain_transformers_model_that_peft_then_loads(published, tmp_path):
    python, installed = _install(published, "peft", "automodel-peft", "transformers")
    _check_pulled_only_declared(installed, {"automodel-peft", "transformers"}, {"automodel-peft"})
    base, adapter = tmp_path / "base", tmp_path / "adapter"
    script = [str(python), "-c", PEFT_README, str(base), str(adapter)]
    result = json.loads(_run(script, env=release_env(**OFFLINE)).stdout)
    assert result["losses"][-1] < 0.96 * result["losses"][0]  # LoRA on a frozen random base learns slowly
    assert result["trainable"] > 0

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()
    with torch.no_grad():
        logits = loaded(input_ids=torch.tensor(result["ids"])).logits[0]
    torch.testing.assert_close(logits, torch.tensor(result["logits"]), rtol=1e-5, atol=1e-5)


def test_automodel_checkpoint_saves_and_reloads_a_model_exactly(published, tmp_path):
    python, installed = _install(published, "checkpoint", "automodel-checkpoint")
    _check_pulled_only_declared(installed, {"automodel-checkpoint"}, {"automodel-checkpoint"})
    assert "transformers" not in installed
    result = json.loads(_run([str(python), "-c", CHECKPOINT_README, str(tmp_path / "run")]).stdout)
    assert result == {
        "step": 5,
        "same_weights": True,
        "resumed_equal": True,
        "step_dir": str(tmp_path / "run" / "step_000005"),
    }


def test_automodel_cli_and_recipes_llm_run_the_tiny_default_from_the_shipped_example(published, tmp_path):
    python, installed = _install(published, "cli", "automodel-cli", "automodel-recipes-llm")
    _check_pulled_only_declared(installed, {"automodel-cli", "automodel-recipes-llm"}, set(REQUIRES))
    command = str(python.parent / "automodel")
    _run([command, "example", "copy", "tiny_sft", str(tmp_path)])
    config = "examples/llm_finetune/tiny_sft.yaml"
    run = [command, "finetune", "llm", "-c", config, "--checkpoint.dir", str(tmp_path / "run")]
    done = _run(run, cwd=tmp_path, env=release_env(**OFFLINE))
    assert "Traceback" not in done.stderr
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "training.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.5 * losses[0]

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "step_000400" / "model")
    assert model.num_parameters() > 0
