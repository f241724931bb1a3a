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
from .mlp import rows_linear


@register("lmf")
class LatentModulated(ImplicitSR):
    strip_pixels = STRIP_PIXELS   # its 448 numbers per LR pixel: made and used in cache (implicit.py)
    query_chunk = 1 << 13         # queries per block (engine.py): about 1.1x faster than 4096 at x4 (ad-hoc timing)

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
        # per-pixel columns: [z1 | shifts of layers 2..depth | P (2 x hidden) | gains of layers 2..depth]
        # (P with the shared offset weights of A added),
        # as one 1x1 convolution with the heads' weights stacked (its output keeps the input's
        # channels-last layout, so the (B, H*W, C) view below is free); the hidden layers' biases
        # are folded into their shifts and the gains' 1 into the gains here, once per LR pixel,
        # so that each query's layer is one fused multiply-add
        zero, one = feat.new_zeros(self.hidden), feat.new_ones(self.hidden)
        heads = [self.head[-1]]
        bias = [zero, *(layer.bias for layer in self.layers)]
        if self.rel_head is not None:
            heads.append(self.rel_head)
            bias += [self.pos.weight[:, 0], self.pos.weight[:, 1]]   # P's shared part: A's offset columns
        if self.scale_head is not None:
            heads.append(self.scale_head)
            bias += [one] * len(self.layers)
        weight = torch.cat([hd.weight for hd in heads])
        bias = torch.cat([hd.bias for hd in heads]) + torch.cat(bias)
        # the folded bias added outside the convolution: under bf16 autocast it (with the gains'
        # 1) stays float32, where a bf16 bias would round 1 + s to steps of 2^-7
        mod = F.conv2d(t, weight) + bias.view(1, -1, 1, 1)
        return {"mod": mod.flatten(2).transpose(1, 2)}

    def _parts(self, state, idx):
        """``part(k)``: the k-th hidden-wide column group of the per-pixel tensor at ``idx``.
        With gradients, one gather split into its parts (a slice per part would fill, in its
        backward, a zero tensor as wide as all the columns: most of a training step, measured);
        without, each part gathered from its own columns just before it is used, so that it is
        still in cache when used (queries about 1.4x faster at 480x270, ad-hoc timing)."""
        t, hid = state["mod"], self.hidden
        if torch.is_grad_enabled():
            return self.gather(t, idx).view(-1, t.shape[-1]).split(hid, dim=1).__getitem__
        return lambda k: self.gather(t[..., k * hid:(k + 1) * hid], idx).view(-1, hid)

    def decode(self, state, idx, rel, rel_cell):
        b, q = idx.shape
        n = self.depth - 1
        part = self._parts(state, idx)   # prepare()'s layout: z1, shifts, P (if any), gains (if any)
        gains = 1 + n + (2 if self.rel_head is not None else 0)
        rel, rel_cell = rel.reshape(b * q, 2), rel_cell.reshape(b * q, 2)
        if self.rel_head is None:
            h = torch.addmm(part(0), torch.cat([rel, rel_cell], dim=-1), self.pos.weight.t())
        else:   # the offset's shared weights are in P's per-pixel bias (prepare)
            h = torch.addmm(part(0), rel_cell, self.pos.weight[:, 2:].t())
            h = h.addcmul_(rel[:, :1], part(1 + n)).addcmul_(rel[:, 1:], part(2 + n))
        h = h.relu_()
        for k, layer in enumerate(self.layers):
            wh = rows_linear(h, layer.weight)
            h = (wh.add_(part(1 + k)) if self.scale_head is None else torch.addcmul(part(1 + k), wh, part(gains + k))).relu_()
        return rows_linear(h, self.out.weight, self.out.bias).view(b, q, 3)
