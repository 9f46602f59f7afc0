"""Analytic input recovery: closed-form inversions of a model's first layer.

Two cases, chosen from the architecture:

* **A leading fully connected layer with a bias**, ``z = W x + b``. The gradients are
  ``dL/dW_i = (dL/dz_i) x`` and ``dL/db_i = dL/dz_i``, so any row with a non-zero bias gradient
  gives the input exactly: ``x = (dL/dW_i) / (dL/db_i)`` (Phong et al., IEEE TIFS 2018; Geiping
  et al., NeurIPS 2020, Prop. 3.1). For a batch the row gives a mixture of its inputs; we return
  the rows with the largest bias gradients.
* **A patch embedding followed by a learned position embedding** (a ViT). Token ``i`` is
  ``t_i = E p_i + pos_i`` for patch ``p_i``, so ``dL/dpos_i = dL/dt_i`` and
  ``dL/dE = sum_i (dL/dt_i) p_i^T``: with one example the patches solve the linear system
  ``dL/dE = G^T P``, ``G`` the position-embedding gradient (Lu et al., "APRIL", CVPR 2022).
  Dropout after the embedding changes ``dL/dt`` but not the identity, so the recovery is exact
  whatever masks the client drew. A batch sums its examples' position gradients, so this case
  needs one example.

Which case applies is not declared per model: the patch case is found by shape (a convolution
whose stride is its kernel, a ``(1, tokens, dim)`` parameter) and kept only if it inverts a
random input exactly on a float64 copy of the attacked model.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.inversion.base import ATTACKS, InversionResult
from attacks.inversion.labels import average_gradient
from attacks.inversion.observation import Observation
from attacks.inversion.victims import resolve_labels
from fl.core.errors import ConfigError
from fl.core.schema import setting

CALIBRATION_TOL = 1e-8  # max abs error of the float64 check that a patch solve is exact


@dataclass(frozen=True)
class AnalyticConfig:
    """Analytic recovery has nothing to tune; a row counts when its bias gradient is non-zero."""

    min_bias_grad: float = setting(
        1e-12, help="Analytic: rows whose |bias gradient| is below this are skipped.", cli=False
    )


@dataclass(frozen=True)
class PatchEmbedding:
    """Where a ViT-style model embeds patches: the convolution, the position embedding, and
    ``offset``, the number of extra tokens (e.g. a class token) before the patch tokens."""

    conv: str
    pos: str
    offset: int
    patch: int


def leading_linear(model: nn.Module) -> str | None:
    """Name of the first parametrised layer if it is fully connected with a bias, else None."""
    for name, module in model.named_modules():
        if next(module.parameters(recurse=False), None) is None:
            continue
        if isinstance(module, nn.Linear) and module.bias is not None:
            return name
        return None
    return None


def solve_patches(g_pos: Tensor, g_weight: Tensor, emb: PatchEmbedding, in_shape: tuple[int, int, int]) -> Tensor:
    """The (C, H, W) input behind one example's position-embedding and patch-weight gradients.

    ``g_pos`` is ``(1, tokens, dim)``, ``g_weight`` the ``(dim, C, k, k)`` convolution gradient;
    least squares in float64 solves ``g_weight = G^T P`` for the ``(patches, C k k)`` matrix ``P``.
    """
    c, h, w = in_shape
    k = emb.patch
    rows, cols = h // k, w // k
    g = g_pos[0, emb.offset : emb.offset + rows * cols].double()
    patches = torch.linalg.lstsq(g.T, g_weight.reshape(g_weight.shape[0], -1).double()).solution
    return patches.reshape(rows, cols, c, k, k).permute(2, 0, 3, 1, 4).reshape(c, h, w)


def find_patch_embedding(model: nn.Module, in_shape: tuple[int, int, int]) -> PatchEmbedding | None:
    """The model's patch embedding, if its gradients invert a random input exactly (float64 check)."""
    conv_name, conv = next(
        ((n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))), (None, None)
    )
    if not isinstance(conv, nn.Conv2d) or not _is_patchify(conv, in_shape):
        return None
    assert conv_name is not None  # found together with conv
    k = conv.kernel_size[0]
    patches = (in_shape[1] // k) * (in_shape[2] // k)
    for name, p in model.named_parameters():
        if p.dim() == 3 and p.shape[0] == 1 and p.shape[2] == conv.out_channels and p.shape[1] >= patches:
            emb = PatchEmbedding(conv=conv_name, pos=name, offset=p.shape[1] - patches, patch=k)
            if _inverts_exactly(model, emb, in_shape):
                return emb
    return None


def _is_patchify(conv: nn.Conv2d, in_shape: tuple[int, int, int]) -> bool:
    k = conv.kernel_size
    return (
        k[0] == k[1]
        and conv.stride == k
        and conv.padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and in_shape[1] % k[0] == 0
        and in_shape[2] % k[0] == 0
    )


def _inverts_exactly(model: nn.Module, emb: PatchEmbedding, in_shape: tuple[int, int, int]) -> bool:
    probe = copy.deepcopy(model).double().eval()
    params = dict(probe.named_parameters())
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, *in_shape, generator=gen, dtype=torch.float64)
    out = probe(x)
    loss = F.cross_entropy(out, torch.zeros(1, dtype=torch.long))
    g_pos, g_w = torch.autograd.grad(loss, [params[emb.pos], params[f"{emb.conv}.weight"]])
    return bool((solve_patches(g_pos, g_w, emb, in_shape) - x[0]).abs().max() < CALIBRATION_TOL)


