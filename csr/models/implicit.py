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


def make_cell(coord: torch.Tensor, shape) -> torch.Tensor:
    """Cells for queries on an ``(H, W)`` output grid, shaped like ``coord``."""
    cell = torch.empty_like(coord)
    cell[..., 0] = 2 / shape[0]
    cell[..., 1] = 2 / shape[1]
    return cell


EPS_PX = 2e-4  # tie-breaking nudge, in LIIF's offset units (1e-4 LR pixel)
# A decoder whose prepare() makes several wide intermediate maps (lmf's head) runs it at inference
# on strips of about this many LR pixels, which then stay in cache: 1.1-1.4x faster on 256x256
# and 480x270 maps (channels-last input; runs vary); LIIF's single convolution was slower on
# strips (0.8-0.9x), so the others do not (benchmarks/prepare_strips.py measures both).
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
        (a frozen encoder shared with a teacher is then run once per batch, not twice)."""
        x = self.normalise(lr)
        feat = self.encoder(x) if feat is None else feat
        state = self.prepare_strips(feat)
        state["hw"] = tuple(feat.shape[-2:])
        state["dtype"] = torch.float64 if feat.dtype == torch.float64 else torch.float32
        if self.add_bilinear:
            state["inp"] = x
        return state

    def prepare_strips(self, feat: torch.Tensor, strip_pixels: int | None = None) -> dict:
        """:meth:`prepare`, contiguous (so that every query's row look-up is a cheap index_select);
        with ``strip_pixels`` (default: the class's), without gradients and on a larger map,
        computed on strips of rows with one row of real context either side (every decoder's
        per-pixel maps reach 3x3 latents), written into one buffer per tensor: the same numbers as
        on the whole map, computed while they fit in cache."""
        b, _, h, w = feat.shape
        strip_pixels = strip_pixels or self.strip_pixels
        rows = max(1, strip_pixels // w) if strip_pixels else h
        if torch.is_grad_enabled() or h <= rows:
            return {k: v.contiguous() for k, v in self.prepare(feat).items()}
        state = None
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            a, z = max(0, r0 - 1), min(h, r1 + 1)
            part = self.prepare(feat[:, :, a:z])
            if state is None:
                state = {k: v.new_empty(b, h * w, v.shape[-1]) for k, v in part.items()}
            for k, v in part.items():
                state[k][:, r0 * w:r1 * w] = v[:, (r0 - a) * w:(r1 - a) * w]
        return state

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
        h, w = state["hw"]
        work = state.get("dtype", torch.float32)
        size = coord.new_tensor([h, w])
        if not self.local_ensemble:
            shifts, eps = [(0, 0)], 0.0
        else:
            shifts, eps = [(-1, -1), (-1, 1), (1, -1), (1, 1)], EPS_PX
        found, areas = [], []
        for vy, vx in shifts:
            # half an LR pixel towards the neighbour, plus a tie-breaking nudge that is a fixed
            # distance in LR pixels (so a tile and the whole image break ties alike); latents
            # outside the map are clamped to its edge by _nearest
            c = coord + coord.new_tensor([(vy + eps) / h, (vx + eps) / w])
            iy, qy = self._nearest(c[..., 0], h)
            ix, qx = self._nearest(c[..., 1], w)
            rel = (coord - torch.stack([qy, qx], dim=-1)) * size
            found.append((iy * w + ix, rel))
            areas.append(((rel[..., 0] * rel[..., 1]).abs() + 1e-9).to(work))
        if len(found) == 1:
            return found, [torch.ones_like(areas[0])]
        total = sum(areas)
        return found, [a / total for a in reversed(areas)]

    def query(self, state: dict, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (unclamped) at ``coord`` (B, Q, 2) with ``cell`` (B, Q, 2).

        Coordinates may be float64 (the engine's): latent look-up and offsets are then computed
        in float64 and only the offsets are rounded to the model's precision.
        """
        h, w = state["hw"]
        work = state.get("dtype", torch.float32)
        rel_cell = (cell * coord.new_tensor([h, w])).to(work)
        if self.cell_clip:
            rel_cell = rel_cell.clamp(min=2 / self.cell_clip)
        found, weights = self.neighbours(state, coord)
        preds = [self.decode(state, idx, rel.to(work), rel_cell) for idx, rel in found]
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
