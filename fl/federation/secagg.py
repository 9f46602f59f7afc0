"""One federated round under SecAgg+ (Bell et al., CCS 2020): the server learns only the aggregate.

Flower implements SecAgg+ for its legacy path only: ``SecAggPlusWorkflow`` drives four
message exchanges (setup, share keys, collect masked vectors, unmask) through a legacy
``Strategy`` and a ``LegacyContext``, and the client's ``secaggplus_mod`` expects legacy
``fitins``/``fitres`` records. This module runs one such round on any Grid (Ray's, or the
in-process one) for the fedleak round loop: each client uploads its quantized, masked
``num_examples``-weighted weights, and unmasking yields only their weighted mean, which is
all the server (and so the curious capture) ever holds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from flwr.common import (
    FitIns,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.typing import Code
from flwr.compat.common.recorddict_compat import fitres_to_recorddict, recorddict_to_fitins
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.serverapp import Grid

FITINS_PARAMETERS = "fitins.parameters"  # the legacy record a SecAgg+ train message carries


@dataclass(frozen=True)
class SecAggReply:
    """What the server learns about one surviving client: its metrics, never its update."""

    client: int
    num_examples: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class SecAggOutcome:
    """The unmasked weighted mean of the survivors' weights and their public metadata."""

    weights: dict[str, torch.Tensor] | None  # None when the protocol halted (too few survivors)
    replies: list[SecAggReply]


def is_secagg_message(content: RecordDict) -> bool:
    """Whether a train message came from the SecAgg+ workflow (legacy ``fitins`` records)."""
    return FITINS_PARAMETERS in content.array_records


def read_fitins(content: RecordDict, names: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Client side: the global weights (named like ``names``) and the config of a SecAgg+ train message."""
    fitins = recorddict_to_fitins(content, keep_input=True)
    arrays = parameters_to_ndarrays(fitins.parameters)
    return {n: torch.from_numpy(np.array(a)) for n, a in zip(names, arrays, strict=True)}, dict(fitins.config)


def fitres_content(weights: Mapping[str, torch.Tensor], num_examples: int, metrics: Mapping[str, Any]) -> RecordDict:
    """Client side: the legacy ``fitres`` reply that ``secaggplus_mod`` masks before it leaves."""
    arrays = [w.detach().cpu().double().numpy() for w in weights.values()]
    fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), num_examples, dict(metrics))
    return fitres_to_recorddict(fitres, keep_input=True)


class _FixedFit(LegacyStrategy):
    """The legacy strategy SecAggPlusWorkflow asks: fixed train instructions, keep the aggregate."""

    def __init__(self, instructions: list[tuple[GridClientProxy, FitIns]]) -> None:
        self.instructions = instructions
        self.results: list[tuple[Any, FitRes]] = []

    def initialize_parameters(self, client_manager: Any) -> Parameters | None:
        return None

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: Any) -> list[tuple[Any, FitIns]]:
        return self.instructions

    def aggregate_fit(self, server_round: int, results: list, failures: list) -> tuple[Parameters | None, dict]:
        self.results = results
        return (results[0][1].parameters if results else None), {}

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager: Any) -> list:
        return []

    def aggregate_evaluate(self, server_round: int, results: list, failures: list) -> tuple[None, dict]:
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters) -> None:
        return None


def secagg_round(
    grid: Grid,
    *,
    server_round: int,
    node_of: Mapping[int, int],
    weights: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    client_configs: Mapping[int, Mapping[str, Any]],
    options: Mapping[str, Any],
    seed: int,
    timeout: float | None = None,
) -> SecAggOutcome:
    """Train the clients of ``node_of`` (client -> node id) for one round under SecAgg+.

    ``options`` are ``SecAggPlusWorkflow`` keyword arguments (num_shares,
    reconstruction_threshold, clipping_range, quantization_range, modulus_range, max_weight);
    ``client_configs`` adds each client's own config entries (its planned rounds).
    """
    client_of = {n: c for c, n in node_of.items()}
    params = ndarrays_to_parameters([w.detach().cpu().double().numpy() for w in weights.values()])
    instructions = [
        (
            GridClientProxy(node, grid, 0),
            FitIns(params, {**config, **client_configs.get(client, {})}),
        )
        for client, node in sorted(node_of.items())
    ]
    strategy = _FixedFit(instructions)
    state = RecordDict({"config": ConfigRecord({"current_round": server_round}), "parameters": ArrayRecord()})
    context = LegacyContext(Context(run_id=0, node_id=0, node_config={}, state=state, run_config={}), strategy=strategy)
    random.seed(seed)  # the workflow shuffles the neighbour graph with the global ``random``
    SecAggPlusWorkflow(**options, timeout=timeout)(grid, context)
    replies = sorted(
        (SecAggReply(client_of[int(p.node_id)], int(r.num_examples), dict(r.metrics)) for p, r in strategy.results),
        key=lambda r: r.client,
    )
    if not strategy.results:
        return SecAggOutcome(None, replies)
    mean = parameters_to_ndarrays(strategy.results[0][1].parameters)
    out = {
        k: torch.from_numpy(np.asarray(a)).to(w.dtype).reshape(w.shape)
        for (k, w), a in zip(weights.items(), mean, strict=True)
    }
    return SecAggOutcome(out, replies)
