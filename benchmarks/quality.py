"""Quality table: models x datasets x scales -> results/quality.csv and results/quality.md.

    python benchmarks/quality.py --models bicubic --datasets Set5,Set14,B100,Urban100 --scales 2,3,4,6,8,12

Rows are merged into the existing CSV (same model/dataset/scale/protocol replaced), so a long
table can be filled in over several runs; the markdown is rebuilt from the whole CSV each time.
Protocol: ``liif`` (see ``csr/data/benchmark.py``), Y channel, shave = scale, LPIPS (alex) on RGB.
A candidate checkpoint is measured under the name it would ship as, into a CSV of its own, before
it is shipped (``NAME=PATH``; rows and fingerprint are then those of the shipped file)::

    python benchmarks/quality.py --models lte-edsr-baseline=runs/RUN/best.safetensors --out runs/RUN/quality
    python benchmarks/quality.py --merge runs/RUN/quality.csv   # once the file is shipped

Weights shipped before all their cells are measured again (a run reproduced on another machine
can take longer to measure than one session has): ``--drop-stale`` removes the rows that other
weights made, so those cells read as not measured, never as numbers of other weights::

    python benchmarks/quality.py --drop-stale

Each row names the weights it measured (``weights``: ``csr.registry.fingerprint`` of the checkpoint,
a hash of its tensors; empty for bicubic), so a shipped file that changes without its rows being
measured again shows (tests/test_results.py).
``--self-ensemble`` averages the 8 flips/transposes of each input (8x the time) and files the rows
under ``MODEL+self-ensemble``, compared with the plain model's rows.
"""
from __future__ import annotations

import argparse
import csv
import functools
import time
from pathlib import Path

import csr
from csr.evaluation import evaluate
from csr.published import published
from csr.registry import fingerprint
from csr.zoo import checkpoint_path

csr.check_checkout(Path(__file__).resolve().parents[1])  # never measure another clone's files

FIELDS = ["model", "dataset", "scale", "protocol", "psnr", "ssim", "lpips", "images", "seconds", "weights"]
DATASET_ORDER = ["Set5", "Set14", "B100", "Urban100"]
# decoders trained here on the LIIF authors' encoder: their bar is that model, measured in this table
# (and the from-scratch LIIF, against the checkpoint that had DIV2K and 1000 epochs)
AGAINST_MEASURED = {m: "liif-edsr-baseline" for m in ("lte-edsr-baseline", "lmf-edsr-baseline",
                                                      "metasr-edsr-baseline", "liif-edsr-baseline-scratch")}
SELF_ENSEMBLE = "+self-ensemble"


def against(model: str) -> str | None:
    """The measured model a row set is compared with: the plain model for self-ensemble rows."""
    return model.removesuffix(SELF_ENSEMBLE) if model.endswith(SELF_ENSEMBLE) else AGAINST_MEASURED.get(model)


def weights_id(model: str) -> str:
    """The fingerprint of the weights ``model`` (a zoo name or a checkpoint path) loads; "" for bicubic."""
    if model == "bicubic":
        return ""
    return fingerprint(model if model.endswith(".safetensors") else checkpoint_path(model))


@functools.cache
def current_weights(model: str) -> str | None:
    """The fingerprint of ``model``'s file now; None if it is downloadable and not on this machine."""
    try:
        return fingerprint(checkpoint_path(model.removesuffix(SELF_ENSEMBLE), download=False))
    except (FileNotFoundError, ValueError):   # not on this machine, or not a zoo name: cannot tell
        return None


def stale(row: dict) -> bool:
    """A row measured with weights that are no longer the model's file (bicubic rows never are)."""
    now = current_weights(row["model"]) if row["model"] != "bicubic" else ""
    return now is not None and row["weights"] != now


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: list[dict]):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _cell(rows: list[dict], model: str, dataset: str, scale: float, protocol: str = "liif") -> dict | None:
    return next((r for r in rows if r["model"] == model and r["dataset"] == dataset
                 and float(r["scale"]) == scale and r["protocol"] == protocol), None)


