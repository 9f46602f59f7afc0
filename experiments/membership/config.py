"""The one configuration of a black-box membership audit, shared by the CLI, scenario files,
the experiment grid and the tests."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from attacks.membership.base import MEMBERSHIP_ATTACKS, build_attack
from attacks.membership.metrics import DEFAULT_FPRS
from attacks.membership.shadows import VECTORIZE
from attacks.membership.training import OPTIMIZERS, ModelTraining
from defenses.config import DEFENSE_SETTINGS, DefenseConfig, unread_setting
from fl.core.errors import ConfigError
from fl.core.schema import above, at_least, check_bounds, setting, within

MEMBERSHIP_DEFENSES = ("none", "dropout", "dp-local", "dp-central")  # dp-central: a federated target only
# The DefenseConfig settings those defenses read (``name`` is --defense).
MEMBERSHIP_DEFENSE_SETTINGS = ("name", *dict.fromkeys(s for d in MEMBERSHIP_DEFENSES for s in DEFENSE_SETTINGS[d]))
FLIP_DATASETS = ("cifar10", "cifar100")  # datasets whose mirror image is a natural query (LiRA)
SPLITS = ("balanced", "bernoulli")


def parse_fprs(text: str) -> tuple[float, ...]:
    """The FPRs of a comma list like ``0.001,0.01`` (``ValueError`` names what is wrong)."""
    try:
        fprs = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of numbers") from None
    bad = [f for f in fprs if not 0.0 < f < 1.0]
    if bad or not fprs:
        raise ValueError(f"FPR {bad[0] if bad else text!r} is outside (0, 1); e.g. 0.001,0.01")
    return fprs


def parse_offline_a(text: str) -> float | None:
    """RMIA's offline ``a`` from ``auto`` (None: calibrated) or a number in [0, 1]."""
    if text == "auto":
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{text!r} is neither auto nor a number in [0, 1]")
    return number


