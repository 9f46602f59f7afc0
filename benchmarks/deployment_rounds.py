"""Round time of one federation on Flower's deployment engine against the simulation engines.

The same run three ways: a SuperLink and one SuperNode per client as processes on localhost (each
node reads only its own partition file), Flower's Ray simulation, and the in-process grid. One
JSON line per engine: seconds per round (from the run's own history), the whole run's wall time,
and the final accuracy, which must agree (same seed, same clients' secret, same partitions).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deployment_rounds.py --data-dir data/
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.flower.localhost import LocalDeployment

ROOT = Path(__file__).resolve().parents[1]
SECRET = "00112233445566778899aabbccddeeff"


def options(args: argparse.Namespace) -> dict[str, str]:
    return {
        "dataset": args.dataset,
        "clients": str(args.clients),
        "rounds": str(args.rounds),
        "client-examples": str(args.client_examples),
        "batch-size": "32",
        "lr": "0.05",
        "defense": args.defense,
        "capture": "all",
        **({"noise-multiplier": "1.0"} if args.defense == "dp-local" else {}),
    }


def line(engine: str, out: Path, wall: float) -> dict:
    result = json.loads((out / "result.json").read_text())
    rounds = [h["wall_s"] for h in result["history"]]
    row = {
        "bench": "deployment_rounds",
        "engine": engine,
        "rounds": len(rounds),
        "round_s": [round(r, 2) for r in rounds],
        "mean_round_s": round(sum(rounds) / len(rounds), 2),
        "wall_s": round(wall, 1),
        "final_accuracy": result["final_accuracy"],
        "epsilon": result["epsilon"],
    }
    print(json.dumps(row), flush=True)
    return row


def deployment(args: argparse.Namespace, base: Path) -> dict:
    opts = options(args)
    nodes = base / "nodes"
    fedleak = [sys.executable, "-m", "experiments.cli"]
    flags = [f"--{k}={v}" for k, v in opts.items() if k in ("dataset", "clients", "client-examples")]
    subprocess.run(
        [
            *fedleak,
            "simulate",
            *flags,
            *([f"--data-dir={args.data_dir}"] if args.data_dir else []),
            "--export-partitions",
            "--out",
            str(nodes),
        ],
        check=True,
        capture_output=True,
    )
    (base / "secret").write_text(SECRET + "\n")
    configs = [
        f"partition-id={i} data-file='{nodes / f'client_{i:04d}.npz'}' truth-dir='{base / 'truth'}' "
        f"client-secret-file='{base / 'secret'}'"
        for i in range(args.clients)
    ]
    dep = LocalDeployment(base / "flwr-home", configs)
    out = base / "deployment"
    run_config = " ".join(f"{k}={v}" if v.replace(".", "").isdigit() else f"{k}='{v}'" for k, v in opts.items())
    run_config += f" node-data=true out='{out}'" + (f" data-dir='{args.data_dir}'" if args.data_dir else "")
    try:
        dep.start()
        start = time.perf_counter()
        proc = dep.flwr_run(ROOT, run_config)
        output, _ = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(output[-2000:])
        return line("deployment (SuperLink + SuperNodes)", out, time.perf_counter() - start)
    finally:
        dep.stop()


def simulation(args: argparse.Namespace, base: Path, engine: str) -> dict:
    out = base / engine
    (base / "secret").write_text(SECRET + "\n")
    flags = [f"--{k}={v}" for k, v in options(args).items()]
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "simulate",
            *flags,
            f"--engine={engine}",
            *([f"--data-dir={args.data_dir}"] if args.data_dir else []),
            f"--client-secret-file={base / 'secret'}",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return line(f"simulation ({engine})", out, time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--client-examples", type=int, default=600)
    ap.add_argument("--defense", default="dp-local", choices=["none", "dp-local"])
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fedleak-deployment-"))
    try:
        rows = [deployment(args, base), simulation(args, base, "ray"), simulation(args, base, "inline")]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    accuracies = {r["final_accuracy"] for r in rows}
    print(
        json.dumps(
            {
                "bench": "deployment_rounds",
                "same_accuracy": len(accuracies) == 1,
                "deployment_over_ray": round(rows[0]["mean_round_s"] / rows[1]["mean_round_s"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
