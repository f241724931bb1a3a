"""Benchmark protocols, evaluation schema and the command line."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from csr.cli import main
from csr.data import BenchmarkSet, crop_border_for, resolve_dataset
from csr.evaluation import evaluate


def test_premade_lr_used_and_equal_to_our_resize(data_root):
    a = BenchmarkSet("Set5", 4, protocol="liif", root=data_root)
    assert a.lr_dir is not None and len(a) == 5
    p = a[0]
    assert p.hr.shape[0] == p.lr.shape[0] * 4 and p.hr.shape[1] == p.lr.shape[1] * 4
    a.lr_dir = None  # force our MATLAB resize: bit-exact with the premade file
    assert np.array_equal(a[0].lr, p.lr)


def test_liif_protocol_above_x4_crops_like_the_papers(data_root):
    s = BenchmarkSet("Set5", 6, protocol="liif", root=data_root)
    assert s.lr_method == "pil"
    p = s[0]
    h, w = p.lr.shape[:2]
    assert p.hr.shape[:2] == (round(h * 6), round(w * 6))
    assert BenchmarkSet("Set5", 6, protocol="matlab", root=data_root).lr_method == "matlab"


def test_non_integer_scale_and_shave():
    assert crop_border_for(2) == 2 and crop_border_for(2.5) == 3 and crop_border_for(4.0) == 4


def test_bad_dataset_and_scale(data_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_dataset("NoSuchSet", data_root)
    for bad in (0, -2, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            BenchmarkSet("Set5", bad, root=data_root)
    with pytest.raises(ValueError, match="protocol"):
        BenchmarkSet("Set5", 2, protocol="nope", root=data_root)


def test_user_folder_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (25, 31, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    r = evaluate("bicubic", str(tmp_path), ["2", "3.5"], metrics=("psnr", "ssim"), progress=False)
    assert set(r["results"]) == {"2", "3.5"}
    assert [x["name"] for x in r["results"]["2"]["images"]] == ["im0", "im1"]


def test_eval_json_schema_and_bicubic_rows(data_root, capsys):
    assert main(["eval", "--model", "bicubic", "--dataset", "Set5", "--scales", "2,4",
                 "--data-root", str(data_root), "--metrics", "psnr,ssim", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "bicubic" and out["dataset"] == "Set5" and out["protocol"] == "liif"
    assert set(out["results"]) == {"2", "4"}
    assert len(out["results"]["4"]["images"]) == 5
    assert abs(out["results"]["2"]["psnr"] - 33.66) < 0.1   # published bicubic rows
    assert abs(out["results"]["4"]["psnr"] - 28.42) < 0.1


def test_cli_metrics_and_resize(tmp_path, capsys):
    a = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    assert main(["resize", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--size", "15x20"]) == 0
    assert Image.open(tmp_path / "b.png").size == (15, 20)
    capsys.readouterr()
    assert main(["metrics", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--metrics", "psnr,ssim",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"psnr": float("inf"), "ssim": 1.0}
    assert main(["metrics", str(tmp_path / "a.png"), str(tmp_path / "b.png")]) == 2
    assert "differ in size: 30x40 vs 15x20 (width x height)" in capsys.readouterr().err


def test_cli_resize_refuses_what_upscale_refuses(tmp_path, capsys, monkeypatch):
    a = tmp_path / "a.png"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(a)
    before = a.read_bytes()
    for args, msg in [([str(a), "--scale", "0.5"], "would overwrite its input"),
                      ([str(tmp_path / "o.png"), "--scale", "1e6"], "output too large"),
                      ([str(tmp_path / "o.png"), "--scale", "1e-9"], "shrinks a 32x24 image to nothing"),
                      ([str(tmp_path / "o.png"), "--scale", "nan"], "finite"),
                      ([str(tmp_path / "o.png"), "--scale", "-2"], "positive")]:
        assert main(["resize", str(a), *args]) == 2
        assert msg in capsys.readouterr().err
    assert a.read_bytes() == before and not (tmp_path / "o.png").exists()
    monkeypatch.setenv("CSR_MAX_OUTPUT_PIXELS", "3000")   # the same limit as upscale's
    assert main(["resize", str(a), str(tmp_path / "o.png"), "--scale", "2"]) == 2
    assert "limit 3,000" in capsys.readouterr().err
    assert main(["resize", str(a), str(tmp_path / "o.png"), "--scale", "1.5"]) == 0


def test_cli_warnings_are_one_line(tmp_path):
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(tmp_path / "a.png")   # fully transparent
    proc = subprocess.run([sys.executable, "-m", "csr", "upscale", str(tmp_path / "a.png"), "-o",
                           str(tmp_path / "a.jpg"), "--scale", "2", "--model", "bicubic"],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    warning = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert warning == ["csr upscale: warning: " + str(tmp_path / "a.jpg") + ": JPEG has no transparency; "
                       "transparent parts flattened onto white (write .png or .webp to keep them)"]


def test_cli_errors_are_messages_not_tracebacks(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    proc = subprocess.run([sys.executable, "-m", "csr", "resize", str(tmp_path / "bad.png"),
                           str(tmp_path / "o.png"), "--scale", "2"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "not an image" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "csr", "eval", "--scales", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_csr_evaluate_stays_a_function(data_root):
    import csr
    for _ in range(2):  # the lazy attribute must not turn into a module after the first call
        r = csr.evaluate("bicubic", "Set5", [2], metrics=("psnr",), root=data_root, progress=False, limit=1)
    assert callable(csr.evaluate) and r["results"]["2"]["psnr"] > 30


def test_centre_crops_make_a_small_benchmark(tmp_path, data_root):
    from csr.data import BenchmarkSet, centre_crops
    folder = centre_crops("Set5", 48, tmp_path / "c", n=2, root=data_root)
    assert sorted(p.name for p in folder.iterdir()) == ["baby.png", "bird.png"]
    assert BenchmarkSet(str(folder), 4.0, root=data_root)[0].hr.shape == (48, 48, 3)


def test_self_ensemble_undoes_each_flip():
    """Bicubic commutes with flips and transposes, so its 8-view average is itself: a wrong
    inverse transform or a swapped output size would show here (non-square on purpose)."""
    from csr.evaluation import super_resolve
    lr = np.random.default_rng(0).integers(0, 256, (9, 14, 3), dtype=np.uint8)
    plain = super_resolve("bicubic", lr, (27, 35))
    views = super_resolve("bicubic", lr, (27, 35), self_ensemble=True)
    assert plain.shape == views.shape == (27, 35, 3)
    assert np.abs(plain - views).max() < 1e-5


@pytest.mark.parametrize("scale,published", [(2, 30.24), (3, 27.55), (4, 26.00)])
def test_matlab_protocol_measures_gray_images_on_gray_values_and_matches_published_set14(
        data_root, scale, published):
    """Set14's bridge is single-channel: the published bicubic row (classic MATLAB scripts)
    measures it on its gray values, the liif protocol (LIIF's code: RGB, then luma) on the luma of
    the replicated RGB, 20 log10(255/219) dB higher. Both rows, on all 14 images."""
    k = str(scale)
    matlab = evaluate("bicubic", "Set14", [scale], protocol="matlab", root=data_root, metrics=("psnr",), progress=False)
    liif = evaluate("bicubic", "Set14", [scale], protocol="liif", root=data_root, metrics=("psnr",), progress=False)
    m = {r["name"]: r["psnr"] for r in matlab["results"][k]["images"]}
    li = {r["name"]: r["psnr"] for r in liif["results"][k]["images"]}
    assert li["bridge"] - m["bridge"] == pytest.approx(20 * np.log10(255 / 219), abs=1e-6)
    assert all(m[n] == li[n] for n in m if n != "bridge")   # colour images: the same measurement
    assert abs(matlab["results"][k]["psnr"] - published) < 0.015   # published: two decimals
    assert liif["results"][k]["psnr"] - published > 0.07


def test_measure_gray_pair_keeps_lpips_on_rgb():
    from csr.data.benchmark import Pair
    from csr.evaluation import measure
    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    hr = np.repeat(g[..., None], 3, 2)
    sr = np.clip(hr / 255 + rng.normal(0, 0.02, hr.shape), 0, 1)
    pair = Pair("x", hr, hr[::2, ::2], 2.0, gray=True)
    a = measure(sr, pair, "matlab", ("psnr", "ssim"))
    b = measure(sr, Pair("x", hr, hr[::2, ::2], 2.0), "matlab", ("psnr", "ssim"))
    assert list(a) == ["psnr", "ssim"] and a["psnr"] < b["psnr"] and a["ssim"] != b["ssim"]
    assert measure(sr, pair, "liif", ("psnr",)) == {"psnr": b["psnr"]}   # liif: always luma
    lp = measure(sr, pair, "matlab", ("psnr", "lpips"))
    assert list(lp) == ["psnr", "lpips"] and lp["psnr"] == a["psnr"]
    assert lp["lpips"] == pytest.approx(measure(sr, Pair("x", hr, hr[::2, ::2], 2.0), "matlab", ("lpips",))["lpips"])


def test_quality_measures_a_candidate_under_its_ship_name(tmp_path):
    """benchmarks/quality.py NAME=PATH: rows named NAME, fingerprint of PATH, in the CSV asked for."""
    import csv
    import importlib.util
    from pathlib import Path

    from csr.registry import fingerprint, save_checkpoint
    from tiny_models import build, liif_spec

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("quality", repo / "benchmarks" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    rng = np.random.default_rng(1)
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(data / "a.png")
    ckpt = save_checkpoint(build(liif_spec(), seed=2), liif_spec(), tmp_path / "best.safetensors")
    out = tmp_path / "cand" / "quality"
    quality.main(["--models", f"my-model={ckpt},bicubic", "--datasets", str(data), "--scales", "2",
                  "--metrics", "psnr", "--out", str(out)])
    with open(str(out) + ".csv", newline="") as f:
        got = {r["model"]: r for r in csv.DictReader(f)}
    assert set(got) == {"my-model", "bicubic"}
    assert got["my-model"]["weights"] == fingerprint(ckpt) and got["bicubic"]["weights"] == ""
    assert float(got["my-model"]["psnr"]) != float(got["bicubic"]["psnr"])
    # --merge replaces the same cells of another table and keeps the rest
    table = tmp_path / "table" / "quality"
    quality.main(["--models", "bicubic", "--datasets", str(data), "--scales", "2,3", "--metrics", "psnr",
                  "--out", str(table)])
    quality.main(["--merge", str(out) + ".csv", "--out", str(table)])
    with open(str(table) + ".csv", newline="") as f:
        merged = [(r["model"], r["scale"], r["weights"]) for r in csv.DictReader(f)]
    assert sorted(merged) == sorted([("bicubic", "3", ""), ("bicubic", "2", ""),
                                     ("my-model", "2", fingerprint(ckpt))])
    assert "my-model" in Path(str(table) + ".md").read_text()


def test_quality_drop_stale_removes_only_rows_of_other_weights(tmp_path, monkeypatch):
    """--drop-stale: rows a model's earlier weights made go; its current rows, bicubic's and those of
    models it cannot check (not zoo names) stay, and the markdown is rebuilt without them."""
    import importlib.util
    from pathlib import Path

    from csr import zoo
    from csr.registry import fingerprint, save_checkpoint
    from tiny_models import build, liif_spec

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("quality_drop", repo / "benchmarks" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path / "weights")
    now = save_checkpoint(build(liif_spec(), seed=3), liif_spec(), tmp_path / "weights" / "lte-edsr-baseline.safetensors")
    row = dict.fromkeys(quality.FIELDS, "1")
    rows = [{**row, "model": "lte-edsr-baseline", "dataset": "Set5", "scale": "2", "protocol": "liif",
             "weights": fingerprint(now)},
            {**row, "model": "lte-edsr-baseline", "dataset": "Urban100", "scale": "2", "protocol": "liif",
             "weights": "0123456789ab"},
            {**row, "model": "bicubic", "dataset": "Urban100", "scale": "2", "protocol": "liif", "weights": ""},
            {**row, "model": "my-model", "dataset": "Urban100", "scale": "2", "protocol": "liif", "weights": "ba9876543210"}]
    table = tmp_path / "quality"
    quality.write_csv(Path(str(table) + ".csv"), rows)
    quality.main(["--drop-stale", "--out", str(table)])
    kept = quality.read_rows(Path(str(table) + ".csv"))
    assert [(r["model"], r["dataset"]) for r in kept] == [("lte-edsr-baseline", "Set5"), ("bicubic", "Urban100"),
                                                         ("my-model", "Urban100")]
    assert "0123456789ab" not in Path(str(table) + ".md").read_text()
