"""What a federation returns: the global model's final scores, its privacy, the curious server's attack."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from experiments.federated.epsilon import epsilon_text
from fl.core.runs import to_jsonable


@dataclass(frozen=True)
class FederationResult:
    """A finished (or stopped) federation.

    ``epsilon`` is what the run spent (None without DP), with its ``epsilon_unit`` (a key of
    :data:`fl.privacy_units.PRIVACY_UNITS`) and ``delta``; ``attack_psnr`` the curious server's mean
    PSNR per attacked round; ``failures`` the clients that failed per round.
    """

    attack: str
    final_accuracy: float | None
    final_loss: float | None
    epsilon: float | None
    epsilon_unit: str | None
    delta: float | None
    rounds_done: int
    wall_s: float
    attack_psnr: dict[int, float] = field(default_factory=dict)
    failures: dict[int, list[int]] = field(default_factory=dict)

    def epsilon_text(self, spec: str = ".2f") -> str:
        """``"0.52 per record (δ=1e-05)"``; ``"-"`` without DP."""
        return epsilon_text(self.epsilon, self.epsilon_unit, self.delta, spec)

    def rows(self) -> dict[str, dict[str, float]]:
        """Accuracy, loss, wall time and the epsilon named by its unit (``epsilon_record``,
        ``epsilon_client_central``, ``epsilon_client_local``) with its delta; the attack's PSNR
        over the attacked rounds (mean, first, last)."""
        cell = {
            k: float(v)
            for k, v in (
                ("final_accuracy", self.final_accuracy),
                ("final_loss", self.final_loss),
                ("wall_s", self.wall_s),
            )
            if v is not None
        }
        if self.epsilon is not None and self.epsilon_unit is not None and self.delta is not None:
            cell[f"epsilon_{self.epsilon_unit.replace('-', '_')}"] = float(self.epsilon)
            cell["delta"] = float(self.delta)
        out: dict[str, dict[str, float]] = {"": cell}
        psnr = [self.attack_psnr[r] for r in sorted(self.attack_psnr)]
        if self.attack != "none" and psnr:
            out[self.attack] = {"psnr_mean": math.fsum(psnr) / len(psnr), "psnr_first": psnr[0], "psnr_last": psnr[-1]}
        return out

    def to_json(self) -> dict[str, Any]:
        """Every field as ``result.json`` stores it (:func:`fl.core.runs.to_jsonable`: round keys as
        text, an infinite PSNR as ``"inf"``)."""
        stored: dict[str, Any] = to_jsonable(self)
        return stored
