"""${a.b} references and ${env:NAME[,default]} reads: typed, lazy, located when they fail."""

from __future__ import annotations

import pytest

from automodel.config import ConfigError, config_from_dict, load_config, parse_yaml_text


def test_a_whole_value_reference_keeps_the_referenced_type() -> None:
    cfg = config_from_dict(
        {
            "base": {"lr": 1e-4, "steps": 10, "on": True, "none": None},
            "a": "${base.lr}",
            "b": "${base.steps}",
            "c": "${base.on}",
            "d": "${base.none}",
        }
    )
    assert (cfg.a, cfg.b, cfg.c, cfg.d) == (1e-4, 10, True, None)
    assert type(cfg.b) is int


def test_a_whole_value_reference_to_a_section_reads_as_that_section() -> None:
    cfg = config_from_dict({"shared": {"dim": 64, "heads": [1, 2]}, "model": {"arch": "${shared}"}})
    assert cfg.model.arch.dim == 64
    assert cfg.to_container()["model"]["arch"] == {"dim": 64, "heads": [1, 2]}


def test_references_embedded_in_text_are_replaced_by_their_text() -> None:
    cfg = config_from_dict(
        {
            "name": "gpt2",
            "steps": 100,
            "flag": False,
            "nothing": None,
            "out": "runs/${name}-${steps}/${flag}-${nothing}",
        }
    )
    assert cfg.out == "runs/gpt2-100/false-null"


def test_references_are_resolved_when_read_so_later_changes_are_seen(write_yaml) -> None:
    cfg = load_config(write_yaml("base_lr: 0.1\noptimizer:\n  lr: ${base_lr}\n"), ["--base_lr", "0.5"])
    assert cfg.optimizer.lr == 0.5
    cfg.base_lr = 0.01
    assert cfg.optimizer.lr == 0.01


def test_references_reach_into_lists_by_index() -> None:
    cfg = config_from_dict(
        {
            "data": {"files": ["a.json", {"path": "b.json"}]},
            "first": "${data.files.0}",
            "second": "${data.files.1.path}",
        }
    )
    assert (cfg.first, cfg.second) == ("a.json", "b.json")


def test_references_chain_through_other_references() -> None:
    cfg = config_from_dict({"a": "${b}", "b": "${c}", "c": 7})
    assert cfg.a == 7


def test_references_inside_lists_are_resolved_when_read() -> None:
    cfg = config_from_dict({"dim": 8, "sizes": ["${dim}", 16]})
    assert list(cfg.sizes) == [8, 16]


def test_whitespace_inside_the_braces_is_ignored() -> None:
    assert config_from_dict({"a": 1, "b": "${ a }"}).b == 1


def test_an_escaped_reference_reads_as_literal_text() -> None:
    cfg = config_from_dict({"x": 1, "alone": r"\${x}", "mixed": r"\${x} is ${x}"})
    assert cfg.alone == "${x}"
    assert cfg.mixed == "${x} is 1"
    assert cfg.to_container() == {"x": 1, "alone": "${x}", "mixed": "${x} is 1"}


def test_a_dollar_without_braces_is_plain_text() -> None:
    assert config_from_dict({"a": "costs $5 {not a ref}"}).a == "costs $5 {not a ref}"


def test_env_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("RUN_NAME", "exp1")
    cfg = config_from_dict({"name": "${env:RUN_NAME}", "dir": "out/${env:RUN_NAME}"})
    assert (cfg.name, cfg.dir) == ("exp1", "out/exp1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${env:AMC_UNSET,3}", 3),
        ("${env:AMC_UNSET,1e-4}", 1e-4),
        ("${env:AMC_UNSET, true}", True),
        ("${env:AMC_UNSET,no}", "no"),
        ("${env:AMC_UNSET,null}", None),
        ("${env:AMC_UNSET,}", None),
        ("${env:AMC_UNSET,gpt2}", "gpt2"),
        ("${env:AMC_UNSET,[1, 2]}", "[1, 2]"),
        ("${env:AMC_UNSET,a: b}", "a: b"),
        ("${env:AMC_UNSET,http://host:80/x}", "http://host:80/x"),
        ("${env:AMC_UNSET,'3'}", "'3'"),
        ("n=${env:AMC_UNSET,3}", "n=3"),
    ],
)
def test_env_defaults_are_decoded_as_yaml_scalars_only_when_the_whole_value(monkeypatch, text, expected) -> None:
    monkeypatch.delenv("AMC_UNSET", raising=False)
    value = config_from_dict({"v": text}).v
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("env_value", "expected"),
    [("8", 8), ("0.5", 0.5), ("false", False), ("abc", "abc"), ("#abc", "#abc"), ("12 #x", "12 #x"), ("1\n2", "1\n2")],
)
def test_env_values_are_decoded_as_scalars_but_never_lose_text(monkeypatch, env_value, expected) -> None:
    monkeypatch.setenv("AMC_VALUE", env_value)
    value = config_from_dict({"v": "${env:AMC_VALUE}"}).v
    assert value == expected
    assert type(value) is type(expected)


def test_a_set_variable_wins_over_the_default(monkeypatch) -> None:
    monkeypatch.setenv("AMC_STEPS", "5")
    assert config_from_dict({"v": "${env:AMC_STEPS,3}"}).v == 5


