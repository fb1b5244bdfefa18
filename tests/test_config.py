"""Config loading: TOML + overrides into typed dataclasses, with errors that name the key."""

from dataclasses import dataclass, field

import pytest

from lingcoder.config import ConfigError, apply_overrides, from_dict, load_toml, parse_override


@dataclass
class Inner:
    size: int = 4
    rate: float = 0.5
    name: str = "x"
    tags: list[str] = field(default_factory=list)


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    flag: bool = False
    maybe: int | None = None


def test_nested_dict_builds_dataclasses_and_ints_widen_to_float():
    cfg = from_dict(Outer, {"inner": {"size": 8, "rate": 1, "tags": ["a"]}, "flag": True})
    assert cfg.inner == Inner(size=8, rate=1.0, tags=["a"])
    assert cfg.flag is True and cfg.maybe is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"sise": 3}}, "inner.sise: unknown key"),
        ({"inner": {"size": "big"}}, "inner.size: expected int"),
        ({"inner": {"size": True}}, "inner.size: expected int"),
        ({"flag": 1}, "flag: expected bool"),
        ({"inner": {"tags": ["a", 2]}}, r"inner.tags\[1\]: expected str"),
        ({"inner": 3}, "inner: expected a table"),
    ],
)
def test_bad_keys_and_types_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_overrides_parse_toml_values_and_create_tables():
    data = apply_overrides({"inner": {"size": 1}}, ["inner.size=16", "inner.name=hello", "flag=true"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.size == 16 and cfg.inner.name == "hello" and cfg.flag is True
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


def test_bad_override_and_missing_file_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["justakey"])
    with pytest.raises(ConfigError, match="inner.size is not a table"):
        apply_overrides({"inner": {"size": 1}}, ["inner.size.x=1"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("a = = 1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_toml(bad)
