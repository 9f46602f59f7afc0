"""What a membership audit returns: the target's accuracy and privacy, each attack's metrics, typed.

Each attack's metrics are :func:`attacks.membership.metrics.evaluate`'s row (``auc``, ``tpr@0.1%``,
the bootstrap intervals, ``eps_lower_bound``, ...) plus, for attacks that fit something on the
shadow models, ``fitted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of an attack's metrics (``fitted`` and text left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _without_unset(obj: Any, optional: tuple[str, ...]) -> dict[str, Any]:
    """Every field, but the ``optional`` ones only when set (a central target has no ``target_run``)."""
    return {
        f.name: getattr(obj, f.name) for f in fields(obj) if f.name not in optional or getattr(obj, f.name) is not None
    }


@dataclass(frozen=True)
class MembershipResult:
    """A black-box audit of one target: a centrally trained model or a federation's final global model.

    ``epsilon`` is the target's training budget with its ``epsilon_unit`` and ``delta`` (None without
    DP); a DP-SGD target's is the accountant's on ``dp_history``. A federated target adds its run
    folder, the federation's own accuracy and ``client_level``: per attack, the metrics of telling
    the run's clients from outsiders.
    """

    train_accuracy: float
    test_accuracy: float
    epsilon: float | None
    epsilon_unit: str | None
    delta: float | None
    attacks: dict[str, dict[str, Any]]
    accountant: str | None = None  # the accountant epsilon is from (rdp, prv), None without DP
    timings: dict[str, float] = field(default_factory=dict)
    shadows: dict[str, Any] | None = None  # how the shadow models were trained (None: no attack needed them)
    target_run: str | None = None
    federation_accuracy: float | None = None
    client_level: dict[str, dict[str, Any]] | None = None
    dp_history: list[tuple[float, float, int]] | None = None  # a DP-SGD target's (sigma, sample rate, steps)

    def rows(self) -> dict[str, dict[str, float]]:
        """The target's accuracies and epsilon named by its unit (``epsilon_record``,
        ``epsilon_client_central``) with its delta; per attack its metrics and, for a federated
        target, the client-level AUC (``client_auc``)."""
        cell = {"train_accuracy": self.train_accuracy, "test_accuracy": self.test_accuracy}
        if self.federation_accuracy is not None:
            cell["federation_accuracy"] = self.federation_accuracy
        if self.epsilon is not None and self.delta is not None:
            cell[f"epsilon_{(self.epsilon_unit or 'record').replace('-', '_')}"] = self.epsilon
            cell["delta"] = self.delta
        out = {"": cell, **{name: _numbers(m) for name, m in self.attacks.items()}}
        for name, level in (self.client_level or {}).items():
            out.setdefault(name, {})["client_auc"] = float(level["auc"])
        return out

    def to_json(self) -> dict[str, Any]:
        return _without_unset(
            self, ("accountant", "shadows", "target_run", "federation_accuracy", "client_level", "dp_history")
        )


@dataclass(frozen=True)
class ServerSideResult:
    """The curious server's membership scores on the updates of one round.

    ``attacks``: metrics pooled over the audited clients' candidates; ``per_client``: each client's
    own; ``attribution``: how often the grad-cosine argmax names the client that holds a member
    record (with two or more clients).
    """

    server_round: int
    clients: list[int]
    dataset: dict[str, str]
    attacks: dict[str, dict[str, Any]]
    per_client: dict[str, dict[str, Any]]
    attribution: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return _without_unset(self, ("attribution",))
