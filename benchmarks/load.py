"""Load test of the demo: concurrent /upscale requests through gradio_client, loopback only.

    python benchmarks/load.py [--requests 8] [--concurrency 8] [--queue-size 4] [--size 64]
                              [--scale 4] [--model lte-edsr-baseline] [--timeout 600]

Starts ``demo/app.py`` in a subprocess on 127.0.0.1 (a free port; ``CSR_DEMO_QUEUE_SIZE`` set to
``--queue-size`` so that refusals can happen), sends one warm-up request (it pays for loading the
model), then ``--requests`` requests from ``--concurrency`` clients released at the same moment.
Reports successes, queue refusals, other errors, latency percentiles of the successes and the
server process's peak resident memory (VmHWM from /proc), prints a table and writes
results/load.md and results/load.json. Everything stops after ``--timeout`` seconds.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kb(pid: int, field: str) -> int | None:
    """A memory field of /proc/PID/status (VmHWM: peak resident set; VmRSS: current), in kB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except FileNotFoundError:
        pass
    return platform.processor() or "unknown"


def start_server(port: int, queue_size: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SSR_MODE": "False",  # one process, no node
           "CSR_DEMO_QUEUE_SIZE": str(queue_size)}
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, str(REPO / "demo" / "app.py")], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def wait_ready(proc: subprocess.Popen, url: str, deadline: float, log_path: Path) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the demo exited with code {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the demo did not answer within the time limit:\n{log_path.read_text()[-3000:]}")


def test_image(path: Path, size: int) -> str:
    """A deterministic size x size RGB image: smooth gradients with a little texture."""
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(0)
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(12 * x * y)], -1) + 0.05 * rng.standard_normal((size, size, 3))
    Image.fromarray(np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path)
    return str(path)


def percentile(values, q):
    return float(np.percentile(values, q)) if values else None


def run(args) -> dict:
    from gradio_client import Client, handle_file
    from gradio_client.utils import QueueError

    deadline = time.monotonic() + args.timeout
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    tmp = Path(tempfile.mkdtemp(prefix="csr-load-"))
    log_path = tmp / "server.log"
    image = test_image(tmp / f"in{args.size}.png", args.size)
    load_before = os.getloadavg()
    t_start = time.monotonic()
    proc = start_server(port, args.queue_size, log_path)
    try:
        wait_ready(proc, url, deadline, log_path)
        startup = time.monotonic() - t_start
        request = (handle_file(image), args.scale, args.model, 0, 0)
        clients = [Client(url, verbose=False) for _ in range(args.concurrency)]

        t0 = time.monotonic()
        clients[0].submit(*request, api_name="/upscale").result(timeout=max(1, deadline - time.monotonic()))
        warmup = time.monotonic() - t0
        rss_ready = proc_status_kb(proc.pid, "VmRSS")

        # each client takes requests i, i + c, i + 2c, ...; all start together at the barrier
        barrier = threading.Barrier(args.concurrency)
        records = []

        def worker(k: int):
            barrier.wait()
            for _ in range(k, args.requests, args.concurrency):
                left = deadline - time.monotonic()
                if left <= 0:
                    records.append({"outcome": "timeout", "seconds": None})
                    continue
                t = time.monotonic()
                job = clients[k].submit(*request, api_name="/upscale")
                model_s = None
                try:
                    info = job.result(timeout=left)[3]
                    outcome, error = "ok", None
                    found = re.search(r"in \*\*([0-9.]+) s\*\*", info)  # the page's "... in **2.97 s**"
                    model_s = float(found.group(1)) if found else None
                except QueueError as e:
                    outcome, error = "refused", str(e)
                except TimeoutError:
                    job.cancel()
                    outcome, error = "timeout", None
                except Exception as e:  # noqa: BLE001 - every other failure is counted and shown
                    outcome, error = ("refused" if "queue is full" in str(e).lower() else "error"), str(e)
                records.append({"outcome": outcome, "seconds": time.monotonic() - t, "error": error,
                                "model_s": model_s})

        t0 = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(worker, range(args.concurrency)))
        wall = time.monotonic() - t0
        peak = proc_status_kb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    ok = [r["seconds"] for r in records if r["outcome"] == "ok"]
    refused = [r["seconds"] for r in records if r["outcome"] == "refused"]
    model_s = [r["model_s"] for r in records if r.get("model_s") is not None]
    errors = sorted({r["error"] for r in records if r["outcome"] == "error"})
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python benchmarks/load.py", *sys.argv[1:]]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "loadavg_before": load_before,
                    "python": platform.python_version()},
        "settings": {"requests": args.requests, "concurrency": args.concurrency,
                     "queue_max_size": args.queue_size, "server_concurrency_limit": 1,
                     "image": f"{args.size}x{args.size} RGB PNG", "scale": args.scale,
                     "output": "{0}x{0}".format(math.floor(args.size * args.scale + 0.5)),
                     "model": args.model, "timeout_s": args.timeout},
        "startup_s": round(startup, 2),
        "warmup_s": round(warmup, 2),
        "succeeded": len(ok),
        "refused_queue_full": len(refused),
        "errors": sum(r["outcome"] == "error" for r in records),
        "timed_out": sum(r["outcome"] == "timeout" for r in records),
        "error_messages": errors,
        "latency_s": {"p50": percentile(ok, 50), "p90": percentile(ok, 90), "max": max(ok, default=None)},
        "model_s_median": percentile(model_s, 50),
        "refusal_latency_max_s": max(refused, default=None),
        "wall_s": round(wall, 2),
        "throughput_per_min": round(60 * len(ok) / wall, 2) if wall else None,
        "server_rss_mb": {"after_warmup": rss_ready and round(rss_ready / 1024, 1),
                          "peak_vmhwm": peak and round(peak / 1024, 1)},
        "latencies_ok_s": [round(s, 3) for s in ok],
    }


