"""Regenerate the demo's example images (drawn procedurally here, so CC0; see README.md).

    python demo/examples/make_examples.py
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent


def landscape(w=96, h=72) -> Image.Image:
    """RGB: sky gradient, sun, two mountain ridges and striped fields (edges and fine texture)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    img[:] = np.stack([0.35 + 0.4 * y / h, 0.55 + 0.3 * y / h, np.full_like(y, 0.95)], -1)
    sun = np.clip(6.5 - np.hypot(x - 70, y - 16), 0, 1)[..., None]  # antialiased disk
    img = img * (1 - sun) + sun * np.array([1.0, 0.85, 0.3])
    for base, amp, freq, colour in [(40, 9, 0.11, (0.45, 0.45, 0.55)), (50, 5, 0.23, (0.25, 0.4, 0.3))]:
        ridge = base + amp * np.sin(freq * x + 1.3 * np.sin(0.05 * x))
        a = np.clip(y - ridge + 0.5, 0, 1)[..., None]
        img = img * (1 - a) + a * np.array(colour)
    field = np.clip(y - 58 + 0.5, 0, 1)[..., None]
    stripes = 0.5 + 0.5 * np.sin(0.9 * x + 0.35 * np.clip(y - 58, 0, None) ** 1.3)[..., None]
    img = img * (1 - field) + field * (np.array([0.3, 0.55, 0.15]) + 0.25 * stripes * np.array([0.8, 0.6, 0.1]))
    return Image.fromarray(np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")


def badge(s=64) -> Image.Image:
    """RGBA: a star on a ring over a transparent background (the alpha channel is kept)."""
    big = 4 * s  # draw large, then reduce: antialiased edges in colour and in alpha
    im = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.ellipse([8, 8, big - 8, big - 8], fill=(30, 90, 200, 255))
    d.ellipse([36, 36, big - 36, big - 36], fill=(250, 250, 255, 200))
    t = np.linspace(0, 2 * np.pi, 11)[:-1] - np.pi / 2
    r = np.where(np.arange(10) % 2 == 0, 0.36, 0.15) * big
    d.polygon(list(zip(big / 2 + r * np.cos(t), big / 2 + r * np.sin(t))), fill=(240, 170, 20, 255))
    return im.resize((s, s), Image.LANCZOS)


def text(w=120, h=40) -> Image.Image:
    """L (grayscale): small text and thin lines, where learned upscaling differs most from bicubic."""
    im = Image.new("L", (w, h), 245)
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=11)
    d.text((4, 3), "Any scale: 3.7x", fill=20, font=font)
    d.text((4, 18), "or 1920 x 1080", fill=60, font=font)
    for i in range(6):
        d.line([(92 + 4 * i, 4), (88 + 4 * i, 36)], fill=40 + 30 * i)
    return im


if __name__ == "__main__":
    for name, im in [("landscape.png", landscape()), ("badge.png", badge()), ("text.png", text())]:
        im.save(HERE / name, optimize=True)
        print(name, im.mode, im.size, (HERE / name).stat().st_size, "bytes")
