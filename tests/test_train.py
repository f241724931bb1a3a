"""Tests for training: the LR schedule, the random-scale dataset, resume, freezing, precision, DDP."""
import csv
import math
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from csr import dist  # noqa: E402
from csr.data.train import RandomScaleSR  # noqa: E402
from csr.registry import read_checkpoint  # noqa: E402
from csr.train import build, init_sources, load_config, lr_at, train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(tmp_path, data_root, name="run", steps=6, **over):
    cfg = {
        "name": name,
        "model": {"name": "liif", "args": {
            "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8}},
            "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16]}}}},
        "data": {"dirs": ["train/T91"], "patch": 16, "scale_min": 1.0, "scale_max": 4.0, "sample_q": 32},
        "batch_size": 2,
        "steps": steps,
        "optimizer": {"lr": 1e-3, "warmup": 2, "schedule": "cosine", "min_lr": 1e-5},
        "ema": 0.9,
        "grad_clip": 1.0,
        "precision": "fp32",
        "val": {"dataset": "Set5", "scale": 4, "limit": 1, "every": 1000},
        "seed": 0,
        "data_root": str(data_root),
        "out": str(tmp_path / name),
    }
    cfg.update(over)
    return cfg


def write_cfg(cfg, path):
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def log_rows(out):
    with open(os.path.join(out, "log.csv"), newline="") as f:
        return list(csv.DictReader(f))


def last_state(out):
    return torch.load(os.path.join(out, "last.pt"), map_location="cpu", weights_only=True)


# ------------------------------------------------------------------ schedule

def test_lr_warmup_and_cosine():
    cfg = {"steps": 110, "optimizer": {"lr": 1e-3, "warmup": 10, "min_lr": 1e-5}}
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(4, cfg) == pytest.approx(5e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)          # cosine starts at the base rate
    assert lr_at(60, cfg) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(110, cfg) == pytest.approx(1e-5)         # ... and ends at min_lr
    assert lr_at(500, cfg) == pytest.approx(1e-5)         # never below it
    lrs = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    warm = [lr_at(s, cfg) for s in range(10)]
    assert all(a < b for a, b in zip(warm, warm[1:]))


def test_lr_defaults():
    cfg = {"steps": 100}
    assert lr_at(0, cfg) == pytest.approx(4e-4)           # no warm-up by default
    assert lr_at(100, cfg) == pytest.approx(4e-6)         # min_lr = 1% of the base


def test_lr_step_schedule():
    cfg = {"steps": 100, "optimizer": {"lr": 1e-3, "schedule": "step", "milestones": [20, 50], "gamma": 0.1}}
    assert lr_at(0, cfg) == pytest.approx(1e-3)
    assert lr_at(19, cfg) == pytest.approx(1e-3)
    assert lr_at(20, cfg) == pytest.approx(1e-4)
    assert lr_at(49, cfg) == pytest.approx(1e-4)
    assert lr_at(50, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-5)
    cfg["optimizer"]["warmup"] = 5
    assert lr_at(0, cfg) == pytest.approx(2e-4)
    assert lr_at(5, cfg) == pytest.approx(1e-3)


# ------------------------------------------------------------------ dataset

@pytest.fixture(scope="module")
def t91(data_root):
    return {seed: RandomScaleSR(["train/T91"], root=data_root, patch=16, sample_q=32, seed=seed)
            for seed in (0, 1)}


def _equal_items(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_dataset_exclude_holds_images_out(data_root, t91):
    """``exclude`` drops exactly the files whose names match; excluding everything is an error
    that names the patterns."""
    from csr.data.benchmark import data_root as resolve, list_images
    names = [p.name for p in list_images(resolve(data_root) / "train/T91")]
    held = RandomScaleSR(["train/T91"], root=data_root, patch=16, sample_q=32, exclude=[names[0], "t2*"])
    kept = [n for n in names if n != names[0] and not n.startswith("t2")]
    assert 0 < len(held.images) == len(kept) < len(t91[0].images)
    with pytest.raises(FileNotFoundError, match=r"outside \['\*'\]"):
        RandomScaleSR(["train/T91"], root=data_root, patch=16, exclude="*")


def test_dataset_deterministic(t91):
    ds = t91[0]
    ds.set_epoch(3)
    a, a2 = ds[5], ds[5]
    assert _equal_items(a, a2)
    ds.set_epoch(4)
    assert not _equal_items(a, ds[5])
    ds.set_epoch(3)
    assert _equal_items(a, ds[5])
    assert not _equal_items(a, ds[6])
    other = t91[1]
    other.set_epoch(3)
    assert not _equal_items(a, other[5])


def test_dataset_shapes_and_ranges(t91):
    ds = t91[0]
    assert len(ds) > 0
    for i in range(4):
        ds.set_epoch(i)
        it = ds[i]
        assert it["lr"].shape == (3, 16, 16)
        assert it["coord"].shape == (32, 2) and it["cell"].shape == (32, 2) and it["gt"].shape == (32, 3)
        assert it["coord"].abs().max() <= 1
        assert 0 <= it["lr"].min() and it["lr"].max() <= 1
        assert 0 <= it["gt"].min() and it["gt"].max() <= 1
        # one square crop: the same cell for every query, at most x4 (2 / (16 * 4) per axis)
        assert torch.all(it["cell"] == it["cell"][0])
        assert it["cell"][0, 0] == it["cell"][0, 1]
        assert 2 / (16 * 4) - 1e-6 <= it["cell"][0, 0] <= 2 / 16 + 1e-6
        # distinct samples, on the HR pixel-centre grid of that cell
        assert len({tuple(c.tolist()) for c in it["coord"]}) == 32
        n = round(2 / it["cell"][0, 0].item())
        idx = ((it["coord"] + 1) * n - 1) / 2
        assert torch.allclose(idx, idx.round(), atol=1e-4)


def test_dataset_scale_one_gt_matches_lr(data_root):
    """At scale 1 the LR patch is the HR crop, so each sampled gt is the LR pixel at its coord."""
    ds = RandomScaleSR(["train/T91"], root=data_root, patch=16, scale_min=1.0, scale_max=1.0,
                       sample_q=None, seed=0)
    it = ds[0]
    assert it["coord"].shape == (256, 2) and it["gt"].shape == (256, 3)
    assert torch.allclose(it["gt"].view(16, 16, 3).permute(2, 0, 1), it["lr"], atol=1 / 255 + 1e-6)


# ------------------------------------------------------------------ the trainer

def test_load_config_requires_keys(tmp_path, data_root):
    cfg = tiny_cfg(tmp_path, data_root)
    assert load_config(write_cfg(cfg, tmp_path / "ok.yaml"))["steps"] == 6
    del cfg["out"]
    with pytest.raises(ValueError, match="out"):
        load_config(write_cfg(cfg, tmp_path / "bad.yaml"))


def test_resume_is_exact(tmp_path, data_root):
    """6 steps straight == 3 steps (stop_at, same cosine schedule) + resume to 6."""
    cfg_a = tiny_cfg(tmp_path, data_root, name="a", save_every=3)
    ra = train(cfg_a)
    cfg_b = tiny_cfg(tmp_path, data_root, name="b", save_every=3)
    rb = train(cfg_b, stop_at=3)
    assert rb["step"] == 3
    assert last_state(cfg_b["out"])["step"] == 3
    rb = train(cfg_b, resume=True)
    assert ra["step"] == rb["step"] == 6
    sa, sb = last_state(cfg_a["out"]), last_state(cfg_b["out"])
    assert sa["step"] == sb["step"] == 6
    for part in ("model", "ema"):
        for k, v in sa[part].items():
            assert torch.equal(v, sb[part][k]), (part, k, (v - sb[part][k]).abs().max())
    rows_a, rows_b = log_rows(cfg_a["out"]), log_rows(cfg_b["out"])
    assert [r["step"] for r in rows_b] == [str(s) for s in range(1, 7)]
    assert [(r["loss"], r["lr"], r["val_psnr"]) for r in rows_a] == [(r["loss"], r["lr"], r["val_psnr"]) for r in rows_b]
    assert rows_a[-1]["val_psnr"] != ""   # validated at the last step
    assert ra["best_val_psnr"] == rb["best_val_psnr"]
    assert (tmp_path / "a" / "best.safetensors").is_file()
    for run, st in (("a", sa), ("b", sb)):   # the last step's EMA weights, also after a resume
        _, final, extra = read_checkpoint(tmp_path / run / "final.safetensors")
        assert extra["step"] == 6 and extra["val_psnr"] == float(rows_a[-1]["val_psnr"])
        assert all(torch.equal(v, st["ema"][k]) for k, v in final.items())


def test_cli_train_overrides(tmp_path, data_root, capsys):
    """`csr train --config C --out D --steps N --seed S` is the config with those keys replaced:
    the same losses as train() on the edited config; another seed gives another curve."""
    from csr.cli import main
    path = write_cfg(tiny_cfg(tmp_path, data_root, steps=50), tmp_path / "c.yaml")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "cli"), "--steps", "3",
                 "--seed", "4"]) == 0
    train(tiny_cfg(tmp_path, data_root, name="direct", steps=3, seed=4))
    train(tiny_cfg(tmp_path, data_root, name="seed0", steps=3))
    cli, direct, seed0 = (log_rows(tmp_path / n) for n in ("cli", "direct", "seed0"))
    assert len(cli) == 3 and [r["loss"] for r in cli] == [r["loss"] for r in direct]
    assert [r["loss"] for r in cli] != [r["loss"] for r in seed0]
    assert last_state(tmp_path / "cli")["step"] == 3


