"""Reading config files: YAML 1.2 scalars, source lines, and errors that point at the file and line."""

from __future__ import annotations

import datetime
import math
import re

import pytest

from automodel.config import ConfigError, dump_yaml, parse_yaml_text
from automodel.config.yaml_io import load_yaml_file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-4", 1e-4),
        ("3.0e+5", 3.0e5),
        ("-2E-3", -2e-3),
        (".5", 0.5),
        ("1.", 1.0),
        ("12", 12),
        ("-7", -7),
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("null", None),
        ("~", None),
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("'1e-4'", "1e-4"),
        ('"true"', "true"),
        ("1e4x", "1e4x"),
    ],
)
def test_scalars_follow_yaml_1_2_floats_and_booleans(text: str, expected: object) -> None:
    data, _ = parse_yaml_text(f"value: {text}\n")
    assert data["value"] == expected
    assert type(data["value"]) is type(expected)


def test_infinity_and_nan_are_floats() -> None:
    data, _ = parse_yaml_text("a: .inf\nb: -.inf\nc: .nan\n")
    assert data["a"] == math.inf and data["b"] == -math.inf and math.isnan(data["c"])


def test_locations_map_every_key_path_to_its_line() -> None:
    _, locations = parse_yaml_text("model:\n  name: gpt2\n  layers:\n    - 1\n    - 2\n", file="cfg.yaml")
    assert locations[("model",)] == ("cfg.yaml", 1)
    assert locations[("model", "name")] == ("cfg.yaml", 2)
    assert locations[("model", "layers", 1)] == ("cfg.yaml", 5)


def test_anchors_and_merge_keys_copy_a_section_and_let_keys_override_it() -> None:
    text = """
base: &base
  lr: 1.0e-3
  betas: [0.9, 0.99]
optimizer:
  <<: *base
  lr: 3.0e-4
schedule: *base
"""
    data, _ = parse_yaml_text(text)
    assert data["optimizer"] == {"lr": 3e-4, "betas": [0.9, 0.99]}
    assert data["schedule"] == {"lr": 1e-3, "betas": [0.9, 0.99]}


def test_a_key_overriding_a_merged_key_is_located_where_it_is_written() -> None:
    _, locations = parse_yaml_text("base: &base\n  lr: 1\noptimizer:\n  <<: *base\n  lr: 2\n")
    assert locations[("optimizer", "lr")] == ("<string>", 5)


def test_a_key_written_twice_beside_a_merge_is_still_a_duplicate() -> None:
    with pytest.raises(ConfigError, match=r"`optimizer.lr`: key `lr` appears twice \(lines 5 and 6\)"):
        parse_yaml_text("base: &base\n  lr: 1\noptimizer:\n  <<: *base\n  lr: 2\n  lr: 3\n")


def test_merge_keys_accept_a_list_of_anchors() -> None:
    data, _ = parse_yaml_text("a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n")
    assert data["c"] == {"x": 1, "y": 2, "z": 3}


def test_aliases_are_independent_copies() -> None:
    data, _ = parse_yaml_text("a: &a [1, 2]\nb: *a\n")
    data["b"].append(3)
    assert data["a"] == [1, 2]


def test_dates_are_read_as_dates() -> None:
    data, _ = parse_yaml_text("day: 2024-01-31\n")
    assert data["day"] == datetime.date(2024, 1, 31)


def test_an_empty_text_parses_to_none() -> None:
    assert parse_yaml_text("") == (None, {})


def test_load_yaml_file_returns_data_and_lines(write_yaml) -> None:
    path = write_yaml("a:\n  b: 1\n")
    data, locations = load_yaml_file(path)
    assert data == {"a": {"b": 1}}
    assert locations[("a", "b")] == (str(path), 2)


# ---- bad input ---------------------------------------------------------------------------------


def test_a_duplicate_key_names_both_lines_and_the_path(write_yaml) -> None:
    path = write_yaml(
        """
        model:
          name: gpt2
          layers: 2
          name: llama
        """
    )
    with pytest.raises(ConfigError) as info:
        load_yaml_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: `model.name`: ")
    assert "lines 2 and 4" in message
    assert info.value.path == "model.name" and info.value.line == 4