@ATTACKS.register("analytic")
class AnalyticRecovery:
    """Closed-form recovery from the first layer's gradients (fully connected or patch embedding)."""

    Config = AnalyticConfig
    name = "analytic"

    def run(
        self,
        observations: Sequence[Observation],
        config: AnalyticConfig,
        *,
        device: torch.device,
        progress: bool = False,
        seeds: Sequence[int] | None = None,
    ) -> list[InversionResult]:
        return [self._one(o, config) for o in observations]

    def _one(self, obs: Observation, cfg: AnalyticConfig) -> InversionResult:
        start = time.perf_counter()
        model = obs.build_model()
        layer = leading_linear(model)
        if layer is not None:
            x = _linear_rows(obs, layer, cfg)
        else:
            emb = find_patch_embedding(model, obs.in_shape)
            if emb is None:
                raise ConfigError(
                    "attack 'analytic' needs a model whose first layer is fully connected with a bias "
                    "(e.g. --model mlp --model-option bias=true) or a patch embedding with a learned "
                    "position embedding (--model vit)"
                )
            if obs.num_examples != 1:
                raise ConfigError(
                    f"attack 'analytic' on {obs.model_name!r} solves the position-embedding gradient of one "
                    f"example; got an update of {obs.num_examples} examples (needs batch_size 1)"
                )
            x = solve_patches(
                average_gradient(obs, emb.pos), average_gradient(obs, f"{emb.conv}.weight"), emb, obs.in_shape
            )[None]
        labels, source = resolve_labels(obs)
        return InversionResult(
            attack=self.name,
            inputs=x.clamp(0, 1).float(),
            labels=labels,
            label_source=source,
            time_s=time.perf_counter() - start,
        )


def _linear_rows(obs: Observation, layer: str, cfg: AnalyticConfig) -> Tensor:
    gw = average_gradient(obs, f"{layer}.weight")
    gb = average_gradient(obs, f"{layer}.bias")
    rows = torch.argsort(gb.abs(), descending=True)[: obs.num_examples]
    if float(gb.abs()[rows[-1]]) < cfg.min_bias_grad:
        raise ConfigError("attack 'analytic': the first layer's bias gradient is zero, nothing to divide by")
    return (gw[rows] / gb[rows, None]).reshape(obs.num_examples, *obs.in_shape)