def test_stop_at_saves_a_checkpoint(tmp_path, data_root):
    cfg = tiny_cfg(tmp_path, data_root, name="s", save_every=100)
    assert train(cfg, stop_at=3)["step"] == 3
    assert (tmp_path / "s" / "last.pt").is_file() and last_state(cfg["out"])["step"] == 3
    train(cfg, resume=True)
    assert [r["step"] for r in log_rows(cfg["out"])] == [str(s) for s in range(1, 7)]


def test_resume_drops_log_rows_after_the_checkpoint(tmp_path, data_root):
    """A run killed between checkpoints logged steps it will do again: resume drops them."""
    cfg = tiny_cfg(tmp_path, data_root, name="k", save_every=100)
    train(cfg, stop_at=3)
    log = tmp_path / "k" / "log.csv"
    rows = log.read_text().splitlines()
    # lost steps 4-5, a blank line and a row cut short by the kill
    log.write_text("\n".join(rows + ["4,9.9,0.5,0.001,", "", "5,9.9,0.5,0.001,", "6,9"]) + "\n")
    train(cfg, resume=True)
    got = log_rows(cfg["out"])
    assert [r["step"] for r in got] == [str(s) for s in range(1, 7)]
    assert all(r["time_s"] != "9.9" for r in got)
    train({**cfg, "steps": 2})   # a new run (no resume) in the same folder starts a new log
    assert [r["step"] for r in log_rows(cfg["out"])] == ["1", "2"]


