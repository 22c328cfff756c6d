"""The Kubernetes launcher: a ``k8s:`` section becomes a ConfigMap and a Kubeflow PyTorchJob (or a JobSet).

The manifest holds two documents: a ConfigMap ``<name>-config`` with the job's
``config.yaml`` (overrides applied, ``${...}`` kept for the pods to resolve), mounted read-only
at ``k8s.config_mount``; and the workload, whose pods all run the same command::

    python -m automodel.cli.torchrun --nnodes=N --nproc-per-node=P [--standalone] \\
        -m automodel.cli.worker COMMAND.DOMAIN -c <config_mount>/config.yaml

Rendezvous: torchrun reads any flag it is not given from a ``PET_<FLAG>`` environment
variable, and both workloads set those variables, so the command names no host.

- PyTorchJob (``kubeflow.org/v1``, training-operator >= 1.7): the operator gives every container
  named ``pytorch`` ``PET_MASTER_ADDR`` (the ``<name>-master-0`` service), ``PET_MASTER_PORT``
  (the container port named ``pytorchjob-port``, declared here), ``PET_NODE_RANK`` (0 for the
  Master, i+1 for Worker i), ``PET_NNODES`` and ``PET_NPROC_PER_NODE`` (from ``nprocPerNode``).
  torchrun's default static rendezvous then joins every node to the Master's store. With
  ``k8s.elastic`` the job is Worker replicas only (the operator's elastic layout) and the
  operator sets ``PET_RDZV_BACKEND=c10d``, ``PET_RDZV_ENDPOINT=<name>-worker-0:<port>`` and
  ``PET_MAX_RESTARTS``; ``--nnodes=MIN:MAX`` makes torchrun elastic.
- JobSet (``jobset.x-k8s.io/v1alpha2``): one replicated job of ``nodes`` pods with indexed
  completion. JobSet's headless service gives pod ``i`` the stable name
  ``<name>-node-0-<i>.<name>``; the pods get ``PET_MASTER_ADDR`` = pod 0's name,
  ``PET_MASTER_PORT`` and ``PET_NODE_RANK`` = the Job completion index (the same variables
  Kubeflow Trainer v2 sets), so the same static rendezvous applies. A failed pod fails its
  Job and JobSet restarts all of them (``failurePolicy.maxRestarts``).

One node runs ``--standalone`` (a rendezvous on localhost), as the local launcher does.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from automodel.cli.errors import CliError
from automodel.cli.job import CONFIG_FILE, Job, secret_paths
from automodel.cli.k8s_section import (
    CONFIG_VOLUME,
    JOBSET_REPLICATED_JOB,
    K8S_KEYS,
    RESTARTS,
    SHM_VOLUME,
    K8sSettings,
    Volume,
    parse_k8s_section,
)
from automodel.cli.launch import LaunchOptions

__all__ = ["K8S_KEYS", "K8sSettings", "launch_k8s", "parse_k8s_section", "render_manifest"]

MANIFEST_FILE = "manifest.yaml"
CONTAINER = "pytorch"  # the training operator sets its variables only in a container of this name
PYTORCHJOB_PORT = ("pytorchjob-port", 23456)  # the operator's default port name and number
JOBSET_PORT = 29500
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
_MULTI_NODE_FLAGS = ("nnodes", "node_rank", "master_addr", "master_port", "rdzv_endpoint")


def pod_command(job: Job, settings: K8sSettings) -> list[str]:
    """Return the command every pod runs: torchrun (through automodel.cli.torchrun) over the recipe worker."""
    elastic = settings.elastic
    nnodes = f"{elastic.min_nodes}:{elastic.max_nodes}" if elastic else str(settings.nodes)
    args = [
        "python",
        "-m",
        "automodel.cli.torchrun",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={settings.nproc_per_node}",
    ]
    if settings.nodes == 1 and elastic is None:
        args.append("--standalone")
    return [*args, *job.remote_worker_args(posixpath.join(settings.config_mount, CONFIG_FILE))]


def _metadata(name: str, job: Job, settings: K8sSettings) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "automodel", "automodel/route": job.route.name}
    return {"name": name, "namespace": settings.namespace, "labels": labels}


def _resources(settings: K8sSettings) -> dict[str, Any]:
    amounts = {key: value for key, value in (("cpu", settings.cpu), ("memory", settings.memory)) if value}
    limits = {**amounts, **({"nvidia.com/gpu": str(settings.gpus_per_node)} if settings.gpus_per_node else {})}
    return {key: value for key, value in (("requests", amounts), ("limits", limits)) if value}


def _env_vars(settings: K8sSettings, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    literal = [{"name": name, "value": value} for name, value in settings.env]
    secret = [
        {"name": s.env, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": s.key}}} for s in settings.secrets
    ]
    return [*literal, *secret, *extra]


def _container(job: Job, settings: K8sSettings, port: dict[str, Any], extra_env: list[dict]) -> dict[str, Any]:
    mounts = [
        {"name": CONFIG_VOLUME, "mountPath": settings.config_mount, "readOnly": True},
        {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
        *({"name": m.name, "mountPath": m.mount_path, "readOnly": m.read_only} for m in settings.mounts),
    ]
    env = _env_vars(settings, extra_env)
    resources = _resources(settings)
    return {
        "name": CONTAINER,
        "image": settings.image,
        "command": pod_command(job, settings),
        **({"env": env} if env else {}),
        "ports": [{**port, "protocol": "TCP"}],
        **({"resources": resources} if resources else {}),
        "volumeMounts": mounts,
    }


def _volume(volume: Volume) -> dict[str, Any]:
    if volume.pvc is not None:
        return {"name": volume.name, "persistentVolumeClaim": {"claimName": volume.pvc}}
    return {"name": volume.name, "hostPath": {"path": volume.host_path}}


def pod_spec(job: Job, settings: K8sSettings, port: dict[str, Any], extra_env: list[dict]) -> dict[str, Any]:
    """Return the pod spec of every node: the ``pytorch`` container, volumes and scheduling settings."""
    volumes = [
        {"name": CONFIG_VOLUME, "configMap": {"name": f"{settings.name}-config"}},
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}},
        *(_volume(v) for v in settings.volumes),
    ]
    optional = {
        "serviceAccountName": settings.service_account,
        "priorityClassName": settings.priority_class,
        "nodeSelector": dict(settings.node_selector) or None,
        "tolerations": [dict(t) for t in settings.tolerations] or None,
        "imagePullSecrets": [{"name": n} for n in settings.image_pull_secrets] or None,
    }
    spec = {"containers": [_container(job, settings, port, extra_env)], "volumes": volumes}
    return {**spec, **{key: value for key, value in optional.items() if value is not None}}


def refuse_literal_secrets(job: Job) -> None:
    """Raise CliError when the job's config holds a secret written as a literal (in the file or by an override).

    A ConfigMap is stored and shown in plain text; a secret must come from a Kubernetes Secret
    through ``${env:NAME}`` and ``k8s.secrets``. The message names the keys, never the values.
    """
    paths = secret_paths(job.config)
    if paths:
        first = paths[0].rsplit(".", 1)[-1]
        variable = first.upper() if first.isidentifier() else "MY_SECRET"
        raise CliError(
            f"{', '.join(f'`{p}`' for p in paths)} holds a secret written into the config (in the file or by an "
            f"override), which the job's ConfigMap would store in plain text; write it as a reference instead, "
            f"e.g. `{first}: ${{env:{variable}}}`, and fill that variable from a Kubernetes Secret with "
            f"k8s.secrets: [{{env: {variable}, secret: <secret name>, key: <key in it>}}]"
        )


def config_map(job: Job, settings: K8sSettings) -> dict[str, Any]:
    """Return the ConfigMap ``<name>-config`` holding the job's ``config.yaml``.

    Raises:
        CliError: the config holds a literal secret (see ``refuse_literal_secrets``).
    """
    refuse_literal_secrets(job)
    metadata = _metadata(f"{settings.name}-config", job, settings)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {CONFIG_FILE: job.config_yaml()}}


def pytorch_job(job: Job, settings: K8sSettings) -> dict[str, Any]:
    """Return the Kubeflow ``kubeflow.org/v1`` PyTorchJob: a Master and ``nodes - 1`` Workers, or elastic Workers."""
    port = {"name": PYTORCHJOB_PORT[0], "containerPort": PYTORCHJOB_PORT[1]}

    def replica(count: int) -> dict[str, Any]:
        template = {"spec": pod_spec(job, settings, port, [])}
        return {"replicas": count, "restartPolicy": "OnFailure", "template": template}

    elastic = settings.elastic
    if elastic is not None:
        replicas = {"Worker": replica(settings.nodes)}
    else:
        replicas = {"Master": replica(1), **({"Worker": replica(settings.nodes - 1)} if settings.nodes > 1 else {})}
    spec: dict[str, Any] = {
        "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": RESTARTS},
        "nprocPerNode": str(settings.nproc_per_node),
        "pytorchReplicaSpecs": replicas,
    }
    if elastic is not None:
        spec["elasticPolicy"] = {
            "rdzvBackend": "c10d",
            "minReplicas": elastic.min_nodes,
            "maxReplicas": elastic.max_nodes,
            "maxRestarts": elastic.max_restarts,
        }
    metadata = _metadata(settings.name, job, settings)
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": metadata, "spec": spec}


def job_set(job: Job, settings: K8sSettings) -> dict[str, Any]:
    """Return the ``jobset.x-k8s.io/v1alpha2`` JobSet: one indexed Job of ``nodes`` pods, pod 0 the rendezvous host."""
    name = settings.name
    rendezvous = [
        {"name": "PET_MASTER_ADDR", "value": f"{name}-{JOBSET_REPLICATED_JOB}-0-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": str(JOBSET_PORT)},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
    ]
    port = {"name": "rendezvous", "containerPort": JOBSET_PORT}
    pods = {"spec": {**pod_spec(job, settings, port, rendezvous), "restartPolicy": "Never"}}
    nodes = settings.nodes
    job_spec = {"parallelism": nodes, "completions": nodes, "completionMode": "Indexed", "backoffLimit": 0}
    spec = {
        "failurePolicy": {"maxRestarts": RESTARTS},
        "network": {"enableDNSHostnames": True, "subdomain": name, "publishNotReadyAddresses": True},
        "replicatedJobs": [
            {"name": JOBSET_REPLICATED_JOB, "replicas": 1, "template": {"spec": {**job_spec, "template": pods}}}
        ],
    }
    metadata = _metadata(name, job, settings)
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": metadata, "spec": spec}


class _ManifestDumper(yaml.SafeDumper):
    """SafeDumper writing multi-line strings as ``|`` blocks and repeated objects in full (no anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        """Never emit ``&id``/``*id`` aliases: every pod template is written out."""
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def render_manifest(job: Job, settings: K8sSettings) -> str:
    """Return the manifest as multi-document YAML: the ConfigMap, then the PyTorchJob or JobSet."""
    workload = job_set(job, settings) if settings.kind == "JobSet" else pytorch_job(job, settings)
    return yaml.dump_all([config_map(job, settings), workload], Dumper=_ManifestDumper, sort_keys=False)


def check_cli_flags(options: LaunchOptions) -> None:
    """Raise CliError when multi-node flags (``--nnodes``, ``--node-rank``, ...) come with a k8s section."""
    given = [f"--{flag.replace('_', '-')}" for flag in _MULTI_NODE_FLAGS if getattr(options, flag) is not None]
    if given:
        raise CliError(
            f"{', '.join(given)} cannot be used with a `k8s:` section: the cluster places the nodes and their "
            f"rendezvous; drop the flag(s) and set k8s.nodes instead"
        )


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_job_files(job: Job, settings: K8sSettings, manifest: str) -> Path:
    """Write ``manifest.yaml`` and ``config.yaml`` into the job directory; return the manifest's path."""
    directory = settings.job_dir
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / CONFIG_FILE, job.config_yaml())
    path = directory / MANIFEST_FILE
    _write(path, manifest)
    return path


