"""LPIPS (Zhang et al., CVPR 2018), version 0.1 with the AlexNet trunk, from local weight files.

Written in plain torch so that neither torchvision nor the ``lpips`` package is needed; the
weights are not shipped and never downloaded: the user points to two local files.

* Trunk: torchvision's ``alexnet`` ``features`` layout (five convolutions with ReLUs, max-pools
  after the first two), so the ``features.*`` keys of torchvision's ImageNet AlexNet state dict
  load as they are. The features after the five ReLUs are compared.
* Linear heads: the ``lpips`` package's ``weights/v0.1/alex.pth``: one 1x1 convolution without
  bias per layer, keys ``lin{k}.model.1.weight`` of shape (1, C_k, 1, 1), non-negative.

The distance of images ``x, y`` in [0, 1]: map to [-1, 1], apply the paper code's scaling layer
``(v - shift) / scale``, run the trunk, normalise every feature vector to unit length over the
channels, square the difference, weight the channels with the linear head, average over the
spatial positions and sum over the five layers. One-channel images are repeated to three.

Small images: AlexNet's second max-pool needs inputs of at least 31 pixels a side. CIFAR's
32x32 runs natively (the last three layers are then 1x1), like the reference implementation.
An image whose shorter side is below 32 (MNIST's 28x28) is first resized bilinearly
(``align_corners=False``, aspect ratio kept) so that its shorter side is 32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fl.core.errors import ConfigError

CHANNELS = (64, 192, 384, 256, 256)
CONV_INDICES = (0, 3, 6, 8, 10)  # positions of the convolutions in torchvision's alexnet.features
TAPS = (1, 4, 7, 9, 11)  # positions of the ReLUs whose outputs are compared
LIN_KEYS = tuple(f"lin{k}.model.1.weight" for k in range(5))
BACKBONE_KEYS = tuple(f"features.{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias"))
MIN_SIDE = 32  # shorter image side below which inputs are upsampled
SHIFT = (-0.030, -0.088, -0.188)  # the scaling layer of the paper's code (v0.1)
SCALE = (0.458, 0.448, 0.450)


def _alexnet_features() -> nn.Sequential:
    """AlexNet's convolutional trunk up to the fifth ReLU, indexed as in torchvision."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
    )


class _Head(nn.Module):
    """One linear head, laid out as the ``lpips`` package's ``NetLinLayer`` (dropout slot 0, conv slot 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """LPIPS v0.1 (AlexNet) distance; randomly initialised until :func:`load_lpips` fills it.

    Its state dict keys are exactly :data:`BACKBONE_KEYS` and :data:`LIN_KEYS`.
    """

    shift: Tensor  # buffers (registered in __init__)
    scale: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.features = _alexnet_features()
        for k, c in enumerate(CHANNELS):
            self.add_module(f"lin{k}", _Head(c))
        self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None], persistent=False)
        self.requires_grad_(False)
        self.eval()

    def heads(self) -> list[_Head]:
        """The five linear heads, shallowest layer first."""
        return [getattr(self, f"lin{k}") for k in range(len(CHANNELS))]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-pair distance of (N, C, H, W) images in [0, 1] with C = 1 or 3; returns (N,)."""
        if x.shape != y.shape:
            raise ValueError(f"LPIPS needs images of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        p = self.shift
        fx, fy = self._features(x.to(p)), self._features(y.to(p))
        total = p.new_zeros(x.shape[0])
        for lin, a, b in zip(self.heads(), fx, fy, strict=True):
            total = total + lin((_unit(a) - _unit(b)) ** 2).mean(dim=(1, 2, 3))
        return total

    def _features(self, x: Tensor) -> list[Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        side = min(x.shape[-2:])
        if side < MIN_SIDE:
            size = (round(x.shape[-2] * MIN_SIDE / side), round(x.shape[-1] * MIN_SIDE / side))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        h = ((2 * x - 1) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in TAPS:
                out.append(h)
        return out


def _unit(f: Tensor, eps: float = 1e-10) -> Tensor:
    """Each spatial position's feature vector divided by its channel norm (eps as in the paper's code)."""
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def read_state(path: str | Path, what: str) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file or a ``torch.save``d state dict (``weights_only`` loading)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot read {what} file {path}: {reason}") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"{what} file {path} is not a state dict of tensors")
    return state


def _require(state: dict[str, Tensor], keys: tuple[str, ...], path: str | Path, what: str, source: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise ConfigError(
            f"{what} file {path} lacks {len(missing)} of the expected keys {keys[0]} .. {keys[-1]} "
            f"(first missing: {missing[0]}); expected {source}"
        )


def _from_lpips_module(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A whole ``lpips.LPIPS`` state dict names the trunk ``net.slice{k}.{i}.*``: rename to ``features.{i}.*``."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "net" and parts[1].startswith("slice"):
            out[f"features.{parts[2]}.{parts[3]}"] = value
    return out


def check_lpips_paths(weights: str | Path | None, backbone: str | Path | None) -> None:
    """Refuse a backbone without the linear heads (one line naming both flags)."""
    if backbone is not None and weights is None:
        raise ConfigError(
            "lpips_backbone (--lpips-backbone) needs lpips_weights (--lpips-weights), the LPIPS linear heads"
        )


def load_lpips(weights: str | Path, backbone: str | Path | None = None) -> LPIPS:
    """LPIPS with the linear heads from ``weights`` and the AlexNet trunk from ``backbone``.

    ``weights``: the ``lpips`` package's ``weights/v0.1/alex.pth`` (or the same keys as
    safetensors). ``backbone``: torchvision's ImageNet AlexNet state dict (``features.*``; the
    classifier is ignored). ``backbone`` may be omitted when ``weights`` also holds the trunk,
    as the state dict of a whole ``lpips.LPIPS(net="alex")`` module does (``net.slice*``).
    Any problem with a file is a :class:`ConfigError` naming it and the keys expected.
    """
    lin = read_state(weights, "LPIPS weights")
    _require(lin, LIN_KEYS, weights, "LPIPS weights", "the lpips package's weights/v0.1/alex.pth")
    if backbone is None:
        trunk = _from_lpips_module(lin)
        _require(
            trunk,
            BACKBONE_KEYS,
            weights,
            "LPIPS weights",
            "also the AlexNet trunk (net.slice*) since "
            "--lpips-backbone is not given; pass torchvision's AlexNet weights with --lpips-backbone",
        )
        backbone = weights
    else:
        trunk = read_state(backbone, "LPIPS backbone")
        trunk = {**_from_lpips_module(trunk), **trunk}
        _require(trunk, BACKBONE_KEYS, backbone, "LPIPS backbone", "torchvision's AlexNet ImageNet state dict")
    model = LPIPS()
    state = {**{k: lin[k] for k in LIN_KEYS}, **{k: trunk[k] for k in BACKBONE_KEYS}}
    for key, want in model.state_dict().items():
        if state[key].shape != want.shape:
            where = weights if key in LIN_KEYS else backbone
            raise ConfigError(
                f"{key} in {where} has shape {tuple(state[key].shape)}, expected {tuple(want.shape)} "
                "(AlexNet LPIPS v0.1)"
            )
    model.load_state_dict(state, strict=True)
    if any((lin[k] < 0).any() for k in LIN_KEYS):
        raise ConfigError(f"LPIPS weights file {weights} has negative linear-head weights; v0.1 heads are non-negative")
    return model.double()
