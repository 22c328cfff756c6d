"""ConfigNode / ConfigList: attribute and item access, live sub-views, and errors that name the YAML path."""

from __future__ import annotations

import pytest

from automodel.config import (
    ConfigError,
    ConfigIndexError,
    ConfigKeyError,
    ConfigList,
    ConfigNode,
    config_error,
    config_from_dict,
    load_config,
    location_of,
    parse_yaml_text,
    yaml_path,
)

YAML = """
model:
  name: gpt2
  layers: [1, 2, 3]
optimizer:
  lr: 0.1
  betas: [0.9, 0.99]
data:
  files:
    - path: a.json
    - path: b.json
"""


@pytest.fixture
def cfg(write_yaml) -> ConfigNode:
    return load_config(write_yaml(YAML))


def test_attribute_and_item_access_read_the_same_values(cfg) -> None:
    assert cfg.optimizer.lr == cfg["optimizer"]["lr"] == 0.1
    assert cfg.data.files[1].path == "b.json"


def test_sections_are_config_nodes_and_lists_are_config_lists(cfg) -> None:
    assert isinstance(cfg.model, ConfigNode)
    assert isinstance(cfg.model.layers, ConfigList)
    assert cfg.model.layers == [1, 2, 3]
    assert cfg.model.layers[-1] == 3
    assert cfg.model.layers[1:] == [2, 3]


def test_a_node_behaves_as_a_read_only_mapping_view(cfg) -> None:
    assert list(cfg) == ["model", "optimizer", "data"]
    assert len(cfg.optimizer) == 2
    assert "lr" in cfg.optimizer and "lrr" not in cfg.optimizer
    assert dict(cfg.optimizer.items())["lr"] == 0.1
    assert cfg.optimizer == {"lr": 0.1, "betas": [0.9, 0.99]}


def test_get_returns_the_value_or_the_default(cfg) -> None:
    assert cfg.optimizer.get("lr") == 0.1
    assert cfg.optimizer.get("momentum") is None
    assert cfg.optimizer.get("momentum", 0.9) == 0.9


def test_getattr_with_a_default_works_because_missing_keys_are_attribute_errors(cfg) -> None:
    assert getattr(cfg.optimizer, "momentum", 0.9) == 0.9
    assert not hasattr(cfg, "scheduler")


def test_pop_removes_a_key_and_returns_its_value(cfg) -> None:
    assert cfg.optimizer.pop("lr") == 0.1
    assert "lr" not in cfg.optimizer
    assert cfg.optimizer.pop("lr", "gone") == "gone"


def test_pop_of_a_section_returns_plain_data(cfg) -> None:
    model = cfg.pop("model")
    assert model == {"name": "gpt2", "layers": [1, 2, 3]}
    assert type(model) is dict
    assert "model" not in cfg


def test_select_reads_a_dotted_path_including_list_indices(cfg) -> None:
    assert cfg.select("data.files.0.path") == "a.json"
    assert cfg.data.select("files.1.path") == "b.json"
    assert cfg.select("data.files.5.path", None) is None
    assert cfg.select("optimizer.momentum", 0.9) == 0.9
    assert cfg.select("optimizer.lr.scale", "default") == "default"


def test_setting_through_a_sub_view_changes_the_root(cfg) -> None:
    optimizer = cfg.optimizer
    optimizer.lr = 0.5
    optimizer["weight_decay"] = 0.01
    cfg.data.files[0].path = "c.json"
    cfg.model.layers[0] = 9
    assert cfg.to_container()["optimizer"] == {"lr": 0.5, "betas": [0.9, 0.99], "weight_decay": 0.01}
    assert cfg.data.files[0].path == "c.json"
    assert cfg.model.layers == [9, 2, 3]


def test_assigning_a_view_stores_a_copy_of_its_data(cfg) -> None:
    cfg.backup = cfg.optimizer
    cfg.optimizer.lr = 1.0
    assert cfg.backup.lr == 0.1
    assert isinstance(cfg.to_container(resolve=False)["backup"], dict)


def test_deleting_a_key_removes_it(cfg) -> None:
    del cfg.optimizer["betas"]
    assert list(cfg.optimizer) == ["lr"]


def test_keys_that_shadow_mapping_methods_are_read_with_brackets() -> None:
    cfg = config_from_dict({"data": {"items": [1, 2], "keys": "k", "get": 3}})
    assert cfg.data["items"] == [1, 2]
    assert cfg.data["keys"] == "k"
    assert callable(cfg.data.items)


def test_underscore_keys_are_readable_as_attributes() -> None:
    assert config_from_dict({"m": {"_target_": "x.y"}}).m._target_ == "x.y"


def test_dunder_lookups_are_plain_attribute_errors_so_python_protocols_work(cfg) -> None:
    with pytest.raises(AttributeError) as info:
        _ = cfg.__deepcopy__
    assert not isinstance(info.value, ConfigError)


def test_to_container_returns_plain_copies(cfg) -> None:
    data = cfg.to_container()
    data["optimizer"]["lr"] = 5
    assert cfg.optimizer.lr == 0.1
    assert type(data["model"]["layers"]) is list


