"""Adaptive clipping for central DP: Algorithm 1 of Andrew et al., "Differentially Private Learning with
Adaptive Clipping" (NeurIPS 2021, arXiv:1905.03871), as a Flower Message-API strategy wrapper.

The bound tracks the ``target_quantile`` gamma of the update norms through the noised fraction of
*unclipped* updates ``b~ = (sum_i 1[|D_i| <= C] + N(0, sigma_b^2)) / m`` and the geometric step
``C <- C * exp(-clip_norm_lr * (b~ - gamma))``; the update noise multiplier
``z_D = (z^-2 - (2 sigma_b)^-2)^-1/2`` makes the pair (noised average, noised count) as private as
one Gaussian release with ``z`` (Thm 1), which is what the accountant composes. fedleak deviates
from Flower 1.42's adaptive wrappers, which (1) step with the *clipped* fraction, so the bound moves
away from the target quantile, and (2) update the bound before noising and so scale the noise with
the new bound, below the ``z_D * C / m`` of the bound actually used. Like Flower's accounted
fixed-clipping wrappers (and unlike its adaptive ones) a round with a failed or missing reply
releases nothing: no aggregate, no composition, no bound update.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterable
from logging import INFO
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.exception import AggregationError
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log
from flwr.supercore.differential_privacy import (
    KEY_CLIPPING_NORM,
    KEY_NORM_BIT,
    adaptive_clip_inputs_inplace,
    compute_adaptive_noise_params,
    compute_stdv,
)
from flwr.supercore.privacy_accounting import GaussianPrivacyEvent
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from defenses.central_release import (
    NO_AGGREGATE,
    CentralRelease,
    add_gaussian_noise,
    incomplete_round,
    round_noise_rng,
)
from defenses.clipping import ZeroSafeClipping
from fl.federation.strategy_wrapper import StrategyWrapper


class AdaptiveClipping(StrategyWrapper):
    """Central DP with adaptive clipping (Andrew et al., Algorithm 1) around a uniform FedAvg, accounted.

    One round of :meth:`aggregate_train`, at the bound ``C`` set when the round began:

    1. a failed or missing reply: release nothing (``(None, None)``, no composition, ``C`` kept);
    2. clip every update to ``C`` and count the unclipped ones (:meth:`_clip_and_count`);
    3. let the inner FedAvg average them (uniform weights);
    4. add N(0, (z_D C / m)^2) to the average, then draw the count noise N(0, sigma_b^2), both
       from :func:`round_noise_rng` in that order;
    5. compose one Gaussian release with ``noise_multiplier`` z into ``accountant``;
    6. step ``C <- C exp(-clip_norm_lr (b~ - target_quantile))`` with the noised unclipped fraction b~.
    """

    noise_seed: int = 0
    strategy: FedAvg  # the wrapped strategy (narrower than StrategyWrapper's)

    def __init__(
        self,
        strategy: FedAvg,
        noise_multiplier: float,
        num_sampled_clients: int,
        *,
        accountant: RdpAccountant,
        initial_clipping_norm: float,
        target_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
    ) -> None:
        """``clipped_count_stddev`` sigma_b defaults to ``num_sampled_clients / 20``; ``ValueError`` if
        z >= 2 sigma_b."""
        super().__init__(strategy)
        self.noise_multiplier = noise_multiplier  # z: the release the accountant composes
        self.num_sampled_clients = num_sampled_clients
        self.accountant = accountant
        self.clipping_norm = initial_clipping_norm
        self.target_quantile = target_quantile
        self.clip_norm_lr = clip_norm_lr
        # Thm 1: sigma_b and z_D = (z^-2 - (2 sigma_b)^-2)^-1/2
        self.clipped_count_stddev, self.update_noise_multiplier = compute_adaptive_noise_params(
            noise_multiplier, num_sampled_clients, clipped_count_stddev
        )
        self.last_release: CentralRelease | None = None

    @abstractmethod
    def _clip_and_count(self, replies: list[Message]) -> int:
        """Clip the replies' updates to ``self.clipping_norm`` (if the server clips); the number left unclipped."""

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clip, average, noise, account, then adapt the bound (see the class docstring)."""
        replies = list(replies)
        bound = float(self.clipping_norm)
        reason = incomplete_round(replies, self.num_sampled_clients)  # Flower's adaptive wrappers release short rounds
        if not reason:
            _check_uniform_weights(replies, self.strategy.weighted_by_key)
            unclipped = self._clip_and_count(replies)
            arrays, metrics = self.strategy.aggregate_train(server_round, replies)
            reason = "" if arrays else NO_AGGREGATE
        if reason:
            log(INFO, "aggregate_train: nothing released: %s", reason)
            received = sum(not reply.has_error() for reply in replies)
            self.last_release = self._release(server_round, bound, received, 0.0, reason)
            return None, None
        m = len(replies)
        rng = round_noise_rng(self.noise_seed, server_round)
        std = compute_stdv(self.update_noise_multiplier, bound, m)  # the bound used (Flower: the already-updated one)
        assert arrays is not None  # reason is "" only when the inner strategy aggregated
        arrays = add_gaussian_noise(arrays, std, rng)
        # Andrew et al. noise sum_i (b_i - 1/2), of sensitivity 1/2 (which Thm 1's (2 sigma_b)^-2 assumes),
        # and add back m / 2; m = num_sampled_clients, public, since only complete rounds are released
        half = self.num_sampled_clients / 2
        unclipped_fraction = (float(rng.normal(unclipped - half, self.clipped_count_stddev)) + half) / m
        self.accountant.compose(
            GaussianPrivacyEvent(
                noise_multiplier=self.noise_multiplier,
                sample_size=m,
                population_size=self.accountant.config.population_size,
            )
        )
        # the unclipped fraction b~ (Flower steps with the clipped one, moving C away from the target quantile)
        self.clipping_norm = bound * math.exp(-self.clip_norm_lr * (unclipped_fraction - self.target_quantile))
        self.last_release = self._release(server_round, bound, m, std, "")
        log(INFO, "aggregate_train: noise std %.4g at bound %.4g; next bound %.4g", std, bound, self.clipping_norm)
        return arrays, metrics

    def _release(self, server_round: int, bound: float, clients: int, std: float, reason: str) -> CentralRelease:
        return CentralRelease(
            round=server_round,
            released=not reason,
            noise_multiplier=self.noise_multiplier,
            clipping_norm=bound,
            clients=clients,
            sampled=self.num_sampled_clients,
            noise_std=std,
            reason=reason,
            update_noise_multiplier=self.update_noise_multiplier,
            count_stddev=self.clipped_count_stddev,
        )

    def summary(self) -> None:
        """Log the DP settings, then the inner strategy's summary."""
        log(INFO, "\t├──> DP settings (%s):", type(self).__name__)
        log(INFO, "\t│\t├── Noise multiplier (accounted z): %s", self.noise_multiplier)
        log(INFO, "\t│\t├── Update noise multiplier z_D: %s", self.update_noise_multiplier)
        log(INFO, "\t│\t├── Clipping norm: %s", self.clipping_norm)
        log(INFO, "\t│\t├── Target quantile: %s", self.target_quantile)
        log(INFO, "\t│\t└── Clip norm learning rate: %s", self.clip_norm_lr)
        self.strategy.summary()