def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(r: dict) -> str:
    s, lat, mem = r["settings"], r["latency_s"], r["server_rss_mb"]
    header = ["requests", "concurrency", "queue max", "succeeded", "refused (queue full)", "errors",
              "timed out", "p50 s", "p90 s", "max s", "model s (median)", "wall s", "peak RSS MB"]
    row = [s["requests"], s["concurrency"], s["queue_max_size"], r["succeeded"], r["refused_queue_full"],
           r["errors"], r["timed_out"], fmt(lat["p50"]), fmt(lat["p90"]), fmt(lat["max"]),
           fmt(r["model_s_median"]), fmt(r["wall_s"]), fmt(mem["peak_vmhwm"], 1)]
    lines = [
        "# Demo load test", "",
        f"`{r['command']}` on {r['date']}: {r['machine']['cores']} cores ({r['machine']['cpu']}), "
        f"load average {r['machine']['loadavg_before'][0]:.2f} before the run (other jobs share the CPU).", "",
        f"Each request: `/upscale` of a {s['image']} at x{s['scale']:g} ({s['output']}) with "
        f"`{s['model']}`, through `gradio_client` on 127.0.0.1. The server runs one request at a time "
        f"(`default_concurrency_limit=1`) and lets {s['queue_max_size']} wait (`CSR_DEMO_QUEUE_SIZE`); "
        "more are refused at once with \"Queue is full\".", "",
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
        "| " + " | ".join(str(v) for v in row) + " |", "",
        f"Latencies are those of the successful requests, from submission (queue wait included) to "
        f"the result; \"model s\" is the upscaling time the server reports for one request. Server start (imports, loading the models) {r['startup_s']} s; the warm-up "
        f"request before the burst {r['warmup_s']} s; refusals arrived within "
        f"{fmt(r['refusal_latency_max_s'])} s. Server resident memory: {fmt(mem['after_warmup'], 1)} MB "
        f"after the warm-up, peak {fmt(mem['peak_vmhwm'], 1)} MB (VmHWM of the server process).",
    ]
    if r["error_messages"]:
        lines += ["", "Errors: " + "; ".join(r["error_messages"])]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=8, help="clients sending at the same time")
    p.add_argument("--queue-size", type=int, default=4, help="the server's queue max_size")
    p.add_argument("--size", type=int, default=64, help="side of the square test image")
    p.add_argument("--scale", type=float, default=4)
    p.add_argument("--model", default="lte-edsr-baseline")
    p.add_argument("--timeout", type=float, default=600, help="seconds for the whole run")
    p.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    args = p.parse_args(argv)
    if not 1 <= args.concurrency <= args.requests:
        p.error("need 1 <= --concurrency <= --requests")
    r = run(args)
    md = markdown(r)
    print(md)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "load.md").write_text(md)
        (RESULTS / "load.json").write_text(json.dumps(r, indent=2) + "\n")
        print(f"wrote {RESULTS / 'load.md'} and {RESULTS / 'load.json'}")


if __name__ == "__main__":
    main()
