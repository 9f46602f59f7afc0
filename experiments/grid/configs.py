"""Typed configs from plain mappings: unknown keys and wrong types fail with one line."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from fl.core.errors import ConfigError


def config_from_mapping(cls: type, values: Mapping[str, Any], *, where: str) -> Any:
    """Build the frozen dataclass ``cls`` from ``values``, checking keys and scalar types.

    Lists become tuples where the field is a tuple; ints are accepted for floats. The
    dataclass's own ``__post_init__`` validation runs last (a ``ValueError`` becomes a
    :class:`ConfigError` prefixed with ``where``).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(fields)}")
        kwargs[key] = _coerce(value, hints.get(key, Any), f"{where}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the annotation ``hint`` (best effort for unions and tuples)."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if errors else ConfigError(f"{key} = {value!r} has the wrong type")
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key} = {value!r} is invalid; valid choices: {', '.join(map(str, choices))}")
        return value
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {value!r} has the wrong type; expected a list")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        out = [_coerce(v, item, key) for v in value]
        return tuple(out) if (origin or hint) is tuple else out
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} = {value!r} has the wrong type; expected a table")
        return dict(value)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} = {value!r} has the wrong type; expected a number")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} = {value!r} has the wrong type; expected an integer")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} = {value!r} has the wrong type; expected true or false")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} = {value!r} has the wrong type; expected a string")
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_mapping(hint, value, where=key)
    return value
