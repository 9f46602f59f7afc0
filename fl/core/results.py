"""Typed results: what a run returns, how it is stored, and the rows its tables are made of.

A result is a frozen dataclass with :meth:`RunResult.rows`: ``{row: {metric: number}}``, one row
per attack under the name tables give it (``""``: the run as a whole). It is stored with
:func:`fl.core.runs.to_jsonable` (``inf`` and ``nan`` as text) and read back with :func:`from_json`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class RunResult(Protocol):
    """What every kind of run returns."""

    def rows(self) -> dict[str, dict[str, float]]:
        """The numbers tables show: ``{row: {metric: value}}`` (``""``: the run as a whole)."""
        ...

    def to_json(self) -> Any:
        """What the run's summary file holds (read back by the result's ``from_json``)."""
        ...


def from_json(cls: type[T], data: Mapping[str, Any]) -> T:
    """The dataclass ``cls`` from its stored JSON (as :func:`fl.core.runs.to_jsonable` wrote it)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: _value(v, hints[k]) for k, v in data.items() if k in names})


def _value(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)][:1]
        origin = typing.get_origin(hint)
    if hint is float:
        return float(value) if isinstance(value, str) else value  # "inf", "nan"
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_json(hint, value)  # type: ignore[arg-type]
    if origin in (dict, Mapping) and isinstance(value, Mapping):
        key, item = typing.get_args(hint) or (Any, Any)
        return {(int(k) if key is int else k): _value(v, item) for k, v in value.items()}
    if origin in (list, tuple) and isinstance(value, list):
        (item, *_) = typing.get_args(hint) or (Any,)
        items = [_value(v, item) for v in value]
        return tuple(items) if origin is tuple else items
    return value
