"""Speed and memory of the inference paths, measured in one run with the same weights.

    python benchmarks/speed.py            # all cases -> results/speed.{md,json,png}
    python benchmarks/speed.py --quick    # 128x128 -> x4 only, one run
    python benchmarks/speed.py --json     # one JSON object on stdout
    python benchmarks/speed.py --big-only # 1024x1024 -> x8 (exact, fast), merged into results/
    python benchmarks/speed.py --macs-only # the multiply-add counts alone, merged into results/

Methods (all on the LIIF authors' ``liif-edsr-baseline`` weights):

* ``reference``: the LIIF code's ``batched_predict`` semantics, written out below: the whole
  query grid is built up front, then for every chunk of 30000 queries the feature map is
  unfolded 3x3 again and the 580-wide MLP input is assembled from ``grid_sample`` look-ups.
* ``exact``: our engine (``csr.engine.upscale_tensor``): latent part of the first layer once per
  LR pixel, float64 coordinates, tiles for large inputs, blocks of rows written as they finish;
  the encoder runs on channels-last input (``ImplicitSR.normalise``; the fast decoder's head also
  on strips of rows as the queries reach them, ``ImplicitSR.prepare_rows``), and the per-query
  layers on whichever of GEMM and a 1x1 convolution is faster on the CPU (``csr.models.mlp.
  rows_linear``), where the reference keeps the LIIF code's NCHW and ``nn.Linear``.
* ``fast``: the same engine on the fast decoder ``lmf-edsr-baseline`` (if its weights are shipped).
* ``bicubic``: MATLAB-compatible bicubic (``csr.resize``), the floor.

Each (method, case) runs in its own subprocess, so its peak RSS (VmHWM, including the Python and
torch baseline) is its own. Times are the median of 3 runs (1 for ``--quick`` and for the big
case), each method's after one untimed warm-up run of the same case (first-call costs: kernel
set-up, allocator, page faults), except the big case, timed once from cold. MACs per output pixel are counted with ``torch.utils.flop_counter`` (multiply-adds =
FLOPs / 2) on a small input: ``decoder`` counts per-query work plus per-LR-pixel decoder work
amortised over the scale, ``encoder`` the encoder amortised likewise. Elementwise products are
not counted, for any method (LIIF's area weights; the fast decoder's per-pixel offset weights,
2 x hidden per query and neighbour when it has ``pixel_rel``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import csr

ROOT = Path(__file__).resolve().parents[1]
csr.check_checkout(ROOT)  # never measure another clone's files
RESULTS = ROOT / "results"
CASES = [("128x128", 4, 1), ("256x256", 4, 3), ("480x270", 4, 3), ("1024x1024", 8, 1)]
BIG = "1024x1024"
FAST_MODEL = "lmf-edsr-baseline"
REF_CHUNK = 30000


# ----------------------------------------------------------------------------- the reference
def reference_upscale(model, lr, out_hw, bsize: int = REF_CHUNK):
    """LIIF's batched_predict + query_rgb, as published, on our module's weights (liif only)."""
    import torch
    import torch.nn.functional as F

    from csr.models.implicit import make_cell, make_coord
    with torch.no_grad():
        x = (lr - model.input_mean) / model.input_std
        feat0 = model.encoder(x)
        coord = make_coord(out_hw).unsqueeze(0)          # the whole grid, up front
        cell = make_cell(coord, out_hw)
        h, w = feat0.shape[-2:]
        feat_coord = make_coord((h, w), flatten=False).permute(2, 0, 1).unsqueeze(0)
        preds = []
        for q0 in range(0, coord.shape[1], bsize):
            c, ce = coord[:, q0:q0 + bsize], cell[:, q0:q0 + bsize]
            feat = F.unfold(feat0, 3, padding=1).view(1, -1, h, w)  # re-unfolded for every chunk
            outs, areas = [], []
            for vy in (-1, 1):
                for vx in (-1, 1):
                    c_ = c.clone()
                    c_[..., 0] += vy / h + 1e-6
                    c_[..., 1] += vx / w + 1e-6
                    c_.clamp_(-1 + 1e-6, 1 - 1e-6)
                    g = c_.flip(-1).unsqueeze(1)
                    q_feat = F.grid_sample(feat, g, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
                    q_coord = F.grid_sample(feat_coord, g, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
                    rel = (c - q_coord) * c.new_tensor([h, w])
                    inp = torch.cat([q_feat, rel, ce * ce.new_tensor([h, w])], dim=-1)
                    outs.append(model.imnet.layers(inp.view(-1, inp.shape[-1])).view(1, c.shape[1], -1))
                    areas.append((rel[..., 0] * rel[..., 1]).abs() + 1e-9)
            tot = sum(areas)
            preds.append(sum(o * (a / tot).unsqueeze(-1) for o, a in zip(outs, reversed(areas))))
        pred = torch.cat(preds, dim=1) * model.input_std + model.input_mean
        return pred.view(1, *out_hw, 3).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- one measurement
def test_image(w: int, h: int) -> np.ndarray:
    """A deterministic natural-image input: Urban100 img_001 resized to w x h (float RGB)."""
    from csr import io
    from csr.data import data_root
    from csr.resize import imresize
    src = io.load(Path(data_root()) / "Urban100" / "HR" / "img_001.png").float_rgb()
    return np.clip(imresize(src, shape=(h, w)), 0, 1).astype(np.float32)


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(method: str, case: str, scale: int, repeats: int, save: str | None) -> dict:
    import torch

    from csr.engine import upscale_tensor
    from csr.resize import imresize
    from csr.zoo import create_model
    w, h = (int(v) for v in case.split("x"))
    img = test_image(w, h)
    out_hw = (h * scale, w * scale)
    lr = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
    if method == "bicubic":
        run = lambda: imresize(img, shape=out_hw)  # noqa: E731
    elif method == "reference":
        model = create_model("liif-edsr-baseline")
        run = lambda: reference_upscale(model, lr, out_hw)  # noqa: E731
    else:
        model = create_model("liif-edsr-baseline" if method == "exact" else FAST_MODEL)
        run = lambda: upscale_tensor(model, lr, out_hw, tile="auto")  # noqa: E731
    if case != BIG:
        run()   # warm-up, untimed (module docstring)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        y = run()
        times.append(time.perf_counter() - t)
    if save:
        y = y if isinstance(y, np.ndarray) else y[0].permute(1, 2, 0).numpy()
        np.save(save, np.clip(y, 0, 1).astype(np.float32))
    return {"seconds": statistics.median(times), "runs": times, "peak_rss_mb": round(vm_hwm_mb(), 1)}


def run_worker(method, case, scale, repeats, save=None, timeout=3600) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", method, case, str(scale), str(repeats)] + (["--save", save] if save else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{method} {case}: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- MACs and the CPU
def macs_per_px(method: str, scale: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from csr.engine import upscale_tensor
    from csr.zoo import create_model
    model = create_model("liif-edsr-baseline" if method != "fast" else FAST_MODEL)
    lr = torch.rand(1, 3, 24, 24)
    out_hw = (24 * scale, 24 * scale)
    with torch.no_grad(), FlopCounterMode(display=False) as enc:
        model.encoder((lr - 0.5) / 0.5)
    run = (lambda: reference_upscale(model, lr, out_hw)) if method == "reference" else \
        (lambda: upscale_tensor(model, lr, out_hw))
    run()   # once uncounted: the engine times its kernels on first use (csr.models.mlp)
    with torch.no_grad(), FlopCounterMode(display=False) as tot:
        run()
    n = out_hw[0] * out_hw[1]
    e = enc.get_total_flops() / 2 / n
    return {"decoder": round(tot.get_total_flops() / 2 / n - e), "encoder": round(e)}


def bf16_effect(side: int = 48, scale: int = 4) -> dict:
    """PSNR (Y, shave = scale) against the HR of a Set5 crop, fp32 vs bf16 autocast, same engine.

    Measured here even on CPUs without native bf16 (where csr refuses bf16 for speed, not for
    correctness) on a small crop, so the numerical effect is known on every machine."""
    import torch

    from csr import io
    from csr.data import data_root
    from csr.engine import upscale_tensor
    from csr.metrics import psnr as _psnr
    from csr.resize import imresize
    from csr.zoo import create_model
    hr = io.load(Path(data_root()) / "Set5" / "HR" / "baby.png").float_rgb()
    n, y0, x0 = side * scale, (hr.shape[0] - side * scale) // 2, (hr.shape[1] - side * scale) // 2
    hr = hr[y0:y0 + n, x0:x0 + n]  # the centre: the face
    lr = torch.from_numpy(np.clip(imresize(hr, 1 / scale), 0, 1).astype(np.float32)).permute(2, 0, 1)[None]
    model = create_model("liif-edsr-baseline")
    out = {}
    for name in ("fp32", "bf16"):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16"):
            y = upscale_tensor(model, lr, hr.shape[:2])
        sr = y.float().clamp(0, 1)[0].permute(1, 2, 0).numpy()
        out[name] = {"psnr": round(float(_psnr(sr, hr, crop_border=scale, test_y_channel=True)), 4),
                     "seconds": round(time.perf_counter() - t, 2)}
    out["psnr_change_db"] = round(out["bf16"]["psnr"] - out["fp32"]["psnr"], 4)
    out["crop"] = f"Set5 baby, centre {n}x{n} HR, x{scale}"
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    from csr.metrics import psnr as _psnr
    return round(float(_psnr(a, b, crop_border=0, test_y_channel=True)), 3)


# ----------------------------------------------------------------------------- the run
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="128x128 -> x4 only, one run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-write", action="store_true", help="do not write results/")
    p.add_argument("--exact-big", action="store_true",
                   help=f"also run the exact engine on {BIG} -> x8 (20 minutes on 2 quiet AVX2 cores)")
    p.add_argument("--big-only", action="store_true",
                   help=f"run only {BIG} -> x8 (exact engine and fast decoder) and merge that row into "
                        "results/speed.{json,md,png}")
    p.add_argument("--macs-only", action="store_true",
                   help="count the multiply-adds per pixel again and merge them into results/speed.{json,md}")
    p.add_argument("--worker", nargs=4, metavar=("METHOD", "CASE", "SCALE", "REPEATS"), help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        m, case, s, r = a.worker
        print(json.dumps(worker(m, case, int(s), int(r), a.save)))
        return 0

    from csr.zoo import list_models
    have_fast = FAST_MODEL in list_models(available_only=True)
    if a.big_only and (a.quick or a.no_write or not (RESULTS / "speed.json").is_file()):
        p.error("--big-only merges one row into results/speed.json: run the full benchmark first, "
                "and do not combine it with --quick or --no-write")
    if a.macs_only:
        rep = json.loads((RESULTS / "speed.json").read_text())
        macs = {m: macs_per_px(m, 4) for m in ["reference", "exact"] + (["fast"] if have_fast else [])}
        for row in rep["cases"]:
            row["macs_per_px"] = {m: (macs[m]["decoder"] if m in macs else None) for m in ("reference", "exact", "fast")}
        write_results(rep)
        log(markdown(rep))
        return 0
    cases = CASES[:1] if a.quick else [c for c in CASES if c[0] == BIG] if a.big_only else CASES
    a.exact_big = a.exact_big or a.big_only
    log = (lambda *x: print(*x, file=sys.stderr, flush=True)) if a.json else print
    from csr.dist import cpu_info
    report = {"cpu": cpu_info(), "fast_model": FAST_MODEL if have_fast else None, "cases": []}
    macs = {m: macs_per_px(m, 4) for m in ["reference", "exact"] + (["fast"] if have_fast else [])}
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for case, scale, repeats in cases:
            repeats = 1 if a.quick else repeats
            big = case == BIG
            row = {"input": case, "scale": scale, "repeats": repeats}
            out = {}
            for m in ("reference", "exact", "fast", "bicubic"):
                skip = (m == "fast" and not have_fast) or (big and m == "reference") or \
                       (big and m == "exact" and not a.exact_big) or (big and m == "bicubic")
                if skip:
                    out[m] = None
                    continue
                log(f"{case} x{scale} {m} ...")
                save = None if big else os.path.join(tmp, f"{m}.npy")
                out[m] = run_worker(m, case, scale, repeats, save)
                out[m]["save"] = save
                log(f"  {out[m]['seconds']:.2f} s, peak RSS {out[m]['peak_rss_mb']:.0f} MB")
            sec = {m: (None if v is None else round(v["seconds"], 3)) for m, v in out.items()}
            row.update({f"{m}_s": sec[m] for m in sec})
            ref = sec["reference"]
            row["exact_speedup"] = round(ref / sec["exact"], 2) if ref and sec["exact"] else None
            row["fast_speedup"] = round(ref / sec["fast"], 2) if ref and sec["fast"] else None
            row["macs_per_px"] = {m: (macs[m]["decoder"] if m in macs else None) for m in ("reference", "exact", "fast")}
            row["encoder_macs_per_px"] = macs["exact"]["encoder"] * 4 * 4 // (scale * scale)
            row["peak_rss_mb"] = {m: (None if v is None else v["peak_rss_mb"]) for m, v in out.items()}
            r = np.load(out["reference"]["save"]) if out["reference"] else None
            row["max_abs_diff_exact"] = (float(np.abs(np.load(out["exact"]["save"]) - r).max())
                                         if r is not None and out["exact"] else None)
            row["psnr_fast_vs_exact"] = (psnr(np.load(out["fast"]["save"]), r)
                                         if r is not None and out["fast"] else None)
            row["psnr_bicubic_vs_exact"] = (psnr(np.load(out["bicubic"]["save"]), r)
                                            if r is not None and out["bicubic"] else None)
            report["cases"].append(row)
    if not (a.quick or a.big_only):
        log("bf16 effect ...")
        report["bf16"] = bf16_effect()
    report["total_minutes"] = round((time.time() - t_start) / 60, 1)
    if a.big_only:
        report = merge_big_row(report)
    if a.json:
        print(json.dumps(report))
    if not a.no_write and not a.quick:
        write_results(report)
    log(markdown(report))
    return 0


def _f(v, fmt="{:.2f}"):
    return "–" if v is None else fmt.format(v)


def markdown(rep: dict) -> str:
    c = rep["cpu"]
    lines = ["# Inference speed (CPU)", "",
             f"CPU: {c['model']}, {c['cores']} cores, {c['threads']} torch threads, capability "
             f"{c['capability']}, native bf16: {c['native_bf16']}. Weights: `liif-edsr-baseline` (the "
             f"LIIF authors'); fast decoder: `{rep['fast_model'] or 'not shipped yet'}`. "
             f"Written by `python benchmarks/speed.py` in {rep['total_minutes']} min. Seconds: median of "
             f"the runs in each row (after one untimed warm-up run, except {BIG}, timed once from cold).", "",
             "| input | scale | reference s | exact s | fast s | bicubic s | exact speed-up | fast speed-up "
             "| peak RSS MB (ref / exact / fast) | max abs diff exact | PSNR fast vs ref | PSNR bicubic vs ref |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["cases"]:
        rss = r["peak_rss_mb"]
        lines.append(f"| {r['input']} | x{r['scale']} | {_f(r['reference_s'])} | {_f(r['exact_s'])} | "
                     f"{_f(r['fast_s'])} | {_f(r['bicubic_s'])} | {_f(r['exact_speedup'], '{:.2f}x')} | "
                     f"{_f(r['fast_speedup'], '{:.2f}x')} | {_f(rss['reference'], '{:.0f}')} / "
                     f"{_f(rss['exact'], '{:.0f}')} / {_f(rss['fast'], '{:.0f}')} | "
                     f"{_f(r['max_abs_diff_exact'], '{:.1e}')} | {_f(r['psnr_fast_vs_exact'])} | "
                     f"{_f(r['psnr_bicubic_vs_exact'])} |")
    m = rep["cases"][0]["macs_per_px"]
    enc = rep["cases"][0]["encoder_macs_per_px"]
    lines += ["", "Decoder multiply-adds per output pixel at x4 (per-LR-pixel decoder work amortised; "
              f"the EDSR-baseline encoder adds {enc:,} at x4, 4x less at x8; elementwise products, "
              "such as LIIF's area weights, are not counted):", "",
              "| reference | exact | fast |", "|---|---|---|",
              f"| {_f(m['reference'], '{:,}')} | {_f(m['exact'], '{:,}')} | {_f(m['fast'], '{:,}')} |", "",
              *([] if "bf16" not in rep else [
                  f"bf16 autocast ({rep['bf16']['crop']}): PSNR {rep['bf16']['bf16']['psnr']} dB vs fp32 "
                  f"{rep['bf16']['fp32']['psnr']} dB, change {rep['bf16']['psnr_change_db']:+.4f} dB "
                  f"({rep['bf16']['bf16']['seconds']} s vs {rep['bf16']['fp32']['seconds']} s on this CPU).", ""]),
              *([] if "big_run" not in rep else [
                  f"The {BIG} row comes from a separate run, `python benchmarks/speed.py --big-only` "
                  f"({rep['big_run']['minutes']} min; fast decoder: `{rep['big_run']['fast_model'] or 'not shipped yet'}`).", ""]),
              f"`–`: not measured. The reference is not run on {BIG} -> x8 (hours on this CPU); the exact "
              f"engine runs there only with `--exact-big` or `--big-only`. PSNR columns: Y channel, no shave, against "
              f"the reference output. The exact engine's difference from the reference comes from the "
              f"reference's float32 coordinates (an ulp of a coordinate is a 1e-5 LR-pixel error at these "
              f"widths); tiled against untiled, our engine differs by <= 1e-5 (tests/test_engine.py). "
              f"The engine (exact and fast) runs the encoder on channels-last input, the per-query layers on "
              f"whichever of GEMM and a 1x1 convolution is faster on this CPU (`csr/models/mlp.py`), and the fast "
              f"decoder's head on strips of rows as the queries reach them (`python benchmarks/strips.py` measures "
              f"the strips alone); the reference keeps the LIIF code's NCHW whole-map convolutions and nn.Linear."]
    return "\n".join(lines)


def merge_big_row(big: dict) -> dict:
    """The last full report (results/speed.json) with its big row replaced by ``big``'s."""
    path = RESULTS / "speed.json"
    if not path.is_file():
        raise SystemExit("--big-only merges into results/speed.json: run the full benchmark first")
    rep = json.loads(path.read_text())
    rep["cases"] = [r for r in rep["cases"] if r["input"] != BIG] + big["cases"]
    rep["big_run"] = {"minutes": big["total_minutes"], "cpu": big["cpu"], "fast_model": big["fast_model"]}
    return rep


def write_results(rep: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "speed.json").write_text(json.dumps(rep, indent=1) + "\n")
    (RESULTS / "speed.md").write_text(markdown(rep) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in rep["cases"] if r["reference_s"]]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.2
    for i, m in enumerate(["reference", "exact", "fast", "bicubic"]):
        vals = [r[f"{m}_s"] or 0 for r in rows]
        ax.bar([j + i * width for j in range(len(rows))], vals, width, label=m)
    ax.set_xticks([j + 1.5 * width for j in range(len(rows))], [f"{r['input']} x{r['scale']}" for r in rows])
    ax.set_ylabel("seconds (median)")
    ax.set_yscale("log")
    ax.set_title(f"csr inference on {rep['cpu']['cores']} CPU cores ({rep['cpu']['capability']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "speed.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
