"""Per-LR-pixel decoder maps (``prepare``) on the whole latent map against strips of rows.

    python benchmarks/prepare_strips.py [--models liif-edsr-baseline,lmf-edsr-baseline] [--no-write]

At inference a decoder with ``strip_pixels`` set (lmf) computes ``prepare`` on strips of about
``STRIP_PIXELS`` LR pixels (one row of context either side, ``csr/models/implicit.py``); the others
on the whole map. This measures both ways for each model, with its real weights on its encoder's
(channels-last) output at the engine benchmark's input sizes: the median of 3 timings each and
their max abs difference; writes ``results/prepare_strips.{md,json}``.
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
from csr.models.implicit import STRIP_PIXELS

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(128, 128), (256, 256), (270, 480)]


def median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(name: str, hw, strip_pixels: int = STRIP_PIXELS) -> dict:
    model = csr.create_model(name).eval()
    lr = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feat = model.encoder(model.normalise(lr))
        whole = lambda: {k: v.contiguous() for k, v in model.prepare(feat).items()}  # noqa: E731
        strips = lambda: model.prepare_strips(feat, strip_pixels)  # noqa: E731
        a, b = whole(), strips()
        diff = max((a[k] - b[k]).abs().max().item() for k in a)
        t_whole, t_strips = median_time(whole), median_time(strips)
    return {"model": name, "input": f"{hw[1]}x{hw[0]}", "whole_s": t_whole, "strips_s": t_strips,
            "speedup": t_whole / t_strips, "max_abs_diff": diff}


def markdown(rep: dict) -> str:
    lines = [f"# prepare(): whole latent map vs strips of {rep['strip_pixels']} LR pixels", "",
             f"`python benchmarks/prepare_strips.py` on {rep['cpu']}", "",
             "| model | input (WxH) | whole s | strips s | speed-up | max abs diff |", "|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        lines.append(f"| {r['model']} | {r['input']} | {r['whole_s']:.3f} | {r['strips_s']:.3f} | "
                     f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="liif-edsr-baseline,lmf-edsr-baseline")
    p.add_argument("--no-write", action="store_true", help="print only; leave results/ alone")
    a = p.parse_args(argv)
    rows = []
    for name in a.models.split(","):
        for hw in SIZES:
            rows.append(measure(name, hw))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    info = cpu_info()
    cpu = info if isinstance(info, str) else ", ".join(f"{k}: {v}" for k, v in info.items())
    rep = {"cpu": cpu, "strip_pixels": STRIP_PIXELS, "rows": rows}
    print(markdown(rep))
    if not a.no_write:
        (ROOT / "results" / "prepare_strips.json").write_text(json.dumps(rep, indent=1) + "\n")
        (ROOT / "results" / "prepare_strips.md").write_text(markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
