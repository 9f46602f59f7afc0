"""Framework overhead of a federated round: Flower + Ray vs the same local training in a plain loop.

    FEDLEAK_DATA=data .venv/bin/python benchmarks/federation_overhead.py

For 10, 50 and 100 clients (fraction chosen so 10 clients train per round), run the same
federation through ``run_federation`` (Flower simulation, Ray; one shared Ray instance) and
through a plain PyTorch loop (same sampling, same ``train_local``, FedAvg, evaluation), and
print one JSON line: seconds per round for both, their ratio, and Ray's start-up.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from experiments.federated import SimulationConfig, run_federation
from experiments.federated.federation import compose
from fl.federation.engine import ray_session
from fl.federation.local_training import evaluate, train_local
from fl.federation.server import sample_clients
from fl.federation.settings import TrainSettings
from fl.seed import derive_seed


def plain_rounds(cfg: SimulationConfig) -> list[float]:
    """Seconds per round of the same federation as a plain loop (no Flower, no Ray, no capture).

    One torch thread, as in Flower's Ray workers (``num_cpus=1`` sets ``OMP_NUM_THREADS=1``).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _plain_rounds(cfg)
    finally:
        torch.set_num_threads(threads)


def _plain_rounds(cfg: SimulationConfig) -> list[float]:
    comp = compose(cfg)
    train, test = comp.train, comp.test
    global_w = {k: v.detach().clone() for k, v in comp.initial_model.state_dict().items()}
    model = comp.model.build()
    times = []
    for r in range(1, cfg.rounds + 1):
        start = time.perf_counter()
        total, weighted = 0, {k: torch.zeros_like(v, dtype=torch.float32) for k, v in global_w.items()}
        for c in sample_clients(cfg.seed, r, cfg.clients, cfg.clients_per_round):
            model.load_state_dict(global_w)
            idx = torch.as_tensor(comp.partitions[c])
            res = train_local(
                model, train.images[idx], train.labels[idx], idx, cfg.train, seed=derive_seed(cfg.seed, "client", c, r)
            )
            for k, v in model.state_dict().items():
                weighted[k] += res.num_examples * v.float()
            total += res.num_examples
        global_w = {k: (v / total).to(global_w[k].dtype) for k, v in weighted.items()}
        model.load_state_dict(global_w)
        evaluate(model, test.images, test.labels)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10,50,100", help="comma-separated federation sizes")
    parser.add_argument("--per-round", type=int, default=10, help="clients sampled per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dataset", default="mnist")
    args = parser.parse_args()
    train = TrainSettings(local_epochs=1, batch_size=8, lr=0.1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ray_session():
        for i, n in enumerate(int(c) for c in args.clients.split(",")):
            cfg = SimulationConfig(
                dataset=args.dataset,
                model="mlp",
                clients=n,
                fraction=min(1.0, args.per_round / n),
                rounds=args.rounds,
                client_examples=32,
                train=train,
                capture="none",
            )
            start = time.perf_counter()
            result = run_federation(cfg, out_dir=Path(tmp) / str(n), progress=False)
            total = time.perf_counter() - start
            history = json.loads((Path(tmp) / str(n) / "result.json").read_text())["history"]
            flower = [h["wall_s"] for h in history]
            plain = plain_rounds(cfg)
            flower_round, plain_round = sum(flower) / len(flower), sum(plain) / len(plain)
            rows.append(
                {
                    "clients": n,
                    "per_round": cfg.clients_per_round,
                    "flower_round_s": round(flower_round, 3),
                    "plain_round_s": round(plain_round, 3),
                    "overhead_x": round(flower_round / plain_round, 2),
                    "run_total_s": round(total, 1),
                    "startup_s": round(total - sum(flower), 1),
                    "first_run": i == 0,
                    "final_accuracy": result.final_accuracy,
                }
            )
    print(
        json.dumps(
            {
                "bench": "federation_overhead",
                "rounds": args.rounds,
                "model": "mlp",
                "dataset": args.dataset,
                "client_examples": 32,
                "batch_size": 8,
                "results": rows,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
