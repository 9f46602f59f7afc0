"""The attacks on CUDA give the CPU's results (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from attacks.inversion import attack_config, invert_many


@pytest.mark.gpu
@pytest.mark.parametrize("attack", ["ig", "dia", "oracle"])
def test_cuda_matches_cpu(make_obs, attack) -> None:
    gen = torch.Generator().manual_seed(0)
    obs = [make_obs(torch.rand(1, 3, 32, 32, generator=gen), torch.tensor([k]), client_seed=k) for k in range(2)]
    cfg = attack_config(attack, iters=30)
    cpu = invert_many(obs, attack, config=cfg, device="cpu")
    gpu = invert_many(obs, attack, config=cfg, device="cuda")
    for a, b in zip(cpu, gpu, strict=True):
        assert b.inputs.device.type == "cpu"
        assert a.grad_loss == pytest.approx(b.grad_loss, abs=0.05)
