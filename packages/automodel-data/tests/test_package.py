"""The package surface: every public name present and documented, imports limited to the declared dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import sys
from pathlib import Path

import automodel.data as data
import automodel.data.diffusion as diffusion
import automodel.data.llm as llm
import automodel.data.vlm as vlm
from automodel.data import DataError

SOURCE = Path(data.__file__).parent
DECLARED = {"torch", "datasets", "torchdata", "numpy", "PIL", "safetensors"}


def _runtime_imports(path: Path) -> set[str]:
    """Top-level modules a file imports, leaving out `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_the_package_imports_only_its_declared_dependencies_and_no_other_automodel_package() -> None:
    imported = set().union(*(_runtime_imports(path) for path in SOURCE.rglob("*.py")))
    third_party = {name.split(".")[0] for name in imported} - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == DECLARED | {"automodel"}
    assert all(name.startswith("automodel.data") for name in imported if name.startswith("automodel"))
    assert not (SOURCE.parent / "__init__.py").exists()  # automodel stays a namespace package


def test_datasets_is_imported_when_a_dataset_is_loaded_not_with_the_package() -> None:
    # `datasets` brings pandas and pyarrow (about 80 MiB resident); a diffusion run over an image
    # folder or a latent cache never needs them, so no module imports it at load time.
    at_load_time = {
        path.relative_to(SOURCE).as_posix(): {
            alias.name if isinstance(node, ast.Import) else node.module
            for node in ast.parse(path.read_text(encoding="utf-8")).body
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        for path in SOURCE.rglob("*.py")
    }
    assert [path for path, names in at_load_time.items() if any(n.split(".")[0] == "datasets" for n in names)] == []


def test_every_public_name_is_defined_documented_and_typed() -> None:
    for module in (data, llm, vlm, diffusion):
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj):
                assert inspect.getdoc(obj), name
            if inspect.isfunction(obj):
                hints = inspect.signature(obj)
                assert hints.return_annotation is not inspect.Signature.empty, name
                assert all(p.annotation is not inspect.Parameter.empty for p in hints.parameters.values()), name


def test_data_error_is_a_value_error_the_cli_prints_as_a_user_error() -> None:
    error = DataError("has no rows", dataset="train.jsonl", hint="check the split")
    assert isinstance(error, ValueError)
    assert DataError.user_error is True
    assert str(error) == "dataset train.jsonl: has no rows; check the split"
    assert data.__version__ == importlib.metadata.version("automodel-data")
