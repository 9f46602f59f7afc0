"""The one configuration of a black-box membership audit, shared by the CLI, scenario files,
the experiment grid and the tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from attacks.membership.base import MEMBERSHIP_ATTACKS, build_attack
from attacks.membership.training import DPConfig, ModelTraining
from fl.core.errors import ConfigError

MEMBERSHIP_DEFENSES = ("none", "dropout", "dp-local", "dp-central")  # dp-central: a federated target only
FLIP_DATASETS = ("cifar10", "cifar100")  # datasets whose mirror image is a natural query (LiRA)


SPLITS = ("balanced", "bernoulli")


@dataclass(frozen=True)
class MIAConfig:
    """Target, shadows, defense and attacks of one audit (defaults: a CIFAR-10 ConvNet with GroupNorm)."""

    dataset: str = "cifar10"
    model: str = "convnet"
    norm: str | None = "group"  # GroupNorm: DP-ready and vmap-able; None keeps the model's default
    model_options: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"width": 16}
    dropout: float = 0.0  # the model's dropout rate (the dropout defense sets it > 0)
    standardize: bool | None = None  # per-channel standardisation with the dataset's mean and std; None: yes
    # for a centrally trained target, no for a federated one (whose clients train on the images as loaded)
    attacks: tuple[str, ...] = ("loss", "lira", "rmia")
    shadows: int = 8  # shadow/reference models for LiRA and RMIA; each record is IN for half
    pool_size: int = 4000  # candidate records, split at random into members and non-members
    split: str = "balanced"  # balanced: exactly half are members; bernoulli: each record a fair coin (one-run audit)
    one_run_guesses: int = 0  # Steinke et al.'s one-run audit: k "in" and k "out" guesses per attack (0: off)
    population_size: int = 1000  # RMIA's population records (never in any model's training set)
    epochs: int | None = None  # a centrally trained target's passes over its data (None: 20)
    # clients > 0: the target is the final global model of a Flower federation (FedAvg) of this many
    # clients sharing the members (IID), ``rounds`` rounds of ``local_epochs`` (or ``local_steps``)
    # each; every shadow is trained as the same federation on its own half of the pool
    clients: int = 0
    rounds: int = 3
    local_epochs: int = 1
    local_steps: int = 0
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    optimizer: str = "sgd"  # sgd | adam
    # none | dropout (uses ``dropout``) | dp-local (DP-SGD to ``epsilon``, one record) |
    # dp-central (federated only: the server clips and noises the clients' updates to ``epsilon``, one client)
    defense: str = "none"
    epsilon: float = 8.0  # dp-local/dp-central: target epsilon of the whole training run
    delta: float = 1e-5  # dp-local: DP delta (also used for the empirical epsilon)
    max_grad_norm: float = 1.0  # dp-local: per-sample clipping bound
    fprs: tuple[float, ...] = (0.001, 0.01, 0.1)  # FPRs at which TPR is reported
    flip: bool | None = None  # query mirror images too; None: yes for CIFAR, no for MNIST
    fix_variance: bool = True  # LiRA: one global std per side (best with few shadows)
    gamma: float = 1.0  # RMIA: threshold on the pairwise likelihood ratio
    offline_a: float | None = None  # RMIA offline: scaling of p_OUT(x) towards p(x); None: calibrated
    vectorize: str = "auto"  # shadow training: auto (vmap on CUDA, loop on CPU) | vmap | loop
    bootstrap: int = 200  # bootstrap replicates for confidence intervals (0 = none)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.attacks:
            raise ConfigError("give at least one attack")
        for name in self.attacks:  # before any training: LiRA 3, offline RMIA 2 (3 to calibrate a)
            need = build_attack(name, **self.attack_options).shadows_needed()
            if self.shadows < need:
                hint = " (it calibrates a; or give a fixed a)" if name == "rmia-offline" and need == 3 else ""
                raise ConfigError(f"shadows must be >= {need} for {name}{hint}, got {self.shadows}")
        if self.shadows < 0:
            raise ConfigError(f"shadows must be >= 0, got {self.shadows}")
        for f in self.fprs:
            if not 0.0 < f < 1.0:
                raise ConfigError(f"FPR {f} is outside (0, 1)")
        if self.pool_size < 4:
            raise ConfigError(f"pool_size must be >= 4, got {self.pool_size}")
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; valid choices: {', '.join(SPLITS)}")
        if self.one_run_guesses < 0 or 2 * self.one_run_guesses > self.pool_size:
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
        if self.defense not in MEMBERSHIP_DEFENSES:
            raise ConfigError(f"unknown defense {self.defense!r}; valid choices: {', '.join(MEMBERSHIP_DEFENSES)}")
        if self.clients < 0 or (self.clients and (self.rounds < 1 or self.local_epochs < 1 or self.local_steps < 0)):
            raise ConfigError(
                f"clients must be >= 0 and, for a federated target, rounds and local_epochs >= 1 and local_steps >= 0; "
                f"got clients={self.clients}, rounds={self.rounds}, local_epochs={self.local_epochs}, "
                f"local_steps={self.local_steps}"
            )
        if self.defense == "dp-central" and not self.clients:
            raise ConfigError("the dp-central defense needs a federated target: set clients > 0 (--clients)")
        if self.clients:
            self._check_federated()
        if self.defense == "dropout" and self.dropout <= 0:
            raise ConfigError("the dropout defense needs --dropout > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.bootstrap < 0:
            raise ConfigError(f"bootstrap must be >= 0, got {self.bootstrap}")
        self.train_config  # noqa: B018  (validates the training fields)
        self.dp_config  # noqa: B018  (validates the DP fields)

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
        if self.dropout and self.defense != "dropout":
            raise ConfigError("a federated target takes its dropout from the dropout defense: use --defense dropout")
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

    @property
    def dp_config(self) -> DPConfig | None:
        if self.defense != "dp-local" or self.federated:
            return None
        return DPConfig(epsilon=self.epsilon, delta=self.delta, max_grad_norm=self.max_grad_norm)

    @property
    def query_flip(self) -> bool:
        return self.dataset in FLIP_DATASETS if self.flip is None else self.flip

    @property
    def attack_options(self) -> dict[str, Any]:
        """Options handed to every attack (each takes the ones that are its fields)."""
        return {"fix_variance": self.fix_variance, "gamma": self.gamma, "a": self.offline_a}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MIAConfig:
        """Build from a scenario-file table; unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown mia option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        vals = dict(values)
        for key in ("attacks", "fprs"):
            if key in vals:
                vals[key] = tuple(vals[key])
        return cls(**vals)
