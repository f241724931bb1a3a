"""MetaSR (Hu et al., CVPR 2019) as re-implemented for comparison in the LIIF paper.

A small network predicts, from a query's sub-pixel offset and the inverse scale, the weights of
a per-query linear filter over the 3x3-unfolded latent of the LR pixel the query falls in.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import make, register
from .implicit import EPS_PX, ImplicitSR


@register("metasr")
class MetaSR(ImplicitSR):
    def __init__(self, encoder_spec: dict, imnet_spec: dict, add_bilinear: bool = False,
                 input_mean: float = 0.5, input_std: float = 0.5):
        super().__init__(encoder_spec, False, add_bilinear, input_mean, input_std)
        self.latent_dim = self.encoder.out_dim * 9
        self.imnet = make(imnet_spec, args={"in_dim": 3, "out_dim": self.latent_dim * 3})

    def prepare(self, feat):
        b, c, h, w = feat.shape
        return {"feat": F.unfold(feat, 3, padding=1).view(b, c * 9, h * w).transpose(1, 2)}

    def neighbours(self, state, coord, cell=None):
        """The one latent a query uses: the LR pixel its output pixel's top-left corner falls in
        (as in the LIIF re-implementation), weight 1; offsets of that corner in LR pixels."""
        if cell is None:
            raise ValueError("MetaSR locates a query by its cell's corner: pass cell")
        h, w = state["hw"]
        corner = coord - cell / 2
        c = corner + coord.new_tensor([EPS_PX / h, EPS_PX / w])  # _nearest clamps to the map
        iy, qy = self._nearest(c[..., 0], h)
        ix, qx = self._nearest(c[..., 1], w)
        rel = (corner - torch.stack([qy, qx], dim=-1)) * coord.new_tensor([h, w]) / 2
        return [(iy * w + ix, rel)], [torch.ones_like(rel[..., 0])]

    def query(self, state, coord, cell):
        h = state["hw"][0]
        (idx, rel), = self.neighbours(state, coord, cell)[0]
        inv_scale = cell[..., :1] * h / 2
        weights = self.imnet(torch.cat([rel, inv_scale], dim=-1).to(state.get("dtype", torch.float32)))
        idx, = self.local_indices(state, [idx])   # (prepares the rows first, with strip_pixels)
        latent = self.gather(state["feat"], idx)
        b, q, k = latent.shape
        out = torch.bmm(latent.reshape(b * q, 1, k), weights.reshape(b * q, k, 3)).view(b, q, 3)
        return self.finish(state, coord, out)

    def query_grid(self, state, ys, xs, cell):
        coord = self._grid_of_one(state, ys, xs)   # its look-up needs each query's cell corner: no per-axis form
        return self.query(state, coord, cell.expand_as(coord))
