"""Batch label recovery without a classifier bias: fedleak's projection on the mean dummy
feature vector against Geng et al.'s division by the mean feature sum, on the DIA paper's MLP.

One JSON line per batch size: the mean label accuracy (multisets) of each rule over
``--batches`` consecutive CIFAR-10 test batches, each a client's gradient at p = 0.25.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/label_recovery.py --data-dir data/
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from attacks.inversion import labels, observe_client
from attacks.inversion.metrics import label_accuracy
from fl.data import load_dataset
from fl.models import build_model


def feature_sum_counts(obs) -> torch.Tensor:
    """Geng et al.'s bias-free estimate: class-wise weight-gradient sums over the mean feature sum."""
    model = obs.build_model()
    name, layer = labels.last_linear(model, obs.num_classes)
    gw = labels.average_gradient(obs, f"{name}.weight")
    probs, feat = labels._dummy_statistics(model, layer, obs, 64, 0)
    return labels.label_counts(obs.num_examples * (probs - gw.sum(1) / float(feat.sum())), obs.num_examples)


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--batches", type=int, default=12, show_default=True)
@click.option("--sizes", default="4,8,16", show_default=True)
def main(data_dir: Path | None, batches: int, sizes: str) -> None:
    data = load_dataset("cifar10", split="test", root=data_dir)
    for size in (int(s) for s in sizes.split(",")):
        acc: dict[str, list[float]] = {"projection": [], "feature_sum": []}
        for k in range(batches):
            x, y = data.images[size * k : size * (k + 1)], data.labels[size * k : size * (k + 1)]
            torch.manual_seed(0)
            net = build_model("mlp", in_shape=(3, 32, 32), num_classes=10, dropout=0.25)
            obs = observe_client(net, x, y, model_name="mlp", generator=torch.Generator().manual_seed(k))
            acc["projection"].append(label_accuracy(labels.recover_labels(obs), y))
            counts = feature_sum_counts(obs)
            acc["feature_sum"].append(label_accuracy(torch.repeat_interleave(torch.arange(10), counts), y))
        click.echo(json.dumps({"batch_size": size, "batches": batches,
                               **{k: round(sum(v) / len(v), 3) for k, v in acc.items()}}))


if __name__ == "__main__":
    main()
