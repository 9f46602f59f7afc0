"""A schema for a config dataclass whose fields do not describe themselves (interim, membership)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from fl.core.schema import Schema, Setting


def plain_schema(cls: type) -> Schema:
    """Every field of ``cls`` as a setting without help text."""
    hints = typing.get_type_hints(cls)
    settings = tuple(
        Setting(
            name=f.name, owner=cls, kind=object, item=None, optional=True, hint=hints[f.name], default=None,
            help="", choices=None, flag="--" + f.name.replace("_", "-"), key=f.name, cli=False, app=False,
            parse=None, metavar=None,
        )
        for f in dataclasses.fields(cls)
    )  # fmt: skip

    def assemble(values: dict[type, dict[str, Any]], fixed: dict[str, Any]) -> Any:
        return cls(**values.get(cls, {}), **fixed)

    return Schema(cls.__name__, settings, assemble)
