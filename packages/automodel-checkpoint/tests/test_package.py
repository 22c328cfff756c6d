"""The package surface: every public name present and documented, imports limited to the declared dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import sys
from pathlib import Path

import automodel.checkpoint as checkpoint
from automodel.checkpoint import CheckpointError

SOURCE = Path(checkpoint.__file__).parent
DECLARED = {"torch", "safetensors", "xxhash", "huggingface_hub"}


def _runtime_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_the_package_imports_only_its_declared_dependencies_and_no_other_automodel_package() -> None:
    imported = set().union(*(_runtime_imports(path) for path in SOURCE.rglob("*.py")))
    third_party = {name.split(".")[0] for name in imported} - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == DECLARED | {"automodel"}
    assert all(name.startswith("automodel.checkpoint") for name in imported if name.startswith("automodel"))
    assert not (SOURCE.parent / "__init__.py").exists()  # automodel stays a namespace package


def test_every_public_name_is_documented_and_typed() -> None:
    assert len(set(checkpoint.__all__)) == len(checkpoint.__all__)
    for name in checkpoint.__all__:
        obj = getattr(checkpoint, name)
        assert inspect.getdoc(obj), name
        functions = [obj] if inspect.isfunction(obj) else []
        if inspect.isclass(obj):
            functions = [f for n, f in vars(obj).items() if inspect.isfunction(f) and not n.startswith("_")]
        for function in functions:
            assert inspect.getdoc(function), function.__qualname__
            signature = inspect.signature(function)
            assert signature.return_annotation is not inspect.Signature.empty, function.__qualname__
            for parameter in signature.parameters.values():
                assert parameter.name == "self" or parameter.annotation is not inspect.Parameter.empty, (
                    function.__qualname__,
                    parameter.name,
                )


def test_checkpoint_error_is_a_value_error_the_cli_prints_as_a_user_error() -> None:
    assert issubclass(CheckpointError, ValueError)
    assert CheckpointError.user_error is True
    assert checkpoint.__version__ == importlib.metadata.version("automodel-checkpoint")
