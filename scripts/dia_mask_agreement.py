#!/usr/bin/env python3
"""How well DIA recovers the client's dropout masks, site by site (a diagnostic, not a test).

One CIFAR-10 test image is one client's gradient (train mode, its own dropout RNG); DIA
attacks it alone. For every dropout site the script prints one JSON line: the share of mask
entries whose learned value, thresholded at 0.5, equals the client's true mask (two
independent Bernoulli(1 - p) masks agree on (1 - p)^2 + p^2 of them), the learned masks'
mean, and the share still strictly between 0.05 and 0.95. A last line gives the PSNR.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/dia_mask_agreement.py --model vit --iters 1000 \\
        --data-dir data/

``--recipe ig --mask-penalty square`` runs fedleak's former DIA loop instead of the authors'.
"""

from __future__ import annotations

import argparse
import json

import torch

from attacks.inversion import attack_config, invert, metrics, observe_client
from fl.data import load_dataset
from fl.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit")
    ap.add_argument("--dropout", type=float, default=0.25)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--tv-weight", type=float, default=1e-5)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipe", choices=("dia", "ig"), default="dia")
    ap.add_argument("--mask-penalty", choices=("abs", "square"), default="abs")
    args = ap.parse_args()
    data = load_dataset("cifar10", split="test", root=args.data_dir)
    x, y = data.images[args.index : args.index + 1], data.labels[args.index : args.index + 1]
    torch.manual_seed(args.seed)
    model = build_model(args.model, in_shape=tuple(x.shape[1:]), num_classes=10, dropout=args.dropout)
    obs = observe_client(model, x, y, model_name=args.model, generator=torch.Generator().manual_seed(args.seed + 1))
    result = invert(
        obs,
        "dia",
        config=attack_config(
            "dia",
            iters=args.iters,
            tv_weight=args.tv_weight,
            seed=args.seed,
            recipe=args.recipe,
            mask_penalty=args.mask_penalty,
        ),
    )
    for site, truth in obs.true_masks.items():
        learned = result.masks[site]
        print(
            json.dumps(
                {
                    "site": site,
                    "entries": truth.numel(),
                    "agreement": round(float(((learned > 0.5).float() == truth).float().mean()), 4),
                    "mean": round(float(learned.mean()), 4),
                    "undecided": round(float(((learned > 0.05) & (learned < 0.95)).float().mean()), 4),
                }
            )
        )
    print(
        json.dumps(
            {
                "psnr": round(float(metrics.psnr(result.inputs, x).mean()), 2),
                "iters": args.iters,
                "label_acc": float((result.labels == y).float().mean()),
            }
        )
    )


if __name__ == "__main__":
    main()
