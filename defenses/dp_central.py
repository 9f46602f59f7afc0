"""Central DP: DP-FedAvg (McMahan et al., ICLR 2018) with fixed or adaptive clipping.

Each client update is clipped to L2 norm ``C`` (by the server, or by the client with a Flower
clipping mod) and the server adds Gaussian noise of std ``z * C / m`` to the uniform *average*
of the ``m`` updates. Only the aggregate is private: the server (and so a curious server) still
receives every individual update, clipped but un-noised. Client-level epsilon (it protects a
whole client) is accounted with Flower's RDP accountant, one Gaussian release with noise
multiplier ``z`` per round without sampling amplification. The accounting assumes uniform
averaging, so the defense makes FedAvg weight every reply equally (``DP_WEIGHT_KEY``).

Fixed clipping uses Flower's accounted wrappers (``DifferentialPrivacy*SideFixedClipping``);
adaptive clipping is fedleak's own wrapper (:mod:`defenses.adaptive_clipping`, Andrew et al.).
Every wrapper records what the accountant assumed in ``last_release``
(:class:`~defenses.central_release.CentralRelease`) after each ``aggregate_train`` and noises
with the server's own per-round generator (:func:`~defenses.central_release.round_noise_rng`).
A round with a failed or missing reply releases nothing. Every clipping path passes a zero
update through unchanged and counts it as unclipped (:mod:`defenses.clipping`; Flower's own
divides by its norm).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MessageType, MetricRecord
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
)
from flwr.supercore.differential_privacy import compute_stdv
from flwr.supercore.privacy_accounting import (
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from defenses.accounting import noise_for_epsilon
from defenses.adaptive_clipping import (
    AdaptiveClipping,
    ClientSideAdaptiveClipping,
    ServerSideAdaptiveClipping,
)
from defenses.base import ClientMod, Defense
from defenses.central_release import (
    NO_AGGREGATE,
    CentralRelease,
    add_gaussian_noise,
    incomplete_round,
    round_noise_rng,
)
from defenses.clipping import ZeroSafeClipping, zero_safe_clipping_mod
from defenses.config import DefenseConfig
from defenses.registry import DEFENSES
from defenses.update_mod import train_only
from fl.core.errors import ConfigError

DP_WEIGHT_KEY = "dp-weight"  # reply metric FedAvg weights by under central DP (always 1.0)
ADAPTIVE = ("adaptive", "client-adaptive")


def uniform_weight_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Client mod adding ``DP_WEIGHT_KEY = 1.0`` to the reply's metrics (uniform FedAvg weights)."""
    out = call_next(msg, ctxt)
    if msg.metadata.message_type == MessageType.TRAIN and not out.has_error():
        for record in out.content.metric_records.values():
            record[DP_WEIGHT_KEY] = 1.0
    return out


class SeededNoise:
    """Mixin: a Flower fixed-clipping wrapper noises with :func:`round_noise_rng` and records
    :class:`CentralRelease`."""

    noise_seed: int = 0
    noise_multiplier: float
    clipping_norm: float
    num_sampled_clients: int
    last_release: CentralRelease | None = None
    _noise_rng: np.random.RandomState

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        clipping_norm = float(self.clipping_norm)
        self._noise_rng = round_noise_rng(self.noise_seed, server_round)
        arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
        reason = incomplete_round(replies, self.num_sampled_clients) or ("" if arrays else NO_AGGREGATE)
        released = not reason  # Flower noises and composes exactly then
        self.last_release = CentralRelease(
            round=server_round,
            released=released,
            noise_multiplier=self.noise_multiplier,
            clipping_norm=clipping_norm,
            clients=sum(not reply.has_error() for reply in replies),
            sampled=self.num_sampled_clients,
            noise_std=compute_stdv(self.noise_multiplier, clipping_norm, self.num_sampled_clients) if released else 0.0,
            reason=reason,
            update_noise_multiplier=self.noise_multiplier,
        )
        return arrays, metrics

    def _add_noise_to_aggregated_arrays(self, aggregated: ArrayRecord) -> ArrayRecord:
        stdv = compute_stdv(self.noise_multiplier, self.clipping_norm, self.num_sampled_clients)
        return add_gaussian_noise(aggregated, stdv, self._noise_rng)


class ZeroSafeServerSideFixedClipping(SeededNoise, ZeroSafeClipping, DifferentialPrivacyServerSideFixedClipping):
    """Flower's server-side fixed clipping, passing a zero update through unchanged, seeded noise."""


class SeededClientSideFixedClipping(SeededNoise, DifferentialPrivacyClientSideFixedClipping):
    """Flower's client-side fixed clipping with seeded noise."""


