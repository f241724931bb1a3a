"""``csr.upscale``: one call from any image to any size.

Output size rule (the same everywhere: API, CLI, demo): for a scale ``s`` along an axis of ``n``
pixels the output has ``floor(n * s + 0.5)`` pixels (rounded half up, at least 1); ``size`` gives
the output exactly, as ``(width, height)`` like PIL.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from . import io
from .engine import pick_device, upscale_tensor
from .resize import imresize

# the fast decoder: within 0.05 dB of liif-edsr-baseline on Set5 and Urban100 x4 at 25x fewer decoder
# multiply-adds per pixel (results/quality.md, results/speed.md; issue 9's bar)
DEFAULT_MODEL = "lmf-edsr-baseline"
MAX_OUTPUT_PIXELS = 100_000_000   # override with $CSR_MAX_OUTPUT_PIXELS or max_pixels=


def output_limit(max_pixels: int | None = None) -> int:
    """The most output pixels allowed: ``max_pixels``, else $CSR_MAX_OUTPUT_PIXELS, else 100 million."""
    return io.pixel_limit(max_pixels, "CSR_MAX_OUTPUT_PIXELS", MAX_OUTPUT_PIXELS)


def check_scale(s) -> float:
    if isinstance(s, (bool, str, bytes)):
        raise ValueError(f"scale must be a number, got {s!r}")
    try:
        v = float(s)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a number, got {s!r}") from None
    if math.isnan(v) or math.isinf(v):
        raise ValueError(f"scale must be a finite number, got {v}")
    if v <= 0:
        raise ValueError(f"scale must be positive, got {v:g}")
    return v


def output_size(height: int, width: int, scale=None, size=None, max_pixels: int | None = None) -> tuple[int, int]:
    """``(H, W)`` of the result for an input of ``height`` x ``width`` (see the module docstring)."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale (a float or (sy, sx)) and size (width, height)")
    if size is not None:
        ok = isinstance(size, (tuple, list)) and len(size) == 2 and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            and math.isfinite(v) and v == int(v) for v in size)
        if not ok:
            raise ValueError(f"size must be (width, height), two whole numbers, got {size!r}")
        W, H = (int(v) for v in size)
        if W < 1 or H < 1:
            raise ValueError(f"size must be positive, got {W} x {H}")
    else:
        if np.ndim(scale) == 0:
            sy = sx = scale
        elif np.ndim(scale) == 1 and len(scale) == 2:
            sy, sx = scale
        else:
            raise ValueError(f"scale must be a number or (sy, sx), got {scale!r}")
        sy, sx = check_scale(sy), check_scale(sx)
        if height * sy > 1e9 or width * sx > 1e9:
            raise ValueError(f"scale {scale} is far too large for a {width} x {height} image")
        H, W = max(1, math.floor(height * sy + 0.5)), max(1, math.floor(width * sx + 0.5))
    limit = output_limit(max_pixels)
    if H * W > limit:
        raise ValueError(f"output too large: {W} x {H} = {H * W:,} pixels, limit {limit:,} "
                         f"(max_pixels= or $CSR_MAX_OUTPUT_PIXELS)")
    return H, W


@lru_cache(maxsize=4)
def _cached_model(name: str, device: str, stamp):
    from .zoo import create_model
    return create_model(name, device=device)


def get_model(model, device: torch.device):
    """A module for ``model``: a zoo name or checkpoint path (cached until the file changes),
    or a module as given."""
    if isinstance(model, torch.nn.Module):
        return model.to(device).eval()
    return _cached_model(str(model), str(device), _stamp(model))


def _stamp(model) -> tuple:
    """Identity of the files behind a name or path: the checkpoint and the encoder it names."""
    from .registry import read_checkpoint
    from .zoo import ZOO, checkpoint_path
    path = checkpoint_path(model, must_exist=False) if model in ZOO else Path(str(model))
    try:
        stamp = io.file_stamp(path)
        base = read_checkpoint(path, header_only=True)[2].get("encoder_from")
    except (OSError, ValueError):
        return (None,)
    return (stamp,) + (_stamp(base) if base in ZOO else ())


