"""IG with and without the BatchNorm prior on a one-step client update of the BatchNorm ConvNet.

GradInversion's prior (Yin et al., CVPR 2021), here against the client's own batch statistics,
which a one-step update's running statistics give exactly (attacks/inversion/batchnorm.py). One
JSON line per prior weight: mean PSNR over the batch after optimal matching, and the wall time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bn_prior.py --iters 400 --weights 0,0.1,1
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from attacks.inversion import attack_config, invert, metrics, observe_client
from fl.data import load_dataset
from fl.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--weights", default="0,0.1,1")
    args = ap.parse_args()
    data = load_dataset("sample", split="train")
    x, y = data.images[: args.batch], data.labels[: args.batch]
    torch.manual_seed(0)
    net = build_model("convnet", in_shape=(3, 32, 32), num_classes=10, width=args.width)
    obs = observe_client(net, x, y, model_name="convnet", model_options={"width": args.width})
    for w in (float(v) for v in args.weights.split(",")):
        start = time.perf_counter()
        res = invert(obs, "ig", config=attack_config("ig", iters=args.iters, bn_prior=w))
        psnr = float(metrics.psnr(res.inputs[metrics.match(res.inputs, x)], x).mean())
        print(
            json.dumps(
                {
                    "bench": "bn_prior",
                    "bn_prior": w,
                    "iters": args.iters,
                    "batch": args.batch,
                    "width": args.width,
                    "psnr": round(psnr, 2),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
