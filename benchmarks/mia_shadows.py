"""Shadow training: all models at once (torch.func stack_module_state + vmap) against one after
another, on the current device; ``choose_path``'s rule (vmap on CUDA and for CPU models without
convolutions, the loop otherwise) rests on these measurements (docs/membership.md).

    .venv/bin/python benchmarks/mia_shadows.py --models 4 --records 1000 --epochs 1
"""

from __future__ import annotations

import json
import time

import click
import torch

from attacks.membership.shadows import balanced_assignment, train_stacked
from attacks.membership.training import ModelTraining, train_model
from fl.device import resolve_device
from fl.models import build_model

MODELS = {
    "mlp": ("mlp", {"hidden": 256, "depth": 2, "bias": True}),
    "convnet": ("convnet", {"width": 8, "norm": "group"}),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@click.command()
@click.option("--model", "model_key", type=click.Choice(list(MODELS)), default="mlp", show_default=True)
@click.option("--models", "num_models", type=int, default=4, show_default=True)
@click.option(
    "--records",
    type=int,
    default=1000,
    show_default=True,
    help="Pool size (each model trains on half).",
)
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--device", default="auto", show_default=True)
def main(model_key: str, num_models: int, records: int, epochs: int, device: str) -> None:
    """Time both shadow-training paths on random CIFAR-shaped data and print JSON."""
    dev = resolve_device(device)
    name, options = MODELS[model_key]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(records, 3, 32, 32, generator=gen).to(dev)
    y = torch.randint(0, 10, (records,), generator=gen).to(dev)
    inside = torch.from_numpy(balanced_assignment(num_models, records, seed=0))
    cfg = ModelTraining(epochs=epochs, batch_size=64, lr=1e-3, optimizer="adam")

    def fresh() -> list[torch.nn.Module]:
        torch.manual_seed(0)
        return [build_model(name, in_shape=(3, 32, 32), num_classes=10, **options).to(dev) for _ in range(num_models)]

    models = fresh()
    _sync(dev)
    t0 = time.perf_counter()
    for s, m in enumerate(models):
        train_model(m, x[inside[s].to(dev)], y[inside[s].to(dev)], cfg, seed=s, device=dev)
    _sync(dev)
    loop_s = time.perf_counter() - t0
    models = fresh()
    t0 = time.perf_counter()
    train_stacked(models, x, y, inside, cfg, seeds=list(range(num_models)), device=dev, progress=False)
    _sync(dev)
    vmap_s = time.perf_counter() - t0
    click.echo(json.dumps({
        "device": str(dev), "threads": torch.get_num_threads(), "model": model_key, "models": num_models,
        "records": records, "epochs": epochs, "loop_s": round(loop_s, 2), "vmap_s": round(vmap_s, 2),
        "vmap_speedup": round(loop_s / vmap_s, 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