# ---- bad input ---------------------------------------------------------------------------------


def test_a_missing_reference_names_the_key_file_line_and_closest_key(write_yaml) -> None:
    path = write_yaml("optimizer:\n  lr: 0.1\nscheduler:\n  base: ${optimizer.lrr}\n")
    cfg = load_config(path)
    with pytest.raises(ConfigError) as info:
        _ = cfg.scheduler.base
    assert str(info.value) == (
        f"{path}:4: `scheduler.base`: `${{optimizer.lrr}}` refers to `optimizer.lrr`, which does not exist; "
        "did you mean `lr`?"
    )


def test_a_missing_top_level_reference_suggests_the_closest_section() -> None:
    cfg = config_from_dict({"model": {"dim": 4}, "head": "${modle.dim}"})
    with pytest.raises(ConfigError, match=r"refers to `modle`, which does not exist; did you mean `model`\?"):
        _ = cfg.head


def test_a_reference_past_the_end_of_a_list_is_an_error() -> None:
    cfg = config_from_dict({"files": ["a"], "second": "${files.1}"})
    with pytest.raises(ConfigError, match=r"`second`: `\$\{files.1\}` refers to `files.1`, which does not exist"):
        _ = cfg.second


def test_a_reference_into_a_plain_value_is_an_error() -> None:
    cfg = config_from_dict({"model": {"name": "gpt2"}, "x": "${model.name.0}"})
    with pytest.raises(ConfigError, match=r"`x`: `\$\{model.name.0\}` goes inside `model.name`, which is a value"):
        _ = cfg.x


def test_a_cycle_is_reported_with_its_chain_and_location(write_yaml) -> None:
    cfg = load_config(write_yaml("a: ${b}\nb: ${c.d}\nc:\n  d: ${a}\n"))
    with pytest.raises(ConfigError) as info:
        _ = cfg.a
    assert "references form a cycle: a -> b -> c.d -> a" in str(info.value)
    assert info.value.path == "a" and info.value.line == 1
    assert info.value.hint == "break the cycle with a literal value"


def test_a_key_referring_to_itself_is_a_cycle() -> None:
    cfg = config_from_dict({"a": "x${a}"})
    with pytest.raises(ConfigError, match="references form a cycle: a -> a"):
        _ = cfg.a


def test_a_cycle_error_leaves_the_config_usable() -> None:
    cfg = config_from_dict({"a": "${b}", "b": "${a}", "c": "${d}", "d": 1})
    with pytest.raises(ConfigError):
        _ = cfg.a
    assert cfg.c == 1


def test_a_missing_env_var_without_default_is_an_error_with_a_hint(write_yaml, monkeypatch) -> None:
    monkeypatch.delenv("AMC_MISSING", raising=False)
    path = write_yaml("logger:\n  key: ${env:AMC_MISSING}\n")
    cfg = load_config(path)
    with pytest.raises(ConfigError) as info:
        _ = cfg.logger.key
    assert str(info.value) == (
        f"{path}:2: `logger.key`: environment variable AMC_MISSING is not set; "
        "export AMC_MISSING=... before the run, or give a default: ${env:AMC_MISSING,<default>}"
    )


@pytest.mark.parametrize("body", ["env:", "env:1ABC", "env:A-B", "env:,x"])
def test_env_with_a_bad_variable_name_is_an_error(body: str) -> None:
    with pytest.raises(ConfigError, match="does not name an environment variable"):
        _ = config_from_dict({"v": "${" + body + "}"}).v


@pytest.mark.parametrize("text", ["${oc.env:HOME}", "${ENV:HOME}", "prefix-${file:/etc/passwd}"])
def test_an_unknown_resolver_is_an_error_listing_the_supported_forms(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        _ = config_from_dict({"v": text}).v
    assert "unknown resolver" in str(info.value)
    assert info.value.path == "v"
    assert "${env:NAME,default}" in info.value.hint


def test_an_empty_reference_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"`v`: empty reference `\$\{\}`; write \$\{section.key\}"):
        _ = config_from_dict({"v": "${}"}).v


def test_a_section_embedded_in_text_is_an_error() -> None:
    cfg = config_from_dict({"model": {"dim": 4}, "name": "run-${model}"})
    with pytest.raises(ConfigError, match=r"`\$\{model\}` is a section and cannot be embedded in text"):
        _ = cfg.name


def test_to_container_reports_the_first_unresolvable_reference() -> None:
    cfg = config_from_dict({"ok": 1, "bad": {"x": "${nope}"}})
    with pytest.raises(ConfigError, match=r"`bad\.x`: `\$\{nope\}` refers to `nope`"):
        cfg.to_container()
    assert cfg.to_container(resolve=False) == {"ok": 1, "bad": {"x": "${nope}"}}


def test_a_resolved_dump_reloads_to_the_same_values() -> None:
    cfg = config_from_dict({"x": 1, "ref": "${x}", "literal": r"\${x}", "mixed": r"a \${x} b ${x}"})
    reloaded = config_from_dict(parse_yaml_text(cfg.to_yaml(redact=False))[0])
    assert reloaded.to_container() == cfg.to_container() == {"x": 1, "ref": 1, "literal": "${x}", "mixed": "a ${x} b 1"}