def test_freeze_encoder(tmp_path, data_root):
    cfg = tiny_cfg(tmp_path, data_root, name="f", steps=3, freeze=["encoder."], val={"every": 1000, "limit": 1})
    torch.manual_seed(cfg["seed"])
    init = {k: v.clone() for k, v in build(cfg).state_dict().items()}
    assert all(not p.requires_grad for n, p in build(cfg).named_parameters() if n.startswith("encoder."))
    train(cfg)
    after = last_state(cfg["out"])["model"]
    assert set(after) == set(init)
    enc = [k for k in init if k.startswith("encoder.")]
    dec = [k for k in init if k.startswith("imnet.")]
    assert enc and dec
    for k in enc:
        assert torch.equal(init[k], after[k]), k
    assert any(not torch.equal(init[k], after[k]) for k in dec)


def test_lr_mult_scales_a_part_of_the_model(tmp_path, data_root):
    """``optimizer.lr_mult``: the encoder at factor 0 stays where it was while the decoder moves,
    each group's learning rate is the schedule's times its factor, and a prefix that matches
    nothing is an error."""
    opt = {"lr": 1e-3, "warmup": 0, "schedule": "cosine", "min_lr": 1e-5}
    cfg = tiny_cfg(tmp_path, data_root, name="m", steps=3, optimizer={**opt, "lr_mult": {"encoder.": 0.0, "imnet.layers.2.": 3.0}})
    torch.manual_seed(cfg["seed"])
    init = {k: v.clone() for k, v in build(cfg).state_dict().items()}
    train(cfg)
    st = last_state(cfg["out"])
    for k, v in st["model"].items():
        assert torch.equal(v, init[k]) == k.startswith("encoder."), k
    groups = sorted(st["opt"]["param_groups"], key=lambda g: g["lr_mult"])
    assert [g["lr_mult"] for g in groups] == [0.0, 1.0, 3.0]
    assert [g["lr"] for g in groups] == pytest.approx([0.0, lr_at(2, cfg), 3 * lr_at(2, cfg)])
    with pytest.raises(ValueError, match="match no trainable"):
        train(tiny_cfg(tmp_path, data_root, name="m2", steps=1, optimizer={**opt, "lr_mult": {"freq.": 10}}))


# ------------------------------------------------------------------ precision

def test_choose_precision_cpu(monkeypatch):
    cpu = torch.device("cpu")
    assert dist.choose_precision("fp32", cpu) is None
    monkeypatch.setattr(dist, "cpu_has_native_bf16", lambda: False)
    assert dist.choose_precision("auto", cpu) is None
    with pytest.raises(ValueError, match="bf16"):
        dist.choose_precision("bf16", cpu)
    monkeypatch.setattr(dist, "cpu_has_native_bf16", lambda: True)
    assert dist.choose_precision("auto", cpu) is torch.bfloat16
    assert dist.choose_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError):
        dist.choose_precision("fp16", cpu)


def test_cpu_has_native_bf16_reads_cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        assert dist.cpu_has_native_bf16() is False
        return
    want = "avx512_bf16" in flags or "amx_bf16" in flags
    assert dist.cpu_has_native_bf16() is want
    if not want:
        assert dist.choose_precision("auto", torch.device("cpu")) is None


def test_dist_alone_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    n = torch.get_num_threads()
    rank, world, device = dist.init()
    assert (rank, world) == (0, 1)
    assert torch.get_num_threads() == n
    m = torch.nn.Linear(2, 2)
    assert dist.wrap(m, device) is m


# ------------------------------------------------------------------ DDP

