"""``InversionConfig``: one inversion experiment, and the inversion kind's schema.

The schema is the config's own settings plus every attack's settings (``tv_weight``,
``mask_reg``, ...), flat: ``fedleak invert``'s options and the keys of a scenario's
``[[inversion]]`` block come from it. An attack setting lands in ``attack_options`` and reaches
the attacks whose config has it; the others keep their defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import attacks.inversion  # noqa: F401  (registration)
from attacks.inversion.base import (
    ATTACKS,
    RUN_SETTINGS,
    attack_config,
    attack_settings,
    check_applies,
    config_default,
    gather_attack_options,
    takers,
)
from attacks.inversion.lpips import check_lpips_paths
from attacks.inversion.readout import check_readable
from fl.core.errors import ConfigError
from fl.core.schema import Schema, above, at_least, check_bounds, setting, settings_of, within

MODEL_TV_WEIGHT = {"vit": 1e-5}
"""TV weights that replace the attacks' defaults on some architectures: IG's 1e-4 over-smooths the
ViT (docs/inversion.md, "Results")."""
DROPOUT_ATTACKS = ("dia", "oracle")  # attacks that learn or are given dropout masks
DEFAULT_ATTACKS = ("ig", *DROPOUT_ATTACKS)
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


def parse_indices(text: str) -> tuple[int, ...]:
    """``"0..7"`` (inclusive), ``"3"``, or comma lists of both (``"0..3,10"``)."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = _RANGE.match(part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"range {part!r} runs backwards")
            out += range(lo, hi + 1)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ValueError(f"{part!r} is not an index or a range like 0..7 (expected e.g. 0..7 or 0,3,5)")
    if len(set(out)) != len(out):
        raise ValueError("indices repeat")
    return tuple(out)


