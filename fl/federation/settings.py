"""What the server asks clients to train with, and what model they train.

Both travel in the Flower ``ConfigRecord`` of every train message (Flower's own convention:
the strategy's ``train_config``), so a curious server records exactly what it asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fl.core.errors import ConfigError
from fl.core.schema import above, at_least, check_bounds, setting, within

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainSettings:
    """One round of local training (McMahan et al., 2017: E epochs of B-sized minibatch SGD)."""

    local_epochs: int = setting(
        1, help="Passes over the client's data per round (ignored when --local-steps > 0).", bounds=at_least(1)
    )
    local_steps: int = setting(
        0, help="> 0: exactly this many optimizer steps per round instead of epochs.", bounds=at_least(0)
    )
    batch_size: int = setting(
        32, help="Minibatch size B; 0 = full batch (the client's whole data).", bounds=at_least(0)
    )
    lr: float = setting(0.05, help="Client learning rate.", bounds=above(0))
    optimizer: str = setting("sgd", help="Client optimizer.", choices=OPTIMIZERS)
    momentum: float = setting(
        0.0, help="SGD momentum (0: one step is one plain gradient step).", bounds=within(0, 1, high_open=True)
    )
    proximal_mu: float = setting(
        0.0, help="FedProx (Li et al., 2020) proximal term weight; 0 = FedAvg.", bounds=at_least(0)
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; valid choices: {', '.join(OPTIMIZERS)}")

    def to_config(self) -> dict[str, int | float | str]:
        """Flower ``ConfigRecord`` entries (keys prefixed ``train-``)."""
        return {f"train-{k}": v for k, v in asdict(self).items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        values = {k[len("train-") :]: v for k, v in config.items() if k.startswith("train-")}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class ModelSpec:
    """Everything ``fl.models.build_model`` needs, so a client and an attacker rebuild the same model."""

    name: str
    in_shape: tuple[int, int, int]
    num_classes: int
    dropout: float = 0.0
    norm: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self):  # -> nn.Module (torch imported lazily by fl.models)
        from fl.models import build_model

        return build_model(
            self.name,
            in_shape=tuple(self.in_shape),
            num_classes=self.num_classes,
            dropout=self.dropout,
            norm=self.norm,
            **dict(self.options),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"options": dict(self.options)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        data = json.loads(text)
        data["in_shape"] = tuple(data["in_shape"])
        return cls(**data)
