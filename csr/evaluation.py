"""Evaluation: a model on a benchmark at several scales, PSNR/SSIM/LPIPS per image and mean.

The result is one dict with a stable schema (``python -m csr eval --json`` prints it)::

    {"model": ..., "dataset": ..., "protocol": ..., "results": {"4": {"psnr": mean, "ssim": mean,
     "lpips": mean, "images": [{"name": ..., "psnr": ..., "ssim": ..., "lpips": ...}, ...]}}}

Metrics follow the papers: Y channel, ``crop_border = ceil(scale)``, float predictions clamped
to [0, 1] and not quantised (LIIF's protocol); under the ``matlab`` protocol a grayscale HR image
is measured on its gray values (:func:`measure`). ``bicubic`` is MATLAB bicubic upscaling.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from . import metrics as M
from .data import BenchmarkSet, crop_border_for
from .api import _upscale_float
from .engine import pick_device

DEFAULT_METRICS = ("psnr", "ssim", "lpips")


def super_resolve(model, lr: np.ndarray, out_hw, device=None, self_ensemble: bool = False) -> np.ndarray:
    """LR uint8 HxWx3 -> float HxWx3 in [0, 1] at ``out_hw``; ``model`` a module or ``"bicubic"``.

    The path ``csr.upscale`` takes (same resize, same engine), so measured numbers are what users
    get. ``self_ensemble``: average over the 8 flips/transposes, each clipped to [0, 1] as
    ``csr.upscale`` returns it (reported separately, never by default).
    """
    if isinstance(model, str) and model != "bicubic":
        raise ValueError(f"unknown non-learned model {model!r}")
    if device is None:
        device = torch.device("cpu") if isinstance(model, str) else next(model.parameters()).device
    rgb = lr.astype(np.float32) / 255
    views = range(8) if self_ensemble else range(1)
    total = 0
    for t in views:
        swapped = (t >= 4) != (t % 2 == 1)   # a transpose or a quarter turn, not both
        hw = tuple(out_hw)[::-1] if swapped else tuple(out_hw)
        # whole images (benchmark images fit in memory; tiles would re-encode wide margins)
        sr = _upscale_float(_dihedral(rgb, t), hw, model, device, tile=None, dtype=None, progress=False)
        total = total + _dihedral_inv(sr, t)
    return total / len(views)


def _dihedral(a: np.ndarray, t: int) -> np.ndarray:
    """The t-th of the 8 flips/transposes of an H x W x C array."""
    return np.ascontiguousarray(np.rot90(a.transpose(1, 0, 2) if t >= 4 else a, t % 4))


def _dihedral_inv(a: np.ndarray, t: int) -> np.ndarray:
    a = np.rot90(a, -(t % 4))
    return np.ascontiguousarray(a.transpose(1, 0, 2) if t >= 4 else a)


def measure(sr: np.ndarray, pair, protocol: str = "liif", metrics=DEFAULT_METRICS) -> dict:
    """Metrics of a float SR output against ``pair.hr`` under ``protocol``: Y channel, shave =
    ceil(scale); under ``matlab`` a grayscale HR image is measured on its gray values (the SR
    output's luma mapped back to 0-255, ``(Y - 16) * 255 / 219``), as MATLAB scripts measure a
    single-channel image. LPIPS is on RGB either way."""
    crop = crop_border_for(pair.scale)
    if not (protocol == "matlab" and pair.gray):
        return M.compute(sr, pair.hr, crop_border=crop, test_y_channel=True, metrics=metrics)
    gray = [m for m in metrics if m != "lpips"]
    sr_gray = (M.to_y(sr) - 16.0) / 219.0
    out = M.compute(sr_gray, pair.hr[..., 0], crop_border=crop, test_y_channel=True, metrics=gray)
    if "lpips" in metrics:
        out.update(M.compute(sr, pair.hr, crop_border=crop, metrics=("lpips",)))
    return {m: out[m] for m in metrics}


def evaluate(model, dataset: str, scales, protocol: str = "liif", root=None,
             metrics=DEFAULT_METRICS, device="auto", progress: bool = True, limit: int | None = None,
             self_ensemble: bool = False, model_name: str | None = None) -> dict:
    """Evaluate ``model`` (a zoo name, ``"bicubic"`` or a module) on ``dataset`` at ``scales``."""
    from .zoo import create_model

    device = pick_device(device)
    name = model_name or (model if isinstance(model, str) else getattr(model, "name", "model"))
    if isinstance(model, str) and model != "bicubic":
        model = create_model(model, device=device)
    elif not isinstance(model, str):
        model = model.to(device).eval()
    out = {"model": name, "dataset": dataset, "protocol": protocol, "results": {}}
    for s in scales:
        key = s if isinstance(s, str) else f"{s:g}"
        bench = BenchmarkSet(dataset, float(s), protocol=protocol, root=root)
        n = len(bench) if limit is None else min(limit, len(bench))
        rows = []
        for i in tqdm(range(n), desc=f"{name} {dataset} x{key}", disable=not progress, leave=False):
            pair = bench[i]
            sr = super_resolve(model, pair.lr, pair.hr.shape[:2], device, self_ensemble)
            vals = measure(sr, pair, protocol, metrics)
            rows.append({"name": pair.name, **{k: float(v) for k, v in vals.items()}})
        summary = {m: float(np.mean([r[m] for r in rows])) for m in metrics}
        out["results"][key] = {**summary, "images": rows}
    return out


def format_table(result: dict) -> str:
    """A readable table of one :func:`evaluate` result."""
    metrics = [m for m in DEFAULT_METRICS if any(m in r for r in result["results"].values())]
    gray = " (grayscale images on gray values)" if result["protocol"] == "matlab" else ""
    head = f"{result['model']} on {result['dataset']} ({result['protocol']} protocol, Y channel{gray}, shave = scale)"
    lines = [head, "scale  " + "  ".join(f"{m:>8}" for m in metrics)]
    for s, r in result["results"].items():
        lines.append(f"x{s:<5} " + "  ".join(f"{r[m]:8.4f}" for m in metrics))
    return "\n".join(lines)
