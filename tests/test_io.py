"""Tests for csr.io: every image is generated on the fly in tmp_path."""
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageOps

from csr import io as cio
from csr import png16

RNG = np.random.default_rng(1234)
H, W = 13, 17  # deliberately not square


def rand(shape, dtype=np.uint8):
    return RNG.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def png_ihdr(path):
    return struct.unpack(">IIBB", path.read_bytes()[16:26])  # width, height, bit depth, colour type


def assert_same(a: cio.Image, b: cio.Image):
    assert a.rgb.dtype == b.rgb.dtype and a.bit_depth == b.bit_depth
    assert a.grayscale == b.grayscale
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert (a.alpha is None) == (b.alpha is None)
    if a.alpha is not None:
        np.testing.assert_array_equal(a.alpha, b.alpha)


def roundtrip(img: cio.Image, path, use_float=False):
    """save in kind (integer or float samples), load again, check nothing was lost."""
    if use_float:
        cio.save(path, img.float_rgb(), like=img, alpha=img.float_alpha())
    else:
        cio.save(path, img.rgb, like=img, alpha=img.alpha)
    back = cio.load(path)
    assert_same(img, back)
    return back


# ---------------------------------------------------------------------------------------- modes
def _palette_image(transparent: bool):
    idx = RNG.integers(0, 4, (H, W), dtype=np.uint8)
    pil = PILImage.fromarray(idx, mode="L").convert("P")
    pil.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 250, 250, 10] + [0] * (256 - 4) * 3)
    lut = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 10]], np.uint8)
    alpha = None
    if transparent:
        pil.info["transparency"] = 2
        alpha = np.where(idx == 2, 0, 255).astype(np.uint8)
    return pil, lut[idx], alpha


def make_source(mode, tmp_path):
    """(file, expected rgb, expected alpha, bit depth, grayscale) for one source mode."""
    path = tmp_path / f"src_{mode.replace(';', '_')}.png"
    if mode == "1":
        bits = rand((H, W)) > 127
        PILImage.fromarray(bits).save(path)
        return path, np.repeat(bits[..., None] * np.uint8(255), 3, 2), None, 8, True
    if mode == "L":
        g = rand((H, W))
        PILImage.fromarray(g).save(path)
        return path, np.repeat(g[..., None], 3, 2), None, 8, True
    if mode == "LA":
        la = rand((H, W, 2))
        PILImage.fromarray(la).save(path)
        return path, np.repeat(la[..., :1], 3, 2), la[..., 1], 8, True
    if mode in ("P", "P+transparency"):
        pil, rgb, alpha = _palette_image(mode != "P")
        pil.save(path, **({"transparency": 2} if alpha is not None else {}))
        return path, rgb, alpha, 8, False
    if mode in ("RGB", "RGBA"):
        a = rand((H, W, len(mode)))
        PILImage.fromarray(a).save(path)
        return path, a[..., :3], (a[..., 3] if mode == "RGBA" else None), 8, False
    if mode == "I;16":
        g = rand((H, W), np.uint16)
        PILImage.fromarray(g).save(path)
        with PILImage.open(path) as pil:
            assert pil.mode == "I;16"
        return path, np.repeat(g[..., None], 3, 2), None, 16, True
    if mode in ("RGB16", "RGBA16", "LA16"):
        ch = {"RGB16": 3, "RGBA16": 4, "LA16": 2}[mode]
        a = rand((H, W, ch), np.uint16)
        a[0, :3] = [[0] * ch, [65535] * ch, [257] * ch]
        alpha = a[..., -1] if ch in (2, 4) else None
        rgb = np.repeat(a[..., :1], 3, 2) if ch == 2 else a[..., :3]
        cio.save(path, rgb, alpha=alpha, bit_depth=16, grayscale=ch == 2)
        return path, rgb, alpha, 16, ch == 2
    raise AssertionError(mode)


