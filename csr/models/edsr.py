"""EDSR encoder (Lim et al. 2017) without its upsampler, as LIIF/LTE use it.

``edsr-baseline``: 16 residual blocks, 64 channels, residual scale 1 (1.2 M MACs per LR pixel).
``edsr``: the full model's trunk (32 blocks, 256 channels, residual scale 0.1).
Parameter names match the LIIF authors' code, so their checkpoint loads strictly.
"""
import torch.nn as nn

from ..registry import register


class ResBlock(nn.Module):
    def __init__(self, n_feats: int, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    def __init__(self, n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0, n_colors: int = 3):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(n_colors, n_feats, 3, padding=1))
        blocks = [ResBlock(n_feats, res_scale) for _ in range(n_resblocks)]
        self.body = nn.Sequential(*blocks, nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.out_dim = n_feats
        # receptive field radius in LR pixels: one 3x3 conv in the head, two per block, one at the end
        self.receptive_radius = 2 + 2 * n_resblocks

    def forward(self, x):
        x = self.head(x)
        return x + self.body(x)


@register("edsr-baseline")
def edsr_baseline(n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0):
    return EDSR(n_resblocks, n_feats, res_scale)


@register("edsr")
def edsr(n_resblocks: int = 32, n_feats: int = 256, res_scale: float = 0.1):
    return EDSR(n_resblocks, n_feats, res_scale)
