"""Procedural structured scenes for training: facades, stripes, checkerboards, lines and boxes.

T91 and BSD200 are mostly flowers, faces, animals and landscapes; Urban100 is buildings, whose
regular grids and long straight edges are where our decoders trained on those 291 images lag the
LIIF checkpoint (trained on DIV2K). A scene here is a stack of layers over a background. Each layer
is a binary pattern (its own periods per axis) under a random rotation, shift and shear, clipped
to a random rectangle, whose coverage of each HR pixel is measured with ``ss`` x ``ss`` samples a
pixel (so edges are exact area-antialiased, as a camera integrates), and composited over what is
below with a fill that is either a flat colour or a crop of a training photo (surfaces keep natural
texture). The result is an 8-bit HR image that the random-scale sampler then treats like a crop of
a photo (downscaled to the LR patch by the same resize). A scene depends only on the generator it
is given.
"""
from __future__ import annotations

import numpy as np

KINDS = ("grid", "stripes", "checker", "lines", "boxes")


def coverage(mask: np.ndarray, ss: int) -> np.ndarray:
    """Fraction of each pixel's ``ss`` x ``ss`` samples inside ``mask`` (shape ``(H*ss, W*ss)``)."""
    h, w = mask.shape[0] // ss, mask.shape[1] // ss
    return mask.reshape(h, ss, w, ss).mean(axis=(1, 3))


def sample_grid(size: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions, ``ss`` x ``ss`` per pixel at their centres, in HR pixel units (y, x)."""
    t = (np.arange(size * ss) + 0.5) / ss
    return np.meshgrid(t, t, indexing="ij")


def _log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _affine(rng, y, x, size):
    """Pattern coordinates (u, v) of the sample positions under a random similarity + shear."""
    r = rng.random()
    if r < 0.4:            # frontal facade: axis-aligned
        angle = 0.0
    elif r < 0.7:          # slightly tilted
        angle = rng.normal(0.0, 0.12)
    else:                  # any direction
        angle = rng.uniform(-np.pi, np.pi)
    shear = rng.normal(0.0, 0.15) if rng.random() < 0.3 else 0.0
    c, s = np.cos(angle), np.sin(angle)
    yc, xc = y - size / 2 + rng.uniform(-size, size), x - size / 2 + rng.uniform(-size, size)
    u = c * xc + s * yc
    v = -s * xc + c * yc
    return u + shear * v, v


def pattern(kind: str, rng, u: np.ndarray, v: np.ndarray, size: int) -> np.ndarray:
    """Boolean mask of one pattern kind at pattern coordinates ``(u, v)``."""
    if kind == "grid":       # windows: a lattice of rectangles
        pu, pv = _log_uniform(rng, 3, 28), _log_uniform(rng, 3, 28)
        fu, fv = rng.uniform(0.25, 0.85), rng.uniform(0.25, 0.85)
        return (np.mod(u / pu, 1.0) < fu) & (np.mod(v / pv, 1.0) < fv)
    if kind == "stripes":
        p = _log_uniform(rng, 2, 32)
        return np.mod(u / p, 1.0) < rng.uniform(0.2, 0.8)
    if kind == "checker":
        p = _log_uniform(rng, 3, 24)
        return (np.floor(u / p) + np.floor(v / p)) % 2 == 0
    if kind == "lines":      # straight lines of random direction and width, parallel in bundles
        mask = np.zeros(u.shape, bool)
        for _ in range(rng.integers(1, 7)):
            a = rng.uniform(-np.pi, np.pi) if rng.random() < 0.5 else 0.0
            d = np.cos(a) * u + np.sin(a) * v - rng.uniform(-size, size)
            mask |= np.abs(d) < _log_uniform(rng, 0.4, 4) / 2
        return mask
    if kind == "boxes":
        mask = np.zeros(u.shape, bool)
        for _ in range(rng.integers(1, 7)):
            cu, cv = rng.uniform(-size, size, 2)
            hu, hv = _log_uniform(rng, 1, size / 2), _log_uniform(rng, 1, size / 2)
            mask |= (np.abs(u - cu) < hu) & (np.abs(v - cv) < hv)
        return mask
    raise ValueError(f"unknown pattern kind {kind!r}; kinds: {KINDS}")


def _fill(rng, size: int, photos) -> np.ndarray:
    """A flat colour, or a crop of a training photo with a random gain (float RGB in [0, 255])."""
    fits = [p for p in photos if min(p.shape[:2]) >= size] if photos else []
    if fits and rng.random() < 0.5:
        img = fits[rng.integers(len(fits))]
        y0, x0 = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
        crop = img[y0:y0 + size, x0:x0 + size].astype(np.float64)
        return np.clip(crop * rng.uniform(0.6, 1.4), 0, 255)
    if photos:   # a flat colour from the photos' palette (muted, as walls and windows are)
        img = photos[rng.integers(len(photos))]
        colour = img[rng.integers(img.shape[0]), rng.integers(img.shape[1])].astype(np.float64)
    else:
        colour = rng.uniform(0, 255, 3)
    return np.broadcast_to(colour, (size, size, 3)).astype(np.float64)


def scene(rng: np.random.Generator, size: int, photos=None, layers: tuple[int, int] = (2, 5),
          ss: int = 4) -> np.ndarray:
    """A ``size`` x ``size`` uint8 RGB scene drawn with ``rng``; ``photos``: uint8 images whose crops
    may fill surfaces; ``layers``: the range of the number of patterned layers (inclusive)."""
    if size < 1 or ss < 1:
        raise ValueError(f"scene needs size >= 1 and ss >= 1, got size={size}, ss={ss}")
    y, x = sample_grid(size, ss)
    out = _fill(rng, size, photos)
    for _ in range(rng.integers(layers[0], layers[1] + 1)):
        u, v = _affine(rng, y, x, size)
        mask = pattern(KINDS[rng.integers(len(KINDS))], rng, u, v, size)
        if rng.random() < 0.6:   # the layer covers a rectangle of the image, not all of it
            y0, x0 = rng.uniform(-0.2, 0.7, 2) * size
            y1, x1 = y0 + rng.uniform(0.3, 1.0) * size, x0 + rng.uniform(0.3, 1.0) * size
            mask &= (y >= y0) & (y < y1) & (x >= x0) & (x < x1)
        alpha = coverage(mask, ss)[..., None]
        out = out * (1 - alpha) + _fill(rng, size, photos) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