def resize_method(in_hw, out_hw, model) -> str:
    """What makes an ``in_hw`` -> ``out_hw`` output with ``model``: ``"bicubic"`` (asked for, or
    to shrink: the learned models only enlarge), ``"none"`` (the input's own size) or ``"model"``.
    ValueError for one axis shrunk and the other enlarged with a learned model."""
    (h, w), (H, W) = in_hw, out_hw
    if isinstance(model, str) and model == "bicubic":
        return "bicubic"
    if H < h or W < w:
        if H > h or W > w:
            raise ValueError(f"cannot shrink one axis and enlarge the other with a learned model "
                             f"({w} x {h} -> {W} x {H}); use model='bicubic'")
        return "bicubic"
    return "none" if (H, W) == (h, w) else "model"


def _upscale_float(rgb: np.ndarray, out_hw, model, device, tile, dtype, progress) -> np.ndarray:
    """float32 H x W x 3 in [0, 1] -> float32 H' x W' x 3 in [0, 1]."""
    how = resize_method(rgb.shape[:2], out_hw, model)
    if how == "bicubic":   # downscaling: antialiased bicubic
        return np.clip(imresize(rgb, shape=tuple(out_hw)), 0, 1)
    if how == "none":
        return rgb.copy()
    net = get_model(model, device)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].to(device)
    res = np.empty((*out_hw, 3), np.float32)  # filled block by block, also from a CUDA model
    upscale_tensor(net, x, out_hw, tile=tile, out=torch.from_numpy(res).permute(2, 0, 1)[None],
                   dtype=dtype, progress=progress)
    return np.clip(res, 0, 1, out=res)


def upscale(image, scale=None, size=None, model: str | torch.nn.Module = DEFAULT_MODEL, tile="auto",
            device="auto", dtype=None, max_pixels: int | None = None, progress: bool = False):
    """Super-resolve ``image`` by ``scale`` or to ``size``; returns the same kind of object.

    image: a PIL image (any mode), a numpy array (H x W gray, H x W x 1, H x W x 3 RGB or x 4 RGBA;
        uint8, uint16 or float in [0, 1]), a torch tensor ((C, H, W) or (1, C, H, W), float in
        [0, 1]), or an image file: a path, bytes or a binary file object. Float values slightly
        outside [0, 1] are clipped, far outside (such as 0-255) refused.
        Returns the same kind: a PIL image for a PIL image or a file (but a uint16 numpy array for
        a 16-bit colour or 16-bit-with-alpha file, which no PIL mode holds), an array of the same
        dtype and layout for an array, a tensor of the same dtype and shape for a tensor.
    scale: a float, or ``(sy, sx)`` for different vertical and horizontal factors.
    size: ``(width, height)`` of the result (width first, as PIL).
    model: a name from ``csr.list_models()``, ``"bicubic"``, a checkpoint path or a module.
    tile: LR tile side in pixels, ``"auto"`` (tiles only for large inputs) or None; tiling bounds
        memory and does not change the result (beyond float rounding).
    device: ``"auto"`` (CUDA if present), ``"cpu"`` or ``"cuda"``. dtype: None/"fp32", or "bf16"
        (refused on CPUs without native bf16, where it is many times slower).
    max_pixels: refuse outputs with more pixels (default 100 million, or $CSR_MAX_OUTPUT_PIXELS).

    Alpha is upscaled separately with bicubic; grayscale stays grayscale and 16-bit stays 16-bit.
    A scale below 1 downscales with antialiased (MATLAB) bicubic. Invalid requests raise ValueError.
    """
    device = pick_device(device)
    if isinstance(image, torch.Tensor):
        return _upscale_tensor_input(image, scale, size, model, tile, device, dtype, max_pixels, progress)
    is_array = isinstance(image, np.ndarray)
    if is_array and image.dtype.kind == "f":
        return _upscale_float_array(image, scale, size, model, tile, device, dtype, max_pixels, progress)
    img = io.load(image)  # validates and normalises every PIL mode / integer array / file
    out_hw = output_size(img.height, img.width, scale, size, max_pixels)
    res = upscale_image(img, out_hw, model, tile, device, dtype, progress)
    if not is_array and not _pil_holds(res):
        is_array = True   # 16-bit colour from a file: no PIL mode holds it, so an array (as documented)
    if not is_array:
        return io.to_pil(res)
    color = res.rgb[..., 0] if res.grayscale else res.rgb
    if res.alpha is not None:
        return np.dstack([color, res.alpha])
    single = isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 1
    return color[..., None] if single else color   # H x W x 1 in, H x W x 1 out