MODES = ["1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "I;16", "RGB16", "RGBA16", "LA16"]


@pytest.mark.parametrize("mode", MODES)
def test_mode_roundtrip(mode, tmp_path):
    path, rgb, alpha, depth, gray = make_source(mode, tmp_path)
    img = cio.load(path)
    assert img.rgb.shape == (H, W, 3) and img.rgb.flags.c_contiguous
    assert (img.height, img.width) == (H, W)
    assert img.bit_depth == depth and img.grayscale == gray and img.format == "PNG"
    assert img.rgb.dtype == (np.uint16 if depth == 16 else np.uint8)
    np.testing.assert_array_equal(img.rgb, rgb)
    if alpha is None:
        assert img.alpha is None and img.float_alpha() is None
    else:
        np.testing.assert_array_equal(img.alpha, alpha)
        assert img.alpha.dtype == img.rgb.dtype
    f = img.float_rgb()
    assert f.dtype == np.float32 and f.min() >= 0 and f.max() <= 1
    roundtrip(img, tmp_path / "int.png")
    roundtrip(img, tmp_path / "float.png", use_float=True)


@pytest.mark.parametrize("ch,ctype", [(3, 2), (4, 6)])
def test_16bit_colour_png_is_real_16bit(ch, ctype, tmp_path):
    a = rand((H, W, ch), np.uint16)
    path = cio.save(tmp_path / "x.png", a[..., :3], alpha=a[..., 3] if ch == 4 else None)
    assert png_ihdr(path) == (W, H, 16, ctype)
    # Pillow (8-bit view of the file) agrees with the high bytes: the file is a valid PNG.
    with PILImage.open(path) as pil:
        np.testing.assert_array_equal(np.asarray(pil), (a >> 8).astype(np.uint8))
    img = cio.load(path)
    np.testing.assert_array_equal(img.rgb, a[..., :3])


def test_png_unfilter_matches_pillow_on_all_filter_types():
    """Our PNG filter decoder against Pillow's on an 8-bit file using filters 0-4."""
    a = rand((40, 30, 3))
    a[:20] = (np.arange(90).reshape(1, 30, 3) * 3 % 256).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, format="PNG", optimize=True)
    data, pos, idat = buf.getvalue(), 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        idat += data[pos + 8:pos + 8 + n] if kind == b"IDAT" else b""
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(40, -1)
    assert set(raw[:, 0]) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(png16.unfilter(raw, 40, 30, 3).reshape(40, 30, 3), a)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    PILImage.fromarray(rand((H, W, 4)), mode="CMYK").save(path, quality=95)
    img = cio.load(path)
    assert img.mode == "CMYK" and img.format == "JPEG" and not img.grayscale
    with PILImage.open(path) as pil:
        np.testing.assert_array_equal(img.rgb, np.asarray(pil.convert("RGB")))


