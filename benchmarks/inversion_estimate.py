"""The inversion cost estimate against measured runs: time and peak memory, per case.

Each case runs in a fresh subprocess (so its peak resident memory is its own): it builds one
client's update (``observe_client``), prints the estimate of :func:`attacks.inversion.cost.
estimate`, runs the attack for ``--iters`` iterations and prints the measured wall time and
the growth of the peak resident set over the process before the attack. One JSON line per
case with both and their ratios (estimate / measured; 1 is exact, the refusal only needs a
small factor).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/inversion_estimate.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = ("mlp:1:1", "mlp:8:4", "mlp:32:10", "convnet:4:2", "vit:1:1", "vit:4:2")


def run_case(spec: str, attack: str, iters: int) -> dict:
    import torch

    from attacks.inversion import attack_config, invert_many, observe_client
    from attacks.inversion.cost import estimate
    from fl.models import build_model

    model_name, batch, steps = spec.split(":")
    batch, steps = int(batch), int(steps)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch * steps, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (batch * steps,), generator=gen)
    torch.manual_seed(0)
    net = build_model(model_name, in_shape=(3, 32, 32), num_classes=10, dropout=0.25)
    obs = observe_client(
        net,
        x,
        y,
        model_name=model_name,
        kind="gradient" if steps == 1 else "delta",
        local_steps=steps,
        batch_size=batch,
        generator=torch.Generator().manual_seed(1),
    )
    est = estimate([obs], attack, iters=iters, masks=attack == "dia")

    def run(n: int) -> float:
        start = time.perf_counter()
        invert_many([obs], attack, config=attack_config(attack, iters=n, log_every=n))
        return time.perf_counter() - start

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    wall = run(iters)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    per_iter = (wall - run(max(iters // 4, 1))) / (iters - max(iters // 4, 1))
    return {
        "bench": "inversion_estimate",
        "case": spec,
        "attack": attack,
        "iters": iters,
        "threads": torch.get_num_threads(),
        "est_s": round(est.seconds, 2),
        "wall_s": round(wall, 2),
        "time_ratio": round(est.seconds / wall, 2),
        "est_ms_per_iter": round(1000 * est.seconds / iters, 1),
        "ms_per_iter": round(1000 * per_iter, 1),
        "est_mib": round(est.peak_bytes / 2**20, 1),
        "peak_growth_mib": round(peak / 2**20, 1),
        "memory_ratio": round(est.peak_bytes / max(peak, 1), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help="model:batch:steps, comma separated")
    ap.add_argument("--attack", default="ig")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.attack, args.iters)), flush=True)
        return
    for spec in args.cases.split(","):
        subprocess.run(
            [sys.executable, __file__, "--one", spec, "--attack", args.attack, "--iters", str(args.iters)], check=True
        )


if __name__ == "__main__":
    main()
