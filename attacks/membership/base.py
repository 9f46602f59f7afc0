"""The black-box membership-inference interface: what the attacker queried, and the registry.

Every attack maps a :class:`MembershipObservation` to one score per candidate record, higher meaning
"member" (the convention of ML Privacy Meter and LeakPro), so one evaluation serves them all.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from fl.core.errors import ConfigError
from fl.core.registry import Registry


@dataclass(frozen=True)
class MembershipObservation:
    """Logits the attacker obtained by querying models on candidate and population records.

    Shapes: ``A`` query augmentations (identity first), ``N`` candidates, ``K`` classes,
    ``S`` shadow/reference models, ``Z`` population records (never in any model's training set).
    """

    labels: torch.Tensor  # (N,) int64 candidate labels
    target_logits: torch.Tensor  # (A, N, K) the target model's logits
    shadow_logits: torch.Tensor | None = None  # (S, A, N, K) shadow/reference models' logits
    shadow_in: torch.Tensor | None = None  # (S, N) bool: record n was in shadow s's training set
    population_labels: torch.Tensor | None = None  # (Z,) labels of population records (RMIA)
    target_population_logits: torch.Tensor | None = None  # (A, Z, K)
    shadow_population_logits: torch.Tensor | None = None  # (S, A, Z, K)

    @property
    def num_shadows(self) -> int:
        return 0 if self.shadow_logits is None else int(self.shadow_logits.shape[0])


class MembershipAttack(ABC):
    """Base of every black-box attack: options are dataclass fields, ``score`` does the work."""

    needs_shadows: ClassVar[bool] = False  # needs shadow/reference models (LiRA, RMIA)
    needs_population: ClassVar[bool] = False  # needs population records (RMIA)
    min_shadows: ClassVar[int] = 0

    @abstractmethod
    def score(self, obs: MembershipObservation) -> np.ndarray:
        """One float per candidate record, higher meaning "member"."""

    def shadows_needed(self) -> int:
        """The fewest shadow models these settings work with."""
        return max(self.min_shadows, int(self.needs_shadows))

    def fitted(self, obs: MembershipObservation) -> dict[str, float]:
        """Settings the attack fits on the attacker's own models (RMIA's offline ``a``),
        reported beside its metrics; none by default."""
        return {}

    def check(self, obs: MembershipObservation) -> None:
        """Raise ``ConfigError`` when ``obs`` lacks what the attack needs."""
        if self.needs_shadows and (obs.shadow_logits is None or obs.shadow_in is None):
            raise ConfigError(f"attack {type(self).__name__} needs shadow models; got none")
        if obs.num_shadows < self.shadows_needed():
            raise ConfigError(
                f"attack {type(self).__name__} needs at least {self.shadows_needed()} shadow models, "
                f"got {obs.num_shadows}"
            )
        if self.needs_population and obs.target_population_logits is None:
            raise ConfigError(f"attack {type(self).__name__} needs population records; got none")


MEMBERSHIP_ATTACKS: Registry[type[MembershipAttack]] = Registry("membership attack")


def build_attack(name: str, **options: Any) -> MembershipAttack:
    """Attack ``name`` built with those ``options`` that are its fields (others are ignored,
    so one option set serves a list of attacks)."""
    cls = MEMBERSHIP_ATTACKS.get(name)
    names: set[str] = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    return cls(**{k: v for k, v in options.items() if k in names})
