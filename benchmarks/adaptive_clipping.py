"""Where adaptive clipping's bound goes: Flower 1.42's wrapper against fedleak's (Andrew et al., Algorithm 1).

    .venv/bin/python benchmarks/adaptive_clipping.py [--norm 0.14] [--rounds 30]

Every one of 3 clients sends an update of L2 norm ``--norm`` each round; both wrappers start at
bound 1.0 with target quantile 0.5, learning rate 0.2, negligible noise (z = 0.01, count noise
0.01). A correct bound moves to the median update norm. Prints one JSON line per round:
the round and both bounds.
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyServerSideAdaptiveClipping, FedAvg
from flwr.supercore.task_identity import TaskIdentity

from defenses import DefenseConfig, build_defense
from defenses.dp_central import DP_WEIGHT_KEY

CLIENTS = 3


class Nodes(Grid):
    """Just enough of a Grid for ``configure_train``: the node ids."""

    def get_node_ids(self) -> list[int]:
        return list(range(1, CLIENTS + 1))

    def set_run(self, run_id: int) -> None:
        raise NotImplementedError

    @property
    def run(self) -> None:
        raise NotImplementedError

    def create_message(self, *args: object, **kwargs: object) -> Message:
        raise NotImplementedError

    def push_messages(self, messages: object) -> list[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: object) -> list[Message]:
        raise NotImplementedError

    def send_and_receive(self, messages: object, *, timeout: float | None = None) -> list[Message]:
        raise NotImplementedError


def fedavg() -> FedAvg:
    return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)


def one_round(strategy, server_round: int, norm: float, rng: np.random.Generator) -> None:
    weights = np.zeros((50, 20), np.float32)
    replies = []
    for message in strategy.configure_train(server_round, ArrayRecord([weights]), ConfigRecord(), Nodes()):
        update = rng.normal(size=weights.shape)
        update = (update * norm / np.linalg.norm(update)).astype(np.float32)
        metrics = MetricRecord({"num-examples": 10, DP_WEIGHT_KEY: 1.0})
        replies.append(
            Message(RecordDict({"arrays": ArrayRecord([weights + update]), "metrics": metrics}), reply_to=message)
        )
    strategy.aggregate_train(server_round, replies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--norm", type=float, default=0.14)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.ERROR)
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = 1, 0, 1  # what a real ServerApp has
    flower = DifferentialPrivacyServerSideAdaptiveClipping(
        fedavg(),
        noise_multiplier=0.01,
        num_sampled_clients=CLIENTS,
        initial_clipping_norm=1.0,
        clipped_count_stddev=0.01,
    )
    config = DefenseConfig(
        name="dp-central", clipping="adaptive", noise_multiplier=0.01, clipping_norm=1.0, clipped_count_stddev=0.01
    )
    ours = build_defense(config).wrap_strategy(fedavg(), num_rounds=args.rounds, clients_per_round=CLIENTS)
    np.random.seed(0)  # Flower's wrapper draws its noise from NumPy's global RNG
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    for r in range(1, args.rounds + 1):
        one_round(flower, r, args.norm, rng_a)
        one_round(ours, r, args.norm, rng_b)
        print(
            json.dumps(
                {
                    "round": r,
                    "update_norm": args.norm,
                    "flower_bound": round(float(flower.clipping_norm), 4),
                    "fedleak_bound": round(float(ours.clipping_norm), 4),
                }
            )
        )


if __name__ == "__main__":
    main()
