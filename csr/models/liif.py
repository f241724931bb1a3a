"""LIIF: local implicit image function (Chen, Liu, Wang, CVPR 2021).

The decoder is an MLP on ``[3x3-unfolded latent, relative coordinate, cell]``. Its first layer is
linear in each of the three, so its latent part equals a 3x3 convolution of the feature map with
the first layer's weights. We compute that convolution once per LR pixel in :meth:`prepare` and
gather 256 numbers per query instead of unfolding 576: the same function, exactly, at a fraction
of the cost (the reference code re-unfolds the whole map for every chunk of queries).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import make, register
from .implicit import ImplicitSR


@register("liif")
class LIIF(ImplicitSR):
    def __init__(self, encoder_spec: dict, imnet_spec: dict, local_ensemble: bool = True,
                 feat_unfold: bool = True, cell_decode: bool = True, add_bilinear: bool = False,
                 input_mean: float = 0.5, input_std: float = 0.5):
        super().__init__(encoder_spec, local_ensemble, add_bilinear, input_mean, input_std)
        self.feat_unfold, self.cell_decode = feat_unfold, cell_decode
        c = self.encoder.out_dim
        self.latent_dim = c * 9 if feat_unfold else c
        in_dim = self.latent_dim + 2 + (2 if cell_decode else 0)
        self.imnet = make(imnet_spec, args={"in_dim": in_dim})

    def _first(self):
        layer = self.imnet.layers[0]
        w = layer.weight
        k = self.latent_dim
        return w[:, :k], w[:, k:k + 2], (w[:, k + 2:k + 4] if self.cell_decode else None), layer.bias

    def prepare(self, feat):
        w_feat, _, _, bias = self._first()
        c = feat.shape[1]
        kernel = w_feat.reshape(-1, c, 3, 3) if self.feat_unfold else w_feat.reshape(-1, c, 1, 1)
        z = F.conv2d(feat, kernel, bias, padding=1 if self.feat_unfold else 0)
        return {"z": z.flatten(2).transpose(1, 2)}

    def decode(self, state, idx, rel, rel_cell):
        _, w_rel, w_cell, _ = self._first()
        pos, w_pos = (torch.cat([rel, rel_cell], -1), torch.cat([w_rel, w_cell], 1)) if self.cell_decode else (rel, w_rel)
        z = self.gather(state["z"], idx)
        b, q, k = z.shape
        h = torch.addmm(z.view(b * q, k), pos.reshape(b * q, pos.shape[-1]), w_pos.t()).view(b, q, k)
        return self.imnet(h.relu_() if not torch.is_grad_enabled() else h.relu(), start=2)
