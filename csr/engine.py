"""Inference: encode the LR image once, then stream queries over the output in bounded chunks.

Memory is bounded by the output image plus one chunk of queries: coordinates are generated per
block of output rows, never for the whole image, and each block is written as it finishes.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

DEFAULT_CHUNK = 1 << 16   # queries per forward pass


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA device is available")
    return device


def _axis(n: int, device, dtype=torch.float32):
    return (torch.arange(n, device=device, dtype=dtype) * 2 + 1) / n - 1


@torch.no_grad()
def upscale_tensor(model, lr: torch.Tensor, out_hw: tuple[int, int], chunk: int = DEFAULT_CHUNK,
                   progress: bool = False) -> torch.Tensor:
    """Upscale ``lr`` (1, 3, h, w) in [0, 1] to ``out_hw`` = (H, W); returns (1, 3, H, W), unclamped."""
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise ValueError(f"expected a (1, C, h, w) tensor, got {tuple(lr.shape)}")
    H, W = out_hw
    state = model.encode(lr)
    out = torch.empty(1, 3, H, W, device=lr.device, dtype=lr.dtype)
    ys, xs = _axis(H, lr.device, lr.dtype), _axis(W, lr.device, lr.dtype)
    rows = max(1, chunk // W)
    cell_unit = lr.new_tensor([2 / H, 2 / W])
    for r0 in tqdm(range(0, H, rows), total=math.ceil(H / rows), disable=not progress,
                   desc="decode", unit="block", leave=False):
        r1 = min(H, r0 + rows)
        grid = torch.stack(torch.meshgrid(ys[r0:r1], xs, indexing="ij"), dim=-1).view(1, -1, 2)
        cell = cell_unit.expand_as(grid)
        pred = model.query(state, grid, cell)
        out[0, :, r0:r1] = pred.view(r1 - r0, W, -1).permute(2, 0, 1)
    return out
