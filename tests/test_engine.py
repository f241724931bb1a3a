"""Engine and API: exact tiling, the output size rule, every image kind in kind, bad requests, CLI."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

import csr
from csr import io
from csr.cli import main
from csr.dist import cpu_has_native_bf16
from csr.engine import plan_tiles, upscale_tensor
from csr.registry import make

TINY = {"name": "liif", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 2, "n_feats": 16}},
    "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [32, 32]}}}}
TINY_LTE = {"name": "lte", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 2, "n_feats": 16}},
    "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [32, 32]}}, "hidden_dim": 32}}

TINY_LMF = {"name": "lmf", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 2, "n_feats": 16}},
    "hidden": 16, "depth": 3, "head_dim": 32}}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return make(TINY).eval()


TINY_LMF_PIX = {"name": "lmf", "args": {**TINY_LMF["args"], "pixel_rel": True, "pixel_scale": True}}


@pytest.mark.parametrize("spec", [TINY, TINY_LTE, TINY_LMF, TINY_LMF_PIX], ids=["liif", "lte", "lmf", "lmf-pixel"])
@pytest.mark.parametrize("out_hw", [(77, 101), (150, 60), (3 * 29, 3 * 35)])
def test_tiled_equals_untiled(spec, out_hw):
    torch.manual_seed(1)
    model = make(spec).eval()
    with torch.no_grad():   # no zero-initialised part (lmf's pixel_rel and pixel_scale heads) may stay inert
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    lr = torch.rand(1, 3, 29, 35)
    whole = upscale_tensor(model, lr, out_hw)
    tiled = upscale_tensor(model, lr, out_hw, tile=8, chunk=777)
    assert (whole - tiled).abs().max().item() <= 1e-5


def test_tiled_equals_untiled_real_weights():
    model = csr.create_model("liif-edsr-baseline")
    lr = torch.rand(1, 3, 45, 52, generator=torch.Generator().manual_seed(0))
    whole = upscale_tensor(model, lr, (171, 198))
    tiled = upscale_tensor(model, lr, (171, 198), tile=20)
    assert (whole - tiled).abs().max().item() <= 1e-5


def test_integer_output_is_the_rounded_float(tiny):
    lr = torch.rand(1, 3, 9, 11)
    ref = upscale_tensor(tiny, lr, (20, 25))
    out = torch.empty(1, 3, 20, 25, dtype=torch.uint8)
    upscale_tensor(tiny, lr, (20, 25), out=out, tile=8)
    assert (out.float() - ref.clamp(0, 1).mul(255).round()).abs().max() <= 1


def test_plan_tiles_cover_the_image():
    tiles = plan_tiles((50, 33), 16)
    assert len(tiles) == 4 * 3
    assert sum((y1 - y0) * (x1 - x0) for (y0, y1), (x0, x1) in tiles) == 50 * 33
    assert plan_tiles((50, 33), None) == [((0, 50), (0, 33))]
    with pytest.raises(ValueError, match="at least 8"):
        plan_tiles((50, 33), 2)


@pytest.mark.parametrize("h,w,scale,expect", [(23, 37, 2.5, (58, 93)), (10, 10, 1.04, (10, 10)),
                                              (10, 10, 1.05, (11, 11)), (7, 9, (2, 3), (14, 27)),
                                              (5, 5, 0.01, (1, 1))])
def test_output_size_rule(h, w, scale, expect):
    assert csr.output_size(h, w, scale=scale) == expect
    assert all(v == max(1, math.floor(n * s + 0.5)) for v, n, s in
               zip(expect, (h, w), scale if isinstance(scale, tuple) else (scale, scale)))


@pytest.mark.parametrize("kw,msg", [({"scale": 0}, "positive"), ({"scale": -2}, "positive"),
                                    ({"scale": float("nan")}, "finite"), ({"scale": float("inf")}, "finite"),
                                    ({"scale": 1e5}, "too large"), ({"scale": "big"}, "number"),
                                    ({"size": (0, 10)}, "positive"), ({}, "exactly one"),
                                    ({"size": (100.5, 50)}, "whole numbers"), ({"size": "12"}, "whole numbers"),
                                    ({"size": (float("inf"), 5)}, "whole numbers"), ({"scale": True}, "number"),
                                    ({"scale": "2"}, "number"), ({"scale": (1, 2, 3)}, "number or"),
                                    ({"scale": 2, "size": (4, 4)}, "exactly one"),
                                    ({"scale": 4, "max_pixels": 1000}, "limit 1,000"),
                                    ({"scale": 2, "max_pixels": -5}, "positive whole number"),
                                    ({"scale": 2, "model": "nope"}, "unknown model 'nope'; available"),
                                    ({"scale": 2, "device": "tpu"}, "device must be"),
                                    ({"scale": 2, "device": "mps"}, "device must be")])
def test_bad_requests_raise_value_error(kw, msg):
    with pytest.raises(ValueError, match=msg):
        csr.upscale(np.zeros((23, 37, 3), np.uint8), **{"model": "bicubic", **kw})


def test_kinds_are_kept(tiny):
    rng = np.random.default_rng(0)
    rgba = Image.fromarray((rng.random((12, 10, 4)) * 255).astype(np.uint8), "RGBA")
    for mode in ("RGBA", "RGB", "L", "LA"):
        out = csr.upscale(rgba.convert(mode), scale=2.5, model=tiny)
        assert out.mode == mode and out.size == (25, 30)
    alpha = np.asarray(csr.upscale(rgba, scale=2, model=tiny))[..., 3]
    assert np.abs(alpha.astype(int) - np.asarray(csr.upscale(rgba.getchannel("A"), scale=2, model="bicubic"))).max() <= 1
    g16 = (rng.random((12, 10)) * 65535).astype(np.uint16)
    out = csr.upscale(g16, scale=2, model=tiny)
    assert out.dtype == np.uint16 and out.shape == (24, 20)
    f = csr.upscale(rng.random((12, 10, 3)).astype(np.float32), size=(15, 17), model=tiny)
    assert f.dtype == np.float32 and f.shape == (17, 15, 3) and 0 <= f.min() and f.max() <= 1
    t = csr.upscale(torch.rand(1, 3, 12, 10), scale=(2, 1.5), model=tiny)
    assert isinstance(t, torch.Tensor) and t.shape == (1, 3, 24, 15)
    # arrays come back in their own layout and dtype
    assert csr.upscale(np.zeros((6, 5, 1), np.uint8), scale=2, model=tiny).shape == (12, 10, 1)
    assert csr.upscale(np.zeros((6, 5, 1), np.float32), scale=2, model=tiny).shape == (12, 10, 1)
    assert csr.upscale(np.zeros((6, 5), np.uint8), scale=2, model=tiny).shape == (12, 10)
    assert csr.upscale(np.zeros((6, 5, 3), np.float64), scale=2, model=tiny).dtype == np.float64
    with pytest.raises(ValueError, match="zero-size image"):
        csr.upscale(np.zeros((0, 5, 3), np.float32), scale=2, model=tiny)


def test_files_come_back_as_pil_and_16bit_colour_as_an_array(tiny, tmp_path):
    from csr import io as cio
    rng = np.random.default_rng(1)
    cio.save(tmp_path / "c8.png", (rng.random((6, 5, 3)) * 255).astype(np.uint8))
    c16 = (rng.random((6, 5, 3)) * 65535).astype(np.uint16)
    cio.save(tmp_path / "c16.png", c16)
    out = csr.upscale(str(tmp_path / "c8.png"), scale=2, model=tiny)
    assert isinstance(out, Image.Image) and out.size == (10, 12)
    with open(tmp_path / "c16.png", "rb") as fh:   # a file object, like a path or bytes
        out = csr.upscale(fh, scale=2, model="bicubic")
    assert isinstance(out, np.ndarray) and out.dtype == np.uint16 and out.shape == (12, 10, 3)
    direct = csr.upscale(c16, scale=2, model="bicubic")   # the same numbers as the array itself gives
    assert np.array_equal(out, direct)


def test_scale_one_is_identity_and_below_one_downscales():
    a = (np.random.default_rng(0).random((16, 20, 3)) * 255).astype(np.uint8)
    assert np.array_equal(csr.upscale(a, scale=1, model="liif-edsr-baseline"), a)
    small = csr.upscale(a, scale=0.5, model="liif-edsr-baseline")
    assert np.array_equal(small, csr.upscale(a, scale=0.5, model="bicubic"))
    with pytest.raises(ValueError, match="shrink one axis"):
        csr.upscale(a, scale=(0.5, 2), model="liif-edsr-baseline")


def test_nan_pixels_and_bad_arrays_are_refused(tiny):
    a = np.zeros((8, 8, 3), np.float32)
    a[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        csr.upscale(a, scale=2, model=tiny)
    with pytest.raises(ValueError, match="shape"):
        csr.upscale(np.zeros((8, 8, 5), np.float32), scale=2, model=tiny)
    # floats far outside [0, 1] (an 8-bit image as floats) are refused, a slight overshoot clipped
    with pytest.raises(ValueError, match="divide it by 255"):
        csr.upscale(np.full((8, 8, 3), 200.0, np.float32), scale=2, model="bicubic")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        csr.upscale(torch.full((3, 8, 8), -3.0), scale=2, model="bicubic")
    over = csr.upscale(np.full((8, 8, 3), 1.02, np.float32), scale=2, model="bicubic")
    assert np.allclose(over, 1.0, atol=1e-6)


@pytest.mark.skipif(cpu_has_native_bf16() or torch.cuda.is_available(), reason="this CPU computes bf16")
def test_bf16_refused_on_cpus_without_it(tiny):
    with pytest.raises(ValueError, match="native bf16"):
        csr.upscale(np.zeros((8, 8, 3), np.uint8), scale=2, model=tiny, dtype="bf16", device="cpu")


def test_cli_upscale_file_folder_and_errors(tmp_path, capsys):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    io.save(src / "a.png", (rng.random((23, 37, 3)) * 255).astype(np.uint8))
    io.save(src / "g.png", (rng.random((9, 8)) * 255).astype(np.uint8)[..., None].repeat(3, 2), grayscale=True)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert main(["upscale", "-i", str(src / "a.png"), "-o", str(tmp_path / "a2.png"), "--scale", "2.5",
                 "--model", "bicubic"]) == 0
    assert Image.open(tmp_path / "a2.png").size == (93, 58)
    # the input may also be positional; exactly one of the two
    assert main(["upscale", str(src / "a.png"), "-o", str(tmp_path / "a3.png"), "--scale", "2",
                 "--model", "bicubic"]) == 0
    assert Image.open(tmp_path / "a3.png").size == (74, 46)
    for args in ([], [str(src / "a.png"), "-i", str(src / "a.png")]):
        with pytest.raises(SystemExit):
            main(["upscale", *args, "-o", str(tmp_path / "x.png"), "--scale", "2"])
        assert "give one input" in capsys.readouterr().err
    assert main(["upscale", "-i", str(src / "a.png"), "-o", str(tmp_path / "hd.png"), "--size", "64x36"]) == 0
    assert Image.open(tmp_path / "hd.png").size == (64, 36)
    # a folder: good files are written, the broken one is reported, and the exit code says so
    assert main(["upscale", "-i", str(src), "-o", str(tmp_path / "out"), "--scale", "2", "--model", "bicubic"]) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "g.png"]
    assert Image.open(tmp_path / "out" / "g.png").mode == "L"
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 of 3 images failed" in err
    # a single bad request: clear message, exit code 2, nothing written
    for args, msg in [(["--scale", "0"], "positive"), (["--scale", "nan"], "finite"),
                      (["--scale", "1e5"], "too large")]:
        assert main(["upscale", "-i", str(src / "a.png"), "-o", str(tmp_path / "x.png"), *args]) == 2
        assert msg in capsys.readouterr().err
    assert main(["upscale", "-i", str(src / "broken.png"), "-o", str(tmp_path / "x.png"), "--scale", "2"]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert not list(tmp_path.glob("x*")) and not list(tmp_path.glob("*.tmp"))


def test_fast_decoder_is_cheap_per_query():
    from torch.utils.flop_counter import FlopCounterMode
    fast = make({"name": "lmf", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {}}}}).eval()
    liif = csr.create_model("liif-edsr-baseline", pretrained=False)
    lr, q = torch.rand(1, 3, 16, 16), 4096
    coord = torch.rand(1, q, 2) * 2 - 1
    cell = torch.full_like(coord, 2 / 64)
    macs = []
    for m in (fast, liif):
        state = m.encode(lr)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            m.query(state, coord, cell)
        macs.append(fc.get_total_flops() / 2 / q)
    assert macs[0] * 20 <= macs[1], macs


def test_distillation_shares_a_frozen_encoder_only_when_identical():
    from csr.train import _shares_frozen_encoder
    torch.manual_seed(0)
    teacher, student = make(TINY).eval(), make(TINY_LMF)
    student.encoder.load_state_dict(teacher.encoder.state_dict())
    assert not _shares_frozen_encoder(student, teacher)       # trainable: must run its own
    student.encoder.requires_grad_(False)
    assert _shares_frozen_encoder(student, teacher)
    with torch.no_grad():
        student.encoder.head[0].weight.add_(1e-3)
    assert not _shares_frozen_encoder(student, teacher)       # different weights


def test_ties_break_alike_in_tiles_and_whole_images(tiny):
    """At odd integer scales query points sit exactly between latents; the tie-breaking nudge is a
    fixed distance in LR pixels, so a narrow tile and a wide image choose the same neighbours."""
    lr = torch.rand(1, 3, 6, 4000, generator=torch.Generator().manual_seed(0))
    whole = upscale_tensor(tiny, lr, (18, 5001))
    tiled = upscale_tensor(tiny, lr, (18, 5001), tile=256)
    assert (whole - tiled).abs().max().item() <= 1e-5


def test_cli_upscale_refuses_unsafe_outputs_before_working(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    img = (np.random.default_rng(1).random((9, 8, 3)) * 255).astype(np.uint8)
    io.save(src / "a.png", img)
    io.save(src / "a.jpg", img)
    (src / "sub.png").mkdir()  # a folder with an image-like name is not an image
    cases = [(["-i", str(src), "-o", str(src)], "overwrite its input"),
             (["-i", str(src), "-o", str(tmp_path / "o1"), "--ext", "png"], "several inputs"),
             (["-i", str(src / "a.png"), "-o", str(tmp_path / "x.gif")], "cannot write '.gif'"),
             (["-i", str(src), "-o", str(src / "a.png")], "is a file")]
    for args, msg in cases:
        assert main(["upscale", *args, "--scale", "2", "--model", "bicubic"]) == 2
        assert msg in capsys.readouterr().err
    assert sorted(p.name for p in src.iterdir()) == ["a.jpg", "a.png", "sub.png"]
    assert not (tmp_path / "o1").exists()
    # --ext without its dot, and a trailing slash meaning a new folder
    assert main(["upscale", "-i", str(src / "a.jpg"), "-o", str(tmp_path / "new") + "/", "--ext", "webp",
                 "--scale", "2", "--model", "bicubic"]) == 0
    assert Image.open(tmp_path / "new" / "a.webp").size == (16, 18)


def test_tiled_equals_untiled_on_a_window_grid_encoder():
    """SwinIR's windows must not move: tile origins are aligned to its ``tile_align``."""
    spec = {"name": "liif", "args": {
        "encoder_spec": {"name": "swinir", "args": {"embed_dim": 12, "depths": [2], "num_heads": [2],
                                                    "window_size": 4}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16]}}}}
    torch.manual_seed(2)
    model = make(spec).double().eval()
    lr = torch.rand(1, 3, 61, 58, dtype=torch.float64)
    assert model.encoder.tile_align == 4 and 2 * model.receptive_radius < 58
    whole = upscale_tensor(model, lr, (130, 121))
    tiled = upscale_tensor(model, lr, (130, 121), tile=9)   # margins not multiples of the window
    assert (whole - tiled).abs().max().item() <= 1e-9


def test_checkpoint_cache_follows_the_file(tmp_path):
    """``csr.upscale(model=path)`` must not keep serving a checkpoint that was overwritten."""
    from csr.api import get_model
    from csr.registry import save_checkpoint
    torch.manual_seed(3)
    path = tmp_path / "m.safetensors"
    save_checkpoint(make(TINY), TINY, path)
    first = get_model(str(path), torch.device("cpu"))
    assert get_model(str(path), torch.device("cpu")) is first
    save_checkpoint(make(TINY), TINY, path)
    import os
    os.utime(path, ns=(1, 1))  # a different stamp even on coarse file systems
    assert get_model(str(path), torch.device("cpu")) is not first
