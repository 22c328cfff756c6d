"""Command-line overrides: --a.b v, --a.b=v, --+new v, --~a.b, list indices, values parsed as YAML."""

from __future__ import annotations

import pytest

from automodel.config import (
    ConfigError,
    Override,
    apply_overrides,
    load_config,
    load_config_from_argv,
    parse_overrides,
    split_config_args,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--optimizer.lr", "1e-4"], Override("set", ("optimizer", "lr"), 1e-4, "--optimizer.lr 1e-4")),
        (["--optimizer.lr=1e-4"], Override("set", ("optimizer", "lr"), 1e-4, "--optimizer.lr 1e-4")),
        (
            ["--data.files.0.path", "a.json"],
            Override("set", ("data", "files", 0, "path"), "a.json", "--data.files.0.path a.json"),
        ),
        (["--+wandb.project", "demo"], Override("add", ("wandb", "project"), "demo", "--+wandb.project demo")),
        (["--~peft"], Override("delete", ("peft",), None, "--~peft")),
        (["--model.attn-impl", "sdpa"], Override("set", ("model", "attn-impl"), "sdpa", "--model.attn-impl sdpa")),
        (["--a.b=x=y"], Override("set", ("a", "b"), "x=y", "--a.b x=y")),
    ],
)
def test_parse_overrides_reads_each_form(args: list[str], expected: Override) -> None:
    assert parse_overrides(args) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-4", 1e-4),
        ("[1,2]", [1, 2]),
        ("null", None),
        ("~", None),
        ("true", True),
        ("no", "no"),
        ("-3", -3),
        ("'1e-4'", "1e-4"),
        ("{a: 1}", {"a": 1}),
        ("", None),
        ("hello world", "hello world"),
    ],
)
def test_override_values_are_parsed_as_yaml(text: str, expected: object) -> None:
    [override] = parse_overrides([f"--a.b={text}"])
    assert override.value == expected
    assert type(override.value) is type(expected)


def test_several_overrides_keep_their_order() -> None:
    overrides = parse_overrides(["--a.x", "1", "--~a.y", "--+b.z=2"])
    assert [(o.op, o.path) for o in overrides] == [("set", ("a", "x")), ("delete", ("a", "y")), ("add", ("b", "z"))]


def test_a_negative_number_is_a_value_not_a_flag() -> None:
    assert parse_overrides(["--optimizer.lr", "-1e-4"])[0].value == -1e-4


def test_apply_sets_an_existing_key_and_adds_a_keyword_to_an_existing_section() -> None:
    data = {"optimizer": {"lr": 0.1}}
    apply_overrides(data, parse_overrides(["--optimizer.lr", "1e-4", "--optimizer.weight_decay", "0.01"]))
    assert data == {"optimizer": {"lr": 1e-4, "weight_decay": 0.01}}


def test_apply_sets_inside_a_list_element_by_index() -> None:
    data = {"data": {"files": [{"path": "a"}, {"path": "b"}]}}
    apply_overrides(data, parse_overrides(["--data.files.1.path", "c"]))
    assert data["data"]["files"] == [{"path": "a"}, {"path": "c"}]


def test_apply_replaces_a_whole_list_with_a_yaml_list() -> None:
    data = {"optimizer": {"betas": [0.9, 0.999]}}
    apply_overrides(data, parse_overrides(["--optimizer.betas", "[0.8, 0.9]"]))
    assert data["optimizer"]["betas"] == [0.8, 0.9]


def test_plus_adds_a_new_top_level_section() -> None:
    data = {"model": {}}
    apply_overrides(data, parse_overrides(["--+wandb.project", "demo", "--+wandb.tags", "[a, b]"]))
    assert data == {"model": {}, "wandb": {"project": "demo", "tags": ["a", "b"]}}


def test_tilde_deletes_a_key_and_a_whole_section() -> None:
    data = {"model": {"name": "x", "dtype": "bf16"}, "peft": {"r": 8}}
    apply_overrides(data, parse_overrides(["--~model.dtype", "--~peft"]))
    assert data == {"model": {"name": "x"}}


def test_apply_records_overridden_paths_as_coming_from_the_command_line() -> None:
    data = {"optimizer": {"lr": 0.1, "betas": [0.9, 0.99]}}
    locations = {
        ("optimizer",): ("c.yaml", 1),
        ("optimizer", "betas"): ("c.yaml", 3),
        ("optimizer", "betas", 0): ("c.yaml", 4),
    }
    apply_overrides(data, parse_overrides(["--optimizer.betas", "[0.8]"]), locations)
    assert locations == {("optimizer",): ("c.yaml", 1), ("optimizer", "betas"): ("command line", 0)}


def test_load_config_applies_overrides_to_the_file(write_yaml) -> None:
    path = write_yaml("optimizer:\n  lr: 0.1\npeft:\n  r: 8\n")
    cfg = load_config(path, ["--optimizer.lr=1e-4", "--~peft", "--+wandb.project", "demo"])
    assert cfg.to_container() == {"optimizer": {"lr": 1e-4}, "wandb": {"project": "demo"}}


def test_split_config_args_separates_the_file_from_the_overrides() -> None:
    assert split_config_args(["-c", "cfg.yaml", "--a.b", "1"]) == ("cfg.yaml", ["--a.b", "1"])
    assert split_config_args(["--a.b", "-1", "--config", "cfg.yaml"]) == ("cfg.yaml", ["--a.b", "-1"])


def test_split_config_args_does_not_read_an_abbreviation_as_config() -> None:
    assert split_config_args(["-c", "cfg.yaml", "--co", "1"]) == ("cfg.yaml", ["--co", "1"])


