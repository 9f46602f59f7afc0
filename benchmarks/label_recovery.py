"""Batch label recovery without a classifier bias, on the DIA paper's MLP, untrained and trained.

Rules compared (label accuracy as multisets, mean over ``--batches`` consecutive test batches of
``--dataset``, each a client's gradient at p = 0.25):

* ``fedleak``: :func:`attacks.inversion.labels.recover_labels`: every class whose weight-gradient
  row sums to a negative value gets one example (Wainakh et al.'s sign rule), the rest follow the
  projection of the class rows on the mean dummy feature vector;
* ``projection``: the projection alone;
* ``feature_sum``: Geng et al.'s fallback, the class-wise row sums over the mean feature sum.

``trained``: the same model after ``--train-steps`` SGD steps (batch 32, lr 0.05) on test images
500 onwards (disjoint from the attacked ones), as in a federation's later rounds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/label_recovery.py --data-dir data/
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/label_recovery.py --data-dir data/ --dataset mnist
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
import torch.nn.functional as F

from attacks.inversion import labels, observe_client
from attacks.inversion.metrics import label_accuracy
from fl.data import load_dataset
from fl.models import build_model


def _stats(obs):
    model = obs.build_model()
    name, layer = labels.last_linear(model, obs.num_classes)
    gw = labels.average_gradient(obs, f"{name}.weight")
    probs, feat, _ = labels._dummy_statistics(model, layer, obs, 64, 0)
    return gw, probs, feat


def _labels(counts: torch.Tensor) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(counts.numel()), counts)


def projection(obs) -> torch.Tensor:
    gw, probs, feat = _stats(obs)
    n = obs.num_examples
    return _labels(labels.label_counts(n * (probs - gw @ feat / (feat @ feat)), n))


def feature_sum(obs) -> torch.Tensor:
    gw, probs, feat = _stats(obs)
    n = obs.num_examples
    return _labels(labels.label_counts(n * (probs - gw.sum(1) / float(feat.sum())), n))


def trained_mlp(data, steps: int) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model("mlp", in_shape=data.shape, num_classes=10, dropout=0.25)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    pool_x, pool_y = data.images[500:], data.labels[500:]
    gen = torch.Generator().manual_seed(1)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(pool_x), (32,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(net(pool_x[idx]), pool_y[idx]).backward()
        opt.step()
    return net


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--dataset", type=click.Choice(["cifar10", "mnist"]), default="cifar10", show_default=True)
@click.option("--batches", type=int, default=12, show_default=True)
@click.option("--sizes", default="2,4,8,16", show_default=True)
@click.option("--train-steps", type=int, default=300, show_default=True)
def main(data_dir: Path | None, dataset: str, batches: int, sizes: str, train_steps: int) -> None:
    data = load_dataset(dataset, split="test", root=data_dir)
    torch.manual_seed(0)
    models = {
        "untrained": build_model("mlp", in_shape=data.shape, num_classes=10, dropout=0.25),
        "trained": trained_mlp(data, train_steps),
    }
    for state, net in models.items():
        for size in (int(s) for s in sizes.split(",")):
            acc: dict[str, list[float]] = {"fedleak": [], "projection": [], "feature_sum": []}
            for k in range(batches):
                x, y = data.images[size * k : size * (k + 1)], data.labels[size * k : size * (k + 1)]
                obs = observe_client(net, x, y, model_name="mlp", generator=torch.Generator().manual_seed(k))
                acc["fedleak"].append(label_accuracy(labels.recover_labels(obs), y))
                acc["projection"].append(label_accuracy(projection(obs), y))
                acc["feature_sum"].append(label_accuracy(feature_sum(obs), y))
            click.echo(
                json.dumps(
                    {
                        "dataset": dataset,
                        "model": state,
                        "batch_size": size,
                        "batches": batches,
                        **{k: round(sum(v) / len(v), 3) for k, v in acc.items()},
                    }
                )
            )


if __name__ == "__main__":
    main()
