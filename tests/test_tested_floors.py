"""Third-party floors are the minor versions uv.lock tests (tools/tested_floors.py): on this tree, and a floor
below the lock's minor found and rewritten in a small workspace."""

from __future__ import annotations

from pathlib import Path

import tested_floors

MEMBER = """[project]
name = "automodel-demo"
version = "0.1.0"
dependencies = ["torch>=2.6,<3", "safetensors[torch]>=0.8", "pyyaml>=6"]

[project.optional-dependencies]
hub = ["huggingface-hub"]

[dependency-groups]
test = ["pytest>=8", "transformers>=5.24.1", "peft>=0.21"]

[tool.uv.build-backend]
module-name = "automodel.demo"
"""

LOCK = """version = 1
[[package]]
name = "torch"
version = "2.15.0"
[[package]]
name = "safetensors"
version = "0.8.0"
[[package]]
name = "huggingface-hub"
version = "2.4.0"
[[package]]
name = "transformers"
version = "5.24.0"
"""


def _workspace(root: Path) -> Path:
    member = root / "packages" / "automodel-demo"
    member.mkdir(parents=True)
    (member / "pyproject.toml").write_text(MEMBER)
    (root / "pyproject.toml").write_text('[dependency-groups]\ndev = ["pytest>=8"]\n')
    (root / "uv.lock").write_text(LOCK)
    return member / "pyproject.toml"


def test_every_floor_in_this_tree_is_the_locked_minor(capsys):
    assert tested_floors.main(["--check"]) == 0, capsys.readouterr().out


def test_a_floor_below_the_lock_a_missing_one_and_one_above_it_are_found_then_fixed(tmp_path, capsys):
    pyproject = _workspace(tmp_path)
    assert tested_floors.main(["--check"], root=tmp_path) == 1
    out = capsys.readouterr().out
    assert "torch<3,>=2.6: >=2.6, but uv.lock tests 2.15.0; the floor is >=2.15" in out
    assert "huggingface-hub: no lower bound, but uv.lock tests 2.4.0; the floor is >=2.4" in out
    assert "transformers>=5.24.1: >=5.24.1, but uv.lock tests 5.24.0" in out
    assert "safetensors" not in out  # at the locked minor already
    assert "peft>=0.21: uv.lock pins no version; run uv lock" in out

    assert tested_floors.main(["--fix"], root=tmp_path) == 0
    text = pyproject.read_text()
    assert '"torch>=2.15,<3"' in text
    assert '"huggingface-hub>=2.4"' in text
    assert '"transformers>=5.24"' in text
    assert '"safetensors[torch]>=0.8"' in text and '"pyyaml>=6"' in text
    assert '"peft>=0.21"' in text  # left for uv lock to pin
    capsys.readouterr()
    assert tested_floors.main(["--check"], root=tmp_path) == 1
    left = capsys.readouterr().out.splitlines()
    assert left == ["packages/automodel-demo/pyproject.toml: peft>=0.21: uv.lock pins no version; run uv lock"]