def markdown(rows: list[dict]) -> str:
    """The tables of the ``liif`` protocol's rows (rows of other protocols stay in the CSV only)."""
    rows = [r for r in rows if r["protocol"] == "liif"]
    out = ["# Quality (PSNR dB / SSIM / LPIPS)", "",
           "Protocol `liif`: MATLAB-bicubic LR for x2-x4 (the datasets' own LR files), PIL-bicubic LR "
           "above x4; Y-channel PSNR and SSIM with shave = scale; LPIPS (AlexNet, v0.1) on RGB with the "
           "same shave; float outputs clamped to [0, 1]. Written by `benchmarks/quality.py`; every "
           "row can be rerun with the command at the bottom.", ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        scales = sorted({float(r["scale"]) for r in mine})
        label = published(model.removesuffix(SELF_ENSEMBLE), "Set5", 4)[0]
        out += [f"## {model}", ""]
        ids = sorted({r.get("weights") or "" for r in mine} - {""})
        if ids:
            out += [f"Weights measured: `{'`, `'.join(ids)}` (`csr.registry.fingerprint`).", ""]
        head = "| dataset | " + " | ".join(f"x{s:g}" for s in scales) + " |"
        out += [head, "|---" * (len(scales) + 1) + "|"]
        datasets = sorted({r["dataset"] for r in mine},
                          key=lambda d: DATASET_ORDER.index(d) if d in DATASET_ORDER else 99)
        for d in datasets:
            cells, pub = [], []
            for s in scales:
                r = _cell(mine, model, d, s)
                cells.append("–" if r is None else f"{float(r['psnr']):.2f} / {float(r['ssim']):.4f} / "
                             f"{float(r['lpips']):.4f}" if r.get("lpips") else f"{float(r['psnr']):.2f}")
                p = published(model.removesuffix(SELF_ENSEMBLE), d, s)[1]
                pub.append("–" if p is None else (f"{p:.2f}" if r is None else f"{p:.2f} ({float(r['psnr']) - p:+.2f})"))
            out.append(f"| {d} | " + " | ".join(cells) + " |")
            if label and any(c != "–" for c in pub):
                out.append(f"| *{label}* | " + " | ".join(pub) + " |")
            base = against(model)
            if base:
                diff = []
                for s in scales:
                    a, b = _cell(rows, model, d, s), _cell(rows, base, d, s)
                    diff.append("–" if a is None or b is None else f"{float(a['psnr']) - float(b['psnr']):+.2f}")
                if any(c != "–" for c in diff):
                    out.append(f"| *PSNR minus {base} (measured, its section)* | " + " | ".join(diff) + " |")
        out.append("")
    if _cell(rows, "bicubic", "Set14", 2.0):
        out += ["Set14's published bicubic row measures its grayscale image (`bridge`) on its gray values, "
                "as the classic MATLAB scripts do; the `liif` protocol, like LIIF's code, measures the luma "
                "of its RGB, which is why that row reads +0.08 to +0.09 dB here. `python -m csr eval "
                "--model bicubic --dataset Set14 --scales 2,3,4 --protocol matlab` measures it the MATLAB "
                "way: 30.24 / 27.54 / 26.00 dB against the published 30.24 / 27.55 / 26.00.", ""]
    out += ["Command: `python benchmarks/quality.py --models MODEL --datasets Set5,Set14,B100,Urban100 "
            "--scales 2,3,4,6,8,12`", ""]
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="bicubic", help="comma-separated zoo names, bicubic, or NAME=PATH "
                   "(a checkpoint file measured under NAME)")
    p.add_argument("--datasets", default="Set5,Set14,B100,Urban100")
    p.add_argument("--scales", default="2,3,4,6,8,12")   # the table's scales
    p.add_argument("--protocol", default="liif")
    p.add_argument("--metrics", default="psnr,ssim,lpips")
    p.add_argument("--data-root")
    p.add_argument("--self-ensemble", action="store_true", help="average 8 flips/transposes (rows: MODEL+self-ensemble)")
    p.add_argument("--out", default="results/quality")
    p.add_argument("--merge", metavar="CSV", help="measure nothing: put the rows of CSV (a candidate's, "
                   "measured with NAME=PATH) into the table, replacing the same cells")
    p.add_argument("--drop-stale", action="store_true", help="measure nothing: remove the rows measured "
                   "with weights other than the model's file now (new weights not yet measured everywhere)")
    a = p.parse_args(argv)
    csv_path, md_path = Path(a.out + ".csv"), Path(a.out + ".md")
    rows = read_rows(csv_path)
    if a.drop_stale:
        keep, dropped = [], []
        for r in rows:
            (dropped if stale(r) else keep).append(r)
        for r in dropped:
            print(f"dropped {r['model']} {r['dataset']} x{r['scale']} ({r['protocol']}): measured with "
                  f"{r['weights']}, the file is now {current_weights(r['model'])}")
        write_csv(csv_path, keep)
        md_path.write_text(markdown(keep))
        return
    if a.merge:
        new = read_rows(Path(a.merge))
        cells = {(x["model"], x["dataset"], x["scale"], x["protocol"]) for x in new}
        rows = [x for x in rows if (x["model"], x["dataset"], x["scale"], x["protocol"]) not in cells] + new
        write_csv(csv_path, rows)
        md_path.write_text(markdown(rows))
        print(f"merged {len(new)} rows of {a.merge} into {csv_path}")
        return
    metrics = tuple(a.metrics.split(","))
    for entry in a.models.split(","):
        label, _, model = entry.rpartition("=")
        label = label or model
        for d in a.datasets.split(","):
            for s in a.scales.split(","):
                t0 = time.time()
                r = evaluate(model, d, [s], protocol=a.protocol, root=a.data_root, metrics=metrics,
                             self_ensemble=a.self_ensemble, model_name=label)
                res = r["results"][s]
                name = label + SELF_ENSEMBLE if a.self_ensemble else label
                row = {"model": name, "dataset": d, "scale": s, "protocol": a.protocol,
                       **{m: f"{res[m]:.4f}" for m in metrics}, "images": len(res["images"]),
                       "seconds": f"{time.time() - t0:.1f}", "weights": weights_id(model)}
                rows = [x for x in rows if (x["model"], x["dataset"], x["scale"], x["protocol"])
                        != (name, d, s, a.protocol)] + [row]
                write_csv(csv_path, rows)
                md_path.write_text(markdown(rows))
                print(f"{name} {d} x{s}: " + "  ".join(f"{m} {res[m]:.4f}" for m in metrics), flush=True)


if __name__ == "__main__":
    main()
