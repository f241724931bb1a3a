"""Benchmark pairs (HR, LR) under a named protocol.

Protocols (say which one next to every number; they move PSNR by up to 2 dB):

``liif``   as the LIIF and LTE papers: for x2, x3, x4 the MATLAB-bicubic LR (the dataset's own
           ``LR_bicubic/X{s}`` files when present, else our bit-exact MATLAB resize of the
           mod-cropped HR); for any other scale the HR is cropped to ``round(floor(H/s) * s)``
           and the LR made with PIL's bicubic, as their code does.
``matlab`` MATLAB bicubic for every scale, non-integer ones included, same cropping; and, as
           the classic MATLAB scripts measure a single-channel image, a grayscale
           HR image (Set14's ``bridge``) is measured on its gray values, not on the luma of its
           replicated RGB (whose 16-235 range makes PSNR 20 log10(255/219) = 1.32 dB higher). The
           published bicubic Set14 row (30.24 / 27.55 / 26.00) is measured that way; LIIF's code
           converts every image to RGB, so ``liif`` measures luma.

Dataset names ``Set5``, ``Set14``, ``B100``, ``Urban100`` (``<root>/<name>/HR``), ``DIV2K``
(``DIV2K_valid_HR``), or any folder of HR images, resolve under the data root: ``--data-root``,
then ``$CSR_DATA``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import io
from ..resize import imresize

BENCHMARKS = ("Set5", "Set14", "B100", "Urban100")
PROTOCOLS = ("liif", "matlab")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The datasets folder: ``root``, else ``$CSR_DATA``, else ``../shared/datasets`` beside a checkout."""
    if root is None:
        root = os.environ.get("CSR_DATA")
    if root is None:
        guess = Path(__file__).resolve().parents[3] / "shared" / "datasets"
        if guess.is_dir():
            return guess
        raise FileNotFoundError("no data root: pass --data-root DIR or set CSR_DATA")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} is not a folder")
    return root


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def resolve_dataset(name: str, root=None) -> Path:
    """HR folder of a named benchmark, a DIV2K/CUFED5 layout, or a user's folder of images."""
    p = Path(name)
    if p.is_dir():
        return p / "HR" if (p / "HR").is_dir() else p
    base = data_root(root)
    candidates = {
        "DIV2K": [base / "DIV2K" / "DIV2K_valid_HR", base / "DIV2K_valid_HR"],
        "CUFED5": [base / "CUFED5", base / "refsr" / "CUFED5"],
    }.get(name, [base / name / "HR", base / name])
    for c in candidates:
        if c.is_dir() and list_images(c):
            return c
    known = ", ".join(BENCHMARKS + ("DIV2K", "CUFED5"))
    raise FileNotFoundError(f"dataset {name!r} not found under {base} (looked in "
                            f"{', '.join(map(str, candidates))}); names: {known}, or a folder path")


def lr_shape(h: int, w: int, scale: float) -> tuple[int, int]:
    return math.floor(h / scale + 1e-9), math.floor(w / scale + 1e-9)


def crop_border_for(scale: float) -> int:
    """Pixels shaved on each side before measuring: the scale, rounded up (the papers' ``shave = s``)."""
    return int(math.ceil(scale - 1e-9))


@dataclass
class Pair:
    name: str
    hr: np.ndarray   # uint8 H x W x 3, cropped to the LR grid
    lr: np.ndarray   # uint8 h x w x 3
    scale: float
    gray: bool = False   # the HR file has one channel (measured on its gray values under ``matlab``)


class BenchmarkSet:
    """Iterate ``Pair``s of a folder of HR images at one scale under a protocol."""

    def __init__(self, dataset: str, scale: float, protocol: str = "liif", root=None):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; use one of {PROTOCOLS}")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 1):
            raise ValueError(f"benchmark scale must be a finite number >= 1, got {scale!r}")
        self.hr_dir = resolve_dataset(dataset, root)
        self.files = list_images(self.hr_dir)
        self.scale, self.protocol = float(scale), protocol
        self.lr_dir = None
        is_int = float(scale).is_integer() and 2 <= scale <= 4
        if is_int:
            d = self.hr_dir.parent / "LR_bicubic" / f"X{int(scale)}"
            self.lr_dir = d if d.is_dir() else None
        self.lr_method = "matlab" if (protocol == "matlab" or is_int) else "pil"

    def __len__(self):
        return len(self.files)

    def _premade(self, stem: str):
        for p in list_images(self.lr_dir):
            if p.stem == stem or p.stem.startswith(stem + "x") or p.stem.startswith(stem + "_"):
                return p
        return None

    def __getitem__(self, i: int) -> Pair:
        path = self.files[i]
        src = io.load(path)
        hr = src.rgb
        if hr.dtype != np.uint8:
            hr = (hr.astype(np.float64) / 257).round().astype(np.uint8)
        s = self.scale
        h, w = lr_shape(*hr.shape[:2], s)
        if h < 1 or w < 1:
            raise ValueError(f"{path.name} is too small for x{s:g}")
        hr = hr[:round(h * s), :round(w * s)]
        premade = self._premade(path.stem) if self.lr_dir is not None else None
        if premade is not None:
            lr = io.load(premade).rgb
        else:
            lr = imresize(hr, shape=(h, w), protocol=self.lr_method)
        if lr.shape[:2] != (h, w):
            raise ValueError(f"LR {lr.shape[:2]} does not fit HR {hr.shape[:2]} at x{s:g} for {path.name}")
        return Pair(path.stem, hr, lr, s, src.grayscale)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def centre_crops(dataset: str, side: int, dst, n: int | None = None, root=None) -> Path:
    """Write ``side`` x ``side`` centre crops of the first ``n`` HR images of ``dataset`` to
    ``dst/HR`` and return that folder, a small benchmark any evaluation accepts (quick runs)."""
    out = Path(dst) / "HR"
    for p in list_images(resolve_dataset(dataset, root))[:n]:
        a = io.load(p).rgb
        y, x = max(0, (a.shape[0] - side) // 2), max(0, (a.shape[1] - side) // 2)
        io.save(out / p.name, a[y:y + side, x:x + side])
    return out
