"""Image loading and saving: the single place where ``csr`` touches image files.

``load`` accepts a path, bytes, a binary file object, a PIL image or a numpy array and returns an
:class:`Image` whose ``rgb`` is always H x W x 3 (grayscale replicated to three channels), with
the file's bit depth kept (uint8 or uint16), the alpha channel split off, EXIF orientation applied,
and enough metadata to write a result back "in kind" with :func:`save` / :func:`from_float`.

16-bit colour PNGs: Pillow (up to at least 12.x) has no 16-bit RGB/RGBA/LA image mode and reads
such files as 8-bit, so they go through :mod:`csr.png16` (non-interlaced only; an interlaced one
falls back to Pillow's 8-bit reading with a warning).
16-bit grayscale without alpha goes through Pillow's ``I;16`` mode.

Every bad input raises ``ValueError`` naming the source and the problem; a missing path raises
``FileNotFoundError``. Files are written atomically (temporary file in the same folder, then
``os.replace``).
"""
from __future__ import annotations

import io
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from . import png16

MAX_PIXELS_DEFAULT = 100_000_000
_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
               ".tif": "TIFF", ".tiff": "TIFF"}
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")  # plus every "I;16..." mode
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601-2, as PIL's convert("L")
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@dataclass
class Image:
    rgb: np.ndarray           # H x W x 3, uint8 or uint16, C-contiguous
    alpha: np.ndarray | None  # H x W, same dtype as rgb, or None
    mode: str                 # PIL mode of the source as read ("L", "RGBA", "I;16", "P", ...)
    bit_depth: int            # 8 or 16
    grayscale: bool           # the source had no colour
    format: str | None        # "PNG", "JPEG", ... (None for arrays)

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    def float_rgb(self) -> np.ndarray:
        return _to_float(self.rgb)

    def float_alpha(self) -> np.ndarray | None:
        return None if self.alpha is None else _to_float(self.alpha)


# ----------------------------------------------------------------------------- sample helpers
def _max_value(depth: int) -> int:
    return 255 if depth == 8 else 65535


def _to_float(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0)
    return a.astype(np.float32) / np.float32(np.iinfo(a.dtype).max)


def _to_depth(a, depth: int, what: str = "array") -> np.ndarray:
    """float [0, 1] (clipped, rounded to nearest), bool, uint8 or uint16 -> uint8/uint16 array."""
    a = np.asarray(a)
    dtype = np.uint8 if depth == 8 else np.uint16
    if a.dtype == dtype:
        return a
    if a.dtype == np.uint8:  # 8 -> 16: x * 257 maps 255 to 65535 exactly
        return a.astype(np.uint16) * np.uint16(257)
    if a.dtype == np.uint16:  # 16 -> 8, rounded to nearest (x / 257 is never exactly k + 0.5)
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if a.dtype == bool:
        return a.astype(dtype) * dtype(_max_value(depth))
    if a.dtype.kind == "f":
        return np.rint(_to_float(a).astype(np.float64) * _max_value(depth)).astype(dtype)
    raise ValueError(f"{what}: expected a float array in [0, 1], uint8 or uint16, got {a.dtype}")


