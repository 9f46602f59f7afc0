"""The one interface every inversion attack shares (the breaching-style ``reconstruct``).

An attack takes observations (what the server sent and what the clients sent back, plus
what the attacker knows) and returns an :class:`InversionResult` per observation. Attacks
register a class in :data:`ATTACKS` with a frozen config dataclass ``Config`` and a
``run(observations, config, *, device, progress)`` method that attacks all the given
victims at once (batched where the attack allows it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch

from attacks.inversion.cost import CostBudget, InversionCost, admit, estimate
from attacks.inversion.observation import Observation
from fl.core.errors import ConfigError
from fl.core.registry import Registry
from fl.core.schema import Setting, coerce, settings_of, value_text


@dataclass(frozen=True)
class InversionResult:
    """What one attack recovered from one observation (tensors on the CPU).

    ``inputs``: (num_examples, C, H, W) in [0, 1]; ``labels``: (num_examples,) the labels the
    attack used (``label_source``: "recovered", "known", or "optimized" when it learned them, as DLG);
    ``trace``: gradient-matching loss per logged iteration (``{"iter": [...], "loss": [...]}``);
    ``grad_loss``: the final matching loss of the kept restart; ``time_s``: wall time of the
    optimization divided by the number of victims attacked together; ``masks``: recovered
    dropout masks (DIA) keyed ``<site>.mask``, shape (local_steps, batch_size, *site).
    """

    attack: str
    inputs: torch.Tensor
    labels: torch.Tensor
    label_source: str
    trace: dict[str, list[int] | list[float]] = field(default_factory=lambda: {"iter": [], "loss": []})
    grad_loss: float = float("nan")
    time_s: float = 0.0
    iters: int = 0
    masks: dict[str, torch.Tensor] | None = field(default=None, repr=False)


class Attack(Protocol):
    """An inversion attack: a config dataclass and a batched ``run``."""

    Config: type[Any]  # class attribute; not ClassVar, which mypy would make every attack declare

    def run(
        self,
        observations: Sequence[Observation],
        config: Any,
        *,
        device: torch.device,
        progress: bool = False,
        seeds: Sequence[int] | None = None,
    ) -> list[InversionResult]:
        """Reconstruct every observation's inputs; one result per observation, in order.

        ``seeds[k]`` seeds victim k's initialisation (default: derived from ``config.seed``).
        """
        ...


ATTACKS: Registry[type[Attack]] = Registry("attack")


RUN_SETTINGS = ("iters", "restarts", "seed")
"""Settings every run sets for all its attacks at once, so not attack options."""


def attack_settings(attacks: Sequence[str] | None = None) -> tuple[Setting, ...]:
    """The own settings of ``attacks`` (default: every registered one), one row per name (the
    first attack declaring it), with no default: each attack keeps its own unless the option is
    given. The help ends with the attacks that take the setting and their defaults (a flag's
    default, off, goes without saying)."""
    rows: dict[str, Setting] = {}
    defaults: dict[str, dict[str, list[str]]] = {}
    for attack in ATTACKS.names() if attacks is None else attacks:
        for s in settings_of(ATTACKS.get(attack).Config):
            if s.name in RUN_SETTINGS:
                continue
            rows.setdefault(s.name, s)
            if s.default is not None and s.kind is not bool:
                defaults.setdefault(s.name, {}).setdefault(value_text(s.default), []).append(attack)
    return tuple(
        replace(
            s,
            default=None,
            optional=True,
            help=f"{s.help} [default {'; '.join(_by_attack(defaults[s.name]))}]" if s.name in defaults else s.help,
        )
        for s in rows.values()
    )


def gather_attack_options(options: Mapping[str, Any], settings: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A run's attack options: ``--attack-option`` values as their settings' types (a text such as
    ``lr_decay_at=0.5,0.75`` parsed; names no attack has are left to :func:`check_applies` to refuse),
    then the attack settings given by name (flags, scenario keys), which win."""
    known = {s.name: s for s in attack_settings()}
    out = {}
    for name, value in options.items():
        s = known.get(name)
        if s is not None and isinstance(value, str) and s.kind is not str:
            try:
                value = s.from_text(value)
            except ValueError as err:
                raise ConfigError(f"attack option {name}: {err}") from None
        out[name] = value if s is None else coerce(value, s.hint, name)
    for part in settings:
        out.update(part)
    return out


def takers(setting: str) -> list[str]:
    """The registered attacks whose config has ``setting``."""
    return [a for a in ATTACKS.names() if setting in config_fields(a)]


