"""The engine with each decoder's per-pixel maps computed strip by strip, against the whole map.

    python benchmarks/strips.py [--models liif-edsr-baseline,lmf-edsr-baseline] [--repeats 3] [--no-write]

At inference a decoder with ``strip_pixels`` set (lmf) computes ``prepare`` (its per-LR-pixel maps)
on strips of about ``STRIP_PIXELS`` LR pixels as the queries reach them (one row of context either
side, ``ImplicitSR.prepare_rows`` in ``csr/models/implicit.py``); the others on the whole map,
once. This times a whole x4 upscale (``csr.engine.upscale_tensor``) both ways for each model,
with its real weights, at the engine benchmark's input sizes (a deterministic natural image, as
``benchmarks/speed.py``): the median of ``--repeats`` timings each, after one untimed warm-up, and
the max abs difference of the outputs. Writes ``results/strips.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import csr
from csr.dist import cpu_info
from csr.engine import upscale_tensor
from csr.models.implicit import STRIP_PIXELS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import test_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
csr.check_checkout(ROOT)  # never measure another clone's files
SIZES = [(128, 128), (256, 256), (270, 480)]
SCALE = 4


def median_time(fn, repeats: int):
    """The median time of ``repeats`` calls after one untimed warm-up (first-call costs, kernel
    set-up and allocator, are not the strips' doing), and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def measure(name: str, hw, repeats: int) -> dict:
    model = csr.create_model(name).eval()
    img = test_image(hw[1], hw[0])
    lr = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
    out_hw = (hw[0] * SCALE, hw[1] * SCALE)
    run = lambda: upscale_tensor(model, lr, out_hw, tile="auto")  # noqa: E731
    row = {"model": name, "input": f"{hw[1]}x{hw[0]}", "scale": SCALE}
    outs = {}
    for mode, pixels in (("whole", None), ("strips", STRIP_PIXELS)):
        model.strip_pixels = pixels   # an instance attribute: this model only
        row[f"{mode}_s"], outs[mode] = median_time(run, repeats)
    row["speedup"] = row["whole_s"] / row["strips_s"]
    row["max_abs_diff"] = (outs["whole"] - outs["strips"]).abs().max().item()
    return row


def markdown(rep: dict) -> str:
    lines = [f"# The engine with per-pixel maps on strips of {rep['strip_pixels']} LR pixels vs the whole map", "",
             f"`python benchmarks/strips.py` on {rep['cpu']}; x{SCALE} upscales, median of {rep['repeats']} "
             "runs after a warm-up.", "",
             "| model | input (WxH) | whole s | strips s | speed-up | max abs diff |", "|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        lines.append(f"| {r['model']} | {r['input']} | {r['whole_s']:.3f} | {r['strips_s']:.3f} | "
                     f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="liif-edsr-baseline,lmf-edsr-baseline")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="print only; leave results/ alone")
    a = p.parse_args(argv)
    rows = []
    for name in a.models.split(","):
        for hw in SIZES:
            rows.append(measure(name, hw, a.repeats))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    info = cpu_info()
    cpu = info if isinstance(info, str) else ", ".join(f"{k}: {v}" for k, v in info.items())
    rep = {"cpu": cpu, "strip_pixels": STRIP_PIXELS, "repeats": a.repeats, "rows": rows}
    print(markdown(rep))
    if not a.no_write:
        (ROOT / "results" / "strips.json").write_text(json.dumps(rep, indent=1) + "\n")
        (ROOT / "results" / "strips.md").write_text(markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
