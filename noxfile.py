"""The CI matrix: lint, one test session per package (each in a venv holding that package alone), e2e, build.

Packages are discovered from packages/* and apps/* (tools/workspace.py), so adding a
package adds its test session and its import contracts with no edit here.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent / "tools"))
import workspace

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "build", "tests", "e2e"]

ROOT = Path(__file__).parent
PACKAGES = workspace.discover(ROOT)
IMPORT_ALL = (
    "import importlib, pkgutil, {module} as m; "
    "[importlib.import_module(i.name) for i in pkgutil.walk_packages(m.__path__, m.__name__ + '.')"
    " if not i.name.endswith('__main__')]"
)
TEST_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0"}


def _sync(session: nox.Session, *args: str) -> None:
    """Make the session venv hold exactly what ``uv sync --locked ARGS`` selects (from uv's cache).

    Workspace packages are installed as built wheels (not editable, so packaging mistakes
    show) and rebuilt every time, since their version does not change with their source.
    """
    rebuild = [arg for p in PACKAGES for arg in ("--reinstall-package", p.name)]
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-editable",
        *rebuild,
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        silent=True,
    )


@nox.session
@nox.parametrize("package", [p.name for p in PACKAGES], ids=[p.name for p in PACKAGES])
def tests(session: nox.Session, package: str) -> None:
    """Run one package's tests in a venv with only that package, its dependencies and its `test` group."""
    member = next(p for p in PACKAGES if p.name == package)
    _sync(session, "--package", package, "--no-default-groups", "--group", "test")
    session.run("pytest", str(member.path / "tests"), *session.posargs, env=TEST_ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, the import contracts of docs/architecture.md section 2, each
    package's version against its release tags, changelog and __all__ (tools/version_check.py), and the
    third-party floors against uv.lock (tools/tested_floors.py)."""
    _sync(session, "--only-group", "dev")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "importlinter.ini")
        config.write_text(workspace.contracts_ini(PACKAGES), encoding="utf-8")
        pythonpath = os.pathsep.join(workspace.source_dirs(PACKAGES))
        session.run("lint-imports", str(config), env={"PYTHONPATH": pythonpath})
    session.run("python", str(ROOT / "tools" / "version_check.py"))
    session.run("python", str(ROOT / "tools" / "tested_floors.py"), "--check")


@nox.session
def e2e(session: nox.Session) -> None:
    """Cross-package tests in tests/: every package installed, driven through the `automodel` command.

    Installs Debian's slurm-wlm and munge first where it can, for the local SLURM cluster tests.
    """
    session.run("bash", str(ROOT / "tools" / "install_slurm.sh"), external=True)
    _sync(session, "--all-packages")
    session.run("pytest", str(ROOT / "tests"), "--durations=20", *session.posargs, env=TEST_ENV)


@nox.session
def build(session: nox.Session) -> None:
    """Build every package's wheel, install each alone (with the workspace wheels it needs) and import it.

    Installing from a package index as a user does, and the default job from the installed example, are
    tests/test_published_install.py's (the e2e session)."""
    with tempfile.TemporaryDirectory() as tmp:
        wheels = _build_wheels(session, Path(tmp))
        for member in PACKAGES:
            venv = Path(tmp, f"venv-{member.name}")
            session.run("uv", "venv", "--quiet", str(venv), external=True)
            needed = [str(wheels[p.name]) for p in workspace.workspace_dependencies(member, PACKAGES)]
            session.run("uv", "pip", "install", "--quiet", "--python", str(venv), *needed, external=True)
            session.run(str(venv / "bin" / "python"), "-c", IMPORT_ALL.format(module=member.module), external=True)
            session.log(f"{member.name}: its wheel installs alone and every module of {member.module} imports")


@nox.session
def cpu_install(session: nox.Session) -> None:
    """The README's CPU-only install: automodel-cli and automodel-recipes-llm with the CPU build of torch
    (uv's ``--torch-backend cpu``), checked to hold no CUDA build and no nvidia-* wheel, then the default job.

    Not in the default sessions: it needs download.pytorch.org, which CI machines here cannot reach.
    ``AUTOMODEL_CPU_TORCH`` replaces ``--torch-backend cpu`` with other uv arguments that select a CPU
    torch (a mirror: ``--index-url URL``, or ``--find-links DIR torch==2.13.0+cpu``).
    """
    torch_source = tuple(os.environ.get("AUTOMODEL_CPU_TORCH", "--torch-backend cpu").split())
    with tempfile.TemporaryDirectory() as tmp:
        wheels = _build_wheels(session, Path(tmp))
        venv = _run_the_default_job_from_wheels(session, Path(tmp), wheels, torch_source)
        python = str(venv / "bin" / "python")
        session.run(python, "-c", "import torch; assert torch.version.cuda is None, torch.__version__", external=True)
        installed = session.run("uv", "pip", "list", "--python", python, silent=True, external=True)
        cuda_wheels = [line.split()[0] for line in installed.splitlines() if line.startswith("nvidia-")]
        if cuda_wheels:
            session.error(f"the CPU install pulled CUDA wheels: {', '.join(cuda_wheels)}")
        session.log("CPU-only install: torch without CUDA, no nvidia-* wheel, and the default job trained")


def _build_wheels(session: nox.Session, tmp: Path) -> dict[str, Path]:
    """Build every package's wheel into ``tmp/dist``; return each package's wheel by distribution name."""
    dist = tmp / "dist"
    session.run("uv", "build", "--all-packages", "--wheel", "--out-dir", str(dist), silent=True, external=True)
    return {p.name: next(dist.glob(p.name.replace("-", "_") + "-*.whl")) for p in PACKAGES}


def _run_the_default_job_from_wheels(
    session: nox.Session, tmp: Path, wheels: dict[str, Path], install_args: tuple[str, ...] = ()
) -> Path:
    """A user's install: only automodel-cli and automodel-recipes-llm (with what they declare) from the
    wheels, no clone; `automodel example copy` brings the default job's config and data, which trains.

    Takes extra ``uv pip install`` arguments (how torch is chosen); returns the venv it made.
    """
    venv, work = tmp / "venv-user", tmp / "user"
    session.run("uv", "venv", "--quiet", str(venv), external=True)
    chosen = [m for m in PACKAGES if m.name in ("automodel-cli", "automodel-recipes-llm")]
    needed = {str(wheels[p.name]) for member in chosen for p in workspace.workspace_dependencies(member, PACKAGES)}
    command = ["uv", "pip", "install", "--quiet", "--python", str(venv), *install_args, *sorted(needed)]
    session.run(*command, external=True)
    automodel = str(venv / "bin" / "automodel")
    session.run(automodel, "example", "copy", "tiny_sft", str(work), external=True)
    with session.chdir(work):
        command = [automodel, "finetune", "llm", "-c", "examples/llm_finetune/tiny_sft.yaml"]
        session.run(*command, "--checkpoint.dir", str(work / "run"), external=True, env=TEST_ENV)
    if not (work / "run" / "step_000400" / "model" / "model.safetensors").is_file():
        session.error("the default job run from the installed wheels saved no model")
    session.log("automodel-cli + automodel-recipes-llm from wheels: the copied default job trained and saved")
    return venv


@nox.session
def release(session: nox.Session) -> None:
    """Release one package: `nox -s release -- <package> [--dry-run] [--index-url URL]` runs tools/release.py
    (checks, sdist and wheel, metadata, upload with `uv publish`, tag `<package>-v<version>`)."""
    _sync(session, "--only-group", "dev")
    session.run("python", str(ROOT / "tools" / "release.py"), *session.posargs)


import bounds  # noqa: E402 - tools/ is on sys.path from the top of this file


@nox.session
@nox.parametrize("package", [p.name for p in PACKAGES], ids=[p.name for p in PACKAGES])
def lowest(session: nox.Session, package: str) -> None:
    """Run one package's tests against the lowest versions of the automodel packages it requires.

    Each required package is built from the first commit of the version its lower bound names (where a
    release of that version may have been made; tools/bounds.py finds it), the package itself from the
    working tree; third-party packages and the `test` group come at the versions uv.lock pins. Not in the
    default sessions: it builds and installs a venv per package.
    """
    member = next(p for p in PACKAGES if p.name == package)
    with tempfile.TemporaryDirectory() as tmp, bounds.Git(ROOT) as git:
        dist, locked = Path(tmp, "dist"), Path(tmp, "locked.txt")
        for name, snapshot in bounds.lowest_allowed(member, ROOT, git).items():
            _build_snapshot(session, name, snapshot, Path(tmp))
            session.log(f"{package} requires {name} from {snapshot}")
        session.run("uv", "build", "--wheel", "--package", package, "--out-dir", str(dist), silent=True, external=True)
        export = ["uv", "export", "--frozen", "--no-hashes", "--no-emit-workspace", "--no-default-groups"]
        session.run(*export, "--package", package, "--group", "test", "-o", str(locked), silent=True, external=True)
        wheels = sorted(str(w) for w in dist.glob("*.whl"))
        reinstall = [arg for w in dist.glob("*.whl") for arg in ("--reinstall-package", w.name.split("-")[0])]
        session.install(*reinstall, "-r", str(locked), *wheels, silent=True)
        session.run("pytest", str(member.path / "tests"), *session.posargs, env=TEST_ENV)


def _build_snapshot(session: nox.Session, name: str, snapshot: bounds.Snapshot, tmp: Path) -> None:
    """Build the wheel of workspace package ``name`` as it was at ``snapshot`` (a commit, or the working tree)
    into ``tmp/dist``; the commit's whole tree comes out of ``git archive`` into ``tmp`` (automodel-examples
    takes its files from the repository's examples/)."""
    dist = str(tmp / "dist")
    if snapshot.commit is None:
        session.run("uv", "build", "--wheel", "--package", name, "--out-dir", dist, silent=True, external=True)
        return
    folder = next(p for p in PACKAGES if p.name == name).path.relative_to(ROOT).as_posix()
    archive, source = tmp / f"{snapshot.commit}.tar", tmp / snapshot.commit
    if not source.is_dir():  # two packages may come from the same commit
        session.run("git", "archive", "-o", str(archive), snapshot.commit, silent=True, external=True)
        source.mkdir()
        session.run("tar", "-xf", str(archive), "-C", str(source), silent=True, external=True)
    session.run("uv", "build", "--wheel", str(source / folder), "--out-dir", dist, silent=True, external=True)
