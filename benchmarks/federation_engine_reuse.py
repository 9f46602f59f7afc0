"""Wall time of consecutive federations with and without one shared Ray instance (JSON lines).

    .venv/bin/python benchmarks/federation_engine_reuse.py --runs 3 --clients 4

Each run is the same small federation (bundled ``sample`` data, MLP, 1 round); ``fresh``
lets every ``run_federation`` start and stop Ray, ``shared`` wraps them in ``ray_session``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from experiments.federated import SimulationConfig, run_federation
from fl.federation.engine import ray_session
from fl.federation.settings import TrainSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    cfg = SimulationConfig(
        dataset="sample", clients=args.clients, rounds=1, capture="none", train=TrainSettings(batch_size=8)
    )
    for mode in ("fresh", "shared"):
        with tempfile.TemporaryDirectory() as tmp, ray_session() if mode == "shared" else nullcontext():
            times = []
            for i in range(args.runs):
                start = time.perf_counter()
                run_federation(cfg, out_dir=Path(tmp) / str(i), progress=False)
                times.append(time.perf_counter() - start)
        print(
            json.dumps(
                {
                    "bench": "federation_engine_reuse",
                    "mode": mode,
                    "runs": args.runs,
                    "clients": args.clients,
                    "wall_s": [round(t, 2) for t in times],
                    "total_s": round(sum(times), 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