def test_yaml_path_and_location_of_say_where_a_section_was_written(cfg, write_yaml) -> None:
    assert yaml_path(cfg.data.files[1]) == "data.files.1"
    assert yaml_path(cfg) == ""
    file, line = location_of(cfg.optimizer, "lr")
    assert file.endswith("config.yaml") and line == 5
    assert location_of(cfg.data.files[1]) == (file, 10)


def test_location_of_an_overridden_key_is_the_command_line(write_yaml) -> None:
    cfg = load_config(write_yaml(YAML), ["--optimizer.lr", "0.2"])
    assert location_of(cfg.optimizer, "lr") == ("command line", 0)


def test_config_error_carries_path_file_and_line_for_recipes(cfg) -> None:
    error = config_error(cfg.optimizer, "must be positive", "lr", hint="use a learning rate above 0")
    assert isinstance(error, ConfigError)
    assert str(error) == f"{error.file}:5: `optimizer.lr`: must be positive; use a learning rate above 0"


def test_config_from_dict_copies_its_input() -> None:
    data = {"a": {"b": 1}}
    cfg = config_from_dict(data)
    cfg.a.b = 2
    assert data == {"a": {"b": 1}}


def test_to_yaml_without_resolving_or_redacting_reloads_to_equal_data() -> None:
    tricky = ["1e-4", "no", "null", "123", "", "line one\nline two\n", "${ref.untouched}", "true"]
    data = {
        "strings": {f"s{i}": value for i, value in enumerate(tricky)},
        "numbers": {"lr": 1e-4, "steps": 3, "flag": True, "none": None},
        "list": tricky,
    }
    cfg = config_from_dict(data)
    reloaded, _ = parse_yaml_text(cfg.to_yaml(redact=False, resolve=False))
    assert reloaded == data


def test_repr_names_the_path(cfg) -> None:
    assert repr(cfg.optimizer).startswith("ConfigNode(optimizer: {'lr': 0.1")
    assert repr(cfg.model.layers) == "ConfigList(model.layers: [1, 2, 3])"


# ---- bad input ---------------------------------------------------------------------------------


def test_a_missing_key_names_the_path_file_line_and_closest_key(cfg) -> None:
    with pytest.raises(ConfigKeyError) as info:
        _ = cfg.optimizer.lrr
    error = info.value
    assert isinstance(error, KeyError) and isinstance(error, AttributeError) and isinstance(error, ConfigError)
    assert str(error) == f"{error.file}: `optimizer.lrr`: no such key in the config; did you mean `lr`?"
    assert error.file.endswith("config.yaml")


def test_a_missing_key_by_item_access_is_a_key_error(cfg) -> None:
    with pytest.raises(KeyError, match=r"`model\.nmae`: no such key in the config; did you mean `name`"):
        _ = cfg["model"]["nmae"]


def test_a_missing_section_with_nothing_close_has_no_suggestion(cfg) -> None:
    with pytest.raises(ConfigKeyError) as info:
        _ = cfg.wandb
    assert info.value.hint is None
    assert info.value.path == "wandb"


@pytest.mark.parametrize("index", [3, -4, "first"])
def test_a_list_index_out_of_range_is_an_index_error_naming_the_list(cfg, index) -> None:
    with pytest.raises(ConfigIndexError) as info:
        _ = cfg.model.layers[index]
    assert isinstance(info.value, IndexError)
    assert f"`model.layers`: index {index} is out of range for a list of 3" in str(info.value)
    assert info.value.line == 3


def test_select_of_a_missing_path_without_default_names_it(cfg) -> None:
    with pytest.raises(ConfigKeyError, match=r"`optimizer.momentun`: no such key in the config"):
        cfg.select("optimizer.momentun")


def test_select_into_a_plain_value_without_default_is_an_error(cfg) -> None:
    with pytest.raises(ConfigKeyError, match=r"`model.name`: is a value \('gpt2'\), not a section"):
        cfg.select("model.name.first")


def test_pop_of_a_missing_key_without_default_is_an_error(cfg) -> None:
    with pytest.raises(ConfigKeyError, match=r"`optimizer\.momentum`: no such key"):
        cfg.optimizer.pop("momentum")


def test_deleting_a_missing_key_suggests_the_closest(cfg) -> None:
    with pytest.raises(ConfigKeyError, match="did you mean `betas`"):
        del cfg.optimizer["beta"]


@pytest.mark.parametrize("data", [[1, 2], "text", None])
def test_config_from_dict_refuses_anything_but_a_mapping(data) -> None:
    with pytest.raises(ConfigError, match="a config must be a mapping"):
        config_from_dict(data)


def test_select_into_a_value_from_the_environment_shows_the_reference_not_the_value(monkeypatch) -> None:
    monkeypatch.setenv("AMC_VALUE", "sekrit-123")
    cfg = config_from_dict({"run": {"name": "${env:AMC_VALUE}", "hf_token": "abc-456"}})
    with pytest.raises(ConfigKeyError) as info:
        cfg.select("run.name.first")
    assert "is a value ('${env:AMC_VALUE}')" in str(info.value) and "sekrit-123" not in str(info.value)
    with pytest.raises(ConfigKeyError, match="is a value \\(<redacted>\\)"):
        cfg.select("run.hf_token.first")
