"""Config fields that describe themselves: one place for a setting's default, help text and choices.

A frozen config dataclass declares each user-facing setting with :func:`setting`; :func:`settings_of`
reads them back as :class:`Setting` rows. A :class:`Schema` is one kind of run's settings, flat and
in order, with the function that assembles them into the kind's typed config: the command line
(``experiments/cli/schema.py``), the scenario keys (``experiments/grid``) and the Flower run config
(``experiments/flower/run_config.py``) are generated from it, so a new setting is one field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from fl.core.errors import ConfigError


@dataclass(frozen=True)
class Bounds:
    """The numbers a setting takes: ``low`` to ``high`` (None: unbounded), each end open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if value != value:  # nan
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def text(self) -> str:
        """``> 0``, ``>= 1``, ``<= 16`` or ``in [0, 1)``."""
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


def at_least(low: float) -> Bounds:
    return Bounds(low=low)


def above(low: float) -> Bounds:
    return Bounds(low=low, low_open=True)


def within(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Bounds:
    return Bounds(low, high, low_open, high_open)


def setting(
    default: Any = MISSING,
    *,
    help: str,
    bounds: Bounds | None = None,
    factory: Any = None,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
    key: str | None = None,
    cli: bool = True,
    app: bool = True,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
) -> Any:
    """A dataclass field with its help text; ``choices`` the valid values (checked by the command
    line before the config sees them), ``flag`` and ``key`` a command-line flag and a scenario /
    run-config key other than the field's name, ``cli=False`` for a setting the command line sets
    otherwise, ``app=False`` for one the Flower App's run config does not take (how a local run
    executes), ``parse`` how a command-line or run-config text becomes the value (a ``ValueError``
    is the user's mistake) where the type alone does not say, ``bounds`` the numbers it takes
    (checked by :func:`check_bounds`, shown by ``--help``)."""
    metadata = {
        "help": help,
        "bounds": bounds,
        "choices": choices,
        "flag": flag,
        "key": key,
        "cli": cli,
        "app": app,
        "parse": parse,
        "metavar": metavar,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Setting:
    """One described field of a config class."""

    name: str  # the field's name
    owner: type  # the config class holding it
    kind: type  # int, float, str, bool, dict or tuple
    item: type | None  # a tuple's item type (int, float or str)
    optional: bool  # None is a valid value (unset)
    hint: Any  # the field's annotation (scenario values are checked against it)
    default: Any
    help: str
    bounds: Bounds | None
    choices: tuple[str, ...] | None
    flag: str  # the command-line flag, e.g. --local-steps
    key: str  # the scenario / Flower run-config key, e.g. local-steps
    cli: bool  # a command-line option
    app: bool  # a key of the Flower App's run config
    parse: Callable[[str], Any] | None  # text -> value, where the kind alone does not say
    metavar: str | None

    def from_text(self, text: str) -> Any:
        """The value of a command-line or run-config text (``ValueError`` names what is wrong)."""
        if self.parse is not None:
            return self.parse(text)
        if self.kind is tuple:
            item = self.item or str
            parts = [p.strip() for p in text.split(",")]
            if any(not p for p in parts):
                raise ValueError(f"{text!r} has an empty item; expected a comma list like 1,2")
            try:
                return tuple(item(p) for p in parts)
            except ValueError:
                raise ValueError(f"{text!r} is not a comma list of {item.__name__}s") from None
        if self.kind is dict:
            from fl.core.keyvalues import parse_key_values

            return parse_key_values(p.strip() for p in text.split(",") if p.strip())
        return text


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The described fields of ``cls`` in declaration order (fields without help are not settings)."""
    if cls not in _SETTINGS:  # every config's __post_init__ asks (check_bounds)
        _SETTINGS[cls] = _described(cls)
    return _SETTINGS[cls]


_SETTINGS: dict[type, tuple[Setting, ...]] = {}


def _described(cls: type) -> tuple[Setting, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if "help" not in f.metadata:
            continue
        kind, item, optional = _kind(hints[f.name])
        out.append(
            Setting(
                name=f.name,
                owner=cls,
                kind=kind,
                item=item,
                optional=optional,
                hint=hints[f.name],
                default=_default(f),
                help=f.metadata["help"],
                bounds=f.metadata["bounds"],
                choices=f.metadata["choices"],
                flag=f.metadata["flag"] or "--" + f.name.replace("_", "-"),
                key=f.metadata["key"] or f.name.replace("_", "-"),
                cli=f.metadata["cli"],
                app=f.metadata["app"],
                parse=f.metadata["parse"],
                metavar=f.metadata["metavar"],
            )
        )
    return tuple(out)


def value_text(value: Any) -> str:
    """A setting's value as a user writes it: a tuple as a comma list (``0.375,0.625,0.875``)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def check_bounds(config: Any) -> None:
    """Refuse, in one line naming the setting and its flag, a value outside its bounds (a config's
    ``__post_init__`` calls it first; checks across settings stay there)."""
    for s in settings_of(type(config)):
        value = getattr(config, s.name)
        if s.bounds is None or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not s.bounds.holds(value):
            raise ConfigError(f"{s.name}={value!r} is invalid; expected a value {s.bounds.text()} ({s.flag})")


def _kind(hint: Any) -> tuple[type, type | None, bool]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    if optional and len(args) == 1:
        hint = args[0]
    base = typing.get_origin(hint) or hint
    if base in (Mapping, typing.Mapping):
        base = dict
    item_args = [a for a in typing.get_args(hint) if a is not Ellipsis] if base is tuple else []
    return base, (item_args[0] if item_args else None), optional


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"setting {f.name!r} has no default")


@dataclass(frozen=True)
class Schema:
    """One kind of run's settings, flat and in order, and how they become its typed config.

    ``assemble`` takes the given values grouped by the class that declares them (a config and
    the configs nested in it) and the ``fixed`` values of fields outside the schema, and returns
    the kind's config (:func:`nested` for the common shape).
    """

    name: str
    settings: tuple[Setting, ...]
    assemble: Callable[[dict[type, dict[str, Any]], dict[str, Any]], Any]

    def by_name(self) -> dict[str, Setting]:
        return {s.name: s for s in self.settings}

    def build(self, values: Mapping[str, Any], *, where: str = "", **fixed: Any) -> Any:
        """The kind's config from flat ``values`` keyed by setting name (``None``: the default).

        Unknown names fail listing the valid ones; values are checked against the field's type
        (lists become tuples, integers are accepted for floats); the config checks the rest.
        ``where`` prefixes error messages (a scenario's block, e.g. ``inversion[0]``).
        """
        known = self.by_name()
        prefix = f"{where}: " if where else ""
        parts: dict[type, dict[str, Any]] = {}
        for name, value in values.items():
            if name not in known:
                raise ConfigError(f"{prefix}unknown setting {name!r}; valid settings: {', '.join(known)}")
            if value is None:
                continue
            s = known[name]
            parts.setdefault(s.owner, {})[name] = coerce(value, s.hint, f"{where}.{name}" if where else name)
        try:
            return self.assemble(parts, dict(fixed))
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{prefix}{exc}") from None


def flat_settings(config: type, nested: Mapping[str, type]) -> tuple[Setting, ...]:
    """The settings of ``config`` with those of its nested configs (field name -> class) in their place."""
    own = {s.name: s for s in settings_of(config)}
    out: list[Setting] = []
    for name in (f.name for f in fields(config)):
        if name in nested:
            out += settings_of(nested[name])
        elif name in own:
            out.append(own[name])
    return tuple(out)


def nested(config: type, parts: Mapping[str, type]) -> Callable[[dict[type, dict[str, Any]], dict[str, Any]], Any]:
    """An ``assemble`` for ``config`` holding the configs ``parts`` (field name -> class), each built
    from its own settings."""

    def assemble(values: dict[type, dict[str, Any]], fixed: dict[str, Any]) -> Any:
        inner = {name: cls(**values.get(cls, {})) for name, cls in parts.items()}
        return config(**values.get(config, {}), **inner, **fixed)

    return assemble


def coerce(value: Any, hint: Any, key: str) -> Any:
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
                return coerce(value, option, key)
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
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        item = args[0] if args else Any
        out = [coerce(v, item, key) for v in value]
        return tuple(out) if (origin or hint) is tuple else out
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
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
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        raise ConfigError(f"{key} is a group of settings; give its settings as keys of their own")
    return value
