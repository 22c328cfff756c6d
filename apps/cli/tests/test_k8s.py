"""The k8s launcher: the manifest it writes (golden files, real validators), every bad section, kubectl."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cli_helpers import assert_one_paragraph_error
from kubeflow.training.api_client import ApiClient
from kubeflow.training.utils.utils import FakeResponse

from automodel.cli.errors import CliError
from automodel.cli.job import Job, looks_secret, split_launcher
from automodel.cli.k8s import K8S_KEYS, launch_k8s, parse_k8s_section, render_manifest
from automodel.cli.launch import LaunchOptions
from automodel.cli.routes import route_by_name
from automodel.config import config_from_dict

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("AUTOMODEL_UPDATE_GOLDEN") == "1"
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
CONFIG = {
    "output": {"dir": "/checkpoints/run"},
    "model": {"name": "toy", "hidden": 8},
    "optimizer": {"lr": 1e-4},
    "hf_token": "${env:HF_TOKEN}",
}
ONE_NODE = {"name": "toy-one", "image": "nvcr.io/nvidia/pytorch:25.01-py3"}
FOUR_NODES = {
    "name": "toy-four",
    "namespace": "research",
    "image": "registry.example.com/automodel:1.0",
    "nodes": 4,
    "gpus_per_node": 8,
    "cpu": 64,
    "memory": "512Gi",
    "volumes": [{"name": "ckpt", "pvc": "shared-checkpoints"}, {"name": "cache", "host_path": "/raid/hf"}],
    "mounts": [
        {"name": "ckpt", "mount_path": "/checkpoints"},
        {"name": "cache", "mount_path": "/hf", "read_only": True},
    ],
    "env": {"NCCL_DEBUG": "WARN", "TOKENIZERS_PARALLELISM": False, "OMP_NUM_THREADS": 8},
    "secrets": [{"env": "HF_TOKEN", "secret": "hf-token", "key": "token"}],
    "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "service_account": "trainer",
    "image_pull_secrets": ["ngc-pull"],
    "priority_class": "high-priority",
}
JOBSET = {**FOUR_NODES, "name": "toy-jobset", "kind": "JobSet", "nodes": 2}
ELASTIC = {**ONE_NODE, "name": "toy-elastic", "nodes": 2, "elastic": {"min_nodes": 1, "max_nodes": 4}}


def make_job(section: dict, tmp_path: Path | None = None, **options) -> Job:
    """A Job for the toy route with CONFIG, ``section`` as its k8s section and launcher flags ``options``."""
    if tmp_path is not None:
        section = {**section, "job_dir": str(tmp_path / "job")}
    config = config_from_dict(CONFIG, file="cfg.yaml")
    return Job(route_by_name("finetune.toy"), config, Path("cfg.yaml"), LaunchOptions(**options), "k8s", section)


def manifest_of(section: dict, **options) -> str:
    job = make_job(section, **options)
    settings = parse_k8s_section(section, route_name=job.route.name, cli_nproc_per_node=job.options.nproc_per_node)
    return render_manifest(job, settings)


def documents(section: dict) -> list[dict]:
    return list(yaml.safe_load_all(manifest_of(section)))


def error_of(section: dict, **options) -> str:
    with pytest.raises(CliError) as caught:
        manifest_of(section, **options)
    return str(caught.value)


# The manifest, against golden files


@pytest.mark.parametrize(
    ("section", "golden"),
    [(ONE_NODE, "k8s_one_node.yaml"), (FOUR_NODES, "k8s_four_nodes.yaml"), (JOBSET, "k8s_jobset.yaml")],
)
def test_the_manifest_matches_its_golden_file(section, golden):
    path = GOLDEN / golden
    manifest = manifest_of(section)
    if UPDATE_GOLDEN:
        path.write_text(manifest, encoding="utf-8")
    assert manifest == path.read_text(encoding="utf-8"), f"rerun with AUTOMODEL_UPDATE_GOLDEN=1 to accept {path}"


def test_the_config_map_holds_the_config_with_references_kept_and_no_secret_value():
    config_map, job = documents(FOUR_NODES)
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config_map["metadata"]["name"] == "toy-four-config"
    assert config == CONFIG
    container = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    hf_token = next(e for e in container["env"] if e["name"] == "HF_TOKEN")
    assert hf_token == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}


def test_one_node_is_a_master_alone_running_torchrun_standalone():
    job = documents(ONE_NODE)[1]
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    command = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"]
    assert command == [
        "python",
        "-m",
        "automodel.cli.torchrun",
        "--nnodes=1",
        "--nproc-per-node=1",
        "--standalone",
        "-m",
        "automodel.cli.worker",
        "finetune.toy",
        "-c",
        "/etc/automodel/config.yaml",
    ]


def test_four_nodes_are_a_master_and_three_workers_sharing_one_pod_template():
    replicas = documents(FOUR_NODES)[1]["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 3)
    assert replicas["Master"]["template"] == replicas["Worker"]["template"]
    container = replicas["Worker"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch"
    assert "--nnodes=4" in container["command"] and "--nproc-per-node=8" in container["command"]
    assert "--standalone" not in container["command"]
    assert container["ports"][0]["name"] == "pytorchjob-port"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_elastic_is_workers_only_with_an_elastic_policy_and_an_nnodes_range():
    spec = documents(ELASTIC)[1]["spec"]
    assert list(spec["pytorchReplicaSpecs"]) == ["Worker"]
    assert spec["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
    assert spec["elasticPolicy"] == {"rdzvBackend": "c10d", "minReplicas": 1, "maxReplicas": 4, "maxRestarts": 3}
    assert "--nnodes=1:4" in spec["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"]


def test_jobset_rendezvous_is_on_pod_zero_through_the_headless_service():
    jobset = documents(JOBSET)[1]
    assert jobset["spec"]["network"]["enableDNSHostnames"] is True
    replicated = jobset["spec"]["replicatedJobs"][0]
    job_spec = replicated["template"]["spec"]
    assert (job_spec["completionMode"], job_spec["parallelism"], job_spec["completions"]) == ("Indexed", 2, 2)
    env = {e["name"]: e for e in job_spec["template"]["spec"]["containers"][0]["env"]}
    assert env["PET_MASTER_ADDR"]["value"] == "toy-jobset-node-0-0.toy-jobset"
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["PET_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == index


def test_the_cli_nproc_per_node_overrides_the_section_and_gpus_set_the_default():
    assert parse_k8s_section({"image": "x", "gpus_per_node": 4}).nproc_per_node == 4
    assert parse_k8s_section({"image": "x"}).nproc_per_node == 1
    assert parse_k8s_section({"image": "x", "gpus_per_node": 4}, cli_nproc_per_node=2).nproc_per_node == 2
    assert parse_k8s_section({"image": "x", "nproc_per_node": 3}).nproc_per_node == 3


def test_the_default_name_and_job_dir_are_the_route_and_time():
    settings = parse_k8s_section({"image": "x"}, route_name="finetune.toy")
    assert settings.name.startswith("finetune-toy-") and len(settings.name) <= 63
    assert settings.job_dir.parent.name == "automodel_jobs" and settings.job_dir.name.startswith("finetune-toy-")
    long_name = parse_k8s_section({"image": "x", "nodes": 200}, route_name="finetune." + "a" * 80).name
    assert len(f"{long_name}-worker-198") <= 63 and long_name[0].isalpha()


def test_env_names_that_read_like_secrets():
    secret = ["HF_TOKEN", "WANDB_API_KEY", "DB_PASSWORD", "aws_secret_access_key", "apiKey", "MY_SECRET"]
    plain = ["TOKENIZERS_PARALLELISM", "NCCL_DEBUG", "OMP_NUM_THREADS", "HF_HOME"]
    assert [looks_secret(n) for n in secret] == [True] * len(secret)
    assert [looks_secret(n) for n in plain] == [False] * len(plain)


def test_every_section_key_is_a_k8s_settings_field():
    assert set(K8S_KEYS) >= {"namespace", "image", "nodes", "secrets", "elastic", "job_dir", "config_mount"}


# The manifest, against the real schemas


def _deserialized_round_trip(obj: dict) -> dict:
    client = ApiClient()
    model = client.deserialize(FakeResponse(obj), "KubeflowOrgV1PyTorchJob")
    return client.sanitize_for_serialization(model)


@pytest.mark.parametrize("section", [ONE_NODE, FOUR_NODES, ELASTIC], ids=["one", "four", "elastic"])
def test_the_pytorchjob_deserializes_into_the_kubeflow_model_with_no_field_dropped(section):
    job = documents(section)[1]
    assert _deserialized_round_trip(copy.deepcopy(job)) == job


def test_the_round_trip_check_notices_a_dropped_field():
    job = documents(ONE_NODE)[1]
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["bogus"] = 1
    assert _deserialized_round_trip(copy.deepcopy(job)) != job


def _core_objects(section: dict) -> list[dict]:
    """The ConfigMap plus each pod template wrapped as a PodTemplate (PyTorchJob) or a batch/v1 Job (JobSet)."""
    config_map, workload = documents(section)
    if workload["kind"] == "JobSet":
        wrapped = [
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": r["name"]}, "spec": r["template"]["spec"]}
            for r in workload["spec"]["replicatedJobs"]
        ]
    else:
        wrapped = [
            {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": role.lower()}, "template": r["template"]}
            for role, r in workload["spec"]["pytorchReplicaSpecs"].items()
        ]
    return [config_map, *wrapped]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("section", [ONE_NODE, FOUR_NODES, ELASTIC, JOBSET], ids=["one", "four", "elastic", "jobset"])
def test_the_config_map_and_pod_templates_pass_kubernetes_strict_validation(section, version):
    for obj in _core_objects(section):
        kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_rejects_a_misspelled_pod_field():
    template = _core_objects(ONE_NODE)[1]
    template["template"]["spec"]["nodeSelektor"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(template, K8S_VERSIONS[-1], strict=True)


# Bad sections: one paragraph naming the key and what to do


@pytest.mark.parametrize(
    ("section", "fragments"),
    [
        ({**ONE_NODE, "imgae": "x"}, ["k8s.imgae", "did you mean `image`"]),
        ({"name": "a"}, ["k8s.image is required"]),
        ({**ONE_NODE, "nodes": 0}, ["k8s.nodes", "at least 1"]),
        ({**ONE_NODE, "nodes": "two"}, ["k8s.nodes", "'two'"]),
        ({**ONE_NODE, "nodes": True}, ["k8s.nodes"]),
        ({**ONE_NODE, "gpus_per_node": -1}, ["k8s.gpus_per_node", "at least 0"]),
        ({**ONE_NODE, "gpus_per_node": 2, "nproc_per_node": 4}, ["k8s.gpus_per_node", "own GPU"]),
        ({**ONE_NODE, "env": {"HF_TOKEN": "hf_abc"}}, ["k8s.env.HF_TOKEN", "k8s.secrets", "plain text"]),
        ({**ONE_NODE, "env": {"1BAD": "x"}}, ["k8s.env.1BAD", "environment variable name"]),
        ({**ONE_NODE, "env": ["A=1"]}, ["k8s.env", "mapping"]),
        ({**ONE_NODE, "mounts": [{"name": "data", "mount_path": "/data"}]}, ["k8s.mounts[0].name", "`data`"]),
        ({**ONE_NODE, "mounts": [{"name": "x"}]}, ["k8s.mounts[0]", "mount_path"]),
        ({**ONE_NODE, "volumes": [{"name": "d", "pvc": "c", "host_path": "/x"}]}, ["k8s.volumes[0]", "exactly one"]),
        ({**ONE_NODE, "volumes": [{"name": "d", "nfs": "x"}]}, ["k8s.volumes[0].nfs", "known keys"]),
        ({**ONE_NODE, "volumes": [{"name": "dshm", "pvc": "c"}]}, ["k8s.volumes[0].name", "already used"]),
        ({**ONE_NODE, "volumes": [{"name": "d", "host_path": "rel"}]}, ["k8s.volumes[0].host_path", "absolute"]),
        ({**ONE_NODE, "secrets": [{"env": "HF_TOKEN", "secret": "s"}]}, ["k8s.secrets[0]", "key"]),
        ({**ONE_NODE, "name": "My_Run"}, ["k8s.name `My_Run`", "lowercase"]),
        ({**ONE_NODE, "name": "1run"}, ["k8s.name `1run`", "starting with a"]),
        ({**ONE_NODE, "name": "a" * 60}, ["k8s.name", "at most 54 characters"]),
        ({**ONE_NODE, "namespace": "Team A"}, ["k8s.namespace"]),
        ({**ONE_NODE, "kind": "pytorchjob"}, ["k8s.kind", "did you mean `PyTorchJob`"]),
        ({**ONE_NODE, "kind": "JobSet", "elastic": {}}, ["k8s.elastic", "PyTorchJob"]),
        ({**ONE_NODE, "elastic": {"min_nodes": 2}}, ["k8s.elastic", "min_nodes <= k8s.nodes"]),
        ({**ONE_NODE, "elastic": {"min_node": 1}}, ["k8s.elastic.min_node", "did you mean `min_nodes`"]),
        ({**ONE_NODE, "memory": "32 GB"}, ["k8s.memory", "32Gi"]),
        ({**ONE_NODE, "image": "${env:IMAGE}"}, ["k8s.image", "does not resolve"]),
        ({**ONE_NODE, "tolerations": [{"key": "a", "efect": "NoSchedule"}]}, ["k8s.tolerations[0].efect", "effect"]),
        ({**ONE_NODE, "config_mount": "etc"}, ["k8s.config_mount", "absolute"]),
        ({**ONE_NODE, "job_dir": ["a"]}, ["k8s.job_dir", "string"]),
        ({**ONE_NODE, "env": {"A": "1"}, "secrets": [{"env": "A", "secret": "s", "key": "k"}]}, ["A is set in both"]),
    ],
)
def test_a_bad_section_is_one_paragraph_naming_the_key(section, fragments):
    message = error_of(section)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("options", "flag"),
    [({"nnodes": "2"}, "--nnodes"), ({"node_rank": 1}, "--node-rank"), ({"master_addr": "h"}, "--master-addr")],
)
def test_multi_node_cli_flags_with_a_k8s_section_are_refused(tmp_path, options, flag):
    with pytest.raises(CliError, match=rf"{flag}.*k8s\.nodes"):
        launch_k8s(make_job(ONE_NODE, tmp_path, dry_run=True, **options))
    assert not (tmp_path / "job").exists()


def test_both_slurm_and_k8s_sections_are_refused():
    config = config_from_dict({**CONFIG, "slurm": {"partition": "a"}, "k8s": ONE_NODE})
    with pytest.raises(CliError, match="both `slurm:` and `k8s:`"):
        split_launcher(config)


# Launching


def test_dry_run_writes_manifest_and_config_and_prints_them(tmp_path, capsys):
    job = make_job(ONE_NODE, tmp_path, dry_run=True)
    assert launch_k8s(job) == 0
    out = capsys.readouterr().out
    manifest = tmp_path / "job" / "manifest.yaml"
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["config.yaml", "manifest.yaml"]
    assert manifest.read_text() == manifest_of(ONE_NODE)
    assert (tmp_path / "job" / "config.yaml").read_text() == job.config_yaml()
    assert str(manifest) in out and manifest.read_text() in out
    assert [d["kind"] for d in yaml.safe_load_all(out)] == ["ConfigMap", "PyTorchJob"]


def test_without_kubectl_the_error_suggests_dry_run(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(CliError, match=r"kubectl is not on PATH.*--dry-run"):
        launch_k8s(make_job(ONE_NODE, tmp_path))


def _fake_kubectl(tmp_path: Path, monkeypatch, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    kubectl.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_kubectl_apply_is_run_on_the_written_manifest(tmp_path, monkeypatch, capsys):
    log = tmp_path / "argv.txt"
    _fake_kubectl(tmp_path, monkeypatch, f"open({str(log)!r}, 'w').write(' '.join(sys.argv[1:]))\nprint('applied')")
    assert launch_k8s(make_job(ONE_NODE, tmp_path)) == 0
    assert log.read_text() == f"apply -f {tmp_path / 'job' / 'manifest.yaml'}"
    out = capsys.readouterr().out
    assert "applied" in out and "kubectl logs -n default -f pod/toy-one-master-0" in out


def test_a_failing_kubectl_returns_its_status_and_shows_its_stderr(tmp_path, monkeypatch, capsys):
    _fake_kubectl(tmp_path, monkeypatch, "sys.stderr.write('error: no cluster\\n')\nsys.exit(3)")
    assert launch_k8s(make_job(ONE_NODE, tmp_path)) == 3
    assert "error: no cluster" in capsys.readouterr().err


def test_the_launcher_imports_no_torch_and_no_kubernetes_client():
    code = "import sys, automodel.cli.k8s; print(sorted(m for m in ('torch', 'kubernetes') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_automodel_command_dry_runs_a_k8s_section(tmp_path, write_config, automodel):
    cfg = write_config({**CONFIG, "k8s": {**FOUR_NODES, "job_dir": str(tmp_path / "job")}})
    result = automodel("finetune", "toy", "-c", cfg, "--optimizer.lr=0.5", "--dry-run")
    assert result.returncode == 0, result.stderr
    config_map, job = yaml.safe_load_all(result.stdout)
    assert yaml.safe_load(config_map["data"]["config.yaml"])["optimizer"] == {"lr": 0.5}
    assert "k8s" not in yaml.safe_load((tmp_path / "job" / "config.yaml").read_text())
    assert job["metadata"]["name"] == "toy-four"


def test_the_automodel_command_reports_a_bad_k8s_section_as_one_paragraph(write_config, automodel):
    cfg = write_config({**CONFIG, "k8s": {**ONE_NODE, "env": {"WANDB_API_KEY": "abc"}}})
    result = automodel("finetune", "toy", "-c", cfg, "--dry-run")
    assert_one_paragraph_error(result, "k8s.env.WANDB_API_KEY", "k8s.secrets")