def test_a_duplicate_top_level_section_is_an_error(write_yaml) -> None:
    path = write_yaml("optimizer:\n  lr: 1\ntrainer: {}\noptimizer:\n  lr: 2\n")
    with pytest.raises(ConfigError, match=r"`optimizer`: key `optimizer` appears twice \(lines 1 and 4\)"):
        load_yaml_file(path)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("model:\n  name: gpt2\n   layers: 2\n", 3, 10),
        ("model:\n  layers: [1, 2\noptimizer: {}\n", 3, 10),
        ('model:\n  name: "gpt2\n', 3, 1),
        ("a: 1\nb: : 2\n", 2, 4),
    ],
)
def test_a_syntax_error_names_the_file_line_and_column(write_yaml, text: str, line: int, column: int) -> None:
    path = write_yaml(text)
    with pytest.raises(ConfigError) as info:
        load_yaml_file(path)
    assert str(info.value).startswith(f"{path}:{line}: invalid YAML (line {line}, column {column})")
    assert info.value.line == line
    assert "indentation" in info.value.hint


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_file_is_an_error(write_yaml, text: str) -> None:
    path = write_yaml(text)
    with pytest.raises(ConfigError, match="the config file is empty"):
        load_yaml_file(path)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")])
def test_a_top_level_that_is_not_a_mapping_is_an_error(write_yaml, text: str, kind: str) -> None:
    path = write_yaml(text)
    with pytest.raises(ConfigError, match=f"must be a mapping of sections, got a {kind}") as info:
        load_yaml_file(path)
    assert info.value.file == str(path)


def test_a_missing_file_is_an_error_naming_it(tmp_path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_yaml_file(path)
    assert info.value.file == str(path)
    assert "-c/--config" in info.value.hint


def test_a_directory_instead_of_a_file_is_an_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        load_yaml_file(tmp_path)


def test_a_file_that_is_not_utf8_is_an_error(tmp_path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_yaml_file(path)


@pytest.mark.parametrize(("text", "key"), [("true: 1\n", "True"), ("1.5: x\n", "1.5"), ("? [1, 2]\n: x\n", "[1, 2]")])
def test_keys_that_are_not_strings_or_integers_are_errors(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"<string>:1: mapping keys must be strings, got {key}")):
        parse_yaml_text(text)


def test_an_alias_inside_its_own_anchor_is_an_error() -> None:
    with pytest.raises(ConfigError, match="a YAML alias refers to itself"):
        parse_yaml_text("a: &a [1, *a]\n")


def test_an_alias_to_an_unknown_anchor_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^<string>:1: invalid YAML \(line 1, column 4\): found undefined alias"):
        parse_yaml_text("a: *nothing\n")


# ---- writing -----------------------------------------------------------------------------------

TRICKY_VALUES = [
    "1e-4",
    "1.0",
    ".5",
    "no",
    "yes",
    "off",
    "True",
    "null",
    "~",
    "123",
    "0x1F",
    "1_000",
    "",
    " padded ",
    "multi\nline\ntext\n",
    "colon: inside",
    "# not a comment",
    "- not a list",
    "${not.resolved}",
    "caf\u00e9",
]


@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_dump_yaml_writes_strings_that_reload_as_the_same_strings(value: str) -> None:
    data = {"section": {"value": value, "in_list": [value]}}
    reloaded, _ = parse_yaml_text(dump_yaml(data))
    assert reloaded == data


def test_dump_yaml_keeps_numbers_booleans_and_none_typed() -> None:
    data = {"lr": 1e-4, "tiny": 1e-10, "big": 1e20, "steps": 100, "flag": False, "none": None, "neg": -0.5}
    reloaded, _ = parse_yaml_text(dump_yaml(data))
    assert reloaded == data
    assert all(type(reloaded[k]) is type(v) for k, v in data.items())


def test_dump_yaml_keeps_key_order_and_block_style() -> None:
    text = dump_yaml({"z": 1, "a": {"b": [1, 2]}})
    assert text == "z: 1\na:\n  b:\n  - 1\n  - 2\n"


def test_dump_yaml_writes_tuples_set_at_runtime_as_lists() -> None:
    data, _ = parse_yaml_text(dump_yaml({"betas": (0.9, 0.95)}))
    assert data == {"betas": [0.9, 0.95]}


def _laughs(levels: int, width: int = 9) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_is_refused_naming_the_file_without_expanding_it(write_yaml) -> None:
    path = write_yaml(_laughs(10))  # 9**10 values once expanded
    with pytest.raises(ConfigError) as info:
        load_yaml_file(path)
    assert info.value.file == str(path)
    assert "expands to more than 1,000,000 values through anchors and aliases" in info.value.message


def test_a_merge_key_bomb_is_refused_too() -> None:
    lines = ["m0: &m0 {x: 1, y: 2}", *(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}" for i in range(1, 40))]
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_yaml_text("\n".join(lines), "merge.yaml")


def test_aliases_that_expand_to_a_reasonable_size_are_read() -> None:
    data, _ = parse_yaml_text(_laughs(4))
    assert len(data["a3"]) == 9 and data["a3"][0][0][0] == ["lol"] * 9


def test_a_document_nested_too_deeply_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_yaml_text("[" * 5000 + "]" * 5000, "deep.yaml")