@pytest.mark.slow
def test_ddp_smoke(tmp_path, data_root):
    cfg = tiny_cfg(tmp_path, data_root, name="ddp", steps=4, save_every=2)
    path = write_cfg(cfg, tmp_path / "tiny.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "csr", "train", "--config", str(path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = log_rows(cfg["out"])
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert rows[-1]["val_psnr"] != ""
    assert '"world": 2' in proc.stdout
    st = last_state(cfg["out"])
    assert st["step"] == 4


@pytest.mark.parametrize("path", sorted(p for p in os.listdir(os.path.join(REPO, "csr", "configs"))
                                        if p.endswith(".yaml")))
def test_shipped_configs_are_consistent(path):
    """Every config builds, freezes what it names, and ships under a zoo name with a known encoder."""
    from csr.registry import make
    from csr.zoo import ZOO
    cfg = load_config(os.path.join(REPO, "csr", "configs", path))
    assert cfg["name"] == os.path.splitext(path)[0] and cfg["out"] == f"runs/{cfg['name']}"
    with torch.device("meta"):
        model = make(cfg["model"])
    names = [n for n, _ in model.named_parameters()]
    for src in init_sources(cfg):
        prefixes, deeper = src["prefixes"], src["deepen"]
        for prefix in deeper:
            assert any(n.startswith(prefix) for n in names), f"deepen: {prefix} matches nothing"
        for prefix in prefixes:
            assert any(n.startswith(prefix) for n in names), f"init_from: {prefix} matches nothing"
    for prefix in cfg.get("freeze", []):
        assert any(n.startswith(prefix) for n in names), f"freeze: {prefix} matches nothing"
        assert not all(n.startswith(prefix) for n in names), "everything frozen"
    ship = cfg.get("ship")
    if ship:   # under its own name, or a later stage of it (NAME-continue, NAME-gain, ...)
        assert ship["name"] in ZOO and (cfg["name"] == ship["name"] or cfg["name"].startswith(ship["name"] + "-"))
        assert ship.get("encoder_from") in (None, *[n for n in ZOO if ZOO[n][0] == "download"])
    # each source a zoo name, or the best or final weights of another config's run
    configs = [os.path.splitext(p)[0] for p in os.listdir(os.path.join(REPO, "csr", "configs"))]
    for init in (src["from"] for src in init_sources(cfg)):
        assert init in (*ZOO, *[f"runs/{c}/{w}.safetensors" for c in configs if c != cfg["name"]
                                for w in ("best", "final")])
    if cfg.get("distill"):
        assert cfg["distill"]["teacher"] in ZOO
    assert 0 < lr_at(0, cfg) <= cfg.get("optimizer", {}).get("lr", 4e-4)


def test_training_time_excludes_validation_and_a_budget_ends_validated(tmp_path, data_root, monkeypatch):
    import time

    import csr.train as T
    calls = []

    def slow_validate(model, cfg):
        calls.append(1)
        time.sleep(0.6)
        return 20.0 + len(calls)

    monkeypatch.setattr(T, "validate", slow_validate)
    cfg = tiny_cfg(tmp_path, data_root, steps=4, val={"every": 2})
    t = time.time()
    train(cfg)
    wall = time.time() - t
    rows = log_rows(cfg["out"])
    assert [r["step"] for r in rows if r["val_psnr"]] == ["2", "4"] and len(calls) == 2
    assert float(rows[-1]["time_s"]) < wall - 1.1              # the 1.2 s of validation is left out
    assert last_state(cfg["out"])["time"] == pytest.approx(float(rows[-1]["time_s"]), abs=0.2)

    # a budget of training time stops between validations: the run still ends validated, and a
    # resumed run's budget counts from the training time already spent
    cfg = tiny_cfg(tmp_path, data_root, name="budget", steps=50, val={"every": 1000})
    train(cfg, minutes=1e-6)
    rows = log_rows(cfg["out"])
    assert rows[-1]["val_psnr"] and int(rows[-1]["step"]) >= 1
    first = last_state(cfg["out"])
    assert first["step"] == int(rows[-1]["step"]) < 50 and first["time"] < 0.6
    train(cfg, resume=True, minutes=1e-6)
    second = last_state(cfg["out"])
    assert first["step"] < second["step"] < 50 and second["time"] < 1.2
    assert log_rows(cfg["out"])[-1]["val_psnr"]


def test_monitor_sets_are_logged_but_never_pick_weights(tmp_path, data_root, monkeypatch):
    """val.monitor: its own column at its own interval, not training time, and never the best."""
    import csr.train as T
    calls = []

    def fake_validate(model, cfg, spec=None):
        calls.append(None if spec is None else spec["dataset"])
        return 30.0 - len(calls) if spec is None else 99.0   # Set5 falls; the monitor would "win"

    monkeypatch.setattr(T, "validate", fake_validate)
    monitor = {"dataset": "Urban100", "scale": 4, "limit": 2, "every": 3}
    cfg = tiny_cfg(tmp_path, data_root, steps=6, val={"every": 2, "monitor": [monitor]})
    r = train(cfg)
    rows = log_rows(cfg["out"])
    col = "psnr_Urban100_x4_first2"
    assert [r["step"] for r in rows if r[col]] == ["3", "6"] and {r[col] for r in rows if r[col]} == {"99.0"}
    assert [r["step"] for r in rows if r["val_psnr"]] == ["2", "4", "6"]
    assert r["best_val_psnr"] == 29.0 and calls.count("Urban100") == 2
    assert T.read_checkpoint(tmp_path / "run" / "best.safetensors")[2]["step"] == 2
    final = T.read_checkpoint(tmp_path / "run" / "final.safetensors")[2]
    assert final["step"] == 6 and final["val_psnr"] == float(rows[-1]["val_psnr"]) == 25.0
    train(cfg, resume=True)   # a finished run resumes to a no-op and keeps a well-formed log
    assert log_rows(cfg["out"]) == rows
    assert T.read_checkpoint(tmp_path / "run" / "final.safetensors")[2] == final


# ------------------------------------------------------------------ replay of frozen work
def test_replay_schedule_and_stale_slots(tmp_path):
    from csr.data.replay import BatchReplay
    made = []

    def make(g):
        made.append(g)
        return {"x": torch.full((2,), float(g)), "noise": torch.randn(5, generator=torch.Generator().manual_seed(g))}
    rep = BatchReplay(tmp_path / "r", make, slots=3, reuse=2, key={"batch_size": 2})
    assert [rep.gen(s) for s in range(13)] == [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5, 6]
    got = [int(rep(s)["x"][0]) for s in range(9)]
    assert got == [rep.gen(s) for s in range(9)]
    assert made == [0, 1, 2, 3, 4, 5]                      # each generated batch made once, used twice
    assert torch.equal(rep(9)["noise"], make(3)["noise"])   # read back bit for bit
    (tmp_path / "r" / "slot00001.pt").write_bytes(b"torn")  # a broken slot is rebuilt, not trusted
    fresh = BatchReplay(tmp_path / "r", make, slots=3, reuse=2, key={"batch_size": 2})
    n = len(made)
    assert int(fresh(10)["x"][0]) == 4 and made[n:] == [4]
    assert int(fresh(11)["x"][0]) == 5 and made[n:] == [4]   # slot 2 on disk is current
    other = BatchReplay(tmp_path / "r", make, slots=3, reuse=2, key={"batch_size": 4})
    assert int(other(11)["x"][0]) == 5 and made[n:] == [4, 5]  # made under another key: rebuilt
    other.clear()
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="reuse"):
        BatchReplay(tmp_path / "r", make, slots=3, reuse=0)