def _luma(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 -> H x W gray in the same dtype (rounded for integer input)."""
    if rgb.dtype.kind == "f":
        return rgb.astype(np.float32) @ _LUMA.astype(np.float32)
    return np.rint(rgb.astype(np.float64) @ _LUMA).astype(rgb.dtype)


def _make(color, alpha, mode, depth, gray, fmt) -> Image:
    """Build an Image from H x W (gray) or H x W x 3 samples of the right dtype."""
    rgb = np.repeat(color[..., None], 3, axis=2) if color.ndim == 2 else np.array(color, order="C")
    alpha = None if alpha is None else np.array(alpha, order="C")  # own, writable copies
    return Image(rgb, alpha, mode, depth, gray, fmt)


# ----------------------------------------------------------------------------- loading
def pixel_limit(given: int | None, env_name: str, default: int) -> int:
    """``given`` if not None, else the integer in ``$env_name`` if set, else ``default``."""
    env = os.environ.get(env_name) if given is None else None
    if given is None and not env:
        return default
    value, where = (given, "max_pixels") if given is not None else (env, env_name)
    try:
        n = float(value)   # "1e8" and 1e8 are fine; "lots" and 2.5 are not
    except (TypeError, ValueError):
        n = math.nan
    if isinstance(value, bool) or not (n >= 1 and n < math.inf and n == int(n)):
        raise ValueError(f"{where} must be a positive whole number of pixels, got {value!r}")
    return int(n)


def _limit(max_pixels: int | None) -> int:
    return pixel_limit(max_pixels, "CSR_MAX_INPUT_PIXELS", MAX_PIXELS_DEFAULT)


class ImageTooLarge(ValueError):
    """An input over the pixel limit, found from the header before decoding; ``width`` and
    ``height`` are None when only the decoder's own guard saw it. Callers with their own limit
    (the demo) word it themselves from these fields."""

    def __init__(self, name: str, width: int | None, height: int | None, limit: int):
        self.name, self.width, self.height, self.limit = name, width, height, limit
        size = f"{width} x {height} = {width * height:,} pixels" if width else f"over {limit:,} pixels"
        super().__init__(f"{name}: image too large: {size}, limit {limit:,} "
                         "(max_pixels, or $CSR_MAX_INPUT_PIXELS)")


def _check_size(w: int, h: int, limit: int, name: str) -> None:
    if w <= 0 or h <= 0:
        raise ValueError(f"{name}: zero-size image ({w} x {h})")
    if w * h > limit:
        raise ImageTooLarge(name, w, h, limit)


def _read_source(src) -> tuple[bytes, str]:
    if isinstance(src, (str, os.PathLike)):
        return Path(src).read_bytes(), str(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), "<bytes>"
    if hasattr(src, "read"):
        data = src.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("load: file object must be opened in binary mode")
        return bytes(data), str(getattr(src, "name", "<file object>"))
    raise TypeError(f"load: unsupported source type {type(src).__name__}")


def load(src, max_pixels: int | None = None) -> Image:
    """Read an image (see module docstring); ``max_pixels`` defaults to $CSR_MAX_INPUT_PIXELS or
    MAX_PIXELS_DEFAULT and is checked from the header, before anything is decoded."""
    limit = _limit(max_pixels)
    if isinstance(src, np.ndarray):
        return _from_array(src, limit)
    if isinstance(src, PILImage.Image):
        name = getattr(src, "filename", "") or "<PIL image>"
        _check_size(*src.size, limit, name)
        return _guarded(lambda: _from_pil(src, src.format), name)
    data, name = _read_source(src)
    if not data:
        raise ValueError(f"{name}: empty file")
    # Let our own limit govern, not Pillow's lower default (only ever raised, never lowered).
    if PILImage.MAX_IMAGE_PIXELS is not None and PILImage.MAX_IMAGE_PIXELS < limit:
        PILImage.MAX_IMAGE_PIXELS = limit

    def decode() -> Image:
        with warnings.catch_warnings():   # Pillow's size warning: our own check follows at once
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            pil = PILImage.open(io.BytesIO(data))
        _check_size(*pil.size, limit, name)
        ihdr = png16.header(data) if pil.format == "PNG" else None
        if ihdr and ihdr[2] == 16 and ihdr[3] in (2, 4, 6):
            if not ihdr[4]:
                return _from_png16(data, pil)
            warnings.warn(f"{name}: interlaced 16-bit colour PNG, read as 8-bit", stacklevel=3)
        return _from_pil(pil, pil.format)

    return _guarded(decode, name, limit)


def _guarded(fn, name: str, limit: int | None = None) -> Image:
    """Run a decoder, turning whatever Pillow/zlib raise into one clear ValueError."""
    try:
        return fn()
    except (ValueError, MemoryError) as e:
        if str(e).startswith(name + ":") or isinstance(e, MemoryError):
            raise
        raise ValueError(f"{name}: truncated or corrupt image ({e})") from e
    except PILImage.DecompressionBombError as e:   # over twice Pillow's limit, itself >= ours
        if limit:
            raise ImageTooLarge(name, None, None, limit) from e
        raise ValueError(f"{name}: image too large: {e}") from e
    except UnidentifiedImageError as e:
        raise ValueError(f"{name}: not an image file (format not recognised)") from e
    except Exception as e:  # OSError, SyntaxError, EOFError, struct.error, zlib.error, ...
        raise ValueError(f"{name}: truncated or corrupt image ({type(e).__name__}: {e})") from e


def _from_pil(pil: PILImage.Image, fmt: str | None) -> Image:
    pil.load()  # decode fully now, so truncation is reported here
    pil = ImageOps.exif_transpose(pil)
    mode = pil.mode
    gray = mode in _GRAY_MODES or mode.startswith("I;16")
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(pil)
        if mode == "F":  # floats carry no range: [0, 1], else [0, 255], else 16-bit values
            top = float(np.nanmax(a)) if a.size else 0.0
            a = a * (65535.0 if top <= 1.0 else 65535.0 / 255 if top <= 255.0 else 1.0)
        return _make(np.clip(a, 0, 65535).astype(np.uint16), None, mode, 16, True, fmt)
    has_alpha = mode in _ALPHA_MODES or "transparency" in pil.info  # not LAB's "A" band
    target = ("LA" if has_alpha else "L") if gray else ("RGBA" if has_alpha else "RGB")
    a = np.asarray(pil if pil.mode == target else pil.convert(target))
    color, alpha = (a[..., :-1], a[..., -1]) if has_alpha else (a, None)
    if gray and color.ndim == 3:
        color = color[..., 0]
    return _make(color, alpha, mode, 8, gray, fmt)


def _from_array(a: np.ndarray, limit: int) -> Image:
    name = "<array>"
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"{name}: expected H x W, H x W x 1, 3 or 4 samples, got shape {a.shape}")
    _check_size(a.shape[1], a.shape[0], limit, name)
    depth = 16 if a.dtype == np.uint16 else 8
    a = _to_depth(a, depth, name)
    gray = a.ndim == 2
    alpha = a[..., 3] if not gray and a.shape[2] == 4 else None
    color = a if gray else a[..., :3]
    mode = ("I;16" if depth == 16 else "L") if gray else ("RGBA" if alpha is not None else "RGB")
    return _make(color, alpha, mode, depth, gray, None)


# ----------------------------------------------------------------------------- 16-bit PNG
def _from_png16(data: bytes, pil: PILImage.Image) -> Image:
    a, ctype, trns = png16.decode(data)
    a = _orient(a, pil.getexif().get(0x0112, 1))
    ch = a.shape[2]
    color, alpha = (a[..., :-1], a[..., -1]) if ch in (2, 4) else (a, None)
    if ctype == 2 and trns is not None and trns.size == 3:
        alpha = np.where((color == trns).all(axis=2), 0, 65535).astype(np.uint16)
    gray = ctype == 4  # Pillow calls a 16-bit LA PNG "RGBA"; report it as LA
    mode = "LA" if gray else pil.mode
    return _make(color[..., 0] if gray else color, alpha, mode, 16, gray, "PNG")


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an H x W (x C) array, as ImageOps.exif_transpose does."""
    ops = {2: lambda t: t[:, ::-1], 3: lambda t: t[::-1, ::-1], 4: lambda t: t[::-1],
           5: lambda t: t.swapaxes(0, 1), 6: lambda t: np.rot90(t, -1),
           7: lambda t: t[::-1, ::-1].swapaxes(0, 1), 8: lambda t: np.rot90(t, 1)}
    return ops[orientation](a) if orientation in ops else a


# ----------------------------------------------------------------------------- saving
def _pil_from(color: np.ndarray, alpha: np.ndarray | None) -> PILImage.Image:
    """uint8 H x W / H x W x 3 (+ alpha) -> L/LA/RGB/RGBA; uint16 H x W -> I;16."""
    a = color if alpha is None else np.dstack([color, alpha])
    return PILImage.fromarray(np.ascontiguousarray(a))


def file_stamp(path) -> tuple[int, int]:
    """``(mtime_ns, size)`` of a file: part of a cache key, so a rewritten file is read again."""
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def to_pil(img: Image, eight_bit: bool = False) -> PILImage.Image:
    """Best-effort PIL image in kind: L/LA/RGB/RGBA, or I;16 for 16-bit gray without alpha.
    16-bit colour or 16-bit with alpha (no PIL mode for them) comes back as 8-bit, and so does
    everything with ``eight_bit`` (for display: PIL's conversions clip I;16 instead of scaling)."""
    color = img.rgb[..., 0] if img.grayscale else img.rgb
    if img.bit_depth == 16 and img.grayscale and img.alpha is None and not eight_bit:
        return _pil_from(color, None)
    alpha = None if img.alpha is None else _to_depth(img.alpha, 8)
    return _pil_from(_to_depth(color, 8), alpha)


def from_float(rgb_float, like: Image | None, alpha_float=None) -> Image:
    """An Image in kind of ``like`` (bit depth, grayscale flag, mode/format labels) from float
    arrays in [0, 1]. Alpha: ``alpha_float`` if given; else opaque if ``like`` has alpha."""
    depth = like.bit_depth if like else 8
    gray = like.grayscale if like else False
    rgb = np.asarray(rgb_float)
    color = _to_depth(_luma(rgb) if gray else rgb, depth, "from_float rgb")
    if alpha_float is not None:
        alpha = _to_depth(alpha_float, depth, "from_float alpha")
    elif like is not None and like.alpha is not None:
        alpha = np.full(rgb.shape[:2], _max_value(depth), color.dtype)
    else:
        alpha = None
    mode = like.mode if like else ("RGBA" if alpha is not None else "RGB")
    return _make(color, alpha, mode, depth, gray, like.format if like else None)


def save(path, rgb, like: Image | None = None, alpha=None, bit_depth: int | None = None,
         grayscale: bool | None = None, quality: int = 95) -> Path:
    """Write ``rgb`` (H x W x 3 float [0, 1], uint8 or uint16) in kind of ``like``; the format
    comes from the extension. JPEG/BMP: 8-bit, alpha flattened onto white. WebP: 8-bit colour
    (lossless when quality >= 100). TIFF: 16-bit only for gray without alpha. PNG: everything."""
    path = Path(path)
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported extension (use one of {', '.join(_EXTENSIONS)})")
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = rgb[..., None]
    if rgb.ndim != 3 or rgb.shape[2] not in (1, 3) or 0 in rgb.shape:
        raise ValueError(f"{path}: rgb must be H x W x 3, got shape {rgb.shape}")
    depth = bit_depth or (like.bit_depth if like else 16 if rgb.dtype == np.uint16 else 8)
    if depth not in (8, 16):
        raise ValueError(f"{path}: bit_depth must be 8 or 16, got {depth}")
    gray = grayscale if grayscale is not None else (like.grayscale if like else False)
    if alpha is not None:
        alpha = np.asarray(alpha)
        alpha = alpha[..., 0] if alpha.ndim == 3 else alpha
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"{path}: alpha shape {alpha.shape} does not match {rgb.shape[:2]}")
    if fmt in ("JPEG", "BMP") and alpha is not None:  # no alpha: flatten onto white
        if (_to_float(alpha) < 1).any():
            warnings.warn(f"{path}: {fmt} has no transparency; transparent parts flattened onto white "
                          f"(write .png or .webp to keep them)", stacklevel=2)
        af = _to_float(alpha)[..., None]
        rgb, alpha = _to_float(rgb) * af + (1.0 - af), None
    if fmt == "WEBP":
        gray = False  # WebP has no gray mode
    tiff16 = fmt == "TIFF" and gray and alpha is None  # Pillow's only 16-bit TIFF mode: I;16
    if depth == 16 and fmt != "PNG" and not tiff16:
        warnings.warn(f"{path}: {fmt} cannot store this 16-bit image, writing 8-bit", stacklevel=2)
        depth = 8
    if rgb.shape[2] == 1:
        color = rgb[..., 0] if gray else np.repeat(rgb, 3, axis=2)
    else:
        color = _luma(rgb) if gray else rgb
    color = _to_depth(color, depth, f"{path}: rgb")
    alpha = None if alpha is None else _to_depth(alpha, depth, f"{path}: alpha")

    def write(tmp):
        with open(tmp, "wb") as fh:
            _encode(fh, color, alpha, fmt, depth, quality)
    return atomic_write(path, write)


def atomic_write(path, write_fn) -> Path:
    """Call ``write_fn(tmp_path)`` on a hidden temporary file beside ``path``, then rename it onto
    ``path``: never a half-written file. The file gets the usual permissions (0666 less umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _encode(fh, color: np.ndarray, alpha: np.ndarray | None, fmt: str, depth: int,
            quality: int) -> None:
    if fmt == "PNG" and depth == 16:
        planes = [color] if color.ndim == 2 else [color[..., i] for i in range(3)]
        png16.write(fh, np.stack(planes + ([alpha] if alpha is not None else []), axis=2))
        return
    opts = {"JPEG": {"quality": quality, "subsampling": 0 if quality >= 90 else 2},
            "WEBP": {"quality": min(quality, 100), "lossless": quality >= 100}}.get(fmt, {})
    _pil_from(color, alpha).save(fh, format=fmt, **opts)
