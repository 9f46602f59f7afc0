"""From what batch size on is the curious server blind? IG and DIA against realistic client updates.

One Flower federation (in process, Flower's Message API, 2 clients, 1 round) per cell of
dataset x defense x local steps x batch size; the curious server inverts client 0's captured
update (``attack_captured``: the capture alone feeds the attack, the truth scores it) with IG and,
where the clients' model has dropout, DIA and the oracle (IG's loop handed the client's own masks,
which the clients record beside their truth for this bound only, and its labels in the order used).
A client holds ``batch x steps`` records, so its update is one pass of ``steps`` full batches:
FedSGD at one step, unrolled FedAvg (Inverting Gradients) at more; labels are recovered by the
attacker and scored as label accuracy. The model is the round's initial one (the attack is on
round 1), as in the inversion papers.

One JSON line per attack and cell (PSNR and SSIM after optimal matching, label accuracy, seconds,
the clients' epsilon); with ``--table`` a Markdown table of every line at the end. Cells whose
run folder holds a finished federation are not run again.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/federated_batches.py --data-dir data/ \\
        --out runs/federated_batches --table docs/federated-batches.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from attacks.inversion.metrics import label_accuracy
from defenses import DefenseConfig
from experiments.federated import SimulationConfig, run_federation
from experiments.federated.attacking import attack_captured
from experiments.federated.federation import NO_LIMIT
from fl.core.keyvalues import parse_key_values
from fl.data import load_dataset
from fl.federation.capture import CaptureStore
from fl.federation.client_side import read_client_secret
from fl.federation.engine import quiet_flower
from fl.federation.settings import TrainSettings

ATTACKS = ("ig", "dia", "oracle")
DEFENSES = {
    "none": {"name": "none"},
    "dropout": {"name": "dropout", "dropout": 0.25},
    "dp-local": {"name": "dp-local", "noise_multiplier": 1.0, "max_grad_norm": 1.0},
}


def run_dir(
    root: str, dataset: str, model: str, width: int, norm: str | None, defense: str, batch: int, steps: int
) -> Path:
    masks = "_masks" if defense == "dropout" else ""
    return Path(root) / f"{dataset}_{model}{masks}{width or ''}{f'_{norm}' if norm else ''}_{defense}_b{batch}_s{steps}"


def label_chance(run: Path, labels: torch.Tensor, images_rebuilt: int) -> float:
    """Label accuracy of a data-free guess (classes 0, 1, 2, ... in turn, as many as the attack
    rebuilds) against the client's true labels, on the same multiset measure as the attack's."""
    true = labels[torch.as_tensor(CaptureStore(run).true_indices(1, 0))]
    return label_accuracy(torch.arange(images_rebuilt) % (int(labels.max()) + 1), true)


def cell(args: argparse.Namespace, dataset: str, defense: str, steps: int, batch: int) -> list[dict]:
    cfg = SimulationConfig(
        dataset=dataset,
        model=args.model,
        model_options={"width": args.width} if args.width else {},
        norm=args.norm,
        clients=2,
        rounds=1,
        client_examples=batch * steps,
        train=TrainSettings(local_steps=steps, batch_size=batch, lr=args.lr),
        defense=DefenseConfig.from_dict(DEFENSES[defense]),
        capture="all",
        engine="inline",
        data_dir=args.data_dir,
        seed=0,
        client_secret=read_client_secret(args.client_secret),
        record_masks=defense == "dropout",
    )
    out = run_dir(args.out, dataset, args.model, args.width, args.norm, defense, batch, steps)
    if (out / "result.json").is_file():
        fed = json.loads((out / "result.json").read_text())
    else:
        fed = run_federation(cfg, out_dir=out, progress=False).to_json()
    train = load_dataset(dataset, split="train", root=args.data_dir)
    rows = []
    for attack in ("ig", "dia", "oracle") if defense == "dropout" else ("ig",):
        start = time.perf_counter()
        (o,) = attack_captured(
            CaptureStore(out),
            [(1, 0)],
            attack,
            train.images,
            iters=args.iters,
            seed=0,
            train_labels=train.labels,
            budget=NO_LIMIT,
            options=args.options,
        )
        rows.append(
            {
                "bench": "federated_batches",
                "dataset": dataset,
                "model": args.model,
                "norm": args.norm,
                "defense": defense,
                "batch": batch,
                "steps": steps,
                "attack": attack,
                "iters": args.iters,
                "options": args.options,
                "psnr": round(o.psnr, 2),
                "ssim": round(o.ssim, 3),
                "label_acc": None if o.label_acc is None else round(o.label_acc, 3),
                "label_chance": round(label_chance(out, train.labels, len(o.reconstruction)), 3),
                "epsilon": fed.get("epsilon"),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _acc(r: dict) -> str:
    """Label accuracy, with a data-free guess's in parentheses where known."""
    if r["label_acc"] is None:
        return "-"
    return f"{r['label_acc']:.2f}" + (f" ({r['label_chance']:.2f})" if r.get("label_chance") is not None else "")


