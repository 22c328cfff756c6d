"""automodel.config: YAML configs with ``_target_`` calls, overrides, references and redaction.

Importing this package imports pyyaml only (no torch).
"""

from automodel.config.errors import ConfigError, ConfigIndexError, ConfigKeyError, did_you_mean
from automodel.config.instantiate import instantiate
from automodel.config.loading import load_config, load_config_from_argv, split_config_args
from automodel.config.node import ConfigList, ConfigNode, config_error, config_from_dict, location_of, yaml_path
from automodel.config.overrides import Override, apply_overrides, parse_overrides
from automodel.config.redact import REDACTED, is_secret_key, redact_secrets
from automodel.config.schema import (
    BUILT,
    OWNED,
    Setting,
    anything,
    boolean,
    check_config,
    integer,
    number,
    signature_settings,
    text,
)
from automodel.config.sections import build_section, check_sections, errors_named_by, plain_section
from automodel.config.targets import DEFAULT_ALLOWED_PREFIXES, import_target
from automodel.config.validate import ConfigErrors, find_problems, validate
from automodel.config.yaml_io import dump_yaml, parse_yaml_text

__version__ = "0.2.0"

__all__ = [
    "BUILT",
    "DEFAULT_ALLOWED_PREFIXES",
    "OWNED",
    "REDACTED",
    "ConfigError",
    "ConfigErrors",
    "ConfigIndexError",
    "ConfigKeyError",
    "ConfigList",
    "ConfigNode",
    "Override",
    "Setting",
    "anything",
    "apply_overrides",
    "boolean",
    "build_section",
    "check_config",
    "check_sections",
    "config_error",
    "config_from_dict",
    "did_you_mean",
    "dump_yaml",
    "errors_named_by",
    "find_problems",
    "import_target",
    "instantiate",
    "integer",
    "is_secret_key",
    "load_config",
    "load_config_from_argv",
    "location_of",
    "number",
    "parse_overrides",
    "parse_yaml_text",
    "plain_section",
    "redact_secrets",
    "signature_settings",
    "split_config_args",
    "text",
    "validate",
    "yaml_path",
]
