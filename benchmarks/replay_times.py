"""Step times of a training run with replay, fresh batches against reused ones, from its log.

    python benchmarks/replay_times.py --config csr/configs/lmf-edsr-baseline.yaml [--from-step 1025]

With ``replay: {slots: S, reuse: R}`` the batch of step ``s`` (0-based) is made fresh, running the
frozen encoder and the teacher, when ``s % (S * R) < S`` and read back from disk otherwise
(``csr/data/replay.py``). ``time_s`` in ``<out>/log.csv`` is training time (validation excluded),
so the difference of two rows is one step. Prints the mean step time of each kind, the mean over
a whole cycle and the gain in steps per hour over making every batch fresh. Steps before
``--from-step`` are left out (a first block that shared the CPU, for instance); a row logged
twice (a resumed run) and the step after it are left out.
"""
from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from csr.train import load_config


def step_times(log: Path, slots: int, reuse: int, from_step: int = 1) -> dict:
    t, resumed, seen = {}, set(), set()
    with open(log, newline="") as f:
        for r in csv.DictReader(f):
            s = int(r["step"])
            if s in seen or (seen and s < max(seen)):
                resumed.add(s)
            seen.add(s)
            t[s] = float(r["time_s"])
    fresh, reused = [], []
    for s in sorted(t):   # logged step s ran the batch of 0-based step s - 1
        if s < max(2, from_step) or s - 1 not in t or s in resumed or s - 1 in resumed:
            continue
        (fresh if (s - 1) % (slots * reuse) < slots else reused).append(t[s] - t[s - 1])
    if not fresh or not reused:
        raise SystemExit(f"{log}: needs both fresh and reused steps after step {from_step}")
    f, r = statistics.mean(fresh), statistics.mean(reused)
    cycle = (f + (reuse - 1) * r) / reuse
    return {"fresh_s": f, "reused_s": r, "cycle_s": cycle, "gain": f / cycle,
            "fresh_steps": len(fresh), "reused_steps": len(reused)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--from-step", type=int, default=1)
    a = p.parse_args(argv)
    cfg = load_config(a.config)
    rep = cfg.get("replay") or {}
    if not rep:
        raise SystemExit(f"{a.config} has no replay")
    r = step_times(Path(cfg["out"]) / "log.csv", rep.get("slots", 256), rep.get("reuse", 4), a.from_step)
    print(f"{cfg['name']}: fresh {r['fresh_s']:.2f} s a step ({r['fresh_steps']} steps), reused "
          f"{r['reused_s']:.2f} s ({r['reused_steps']}); a reuse-{rep.get('reuse', 4)} cycle "
          f"{r['cycle_s']:.2f} s a step, {r['gain']:.2f}x the steps per hour of fresh batches only")


if __name__ == "__main__":
    main()
