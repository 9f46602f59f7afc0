"""The Dropout Inversion Attack (Scheliga et al., "Dropout is NOT All You Need to Prevent
Gradient Leakage", AAAI 2023), and its oracle upper bound.

DIA optimizes one real-valued mask per dropout site per sample together with the images:
masks start from Bernoulli(1 - p) (``mask_init="mean"``: at 1 - p everywhere), are applied as
``x * M / (1 - p)``, clamped to [0, 1] and pulled towards the dropout rate by
``mask_reg * sum_sites |mean(1 - M) - p|``. Distance and prior are those of Inverting Gradients;
the loop is the authors' (``recipe="dia"``: learning rates cut on a plateau, the best iterate
kept; :mod:`attacks.inversion.optim`). ``recipe="ig"`` with ``mask_penalty="square"`` is the
variant fedleak ran before, with Inverting Gradients' fixed schedule and the last iterate.
``oracle`` runs IG with the client's true masks, with the prior of the DIA it is shown beside
and IG's loop (:class:`OracleConfig` says why not DIA's): the bound a mask-recovering attack can
reach. ``given_sites`` sits in between: DIA
is handed the true masks of the sites it matches and learns the rest, which measures which
dropout sites actually hide the data. ``mask_readout`` (not in the paper) first reads the masks
that a one-example update gives away through its exact zeros (:mod:`attacks.inversion.readout`)
and learns only the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from attacks.inversion.base import ATTACKS
from attacks.inversion.ig import IGConfig, OptimizationAttack
from attacks.inversion.matching import MASK_PENALTIES
from attacks.inversion.observation import Observation
from attacks.inversion.optim import (
    MASK_INITS,
    RECIPES,
    LoopSettings,
    MaskMode,
    check_given_sites,
    check_mask_init,
    check_mask_penalty,
)
from fl.core.errors import ConfigError
from fl.core.schema import above, at_least, setting


@dataclass(frozen=True)
class DIAConfig(IGConfig):
    """DIA settings (the authors' code: TV 1e-5, mask regulariser 1e-4 on |drop rate - p|, their loop)."""

    tv_weight: float = setting(
        1e-5, help=IGConfig.__dataclass_fields__["tv_weight"].metadata["help"], bounds=at_least(0)
    )
    recipe: str = setting(
        "dia", help=IGConfig.__dataclass_fields__["recipe"].metadata["help"], choices=RECIPES
    )  # the authors' loop (plateau schedule, best iterate)
    mask_reg: float = setting(1e-4, help="DIA: the pull of each mask's mean drop rate towards p.", bounds=at_least(0))
    mask_penalty: str = setting(
        "abs",
        help="DIA's mask regulariser on |drop rate - p| as the authors' code, or its square.",
        choices=MASK_PENALTIES,
    )
    mask_step_size: float = setting(0.1, help="DIA: the Adam learning rate of the masks.", bounds=above(0))
    mask_signed: bool = setting(False, help="DIA: masks follow the signed gradient, like the images.", cli=False)
    mask_init: str = setting(
        "bernoulli",
        help="DIA's mask start: Bernoulli(1-p) draws, as in the paper, or 1-p everywhere (mean).",
        choices=MASK_INITS,
    )
    given_sites: str | None = setting(
        None,
        help="DIA: hand it the client's true masks at the dropout sites matching this regular expression (e.g. "
        "attn_drop) and learn the rest, to measure which sites hide the data. Like oracle, an analysis.",
        metavar="REGEX",
    )
    mask_readout: bool = setting(
        False,
        help="DIA: read the masks that a one-example update reveals through its exact zeros (the ViT's embedding "
        "mask, every MLP mask) and learn only the rest. Needs batch size 1 and one local step.",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_given_sites(self.given_sites)
        check_mask_init(self.mask_init)
        check_mask_penalty(self.mask_penalty)

    def loop(self) -> LoopSettings:
        return replace(
            super().loop(),
            mask_reg=self.mask_reg,
            mask_step_size=self.mask_step_size,
            mask_signed=self.mask_signed,
            mask_init=self.mask_init,
            given_sites=self.given_sites,
            mask_readout=self.mask_readout,
            mask_penalty=self.mask_penalty,
        )


@dataclass(frozen=True)
class OracleConfig(IGConfig):
    """The oracle bounds DIA, so it takes DIA's prior (TV 1e-5) and IG's loop.

    Not DIA's loop: the authors' loop ends once the objective is below 1e-5, and with the true
    masks the ViT's cosine gets there within about 60 iterations, at a worse image than DIA's
    (docs/inversion.md, "Results"); a bound must not be stopped by a budget rule."""

    tv_weight: float = setting(
        DIAConfig.tv_weight, help=IGConfig.__dataclass_fields__["tv_weight"].metadata["help"], bounds=at_least(0)
    )


@ATTACKS.register("dia")
class DropoutInversion(OptimizationAttack):
    """Images and dropout masks optimized jointly."""

    Config = DIAConfig
    name = "dia"
    masks: MaskMode = "learn"

    def check(self, obs: Observation) -> None:
        if obs.dropout <= 0.0:
            raise ConfigError(
                f"attack 'dia' needs a model with dropout, but {obs.model_name!r} has dropout 0; use 'ig' instead"
            )


@ATTACKS.register("oracle")
class OracleMasks(OptimizationAttack):
    """IG given the client's true dropout masks (an upper bound, not a real attack)."""

    Config = OracleConfig
    name = "oracle"
    masks: MaskMode = "given"

    def check(self, obs: Observation) -> None:
        if obs.dropout <= 0.0:
            raise ConfigError(f"attack 'oracle' needs a model with dropout, but {obs.model_name!r} has dropout 0")
        if obs.true_masks is None:
            raise ConfigError("attack 'oracle' needs the client's true dropout masks (Observation.true_masks)")
