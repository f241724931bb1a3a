"""The committed tables agree with each other: what notebooks 02 and 03 carry is what
``benchmarks/quality.py`` measured (``results/quality.csv``), so a new measurement that was not
carried into ``results/tables.csv`` (rerun notebook 02 with ``reuse_csv``) fails here.

Only reads committed CSV files and weights: no model runs.
"""
import csv
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
METRICS = ("psnr", "ssim", "lpips")


def rows(name):
    with open(RESULTS / name, newline="") as f:
        return list(csv.DictReader(f))


def key(r):
    return r["model"], r["dataset"], float(r["scale"])


def quality():
    """Whole-set rows of the table protocol, one per model, dataset and scale (the last wins, as
    in quality.py's merge)."""
    return {key(r): r for r in rows("quality.csv") if r["protocol"] == "liif"}


def test_tables_csv_is_quality_csv():
    q, t = quality(), rows("tables.csv")
    models = {r["model"] for r in t}
    cells = {(r["dataset"], float(r["scale"])) for r in t}
    for r in t:
        if r["source"].startswith("reused"):
            src = q.get(key(r))
            assert src is not None, f"{key(r)}: marked reused but not in quality.csv"
            for m in METRICS:
                assert float(r[m]) == float(src[m]), (key(r), m, r[m], src[m])
        else:
            assert r["psnr"] == "" and key(r) not in q, \
                f"{key(r)} is measured in quality.csv but not in tables.csv: rerun notebook 02 (notebooks/README.md)"
    # every whole-set row of a table model at a table cell made it into the tables
    have = {key(r) for r in t if r["source"].startswith("reused")}
    missing = [k for k in q if k[0] in models and (k[1], k[2]) in cells and k not in have]
    assert not missing, f"in quality.csv, not in tables.csv: {missing}"


def test_psnr_vs_scale_agrees_with_quality_csv():
    q = quality()
    shared = [r for r in rows("psnr_vs_scale.csv") if key(r) in q]
    assert len(shared) >= 10   # Set5 at x2-x12 for bicubic and the learned models
    for r in shared:
        assert abs(float(r["psnr"]) - float(q[key(r)]["psnr"])) < 5e-4, (key(r), r["psnr"], q[key(r)]["psnr"])


def test_rows_name_the_weights_they_measured():
    """Every model row carries the fingerprint of the weights it measured, and for a model shipped
    in csr/weights (or downloaded here) that is the current file: new weights need their rows
    measured again (``benchmarks/quality.py``)."""
    from csr.registry import fingerprint
    from csr.zoo import checkpoint_path

    current = {}
    for r in rows("quality.csv"):
        model = r["model"].removesuffix("+self-ensemble")
        if model == "bicubic":
            assert r["weights"] == "", r
            continue
        if model not in current:
            try:
                current[model] = fingerprint(checkpoint_path(model, download=False))
            except FileNotFoundError:   # downloadable weights not fetched on this machine
                current[model] = None
        assert r["weights"] and r["weights"] == (current[model] or r["weights"]), \
            f"{key(r)} was measured with weights {r['weights']!r}, the file now has {current[model]!r}"
    assert any(v for v in current.values())
