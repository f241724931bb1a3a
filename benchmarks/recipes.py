"""Sample efficiency of from-scratch training recipes: Set5 x4 PSNR against wall time on this machine.

    python benchmarks/recipes.py                      # each recipe for 45 training minutes
    python benchmarks/recipes.py --minutes 120        # longer; continues runs already made
    python benchmarks/recipes.py --collect-only       # rebuild the results from the runs' logs
    python benchmarks/recipes.py --name sample_efficiency-avx2   # another machine's results, beside these

Each recipe is a training config; its run is the config's own (``runs/<name>``) and is resumed,
so the study grows over sessions and with any longer run of the same config (a run stops here when
its log reaches ``--minutes`` of training time; validation is not counted). Recipes run one after another, never side by side, so each has
the whole machine. Writes ``results/<name>.{csv,md,png}`` (``--name``, default ``sample_efficiency``): every validation (EMA weights
where the recipe keeps them, Set5 x4, LIIF protocol, Y channel), and the PSNR each recipe had at
15, 29 and 43 minutes next to the naive recipe's published curve (measured on a Zen 4 with native
bf16, quoted from the issue, not measured here).
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
RECIPES = ["csr/configs/scratch-naive.yaml", "csr/configs/liif-edsr-baseline-scratch.yaml",
           "csr/configs/scratch-patch32.yaml"]
CHECKPOINTS = [15, 29, 43]                       # minutes at which the issue quotes the naive curve
QUOTED = {"minutes": CHECKPOINTS, "psnr": [29.9, 30.6, 30.9],
          "label": "naive recipe, Zen 4 with native bf16 (quoted, not measured here)"}


def run_dir(config: str) -> Path:
    with open(REPO / config) as f:
        return REPO / yaml.safe_load(f)["out"]


def trained_minutes(out: Path) -> float:
    rows = read_log(out)
    return float(rows[-1]["time_s"]) / 60 if rows else 0.0


def read_log(out: Path) -> list[dict]:
    """The log's rows, keeping only the last copy of a step (a resumed run repeats a few)."""
    path = out / "log.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        by_step = {int(r["step"]): r for r in csv.DictReader(f)}
    return [by_step[k] for k in sorted(by_step)]


def train(config: str, minutes: float) -> None:
    out = run_dir(config)
    left = minutes - trained_minutes(out)
    if left <= 0.05:
        print(f"{out.name}: already {trained_minutes(out):.1f} min", flush=True)
        return
    print(f"{out.name}: training {left:.1f} more minutes -> {out}", flush=True)
    cmd = [sys.executable, "-m", "csr", "train", "--config", config, "--resume", "--minutes", f"{left:.3f}"]
    subprocess.run(cmd, cwd=REPO, check=True)


def collect(configs: list[str]) -> list[dict]:
    rows = []
    for config in configs:
        out = run_dir(config)
        for r in read_log(out):
            if r.get("val_psnr"):
                rows.append({"recipe": out.name, "config": config, "step": int(r["step"]),
                             "minutes": round(float(r["time_s"]) / 60, 2), "val_psnr": float(r["val_psnr"])})
    return rows


def at_minutes(rows: list[dict], recipe: str, minutes: float, trained: float):
    """PSNR at ``minutes`` of training, linearly interpolated between the validations around it
    (recipes validate at different cadences); None if the run has not trained that long."""
    mine = [r for r in rows if r["recipe"] == recipe]
    if not mine or trained < minutes or mine[-1]["minutes"] < minutes or mine[0]["minutes"] > minutes:
        return None
    after = next(i for i, r in enumerate(mine) if r["minutes"] >= minutes)
    hi = mine[after]
    lo = mine[after - 1] if after else hi
    if hi["minutes"] == lo["minutes"]:
        return hi["val_psnr"]
    f = (minutes - lo["minutes"]) / (hi["minutes"] - lo["minutes"])
    return lo["val_psnr"] + f * (hi["val_psnr"] - lo["val_psnr"])


def markdown(rows: list[dict], cpu: dict) -> str:
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    trained = {r["recipe"]: trained_minutes(run_dir(r["config"])) for r in rows}
    lines = ["# Sample efficiency: LIIF + EDSR-baseline from scratch", "",
             f"CPU: {cpu['model']}, {cpu['cores']} cores, {cpu['threads']} torch threads, capability "
             f"{cpu['capability']}, native bf16: {cpu['native_bf16']} (so training ran in "
             f"{'bf16' if cpu['native_bf16'] else 'fp32'}). Set5 x4, LIIF protocol, Y channel; minutes of "
             "training wall time, validation excluded. Written by `python benchmarks/recipes.py`.", "",
             "| recipe | " + " | ".join(f"{m} min" for m in CHECKPOINTS) + " | last |",
             "|---|" + "---|" * (len(CHECKPOINTS) + 1)]
    for name in recipes:
        cells = []
        for m in CHECKPOINTS:
            v = at_minutes(rows, name, m, trained[name])
            cells.append("–" if v is None else f"{v:.2f}")
        last = [r for r in rows if r["recipe"] == name][-1]
        cells.append(f"{last['val_psnr']:.2f} at {last['minutes']:.0f} min (step {last['step']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| " + QUOTED["label"] + " | " + " | ".join(f"{p:.1f}" for p in QUOTED["psnr"]) + " | – |")
    lines += ["", "PSNR at a time: interpolated between the validations before and after it (`–`: the run "
              "has not trained that long). "
              "Configs: " + ", ".join(f"`{r}`" for r in dict.fromkeys(x["config"] for x in rows)) + "."]
    return "\n".join(lines)


def write(rows: list[dict], name: str = "sample_efficiency") -> None:
    from csr.dist import cpu_info
    cpu = cpu_info()
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["recipe", "config", "step", "minutes", "val_psnr"])
        w.writeheader()
        w.writerows(rows)
    (RESULTS / f"{name}.md").write_text(markdown(rows, cpu) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == recipe]
        ax.plot([r["minutes"] for r in mine], [r["val_psnr"] for r in mine], "o-", ms=3, label=recipe)
    ax.plot(QUOTED["minutes"], QUOTED["psnr"], "k--s", ms=5, label=QUOTED["label"])
    ax.set_xlabel(f"training minutes on this machine ({cpu['cores']} cores, {cpu['capability']})")
    ax.set_ylabel("Set5 x4 PSNR (dB, Y)")
    ax.set_title("LIIF + EDSR-baseline from scratch on T91 + BSD200")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=120)
    print(markdown(rows, cpu))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated config paths")
    p.add_argument("--minutes", type=float, default=45.0, help="training minutes per recipe")
    p.add_argument("--name", default="sample_efficiency", help="results/<name>.{csv,md,png}")
    p.add_argument("--collect-only", action="store_true", help="do not train, only rebuild results/")
    a = p.parse_args(argv)
    configs = [c for c in a.recipes.split(",") if c]
    if not a.collect_only:
        for config in configs:
            train(config, a.minutes)
    rows = collect(configs)
    if not rows:
        print("no validations yet: run without --collect-only first", file=sys.stderr)
        return 1
    write(rows, a.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