def test_gif_first_frame(tmp_path):
    pil, rgb, _ = _palette_image(False)
    frames = [pil, pil.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    img = cio.load(tmp_path / "a.gif")
    assert img.format == "GIF" and img.mode == "P"
    np.testing.assert_array_equal(img.rgb, rgb)


# ---------------------------------------------------------------------------------------- formats
@pytest.mark.parametrize("ext,fmt,exact", [("png", "PNG", True), ("jpg", "JPEG", False),
                                           ("jpeg", "JPEG", False), ("webp", "WEBP", True),
                                           ("bmp", "BMP", True), ("tif", "TIFF", True),
                                           ("tiff", "TIFF", True)])
@pytest.mark.parametrize("gray", [False, True])
def test_formats(ext, fmt, exact, gray, tmp_path):
    smooth = np.linspace(0, 1, W)[None, :, None] * np.linspace(0.2, 1, H)[:, None, None]
    rgb = (smooth * [1.0, 0.7, 0.3] * 255).round().astype(np.uint8)
    if gray:
        rgb = np.repeat(rgb[..., :1], 3, 2)
    path = cio.save(tmp_path / f"x.{ext}", rgb, grayscale=gray, quality=100)
    img = cio.load(path)
    assert img.format == fmt and img.bit_depth == 8 and img.alpha is None
    assert img.grayscale == (gray and fmt != "WEBP")  # WebP has no gray mode
    if exact:
        np.testing.assert_array_equal(img.rgb, rgb)
    else:
        assert np.abs(img.rgb.astype(int) - rgb).mean() < 2


@pytest.mark.parametrize("ext", ["png", "webp", "tiff"])
def test_alpha_formats(ext, tmp_path):
    a = rand((H, W, 4))
    img = cio.load(cio.save(tmp_path / f"x.{ext}", a[..., :3], alpha=a[..., 3], quality=100))
    np.testing.assert_array_equal(img.alpha, a[..., 3])
    np.testing.assert_array_equal(img.rgb, a[..., :3])


@pytest.mark.parametrize("ext", ["jpg", "bmp"])
def test_alpha_flattened_on_white(ext, tmp_path):
    rgb = np.zeros((H, W, 3), np.float32)
    alpha = np.zeros((H, W), np.float32)
    alpha[:, : W // 2] = 1.0  # left half opaque black, right half fully transparent
    with pytest.warns(UserWarning, match="no transparency; transparent parts flattened onto white"):
        img = cio.load(cio.save(tmp_path / f"x.{ext}", rgb, alpha=alpha, quality=100))
    assert img.alpha is None
    assert img.rgb[:, :2].max() <= 3 and img.rgb[:, -2:].min() >= 252


def test_16bit_to_8bit_formats(tmp_path):
    a = rand((H, W, 3), np.uint16)
    with pytest.warns(UserWarning, match="8-bit"):
        p = cio.save(tmp_path / "x.tiff", a)
    img = cio.load(p)
    assert img.bit_depth == 8
    np.testing.assert_array_equal(img.rgb, np.rint(a / 257).astype(np.uint8))
    g = cio.load(cio.save(tmp_path / "g.tiff", a, grayscale=True))  # gray 16-bit TIFF stays 16
    assert g.bit_depth == 16 and g.grayscale and g.mode.startswith("I;16")


def test_save_grayscale_uses_luma_and_unknown_extension(tmp_path):
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[..., 0] = 1.0
    img = cio.load(cio.save(tmp_path / "r.png", rgb, grayscale=True))
    assert img.grayscale and img.mode == "L" and (img.rgb == 76).all()  # 0.299 * 255
    with pytest.raises(ValueError, match="unsupported extension"):
        cio.save(tmp_path / "x.xyz", rgb)


# ---------------------------------------------------------------------------------------- inputs
def test_sources(tmp_path):
    a = rand((H, W, 3))
    path = tmp_path / "a.png"
    PILImage.fromarray(a).save(path)
    data = path.read_bytes()
    with open(path, "rb") as fh, PILImage.open(path) as pil:
        from_fh, from_pil = cio.load(fh), cio.load(pil)
    for img in (cio.load(str(path)), cio.load(path), cio.load(data), cio.load(bytearray(data)),
                from_fh, from_pil):
        np.testing.assert_array_equal(img.rgb, a)
        assert img.format == "PNG" and img.mode == "RGB"


def test_numpy_sources():
    g = rand((H, W))
    for arr in (g, g[..., None]):
        img = cio.load(arr)
        assert img.grayscale and img.mode == "L" and img.bit_depth == 8
        np.testing.assert_array_equal(img.rgb, np.repeat(g[..., None], 3, 2))
    f = RNG.random((H, W, 3))
    img = cio.load(f)
    assert img.bit_depth == 8 and not img.grayscale and img.format is None
    np.testing.assert_array_equal(img.rgb, np.rint(f * 255).astype(np.uint8))
    a16 = rand((H, W, 4), np.uint16)
    img = cio.load(a16)
    assert img.bit_depth == 16 and img.mode == "RGBA"
    np.testing.assert_array_equal(img.alpha, a16[..., 3])
    img.rgb[0, 0] = 0  # owns its memory: the caller's array is untouched
    assert cio.load(a16).rgb[0, 0].tolist() == a16[0, 0, :3].tolist()
    with pytest.raises(ValueError, match="shape"):
        cio.load(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="int64"):
        cio.load(np.zeros((4, 4), np.int64))


# ---------------------------------------------------------------------------------------- EXIF
@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation(orientation, tmp_path):
    a = np.zeros((H, W, 3), np.uint8)
    a[:4, :4] = 255  # white top-left corner marks the orientation
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    PILImage.fromarray(a).save(path, exif=exif, quality=100)
    img = cio.load(path)
    assert img.rgb.shape == (W, H, 3)
    corner = (0, H - 4) if orientation == 6 else (W - 4, 0)  # rotated 90 deg cw / ccw
    assert img.rgb[corner[0]:corner[0] + 4, corner[1]:corner[1] + 4].min() > 200


def test_orient_matches_pillow():
    a = rand((3, 5, 3))
    for o in range(1, 9):
        pil = PILImage.fromarray(a)
        exif = pil.getexif()
        exif[0x0112] = o
        pil.info["exif"] = exif.tobytes()
        want = np.asarray(ImageOps.exif_transpose(pil))
        np.testing.assert_array_equal(cio._orient(a, o), want, err_msg=f"orientation {o}")


# ---------------------------------------------------------------------------------------- errors
def _png_bytes(shape=(64, 64, 3), dtype=np.uint8):
    buf = io.BytesIO()
    if dtype == np.uint16:
        png16.write(buf, rand(shape, dtype))
    else:
        PILImage.fromarray(rand(shape, dtype)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name,content,message", [
    ("empty.png", b"", "empty file"),
    ("half.png", "half8", "truncated or corrupt image"),
    ("half16.png", "half16", "truncated or corrupt image"),
    ("noise.png", "noise", "not an image file"),
    ("notes.txt", b"hello, this is not an image\n" * 10, "not an image file"),
])
def test_bad_files(name, content, message, tmp_path):
    if content == "half8":
        data = _png_bytes()
        content = data[: len(data) // 2]
    elif content == "half16":
        data = _png_bytes((16, 16, 3), np.uint16)
        content = data[: len(data) // 2]
    elif content == "noise":
        content = RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as e:
        cio.load(path)
    assert name in str(e.value)
    with pytest.raises(ValueError, match=message):
        cio.load(content)


def test_too_large(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(_png_bytes((30, 40, 3)))
    with pytest.raises(ValueError, match=r"image too large: 40 x 30 = 1,200 pixels, limit 1,000"):
        cio.load(path, max_pixels=1000)
    monkeypatch.setenv("CSR_MAX_INPUT_PIXELS", "1199")
    with pytest.raises(ValueError, match="limit 1,199"):
        cio.load(path)
    monkeypatch.setenv("CSR_MAX_INPUT_PIXELS", "1.2e3")   # a whole number, however written
    assert cio.load(path).width == 40
    for bad in ("-5", "0", "2.5", "lots"):
        monkeypatch.setenv("CSR_MAX_INPUT_PIXELS", bad)
        with pytest.raises(ValueError, match="CSR_MAX_INPUT_PIXELS must be a positive whole number"):
            cio.load(path)
    monkeypatch.setenv("CSR_MAX_INPUT_PIXELS", "1199")
    with pytest.raises(ValueError, match="image too large"):
        cio.load(np.zeros((30, 40), np.uint8))
    assert cio.load(path, max_pixels=1200).width == 40


def _png_header(width: int, height: int) -> bytes:
    """The first bytes of an 8-bit RGB PNG declaring ``width`` x ``height`` (no pixel data)."""
    import struct
    import zlib
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_declared_huge_images_are_refused_quietly_with_our_limit():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no DecompressionBombWarning from Pillow on the way
        with pytest.raises(ValueError, match=r"12000 x 12000 = 144,000,000 pixels, limit 100,000,000"):
            cio.load(_png_header(12000, 12000))
        with pytest.raises(cio.ImageTooLarge, match=r"image too large: over 100,000,000 pixels, limit"):
            cio.load(_png_header(100000, 100000))   # beyond even Pillow's own hard stop
    with pytest.raises(cio.ImageTooLarge) as e:
        cio.load(_png_header(300, 200), max_pixels=1000)
    assert (e.value.width, e.value.height, e.value.limit) == (300, 200, 1000)


def test_other_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        cio.load(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="empty file"):
        cio.load(b"")
    with pytest.raises(ValueError, match="zero-size"):
        cio.load(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="zero-size"):
        cio.load(PILImage.new("RGB", (0, 0)))


def test_atomic_save(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    cio.save(target, np.zeros((4, 4, 3), np.uint8))
    before = target.read_bytes()

    def broken(fh, *args, **kwargs):
        fh.write(b"\x89PNG half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(cio, "_encode", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        cio.save(target, np.ones((4, 4, 3), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["out.png"] and target.read_bytes() == before
    with pytest.raises(RuntimeError):
        cio.save(tmp_path / "new.png", np.ones((4, 4, 3), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


# ---------------------------------------------------------------------------------------- helpers
def test_from_float_and_to_pil(tmp_path):
    path, *_ = make_source("LA16", tmp_path)
    like = cio.load(path)
    out = cio.from_float(RNG.random((5, 6, 3)), like)
    assert out.bit_depth == 16 and out.grayscale and out.rgb.dtype == np.uint16
    assert (out.rgb[..., 0] == out.rgb[..., 2]).all() and (out.alpha == 65535).all()
    assert cio.to_pil(out).mode == "LA"
    plain = cio.from_float(np.full((5, 6, 3), 0.5), None)
    assert plain.mode == "RGB" and plain.alpha is None and (plain.rgb == 128).all()
    assert cio.to_pil(plain).mode == "RGB"
    with_alpha = cio.from_float(np.zeros((5, 6, 3)), None, alpha_float=np.ones((5, 6)))
    assert cio.to_pil(with_alpha).mode == "RGBA"
    g16 = cio.load(np.arange(30, dtype=np.uint16).reshape(5, 6) * 2000)
    pil = cio.to_pil(g16)
    assert pil.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(pil), g16.rgb[..., 0])
    assert cio.to_pil(cio.load(rand((5, 6, 3), np.uint16))).mode == "RGB"


def test_dataset_bridge_is_gray(data_root):
    img = cio.load(data_root / "Set14" / "HR" / "bridge.png")
    assert img.mode == "L" and img.grayscale and img.bit_depth == 8 and img.alpha is None
    assert img.rgb.shape[2] == 3
    assert (img.rgb[..., 0] == img.rgb[..., 1]).all() and (img.rgb[..., 1] == img.rgb[..., 2]).all()


def test_modes_without_a_clear_range_or_alpha_band():
    from PIL import Image as PILImage
    f255 = cio.load(PILImage.fromarray(np.full((4, 4), 128, np.float32), "F"))
    f1 = cio.load(PILImage.fromarray(np.full((4, 4), 0.5, np.float32), "F"))
    assert abs(f255.float_rgb()[0, 0, 0] - 128 / 255) < 1e-3 and abs(f1.float_rgb()[0, 0, 0] - 0.5) < 1e-3
    assert cio.load(PILImage.new("La", (4, 4))).alpha is not None      # premultiplied gray + alpha
    lab = cio.load(PILImage.new("LAB", (4, 4)))
    assert lab.alpha is None and lab.rgb.shape == (4, 4, 3)           # LAB's "A" is not alpha
