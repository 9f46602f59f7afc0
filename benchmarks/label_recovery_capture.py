"""Batch label recovery on the updates a curious server captured in a federation, round by round.

For every captured client update of RUN_DIR (``fedleak simulate --capture all``), the label
accuracy (multisets, against the run's truth) of fedleak's rule
(:func:`attacks.inversion.labels.recover_labels`: Wainakh et al.'s negative-row-sum rule, then
the projection on the mean dummy feature vector), of the projection alone, and of Geng et al.'s
feature-sum fallback. One JSON line per rule: the mean over rounds 1-10, over the second half of
the rounds, and over all rounds. Models without a classifier bias only.

    .venv/bin/python benchmarks/label_recovery_capture.py runs/fedtable/none --data-dir data/
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
from label_recovery import feature_sum, projection

from attacks.inversion import labels
from attacks.inversion.metrics import label_accuracy
from experiments.federated.attacking import observation_from_capture, true_images
from fl.data import load_dataset
from fl.federation.capture import CaptureStore


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def main(run_dir: Path, data_dir: Path | None) -> None:
    store = CaptureStore(run_dir)
    train = load_dataset(store.dataset()["dataset"], split=store.dataset()["split"], root=data_dir)
    rules = {"fedleak": labels.recover_labels, "projection": projection, "feature_sum": feature_sum}
    acc: dict[str, dict[int, list[float]]] = {name: {} for name in rules}
    rounds = store.rounds()
    for r in rounds:
        for c in store.clients(r):
            obs = observation_from_capture(store.load(r, c))
            truth = true_images(store, r, c, train.labels)[: obs.num_examples]
            for name, rule in rules.items():
                acc[name].setdefault(r, []).append(label_accuracy(rule(obs), truth))
    half = rounds[len(rounds) // 2]
    for name, per_round in acc.items():
        means = {r: float(np.mean(v)) for r, v in per_round.items()}
        click.echo(
            json.dumps(
                {
                    "rule": name,
                    "run": run_dir.name,
                    "updates": sum(len(v) for v in per_round.values()),
                    "rounds_1_10": round(float(np.mean([m for r, m in means.items() if r <= 10])), 3),
                    f"rounds_{half}_{rounds[-1]}": round(float(np.mean([m for r, m in means.items() if r >= half])), 3),
                    "all_rounds": round(float(np.mean(list(means.values()))), 3),
                }
            )
        )


if __name__ == "__main__":
    main()
