"""Tests for csr.resize: MATLAB-compatible bicubic (golden Set5 check) and the PIL protocol."""
import math

import numpy as np
import pytest
from PIL import Image

from csr.resize import PROTOCOLS, imresize, resize_to

torch = pytest.importorskip("torch")

SET5 = ("baby", "bird", "butterfly", "head", "woman")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _load_pair(root, name, s):
    hr = np.asarray(Image.open(root / "Set5" / "HR" / f"{name}.png").convert("RGB"))
    h, w = hr.shape[:2]
    hr = hr[: h - h % s, : w - w % s]
    lr = np.asarray(Image.open(root / "Set5" / "LR_bicubic" / f"X{s}" / f"{name}x{s}.png").convert("RGB"))
    return hr, lr


@pytest.mark.parametrize("s", [2, 3, 4, 8])
def test_golden_set5_matlab(data_root, s):
    differing, max_diff = 0, 0
    for name in SET5:
        hr, lr = _load_pair(data_root, name, s)
        out = imresize(hr, 1 / s)
        assert out.dtype == np.uint8 and out.shape == lr.shape, (name, out.shape, lr.shape)
        diff = np.abs(out.astype(np.int16) - lr.astype(np.int16))
        differing += int(np.count_nonzero(diff))
        max_diff = max(max_diff, int(diff.max()))
    if s == 8:
        assert max_diff <= 2
    else:
        assert differing == 0, f"x{s}: {differing} differing values (max diff {max_diff})"


def test_golden_shape_argument_matches_scale(data_root):
    hr, lr = _load_pair(data_root, "bird", 4)
    np.testing.assert_array_equal(resize_to(hr, lr.shape[:2]), lr)


def test_scale_one_is_identity():
    rng = _rng()
    u8 = (rng.random((17, 11, 3)) * 255).astype(np.uint8)
    f32 = rng.random((17, 11)).astype(np.float32) * 3 - 1
    np.testing.assert_array_equal(imresize(u8, 1.0), u8)
    out = imresize(f32, 1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, f32)
    t = torch.from_numpy(rng.random((2, 3, 9, 13))).float()
    out_t = imresize(t, 1.0)
    assert out_t.dtype == t.dtype and out_t.shape == t.shape
    torch.testing.assert_close(out_t, t, rtol=0, atol=0)
    np.testing.assert_array_equal(resize_to(f32, (17, 11)), f32)
    # the unit-scale axis of a per-axis resize is left untouched: rows of a
    # width-only resize equal the 1-D resize of each row
    rows = imresize(f32, (1.0, 2.0))
    np.testing.assert_allclose(rows[3], imresize(f32[3:4], (1.0, 2.0))[0], rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "in_hw, scale, out_hw",
    [
        ((37, 23), 2.5, (93, 58)),
        ((37, 23), 1 / 3, (13, 8)),
        ((37, 23), (2.0, 0.5), (74, 12)),
        ((10, 10), (0.3, 1.7), (3, 17)),
        ((5, 7), 0.01, (1, 1)),
    ],
)
def test_output_sizes(in_hw, scale, out_hw):
    assert out_hw == tuple(math.ceil(i * s) for i, s in zip(in_hw, np.broadcast_to(scale, 2)))
    img = np.zeros(in_hw + (3,), np.uint8)
    assert imresize(img, scale).shape == out_hw + (3,)
    assert imresize(img[..., 0], scale).shape == out_hw
    assert imresize(torch.zeros((1, 2) + in_hw), scale).shape == (1, 2) + out_hw
    assert imresize(img, scale, protocol="pil").shape == out_hw + (3,)


def test_explicit_shape():
    img = _rng().random((31, 20, 3))
    assert imresize(img, shape=(50, 7)).shape == (50, 7, 3)
    assert resize_to(img, (5, 64)).shape == (5, 64, 3)
    assert resize_to(torch.rand(3, 31, 20), (50, 7)).shape == (3, 50, 7)
    assert resize_to(img, (50, 7), protocol="pil").shape == (50, 7, 3)


@pytest.mark.parametrize("scale", [2.5, 1 / 3, (0.4, 1.3), 0.125, (1.0, 3.0)])
def test_numpy_and_torch_agree(scale):
    x = _rng(1).random((2, 29, 41, 3))
    ref = np.stack([imresize(im, scale) for im in x])  # float64 numpy, NHWC
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # NCHW
    for dtype in (torch.float64, torch.float32):
        out = imresize(t.to(dtype), scale)
        assert out.dtype == dtype and out.device == t.device
        diff = np.abs(out.permute(0, 2, 3, 1).double().numpy() - ref).max()
        assert diff < 1e-5, (dtype, diff)
    np32 = imresize(x[0].astype(np.float32), scale)
    assert np32.dtype == np.float32 and np.abs(np32 - ref[0]).max() < 1e-5


