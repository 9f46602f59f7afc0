"""Private generators keep all of a client key's entropy; torch's own seeding keeps 32 bits."""

from __future__ import annotations

import torch

from fl.seed import make_generator, private_generator


def test_torch_manual_seed_keeps_only_32_bits_which_is_why_private_generators_exist() -> None:
    key = 2**100 + 12345
    assert torch.equal(
        torch.randn(8, generator=make_generator(key % 2**63)),
        torch.randn(8, generator=make_generator(key % 2**63 + 2**40)),
    )


def test_private_generator_depends_on_every_bit_of_the_seed_and_on_its_purpose() -> None:
    key = 2**100 + 12345

    def draws(seed: int, *labels: int | str) -> torch.Tensor:
        gen = private_generator(seed, *labels)
        return torch.cat(
            [torch.randn(64, generator=gen), torch.rand(64, generator=gen), torch.randperm(64, generator=gen).float()]
        )

    a = draws(key, "dp-noise")
    assert torch.equal(a, draws(key, "dp-noise"))  # reproducible
    for other in (
        draws(key + 2**32, "dp-noise"),
        draws(key + 2**64, "dp-noise"),
        draws(key, "dropout"),
        draws(key % 2**32, "dp-noise"),
    ):
        assert not torch.equal(a[:64], other[:64])
    # no 32-bit torch seed gives the stream: not the key's low bits, nor the derived stream's own seed
    assert not torch.equal(a[:64], torch.randn(64, generator=make_generator(key % 2**32)))
