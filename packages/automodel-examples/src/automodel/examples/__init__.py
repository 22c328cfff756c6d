"""automodel.examples: the example configs and their tiny data, found, listed and copied out.

The files are the repository's ``examples/`` folder, shipped in the wheel as
``automodel/examples/files``; an editable install of a clone reads the clone's ``examples/``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

__version__ = "0.1.0"

REFERENCE = re.compile(r"examples/[\w./-]+")


class ExampleError(ValueError):
    """A user error about an example (an unknown name, a file in the way); the CLI prints it, exit status 2."""

    user_error = True


@dataclass(frozen=True)
class Example:
    """One example config.

    Attributes:
        name: ``<folder>/<stem>``, e.g. ``llm_finetune/tiny_sft``.
        path: the config file.
        summary: the first line of its leading comment.
        command: the ``automodel ...`` line its comment gives, or ``""``.
    """

    name: str
    path: Path
    summary: str
    command: str


def examples_root() -> Path:
    """Return the folder holding the examples (``llm_finetune/``, ``data/``, ...).

    Raises:
        ExampleError: neither the installed files nor a clone's ``examples/`` are there.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "files", package.parents[4] / "examples"):
        if (candidate / "data").is_dir():
            return candidate
    raise ExampleError(f"the example files are missing from {package}; reinstall automodel-examples")


def list_examples() -> list[Example]:
    """Return every example config, sorted by name."""
    root = examples_root()
    found = []
    for path in sorted(root.glob("*/*.yaml")):
        if path.parent.name == "data":
            continue
        comments = [line[1:].strip() for line in _leading_comment(path)]
        command = next((line for line in comments if line.startswith("automodel ")), "")
        found.append(Example(f"{path.parent.name}/{path.stem}", path, comments[0] if comments else "", command))
    return found


def find_example(name: str) -> Example:
    """Return the example called ``name`` (``llm_finetune/tiny_sft``, or ``tiny_sft`` when that stem is unique).

    Raises:
        ExampleError: no example, or several, answer to ``name``.
    """
    examples = list_examples()
    matches = [e for e in examples if name in (e.name, e.name.split("/")[1])]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ExampleError(f"there is no example `{name}`; `automodel example list` shows them")
    raise ExampleError(f"`{name}` names several examples ({', '.join(e.name for e in matches)}); give one of those")


def copy_example(name: str, dest: str | os.PathLike[str]) -> Path:
    """Copy the example ``name`` and every file or folder under ``examples/`` its config's values name into
    ``dest/examples/``, so that its command runs from ``dest``; return the copied config.

    Files already there with the same bytes are kept.

    Raises:
        ExampleError: an unknown name, or a file of another content in the way.
    """
    example = find_example(name)
    root = examples_root()
    target = Path(dest).expanduser() / "examples"
    wanted = {example.path.relative_to(root)}
    for reference in REFERENCE.findall(_values_text(example.path)):
        source = root / reference.removeprefix("examples/").rstrip("./")
        if source.exists() and source.resolve().is_relative_to(root.resolve()):
            wanted.add(source.relative_to(root))
    files = sorted(
        {
            f.relative_to(root)
            for rel in wanted
            for f in ([root / rel] if (root / rel).is_file() else (root / rel).rglob("*"))
        }
    )
    files = [f for f in files if (root / f).is_file() and "__pycache__" not in f.parts]
    clashes = [
        str(target / f) for f in files if (target / f).exists() and (target / f).read_bytes() != (root / f).read_bytes()
    ]
    if clashes:
        raise ExampleError(f"{clashes[0]} exists with other content; copy into another folder or move it away")
    for relative in files:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, target / relative)
    return target / example.path.relative_to(root)


def _values_text(path: Path) -> str:
    """The config's text without its comments: the paths its values name, not those its prose mentions."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line.split(" #")[0] for line in lines if not line.lstrip().startswith("#"))


def _leading_comment(path: Path) -> list[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


__all__ = ["Example", "ExampleError", "copy_example", "examples_root", "find_example", "list_examples"]
