"""Cost of one attack iteration relative to one forward+backward pass (batch 1), per model.

For each model, one JSON line: the time of a forward+backward at batch 1, of one iteration
of fedleak's IG and DIA loops (measured as the time difference between two iteration counts,
so set-up cost cancels), and of a straightforward reference of the same loss (autograd with
``create_graph=True``, cosine distance over all parameters, TV prior, mask regulariser,
masks written into the dropout buffers), all in the same process, interleaved repetition by
repetition with the forward+backward baseline (medians reported).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/inversion_cost.py --models mlp,vit,convnet
    .venv/bin/python benchmarks/inversion_cost.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from statistics import median

import torch
from torch.nn import functional as F

from attacks.inversion import DIAConfig, IGConfig, observe_client
from attacks.inversion.matching import mask_regularizer, total_variation
from attacks.inversion.optim import adam_inversion
from attacks.inversion.victims import prepare
from fl.device import resolve_device
from fl.models import build_model, dropout_sites, set_masks

OPTIONS = {"mlp": {}, "vit": {}, "convnet": {"norm": "group", "placement": "all"}}


def timed(fn, device: torch.device) -> float:
    """Wall time of ``fn()``, waiting for queued CUDA work on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def reference_iteration(model, labels, x, masks, target, opt, p: float, tv: float, mask_reg: float):
    """The textbook double-backward iteration (Geiping et al.'s code path) with masks as buffers."""
    opt.zero_grad()
    set_masks(model, masks)
    params = [q for q in model.parameters()]
    loss = F.cross_entropy(model(x), labels)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    dot = sum((g * t).sum() for g, t in zip(grads, target, strict=True))
    norm = sum((g * g).sum() for g in grads).sqrt()
    tnorm = sum((t * t).sum() for t in target).sqrt()
    total = 1 - dot / (norm * tnorm) + tv * total_variation(x)
    if masks:
        total = total + mask_reg * mask_regularizer(masks, p)
    total.backward()
    x.grad.sign_()
    opt.step()
    with torch.no_grad():
        x.clamp_(0, 1)
        for m in masks.values():
            m.clamp_(0, 1)


def measure(name: str, iters: tuple[int, int], reps: int, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    opts = OPTIONS[name]
    model = build_model(name, in_shape=(3, 32, 32), num_classes=10, dropout=0.25, **opts)
    x0, y = torch.rand(1, 3, 32, 32), torch.tensor([3])
    obs = observe_client(
        model, x0, y, model_name=name, model_options=opts, generator=torch.Generator().manual_seed(1), known_labels=True
    )  # the client runs on the CPU (its dropout RNG is a CPU generator)
    model, x0, y = model.to(device), x0.to(device), y.to(device)

    def fwd_bwd():
        model.zero_grad()
        F.cross_entropy(model(x0), y).backward()

    return [
        {
            "bench": "inversion_cost",
            "model": name,
            "attack": attack,
            "device": str(device),
            "threads": torch.get_num_threads(),
            **measure_attack(obs, cfg, mode, fwd_bwd, iters, reps, device),
        }
        for attack, cfg, mode in (("ig", IGConfig(), "eval"), ("dia", DIAConfig(), "learn"))
    ]


def measure_attack(obs, cfg, mode: str, fwd_bwd, iters: tuple[int, int], reps: int, device: torch.device) -> dict:
    """fedleak's loop (time difference of two iteration counts) against the reference iteration."""
    victims = prepare([obs], [0], device=device)
    lo, hi = iters

    def loop(n: int) -> None:
        adam_inversion(victims, replace(cfg, iters=n, log_every=n).loop(), masks=mode, attack="bench")

    ref_model = obs.build_model().to(device).train()
    for _, site in dropout_sites(ref_model):
        site.eval()
    x = torch.rand(1, 3, 32, 32, device=device, requires_grad=True)
    masks = {}
    if mode == "learn":
        masks = {
            k: torch.bernoulli(torch.full(v.shape[1:], 0.75, device=device)).requires_grad_(True)
            for k, v in obs.true_masks.items()
        }
    opt = torch.optim.Adam([x, *masks.values()], lr=0.1)
    target = [obs.update[k].to(device) for k, _ in ref_model.named_parameters()]
    labels = obs.labels.to(device)
    mask_reg = getattr(cfg, "mask_reg", 0.0)

    def reference(n: int) -> None:
        for _ in range(n):
            reference_iteration(ref_model, labels, x, masks, target, opt, 0.25, cfg.tv_weight, mask_reg)

    # interleaved repetitions, so load drifts on a shared machine hit both sides alike
    def baseline(n: int) -> None:
        for _ in range(n):
            fwd_bwd()

    loop(lo)
    reference(1)
    baseline(1)  # warm-up
    ours, refs, bases = [], [], []
    for _ in range(reps):
        ours.append((timed(lambda: loop(hi), device) - timed(lambda: loop(lo), device)) / (hi - lo))
        refs.append(timed(lambda: reference(hi - lo), device) / (hi - lo))
        bases.append(timed(lambda: baseline(hi - lo), device) / (hi - lo))
    per_iter, ref, base = median(ours), median(refs), median(bases)
    return {
        "fwd_bwd_ms": round(base * 1e3, 3),
        "fedleak_iter_ms": round(per_iter * 1e3, 3),
        "reference_iter_ms": round(ref * 1e3, 3),
        "fedleak_ratio": round(per_iter / base, 2),
        "reference_ratio": round(ref / base, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,vit,convnet")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--iters", default="5,25", help="two iteration counts whose time difference is measured")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()
    device = resolve_device(args.device)
    lo, hi = (int(v) for v in args.iters.split(","))
    for name in args.models.split(","):
        for row in measure(name, (lo, hi), args.reps, device):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