def test_float_output_is_unclipped_and_torch_differentiable():
    x = np.zeros((16, 16))
    x[:, 8:] = 1.0
    up = imresize(x, 2)
    assert up.max() > 1.0 and up.min() < 0.0  # cubic overshoot is kept for float input
    t = torch.rand(1, 3, 12, 10, requires_grad=True)
    imresize(t, (0.5, 2.0)).square().sum().backward()
    assert t.grad is not None and t.grad.shape == t.shape


def test_constant_image_stays_constant():
    for scale in (2, 3.7, (1.5, 4), 0.3):
        u8 = np.full((13, 9, 3), 123, np.uint8)
        np.testing.assert_array_equal(imresize(u8, scale), np.full_like(imresize(u8, scale), 123))
        f = imresize(np.full((13, 9), 0.7), scale)
        np.testing.assert_allclose(f, 0.7, atol=1e-12)
        t = imresize(torch.full((2, 13, 9), 0.7, dtype=torch.float64), scale)
        torch.testing.assert_close(t, torch.full_like(t, 0.7), rtol=0, atol=1e-12)


def test_uint_dtypes_and_torch_uint8_match_numpy():
    rng = _rng(2)
    u8 = (rng.random((30, 22, 3)) * 255).astype(np.uint8)
    ref = imresize(u8, 0.5)
    t = imresize(torch.from_numpy(u8).permute(2, 0, 1), 0.5)
    assert t.dtype == torch.uint8
    assert np.abs(t.permute(1, 2, 0).numpy().astype(int) - ref).max() <= 1
    u16 = (rng.random((30, 22)) * 65535).astype(np.uint16)
    out16 = imresize(u16, 2.5)
    assert out16.dtype == np.uint16 and out16.shape == (75, 55)


@pytest.mark.parametrize("out_wh", [(9, 15), (60, 90), (23, 37)])
def test_pil_protocol_matches_pillow(out_wh):
    rng = _rng(3)
    u8 = (rng.random((37, 23, 3)) * 255).astype(np.uint8)
    expect = np.asarray(Image.fromarray(u8).resize(out_wh, Image.BICUBIC))
    np.testing.assert_array_equal(imresize(u8, shape=out_wh[::-1], protocol="pil"), expect)
    gray = np.asarray(Image.fromarray(u8[..., 0]).resize(out_wh, Image.BICUBIC))
    np.testing.assert_array_equal(imresize(u8[..., 0], shape=out_wh[::-1], protocol="pil"), gray)
    # float path: x*255 truncated (torchvision ToPILImage), result / 255, numpy and torch alike
    f = rng.random((37, 23, 3)).astype(np.float32)
    trunc = Image.fromarray((f * 255).astype(np.uint8))
    expect_f = np.asarray(trunc.resize(out_wh, Image.BICUBIC)).astype(np.float32) / 255
    out_f = imresize(f, shape=out_wh[::-1], protocol="pil")
    assert out_f.dtype == np.float32
    np.testing.assert_allclose(out_f, expect_f, atol=1e-7)
    t = torch.from_numpy(f).permute(2, 0, 1)[None]
    out_t = imresize(t, shape=out_wh[::-1], protocol="pil")
    assert out_t.shape == (1, 3) + out_wh[::-1] and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t[0].permute(1, 2, 0).numpy(), expect_f, atol=1e-7)


@pytest.mark.parametrize("bad", [0, -2.0, float("nan"), float("inf"), (2.0, 0.0), (1.0, float("-inf"))])
def test_invalid_scale_raises(bad):
    img = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError):
        imresize(img, bad)
    with pytest.raises(ValueError):
        imresize(torch.zeros(1, 8, 8), bad)


def test_invalid_arguments_raise():
    img = np.zeros((8, 8, 3), np.uint8)
    for shape in [(0, 5), (5, 0), (-3, 4), (2.5, 4), (4,)]:
        with pytest.raises(ValueError):
            imresize(img, shape=shape)
    with pytest.raises(ValueError):
        imresize(np.zeros((0, 5)), 2)  # empty input: no output of at least 1x1
    with pytest.raises(ValueError):
        imresize(img)  # neither scale nor shape
    with pytest.raises(ValueError):
        imresize(img, 2, shape=(16, 16))  # both
    with pytest.raises(ValueError):
        imresize(img, 2, protocol="lanczos")
    assert PROTOCOLS == ("matlab", "pil")