def test_load_config_from_argv_loads_the_file_with_overrides(write_yaml) -> None:
    path = write_yaml("trainer:\n  steps: 10\n")
    assert load_config_from_argv(["-c", str(path), "--trainer.steps", "20"]).trainer.steps == 20


# ---- bad input ---------------------------------------------------------------------------------


def test_setting_an_unknown_top_level_section_suggests_the_closest_and_plus() -> None:
    data = {"optimizer": {"lr": 0.1}, "model": {}}
    with pytest.raises(ConfigError) as info:
        apply_overrides(data, parse_overrides(["--optimiser.lr", "1e-4"]))
    assert str(info.value) == (
        "command line: override `--optimiser.lr 1e-4`: there is no section `optimiser` in the config; "
        "did you mean `optimizer`, or add it with --+optimiser.lr"
    )


def test_setting_an_unknown_top_level_section_with_nothing_close_suggests_plus_only() -> None:
    with pytest.raises(ConfigError, match=r"no section `wandb` in the config; add it with --\+wandb.project$"):
        apply_overrides({"model": {}}, parse_overrides(["--wandb.project", "x"]))


def test_deleting_a_missing_key_is_an_error_with_a_suggestion() -> None:
    data = {"optimizer": {"lr": 0.1}}
    with pytest.raises(ConfigError) as info:
        apply_overrides(data, parse_overrides(["--~optimizer.lrr"]))
    assert str(info.value) == (
        "command line: override `--~optimizer.lrr`: `optimizer.lrr` does not exist; did you mean `lr`?"
    )


def test_deleting_a_missing_top_level_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"`--~pft`: `pft` does not exist; did you mean `peft`\?"):
        apply_overrides({"peft": {}}, parse_overrides(["--~pft"]))


@pytest.mark.parametrize(
    ("token", "bad_key"),
    [
        ("--a..b", "a..b"),
        ("--.a", ".a"),
        ("--a.", "a."),
        ("--a.b!", "a.b!"),
        ("--=1", ""),
        ("--a b", "a b"),
        ("--+", ""),
        ("--~~a", "~a"),
    ],
)
def test_a_malformed_key_is_an_error_showing_the_accepted_forms(token: str, bad_key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides([token, "1"])
    assert f"has a malformed key `{bad_key}`" in str(info.value)
    assert info.value.file == "command line"
    assert "--section.key VALUE" in info.value.hint


@pytest.mark.parametrize("args", [["--optimizer.lr"], ["--optimizer.lr", "--model.name", "x"]])
def test_an_override_without_a_value_is_an_error(args: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"override `--optimizer.lr` has no value; write --optimizer.lr VALUE"):
        parse_overrides(args)


@pytest.mark.parametrize("token", ["optimizer.lr=1", "-x", "--", "value"])
def test_an_argument_that_is_not_an_override_is_an_error(token: str) -> None:
    with pytest.raises(ConfigError, match=f"unexpected argument `{token}`"):
        parse_overrides([token])


def test_a_delete_with_a_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"`--~peft=x`: a delete \(~\) takes no value; write --~peft"):
        parse_overrides(["--~peft=x"])


def test_a_value_that_is_not_valid_yaml_is_an_error_naming_the_override() -> None:
    with pytest.raises(ConfigError, match=r"the value of `--a.b` is not valid YAML \(invalid YAML"):
        parse_overrides(["--a.b", "[1, 2"])


@pytest.mark.parametrize("index", ["2", "5"])
def test_a_list_index_out_of_range_is_an_error_naming_the_valid_range(index: str) -> None:
    data = {"data": {"files": ["a", "b"]}}
    with pytest.raises(ConfigError) as info:
        apply_overrides(data, parse_overrides([f"--data.files.{index}", "c"]))
    assert f"`data.files` is a list of 2, index `{index}` is not in it" in str(info.value)
    assert info.value.hint == "use an index from 0 to 1"


def test_a_name_where_a_list_index_is_needed_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"`data\.files` is a list of 1, index `first` is not in it"):
        apply_overrides({"data": {"files": ["a"]}}, parse_overrides(["--data.files.first", "x"]))


def test_setting_inside_a_plain_value_is_an_error() -> None:
    data = {"optimizer": {"lr": 0.1}}
    with pytest.raises(ConfigError, match=r"`optimizer.lr` is a value \(0.1\), not a section"):
        apply_overrides(data, parse_overrides(["--optimizer.lr.scale", "2"]))


def test_an_unknown_section_in_load_config_names_the_command_line(write_yaml) -> None:
    path = write_yaml("optimizer:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["--optimzer.lr", "1"])
    assert info.value.file == "command line"
    assert "did you mean `optimizer`" in str(info.value)


def test_no_config_file_in_argv_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"no config file given; pass -c path/to/config\.yaml"):
        split_config_args(["--a.b", "1"])


@pytest.mark.parametrize(
    "args",
    [
        ["--modle.hf_token", "abc-456"],
        ["--model.hf_token.x", "abc-456"],
        ["--model.api_key=abc-456", "--nope.x", "1"],
    ],
)
def test_no_override_message_shows_a_secret_value(args) -> None:
    data = {"model": {"hf_token": "abc-456", "name": "m"}}
    with pytest.raises(ConfigError) as info:
        apply_overrides(data, parse_overrides(args))
    assert "abc-456" not in str(info.value)


def test_an_override_of_a_secret_key_keeps_its_value_but_not_in_its_text() -> None:
    [override] = parse_overrides(["--hub.hf_token", "abc-456"])
    assert override.value == "abc-456" and override.text == "--hub.hf_token <redacted>"
