"""Where one model trails another, image by image: on edges or elsewhere, and LTE's frequencies.

    python benchmarks/lte_gap.py [--model lte-edsr-baseline] [--against liif-edsr-baseline]
                                 [--dataset Urban100] [--scale 4] [--limit 10] [--no-write]

For each image of the benchmark (the quality table's protocol: ``csr.evaluation.measure``, Y
channel, border shave) it gives both models' PSNR and its difference, split into the pixels on
edges (the 10% of the HR image's pixels with the largest Y gradient) and the rest, each as a PSNR
difference over those pixels alone. For an LTE model it also gives the spatial frequencies its
estimator proposes on the image's LR input: the length of each (fy, fx) pair, in cycles per LR
pixel (LTE's offsets are in LIIF's units, 2 per LR pixel, and its phase is ``pi * freq . rel``);
an x``s`` output holds detail up to ``s / 2`` cycles per LR pixel, the LR image up to 0.5.
Writes ``results/lte_gap.{md,json}`` and ``results/lte_gap.png`` (the image with the largest gap:
the HR image and where each model's squared error is the larger).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

import csr
from csr import metrics as M
from csr.data import BenchmarkSet, crop_border_for
from csr.evaluation import measure, super_resolve

ROOT = Path(__file__).resolve().parents[1]
csr.check_checkout(ROOT)  # never measure another clone's files
EDGE_SHARE = 0.10


def _psnr_on(err: np.ndarray) -> float:
    return 10 * np.log10(255.0 ** 2 / err.mean())


def frequencies(model, lr: np.ndarray) -> np.ndarray | None:
    """|(fy, fx)| of every frequency LTE's estimator gives on ``lr`` (uint8 HxWx3), or None for a
    model without one."""
    if not hasattr(model, "freq"):
        return None
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255)
    with torch.no_grad():
        f = model.prepare(model.encoder(model.normalise(x)))["freq"][0].double()   # (HW, C)
    return torch.hypot(f[:, 0::2], f[:, 1::2]).flatten().numpy()


def compare(a: str, b: str, dataset: str, scale: float, limit: int) -> tuple[list[dict], dict]:
    models = {n: csr.create_model(n).eval() for n in (a, b)}
    bench = BenchmarkSet(dataset, scale)
    rows, maps, freqs = [], {}, []
    for i in range(min(limit, len(bench))):
        pair = bench[i]
        c = slice(crop_border_for(scale), -crop_border_for(scale) or None)
        hr_y = M.to_y(pair.hr[c, c] / 255.0)
        gy, gx = np.gradient(hr_y)
        grad = np.hypot(gy, gx)
        edges = grad >= np.quantile(grad, 1 - EDGE_SHARE)
        row, err = {"name": pair.name}, {}
        for n, m in models.items():
            sr = super_resolve(m, pair.lr, pair.hr.shape[:2])
            row[n] = measure(sr, pair, metrics=("psnr",))["psnr"]
            err[n] = (M.to_y(sr[c, c]) - hr_y) ** 2
        row["diff"] = row[a] - row[b]
        row["diff_edges"] = _psnr_on(err[a][edges]) - _psnr_on(err[b][edges])
        row["diff_rest"] = _psnr_on(err[a][~edges]) - _psnr_on(err[b][~edges])
        rows.append(row)
        maps[pair.name] = (pair.hr, err[a] - err[b])
        f = frequencies(models[a], pair.lr)
        if f is not None:
            freqs.append(f)
        print(json.dumps(row), file=sys.stderr, flush=True)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in (a, b, "diff", "diff_edges", "diff_rest")}
    if freqs:
        f = np.concatenate(freqs)
        summary["freq_quantiles"] = {str(q): float(np.quantile(f, q)) for q in (0.5, 0.9, 0.99, 0.999)}
        summary["freq_max"] = float(f.max())
        summary["freq_above_lr_nyquist"] = float((f > 0.5).mean())
    worst = min(rows, key=lambda r: r["diff"])["name"]
    return rows, {**summary, "worst": worst, "worst_map": maps[worst]}


def markdown(rep: dict) -> str:
    a, b, s = rep["model"], rep["against"], rep["summary"]
    lines = [f"# Where `{a}` trails `{b}`: {rep['dataset']} x{rep['scale']:g}, first {len(rep['rows'])} images", "",
             f"`python benchmarks/lte_gap.py --model {a} --against {b} --dataset {rep['dataset']} --scale "
             f"{rep['scale']:g} --limit {rep['limit']}`. PSNR (dB, Y, the quality table's protocol); "
             f"'edges': the {EDGE_SHARE:.0%} of pixels with the largest HR gradient, 'rest': the others, "
             "each a PSNR difference over those pixels alone.", "",
             f"| image | {a} | {b} | difference | on edges | rest |", "|---|---|---|---|---|---|"]
    for r in rep["rows"] + [{"name": "**mean**", **{k: v for k, v in s.items() if not isinstance(v, (dict, str, tuple))}}]:
        lines.append(f"| {r['name']} | {r[a]:.3f} | {r[b]:.3f} | {r['diff']:+.3f} | {r['diff_edges']:+.3f} | {r['diff_rest']:+.3f} |")
    if "freq_quantiles" in s:
        q = s["freq_quantiles"]
        lines += ["", f"Frequencies `{a}` estimates on these LR images, |(fy, fx)| in cycles per LR pixel: "
                  f"median {q['0.5']:.3f}, 90% {q['0.9']:.3f}, 99% {q['0.99']:.3f}, 99.9% {q['0.999']:.3f}, "
                  f"max {s['freq_max']:.3f}; {s['freq_above_lr_nyquist']:.2%} above the LR image's Nyquist "
                  f"(0.5); an x{rep['scale']:g} output holds detail up to {rep['scale'] / 2:g}."]
    lines += ["", f"`lte_gap.png`: {s['worst']}, the largest gap; right, white where `{a}`'s squared "
              f"error is the larger, black where `{b}`'s is."]
    return "\n".join(lines) + "\n"


def plot(hr: np.ndarray, d: np.ndarray, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lim = float(np.quantile(np.abs(d), 0.995)) or 1.0
    fig, ax = plt.subplots(1, 2, figsize=(12, 5))
    ax[0].imshow(hr)
    ax[1].imshow(d, cmap="gray", vmin=-lim, vmax=lim)
    ax[1].set_title(title, fontsize=8)
    for x in ax:
        x.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lte-edsr-baseline")
    p.add_argument("--against", default="liif-edsr-baseline")
    p.add_argument("--dataset", default="Urban100")
    p.add_argument("--scale", type=float, default=4)
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--no-write", action="store_true", help="print only; leave results/ alone")
    a = p.parse_args(argv)
    rows, summary = compare(a.model, a.against, a.dataset, a.scale, a.limit)
    hr, d = summary.pop("worst_map")
    rep = {"model": a.model, "against": a.against, "dataset": a.dataset, "scale": a.scale,
           "limit": a.limit, "rows": rows, "summary": summary}
    print(markdown(rep))
    if not a.no_write:
        (ROOT / "results" / "lte_gap.json").write_text(json.dumps(rep, indent=1) + "\n")
        (ROOT / "results" / "lte_gap.md").write_text(markdown(rep))
        plot(hr, d, ROOT / "results" / "lte_gap.png",
             f"{summary['worst']}, squared Y error: white where {a.model} is worse")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
