"""Inference: encode the LR image once (or tile by tile), then stream queries in bounded chunks.

Memory is bounded, exactly:

* **Tiles.** With ``tile=T`` the LR image is cut into T x T tiles; each is encoded with a margin of
  ``model.receptive_radius + 2`` LR pixels of real context (less only at the image border, where
  the untiled encoder sees zero padding too), so every latent a tile's queries touch equals the
  untiled one and the tiled output equals the untiled output up to float rounding. Encoders with
  a window grid (SwinIR) name its period as ``tile_align``: each tile's padded origin is moved
  down to a multiple of it, so the windows stay where the whole image has them.
* **Queries.** Each tile answers the output pixels whose centres fall on its own LR pixels, in
  blocks of at most ``chunk`` queries; coordinates are generated per block, never for the image.
* **Output.** Each block is written into ``out`` as it finishes; ``out`` may be a preallocated
  uint8/uint16 view (for example of a numpy H x W x 3 array), so a float copy of a large output
  never exists, and may live on another device than the model (a CUDA model fills a CPU array).
"""
from __future__ import annotations

import contextlib
import math

import torch
from tqdm.auto import tqdm

from .models.implicit import grid_coords

DEFAULT_CHUNK = 1 << 12   # queries per forward pass: small enough to stay in cache (measured);
                          # a model may name its own as ``query_chunk`` (lmf's narrow MLP: 8192)
AUTO_TILE = 256           # LR tile side used when an image is larger than AUTO_TILE_AREA
AUTO_TILE_AREA = 384 * 384


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None: CUDA when present, else the CPU; or ``"cpu"``, ``"cuda"``, ``"cuda:N"``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    given = device
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {given!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA device is available")
    return device


def autocast_for(dtype, device: torch.device):
    """A context that runs the model in ``dtype`` (None/fp32: as is). bf16 on CPU is refused
    unless the CPU computes it natively (on AVX2-only CPUs it is many times slower)."""
    from .dist import choose_precision
    if dtype in (None, "fp32", torch.float32):
        return contextlib.nullcontext()
    name = {torch.bfloat16: "bf16", "bfloat16": "bf16"}.get(dtype, dtype)
    if name == "fp16" or dtype == torch.float16:
        if device.type != "cuda":
            raise ValueError("fp16 is only supported on CUDA; use bf16 or fp32 on CPU")
        return torch.autocast("cuda", dtype=torch.float16)
    if name != "bf16":
        raise ValueError(f"dtype must be fp32, bf16 or fp16, not {dtype!r}")
    return torch.autocast(device.type, dtype=choose_precision("bf16", device))


def _split(n: int, tile: int):
    return [(a, min(n, a + tile)) for a in range(0, n, tile)]


def _out_range(a: int, b: int, n_in: int, n_out: int) -> tuple[int, int]:
    """Output indices whose pixel centres fall on input pixels [a, b): (Y + .5) n_in / n_out in [a, b)."""
    lo = math.ceil(a * n_out / n_in - 0.5)
    hi = math.ceil(b * n_out / n_in - 0.5)
    return max(0, lo), min(n_out, hi)


def _local_axis(idx: torch.Tensor, n_out: int, n_in: int, off: int, n_tile: int, dtype):
    """Normalised coordinates, in a tile's own frame, of output pixels ``idx`` (float64 maths)."""
    u = (idx.double() + 0.5) * (n_in / n_out) - off      # LR-pixel units inside the tile
    return (u * (2 / n_tile) - 1).to(dtype)


def _write(out: torch.Tensor, r0, r1, c0, c1, block: torch.Tensor) -> None:
    if not out.dtype.is_floating_point:
        top = 65535 if out.dtype == torch.uint16 else 255
        block = block.clamp(0, 1).mul(top).round_()
    out[0, :, r0:r1, c0:c1] = block.to(out.device, out.dtype)


def plan_tiles(lr_hw, tile: int | None):
    """LR tiles ``((y0, y1), (x0, x1))`` covering the image; one tile when ``tile`` is None/0."""
    h, w = lr_hw
    if tile == "auto":
        tile = AUTO_TILE if h * w > AUTO_TILE_AREA else None
    if not tile:
        return [((0, h), (0, w))]
    if int(tile) < 8:
        raise ValueError(f"tile must be at least 8 LR pixels, got {tile}")
    return [(ys, xs) for ys in _split(h, int(tile)) for xs in _split(w, int(tile))]


@torch.no_grad()
def upscale_tensor(model, lr: torch.Tensor, out_hw: tuple[int, int], chunk: int | None = None,
                   progress: bool = False, tile: int | str | None = None, out: torch.Tensor | None = None,
                   dtype=None) -> torch.Tensor:
    """Upscale ``lr`` (1, 3, h, w) in [0, 1] to ``out_hw`` = (H, W).

    Returns ``out``: by default a new (1, 3, H, W) float tensor, unclamped; a given integer
    ``out`` receives clamped, rounded values. ``tile``: LR tile side, ``"auto"``, or None (whole).
    """
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise ValueError(f"expected a (1, C, h, w) tensor, got {tuple(lr.shape)}")
    H, W = out_hw
    h, w = lr.shape[-2:]
    chunk = chunk or getattr(model, "query_chunk", DEFAULT_CHUNK)
    if out is None:
        out = torch.empty(1, 3, H, W, device=lr.device, dtype=lr.dtype)
    tiles = plan_tiles((h, w), tile)
    margin = model.receptive_radius + 2 if len(tiles) > 1 else 0
    align = getattr(getattr(model, "encoder", None), "tile_align", 1) if len(tiles) > 1 else 1
    ctx = autocast_for(dtype, lr.device)
    f64 = torch.float64  # coordinates: exact enough that tiles and chunks cannot change a result
    bar = tqdm(total=H * W, disable=not progress, desc="upscale", unit="px", unit_scale=True, leave=False)
    for (y0, y1), (x0, x1) in tiles:
        R0, R1 = _out_range(y0, y1, h, H)
        C0, C1 = _out_range(x0, x1, w, W)
        if R0 >= R1 or C0 >= C1:
            continue
        py0, px0 = max(0, y0 - margin) // align * align, max(0, x0 - margin) // align * align
        py1, px1 = min(h, y1 + margin), min(w, x1 + margin)
        with ctx:
            state = model.encode(lr[..., py0:py1, px0:px1])
        th, tw = py1 - py0, px1 - px0
        xs = _local_axis(torch.arange(C0, C1, device=lr.device), W, w, px0, tw, f64)
        all_ys = torch.arange(R0, R1, device=lr.device)
        cell = torch.tensor([2 * h / (H * th), 2 * w / (W * tw)], dtype=f64, device=lr.device)
        rows = max(1, chunk // (C1 - C0))
        for r0 in range(R0, R1, rows):
            r1 = min(R1, r0 + rows)
            ys = _local_axis(all_ys[r0 - R0:r1 - R0], H, h, py0, th, f64)
            with ctx:
                if hasattr(model, "query_grid"):
                    pred = model.query_grid(state, ys, xs, cell)
                else:   # a model with only the encode/query interface
                    grid = grid_coords(ys, xs)
                    pred = model.query(state, grid, cell.expand_as(grid))
            block = pred.float().view(r1 - r0, C1 - C0, -1).permute(2, 0, 1)
            _write(out, r0, r1, C0, C1, block)
            bar.update((r1 - r0) * (C1 - C0))
        del state
    bar.close()
    return out
