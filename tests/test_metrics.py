"""Golden and edge-case checks for csr.metrics (PSNR / SSIM / LPIPS)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from csr import metrics

RCAN_RESULTS = "PSNR_SSIM_Results_BI_model.txt"


def load(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def rcan_rows(path, scale):
    """(name, psnr, ssim) of the 'RCAN' method (not RCANplus) at ``scale`` from the authors' file."""
    pat = re.compile(rf"x{scale} \d+ (\w+)_RCAN_x{scale}\.png: PSNR= ([\d.]+) SSIM= ([\d.]+)")
    return [(m[1], float(m[2]), float(m[3])) for m in map(pat.match, open(path)) if m]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def lpips_alex():
    """The cached alex LPIPS model; skips (fails under CI) if torch/lpips/the weights are missing."""
    from csr import hub

    try:
        import lpips  # noqa: F401
        import torch  # noqa: F401
        return metrics._get_lpips("alex")
    except (ImportError, hub.WeightsMissing) as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI run without LPIPS prerequisites: {e}")
        pytest.skip(str(e))


# ----------------------------------------------------------------------------- golden checks

@pytest.mark.parametrize("scale", [2, 3, 4])
def test_rcan_set5_golden(data_root, scale):
    fix = data_root / "fixtures" / "rcan_set5"
    rows = rcan_rows(fix / RCAN_RESULTS, scale)
    assert [r[0] for r in rows] == ["baby", "bird", "butterfly", "head", "woman"]
    for name, want_psnr, want_ssim in rows:
        hr = load(data_root / "Set5" / "HR" / f"{name}.png")
        h, w = hr.shape[:2]
        hr = hr[:h - h % scale, :w - w % scale]
        sr = load(fix / f"{name}_RCAN_x{scale}.png")
        got_psnr = metrics.psnr(sr, hr, crop_border=scale, test_y_channel=True)
        got_ssim = metrics.ssim(sr, hr, crop_border=scale, test_y_channel=True)
        # the file has 6 decimals; we reproduce it to ~5e-7 on both
        assert got_psnr == pytest.approx(want_psnr, abs=1e-4), name
        assert got_ssim == pytest.approx(want_ssim, abs=1e-5), name


