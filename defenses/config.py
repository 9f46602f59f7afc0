"""The one configuration every defense is built from (CLI, scenario files and tests share it).

Field names follow the libraries: Opacus (``noise_multiplier``, ``max_grad_norm``, ``delta``,
``accountant``) and Flower (``clipping_norm`` for central/local DP, ``sensitivity`` and
``epsilon`` as :class:`flwr.clientapp.mod.LocalDpMod` takes them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from fl.core.errors import ConfigError
from fl.core.schema import above, at_least, check_bounds, setting, within

CLIPPING_MODES = ("server-fixed", "client-fixed", "adaptive", "client-adaptive")
ACCOUNTANTS = ("rdp", "prv")
DROPOUT_PLACEMENTS = ("head", "all")
MAX_QUANTIZE_BITS = 16
# The settings each defense reads (a setting given for another defense is a mistake: refused).
DEFENSE_SETTINGS: dict[str, tuple[str, ...]] = {
    "none": (),
    "dropout": ("dropout", "dropout_placement"),
    "dp-local": ("noise_multiplier", "target_epsilon", "delta", "max_grad_norm", "accountant"),
    "dp-central": (
        "noise_multiplier",
        "target_epsilon",
        "delta",
        "clipping_norm",
        "clipping",
        "clipped_count_stddev",
        "target_quantile",
        "clip_norm_lr",
    ),
    "ldp": ("clipping_norm", "sensitivity", "epsilon", "delta"),
    "prune": ("prune_ratio",),
    "quantize": ("quantize_bits", "stochastic_rounding"),
    "secagg": (),
}


@dataclass(frozen=True)
class DefenseConfig:
    """Which defense to run and its parameters; each defense reads only the fields it needs."""

    name: str = setting(
        "none",
        help="Defense: none, dropout, dp-local, dp-central, ldp, prune, quantize, secagg.",
        flag="--defense",
        key="defense",
    )
    dropout: float = setting(
        0.25,
        help="dropout: the model's dropout rate p (0.25: the DIA paper's MLP).",
        bounds=within(0, 1, high_open=True),
    )
    dropout_placement: str | None = setting(
        None, help="dropout: head|all, where models with the option place it (default: the model's own)."
    )
    # DP-SGD (dp-local) and central DP (dp-central): Gaussian noise std = noise_multiplier * clip.
    noise_multiplier: float | None = setting(
        None,
        help="dp-local/dp-central: noise std / clipping bound (default: from --target-epsilon, else 1.0).",
        bounds=at_least(0),
    )
    target_epsilon: float | None = setting(
        None,
        help="dp-local/dp-central: epsilon budget of the whole run (instead of --noise-multiplier).",
        bounds=above(0),
    )
    delta: float = setting(
        1e-5, help="dp-local/dp-central/ldp: DP delta.", bounds=within(0, 1, low_open=True, high_open=True)
    )
    max_grad_norm: float = setting(1.0, help="dp-local: per-sample clipping bound (Opacus).", bounds=above(0))
    accountant: str = setting("rdp", help="dp-local: Opacus accountant, rdp|prv.")
    clipping_norm: float = setting(
        1.0, help="dp-central/ldp: L2 bound on each client's update (the initial bound if adaptive).", bounds=above(0)
    )
    clipping: str = setting(
        "server-fixed", help="dp-central: server-fixed|client-fixed|adaptive (server-side)|client-adaptive."
    )
    clipped_count_stddev: float | None = setting(
        None,
        help="dp-central adaptive: noise std on the clipped-update count (Andrew et al.; default: Flower's "
        "clients per round / 20, which must exceed noise_multiplier / 2).",
        bounds=above(0),
    )
    target_quantile: float = setting(
        0.5,
        help="dp-central adaptive: quantile of the update norms the bound tracks (Andrew et al.).",
        bounds=within(0, 1, low_open=True, high_open=True),
    )
    clip_norm_lr: float = setting(
        0.2, help="dp-central adaptive: the bound's geometric learning rate.", bounds=above(0)
    )
    sensitivity: float | None = setting(
        None,
        help="ldp: L2 sensitivity LocalDpMod scales its noise by, >= 2 x clipping norm (default: 2 x clipping "
        "norm, the true one).",
        bounds=above(0),
    )
    epsilon: float = setting(1.0, help="ldp: per-round epsilon of each client's release (LocalDpMod).", bounds=above(0))
    prune_ratio: float = setting(
        0.9,
        help="prune: fraction of the update's entries zeroed per tensor (0.9 keeps the 10 % largest).",
        bounds=within(0, 1, high_open=True),
    )
    quantize_bits: int = setting(
        8, help="quantize: bits per update entry (2**bits levels per tensor).", bounds=within(1, MAX_QUANTIZE_BITS)
    )
    stochastic_rounding: bool = setting(
        True, help="quantize: unbiased stochastic rounding (default), else round to nearest."
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.dropout_placement is not None and self.dropout_placement not in DROPOUT_PLACEMENTS:
            _bad("dropout_placement", self.dropout_placement, f"one of {', '.join(DROPOUT_PLACEMENTS)}")
        if self.target_epsilon is not None:
            if math.isinf(self.target_epsilon):  # Opacus would plan some finite noise for it
                _bad("target_epsilon", self.target_epsilon, "a finite value > 0 (for no DP use the none defense)")
            if self.noise_multiplier is not None:
                raise ConfigError(
                    f"noise_multiplier={self.noise_multiplier} and target_epsilon={self.target_epsilon} "
                    "are exclusive; give one of them"
                )
        if self.accountant not in ACCOUNTANTS:
            _bad("accountant", self.accountant, f"one of {', '.join(ACCOUNTANTS)}")
        if self.clipping not in CLIPPING_MODES:
            _bad("clipping", self.clipping, f"one of {', '.join(CLIPPING_MODES)}")
        if not isinstance(self.quantize_bits, int):
            _bad("quantize_bits", self.quantize_bits, f"an integer in [1, {MAX_QUANTIZE_BITS}]")
        if not isinstance(self.stochastic_rounding, bool):
            _bad("stochastic_rounding", self.stochastic_rounding, "true or false")

    @property
    def sigma(self) -> float:
        """The explicit noise multiplier, 1.0 when neither it nor ``target_epsilon`` is given."""
        return 1.0 if self.noise_multiplier is None else self.noise_multiplier

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DefenseConfig:
        """Build from a scenario-file table or CLI options; unknown keys are errors."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown defense option {', '.join(map(repr, unknown))}; valid options: {', '.join(known)}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (for ``config.json``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def unread_setting(name: str, given: Iterable[str]) -> str | None:
    """The first of the ``given`` settings that defense ``name`` does not read (None: all are its own).

    A user who writes ``--dropout 0.3`` without ``--defense dropout`` would otherwise train without
    dropout and label the run as if it had some.
    """
    reads = DEFENSE_SETTINGS.get(name)
    if reads is None:  # an unknown defense is refused by whoever builds it
        return None
    return next((k for k in given if k != "name" and k not in reads), None)


def _bad(key: str, value: object, valid: str) -> None:
    raise ConfigError(f"defense option {key}={value!r} is invalid; expected {valid}")