@dataclass(frozen=True)
class InversionConfig:
    """One inversion experiment: victims, their clients' training, and the attacks compared."""

    attacks: tuple[str, ...] = setting(
        (),
        help="Attack(s), repeatable or comma-separated (default: ig, dia and oracle; ig alone at dropout 0).",
        choices=tuple(ATTACKS.names()),
        flag="--attack",
    )
    model: str = setting("mlp", help="Model from `fedleak models`.")
    model_options: dict[str, Any] = setting(
        factory=dict,
        help="Model option, e.g. bias=true or width=32 (repeatable; see `fedleak models`).",
        flag="--model-option",
    )
    dropout: float = setting(0.25, help="Dropout rate p of the client's model.", bounds=within(0, 1, high_open=True))
    dataset: str = setting("cifar10", help="Dataset from `fedleak datasets`.")
    split: str = setting("test", help="The split the victims' images come from.", choices=("train", "test"))
    indices: tuple[int, ...] = setting(
        (0,), help="Victim image indices: 0..7 (inclusive), 3, or 0,4,9.", flag="--index", parse=parse_indices
    )
    iters: int = setting(400, help="Attack iterations.", bounds=at_least(1))
    known_labels: bool = setting(False, help="Give the attacker the true labels (default: it recovers them).")
    batch_size: int = setting(
        1, help="Images per client update (consecutive indices form one client).", bounds=at_least(1)
    )
    local_steps: int = setting(
        1, help="Client SGD steps; more than one sends a weight delta, inverted by unrolling.", bounds=at_least(1)
    )
    lr: float = setting(0.1, help="Client learning rate.", bounds=above(0))
    restarts: int = setting(1, help="Attack restarts (IG family).", bounds=at_least(1))
    attack_options: dict[str, Any] = setting(
        factory=dict,
        help="Any attack setting, e.g. bn_prior=0.01 (repeatable; each reaches the attacks whose config has it, "
        "see docs/inversion.md).",
        flag="--attack-option",
    )
    seed: int = setting(0, help="Model weights, client RNGs and attack initialisations.", cli=False)
    lpips_weights: str | None = setting(
        None,
        help="Also score LPIPS (AlexNet, v0.1): the lpips package's weights/v0.1/alex.pth, a local file.",
        metavar="FILE",
    )
    lpips_backbone: str | None = setting(
        None,
        help="torchvision's AlexNet ImageNet state dict for LPIPS, a local file (not needed when --lpips-weights "
        "holds a whole lpips.LPIPS state dict).",
        metavar="FILE",
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        if not self.attacks:
            object.__setattr__(self, "attacks", DEFAULT_ATTACKS if self.dropout > 0 else ("ig",))
        for name in self.attacks:
            ATTACKS.get(name)
        if not self.indices or len(self.indices) % self.batch_size:
            raise ConfigError(f"{len(self.indices)} indices do not split into clients of batch_size {self.batch_size}")
        if min(self.indices) < 0:
            raise ConfigError(f"indices must be >= 0, got {min(self.indices)}")
        check_lpips_paths(self.lpips_weights, self.lpips_backbone)
        if self.dropout == 0.0 and set(DROPOUT_ATTACKS) & set(self.attacks):
            raise ConfigError("attacks 'dia' and 'oracle' need a model with dropout > 0; use 'ig' for dropout 0")
        self._check_attack_options()

    def _check_attack_options(self) -> None:
        """Each option must reach one of the run's attacks, and each attack's config takes its values."""
        options = self.attack_options
        if taken := sorted(set(RUN_SETTINGS) & set(options)):
            raise ConfigError(f"--attack-option {taken[0]}=... is set by --{taken[0]}, not as an attack option")
        for name in options:
            check_applies(name, self.attacks)
        for attack in self.attacks:
            attack_config(attack, **self.attack_overrides(attack))
        if options.get("mask_readout"):
            check_readable(self.update_kind, self.batch_size, self.local_steps)
        if options.get("lr_decay_at") is not None:
            plateau = [a for a in self.attacks if self.recipe_of(a) == "dia"]
            if plateau:
                raise ConfigError(
                    f"lr_decay_at (--lr-decay-at) sets recipe ig's schedule, but {', '.join(plateau)} "
                    "run(s) the DIA authors' recipe (a plateau schedule); add --recipe ig or drop it"
                )

    @property
    def update_kind(self) -> str:
        """What each client sends: its gradient after one local step, else its weight delta."""
        return "gradient" if self.local_steps == 1 else "delta"

    def label(self, attack: str) -> str:
        """How tables and grids name ``attack``: a DIA handed some true masks says which, and a
        cosine attack with balanced layer weights says so."""
        options = self.attack_options
        parts = []
        if attack == "dia":
            parts += (["readout"] if options.get("mask_readout") else []) + (
                [f"given {options['given_sites']}"] if options.get("given_sites") else []
            )
            if options.get("mask_penalty") == "square":
                parts.append("squared penalty")
        if options.get("layer_weights") == "balanced" and attack in takers("layer_weights"):
            parts.append("balanced")
        default, recipe = config_default(attack, "recipe"), options.get("recipe")
        if default is not None and recipe is not None and recipe != default:
            parts.append(f"{recipe} recipe")
        return f"{attack} ({'; '.join(parts)})" if parts else attack

    def recipe_of(self, attack: str) -> str | None:
        """The loop recipe ``attack`` runs in this run (None for attacks without one)."""
        default = config_default(attack, "recipe")
        return None if default is None else self.attack_options.get("recipe") or default

    def attack_overrides(self, attack: str) -> dict[str, Any]:
        """The settings this run imposes on ``attack`` (only those its config has)."""
        wanted = {
            "iters": self.iters,
            "restarts": self.restarts,
            "seed": self.seed,
            "tv_weight": MODEL_TV_WEIGHT.get(self.model),
            **self.attack_options,
        }
        return {k: v for k, v in wanted.items() if attack in takers(k) and v is not None}


@cache
def inversion_schema() -> Schema:
    """The inversion kind of run: ``InversionConfig``'s settings, then every attack's."""
    own = settings_of(InversionConfig)
    extra = tuple(
        replace(s, help=s.help[:-1] + "".join(f"; on the {m}: {w:g}" for m, w in MODEL_TV_WEIGHT.items()) + "]")
        if s.name == "tv_weight"
        else s
        for s in attack_settings()
        if s.name not in {o.name for o in own}
    )
    return Schema("inversion", own + extra, _assemble)


def _assemble(values: dict[type, dict[str, Any]], fixed: dict[str, Any]) -> InversionConfig:
    own = {**values.pop(InversionConfig, {}), **fixed}
    given = own.pop("attack_options", {})
    return InversionConfig(**own, attack_options=gather_attack_options(given, values.values()))


def inversion_config(values: Mapping[str, Any], *, where: str = "", **fixed: Any) -> InversionConfig:
    """An ``InversionConfig`` from flat settings keyed by name (``None``: the default)."""
    config: InversionConfig = inversion_schema().build(values, where=where, **fixed)
    return config
