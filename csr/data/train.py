"""LIIF's random-scale implicit sampling over folders of HR images.

Each item: pick a scale ``s ~ U(scale_min, scale_max)``, crop a ``round(patch * s)`` square from an
HR image, downscale it to ``patch x patch`` (PIL bicubic, as LIIF), flip/transpose at random, and
sample ``sample_q`` HR pixels with their coordinates and cells. Deterministic under a seed: item
``i`` of epoch ``e`` depends only on ``(seed, e, i)``. With ``synthetic=f``, a fraction ``f`` of the
items crop a procedural structured scene instead of a photo (``csr/data/synthetic.py``).
``exclude`` drops files whose names match any of its shell patterns (``fnmatch``), e.g. to hold
some images of a folder out of training.

Folder layouts: any folder of images; DIV2K's ``DIV2K_train_HR``; ours under the data root
(``train/T91``, ``train/BSD200``).
"""
from __future__ import annotations

from fnmatch import fnmatch

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import io
from ..models.implicit import make_coord
from ..resize import imresize
from .synthetic import scene
from .benchmark import data_root, list_images


def resolve_train_dirs(dirs, root=None) -> list:
    base = data_root(root)
    out = []
    for d in dirs:
        p = base / d if not str(d).startswith("/") else d
        if not p.is_dir():
            raise FileNotFoundError(f"training folder {p} does not exist")
        out.append(p)
    return out


class RandomScaleSR(Dataset):
    def __init__(self, dirs, root=None, patch: int = 48, scale_min: float = 1.0, scale_max: float = 4.0,
                 sample_q: int | None = 2304, augment: bool = True, repeat: int = 1, seed: int = 0,
                 lr_protocol: str = "pil", synthetic: float = 0.0, exclude=()):
        if isinstance(exclude, str):
            exclude = [exclude]
        paths = [p for d in resolve_train_dirs(dirs, root) for p in list_images(d)
                 if not any(fnmatch(p.name, pat) for pat in exclude)]
        if not paths:
            raise FileNotFoundError(f"no training images in {dirs}" + (f" outside {list(exclude)}" if exclude else ""))
        self.images = []
        for p in paths:  # small sets: decode once, keep uint8 in memory
            rgb = io.load(p).rgb
            if rgb.dtype != np.uint8:
                rgb = (rgb.astype(np.float64) / 257).round().astype(np.uint8)
            if min(rgb.shape[:2]) >= patch:
                self.images.append(rgb)
        self.patch, self.scale_min, self.scale_max = patch, scale_min, scale_max
        self.sample_q, self.augment, self.repeat = sample_q, augment, repeat
        self.seed, self.epoch, self.lr_protocol = seed, 0, lr_protocol
        if not 0.0 <= synthetic <= 1.0:
            raise ValueError(f"synthetic is the fraction of procedural scenes, in [0, 1]; got {synthetic!r}")
        self.synthetic = float(synthetic)

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return len(self.images) * self.repeat

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        # drawn only when scenes are on, so that synthetic=0 gives the very items it always gave
        if self.synthetic > 0 and rng.random() < self.synthetic:
            size = round(self.patch * rng.uniform(self.scale_min, self.scale_max))
            hr = scene(rng, size, photos=self.images)
        else:
            img = self.images[i % len(self.images)]
            h, w = img.shape[:2]
            s = rng.uniform(self.scale_min, self.scale_max)
            size = min(round(self.patch * s), h, w)  # small images cap the scale
            y0, x0 = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            hr = img[y0:y0 + size, x0:x0 + size]
        if self.augment:
            if rng.random() < 0.5:
                hr = hr[:, ::-1]
            if rng.random() < 0.5:
                hr = hr[::-1]
            if rng.random() < 0.5:
                hr = hr.transpose(1, 0, 2)
        hr = np.ascontiguousarray(hr)
        lr = imresize(hr, shape=(self.patch, self.patch), protocol=self.lr_protocol)
        hr_t = torch.from_numpy(hr).float().div_(255)
        coord = make_coord(hr.shape[:2])
        rgb = hr_t.reshape(-1, 3)
        if self.sample_q is not None:
            keep = torch.from_numpy(rng.choice(len(coord), self.sample_q, replace=False))
            coord, rgb = coord[keep], rgb[keep]
        cell = torch.empty_like(coord)
        cell[:, 0], cell[:, 1] = 2 / size, 2 / size
        return {"lr": torch.from_numpy(np.array(lr)).permute(2, 0, 1).float().div_(255),
                "coord": coord, "cell": cell, "gt": rgb}
