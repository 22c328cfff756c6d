"""automodel.config: YAML configs with ``_target_`` calls, overrides, references and redaction.

Importing this package imports pyyaml only (no torch).
"""

from automodel.config.denylist import DENIED_CALLABLES, DENIED_MODULES
from automodel.config.errors import ConfigError, ConfigIndexError, ConfigKeyError, did_you_mean
from automodel.config.instantiate import instantiate
from automodel.config.loading import load_config, load_config_from_argv, split_config_args
from automodel.config.node import ConfigList, ConfigNode, config_error, config_from_dict, location_of, yaml_path
from automodel.config.overrides import Override, apply_overrides, parse_overrides, redact_override_args
from automodel.config.redact import REDACTED, is_secret_key, literal_secret_paths, redact_secrets
from automodel.config.remote_code import TRUST_ENV as TRUST_REMOTE_CODE_ENV
from automodel.config.remote_code import TRUST_FLAG as TRUST_REMOTE_CODE_FLAG
from automodel.config.remote_code import remote_code_allowed, trusts_remote_code
from automodel.config.schema import (
    BUILT,
    NO_DEFAULT,
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
from automodel.config.sections import (
    build_section,
    check_sections,
    errors_named_by,
    plain_section,
    refuse_moved_sections,
)
from automodel.config.targets import ALLOW_FLAG as ALLOW_TARGET_FLAG
from automodel.config.targets import ALLOWLIST_ENV as TARGET_ALLOWLIST_ENV
from automodel.config.targets import DEFAULT_ALLOWED_PREFIXES, import_target, target_allowances
from automodel.config.validate import ConfigErrors, find_problems, validate
from automodel.config.yaml_io import MAX_VALUES, dump_yaml, parse_yaml_text

__version__ = "0.5.0"

__all__ = [
    "ALLOW_TARGET_FLAG",
    "BUILT",
    "DEFAULT_ALLOWED_PREFIXES",
    "DENIED_CALLABLES",
    "DENIED_MODULES",
    "MAX_VALUES",
    "NO_DEFAULT",
    "OWNED",
    "REDACTED",
    "TARGET_ALLOWLIST_ENV",
    "TRUST_REMOTE_CODE_ENV",
    "TRUST_REMOTE_CODE_FLAG",
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
    "literal_secret_paths",
    "load_config",
    "load_config_from_argv",
    "location_of",
    "number",
    "parse_overrides",
    "parse_yaml_text",
    "plain_section",
    "redact_override_args",
    "redact_secrets",
    "refuse_moved_sections",
    "remote_code_allowed",
    "signature_settings",
    "split_config_args",
    "target_allowances",
    "text",
    "trusts_remote_code",
    "validate",
    "yaml_path",
]
