"""Reading a ``k8s:`` launcher section into checked K8sSettings (automodel.cli.k8s turns them into a manifest).

Every mistake is a CliError of one paragraph naming the key (``k8s.nodes``, ``k8s.mounts[0].name``)
and saying what to write instead.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from automodel.cli.errors import CliError
from automodel.cli.job import check_keys, job_dir, looks_secret, refuse_permission_variable

KINDS = ("PyTorchJob", "JobSet")
VOLUME_KEYS = ("name", "pvc", "host_path")
MOUNT_KEYS = ("name", "mount_path", "read_only")
SECRET_KEYS = ("env", "secret", "key")
ELASTIC_KEYS = ("min_nodes", "max_nodes", "max_restarts")
TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")
JOBSET_REPLICATED_JOB = "node"
CONFIG_VOLUME = "automodel-config"
SHM_VOLUME = "dshm"
RESTARTS = 3  # PyTorchJob runPolicy.backoffLimit, JobSet failurePolicy.maxRestarts, default elastic max_restarts
MAX_DNS_LABEL = 63

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


@dataclass(frozen=True)
class Volume:
    """A pod volume: a PersistentVolumeClaim (``pvc``) or a path on the node (``host_path``)."""

    name: str
    pvc: str | None = None
    host_path: str | None = None


@dataclass(frozen=True)
class Mount:
    """Where a volume appears in the container."""

    name: str
    mount_path: str
    read_only: bool = False


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable read from ``key`` of the Kubernetes secret ``secret``."""

    env: str
    secret: str
    key: str


@dataclass(frozen=True)
class Elastic:
    """A PyTorchJob elastic policy: the job runs on ``min_nodes`` to ``max_nodes`` pods."""

    min_nodes: int
    max_nodes: int
    max_restarts: int


@dataclass(frozen=True)
class K8sSettings:
    """The ``k8s:`` section, checked (``job_dir`` resolved); automodel.cli.k8s says how it becomes a manifest."""

    name: str
    image: str
    job_dir: Path
    namespace: str = "default"
    nodes: int = 1
    gpus_per_node: int = 0
    nproc_per_node: int = 1
    cpu: str | None = None
    memory: str | None = None
    volumes: tuple[Volume, ...] = ()
    mounts: tuple[Mount, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[SecretEnv, ...] = ()
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Mapping[str, Any], ...] = ()
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    priority_class: str | None = None
    kind: str = "PyTorchJob"
    elastic: Elastic | None = None
    config_mount: str = "/etc/automodel"


K8S_KEYS = tuple(field.name for field in fields(K8sSettings))


def _unreferenced(where: str, text: str) -> str:
    if "${" in text:
        raise CliError(
            f"{where} holds the reference `{text}`, which the k8s section does not resolve (the cluster would "
            f"get it as written); write the value itself, and pass a secret through k8s.secrets"
        )
    return text


def _check_text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CliError(f"{where} must be a non-empty string, got {value!r}; write it as text, e.g. {where}: value")
    return _unreferenced(where, value)


