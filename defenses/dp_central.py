"""Central DP with Flower's strategy wrappers (DP-FedAvg, McMahan et al., ICLR 2018).

Each client update is clipped to L2 norm ``clipping_norm`` (by the server, or by the client
with Flower's clipping mod) and the server adds Gaussian noise of std
``noise_multiplier * clipping_norm / clients_per_round`` to the *average*. Adaptive clipping
(Andrew et al., NeurIPS 2021) tracks a quantile of the update norms instead of a fixed bound.
Only the aggregate is private: the server (and so a curious server) still receives every
individual update, clipped but un-noised. Client-level epsilon is accounted with Flower's RDP
accountant, one Gaussian release per round without sampling amplification; the adaptive
variants split the noise between the update and the clipped count so that the pair is as
private as one Gaussian release with ``noise_multiplier`` (Andrew et al., Thm 1), and that
release is composed after every aggregate. The noise (and the adaptive variants' clipped-count
noise) is drawn from the wrapper's own NumPy generator, seeded per (federation seed, round),
never from NumPy's global one: clients and other threads in the same process also draw from
(and reseed) that one, so a run and its resume would otherwise not get the same noise. The
accounting assumes uniform averaging, so the
defense makes FedAvg weight every reply equally (``DP_WEIGHT_KEY``). Every clipping path passes
a zero update through unchanged (:mod:`defenses.clipping`; Flower's own divides by its norm).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MessageType, MetricRecord
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
)
from flwr.supercore.differential_privacy import compute_stdv
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from defenses.accounting import noise_for_epsilon
from defenses.base import ClientMod, Defense
from defenses.clipping import ZeroSafeClipping, zero_safe_clipping_mod
from defenses.config import DefenseConfig
from defenses.registry import DEFENSES
from defenses.update_mod import train_only
from fl.errors import ConfigError
from fl.seed import derive_seed

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
    """Mixin: a Flower DP wrapper draws its noise from its own generator, reseeded every round.

    The generator of round ``r`` is ``RandomState(derive_seed(noise_seed, "server-noise", r))``,
    a ``RandomState`` so that the draws equal Flower's after ``np.random.seed`` of that seed (the
    same Gaussian noise on the aggregate, then, for adaptive clipping, on the clipped count).
    """

    noise_seed: int = 0
    noise_multiplier: float
    clipping_norm: float
    num_sampled_clients: int
    clipped_count_stddev: float
    _noise_rng: np.random.RandomState

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        self._noise_rng = np.random.RandomState(derive_seed(self.noise_seed, "server-noise", server_round))
        return super().aggregate_train(server_round, replies)  # type: ignore[misc]

    def _add_noise_to_aggregated_arrays(self, aggregated: ArrayRecord) -> ArrayRecord:
        stdv = compute_stdv(self.noise_multiplier, self.clipping_norm, self.num_sampled_clients)
        noised = {}
        for key, array in zip(aggregated.keys(), aggregated.to_numpy_ndarrays(), strict=True):
            noised[key] = Array(array + self._noise_rng.normal(0, stdv, array.shape).astype(array.dtype))
        return ArrayRecord(noised)

    def _noisy_fraction(self, count: int, total: int) -> float:
        """The clipped fraction with Gaussian count noise (adaptive wrappers only call it)."""
        return float(self._noise_rng.normal(count, self.clipped_count_stddev)) / float(total)


class _AccountedAdaptive:
    """Compose one Gaussian release per successful aggregate into ``accountant`` (mixin)."""

    accountant: RdpAccountant
    release_noise_multiplier: float
    num_sampled_clients: int

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)  # Flower's adaptive wrappers iterate the replies twice
        arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
        if arrays is not None:
            self.accountant.compose(
                GaussianPrivacyEvent(
                    noise_multiplier=self.release_noise_multiplier,
                    sample_size=self.num_sampled_clients,
                    population_size=self.accountant.config.population_size,
                )
            )
        return arrays, metrics


class ZeroSafeServerSideFixedClipping(SeededNoise, ZeroSafeClipping, DifferentialPrivacyServerSideFixedClipping):
    """Flower's server-side fixed clipping, passing a zero update through unchanged, seeded noise."""


class SeededClientSideFixedClipping(SeededNoise, DifferentialPrivacyClientSideFixedClipping):
    """Flower's client-side fixed clipping with seeded noise."""


