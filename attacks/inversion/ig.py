"""Inverting Gradients (Geiping et al., NeurIPS 2020): cosine distance, TV prior, signed Adam.

Against a model with dropout the attacker cannot know the client's masks, so ``ig``
evaluates the model with dropout off (eval mode): the baseline that the Dropout Inversion
Attack shows fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch

from attacks.inversion.base import ATTACKS, InversionResult
from attacks.inversion.matching import LAYER_WEIGHTS, check_layer_weights
from attacks.inversion.observation import Observation
from attacks.inversion.optim import (
    IG_LR_DECAY_AT,
    RECIPE_STEP_SIZE,
    RECIPES,
    LoopSettings,
    MaskMode,
    adam_inversion,
    check_lr_decay_at,
    check_recipe,
    parse_lr_decay_at,
)
from attacks.inversion.victims import group, prepare, victim_seeds
from fl.core.schema import above, at_least, check_bounds, setting


@dataclass(frozen=True)
class IGConfig:
    """Inverting Gradients settings (paper defaults, with fewer iterations)."""

    iters: int = setting(
        400, help="Optimization steps (the paper uses 4800 for ImageNet-size images).", bounds=at_least(1)
    )
    step_size: float | None = setting(
        None,
        help="The attack's learning rate: Adam's on the signed image gradient (IG family; None: the recipe's) "
        "or L-BFGS's (DLG).",
        cli=False,
        bounds=above(0),
    )
    restarts: int = setting(
        1, help="Independent initialisations; the lowest final gradient distance wins.", bounds=at_least(1)
    )
    tv_weight: float = setting(1e-4, help="Weight of the total-variation prior.", bounds=at_least(0))
    seed: int = setting(0, help='Seeds the initial images (victim k uses derive_seed(seed, "victim", k)).')
    lr_decay_at: tuple[float, ...] = setting(
        IG_LR_DECAY_AT,
        help="Recipe ig: fractions of the iterations after which the learning rates drop 10x, e.g. 0.75,0.9; "
        "'none' keeps them constant (Inverting Gradients: 3/8, 5/8, 7/8).",
        parse=parse_lr_decay_at,
        metavar="FRACTIONS",
    )
    layer_weights: str = setting(
        "equal",
        help="The cosine over all parameters as one vector, as in the papers, or 'balanced': each parameter "
        "tensor counts equally (the ViT's embedding gradients are a tiny share of its norm).",
        choices=LAYER_WEIGHTS,
    )
    recipe: str = setting(
        "ig",
        help="The loop: ig (Inverting Gradients' code: fixed decays, last iterate) or dia (the DIA authors' "
        "code: rates cut on a plateau, best iterate kept).",
        choices=RECIPES,
    )
    bn_prior: float = setting(
        0.0,
        help="GradInversion's BatchNorm prior against the client's batch statistics (0: off).",
        cli=False,
        bounds=at_least(0),
    )
    log_every: int = setting(10, help="Trace resolution in iterations.", cli=False, bounds=at_least(1))

    def __post_init__(self) -> None:
        check_bounds(self)
        check_lr_decay_at(tuple(self.lr_decay_at))
        check_layer_weights(self.layer_weights)
        check_recipe(self.recipe)
        if self.step_size is None:  # recorded resolved, so attack_config shows the rate in force
            object.__setattr__(self, "step_size", RECIPE_STEP_SIZE[self.recipe])
        assert self.step_size is not None  # resolved just above

    def loop(self) -> LoopSettings:
        return LoopSettings(
            iters=self.iters,
            step_size=cast(float, self.step_size),
            restarts=self.restarts,
            tv_weight=self.tv_weight,
            lr_decay_at=tuple(self.lr_decay_at),
            recipe=self.recipe,
            log_every=self.log_every,
        )


class OptimizationAttack:
    """Adam-based gradient matching for every group of compatible victims, batched."""

    masks: MaskMode = "eval"
    name = "ig"

    def check(self, obs: Observation) -> None:
        """Refuse observations this attack cannot handle (one clear line)."""

    def run(
        self,
        observations: Sequence[Observation],
        config: IGConfig,
        *,
        device: torch.device,
        progress: bool = False,
        seeds: Sequence[int] | None = None,
    ) -> list[InversionResult]:
        seeds = list(seeds) if seeds is not None else victim_seeds(config.seed, len(observations))
        for o in observations:
            self.check(o)
        out: dict[int, InversionResult] = {}
        for idx in group(observations):
            victims = prepare(
                [observations[i] for i in idx],
                [seeds[i] for i in idx],
                device=device,
                layer_weights=config.layer_weights,
                bn_prior=config.bn_prior,
            )
            results = adam_inversion(victims, config.loop(), masks=self.masks, attack=self.name, progress=progress)
            out.update(zip(idx, results, strict=True))
        return [out[i] for i in range(len(observations))]


@ATTACKS.register("ig")
class InvertingGradients(OptimizationAttack):
    """IG with dropout in eval mode (the masks are unknown to the attacker)."""

    Config = IGConfig
    name = "ig"
    masks: MaskMode = "eval"
