"""``KEY=VALUE`` option text, shared by the CLI's repeatable options and the Flower run config."""

from __future__ import annotations

import json
from collections.abc import Iterable


def parse_key_values(items: Iterable[str]) -> dict[str, object]:
    """``KEY=VALUE`` items to a dict; values are read as JSON (numbers, true/false), else kept as text.

    Raises ``ValueError`` naming the first item that is not ``KEY=VALUE``.
    """
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r} is not KEY=VALUE (e.g. bias=true or width=16)")
        try:
            out[key] = json.loads(raw.lower() if raw.lower() in ("true", "false") else raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def parse_int_list(text: str) -> tuple[int, ...]:
    """``"1,3,5"`` to ``(1, 3, 5)``; raises ``ValueError`` naming the text when an item is not an integer."""
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of integers") from None
