"""The package surface: light to import, every public name present."""

from __future__ import annotations

import subprocess
import sys

import automodel.config as config


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, automodel.config; print('torch' in sys.modules, 'yaml' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]


def test_every_name_in_all_is_defined() -> None:
    missing = [name for name in config.__all__ if not hasattr(config, name)]
    assert missing == []
    assert len(set(config.__all__)) == len(config.__all__)


def test_every_public_error_is_a_config_error() -> None:
    for name in ["ConfigKeyError", "ConfigIndexError", "ConfigErrors"]:
        assert issubclass(getattr(config, name), config.ConfigError)
    assert config.ConfigError.user_error is True
