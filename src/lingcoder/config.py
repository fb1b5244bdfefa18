"""Typed configs: dataclasses filled from TOML files, `--set a.b=c` overrides and command-line flags.

Every stage's config is a plain dataclass living next to the code it configures, and holds the
stage's only defaults. `load_stage_config` fills one in layers, each over the one before:

    dataclass defaults < the stage's table of `--config FILE` < `--set table.key=value` < flags given

This module only turns nested dicts into dataclasses, checking every key and every value's type so
that a typo or a wrong type is an error naming the key (`model.num_experts: expected int, got 'x'`).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from lingcoder.errors import LingcoderError

T = TypeVar("T")


class ConfigError(LingcoderError):
    """A config file or override is invalid; the message names the key."""


# One TOML file can configure a whole recipe. Each stage reads its own tables and skips these
# (the tables of the other stages), so a typo in a table name is still an error.
STAGE_TABLES = ("run", "curate", "tokenizer", "tokenize", "synth", "sft", "dpo", "expert_usage", "eval", "experiment",
                "serve", "generate")


def without_tables(data: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """`data` without the tables of other stages (those in STAGE_TABLES not named in `keep`)."""
    return {k: v for k, v in data.items() if k not in STAGE_TABLES or k in keep}


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=3` -> (['a', 'b'], 3). The value is read as a TOML value, else kept as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. model.num_experts=8")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return [part.strip() for part in key.split(".")], value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b=c` override set (creating tables as needed)."""
    data = _deep_copy(data)
    for text in overrides:
        keys, value = parse_override(text)
        table = data
        for depth, key in enumerate(keys[:-1]):
            nxt = table.setdefault(key, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(keys[: depth + 1])} is not a table")
            table = nxt
        table[keys[-1]] = value
    return data


def load_stage_config(cls: type[T], table: str, path: str | Path | None = None, overrides: list[str] = (),
                      flags: dict[str, Any] | None = None) -> T:
    """A stage's config from its `[table]` in `path` (other tables are other stages'), then the
    `--set table.key=value` overrides, then the command-line `flags` the user gave (None = not given)."""
    data = load_toml(path) if path else {}
    for text in overrides:
        keys, _ = parse_override(text)
        if keys[0] != table or len(keys) < 2:
            raise ConfigError(f"override {text!r}: this command reads the [{table}] table only "
                              f"(e.g. --set {table}.KEY=VALUE)")
    data = apply_overrides(data, list(overrides))
    return stage_config_from_table(cls, data, table, **{k: v for k, v in (flags or {}).items() if v is not None})


def stage_config_from_table(cls: type[T], data: dict[str, Any], table: str, /, **fields: Any) -> T:
    """The `[table]` of a whole config already read, with `fields` set over it (a run's paths, given flags).
    A dict sets keys of a nested table and keeps its others (`executor={"kind": "ray"}`)."""
    section = data.get(table, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{table}: expected a table, got {type(section).__name__}")
    return from_dict(cls, _merge(section, fields), where=table)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclass fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{_join(where, unknown[0])}: unknown key (known keys: {', '.join(sorted(fields))})"
        )
    missing = [name for name, f in fields.items() if name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{_join(where, missing[0])}: required, no default (set it in the config or by its flag)")
    kwargs = {name: _convert(hints[name], value, _join(where, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {hint}")
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(where, "list", value)
        return [_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(where, "table", value)
        val_hint = args[1] if args else Any
        return {k: _convert(val_hint, v, _join(where, k)) for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(where, "float", value)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(where, "int", value)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _type_error(where, "bool", value)
        return value
    if hint is str:
        if not isinstance(value, str):
            raise _type_error(where, "str", value)
        return value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _type_error(where, hint.__name__, value)
    return value


def _type_error(where: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: expected {expected}, got {value!r} ({type(value).__name__})")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _merge(table: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(table)
    for key, value in over.items():
        below = merged.get(key)
        merged[key] = _merge(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return merged


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}