@dataclass(frozen=True)
class MIAConfig:
    """Target, shadows, defense and attacks of one audit (defaults: a CIFAR-10 ConvNet with GroupNorm).

    Each setting is a ``fedleak mia`` option and a key of a ``[[membership]]`` block's options
    (``experiments/membership/schema.py``); ``cli=False`` ones are scenario keys only, or set by
    an option of another shape (``--lira-variance``, the global ``--seed``). ``defense`` is the
    ``DefenseConfig`` the federation takes too; the audit reads the settings of
    :data:`MEMBERSHIP_DEFENSE_SETTINGS` (its flags are ``simulate``'s: ``--target-epsilon``, ...).
    """

    dataset: str = setting("cifar10", help="Dataset the pool and the population are drawn from (`fedleak datasets`).")
    model: str = setting("convnet", help="A model of `fedleak models`.")
    norm: str | None = setting(
        "group",
        help="Normalisation layers (group: GroupNorm, DP-ready and vmap-able).",
        choices=("group", "batch", "none"),
    )
    model_options: Mapping[str, Any] = setting(
        factory=dict,
        help="Model option, e.g. bias=true or width=32 (repeatable; see `fedleak models`).",
        flag="--model-option",
    )
    standardize: bool | None = setting(
        None,
        help="Standardise images per channel with the dataset's mean and std (default: yes for a central target, "
        "no for a federated one, whose clients train on the images as loaded).",
        cli=False,
    )
    attacks: tuple[str, ...] = setting(
        ("loss", "lira", "rmia"),
        help="Attack(s), repeatable or comma-separated (with --federated the server's: grad-cosine, grad-diff, "
        "grad-norm, fedmia by default).",
        flag="--attack",
    )
    shadows: int = setting(
        8, help="Shadow/reference models (LiRA, RMIA); each record is IN for half of them.", bounds=at_least(0)
    )
    pool_size: int = setting(4000, help="Candidate records, half members.", bounds=at_least(4))
    split: str = setting(
        "balanced",
        help="Members: exactly half of the pool, or each record by a fair coin (needed by --one-run-guesses).",
        choices=SPLITS,
    )
    one_run_guesses: int = setting(
        0,
        help="Steinke et al.'s one-run audit: guess 'in' for the K highest and 'out' for the K lowest scores "
        "of each attack and bound ε from the right guesses (0: off; needs --split bernoulli).",
        bounds=at_least(0),
    )
    population_size: int = setting(
        1000, help="RMIA population records (never in any model's training set).", bounds=at_least(0)
    )
    epochs: int | None = setting(
        None,
        help="A central target's training epochs (default 20; a federated one trains rounds x local epochs).",
        bounds=at_least(1),
    )
    clients: int = setting(
        0,
        help="0: train the target centrally; N: the target is the final global model of a Flower federation of N "
        "clients sharing the members (FedAvg), and every shadow is the same federation on its own half of the pool.",
        bounds=at_least(0),
    )
    rounds: int = setting(3, help="Federated target: rounds.", bounds=at_least(1))
    local_epochs: int = setting(1, help="Federated target: local epochs per round.", bounds=at_least(1))
    local_steps: int = setting(
        0, help="Federated target: > 0, this many local steps instead of epochs.", bounds=at_least(0)
    )
    batch_size: int = setting(64, help="Minibatch size (of every model: target, shadows, clients).", bounds=at_least(1))
    lr: float = setting(0.05, help="Learning rate (Adam: 1e-3 is usual).", bounds=above(0))
    momentum: float = setting(
        0.9,
        help="SGD momentum (a federated target's clients start each round afresh).",
        bounds=within(0, 1, high_open=True),
    )
    weight_decay: float = setting(0.0, help="A central target's weight decay.", cli=False, bounds=at_least(0))
    optimizer: str = setting("sgd", help="Optimizer of every model.", choices=OPTIMIZERS)
    defense: DefenseConfig = field(default_factory=DefenseConfig)  # --defense and its settings
    fprs: tuple[float, ...] = setting(DEFAULT_FPRS, help="FPRs for TPR@FPR.", flag="--fpr", parse=parse_fprs)
    flip: bool | None = setting(None, help="Query mirror images too (default: yes for CIFAR, no otherwise).", cli=False)
    fix_variance: bool = setting(
        True,
        help="LiRA: one global std per side (best with few shadows), else one per record (--lira-variance).",
        cli=False,
    )
    gamma: float = setting(
        1.0, help="RMIA: threshold on the pairwise likelihood ratio.", flag="--rmia-gamma", bounds=above(0)
    )
    offline_a: float | None = setting(
        None,
        help="Offline RMIA scaling a in [0, 1]; auto (the default) calibrates it on a shadow model.",
        flag="--rmia-a",
        parse=parse_offline_a,
        metavar="AUTO|[0,1]",
    )
    vectorize: str = setting(
        "auto",
        help="Shadow training path (auto: vmap on CUDA and for models without convolutions, else a loop).",
        choices=VECTORIZE,
    )
    bootstrap: int = setting(200, help="Bootstrap replicates for CIs (0: none).", bounds=at_least(0))
    seed: int = setting(0, help="Seed of the pool, the models and the attacks (the global --seed).", cli=False)

    def __post_init__(self) -> None:
        check_bounds(self)
        if not self.attacks:
            raise ConfigError("give at least one attack")
        for name in self.attacks:  # before any training: LiRA 3, offline RMIA 2 (3 to calibrate a)
            need = build_attack(name, **self.attack_options).shadows_needed()
            if self.shadows < need:
                hint = " (it calibrates a; or give a fixed a)" if name == "rmia-offline" and need == 3 else ""
                raise ConfigError(f"shadows must be >= {need} for {name}{hint}, got {self.shadows}")
        for f in self.fprs:
            if not 0.0 < f < 1.0:
                raise ConfigError(f"FPR {f} is outside (0, 1)")
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; valid choices: {', '.join(SPLITS)}")
        if 2 * self.one_run_guesses > self.pool_size:
            raise ConfigError(
                f"one_run_guesses must be in [0, pool_size / 2 = {self.pool_size // 2}], got {self.one_run_guesses}"
            )
        if self.one_run_guesses and self.split != "bernoulli":
            raise ConfigError(
                "the one-run audit (one_run_guesses) needs independent inclusions: set split = 'bernoulli' "
                "(--split bernoulli)"
            )
        if self.population_size < 1 and any(MEMBERSHIP_ATTACKS.get(a).needs_population for a in self.attacks):
            raise ConfigError(f"population_size must be >= 1 for rmia, got {self.population_size}")
        self._check_defense()
        if self.clients:
            self._check_federated()
        self.train_config  # noqa: B018  (validates the training fields)

    @property
    def train_config(self) -> ModelTraining:
        return ModelTraining(
            epochs=20 if self.epochs is None else self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            optimizer=self.optimizer,
        )

    def _check_federated(self) -> None:
        """Refuse settings a federated target does not use or that its shadows cannot match."""
        unused = {
            "standardize": self.standardize,  # the clients train on the images as loaded
            "epochs": self.epochs,  # rounds x local_epochs instead
            "weight_decay": self.weight_decay or None,  # the clients' SGD has none
        }
        if given := [k for k, v in unused.items() if v]:
            raise ConfigError(
                f"{given[0]} does not apply to a federated target (clients > 0; it trains rounds x local_epochs "
                "on the images as loaded, without weight decay): leave it unset"
            )
        if self.vectorize != "auto":
            raise ConfigError(
                "vectorize does not apply to a federated target: its shadows are federations, run one by one"
            )
        if self.pool_size // 2 < self.clients:
            raise ConfigError(
                f"a federated target needs a member for each client: pool_size // 2 = {self.pool_size // 2} < "
                f"clients = {self.clients}"
            )

    @property
    def standardized(self) -> bool:
        """Whether images are standardised (``standardize`` resolved for the kind of target)."""
        return not self.clients if self.standardize is None else self.standardize

    @property
    def federated(self) -> bool:
        return self.clients > 0

    def _check_defense(self) -> None:
        """Refuse a defense, or a defense setting, the audit's target cannot train under."""
        d = self.defense
        if d.name not in MEMBERSHIP_DEFENSES:
            raise ConfigError(f"unknown defense {d.name!r}; valid choices: {', '.join(MEMBERSHIP_DEFENSES)}")
        default = DefenseConfig()
        given = [f.name for f in fields(d) if f.name != "delta" and getattr(d, f.name) != getattr(default, f.name)]
        if (unread := unread_setting(d.name, given)) is not None:  # delta: also the empirical epsilon's
            reads = ", ".join(DEFENSE_SETTINGS[d.name]) or "no settings but delta"
            raise ConfigError(f"defense setting {unread!r} does not apply to the {d.name} defense, which takes {reads}")
        if d.name in ("dp-local", "dp-central") and d.noise_multiplier is None and d.target_epsilon is None:
            raise ConfigError(
                f"the {d.name} defense of a membership audit needs a privacy level: give target_epsilon "
                "(--target-epsilon) or noise_multiplier (--noise-multiplier)"
            )
        if d.name == "dp-central" and not self.clients:
            raise ConfigError("the dp-central defense needs a federated target: set clients > 0 (--clients)")
        if d.name == "dropout" and d.dropout <= 0:
            raise ConfigError("the dropout defense needs dropout > 0 (--dropout)")
        if taken := sorted({"dropout", "placement"} & set(self.model_options)):
            raise ConfigError(
                f"--model-option {taken[0]}=... is set by the dropout defense (--defense dropout --dropout P"
                f"{' --dropout-placement head|all' if taken[0] == 'placement' else ''}), not as a model option"
            )

    @property
    def dropout(self) -> float:
        """The target's (and shadows') dropout rate: the dropout defense's, else 0."""
        return self.defense.dropout if self.defense.name == "dropout" else 0.0

    @property
    def dp_config(self) -> DefenseConfig | None:
        """The DP-SGD of a central target's (and its shadows') training, None without."""
        return self.defense if self.defense.name == "dp-local" and not self.federated else None

    @property
    def query_flip(self) -> bool:
        return self.dataset in FLIP_DATASETS if self.flip is None else self.flip

    @property
    def attack_options(self) -> dict[str, Any]:
        """Options handed to every attack (each takes the ones that are its fields)."""
        return {"fix_variance": self.fix_variance, "gamma": self.gamma, "a": self.offline_a}
