"""The contract between a defense and the federation (Flower Message API).

A defense never forks the training loop or FedAvg: like Flower's own DP wrappers it
composes at up to four points, each optional:

1. ``model_overrides`` / ``check_model``: settings the model must have (dropout rate,
   a GroupNorm variant under DP-SGD) and a one-line refusal of incompatible models.
2. ``prepare_local_training`` / ``finish_local_training``: wrap the client's model,
   optimizer and data loader (DP-SGD with Opacus) and report per-client metrics
   (cumulative epsilon), keeping per-client state in ``client_state`` across rounds (the
   client keeps it on its own side; the server never holds it).
3. ``client_mods``: Flower client mods ``(msg, ctxt, call_next) -> Message`` that act on
   the outgoing update (local DP noise, top-k pruning, quantization, client-side clipping).
4. ``wrap_strategy``: wrap the server strategy (central DP with noise on the aggregate).

``secure_aggregation`` asks the federation to run SecAgg+, so the server sees only the sum.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from torch import nn

from fl.federation.local_training import LocalTraining

__all__ = ["ClientMod", "Defense", "LocalTraining"]

ClientMod = Callable[..., Any]  # flwr.clientapp.typing.Mod


class Defense:
    """Base class: every hook is a no-op, so a defense overrides only where it acts."""

    name: str = "none"
    secure_aggregation: bool = False
    # What the defense's epsilon protects and against whom: a key of fl.privacy_units.PRIVACY_UNITS;
    # None for defenses without a privacy accountant.
    privacy_unit: str | None = None
    delta: float = 0.0  # the delta its epsilon is stated at (DP defenses set it)

    def model_overrides(self) -> dict[str, Any]:
        """Keyword arguments forced on ``build_model`` (e.g. ``{"dropout": 0.5}``)."""
        return {}

    def check_model(self, model: nn.Module) -> None:
        """Raise ``ConfigError`` if the model cannot be used under this defense."""

    def prepare_local_training(
        self, training: LocalTraining, *, client_state: MutableMapping[str, Any], seed: int
    ) -> LocalTraining:
        """Return the (possibly wrapped) training objects for this round."""
        return training

    def finish_local_training(
        self, training: LocalTraining, *, client_state: MutableMapping[str, Any]
    ) -> dict[str, float | list[float] | list[int]]:
        """Update per-client state after training; return metrics for the reply (e.g. epsilon)."""
        return {}

    def client_mods(self) -> list[ClientMod]:
        """Flower client mods for train messages, outermost first (``@app.train(mods=...)``).

        Flower's own DP mods reject messages without arrays, so install them on the train
        handler; fedleak's mods also pass other message types through unchanged.
        """
        return []

    def wrap_strategy(self, strategy: Any, *, num_rounds: int, clients_per_round: int, seed: int = 0) -> Any:
        """Wrap the server's Flower strategy (Message API); ``seed`` is the federation's, for server-side noise."""
        return strategy

    def server_metrics(self) -> dict[str, float]:
        """Server-side privacy or cost figures after the run (e.g. central DP epsilon)."""
        return {}

    def client_epsilon(self, client_state: MutableMapping[str, Any]) -> float | None:
        """The epsilon a client's own accountant has spent, from its ``client_state`` (None: no client-side one)."""
        return None

    def round_record(self) -> dict[str, Any]:
        """What the server-side mechanism did in the last round and what its accountant assumed (JSON-ready)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Server-side state to checkpoint (JSON-ready), e.g. the central DP accountant."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` on resume (called before ``wrap_strategy``)."""