def _pil_holds(img: io.Image) -> bool:
    """Whether a PIL image can hold ``img`` without losing bits (16-bit: only gray without alpha)."""
    return img.bit_depth == 8 or (img.grayscale and img.alpha is None)


def upscale_image(img: io.Image, out_hw, model=DEFAULT_MODEL, tile="auto", device="auto", dtype=None,
                  progress: bool = False) -> io.Image:
    """An :class:`csr.io.Image` (as ``io.load`` returns) at ``out_hw`` = (H, W), in kind."""
    device = pick_device(device)
    rgb = _upscale_float(img.float_rgb(), out_hw, model, device, tile, dtype, progress)
    alpha = img.float_alpha()
    if alpha is not None:
        alpha = np.clip(imresize(alpha, shape=tuple(out_hw)), 0, 1)
    return io.from_float(rgb, img, alpha)


def _upscale_float_array(a, scale, size, model, tile, device, dtype, max_pixels, progress):
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected H x W, H x W x 1, 3 or 4 samples, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("the image contains NaN or infinite values")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < -0.5 or hi > 1.5:   # slight over- and undershoot (another model's output) is clipped
        raise ValueError(f"float images must be in [0, 1], this one spans [{lo:g}, {hi:g}]"
                         + (" (an 8-bit image as floats? divide it by 255)" if hi <= 255.5 and lo >= 0 else ""))
    if 0 in a.shape[:2]:
        raise ValueError(f"<array>: zero-size image ({a.shape[1] if a.ndim > 1 else 0} x {a.shape[0]})")
    gray, squeeze, kind = a.ndim == 2 or a.shape[2] == 1, a.ndim == 2, a.dtype
    a = a.astype(np.float32).reshape(*a.shape[:2], -1)
    out_hw = output_size(a.shape[0], a.shape[1], scale, size, max_pixels)
    rgb = np.repeat(a, 3, axis=2) if gray else a[..., :3]
    out = _upscale_float(np.clip(rgb, 0, 1), out_hw, model, device, tile, dtype, progress)
    if gray:
        out = out.mean(axis=2, keepdims=not squeeze)
    if not gray and a.shape[2] == 4:
        out = np.dstack([out, np.clip(imresize(a[..., 3], shape=out_hw), 0, 1)])
    return out.astype(kind, copy=False)   # the caller's float type (computed in float32)


def _upscale_tensor_input(t, scale, size, model, tile, device, dtype, max_pixels, progress):
    if not t.is_floating_point():
        raise ValueError(f"tensor images must be float in [0, 1], got {t.dtype}")
    batched = t.dim() == 4
    if not batched and t.dim() != 3 or batched and t.shape[0] != 1:
        raise ValueError(f"expected a (C, H, W) or (1, C, H, W) tensor, got {tuple(t.shape)}")
    a = (t[0] if batched else t).detach().permute(1, 2, 0).cpu().float().numpy()
    out = _upscale_float_array(a, scale, size, model, tile, device, dtype, max_pixels, progress)
    r = torch.from_numpy(np.ascontiguousarray(out.reshape(*out.shape[:2], -1))).permute(2, 0, 1).to(t.device, t.dtype)
    return r[None] if batched else r