class DpCentralDefense(Defense):
    """Noise on the aggregate (a DP strategy wrapper); epsilon in ``server_metrics``, the round's release in
    ``last_release``."""

    name = "dp-central"
    privacy_unit = "client-central"

    def __init__(
        self,
        *,
        noise_multiplier: float | None,
        target_epsilon: float | None,
        clipping_norm: float,
        clipping: str,
        delta: float,
        clipped_count_stddev: float | None = None,
        target_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
    ) -> None:
        self.noise_multiplier = noise_multiplier
        self.target_epsilon = target_epsilon
        self.clipping_norm = clipping_norm
        self.clipping = clipping
        self.delta = delta
        self.clipped_count_stddev = clipped_count_stddev
        self.target_quantile = target_quantile
        self.clip_norm_lr = clip_norm_lr
        self.strategy: Any = None
        self._sigma = 0.0  # the noise multiplier wrap_strategy settled on
        self._accountant: RdpAccountant | None = None
        self._restored: dict[str, Any] | None = None  # state_dict loaded before wrap_strategy

    @property
    def last_release(self) -> CentralRelease | None:
        """What the accountant assumed in the latest ``aggregate_train`` (None before the first)."""
        return None if self.strategy is None else self.strategy.last_release

    def client_mods(self) -> list[ClientMod]:
        clip = {"client-fixed": fixedclipping_mod, "client-adaptive": adaptiveclipping_mod}.get(self.clipping)
        mods = [train_only(zero_safe_clipping_mod(clip))] if clip is not None else []
        return [*mods, uniform_weight_mod]

    def wrap_strategy(self, strategy: Any, *, num_rounds: int, clients_per_round: int, seed: int = 0) -> Any:
        """Wrap a FedAvg-family ``strategy``; it is switched to uniform weights (``DP_WEIGHT_KEY``).

        ``seed`` seeds the noise of every round (:func:`round_noise_rng`).
        """
        if not isinstance(strategy, FedAvg) or type(strategy).aggregate_train is not FedAvg.aggregate_train:
            raise ConfigError(
                f"dp-central needs a strategy averaging with FedAvg.aggregate_train (fedavg, fedprox), "
                f"got {type(strategy).__name__}"
            )
        strategy.weighted_by_key = DP_WEIGHT_KEY
        sigma = self._sigma = self._noise(num_rounds)
        if sigma <= 0:
            raise ConfigError("defense option noise_multiplier=0.0 is invalid for dp-central; expected a value > 0")
        self._accountant = RdpAccountant(
            PrivacyConfig(
                target_delta=self.delta,
                population_size=clients_per_round,  # no amplification is claimed: metadata only
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
            )
        )
        if self.clipping in ADAPTIVE:
            self.strategy = self._adaptive(strategy, sigma, clients_per_round)
        else:
            fixed = (
                ZeroSafeServerSideFixedClipping if self.clipping == "server-fixed" else SeededClientSideFixedClipping
            )
            self.strategy = fixed(strategy, sigma, self.clipping_norm, clients_per_round, accountant=self._accountant)
        self.strategy.noise_seed = seed
        if self._restored is not None:
            self._restore(self._restored)
        return self.strategy

    def server_metrics(self) -> dict[str, float]:
        if self._accountant is None:
            return {}
        spent = self._accountant.get_privacy_spent()
        return {
            "epsilon": spent.epsilon if spent.num_releases else 0.0,
            "delta": spent.delta,
            "releases": float(spent.num_releases),
            "noise_multiplier": self._sigma,
            "clipping_norm": float(self.strategy.clipping_norm),
        }

    def round_record(self) -> dict[str, Any]:
        """The last round's release (:class:`CentralRelease`) with the epsilon spent after it and the release count."""
        release = self.last_release
        if release is None:
            return {}
        spent = self.server_metrics()
        return {**release.to_dict(), "epsilon": spent["epsilon"], "releases": spent["releases"]}

    def state_dict(self) -> dict[str, Any]:
        """The accountant's state and the adapted clipping bound (JSON-ready), for the federation's checkpoint."""
        if self._accountant is None:
            return {}
        state: dict[str, Any] = {"accountant": self._accountant.state_dict()}
        if self.clipping in ADAPTIVE:
            state["clipping_norm"] = float(self.strategy.clipping_norm)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (before or after ``wrap_strategy``)."""
        if self._accountant is None:
            self._restored = dict(state)
        else:
            self._restore(state)

    def _restore(self, state: dict[str, Any]) -> None:
        self._accountant.load_state_dict(dict(state["accountant"]))  # type: ignore[union-attr]
        if "clipping_norm" in state:
            self.strategy.clipping_norm = float(state["clipping_norm"])

    def _adaptive(self, strategy: FedAvg, sigma: float, clients_per_round: int) -> AdaptiveClipping:
        wrapper = ServerSideAdaptiveClipping if self.clipping == "adaptive" else ClientSideAdaptiveClipping
        try:
            return wrapper(
                strategy,
                sigma,
                clients_per_round,
                accountant=self._accountant,  # type: ignore[arg-type]
                initial_clipping_norm=self.clipping_norm,
                target_quantile=self.target_quantile,
                clip_norm_lr=self.clip_norm_lr,
                clipped_count_stddev=self.clipped_count_stddev,
            )
        except ValueError:  # Thm 1: the count noise cannot absorb this much of the budget
            stddev = self.clipped_count_stddev or clients_per_round / 20
            raise ConfigError(
                f"dp-central adaptive clipping: noise_multiplier={sigma:g} needs clipped_count_stddev > "
                f"{sigma / 2:g} (now {stddev:g}); raise clipped_count_stddev or lower noise_multiplier"
            ) from None

    def _noise(self, num_rounds: int) -> float:
        """Sigma given, or the smallest one keeping ``num_rounds`` Gaussian releases within target_epsilon."""
        if self.noise_multiplier is not None:
            return self.noise_multiplier
        return noise_for_epsilon(
            target_epsilon=cast(float, self.target_epsilon), delta=self.delta, sample_rate=1.0, steps=num_rounds
        )


@DEFENSES.register("dp-central")
def build_dp_central(cfg: DefenseConfig) -> Defense:
    """Central DP with ``cfg.clipping`` clipping at ``cfg.clipping_norm`` (the initial bound if adaptive)."""
    return DpCentralDefense(
        noise_multiplier=cfg.sigma if cfg.target_epsilon is None else None,
        target_epsilon=cfg.target_epsilon,
        clipping_norm=cfg.clipping_norm,
        clipping=cfg.clipping,
        delta=cfg.delta,
        clipped_count_stddev=cfg.clipped_count_stddev,
        target_quantile=cfg.target_quantile,
        clip_norm_lr=cfg.clip_norm_lr,
    )
