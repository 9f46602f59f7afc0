#!/usr/bin/env python3
"""Check ``attacks/inversion/lpips.py`` against the reference ``lpips`` package (not run in CI).

Both get the same weights: a seeded random torchvision AlexNet (no download) and non-negative
random heads, saved in the real file formats; then the lpips package's own shipped heads
(``lpips/weights/v0.1/alex.pth``) on the same trunk. Prints the largest absolute difference
per image size against the reference in float64 and in float32.

Usage (a throwaway venv that sees the project's torch):
    python3 -m venv .lpips-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > .lpips-venv/lib/python3.11/site-packages/main.pth
    .lpips-venv/bin/pip install --no-deps torchvision==0.29.* lpips
    OMP_NUM_THREADS=1 .lpips-venv/bin/python scripts/lpips_crosscheck.py [--work runs/lpips-crosscheck]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.library

ROOT = Path(__file__).resolve().parents[1]


def _import_reference():
    """Import torchvision and lpips. The PyPI torchvision wheel's C ops (detection kernels) do
    not load against a CPU-only torch build; their fake-kernel registrations are skipped, which
    leaves ``torchvision.models.alexnet`` untouched."""
    register_fake = torch.library.register_fake
    torch.library.register_fake = lambda *a, **k: lambda f: f
    try:
        import lpips
        import torchvision
    finally:
        torch.library.register_fake = register_fake
    return torchvision, lpips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/lpips-crosscheck"), help="folder for the weight files")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    torchvision, lpips = _import_reference()
    sys.path.insert(0, str(ROOT))
    from attacks.inversion.lpips import load_lpips

    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet()
    backbone = args.work / "alexnet_tv.pth"
    torch.save(alexnet.state_dict(), backbone)
    ref = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False).eval()
    with torch.no_grad():
        for name, p in ref.net.named_parameters():  # slice{k}.{i}.{weight,bias} <- features[i]
            _, i, kind = name.split(".")
            p.copy_(getattr(alexnet.features[int(i)], kind))
        heads = {f"lin{k}.model.1.weight": getattr(ref, f"lin{k}").model[1].weight.abs() for k in range(5)}
    random_heads = args.work / "alex_lin_random.pth"
    torch.save(heads, random_heads)
    shipped = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    g = torch.Generator().manual_seed(1)
    for label, heads_file in (("random heads", random_heads), ("shipped alex.pth heads", shipped)):
        ref.load_state_dict(torch.load(heads_file, map_location="cpu", weights_only=True), strict=False)
        mine = load_lpips(heads_file, backbone)
        for shape in ((8, 3, 32, 32), (4, 3, 64, 64), (2, 3, 224, 224), (4, 3, 40, 57)):
            x = torch.rand(shape, generator=g, dtype=torch.float64)
            y = (x + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
            with torch.no_grad():
                d = mine(x, y)
                r32 = ref.float()(x.float(), y.float(), normalize=True).flatten().double()
                r64 = ref.double()(x, y, normalize=True).flatten()
            print(
                f"{label}, {shape}: LPIPS {d.min():.4f}..{d.max():.4f}, max |ours - ref float64| "
                f"{(d - r64).abs().max():.2e}, max |ours - ref float32| {(d - r32).abs().max():.2e}"
            )


if __name__ == "__main__":
    main()