def table(rows: list[dict]) -> str:
    """One Markdown table per dataset and model: PSNR (SSIM) per batch size, label accuracy beside."""
    names = {"none": "none", "dropout": "dropout 0.25", "dp-local": "dp-local σ=1"}
    out = []
    for dataset, model in dict.fromkeys((r["dataset"], r["model"]) for r in rows):
        batches = sorted({r["batch"] for r in rows if (r["dataset"], r["model"]) == (dataset, model)})
        out += [
            f"{dataset}, {model}: PSNR in dB (SSIM) per batch size; label accuracy of the recovered labels "
            "(in parentheses: of a data-free guess, classes 0, 1, 2, ... in turn)",
            "",
            "| defense | ε per record | local steps | attack | "
            + " | ".join(f"batch {b}" for b in batches)
            + f" | label acc ({' / '.join(map(str, batches))}) |",
            "|---" * (5 + len(batches)) + "|",
        ]
        keys = dict.fromkeys(
            (r["defense"], r["steps"], r["attack"]) for r in rows if (r["dataset"], r["model"]) == (dataset, model)
        )
        for defense, steps, attack in sorted(keys, key=lambda k: (list(names).index(k[0]), k[1], ATTACKS.index(k[2]))):
            cell = {
                r["batch"]: r
                for r in rows
                if (r["dataset"], r["model"], r["defense"], r["steps"], r["attack"])
                == (dataset, model, defense, steps, attack)
            }
            eps = next((f"{r['epsilon']:.2f}" for r in cell.values() if r["epsilon"] is not None), "-")
            psnr = [f"{cell[b]['psnr']:.1f} ({cell[b]['ssim']:.2f})" if b in cell else "" for b in batches]
            acc = [_acc(cell[b]) if b in cell else "-" for b in batches]
            label = "given" if attack == "oracle" else " / ".join(acc)
            out.append(
                f"| {names[defense]} | {eps} | {steps} | {attack.upper() if attack != 'oracle' else 'oracle'} | "
                + " | ".join(psnr)
                + f" | {label} |"
            )
        out.append("")
    return "\n".join(out)


def _labels(dataset: str, data_dir: str | None) -> torch.Tensor:
    return load_dataset(dataset, split="train", root=data_dir).labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist,cifar10")
    ap.add_argument("--model", default="convnet")
    ap.add_argument("--width", type=int, default=16, help="The model's width option (0: the model's default).")
    ap.add_argument("--norm", default=None, help="batch, group (DP-SGD needs it) or none (default: the model's).")
    ap.add_argument("--defenses", default="none,dropout,dp-local")
    ap.add_argument("--steps", default="1,5")
    ap.add_argument("--batches", default="1,4,16,64")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument(
        "--attack-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Every attack's setting, e.g. tv_weight=1e-6 or recipe=ig (repeatable).",
    )
    ap.add_argument("--data-dir", default=None)
    ap.add_argument(
        "--client-secret",
        default="docs/tables-client-secret",
        help="The clients' secret: the federations repeat bit for bit.",
    )
    ap.add_argument("--out", default="runs/federated_batches")
    ap.add_argument("--table", default=None, help="Also write the Markdown tables here.")
    ap.add_argument(
        "--table-from",
        nargs="+",
        default=None,
        metavar="JSONL",
        help="Only print the Markdown tables of earlier runs' JSON lines (later lines win).",
    )
    args = ap.parse_args()
    args.options = parse_key_values(args.attack_option)
    if args.table_from:
        rows: dict[tuple, dict] = {}
        label_sets: dict[str, torch.Tensor] = {}
        for path in args.table_from:
            for line in Path(path).read_text().splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    if (r.get("options") or {}) == args.options:
                        run = run_dir(
                            args.out,
                            r["dataset"],
                            r["model"],
                            r.get("width", 0),
                            r["norm"],
                            r["defense"],
                            r["batch"],
                            r["steps"],
                        )
                        if "label_chance" not in r and (run / "truth").is_dir():
                            labels = label_sets.setdefault(r["dataset"], _labels(r["dataset"], args.data_dir))
                            r["label_chance"] = round(label_chance(run, labels, r["batch"] * r["steps"]), 3)
                        rows[(r["dataset"], r["model"], r["defense"], r["steps"], r["batch"], r["attack"])] = r
        print(table(list(rows.values())))
        return
    quiet_flower(verbose=False)
    rows: list[dict] = []
    for dataset in args.datasets.split(","):
        for defense in args.defenses.split(","):
            for steps in (int(s) for s in args.steps.split(",")):
                for batch in (int(b) for b in args.batches.split(",")):
                    rows += cell(args, dataset, defense, steps, batch)
    if args.table:
        Path(args.table).write_text(table(rows))


if __name__ == "__main__":
    main()
