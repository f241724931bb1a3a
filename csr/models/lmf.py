"""A fast decoder: a heavy network once per LR pixel, a tiny MLP per query.

In the spirit of LMF (latent modulated functions, He & Jin, CVPR 2024): everything that depends
only on the LR pixel (most of the work) is computed once per LR pixel by a convolutional head,
and each query runs only a narrow MLP on its offset and cell. The head predicts, per LR pixel,
the first layer's pre-activation and a bias ("shift") for each further hidden layer, so the
per-query MLP is modulated by its latent::

    h1 = relu(z1 + A [rel, cell] + P rel),  h(k+1) = relu(W_k h_k + (b_k + t_k)),  rgb = V h_last + c

``A`` is shared by all pixels. With ``pixel_rel`` the head also predicts, per LR pixel, the
weights ``P`` (hidden x 2) of the offset, so each pixel orients its first layer's ridges along its
own edges (LTE's per-pixel frequencies play that part there). With ``pixel_scale`` it also
predicts a per-unit gain ``s_k`` of each further hidden layer (FiLM's scale beside its shift, as
LMF modulates): ``h(k+1) = relu(s_k * (W_k h_k) + (b_k + t_k))``. Both start at the identity
(``P = 0``, ``s = 1``; their convolutions are zero-initialised), so a decoder trained without them
loads and computes the same function, then learns them (``init_prefixes``).

With the local ensemble over the 4 nearest latents, area weights, LTE-style cell clipping and the
bilinear-upsampled input added back. At hidden width 64 and 3 hidden layers a query costs about
9k multiply-adds (51k per output pixel at x4, the head amortised) against about 1.4M for LIIF's
decoder; ``pixel_rel`` adds 2 x hidden products per query and neighbour, done as elementwise
products, which ``torch.utils.flop_counter`` does not count (512 per output pixel at hidden 64);
``pixel_scale`` adds hidden x (depth - 1) more of them per query and neighbour.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register
from .implicit import STRIP_PIXELS, ImplicitSR


@register("lmf")
class LatentModulated(ImplicitSR):
    strip_pixels = STRIP_PIXELS   # its head's 256-channel maps: faster on strips (implicit.py)

    def __init__(self, encoder_spec: dict, hidden: int = 64, depth: int = 3, head_dim: int = 256,
                 pixel_rel: bool = False, pixel_scale: bool = False, local_ensemble: bool = True,
                 add_bilinear: bool = True, cell_clip: float | None = 4.0, input_mean: float = 0.5, input_std: float = 0.5):
        super().__init__(encoder_spec, local_ensemble, add_bilinear, input_mean, input_std, cell_clip)
        c = self.encoder.out_dim
        self.hidden, self.depth = hidden, depth
        self.head = nn.Sequential(nn.Conv2d(c, head_dim, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(head_dim, head_dim, 1), nn.ReLU(),
                                  nn.Conv2d(head_dim, hidden * depth, 1))
        self.rel_head = self._zero_conv(head_dim, 2 * hidden) if pixel_rel else None
        self.scale_head = self._zero_conv(head_dim, hidden * (depth - 1)) if pixel_scale and depth > 1 else None
        self.pos = nn.Linear(4, hidden, bias=False)       # [rel_y, rel_x, cell_y, cell_x]
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
        self.out = nn.Linear(hidden, 3)

    @staticmethod
    def _zero_conv(cin, cout):
        conv = nn.Conv2d(cin, cout, 1)
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        return conv

    def prepare(self, feat):
        t = self.head[:-1](feat)
        # per-pixel columns: [z1 | shifts of layers 2..depth | P (2 x hidden) | gains of layers 2..depth];
        # the hidden layers' biases are folded into their shifts and the gains' 1 into the gains
        # here, once per LR pixel, so that each query's layer is one fused multiply-add
        zero, one = feat.new_zeros(self.hidden), feat.new_ones(self.hidden)
        mod = [self.head[-1](t)]
        bias = [zero, *(layer.bias for layer in self.layers)]
        if self.rel_head is not None:
            mod.append(self.rel_head(t))
            bias += [zero, zero]
        if self.scale_head is not None:
            mod.append(self.scale_head(t))
            bias += [one] * len(self.layers)
        mod = torch.cat(mod, dim=1) + torch.cat(bias).view(1, -1, 1, 1)
        return {"mod": mod.flatten(2).transpose(1, 2)}

    def decode(self, state, idx, rel, rel_cell):
        m = self.gather(state["mod"], idx)
        b, q, c = m.shape
        hid, n = self.hidden, self.depth - 1
        # one split, not a slice per part: a slice's backward fills a zero tensor as wide as all of
        # ``m`` per part (most of a training step, measured), a split's backward is one concatenation
        parts = iter(m.view(b * q, c).split(hid, dim=1))   # as prepare() lays them out
        z1, shifts = next(parts), [next(parts) for _ in range(n)]
        rel = rel.reshape(b * q, 2)
        h = torch.addmm(z1, torch.cat([rel, rel_cell.reshape(b * q, 2)], dim=-1), self.pos.weight.t())
        if self.rel_head is not None:
            h = h.addcmul_(rel[:, :1], next(parts)).addcmul_(rel[:, 1:], next(parts))
        gains = [next(parts) for _ in range(n)] if self.scale_head is not None else None
        h = h.relu_()
        for k, layer in enumerate(self.layers):
            if gains is None:
                h = torch.addmm(shifts[k], h, layer.weight.t())
            else:
                h = torch.addcmul(shifts[k], h @ layer.weight.t(), gains[k])
            h = h.relu_()
        return self.out(h).view(b, q, 3)
