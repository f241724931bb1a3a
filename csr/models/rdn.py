"""RDN encoder (Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR 2018)
without its upsampler, as LIIF uses it.

Structure: two shallow 3x3 convolutions; ``D`` residual dense blocks, each ``C`` densely connected
3x3 conv+ReLU layers adding ``G`` channels apiece, fused back to ``G0`` channels by a 1x1 conv
(local feature fusion) plus the block's input (local residual); the ``D`` block outputs are
concatenated and fused by a 1x1 then a 3x3 conv (global feature fusion), plus the first shallow
feature map (global residual). Output: ``G0`` channels at the LR resolution.

Defaults are the paper's configuration B (D=16, C=8, G=64, G0=64), 22.0 M parameters. Attribute
names follow the LIIF authors' code (``SFENet1``, ``RDBs.i.convs.j.conv.0``, ``LFF``, ``GFF``), so
their RDN checkpoints load strictly.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..registry import register


class DenseLayer(nn.Module):
    """conv + ReLU whose ``grow`` output channels are appended to its input."""

    def __init__(self, in_ch: int, grow: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_ch, grow, kernel_size, padding=kernel_size // 2), nn.ReLU())

    def forward(self, x):
        return torch.cat([x, self.conv(x)], dim=1)


class ResidualDenseBlock(nn.Module):
    def __init__(self, G0: int, G: int, C: int, kernel_size: int = 3):
        super().__init__()
        self.convs = nn.Sequential(*[DenseLayer(G0 + i * G, G, kernel_size) for i in range(C)])
        self.LFF = nn.Conv2d(G0 + C * G, G0, 1)  # local feature fusion

    def forward(self, x):
        return x + self.LFF(self.convs(x))


class RDN(nn.Module):
    def __init__(self, D: int = 16, C: int = 8, G: int = 64, G0: int = 64, kernel_size: int = 3,
                 n_colors: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        pad = kernel_size // 2
        self.SFENet1 = nn.Conv2d(n_colors, G0, kernel_size, padding=pad)
        self.SFENet2 = nn.Conv2d(G0, G0, kernel_size, padding=pad)
        self.RDBs = nn.ModuleList([ResidualDenseBlock(G0, G, C, kernel_size) for _ in range(D)])
        self.GFF = nn.Sequential(nn.Conv2d(D * G0, G0, 1), nn.Conv2d(G0, G0, kernel_size, padding=pad))
        self.out_dim = G0
        # receptive field radius in LR pixels: the longest chain of k x k convolutions is
        # SFENet1, SFENet2, the C convs of every block, then GFF's second conv (1x1 convs add none)
        self.receptive_radius = pad * (2 + D * C + 1)

    def forward(self, x):
        f1 = self.SFENet1(x)
        x = self.SFENet2(f1)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        return f1 + self.GFF(torch.cat(outs, dim=1))


@register("rdn")
def rdn(D: int = 16, C: int = 8, G: int = 64, G0: int = 64, kernel_size: int = 3):
    return RDN(D, C, G, G0, kernel_size)
