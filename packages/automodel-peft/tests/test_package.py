"""The package surface: public names documented and typed, imports limited to torch and safetensors."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import re
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import automodel.peft as peft_pkg
import automodel.peft.lora as lora_pkg
from automodel.peft import PeftError

SOURCE = Path(peft_pkg.__file__).parent
DECLARED = {"torch", "safetensors"}
LAZY = {"bitsandbytes"}  # imported inside the function that needs it, never at module import


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions) of one source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nested = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if node is not function
    }
    top, inner = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = {node.module}
        else:
            continue
        (inner if id(node) in nested else top).update(names)
    return top, inner


def test_the_package_imports_only_torch_safetensors_and_itself_and_bitsandbytes_lazily() -> None:
    top, inner = set(), set()
    for path in SOURCE.rglob("*.py"):
        file_top, file_inner = _imports(path)
        top |= file_top
        inner |= file_inner
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    assert {name.split(".")[0] for name in top} - stdlib == DECLARED | {"automodel"}
    assert {name.split(".")[0] for name in inner} - stdlib == LAZY
    assert all(name.startswith("automodel.peft") for name in top if name.startswith("automodel"))
    assert not (SOURCE.parent / "__init__.py").exists()  # automodel stays a namespace package


def test_the_declared_dependencies_are_torch_and_safetensors_with_its_torch_extra() -> None:
    # safetensors.torch.save_file needs numpy, which only the `torch` extra of safetensors installs.
    declared = [r.split(";")[0].replace(" ", "") for r in requires("automodel-peft") if "extra ==" not in r]
    assert sorted(re.sub(r"[<>=!~].*", "", r) for r in declared) == ["safetensors[torch]", "torch"]


def test_importing_the_package_loads_neither_transformers_nor_peft_nor_bitsandbytes() -> None:
    code = (
        "import sys, automodel.peft; "
        "print(sorted(m for m in ('transformers', 'peft', 'bitsandbytes') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_public_name_is_documented_and_typed() -> None:
    for module in (peft_pkg, lora_pkg):
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            obj = getattr(module, name)
            assert inspect.getdoc(obj), name
            if inspect.isfunction(obj):
                signature = inspect.signature(obj)
                assert signature.return_annotation is not inspect.Signature.empty, name
                assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()), name
    assert set(lora_pkg.__all__) <= set(peft_pkg.__all__)


def test_peft_error_is_a_value_error_the_cli_prints_as_a_user_error() -> None:
    assert issubclass(PeftError, ValueError)
    assert PeftError.user_error is True
    assert peft_pkg.__version__ == importlib.metadata.version("automodel-peft")
