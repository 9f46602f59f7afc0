"""What an inversion run returns: each attack's scores over the victims, typed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AttackSummary:
    """One attack's scores over all victims of a run (images matched within each client's batch).

    ``per_image``: ``psnr``, ``ssim``, ``mse`` (and ``lpips``) per victim image; ``trace``: each
    victim's gradient-matching loss per logged iteration; ``attack_config``: the attack's settings
    in force, defaults resolved.
    """

    attack: str
    label: str  # how tables name it: the attack, with what the run changed ("dia (readout)")
    psnr_mean: float
    psnr_std: float
    ssim_mean: float
    mse_mean: float
    label_acc: float
    label_source: str  # recovered, known or optimized
    grad_loss_mean: float
    iters: int
    time_s: float
    per_image: dict[str, list[float]] = field(default_factory=dict)
    trace: list[dict[str, list[float]]] = field(default_factory=list)
    attack_config: dict[str, Any] = field(default_factory=dict)
    lpips_mean: float | None = None  # with LPIPS weights only

    def scores(self) -> dict[str, float]:
        """The numbers a table row shows."""
        out = {
            "psnr_mean": self.psnr_mean,
            "psnr_std": self.psnr_std,
            "ssim_mean": self.ssim_mean,
            "mse_mean": self.mse_mean,
            "label_acc": self.label_acc,
            "grad_loss_mean": self.grad_loss_mean,
            "iters": float(self.iters),
            "time_s": self.time_s,
        }
        if self.lpips_mean is not None:
            out["lpips_mean"] = self.lpips_mean
        return out

    def to_json(self) -> dict[str, Any]:
        """Every field; ``lpips_mean`` only when LPIPS was scored."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if self.lpips_mean is None:
            del out["lpips_mean"]
        return out


@dataclass(frozen=True)
class InversionRun:
    """Every attack of one run, in the run's order."""

    attacks: dict[str, AttackSummary]

    def rows(self) -> dict[str, dict[str, float]]:
        """One row per attack, under its label."""
        return {s.label: s.scores() for s in self.attacks.values()}

    def to_json(self) -> dict[str, Any]:
        return {name: s.to_json() for name, s in self.attacks.items()}