def _text(section: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = section.get(key)
    return default if value is None else _check_text(f"k8s.{key}", value)


def _count(where: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CliError(
            f"{where} must be a whole number of at least {minimum}, got {value!r}; fix it in the k8s section"
        )
    return value


def _scalar(where: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise CliError(f"{where} must be a string, number or boolean, got {value!r}; write the value as text")
    return _unreferenced(where, value)


def _mapping(section: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = section.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CliError(
            f"k8s.{key} must be a mapping of names to values, got {value!r}; e.g. k8s.{key}: {{NAME: value}}"
        )
    return dict(value)


def _list(section: Mapping[str, Any], key: str) -> list[Any]:
    value = section.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise CliError(f"k8s.{key} must be a list, got {value!r}; write one `- ...` entry per line under k8s.{key}")
    return value


def _records(section: Mapping[str, Any], key: str, known: tuple[str, ...], required: tuple[str, ...]) -> list[dict]:
    records = []
    for index, item in enumerate(_list(section, key)):
        where = f"k8s.{key}[{index}]"
        if not isinstance(item, Mapping):
            raise CliError(f"{where} must be a mapping with keys {', '.join(known)}, got {item!r}")
        check_keys(item, known, where)
        missing = [k for k in required if k not in item]
        if missing:
            raise CliError(f"{where} lacks {', '.join(missing)}; each entry of k8s.{key} needs {', '.join(required)}")
        records.append(dict(item))
    return records


def _dns_label(where: str, value: Any) -> str:
    name = _check_text(where, value)
    if not _DNS1123.match(name) or len(name) > MAX_DNS_LABEL:
        raise CliError(
            f"{where} `{name}` is not a valid Kubernetes name; use at most {MAX_DNS_LABEL} lowercase letters, "
            f"digits and '-', starting and ending with a letter or digit"
        )
    return name


def _object_name(where: str, value: Any) -> str:
    name = _check_text(where, value)
    if not _SUBDOMAIN.match(name) or len(name) > 253:
        raise CliError(
            f"{where} `{name}` is not a valid Kubernetes object name; use lowercase letters, digits, '-' and '.', "
            f"starting and ending with a letter or digit"
        )
    return name


def _absolute(where: str, value: Any) -> str:
    path = _check_text(where, value)
    if not path.startswith("/") or path == "/":
        raise CliError(f"{where} must be an absolute path inside the container (e.g. /data), got {path!r}")
    return path


def _quantity(section: Mapping[str, Any], key: str, example: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _QUANTITY.match(text):
        raise CliError(f"k8s.{key} must be a Kubernetes quantity such as {example}, got {value!r}; fix it")
    return text


def _env(section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for name, value in _mapping(section, "env").items():
        where = f"k8s.env.{name}"
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise CliError(f"{where} is not an environment variable name; use letters, digits and '_'")
        refuse_permission_variable(where, name)
        if looks_secret(name):
            raise CliError(
                f"{where} looks like a secret and would be written into the manifest in plain text; store it in "
                f"a Kubernetes secret and list it under k8s.secrets instead, e.g. "
                f"- {{env: {name}, secret: my-secret, key: {name.lower()}}}"
            )
        pairs.append((name, _scalar(where, value)))
    return tuple(pairs)


def _secrets(section: Mapping[str, Any]) -> tuple[SecretEnv, ...]:
    secrets = []
    for index, item in enumerate(_records(section, "secrets", SECRET_KEYS, SECRET_KEYS)):
        where = f"k8s.secrets[{index}]"
        name = _check_text(f"{where}.env", item["env"])
        if not _ENV_NAME.match(name):
            raise CliError(f"{where}.env `{name}` is not an environment variable name; use letters, digits and '_'")
        refuse_permission_variable(f"{where}.env", name)
        secret = _object_name(f"{where}.secret", item["secret"])
        secrets.append(SecretEnv(name, secret, _check_text(f"{where}.key", item["key"])))
    return tuple(secrets)


def _volumes(section: Mapping[str, Any]) -> tuple[Volume, ...]:
    volumes = []
    for index, item in enumerate(_records(section, "volumes", VOLUME_KEYS, ("name",))):
        where = f"k8s.volumes[{index}]"
        name = _dns_label(f"{where}.name", item["name"])
        if name in (CONFIG_VOLUME, SHM_VOLUME) or name in (v.name for v in volumes):
            raise CliError(
                f"{where}.name `{name}` is already used (automodel adds {CONFIG_VOLUME} and {SHM_VOLUME}); rename it"
            )
        if ("pvc" in item) == ("host_path" in item):
            raise CliError(
                f"{where} needs exactly one of pvc (a PersistentVolumeClaim name) or host_path (a path on the node)"
            )
        if "pvc" in item:
            volumes.append(Volume(name, pvc=_object_name(f"{where}.pvc", item["pvc"])))
        else:
            volumes.append(Volume(name, host_path=_absolute(f"{where}.host_path", item["host_path"])))
    return tuple(volumes)


def _mounts(section: Mapping[str, Any], volumes: tuple[Volume, ...]) -> tuple[Mount, ...]:
    mounts = []
    known = [v.name for v in volumes]
    for index, item in enumerate(_records(section, "mounts", MOUNT_KEYS, ("name", "mount_path"))):
        where = f"k8s.mounts[{index}]"
        name = _check_text(f"{where}.name", item["name"])
        if name not in known:
            listed = ", ".join(known) if known else "none are defined"
            raise CliError(
                f"{where}.name `{name}` is not a volume in k8s.volumes ({listed}); "
                f"add it to k8s.volumes or fix the name"
            )
        read_only = item.get("read_only", False)
        if not isinstance(read_only, bool):
            raise CliError(f"{where}.read_only must be true or false, got {read_only!r}")
        mounts.append(Mount(name, _absolute(f"{where}.mount_path", item["mount_path"]), read_only))
    return tuple(mounts)


def _tolerations(section: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    return tuple(_records(section, "tolerations", TOLERATION_KEYS, ()))


def _node_selector(section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), _scalar(f"k8s.node_selector.{k}", v)) for k, v in _mapping(section, "node_selector").items())


def _pull_secrets(section: Mapping[str, Any]) -> tuple[str, ...]:
    items = _list(section, "image_pull_secrets")
    return tuple(_object_name(f"k8s.image_pull_secrets[{i}]", name) for i, name in enumerate(items))


def _optional_name(section: Mapping[str, Any], key: str) -> str | None:
    value = section.get(key)
    return None if value is None else _object_name(f"k8s.{key}", value)


def _kind(section: Mapping[str, Any]) -> str:
    kind = _text(section, "kind", "PyTorchJob")
    if kind not in KINDS:
        match = [k for k in KINDS if k.lower() == kind.lower()]
        hint = f"did you mean `{match[0]}`? " if match else ""
        raise CliError(f"k8s.kind `{kind}` is not supported; {hint}use one of {', '.join(KINDS)}")
    return kind


def _elastic(section: Mapping[str, Any], nodes: int, kind: str) -> Elastic | None:
    value = section.get("elastic")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise CliError(f"k8s.elastic must be a mapping with {', '.join(ELASTIC_KEYS)}, got {value!r}")
    if kind != "PyTorchJob":
        raise CliError(f"k8s.elastic needs k8s.kind: PyTorchJob (a {kind} has no elastic policy); remove one of them")
    check_keys(value, ELASTIC_KEYS, "k8s.elastic")
    low = _count("k8s.elastic.min_nodes", value.get("min_nodes", 1), 1)
    high = _count("k8s.elastic.max_nodes", value.get("max_nodes", nodes), 1)
    if not low <= nodes <= high:
        raise CliError(
            f"k8s.elastic needs min_nodes <= k8s.nodes <= max_nodes, got {low} <= {nodes} <= {high}; "
            f"k8s.nodes is how many pods start"
        )
    return Elastic(low, high, _count("k8s.elastic.max_restarts", value.get("max_restarts", RESTARTS), 0))


def _nproc(section: Mapping[str, Any], gpus: int, cli_nproc: int) -> int:
    nproc = cli_nproc if cli_nproc > 1 else _count("k8s.nproc_per_node", section.get("nproc_per_node", gpus or 1), 1)
    if gpus and nproc > gpus:
        raise CliError(
            f"{nproc} processes per node but k8s.gpus_per_node is {gpus}: each process needs its own GPU; "
            f"raise k8s.gpus_per_node or lower the processes per node"
        )
    return nproc


def _longest_pod_suffix(kind: str, nodes: int, elastic: Elastic | None) -> str:
    if kind == "JobSet":
        return f"-{JOBSET_REPLICATED_JOB}-0-{nodes - 1}"
    if elastic is not None:
        return f"-worker-{elastic.max_nodes - 1}"
    return f"-worker-{nodes - 2}" if nodes > 1 else "-master-0"


def default_name(route_name: str, room: int) -> str:
    """Return ``<route>-<YYYYmmdd-HHMMSS>`` made a valid job name of at most ``room`` characters."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^a-z0-9]+", "-", route_name.lower()).strip("-")
    slug = slug if slug[:1].isalpha() else f"job-{slug}".rstrip("-")
    return f"{slug[: max(1, room - len(stamp) - 1)].rstrip('-')}-{stamp}"


def _name(name: str | None, route_name: str, suffix: str) -> str:
    room = MAX_DNS_LABEL - len(suffix)
    if name is None:
        return default_name(route_name, room)
    if not _DNS1035.match(name) or len(name) > room:
        raise CliError(
            f"k8s.name `{name}` is not a valid job name; use at most {room} characters (its pods are named "
            f"<name>{suffix}, at most {MAX_DNS_LABEL}) of lowercase letters, digits and '-', starting with a "
            f"letter and ending with a letter or digit, e.g. my-finetune"
        )
    return name


def parse_k8s_section(
    section: Mapping[str, Any], *, route_name: str = "automodel", cli_nproc_per_node: int = 1
) -> K8sSettings:
    """Check a ``k8s:`` section and return it as K8sSettings.

    ``route_name`` seeds the default job name (``<route>-<time>``); ``cli_nproc_per_node``
    (``--nproc-per-node``) overrides ``k8s.nproc_per_node`` when above 1.

    Raises:
        CliError: an unknown key (naming the closest), a missing image, a value of the wrong
            type or range, an invalid name, a literal secret in ``env``, a mount of an unknown volume.
    """
    check_keys(section, K8S_KEYS, "k8s")
    image = _text(section, "image")
    if image is None:
        raise CliError("k8s.image is required: the container image with automodel and the recipe installed; set it")
    kind = _kind(section)
    nodes = _count("k8s.nodes", section.get("nodes", 1), 1)
    gpus = _count("k8s.gpus_per_node", section.get("gpus_per_node", 0), 0)
    elastic = _elastic(section, nodes, kind)
    volumes = _volumes(section)
    env, secrets = _env(section), _secrets(section)
    duplicated = sorted({n for n, _ in env} & {s.env for s in secrets})
    if duplicated:
        raise CliError(f"{', '.join(duplicated)} is set in both k8s.env and k8s.secrets; keep one")
    given_name = _text(section, "name")
    return K8sSettings(
        name=_name(given_name, route_name, _longest_pod_suffix(kind, nodes, elastic)),
        image=image,
        job_dir=job_dir({"job_dir": _text(section, "job_dir")}, given_name or route_name.replace(".", "-")),
        namespace=_dns_label("k8s.namespace", section.get("namespace", "default")),
        nodes=nodes,
        gpus_per_node=gpus,
        nproc_per_node=_nproc(section, gpus, cli_nproc_per_node),
        cpu=_quantity(section, "cpu", "8 or 500m"),
        memory=_quantity(section, "memory", "32Gi"),
        volumes=volumes,
        mounts=_mounts(section, volumes),
        env=env,
        secrets=secrets,
        node_selector=_node_selector(section),
        tolerations=_tolerations(section),
        service_account=_optional_name(section, "service_account"),
        image_pull_secrets=_pull_secrets(section),
        priority_class=_optional_name(section, "priority_class"),
        kind=kind,
        elastic=elastic,
        config_mount=_absolute("k8s.config_mount", section.get("config_mount", "/etc/automodel")),
    )
