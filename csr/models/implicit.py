"""What every local implicit decoder shares: coordinates, latent look-up and the local ensemble.

Conventions (the LIIF paper's): coordinates are ``(y, x)`` in ``[-1, 1]`` at pixel centres; a
query's ``cell`` is the size of its output pixel in the same units, ``(2 / H_out, 2 / W_out)``.
A model encodes an LR image once (:meth:`ImplicitSR.encode`, returning a dict of per-LR-pixel
tensors) and then answers any set of queries (:meth:`ImplicitSR.query`); images are ``[0, 1]``
tensors outside the model, normalised inside it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import make


def make_coord(shape, device=None, dtype=torch.float32, flatten: bool = True) -> torch.Tensor:
    """Pixel-centre coordinates of an ``(H, W)`` grid: ``(H*W, 2)``, or ``(H, W, 2)`` unflattened."""
    axes = [(torch.arange(n, device=device, dtype=dtype) * 2 + 1) / n - 1 for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return grid.reshape(-1, 2) if flatten else grid


def grid_coords(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """The (1, R*C, 2) coordinates of the grid of rows ``ys`` (R,) by columns ``xs`` (C,)."""
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).view(1, -1, 2)


def make_cell(coord: torch.Tensor, shape) -> torch.Tensor:
    """Cells for queries on an ``(H, W)`` output grid, shaped like ``coord``."""
    cell = torch.empty_like(coord)
    cell[..., 0] = 2 / shape[0]
    cell[..., 1] = 2 / shape[1]
    return cell


EPS_PX = 2e-4  # tie-breaking nudge, in LIIF's offset units (1e-4 LR pixel)
# A decoder whose prepare() makes several wide per-pixel maps (lmf's head: 448 numbers per LR
# pixel) runs it at inference on strips of about this many LR pixels, as the queries reach them
# (ImplicitSR.prepare_rows): its maps then take one strip's memory (29 MB) instead of the whole
# map's (232 MB at 480x270) and are gathered while in cache. Whole upscales were 0.95-1.23x as
# fast on strips for lmf and 0.94-1.24x for LIIF, within these shared CPUs' run-to-run noise
# (benchmarks/strips.py, results/strips.md), so only lmf, for the memory, uses them.
STRIP_PIXELS = 1 << 14


class ImplicitSR(nn.Module):
    """Base of LIIF, LTE and MetaSR: an encoder, a per-query decoder, an optional bilinear skip."""

    strip_pixels: int | None = None   # prepare() on strips of this many LR pixels at inference

    def __init__(self, encoder_spec: dict, local_ensemble: bool = True, add_bilinear: bool = False,
                 input_mean: float = 0.5, input_std: float = 0.5, cell_clip: float | None = None):
        super().__init__()
        self.encoder = make(encoder_spec)
        self.local_ensemble = local_ensemble
        self.add_bilinear = add_bilinear
        self.input_mean, self.input_std = input_mean, input_std
        # LTE's evaluation trick: never decode a cell smaller than the training scale's maximum
        self.cell_clip = cell_clip

    # ---------------------------------------------------------------- to be provided by subclasses
    def prepare(self, feat: torch.Tensor) -> dict:
        """Per-LR-pixel tensors the decoder gathers, each ``(B, H*W, C)``."""
        raise NotImplementedError

    def decode(self, state: dict, idx: torch.Tensor, rel: torch.Tensor, rel_cell: torch.Tensor):
        """Predict ``(B, Q, 3)`` from latents at flat indices ``idx`` (B, Q), offsets ``rel``
        (B, Q, 2) and cells ``rel_cell`` (B, Q, 2), both in LIIF's units: normalised coordinates times
        the latent grid size, so neighbouring latents are 2 apart (one LR pixel = 2)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared machinery
    @property
    def receptive_radius(self) -> int:
        """LR pixels of context a latent depends on, plus the decoder's own 3x3 reach."""
        return getattr(self.encoder, "receptive_radius", 32) + 1

    def normalise(self, lr: torch.Tensor) -> torch.Tensor:
        """The encoder's input: normalised and channels-last (NHWC), which the convolutions keep
        and run in 1.4-1.7x faster than NCHW on these CPUs (whole images and training batches);
        the per-pixel maps then come out with channels innermost, as queries gather them."""
        return ((lr - self.input_mean) / self.input_std).contiguous(memory_format=torch.channels_last)

    def encode(self, lr: torch.Tensor, feat: torch.Tensor | None = None) -> dict:
        """Per-LR-pixel state for :meth:`query`; ``feat``: the encoder's output if already known
        (a frozen encoder shared with a teacher is then run once per batch, not twice).

        A decoder with ``strip_pixels`` set keeps, at inference on a map taller than one strip,
        the encoder's output instead, and :meth:`prepare_rows` computes its per-pixel tensors
        strip by strip as the queries reach them (the engine asks for rows top to bottom)."""
        x = self.normalise(lr)
        feat = self.encoder(x) if feat is None else feat
        h, w = feat.shape[-2:]
        state = {"hw": (h, w), "batch": feat.shape[0],
                 "dtype": torch.float64 if feat.dtype == torch.float64 else torch.float32}
        if self.strip_pixels and not torch.is_grad_enabled() and h > self._strip_rows(w):
            state.update(encoded=feat, rows=(0, 0))
        else:
            state.update({k: v.contiguous() for k, v in self.prepare(feat).items()}, rows=(0, h))
        if self.add_bilinear:
            state["inp"] = x
        return state

    def _strip_rows(self, w: int) -> int:
        return max(1, self.strip_pixels // w)

    def prepare_rows(self, state: dict, lo: int, hi: int) -> int:
        """Make ``state``'s per-pixel tensors cover latent rows ``[lo, hi)``, and return the flat
        index of their first pixel (0 when the whole map is prepared). A new strip runs from
        ``lo`` over at least ``strip_pixels`` pixels, computed with one row of real context
        either side (every decoder's per-pixel maps reach 3x3 latents): the same numbers as on
        the whole map, computed and then gathered while they fit in cache; only one strip's maps
        exist at a time."""
        r0, r1 = state["rows"]
        if r0 <= lo and hi <= r1:
            return r0 * state["hw"][1]
        h, w = state["hw"]
        feat = state["encoded"]
        r0, r1 = lo, min(h, max(hi, lo + self._strip_rows(w)))
        a, z = max(0, r0 - 1), min(h, r1 + 1)
        for k in state.pop("maps", ()):
            del state[k]   # free the old strip before the new one is computed
        part = self.prepare(feat[:, :, a:z])
        state["maps"] = tuple(part)
        for k, v in part.items():
            state[k] = v[:, (r0 - a) * w:(r1 - a) * w].contiguous()
        state["rows"] = (r0, r1)
        return r0 * w

    def local_indices(self, state: dict, idxs: list) -> list:
        """Flat latent indices ``idxs`` as indices into the per-pixel tensors of ``state``, after
        :meth:`prepare_rows` has made those cover every row the indices reach."""
        if "encoded" not in state:
            return idxs   # the whole map is prepared: no look-up, no device sync
        if not idxs[0].numel():   # nothing asked: any strip will do, so that the maps exist
            if not state["rows"][1]:
                self.prepare_rows(state, 0, 1)
            return idxs
        w = state["hw"][1]
        lo = min(i.min().item() for i in idxs) // w
        hi = max(i.max().item() for i in idxs) // w + 1
        first = self.prepare_rows(state, lo, hi)
        return [i - first for i in idxs] if first else idxs

    def gather(self, t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` (B, Q) of a per-pixel tensor ``t`` (B, H*W, C) -> (B, Q, C)."""
        b, n, c = t.shape
        flat = idx + torch.arange(b, device=idx.device).unsqueeze(1) * n if b > 1 else idx
        return t.reshape(b * n, c).index_select(0, flat.reshape(-1)).view(b, -1, c)

    def _nearest(self, c: torch.Tensor, n: int):
        """Index of the latent nearest to coordinate ``c`` along an axis of ``n`` latents, and
        that latent's own coordinate (grid_sample 'nearest' semantics, align_corners=False)."""
        i = torch.round(((c + 1) * n - 1) / 2).clamp_(0, n - 1)
        return i.long(), (2 * i + 1) / n - 1

    def neighbours(self, state: dict, coord: torch.Tensor, cell: torch.Tensor | None = None):
        """The latents each query blends and their weights: a list of ``(idx, rel)`` (flat latent
        index (B, Q) and offset (B, Q, 2) in LIIF's units, in ``coord``'s precision) and a list of
        weights (B, Q) that sum to 1 — with the local ensemble, the 4 surrounding latents, each
        weighted by the area of the rectangle between the query and the diagonally opposite one
        (LIIF eq. 4); without it, the nearest latent alone. (``cell`` is unused here; MetaSR,
        which picks its latent by the cell's corner, needs it.)"""
        return self._ensemble(state, coord[..., 0], coord[..., 1])

    def _axis(self, c: torch.Tensor, n: int, v: int, eps: float):
        """Along one axis of ``n`` latents: the latent half an LR pixel from ``c`` towards side
        ``v`` (-1, 0 or 1), plus a tie-breaking nudge that is a fixed distance in LR pixels (so a
        tile and the whole image break ties alike; latents outside the map are clamped to its
        edge), and the offset of ``c`` from that latent in LIIF's units."""
        i, q = self._nearest(c + (v + eps) / n, n)
        return i, (c - q) * n

    def _ensemble(self, state: dict, cy: torch.Tensor, cx: torch.Tensor):
        """:meth:`neighbours` of the queries at ``(cy, cx)``, given per axis as broadcastable
        tensors: (B, Q) each for a list of queries, or a column and a row for a grid, whose every
        look-up is then done once per output row and once per output column."""
        h, w = state["hw"]
        work = state.get("dtype", torch.float32)
        sides, eps = ((-1, 1), EPS_PX) if self.local_ensemble else ((0,), 0.0)
        along_y = {v: self._axis(cy, h, v, eps) for v in sides}
        along_x = {v: self._axis(cx, w, v, eps) for v in sides}
        found, areas = [], []
        for vy in sides:
            for vx in sides:
                (iy, ry), (ix, rx) = along_y[vy], along_x[vx]
                found.append((iy * w + ix, torch.stack(torch.broadcast_tensors(ry, rx), dim=-1)))
                areas.append(((ry * rx).abs() + 1e-9).to(work))
        if len(found) == 1:
            return found, [torch.ones_like(areas[0])]
        total = sum(areas)
        return found, [a / total for a in reversed(areas)]

    def query(self, state: dict, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (unclamped) at ``coord`` (B, Q, 2) with ``cell`` (B, Q, 2).

        Coordinates may be float64 (the engine's): latent look-up and offsets are then computed
        in float64 and only the offsets are rounded to the model's precision.
        """
        return self._blend(state, coord, cell, *self.neighbours(state, coord))

    def query_grid(self, state: dict, ys: torch.Tensor, xs: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """:meth:`query` on the grid of rows ``ys`` (R,) by columns ``xs`` (C,) with one ``cell``
        (2,) for all, as (1, R*C, 3): the engine's blocks. The same numbers, with the latent
        look-ups done per row and per column instead of per query."""
        coord = self._grid_of_one(state, ys, xs)
        found, weights = self._ensemble(state, ys.view(1, -1, 1), xs.view(1, 1, -1))
        found = [(i.reshape(1, -1), r.reshape(1, -1, 2)) for i, r in found]
        return self._blend(state, coord, cell.expand_as(coord), found, [a.reshape(1, -1) for a in weights])

    @staticmethod
    def _grid_of_one(state: dict, ys, xs) -> torch.Tensor:
        if state.get("batch", 1) != 1:
            raise ValueError("query_grid answers one image at a time: use query() for a batch")
        return grid_coords(ys, xs)

    def _blend(self, state, coord, cell, found, weights):
        h, w = state["hw"]
        work = state.get("dtype", torch.float32)
        rel_cell = (cell * coord.new_tensor([h, w])).to(work)
        if self.cell_clip:
            rel_cell = rel_cell.clamp(min=2 / self.cell_clip)
        idxs = self.local_indices(state, [idx for idx, _ in found])
        preds = [self.decode(state, idx, rel.to(work), rel_cell) for idx, (_, rel) in zip(idxs, found)]
        out = preds[0] if len(preds) == 1 else sum(p * wt.unsqueeze(-1) for p, wt in zip(preds, weights))
        return self.finish(state, coord, out)

    def finish(self, state: dict, coord: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Add the bilinear skip (if any) and undo the input normalisation."""
        if self.add_bilinear:
            grid = coord.flip(-1).unsqueeze(1).to(state["inp"].dtype)
            out = out + F.grid_sample(state["inp"], grid, mode="bilinear",
                                      padding_mode="border", align_corners=False)[:, :, 0].transpose(1, 2)
        return out * self.input_std + self.input_mean

    def forward(self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, feat=None) -> torch.Tensor:
        return self.query(self.encode(lr, feat), coord, cell)