def _logs_hint(settings: K8sSettings) -> str:
    if settings.kind == "JobSet":
        first = f"job/{settings.name}-{JOBSET_REPLICATED_JOB}-0"
    else:
        first = f"pod/{settings.name}-{'worker' if settings.elastic else 'master'}-0"
    return f"kubectl logs -n {settings.namespace} -f {first}"


def apply_manifest(path: Path, settings: K8sSettings) -> int:
    """Run ``kubectl apply -f path``; return its exit status, showing its output (stderr on failure).

    Raises:
        CliError: kubectl is not on PATH.
    """
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise CliError(
            f"kubectl is not on PATH, so the manifest written to {path} was not submitted; install kubectl and "
            f"point it at the cluster, or run with --dry-run to only write the manifest"
        )
    result = subprocess.run([kubectl, "apply", "-f", str(path)], capture_output=True, text=True, check=False)
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        return result.returncode
    print(
        f"submitted {settings.kind} {settings.namespace}/{settings.name} from {path}; follow it: {_logs_hint(settings)}"
    )
    return 0


def launch_k8s(job: Job) -> int:
    """Write the job's manifest and config into its job directory, then apply it with kubectl; return the exit status.

    With ``--dry-run`` the manifest and its path are printed and nothing is submitted.

    Raises:
        CliError: a bad ``k8s:`` section, multi-node CLI flags, or kubectl missing without --dry-run.
    """
    check_cli_flags(job.options)
    section = job.section or {}
    settings = parse_k8s_section(section, route_name=job.route.name, cli_nproc_per_node=job.options.nproc_per_node)
    manifest = render_manifest(job, settings)
    path = write_job_files(job, settings, manifest)
    if job.options.dry_run:
        sys.stdout.write(manifest)
        print(f"# manifest written to {path} (not submitted: --dry-run; submit it with kubectl apply -f {path})")
        return 0
    return apply_manifest(path, settings)
