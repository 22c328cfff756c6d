"""The package surface: every public name present, one user-error type, no other automodel package."""

from __future__ import annotations

import importlib.metadata
import sys

import automodel.models as models


def test_every_name_in_all_is_defined_and_documented():
    missing = [name for name in models.__all__ if not hasattr(models, name)]
    assert missing == []
    public = [getattr(models, name) for name in models.__all__ if callable(getattr(models, name))]
    for auto_class in (models.AutoModelForCausalLM, models.AutoModelForImageTextToText):
        public += [auto_class.from_pretrained, auto_class.from_config]
    assert [item.__qualname__ for item in public if not item.__doc__] == []


def test_model_error_is_a_value_error_marked_as_a_user_error():
    assert issubclass(models.ModelError, ValueError)
    assert models.ModelError.user_error is True


def test_importing_the_package_imports_no_other_automodel_package():
    others = [name for name in sys.modules if name.startswith("automodel.") and not name.startswith("automodel.models")]
    assert others == []


def test_version_matches_the_installed_distribution():
    assert models.__version__ == importlib.metadata.version("automodel-models")
