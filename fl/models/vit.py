"""A small Vision Transformer (Dosovitskiy et al., ICLR 2021) as used in the DIA paper.

Patch 4, dim 256, depth 4, 16 heads, MLP width 256, class-token pooling (1.6 M parameters
on CIFAR-10). Seventeen dropout sites, as in Scheliga et al. (AAAI 2023): after the position
embedding, and in every block on the attention weights after the softmax, on the attention
output, and on both feed-forward outputs. LayerNorm only, so it is DP-ready as is.
"""

from __future__ import annotations

import torch
from torch import nn

from fl.core.errors import ConfigError
from fl.models.common import check_norm_free
from fl.models.dropout import MaskedDropout
from fl.models.registry import MODELS


class TokenEmbed(nn.Module):
    """Patchify with a strided convolution, prepend a class token, add position embeddings.

    The class token and position embeddings start from N(0, 1), as in the ``vit-pytorch``
    model of the DIA paper's code. With std 0.02 instead, Inverting Gradients at p = 0 put the
    right patches in the wrong places (docs/inversion.md compares the two).
    """

    def __init__(self, in_shape: tuple[int, int, int], patch: int, dim: int) -> None:
        super().__init__()
        c, h, w = in_shape
        if h % patch or w % patch:
            raise ConfigError(f"image size {h}x{w} is not divisible by the ViT patch size {patch}")
        self.proj = nn.Conv2d(c, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (h // patch) * (w // patch) + 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"ViT dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = MaskedDropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = MaskedDropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = self.attn_drop((q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), MaskedDropout(dropout), nn.Linear(mlp_dim, dim), MaskedDropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(
        self,
        in_shape: tuple[int, int, int],
        num_classes: int,
        dropout: float,
        patch: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
    ) -> None:
        super().__init__()
        self.embed = TokenEmbed(in_shape, patch, dim)
        self.embed_drop = MaskedDropout(dropout)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_dim, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed_drop(self.embed(x)))
        return self.head(self.norm(x[:, 0]))


@MODELS.register("vit")
def build_vit(
    *,
    in_shape: tuple[int, int, int],
    num_classes: int,
    dropout: float = 0.0,
    patch: int = 4,
    dim: int = 256,
    depth: int = 4,
    heads: int = 16,
    mlp_dim: int = 256,
    norm: str = "none",
) -> nn.Module:
    """The DIA paper's small ViT (LayerNorm only, DP-ready: ``norm`` none or group)."""
    check_norm_free("vit", norm)
    return ViT(in_shape, num_classes, dropout, patch, dim, depth, heads, mlp_dim)
