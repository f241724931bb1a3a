"""Step times of a training run with replay, fresh batches against reused ones, from its log.

    python benchmarks/replay_times.py --config csr/configs/lmf-edsr-baseline.yaml [--from-step 1025]

With ``replay: {slots: S, reuse: R}`` the batch of step ``s`` (0-based) is made fresh, running the
frozen encoder and the teacher, when ``s % (S * R) < S`` and read back from disk otherwise
(``csr/data/replay.py``). ``time_s`` in ``<out>/log.csv`` is training time (validation excluded),
so the difference of two rows is one step. Prints the mean step time of each kind, the mean over
a whole cycle and the gain in steps per hour over making every batch fresh. Steps before
``--from-step`` are left out (a first block that shared the CPU, for instance); a row logged
twice (a resumed run) and the step after it are left out.

    python benchmarks/replay_times.py --config csr/configs/lte-edsr-baseline-deep.yaml --measure 48

runs the config itself instead (into a temporary folder, from its ``init_from`` weights, ``--slots``
slots, its own ``reuse``), twice in the same process: with the frozen encoder's features stored in
the slots (the default) and with ``replay.features: false`` (the teacher's targets only, the encoder
rerun at every step), and writes both, with the ratio of their reused-step times, to
``results/replay_times.{md,json}``.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

import csr
from csr.train import load_config

csr.check_checkout(Path(__file__).resolve().parents[1])  # never measure another clone's files

RESULTS = Path(__file__).resolve().parent.parent / "results"


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


def measure(cfg: dict, steps: int, slots: int, config_path: str | None = None) -> dict:
    """Train ``cfg`` for ``steps`` steps twice, features stored and not; the step times of each."""
    from csr.dist import cpu_info
    from csr.train import train
    reuse = (cfg.get("replay") or {}).get("reuse", 4)
    report = {"config": cfg["name"], "config_path": config_path or f"csr/configs/{cfg['name']}.yaml",
              "cpu": cpu_info(), "steps": steps, "slots": slots, "reuse": reuse, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, features in (("features stored", True), ("targets only", False)):
            c = copy.deepcopy(cfg)
            c.update(out=str(Path(tmp) / str(features)), replay={"slots": slots, "reuse": reuse, "features": features})
            t = time.time()
            log = train(c, stop_at=steps)
            r = step_times(Path(c["out"]) / "log.csv", slots, reuse)
            report["precision"] = log["precision"]
            report["runs"][name] = {**{k: round(v, 3) for k, v in r.items() if k.endswith("_s") or k == "gain"},
                                    "fresh_steps": r["fresh_steps"], "reused_steps": r["reused_steps"],
                                    "wall_s": round(time.time() - t, 1)}
    on, off = report["runs"]["features stored"], report["runs"]["targets only"]
    report["reused_speedup"] = round(off["reused_s"] / on["reused_s"], 3)
    report["cycle_speedup"] = round(off["cycle_s"] / on["cycle_s"], 3)
    return report


def markdown(r: dict) -> str:
    cpu = r["cpu"]
    lines = [f"# Replay step times: {r['config']}", "",
             f"`python benchmarks/replay_times.py --config {r['config_path']} --measure {r['steps']} "
             f"--slots {r['slots']}`: {r['steps']} steps twice in one process, {r['slots']} slots reused "
             f"{r['reuse']} times, {r['precision']}, on {cpu['model']} ({cpu['threads']} threads, "
             f"{cpu['capability']}, native bf16: {cpu['native_bf16']}). Seconds a step (training time, "
             "validation excluded); the first step of each run is left out.", "",
             "| replay slots hold | fresh step | reused step | reuse cycle | steps/h vs. all fresh |",
             "|---|---|---|---|---|"]
    for name, v in r["runs"].items():
        lines.append(f"| {name} | {v['fresh_s']:.2f} ({v['fresh_steps']}) | {v['reused_s']:.2f} ({v['reused_steps']}) "
                     f"| {v['cycle_s']:.2f} | {v['gain']:.2f}x |")
    lines += ["", f"Storing the frozen encoder's features: reused steps {r['reused_speedup']:.2f}x as fast, "
              f"a whole reuse cycle {r['cycle_speedup']:.2f}x."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--from-step", type=int, default=1)
    p.add_argument("--measure", type=int, metavar="STEPS", help="run the config for STEPS steps, with and "
                   "without stored encoder features, and write results/replay_times.{md,json}")
    p.add_argument("--slots", type=int, default=8, help="slots for --measure (default 8)")
    p.add_argument("--no-write", action="store_true", help="--measure: print only")
    a = p.parse_args(argv)
    cfg = load_config(a.config)
    rep = cfg.get("replay") or {}
    if not rep:
        raise SystemExit(f"{a.config} has no replay")
    if a.measure:
        if a.slots < 2 or a.measure <= a.slots:
            p.error(f"--measure {a.measure} --slots {a.slots}: needs slots >= 2 and more steps than slots "
                    "(fresh steps after the first, then reused ones)")
        r = measure(cfg, a.measure, a.slots, a.config)
        md = markdown(r)
        print(md)
        if not a.no_write:
            (RESULTS / "replay_times.json").write_text(json.dumps(r, indent=1) + "\n")
            (RESULTS / "replay_times.md").write_text(md)
        return
    r = step_times(Path(cfg["out"]) / "log.csv", rep.get("slots", 256), rep.get("reuse", 4), a.from_step)
    print(f"{cfg['name']}: fresh {r['fresh_s']:.2f} s a step ({r['fresh_steps']} steps), reused "
          f"{r['reused_s']:.2f} s ({r['reused_steps']}); a reuse-{rep.get('reuse', 4)} cycle "
          f"{r['cycle_s']:.2f} s a step, {r['gain']:.2f}x the steps per hour of fresh batches only")


if __name__ == "__main__":
    main()