def test_loss_mse_is_the_squared_error_of_both_terms(tmp_path, data_root, tiny_teacher):
    """``loss: mse``: the first step's loss (before any update) is the mean squared error, which
    lies between the square of the L1 run's loss and that loss (errors are below 1), for the ground
    truth and the teacher alike; an unknown loss is refused before training."""
    def first_loss(name, loss, weight, gt_weight):
        cfg = _distill_cfg(tmp_path, data_root, name, steps=2, seed=1, loss=loss)
        cfg["distill"] = {"teacher": "tiny-teacher", "weight": weight, "gt_weight": gt_weight}
        train(cfg, stop_at=1)
        return float(log_rows(tmp_path / name)[0]["loss"])
    for w, g in ((0.0, 1.0), (1.0, 0.0)):
        l1, mse = first_loss(f"l1-{w}", "l1", w, g), first_loss(f"mse-{w}", "mse", w, g)
        assert l1 ** 2 - 1e-6 <= mse < l1 - 1e-3, (w, l1, mse)
    with pytest.raises(ValueError, match="loss 'l2' is not one of"):
        train(_distill_cfg(tmp_path, data_root, "bad", steps=2, loss="l2"))


def _distill_cfg(tmp_path, data_root, name, **over):
    return tiny_cfg(tmp_path, data_root, name=name, freeze=["encoder."], save_every=3,
                    distill={"teacher": "tiny-teacher", "weight": 1.0}, **over)


@pytest.fixture
def tiny_teacher(monkeypatch, tmp_path, data_root):
    """The zoo's teacher replaced by a tiny LIIF whose encoder is the student's (same seed)."""
    import csr.zoo

    def create_model(name, device=None):
        assert name == "tiny-teacher"
        torch.manual_seed(0)
        return build(tiny_cfg(tmp_path, data_root)).to(device or "cpu").eval()
    monkeypatch.setattr(csr.zoo, "create_model", create_model)


