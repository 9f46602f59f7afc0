"""Metrics: PSNR/SSIM values, optimal matching, label accuracy."""

from __future__ import annotations

import itertools
import math

import torch

from attacks.inversion import metrics


def test_psnr_matches_its_definition() -> None:
    ref = torch.zeros(2, 3, 8, 8)
    x = ref + 0.1
    assert torch.allclose(metrics.psnr(x, ref), torch.full((2,), 20.0, dtype=torch.float64))
    assert math.isinf(float(metrics.psnr(ref, ref)[0]))


def test_ssim_is_one_for_copies_and_low_for_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 3, 32, 32, generator=gen)
    assert torch.allclose(metrics.ssim(ref, ref), torch.ones(2, dtype=torch.float64))
    noise = torch.rand(2, 3, 32, 32, generator=gen)
    assert (metrics.ssim(noise, ref) < 0.1).all()
    slightly = (ref + 0.02 * torch.randn(2, 3, 32, 32, generator=gen)).clamp(0, 1)
    assert (metrics.ssim(slightly, ref) > 0.9).all()


def test_match_undoes_a_permutation_and_score_uses_it() -> None:
    ref = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = ref[perm]
    assert torch.equal(shuffled[metrics.match(shuffled, ref)], ref)
    assert all(math.isinf(p) for p in metrics.score(shuffled, ref)["psnr"])


def test_match_scales_to_a_whole_client_update() -> None:
    """2048 MNIST-sized images (a 64-step, batch-32 update): the MSE matrix is 2048 x 2048; one
    built pixel by pixel needed 26 GB. The assignment equals the brute-force one on a small set."""
    gen = torch.Generator().manual_seed(2)
    ref = torch.rand(2048, 1, 28, 28, generator=gen)
    perm = torch.randperm(2048, generator=gen)
    noisy = (ref[perm] + 0.05 * torch.randn(2048, 1, 28, 28, generator=gen)).clamp(0, 1)
    assert torch.equal(metrics.match(noisy, ref), perm.argsort())
    small, other = ref[:6], torch.rand(6, 1, 28, 28, generator=gen)
    brute = min(
        itertools.permutations(range(6)),
        key=lambda p: sum(float(((other[p[i]] - small[i]) ** 2).mean()) for i in range(6)),
    )
    assert metrics.match(other, small).tolist() == list(brute)


def test_label_accuracy_compares_multisets() -> None:
    assert metrics.label_accuracy(torch.tensor([3, 1, 1]), torch.tensor([1, 3, 1])) == 1.0
    assert metrics.label_accuracy(torch.tensor([1, 1, 2, 2]), torch.tensor([1, 2, 3, 4])) == 0.5


def test_grid_puts_each_psnr_under_its_own_image(tmp_path, monkeypatch) -> None:
    """The label is the x-label of the reconstruction it scores, not a title that reads as the row above's."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from attacks.inversion.plots import save_grid

    calls: list[tuple[str, str]] = []
    for method in ("set_xlabel", "set_title"):
        real = getattr(Axes, method)

        def spy(self, text, *a, _m=method, _real=real, **k):
            calls.append((_m, str(text)))
            return _real(self, text, *a, **k)

        monkeypatch.setattr(Axes, method, spy)
    truth = torch.zeros(2, 3, 4, 4)
    rec = torch.ones(2, 3, 4, 4)
    save_grid(tmp_path / "g.png", truth, {"ig": rec}, {"ig": [11.0, 12.0]})
    labels = [(m, t) for m, t in calls if t.endswith("dB")]
    assert labels == [("set_xlabel", "11.0 dB"), ("set_xlabel", "12.0 dB")]
    assert (tmp_path / "g.png").stat().st_size > 0
