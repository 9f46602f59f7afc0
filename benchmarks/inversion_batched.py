"""Throughput of batched victims: many independent single-image updates attacked at once.

Victims are different clients' one-image updates (same round weights, own dropout RNGs).
One JSON line per mode: ``sequential`` (one ``invert_many`` call per victim), ``batched``
(one call for all: vmap over victims with the ghost inner products), and ``batched_plain``
(vmap with per-victim weight-sized gradients, i.e. without the ghost path). All use the
same per-victim seeds; the script checks that batched and sequential agree.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/inversion_batched.py --victims 32 --iters 20
    .venv/bin/python benchmarks/inversion_batched.py --device cuda --victims 128 --iters 20
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from attacks.inversion import attack_config, invert_many, metrics, observe_client
from attacks.inversion.optim import adam_inversion
from attacks.inversion.victims import prepare, victim_seeds
from fl.device import resolve_device
from fl.models import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--attack", default="dia", choices=["ig", "dia"])
    ap.add_argument("--victims", type=int, default=32)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()
    dev = resolve_device(args.device)
    torch.manual_seed(0)
    model = build_model(args.model, in_shape=(3, 32, 32), num_classes=10, dropout=0.25)
    gen = torch.Generator().manual_seed(1)
    images, labels = (
        torch.rand(args.victims, 3, 32, 32, generator=gen),
        torch.randint(0, 10, (args.victims,), generator=gen),
    )
    obs = [
        observe_client(
            model,
            images[i : i + 1],
            labels[i : i + 1],
            model_name=args.model,
            generator=torch.Generator().manual_seed(100 + i),
            known_labels=True,
        )
        for i in range(args.victims)
    ]
    cfg = attack_config(args.attack, iters=args.iters, log_every=args.iters)
    seeds = victim_seeds(cfg.seed, args.victims)
    invert_many(obs[:2], args.attack, config=attack_config(args.attack, iters=2), device=dev)  # warm-up
    _sync(dev)

    t = time.perf_counter()
    seq = [invert_many([o], args.attack, config=cfg, seeds=[s], device=dev)[0] for o, s in zip(obs, seeds, strict=True)]
    _sync(dev)
    t_seq = time.perf_counter() - t
    t = time.perf_counter()
    bat = invert_many(obs, args.attack, config=cfg, device=dev)
    _sync(dev)
    t_bat = time.perf_counter() - t
    victims = prepare(obs, seeds, device=dev, ghost=False)
    _sync(dev)
    t = time.perf_counter()
    adam_inversion(victims, cfg.loop(), masks="learn" if args.attack == "dia" else "eval", attack=args.attack)
    _sync(dev)
    t_plain = time.perf_counter() - t

    gap = max(float((a.inputs - b.inputs).abs().max()) for a, b in zip(seq, bat, strict=True))
    psnr_gap = max(
        abs(float(metrics.psnr(a.inputs, images[i : i + 1])[0] - metrics.psnr(b.inputs, images[i : i + 1])[0]))
        for i, (a, b) in enumerate(zip(seq, bat, strict=True))
    )
    common = {
        "bench": "inversion_batched",
        "model": args.model,
        "attack": args.attack,
        "victims": args.victims,
        "iters": args.iters,
        "device": str(dev),
        "threads": torch.get_num_threads(),
    }
    for mode, secs in (("sequential", t_seq), ("batched", t_bat), ("batched_plain", t_plain)):
        print(
            json.dumps(
                {
                    **common,
                    "mode": mode,
                    "seconds": round(secs, 3),
                    "recons_per_s": round(args.victims / secs, 3),
                    "speedup": round(t_seq / secs, 2),
                }
            )
        )
    print(json.dumps({**common, "mode": "check", "max_abs_input_gap": gap, "max_psnr_gap_db": round(psnr_gap, 4)}))


if __name__ == "__main__":
    main()