def check_applies(setting: str, chosen: Sequence[str]) -> None:
    """Refuse attack setting ``setting`` unless one of the ``chosen`` attacks takes it, in the one line
    every command and scenario gives: the setting, the attacks that take it and its flag."""
    used = takers(setting)
    if not used:
        valid = ", ".join(s.name for s in attack_settings())
        raise ConfigError(f"no attack has the setting {setting!r}; valid settings: {valid}")
    if set(used) & set(chosen):
        return
    flag = {s.name: s.flag for s in attack_settings() if s.cli}.get(setting, f"--attack-option {setting}=...")
    chosen_text = f"attack is {chosen[0]}" if len(chosen) == 1 else f"attacks are {', '.join(chosen)}"
    raise ConfigError(f"{setting} applies to {', '.join(used)} ({flag}); the chosen {chosen_text}")


def _by_attack(defaults: dict[str, list[str]]) -> list[str]:
    return [", ".join(attacks) + ": " + value for value, attacks in defaults.items()]


def config_fields(attack: str) -> tuple[str, ...]:
    """The settings ``attack``'s config has (what ``attack_config`` accepts as overrides)."""
    return tuple(ATTACKS.get(attack).Config.__dataclass_fields__)


def config_default(attack: str, name: str) -> Any:
    """The default of setting ``name`` in ``attack``'s config (None where it has no such setting)."""
    f = ATTACKS.get(attack).Config.__dataclass_fields__.get(name)
    return None if f is None else f.default


def attack_config(attack: str, config: Any = None, **overrides: Any) -> Any:
    """The attack's config: ``config`` checked against the attack, or its defaults + ``overrides``."""
    cls = ATTACKS.get(attack)
    if config is None:
        return _make_config(cls.Config, attack, overrides)
    if not isinstance(config, cls.Config):
        raise ConfigError(f"attack {attack!r} takes a {cls.Config.__name__}, got {type(config).__name__}")
    return config


def _make_config(cfg_cls: type, attack: str, values: dict[str, Any]) -> Any:
    valid = config_fields(attack)
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(
            f"attack {attack!r} has no option {', '.join(map(repr, unknown))}; valid options: {', '.join(valid)}"
        )
    return cfg_cls(**values)


def invert_many(
    observations: Sequence[Observation],
    attack: str,
    *,
    config: Any = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    seeds: Sequence[int] | None = None,
    budget: CostBudget | None = None,
) -> list[InversionResult]:
    """Attack several independent victims at once (one batched optimization where possible).

    Victim k's initialisation is seeded by ``seeds[k]`` (default ``derive_seed(config.seed,
    "victim", k)``), so attacking victims together or one by one gives the same results.
    An optimization attack is first costed (:mod:`attacks.inversion.cost`): one over ``budget``
    (default: :meth:`CostBudget.from_env`) is refused with :class:`CostError`, and one of more
    than :data:`attacks.inversion.cost.ANNOUNCE_SECONDS` is announced before it starts.
    """
    if not observations:
        return []
    cls = ATTACKS.get(attack)
    cfg = attack_config(attack, config)
    if seeds is not None and len(seeds) != len(observations):
        raise ConfigError(f"{len(seeds)} seeds for {len(observations)} observations")
    device = torch.device(device)
    if (cost := attack_cost(observations, attack, cfg, device)) is not None:
        admit(cost, budget or CostBudget.from_env(), device)
    return cls().run(list(observations), cfg, device=device, progress=progress, seeds=seeds)


def attack_cost(
    observations: Sequence[Observation], attack: str, config: Any, device: torch.device | str = "cpu"
) -> InversionCost | None:
    """The estimated cost of running ``attack`` with ``config`` on ``observations`` together
    (:func:`attacks.inversion.cost.estimate`); None for an attack that does not optimise."""
    if not hasattr(config, "iters"):
        return None
    evaluations = config.iters * getattr(config, "max_iter", 1)  # L-BFGS (DLG): up to max_iter per step
    return estimate(
        observations,
        attack,
        iters=evaluations,
        restarts=getattr(config, "restarts", 1),
        device=device,
        masks=hasattr(config, "mask_reg"),
        sequential=getattr(ATTACKS.get(attack), "sequential", False),
    )


def invert(
    obs: Observation,
    attack: str,
    *,
    config: Any = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> InversionResult:
    """Reconstruct the inputs behind one observed update with attack ``attack``."""
    return invert_many([obs], attack, config=config, device=device, progress=progress)[0]