class ServerSideAdaptiveClipping(ZeroSafeClipping, AdaptiveClipping):
    """Adaptive clipping by the server: each reply's update (reply - global weights) is clipped here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current_arrays = ArrayRecord()  # the global weights of the round being trained

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the global weights the updates are taken against."""
        self.current_arrays = arrays
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def _clip_and_count(self, replies: list[Message]) -> int:
        current = self.current_arrays.to_numpy_ndarrays()
        unclipped = 0
        for reply in replies:
            clipped = False
            for name, record in reply.content.array_records.items():
                update = [np.subtract(x, y) for x, y in zip(record.to_numpy_ndarrays(), current, strict=True)]
                clipped |= adaptive_clip_inputs_inplace(update, self.clipping_norm)  # True iff norm > C
                restored = (Array(np.asarray(c + u)) for c, u in zip(current, update, strict=True))
                reply.content[name] = ArrayRecord(dict(zip(record.keys(), restored, strict=True)))
            unclipped += not clipped
        return unclipped


class ClientSideAdaptiveClipping(AdaptiveClipping):
    """Adaptive clipping by the clients (Flower's ``adaptiveclipping_mod``), at the bound sent in the config."""

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send this round's bound to the clients (``KEY_CLIPPING_NORM``, as Flower)."""
        config[KEY_CLIPPING_NORM] = float(self.clipping_norm)
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def _clip_and_count(self, replies: list[Message]) -> int:
        unclipped = 0
        for reply in replies:
            bits = [m[KEY_NORM_BIT] for m in reply.content.metric_records.values() if KEY_NORM_BIT in m]
            if not bits:
                raise AggregationError(
                    f"a reply from node {reply.metadata.src_node_id} has no '{KEY_NORM_BIT}' metric; "
                    "client-adaptive clipping needs adaptiveclipping_mod on every client"
                )
            unclipped += not bits[0]  # the mod's norm_bit is 1 when it clipped the update
        return unclipped


def _check_uniform_weights(replies: list[Message], key: str) -> None:
    """The accountant assumes a uniform average: one positive, equal ``key`` weight per reply (as Flower checks)."""
    weights = [m.get(key) for reply in replies for m in reply.content.metric_records.values()]
    valid = all(isinstance(w, int | float) and not isinstance(w, bool) and 0 < w < math.inf for w in weights)
    if not valid or len(weights) != len(replies) or len(set(weights)) > 1:
        raise ValueError(f"accounted central DP needs one metric record per reply with equal positive '{key}' weights")
