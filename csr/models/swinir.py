"""SwinIR encoder (Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCVW 2021):
the classical-SR network without its pixel-shuffle upsampler, as LTE uses it.

Structure: a 3x3 conv (shallow features); residual Swin transformer blocks (RSTB), each a stack
of Swin layers (window self-attention with a learned relative position bias, windows shifted by
half a window on every other layer, then an MLP of ratio 2, both pre-norm and residual) followed
by a 3x3 conv and the block's residual; a LayerNorm, a 3x3 conv and the long residual to the
shallow features; finally, as in the authors' classical-SR model and LTE's encoder, the conv +
LeakyReLU that precedes the upsampler, bringing the features to ``out_channels`` (64). With
``out_channels=None`` that last conv is left out and the output is the ``embed_dim`` body.

Defaults are LTE's: embed_dim 180, six RSTBs of six layers with six heads, window 8, stochastic
depth rising to 0.1 (11.6 M parameters). Any input size works: the input is reflection-padded on
the bottom/right to a multiple of the window, the shifted-window masks are computed for that
padded size, and the output is cropped back. Parameter names follow the authors' code, so an LTE
SwinIR checkpoint loads once its ``attn_mask`` and ``relative_position_index`` buffers (derived
data here, not stored) are dropped.

Receptive field. Attention is global within a window, and windows chain across layers: one Swin
layer reaches at most ``window - 1`` pixels along each axis, so a feature depends only on input
pixels within ``(window - 1) * n_layers + n_convs`` (261 LR pixels by default; masked attention
weights are exactly 0). ``receptive_radius`` (275) adds ``2 * (window - 1)`` for what a tile's own
edge changes (its padding and the wrap-around of the shifted windows): a tiling engine whose tiles
overlap by it reproduces the whole-image features, provided tile origins are multiples of
``tile_align`` (the window size, so the window grid does not move). Conservative: the practical
reach is far shorter.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register


# ---------------------------------------------------------------------------- windows

def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, ws*ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, -1, ws * ws, c)


def window_merge(x: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B, nW, ws*ws, C) -> (B, H, W, C)."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shifted_window_mask(h: int, w: int, ws: int, shift: int, device=None) -> torch.Tensor:
    """Additive attention mask (nW, ws*ws, ws*ws) for windows of an (h, w) map rolled by ``-shift``.

    The roll carries the first ``shift`` rows/columns to the far end, where they share windows
    with pixels that were not their neighbours: attention between the two groups is cut (-inf).
    """
    def wrapped(n):
        lab = torch.zeros(n, dtype=torch.long, device=device)
        lab[n - shift:] = 1
        return lab

    region = wrapped(h)[:, None] * 2 + wrapped(w)[None, :]                   # (h, w)
    ids = window_partition(region[None, :, :, None], ws)[0, ..., 0]           # (nW, N)
    mask = torch.zeros(ids.shape[0], ids.shape[1], ids.shape[1], device=device)
    return mask.masked_fill(ids[:, :, None] != ids[:, None, :], float("-inf"))


def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom/right to multiples of ``m``: reflection, or edge replication
    along an axis too short to reflect the needed amount."""
    for dim, pad in ((-2, -x.shape[-2] % m), (-1, -x.shape[-1] % m)):
        if pad:
            mode = "reflect" if pad < x.shape[dim] else "replicate"
            x = F.pad(x, (0, pad, 0, 0) if dim == -1 else (0, 0, 0, pad), mode=mode)
    return x


# ---------------------------------------------------------------------------- layers