def test_replay_reuse_one_is_the_plain_run_and_resume_is_exact(tmp_path, data_root, tiny_teacher):
    plain = train(_distill_cfg(tmp_path, data_root, "plain"))
    once = train(_distill_cfg(tmp_path, data_root, "once", replay={"slots": 2, "reuse": 1}))
    assert plain["replay"] is None and once["replay"] == {"slots": 2, "reuse": 1}
    assert [r["loss"] for r in log_rows(tmp_path / "plain")] == [r["loss"] for r in log_rows(tmp_path / "once")]
    straight = _distill_cfg(tmp_path, data_root, "twice", replay={"slots": 2, "reuse": 2})
    train(straight)
    losses = [float(r["loss"]) for r in log_rows(tmp_path / "twice")]
    assert losses != [float(r["loss"]) for r in log_rows(tmp_path / "plain")]   # batches 0, 1 came back
    assert not (tmp_path / "twice" / "replay" / "rank0").exists()   # cleared at the last step
    split = _distill_cfg(tmp_path, data_root, "split", replay={"slots": 2, "reuse": 2})
    train(split, stop_at=3)
    (tmp_path / "split" / "replay" / "rank0" / "slot00001.pt").unlink()   # e.g. a new machine: rebuilt
    train(split, resume=True)
    assert [r["loss"] for r in log_rows(tmp_path / "split")] == [r["loss"] for r in log_rows(tmp_path / "twice")]
    a, b = last_state(tmp_path / "twice"), last_state(tmp_path / "split")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_a_frozen_encoder_of_its_own_is_replayed_with_the_batch(tmp_path, data_root, monkeypatch):
    """A student whose frozen encoder is not the teacher's: its features are made with the batch
    and stored in the slots (not rerun at each step), the teacher still runs its own encoder, and
    the run is the one that reruns the encoder at every step (``replay.features: false``)."""
    import csr.train as T
    import csr.zoo

    def create_model(name, device=None):
        torch.manual_seed(1)   # another seed: the teacher's encoder differs from the student's
        return build(tiny_cfg(tmp_path, data_root)).to(device or "cpu").eval()
    monkeypatch.setattr(csr.zoo, "create_model", create_model)
    train(_distill_cfg(tmp_path, data_root, "cached", replay={"slots": 2, "reuse": 2}), stop_at=4)
    slot = torch.load(tmp_path / "cached" / "replay" / "rank0" / "slot00000.pt", weights_only=True)
    torch.manual_seed(0)    # the student's seed (tiny_cfg); the encoder is frozen, so still its weights
    student = T.build(tiny_cfg(tmp_path, data_root))
    with torch.no_grad():   # the student's features, not the teacher's
        assert torch.allclose(slot["feat"], student.encoder(student.normalise(slot["lr"])), atol=1e-6)
    train(_distill_cfg(tmp_path, data_root, "uncached", replay={"slots": 2, "reuse": 2, "features": False}),
          stop_at=4)
    a, b = last_state(tmp_path / "cached"), last_state(tmp_path / "uncached")
    for k, v in a["model"].items():
        assert torch.allclose(v, b["model"][k], atol=1e-6), k
    assert [r["loss"] for r in log_rows(tmp_path / "cached")] == [r["loss"] for r in log_rows(tmp_path / "uncached")]
    assert "feat" not in torch.load(tmp_path / "uncached" / "replay" / "rank0" / "slot00000.pt", weights_only=True)


