"""SecAgg+ (Bell et al., CCS 2020; Flower's ``SecAggPlusWorkflow`` + ``secaggplus_mod``).

Clients mask their quantized updates with pairwise and private masks that cancel only in the
sum, so the server learns the (weighted) aggregate of the sampled clients and nothing per
client. The federation runs the round through Flower's workflow when a defense sets
``secure_aggregation``; this module only supplies the client mod and the protocol settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from flwr.client.mod import secaggplus_mod

from defenses.base import ClientMod, Defense
from defenses.config import DefenseConfig
from defenses.registry import DEFENSES


@dataclass(frozen=True)
class SecAggPlusSettings:
    """``SecAggPlusWorkflow`` arguments (Flower's defaults, except shares over all clients)."""

    num_shares: float = 1.0  # share of the sampled clients each secret key is split among
    reconstruction_threshold: float = 0.5  # share of the shares needed to rebuild a dropped client's key
    clipping_range: float = 8.0  # every weight is clipped to [-8, 8] before quantization
    quantization_range: int = 4194304  # 2**22 levels over the clipping range
    modulus_range: int = 4294967296  # masks are drawn in [0, 2**32)


class SecAggPlus(Defense):
    """Secure aggregation: the curious server captures only the aggregate update."""

    name = "secagg"
    secure_aggregation = True

    def __init__(self, settings: SecAggPlusSettings | None = None) -> None:
        self.settings = settings or SecAggPlusSettings()

    def client_mods(self) -> list[ClientMod]:
        return [secaggplus_mod]

    def secagg_options(self) -> dict[str, Any]:
        """Keyword arguments of ``flwr.server.workflow.SecAggPlusWorkflow`` (the server adds ``max_weight``)."""
        return asdict(self.settings)


@DEFENSES.register("secagg")
def build_secagg(cfg: DefenseConfig) -> Defense:
    """SecAgg+ with Flower's protocol defaults (``cfg`` has no SecAgg+ fields)."""
    return SecAggPlus()
