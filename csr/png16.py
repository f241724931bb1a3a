"""A 16-bit PNG codec in ``zlib`` and numpy, used by :mod:`csr.io`.

Pillow (up to at least 12.x) has no 16-bit RGB/RGBA/LA image mode and reads such files as 8-bit,
so ``csr`` decodes and encodes them itself. Non-interlaced files only (``csr.io`` falls back to
Pillow's 8-bit reading for an interlaced one). Arrays are H x W x C uint16, C = samples per pixel.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def header(data: bytes):
    """(width, height, bit depth, colour type, interlace) of a PNG, or None."""
    if data[:8] != SIGNATURE or data[12:16] != b"IHDR" or len(data) < 29:
        return None
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, ctype, interlace


def _predictors(a, b, c):
    """PNG filter predictions for filter types 0-4 from left a, up b, up-left c (int16 arrays)."""
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    return 0, a, b, (a + b) >> 1, paeth


def unfilter(raw: np.ndarray, h: int, w: int, bpp: int) -> np.ndarray:
    """Undo per-row PNG filters. Pixel (r, x) depends on (r, x-1), (r-1, x), (r-1, x-1), so the
    pixels of one anti-diagonal r + x = d are independent: h + w - 1 vectorised steps. In the
    flattened, zero-padded (h+1) x (w+1) output a diagonal is a slice of step w."""
    ftype = raw[:, 0].astype(np.intp)
    if (ftype > 4).any():
        raise ValueError(f"invalid PNG filter type {int(ftype.max())}")
    filt = raw[:, 1:].reshape(h * w, bpp).astype(np.int16)
    out = np.zeros(((h + 1) * (w + 1), bpp), np.int16)
    fstep = max(w - 1, 1)  # step between a diagonal's pixels in filt
    for d in range(h + w - 1):
        lo, hi = max(0, d - w + 1), min(h - 1, d)
        n, o, f = hi - lo + 1, (lo + 1) * (w + 1) + d - lo + 1, lo * w + d - lo
        span = (n - 1) * w + 1
        a, b, c = (out[s:s + span:w].reshape(-1) for s in (o - 1, o - w - 1, o - w - 2))
        pred = np.choose(np.repeat(ftype[lo:hi + 1], bpp), _predictors(a, b, c))
        x = filt[f:f + (n - 1) * fstep + 1:fstep].reshape(-1)
        out[o:o + span:w] = ((x + pred) & 255).reshape(n, bpp)
    return out.reshape(h + 1, w + 1, bpp)[1:, 1:].astype(np.uint8).reshape(h, -1)


def decode(data: bytes):
    """(H x W x C uint16 array, colour type, tRNS samples or None) of a non-interlaced 16-bit
    PNG. Every chunk's CRC is checked, and no more than the image's size is decompressed (no zlib
    bomb); a damaged file raises ValueError."""
    w, h, depth, ctype, _ = header(data)
    ch, pos, idat, trns = CHANNELS[ctype], 8, [], None
    while True:
        if pos + 12 > len(data):
            raise ValueError("PNG ends before IEND")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) < length or data[pos + 8 + length:pos + 12 + length] != struct.pack(
                ">I", zlib.crc32(kind + body)):
            raise ValueError(f"PNG chunk {kind!r} is cut short or fails its CRC")
        pos += 12 + length
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"tRNS":
            trns = np.frombuffer(body, ">u2")
        elif kind == b"IEND":
            break
    bpp = ch * depth // 8
    size = h * (w * bpp + 1)
    raw = np.frombuffer(zlib.decompressobj().decompress(b"".join(idat), size), np.uint8)
    if raw.size < size:
        raise ValueError("PNG image data is cut short")
    px = unfilter(raw.reshape(h, -1), h, w, bpp)
    return px.view(">u2").reshape(h, w, ch).astype(np.uint16), ctype, trns


def write(fh, a: np.ndarray) -> None:
    """Write an H x W x C (C = 1..4) uint16 array as a 16-bit PNG, adaptive per-row filters."""
    h, w, ch = a.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    rows = np.ascontiguousarray(a.astype(">u2")).view(np.uint8).reshape(h, -1).astype(np.int16)
    bpp = 2 * ch

    def chunk(kind: bytes, body: bytes) -> None:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        fh.write(struct.pack(">I", len(body)) + kind + body + crc)

    fh.write(SIGNATURE)
    chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
    z = zlib.compressobj(6)
    for r0 in range(0, h, 64):  # blocks of rows keep the five candidate filterings small
        x = rows[r0:r0 + 64]
        b = np.concatenate([rows[r0 - 1:r0] if r0 else np.zeros_like(x[:1]), x[:-1]])
        a_, c = np.zeros_like(x), np.zeros_like(b)
        a_[:, bpp:], c[:, bpp:] = x[:, :-bpp], b[:, :-bpp]
        cand = np.stack([(x - p) & 255 for p in _predictors(a_, b, c)]).astype(np.uint8)
        best = np.abs(cand.view(np.int8).astype(np.int32)).sum(axis=2).argmin(axis=0)
        block = np.empty((len(x), x.shape[1] + 1), np.uint8)
        block[:, 0], block[:, 1:] = best, cand[best, np.arange(len(x))]
        out = z.compress(block.tobytes())
        if out:
            chunk(b"IDAT", out)
    chunk(b"IDAT", z.flush())
    chunk(b"IEND", b"")