def test_self_ensemble_teacher_targets_are_the_whole_image_self_ensemble(tmp_path, data_root):
    """distill.self_ensemble: the teacher's 8-view targets at a batch's queries equal the
    self-ensemble csr.evaluation measures with, on a non-square, anisotropic output grid; each
    wrong flip or transpose of the coordinates makes them differ."""
    import numpy as np
    from csr.evaluation import super_resolve
    from csr.models.implicit import make_cell, make_coord
    from csr.train import dihedral_view, teacher_targets
    torch.manual_seed(3)
    model = build(tiny_cfg(tmp_path, data_root)).eval()
    lr = torch.rand(1, 3, 7, 10)
    lr_u8 = (lr[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    lr = torch.from_numpy(lr_u8).permute(2, 0, 1)[None].float() / 255
    out_hw = (17, 23)
    coord = make_coord(out_hw)[None].double()
    b = {"lr": lr, "coord": coord, "cell": make_cell(coord, out_hw)}
    with torch.no_grad():
        got = teacher_targets(model, b, views=8).view(*out_hw, 3).numpy()
        plain = teacher_targets(model, b).view(*out_hw, 3).numpy()
        v_lr, v_coord, v_cell = dihedral_view(b["lr"], b["coord"], b["cell"], 5)
        assert v_lr.shape[-2:] == (10, 7) and torch.equal(v_cell[..., 0], b["cell"][..., 1])
    want = super_resolve(model, lr_u8, out_hw, self_ensemble=True)
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(plain - want).max() > 1e-3   # the ensemble is not the plain output


@pytest.mark.parametrize("path", sorted(p for p in os.listdir(os.path.join(REPO, "csr", "configs"))
                                        if p.endswith("-continue.yaml")))
def test_continue_configs_start_from_the_shipped_weights(path):
    """A -continue config loads every weight of the shipped model it trains on (none left at init)."""
    from csr.zoo import _available, read_full
    cfg = load_config(os.path.join(REPO, "csr", "configs", path))
    if not _available(cfg["init_from"]):
        pytest.skip(f"{cfg['init_from']} is not shipped/downloaded here")
    model = build(cfg)
    _, shipped, _ = read_full(cfg["init_from"])
    got = model.state_dict()
    assert set(got) == set(shipped)
    assert all(torch.equal(got[k], shipped[k]) for k in got)


def test_replay_step_times_split_fresh_and_reused(tmp_path):
    """benchmarks/replay_times.py: slots 2, reuse 3 -> 0-based steps 0,1 fresh, 2-5 reused, ..."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("replay_times", os.path.join(REPO, "benchmarks", "replay_times.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    t, rows = 0.0, ["step,time_s,loss,lr,val_psnr"]
    for s in range(1, 13):
        t += 3.0 if (s - 1) % 6 < 2 else 1.0
        rows.append(f"{s},{t},0.1,0.001,")
    rows.insert(9, "7,999,0.1,0.001,")   # a resumed run logs step 7 again: it must not count twice
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    r = mod.step_times(tmp_path / "log.csv", slots=2, reuse=3)
    assert r["fresh_s"] == 3.0 and r["reused_s"] == 1.0
    assert r["cycle_s"] == pytest.approx(5 / 3) and r["gain"] == pytest.approx(1.8)


def test_replay_times_measure_runs_both_ways(tmp_path, data_root, tiny_teacher, monkeypatch):
    """--measure: the same config run with and without stored features; times and ratios reported.
    8 steps, 2 slots, reuse 3: 0-based steps 1, 6, 7 fresh (step 0 is left out), 2-5 reused."""
    import importlib.util
    import time as _time

    import csr.train as T
    real_lr_at = T.lr_at
    monkeypatch.setattr(T, "lr_at", lambda *a: (_time.sleep(0.06), real_lr_at(*a))[1])  # log.csv has 0.1 s
    spec = importlib.util.spec_from_file_location("replay_times", os.path.join(REPO, "benchmarks", "replay_times.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = _distill_cfg(tmp_path, data_root, "m", steps=50, replay={"slots": 2, "reuse": 3})
    r = mod.measure(cfg, steps=8, slots=2)
    assert set(r["runs"]) == {"features stored", "targets only"} and r["reuse"] == 3
    for v in r["runs"].values():
        assert (v["fresh_steps"], v["reused_steps"]) == (3, 4) and v["reused_s"] > 0
    assert r["reused_speedup"] == pytest.approx(r["runs"]["targets only"]["reused_s"] / r["runs"]["features stored"]["reused_s"], rel=1e-2)
    md = mod.markdown(r)
    assert "| features stored |" in md and "| targets only |" in md and "--measure 8 --slots 2" in md
    assert not (tmp_path / "m").exists()   # measured in a temporary folder, not the config's out


def test_validation_schedule_dense_early_sparse_later():
    from csr.train import val_due
    steps = lambda every, n=20: [s for s in range(1, n + 1) if val_due(s, {"steps": n, "val": {"every": every}})]  # noqa: E731
    assert steps(5) == [5, 10, 15, 20]
    assert steps({0: 2, 8: 5}) == [2, 4, 6, 10, 15, 20]            # every 2 below step 8, then every 5
    assert steps({0: 3, 10: 4}, n=17) == [3, 6, 9, 12, 16, 17]      # the last step always validates
    assert steps({"0": 2, "6": 100}, n=9) == [2, 4, 9]             # string keys (JSON) read the same
    assert steps(1000, n=3) == [3]


def test_init_from_a_list_takes_each_part_from_its_source(tmp_path):
    """``init_from: [{from, prefixes}, ...]``: the decoder from one checkpoint and the encoder from
    another, in order; a source that matches none of its prefixes is an error, not a silent no-op."""
    from csr.registry import make, save_checkpoint
    spec = {"name": "liif", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8}},
                                     "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8]}}}}
    torch.manual_seed(1)
    a = make(spec)
    torch.manual_seed(2)
    b = make(spec)
    pa, pb = save_checkpoint(a, spec, tmp_path / "a.safetensors"), save_checkpoint(b, spec, tmp_path / "b.safetensors")
    got = build({"model": spec, "init_from": [{"from": str(pa), "prefixes": ["imnet."]},
                                              {"from": str(pb), "prefixes": ["encoder."]}]}).state_dict()
    for k, v in got.items():
        want = (a if k.startswith("imnet.") else b).state_dict()[k]
        assert torch.equal(v, want), k
    with pytest.raises(ValueError, match="no weights start with"):
        build({"model": spec, "init_from": [{"from": str(pa), "prefixes": ["decoder."]}]})


def test_init_from_deepen_keeps_the_function_and_adds_trainable_layers(tmp_path):
    """``deepen: {imnet.: 2}`` builds a decoder with two more hidden layers whose outputs equal the
    source's at once (identity layers after a ReLU), and whose new layers then learn."""
    from csr.registry import make, save_checkpoint
    enc = {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8}}
    spec = {"name": "lte", "args": {"encoder_spec": enc, "hidden_dim": 8,
                                    "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8, 8]}}}}
    deep = {"name": "lte", "args": {**spec["args"], "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8, 8, 8, 8]}}}}
    torch.manual_seed(3)
    src = make(spec)
    path = save_checkpoint(src, spec, tmp_path / "src.safetensors")
    with pytest.raises(RuntimeError):   # without deepen, the shapes do not line up
        build({"model": deep, "init_from": [{"from": str(path), "prefixes": ["encoder.", "coef.", "freq.", "phase.", "imnet."]}]})
    model = build({"model": deep, "init_from": [{"from": str(path), "prefixes": ["encoder.", "coef.", "freq.", "phase.", "imnet."],
                                                 "deepen": {"imnet.": 2}}]})
    assert torch.equal(model.state_dict()["imnet.layers.6.weight"], torch.eye(8))
    assert torch.equal(model.state_dict()["imnet.layers.8.weight"], src.state_dict()["imnet.layers.4.weight"])
    lr, coord = torch.rand(1, 3, 6, 5), torch.rand(1, 20, 2) * 2 - 1
    cell = torch.full((1, 20, 2), 2 / 12)
    with torch.no_grad():
        assert torch.allclose(model(lr, coord, cell), src(lr, coord, cell), atol=1e-6)
    loss = (model(lr, coord, cell) - 0.5).abs().mean()
    loss.backward()
    assert model.imnet.layers[6].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no MLP weights"):
        build({"model": deep, "init_from": [{"from": str(path), "prefixes": ["imnet."], "deepen": {"decoder.": 1}}]})


def test_init_from_widen_basis_keeps_the_function_and_trains_the_new_frequencies(tmp_path):
    """``widen_basis: true`` builds an LTE with more frequencies whose outputs equal the source's
    at once (the new features enter the MLP with zero weight), whose new first-layer weights get
    gradients, and which still sees every source frequency (a narrower target is refused)."""
    from csr.registry import make, save_checkpoint
    enc = {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8}}
    mlp = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8, 8]}}
    spec = {"name": "lte", "args": {"encoder_spec": enc, "hidden_dim": 8, "imnet_spec": mlp}}
    wide = {"name": "lte", "args": {**spec["args"], "hidden_dim": 14}}
    everything = ["encoder.", "coef.", "freq.", "phase.", "imnet."]
    torch.manual_seed(4)
    src = make(spec)
    path = save_checkpoint(src, spec, tmp_path / "src.safetensors")
    with pytest.raises(RuntimeError):   # without widen_basis, the shapes do not line up
        build({"model": wide, "init_from": [{"from": str(path), "prefixes": everything}]})
    model = build({"model": wide, "init_from": [{"from": str(path), "prefixes": everything, "widen_basis": True}]})
    w = model.imnet.layers[0].weight
    assert w.shape == (8, 14) and torch.equal(w[:, 4:7], torch.zeros(8, 3)) and torch.equal(w[:, 11:], torch.zeros(8, 3))
    assert torch.equal(w[:, 7:11], src.imnet.layers[0].weight[:, 4:])   # sin of the old frequencies
    lr, coord = torch.rand(1, 3, 6, 5), torch.rand(1, 20, 2) * 2 - 1
    cell = torch.full((1, 20, 2), 2 / 12)
    with torch.no_grad():
        assert torch.allclose(model(lr, coord, cell), src(lr, coord, cell), atol=1e-6)
    (model(lr, coord, cell) - 0.5).abs().mean().backward()
    assert model.imnet.layers[0].weight.grad[:, 4:7].abs().sum() > 0
    narrow = {"name": "lte", "args": {**spec["args"], "hidden_dim": 6}}
    with pytest.raises(ValueError, match="cannot hold"):
        build({"model": narrow, "init_from": [{"from": str(path), "prefixes": everything, "widen_basis": True}]})
    liif = {"name": "liif", "args": {"encoder_spec": enc, "imnet_spec": mlp}}
    with pytest.raises(ValueError, match="must be LTE decoders"):
        build({"model": liif, "init_from": [{"from": str(path), "prefixes": ["encoder."], "widen_basis": True}]})


def test_distill_gt_weight_scales_the_ground_truth_term(tmp_path, data_root, tiny_teacher):
    """The first step's loss (before any update) is gt_weight x L1(gt) + weight x L1(teacher):
    the run with both terms is the sum of the run with only the teacher and the one with only the
    ground truth; both weights 0 (or negative) is refused."""
    def first_loss(name, weight, gt_weight):
        cfg = _distill_cfg(tmp_path, data_root, name, steps=2, seed=1)   # student != teacher
        cfg["distill"] = {"teacher": "tiny-teacher", "weight": weight, "gt_weight": gt_weight}
        train(cfg, stop_at=1)
        return float(log_rows(tmp_path / name)[0]["loss"])
    both, teacher_only, gt_only = first_loss("both", 1.0, 1.0), first_loss("t", 1.0, 0.0), first_loss("g", 0.0, 1.0)
    assert teacher_only > 1e-3 and gt_only > 1e-3
    assert abs(both - (teacher_only + gt_only)) < 3e-5
    assert abs(first_loss("half", 1.0, 0.5) - (teacher_only + 0.5 * gt_only)) < 3e-5
    for w, g in ((0.0, 0.0), (1.0, -1.0)):
        cfg = _distill_cfg(tmp_path, data_root, "bad", steps=2)
        cfg["distill"] = {"teacher": "tiny-teacher", "weight": w, "gt_weight": g}
        with pytest.raises(ValueError, match="gt_weight"):
            train(cfg)