class DropPath(nn.Module):
    """Stochastic depth: while training, zero a sample's residual branch with probability ``p``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        m = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * m / keep


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, plus a learned bias per relative offset."""

    def __init__(self, dim: int, num_heads: int, ws: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # one bias per head for each of the (2 ws - 1)^2 offsets (dy, dx) between two tokens
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        yx = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (yx[:, :, None] - yx[:, None, :]) + (ws - 1)                    # (2, N, N) in [0, 2ws-2]
        self.register_buffer("relative_position_index", rel[0] * (2 * ws - 1) + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, nW, N, C); mask: (nW, N, N) or None."""
        b, nw, n, c = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).view(b, nw, n, 3, h, c // h).permute(3, 0, 1, 4, 2, 5)  # (B, nW, h, N, d)
        bias = self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1)  # (h, N, N)
        if mask is None:  # the same bias for every window
            shape, attn_mask = (b * nw, h, n, -1), bias
        else:             # a bias per (window, head), broadcast over the batch
            shape, attn_mask = (b, nw * h, n, -1), (mask[:, None] + bias).reshape(nw * h, n, n)
        q, k, v = (t.reshape(shape) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask.to(q.dtype))
        return self.proj(out.reshape(b, nw, h, n, -1).transpose(2, 3).reshape(b, nw, n, c))


class SwinLayer(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, each residual, on (B, H, W, C) tokens."""

    def __init__(self, dim: int, num_heads: int, ws: int, shift: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, ws)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        _, hh, ww, _ = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = window_merge(self.attn(window_partition(y, self.ws), mask if self.shift else None), self.ws, hh, ww)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x, mask):
        for blk in self.blocks:
            x = blk(x, mask)
        return x


class RSTB(nn.Module):
    """Residual Swin transformer block: Swin layers, a 3x3 conv, the block's input added back."""

    def __init__(self, dim, depth, num_heads, ws, mlp_ratio, drop_paths):
        super().__init__()
        self.residual_group = SwinStage(
            SwinLayer(dim, num_heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_ratio, drop_paths[i])
            for i in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x, mask):
        y = self.residual_group(x, mask)
        return x + self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """(B, C, H, W) feature map -> (B, H, W, C) layer-normed tokens (patch size 1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1))


# ---------------------------------------------------------------------------- network

class SwinIR(nn.Module):
    def __init__(self, embed_dim: int = 180, depths=(6, 6, 6, 6, 6, 6), num_heads=(6, 6, 6, 6, 6, 6),
                 window_size: int = 8, mlp_ratio: float = 2.0, drop_path_rate: float = 0.1,
                 out_channels: int | None = 64, n_colors: int = 3):
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} differ in length")
        self.window_size = self.tile_align = window_size
        self.conv_first = nn.Conv2d(n_colors, embed_dim, 3, padding=1)
        self.patch_embed = PatchEmbed(embed_dim)
        n = sum(depths)   # stochastic depth, rising linearly from 0 at the first layer
        dpr = [drop_path_rate * i / max(1, n - 1) for i in range(n)]
        self.layers = nn.ModuleList()
        for i, (d, h) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:i])
            self.layers.append(RSTB(embed_dim, d, h, window_size, mlp_ratio, dpr[start:start + d]))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        if out_channels:
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, out_channels, 3, padding=1),
                                                      nn.LeakyReLU(inplace=True))
        else:
            self.conv_before_upsample = None
        self.out_dim = out_channels or embed_dim
        self.apply(self._init_weights)

        self._shifted = any(d > 1 for d in depths) and window_size > 1
        n_convs = 1 + len(depths) + 1 + (1 if out_channels else 0)
        # see the module docstring: reach of the layers and convs, plus a margin for tile edges
        self.receptive_radius = (window_size - 1) * (sum(depths) + 2) + n_convs

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ws = self.window_size
        x = pad_to_multiple(x, ws)
        hp, wp = x.shape[-2:]
        mask = shifted_window_mask(hp, wp, ws, ws // 2, x.device) if self._shifted else None
        x = self.conv_first(x)
        t = self.patch_embed(x)
        for layer in self.layers:
            t = layer(t, mask)
        x = x + self.conv_after_body(self.norm(t).permute(0, 3, 1, 2))
        if self.conv_before_upsample is not None:
            x = self.conv_before_upsample(x)
        return x[..., :h, :w]


@register("swinir")
def swinir(embed_dim: int = 180, depths=(6, 6, 6, 6, 6, 6), num_heads=(6, 6, 6, 6, 6, 6),
           window_size: int = 8, mlp_ratio: float = 2.0, drop_path_rate: float = 0.1,
           out_channels: int | None = 64):
    return SwinIR(embed_dim, depths, num_heads, window_size, mlp_ratio, drop_path_rate, out_channels)