@pytest.mark.weights
def test_lpips_golden(data_root, lpips_alex):
    fix = data_root / "fixtures" / "lpips"
    ref, p0, p1 = (load(fix / f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    assert metrics.lpips(ref, p0) == pytest.approx(0.722, abs=1e-3)
    assert metrics.lpips(ref, p1) == pytest.approx(0.138, abs=1e-3)
    assert metrics.lpips(ref, ref) == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- edge cases

def test_to_y_range():
    assert metrics.to_y(np.zeros((2, 2, 3))) == pytest.approx(16.0)
    assert metrics.to_y(np.ones((2, 2, 3))) == pytest.approx(235.0)


@pytest.mark.parametrize("y", [False, True])
def test_identical_images(rng, y):
    img = rng.random((32, 40, 3))
    assert metrics.psnr(img, img, test_y_channel=y) == float("inf")
    assert metrics.ssim(img, img, crop_border=2, test_y_channel=y) == pytest.approx(1.0, abs=1e-12)


def test_psnr_known_value():
    a, b = np.zeros((8, 8, 3)), np.full((8, 8, 3), 1 / 255)  # mse 1 on the [0,255] scale
    assert metrics.psnr(a, b) == pytest.approx(20 * np.log10(255))


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"images differ in size: 32x32 vs 31x32 \(width x height\)"):
        metrics.psnr(np.zeros((32, 32, 3)), np.zeros((32, 31, 3)))
    with pytest.raises(ValueError, match="images differ in size"):
        metrics.ssim(np.zeros((32, 32, 3)), np.zeros((32, 32)))


def test_crop_removes_everything(rng):
    img = rng.random((20, 30, 3))
    for fn in (metrics.psnr, metrics.ssim):
        with pytest.raises(ValueError):
            fn(img, img, crop_border=10)
    with pytest.raises(ValueError):  # too small for the 11x11 SSIM window
        metrics.ssim(img, img, crop_border=5)


def test_uint8_uint16_float_agree(rng):
    a8 = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    b8 = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    af, bf = a8 / 255.0, b8 / 255.0
    a16, b16 = (a8.astype(np.uint16) * 257), (b8.astype(np.uint16) * 257)
    for y in (False, True):
        ref = metrics.psnr(af, bf, 1, y), metrics.ssim(af, bf, 1, y)
        assert metrics.psnr(a8, b8, 1, y) == pytest.approx(ref[0], abs=1e-12)
        assert metrics.ssim(a8, b8, 1, y) == pytest.approx(ref[1], abs=1e-12)
        assert metrics.psnr(a16, b16, 1, y) == pytest.approx(ref[0], abs=1e-9)
        assert metrics.ssim(a16, b16, 1, y) == pytest.approx(ref[1], abs=1e-9)


def test_grey_images(rng):
    a, b = rng.random((20, 20)), rng.random((20, 20))
    assert metrics.ssim(a, b) == pytest.approx(metrics.ssim(np.stack([a] * 3, 2), np.stack([b] * 3, 2)))
    assert np.isfinite(metrics.psnr(a, b, test_y_channel=True))


def test_torch_and_numpy_agree(rng):
    torch = pytest.importorskip("torch")
    a, b = rng.random((3, 20, 24), dtype=np.float32), rng.random((3, 20, 24), dtype=np.float32)
    an, bn = a.transpose(1, 2, 0), b.transpose(1, 2, 0)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for fn in (metrics.psnr, metrics.ssim):
        want = fn(an, bn, 2, True)
        assert fn(ta, tb, 2, True) == pytest.approx(want, abs=1e-12)
        assert fn(ta[None], tb[None], 2, True) == pytest.approx(want, abs=1e-12)


def test_compute_without_lpips(rng):
    a, b = rng.random((16, 16, 3)), rng.random((16, 16, 3))
    out = metrics.compute(a, b, crop_border=1, metrics=("psnr", "ssim"))
    assert out == {"psnr": metrics.psnr(a, b, 1, True), "ssim": metrics.ssim(a, b, 1, True)}
    with pytest.raises(ValueError):
        metrics.compute(a, b, metrics=("fid",))


@pytest.mark.weights
def test_lpips_inputs(rng, lpips_alex):
    torch = pytest.importorskip("torch")
    a8 = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b8 = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    d = metrics.lpips(a8, b8)
    assert d > 0.05
    assert metrics.lpips(a8 / 255.0, b8 / 255.0) == pytest.approx(d, abs=1e-6)
    ta = torch.from_numpy(a8.transpose(2, 0, 1) / 255.0).float()
    tb = torch.from_numpy(b8.transpose(2, 0, 1) / 255.0).float()
    assert metrics.lpips(ta[None], tb) == pytest.approx(d, abs=1e-6)
    assert metrics.compute(a8, b8)["lpips"] == pytest.approx(d, abs=1e-6)
    assert metrics._get_lpips("alex") is lpips_alex  # built once
    # AlexNet's pooling leaves nothing of a side under 31 pixels: a clear error, not torch's
    assert metrics.lpips(a8[:31, :31], b8[:31, :31]) > 0
    with pytest.raises(ValueError, match=r"at least 31 pixels a side, got 32x30"):
        metrics.lpips(a8[:30], b8[:30])


def test_metrics_module_imports_no_torch():
    """metrics.py itself imports torch/lpips lazily (loaded standalone: csr/__init__ may import torch)."""
    code = ("import importlib.util as u, sys; s = u.spec_from_file_location('m', sys.argv[1]); "
            "s.loader.exec_module(u.module_from_spec(s)); "
            "assert not {'torch', 'lpips'} & set(sys.modules), 'torch imported'")
    subprocess.run([sys.executable, "-c", code, metrics.__file__], check=True)
