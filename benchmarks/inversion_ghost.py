"""The ghost inner products against the plain gradient, per model and client batch size.

One JSON line per (model, batch): milliseconds per IG iteration (one victim, eval mode) with
every fully connected layer on the ghost path (``all``), with the per-layer cost rule that
fedleak uses (``rule``, :func:`attacks.inversion.matching.ghost_pays`), and with none
(``plain``), measured as the time difference of two iteration counts, interleaved repetitions,
medians. ``rule`` should be no slower than the faster of the other two.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/inversion_ghost.py --cases mlp:1,mlp:8,vit:1,vit:8
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import median

import torch

from attacks.inversion import IGConfig, matching, observe_client
from attacks.inversion.optim import adam_inversion
from attacks.inversion.victims import prepare
from fl.models import build_model


def per_iteration(victims, cfg: IGConfig, lo: int, hi: int) -> float:
    def run(n: int) -> float:
        t = time.perf_counter()
        adam_inversion(victims, IGConfig(iters=n, log_every=n).loop(), masks="eval", attack="bench")
        return time.perf_counter() - t

    return (run(hi) - run(lo)) / (hi - lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="mlp:1,mlp:8,vit:1,vit:8")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--iters", default="3,13")
    args = ap.parse_args()
    lo, hi = (int(v) for v in args.iters.split(","))
    rule = matching.ghost_pays
    for case in args.cases.split(","):
        name, batch = case.split(":")
        torch.manual_seed(0)
        model = build_model(name, in_shape=(3, 32, 32), num_classes=10, dropout=0.25)
        x = torch.rand(int(batch), 3, 32, 32, generator=torch.Generator().manual_seed(0))
        y = torch.arange(int(batch)) % 10
        obs = observe_client(
            model, x, y, model_name=name, generator=torch.Generator().manual_seed(1), known_labels=True
        )
        paths = {}
        for label, ghost, pays in (("all", True, lambda *a: True), ("rule", True, rule), ("plain", False, rule)):
            matching.ghost_pays = pays
            victims = prepare([obs], [0], device=torch.device("cpu"), ghost=ghost)
            paths[label] = (victims, len(victims.matcher.linear))
        matching.ghost_pays = rule
        times: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(args.reps):
            for label, (victims, _) in paths.items():
                times[label].append(per_iteration(victims, IGConfig(), lo, hi))
        print(
            json.dumps(
                {
                    "bench": "inversion_ghost",
                    "model": name,
                    "batch": int(batch),
                    "threads": torch.get_num_threads(),
                    **{f"{k}_ms": round(median(v) * 1e3, 2) for k, v in times.items()},
                    **{f"{k}_ghost_layers": n for k, (_, n) in paths.items()},
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