class AccountedServerSideAdaptiveClipping(
    _AccountedAdaptive, SeededNoise, ZeroSafeClipping, DifferentialPrivacyServerSideAdaptiveClipping
):
    """Flower's server-side adaptive clipping with an RDP accountant and seeded noise, passing a zero update through unchanged."""


class AccountedClientSideAdaptiveClipping(_AccountedAdaptive, SeededNoise, DifferentialPrivacyClientSideAdaptiveClipping):
    """Flower's client-side adaptive clipping with an RDP accountant and seeded noise."""


class DpCentralDefense(Defense):
    """Noise on the aggregate (Flower's DP strategy wrappers); epsilon in ``server_metrics``."""

    name = "dp-central"

    def __init__(
        self,
        *,
        noise_multiplier: float | None,
        target_epsilon: float | None,
        clipping_norm: float,
        clipping: str,
        delta: float,
        clipped_count_stddev: float | None = None,
    ) -> None:
        self.noise_multiplier = noise_multiplier
        self.target_epsilon = target_epsilon
        self.clipping_norm = clipping_norm
        self.clipping = clipping
        self.delta = delta
        self.clipped_count_stddev = clipped_count_stddev
        self.strategy: Any = None
        self._sigma = 0.0  # the noise multiplier wrap_strategy settled on
        self._accountant: RdpAccountant | None = None
        self._restored: dict[str, Any] | None = None  # state_dict loaded before wrap_strategy

    def client_mods(self) -> list[ClientMod]:
        clip = {"client-fixed": fixedclipping_mod, "client-adaptive": adaptiveclipping_mod}.get(self.clipping)
        mods = [train_only(zero_safe_clipping_mod(clip))] if clip is not None else []
        return [*mods, uniform_weight_mod]

    def wrap_strategy(self, strategy: Any, *, num_rounds: int, clients_per_round: int, seed: int = 0) -> Any:
        """Wrap a FedAvg-family ``strategy``; it is switched to uniform weights (``DP_WEIGHT_KEY``).

        ``seed`` seeds the noise of every round (:class:`SeededNoise`).
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
        if self.clipping in ("server-fixed", "client-fixed"):
            wrapper = (
                ZeroSafeServerSideFixedClipping
                if self.clipping == "server-fixed"
                else SeededClientSideFixedClipping
            )
            self.strategy = wrapper(strategy, sigma, self.clipping_norm, clients_per_round, accountant=self._accountant)
        else:
            adaptive = (
                AccountedServerSideAdaptiveClipping
                if self.clipping == "adaptive"
                else AccountedClientSideAdaptiveClipping
            )
            try:
                self.strategy = adaptive(
                    strategy,
                    sigma,
                    clients_per_round,
                    initial_clipping_norm=self.clipping_norm,
                    clipped_count_stddev=self.clipped_count_stddev,
                )
            except ValueError:  # Flower: the count noise cannot absorb this much of the budget
                stddev = self.clipped_count_stddev or clients_per_round / 20
                raise ConfigError(
                    f"dp-central adaptive clipping: noise_multiplier={sigma:g} needs clipped_count_stddev > "
                    f"{sigma / 2:g} (now {stddev:g}); raise clipped_count_stddev or lower noise_multiplier"
                ) from None
            self.strategy.accountant = self._accountant
            self.strategy.release_noise_multiplier = sigma
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

    def _noise(self, num_rounds: int) -> float:
        """Sigma given, or the smallest one keeping ``num_rounds`` Gaussian releases within target_epsilon."""
        if self.noise_multiplier is not None:
            return self.noise_multiplier
        return noise_for_epsilon(
            target_epsilon=self.target_epsilon, delta=self.delta, sample_rate=1.0, steps=num_rounds
        )


@DEFENSES.register("dp-central")
def build_dp_central(cfg: DefenseConfig) -> Defense:
    """Flower's central DP with ``cfg.clipping`` clipping at ``cfg.clipping_norm``."""
    return DpCentralDefense(
        noise_multiplier=cfg.sigma if cfg.target_epsilon is None else None,
        target_epsilon=cfg.target_epsilon,
        clipping_norm=cfg.clipping_norm,
        clipping=cfg.clipping,
        delta=cfg.delta,
        clipped_count_stddev=cfg.clipped_count_stddev,
    )
