"""Training: ``python -m csr train --config csr/configs/NAME.yaml [--resume]``.

A config is YAML with ``{name, args}`` model specs (see ``csr/configs``). Steps, not epochs: the
batch of step ``k`` depends only on ``(seed, k)``, so a resumed run continues the exact curve of
an uninterrupted one. Checkpoints (``<out>/last.pt``: model, optimiser, EMA, RNG, step) are written
atomically; the best EMA weights by validation PSNR go to ``<out>/best.safetensors`` (decoder only
when the config names an ``encoder_from``), which ``--ship`` copies into ``csr/weights/`` when
it beats the shipped file, and those at the schedule's last step to ``<out>/final.safetensors``. Under ``torchrun`` each process takes its share of every batch.
``<out>/log.csv`` has a row per step: ``step, time_s`` (wall time spent training, validation
excluded), ``loss, lr, val_psnr`` (Set5 x4 of the EMA weights by default, at ``val.every``: a step count, or
``{from_step: every}``), and a column per ``val.monitor`` entry (``{dataset, scale, limit, every}``: sets
that are watched, for example the part of Urban100 a model lags on, but never pick or ship weights).
``init_from`` (a zoo name or a checkpoint path) loads the weights whose names start with one of
``init_prefixes`` (default: the encoder's) before step 0, or from each ``{from, prefixes}`` of a list
in turn (``deepen: {MLP_PREFIX: N}`` there adds N identity hidden layers to a trained MLP,
``widen_basis: true`` more frequencies to a trained LTE); parameters
under ``freeze`` stay fixed, and ``optimizer.lr_mult: {PREFIX: FACTOR}`` scales a part's learning rate.
``data``: ``{dirs, patch, scale_min, scale_max, sample_q}`` as LIIF's sampler, and ``synthetic``: the
fraction of crops drawn from procedural structured scenes instead of photos (``csr/data/synthetic.py``);
``exclude``: file-name patterns left out of ``dirs``.
``distill: {teacher, weight, gt_weight, self_ensemble}`` adds ``weight`` x L1 to a zoo model's
outputs at the same queries to ``gt_weight`` (default 1) x L1 to the ground truth.
``loss: l1`` (the default, as LIIF and LTE train) or ``mse``, the squared error that PSNR measures,
for both terms.
With a frozen encoder and/or a teacher, ``replay: {slots, reuse}`` trains on each batch and its
frozen outputs (the encoder's features, the teacher's targets) ``reuse`` times
(``csr/data/replay.py``), still a function of the step alone; ``features: false`` stores only the
targets and reruns the frozen encoder at every step (less disk: 9 MB a slot for EDSR-baseline at batch 16).
"""
from __future__ import annotations

import copy
import csv
import json
import math
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from . import dist
from .data.replay import BatchReplay
from .data.train import RandomScaleSR
from .io import atomic_write
from .models.lte import widen_basis
from .models.mlp import deepen
from .registry import make, read_checkpoint, save_checkpoint

LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}   # config ``loss``: per-query error to the targets


def load_config(path) -> dict:
    with open(path) as f:
        cfg = yaml.safe_load(f)
    for key in ("model", "data", "steps", "out"):
        if key not in cfg:
            raise ValueError(f"config {path} has no '{key}'")
    return cfg


def lr_at(step: int, cfg: dict) -> float:
    """Linear warm-up, then cosine to ``min_lr`` (or constant steps down by ``gamma`` at ``milestones``)."""
    opt = cfg.get("optimizer", {})
    base, warm, total = opt.get("lr", 4e-4), opt.get("warmup", 0), cfg["steps"]
    if step < warm:
        return base * (step + 1) / warm
    if opt.get("schedule", "cosine") == "step":
        return base * opt.get("gamma", 0.5) ** sum(step >= m for m in opt.get("milestones", []))
    t = min(1.0, (step - warm) / max(1, total - warm))
    lo = opt.get("min_lr", base * 0.01)
    return lo + 0.5 * (base - lo) * (1 + math.cos(math.pi * t))


def val_due(step: int, cfg: dict, every=None) -> bool:
    """Whether ``step`` validates: every ``val.every`` steps (default 500; ``every`` overrides it)
    and at the last step. ``every`` may be ``{from_step: every, ...}`` (from step 0): dense early,
    sparse later."""
    every = every or cfg.get("val", {}).get("every", 500)
    if isinstance(every, dict):
        plan = sorted((int(k), int(v)) for k, v in every.items())
        every = next((v for k, v in reversed(plan) if k <= step), plan[0][1])
    return step == cfg["steps"] or step % int(every) == 0


def _batch(ds: RandomScaleSR, step: int, batch: int, rank: int, world: int, seed: int):
    idx = np.random.default_rng([seed, 7919, step]).integers(0, len(ds), batch)
    ds.set_epoch(step)
    items = [ds[int(i)] for i in idx[rank::world]]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def init_sources(cfg: dict) -> list[dict]:
    """``init_from`` as ``[{from, prefixes, deepen, widen_basis}, ...]``: one source (with
    ``init_prefixes``), or a list of such entries applied in order (a later one overrides what it
    shares). ``deepen: {MLP_PREFIX: N}`` inserts N identity hidden layers before that MLP's output
    layer (:func:`csr.models.mlp.deepen`), ``widen_basis: true`` embeds a trained LTE's frequencies
    in the config's wider one (:func:`csr.models.lte.widen_basis`): either way a bigger decoder that
    starts as the source's function."""
    init = cfg.get("init_from")
    if not init:
        return []
    entries = init if isinstance(init, list) else [{"from": init, "prefixes": cfg.get("init_prefixes")}]
    return [{"from": i["from"], "prefixes": tuple(i.get("prefixes") or ["encoder."]),
             "deepen": dict(i.get("deepen", {})), "widen_basis": bool(i.get("widen_basis", False))}
            for i in entries]


def build(cfg: dict) -> torch.nn.Module:
    from .zoo import read_full
    model = make(cfg["model"])
    for src in init_sources(cfg):
        init, prefixes = src["from"], src["prefixes"]
        _, sd, _ = read_full(init, download=cfg.get("download"))   # a zoo name or a checkpoint path
        for mlp_prefix, extra in src["deepen"].items():
            sd = deepen(sd, mlp_prefix, extra)
        if src["widen_basis"]:
            sd = widen_basis(sd, model.state_dict())
        picked = {k: v for k, v in sd.items() if k.startswith(prefixes)}
        if not picked:
            raise ValueError(f"init_from {init}: no weights start with {', '.join(prefixes)}")
        missing = model.load_state_dict(picked, strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"init_from {init}: unexpected keys {missing.unexpected_keys[:5]}")
    for prefix in cfg.get("freeze", []):
        for name, p in model.named_parameters():
            if name.startswith(prefix):
                p.requires_grad_(False)
    return model


def param_groups(model: torch.nn.Module, lr_mult: dict) -> list[dict]:
    """The trainable parameters as optimiser groups: ``optimizer.lr_mult: {PREFIX: FACTOR}`` scales
    the learning rate of the parameters whose names start with ``PREFIX`` (the first match wins;
    the rest keep factor 1), for example LTE's frequency estimator (``freq.``)."""
    groups: dict[float, list] = {}
    used = set()
    for name, p in model.named_parameters():
        if p.requires_grad:
            prefix = next((k for k in lr_mult if name.startswith(k)), None)
            used.add(prefix)
            groups.setdefault(float(lr_mult[prefix]) if prefix else 1.0, []).append(p)
    unused = set(lr_mult) - used
    if unused:
        raise ValueError(f"optimizer.lr_mult: {sorted(unused)} match no trainable parameter")
    return [{"params": ps, "lr_mult": m} for m, ps in groups.items()]


def validate(model, cfg: dict, spec: dict | None = None) -> float:
    """Mean PSNR of ``model`` on ``spec`` (default ``cfg["val"]``): ``{dataset, scale, limit}``."""
    from .evaluation import evaluate
    v = cfg.get("val", {}) if spec is None else spec
    r = evaluate(model, v.get("dataset", "Set5"), [v.get("scale", 4)], metrics=("psnr",),
                 root=cfg.get("data_root"), device="cpu" if not torch.cuda.is_available() else "auto",
                 progress=False, limit=v.get("limit"))
    return next(iter(r["results"].values()))["psnr"]


def train(cfg: dict, resume: bool = False, minutes: float | None = None, ship: bool = False,
          stop_at: int | None = None) -> dict:
    """Run (or resume) a config; stop at ``cfg["steps"]``, after ``minutes`` more of training
    (validation not counted), or at step ``stop_at`` (the schedule still follows ``cfg["steps"]``,
    so a later resume continues it)."""
    rank, world, device = dist.init()
    out = Path(cfg["out"])
    seed = cfg.get("seed", 0)
    torch.manual_seed(seed)
    model = build(cfg).to(device)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt_cfg = cfg.get("optimizer", {})
    groups = param_groups(model, opt_cfg.get("lr_mult", {}))
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=opt_cfg.get("lr", 4e-4), weight_decay=opt_cfg.get("weight_decay", 0.0),
                            betas=tuple(opt_cfg.get("betas", (0.9, 0.999))))
    step, best, t_used = 0, -math.inf, 0.0
    ckpt = out / "last.pt"
    if resume and ckpt.is_file():
        st = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(st["model"]), ema.load_state_dict(st["ema"]), opt.load_state_dict(st["opt"])
        step, best, t_used = st["step"], st["best"], st["time"]
        torch.set_rng_state(st["rng"])
    ddp = dist.wrap(model, device)
    data = cfg["data"]
    ds = RandomScaleSR(data["dirs"], root=cfg.get("data_root"), patch=data.get("patch", 48),
                       scale_min=data.get("scale_min", 1.0), scale_max=data.get("scale_max", 4.0),
                       sample_q=data.get("sample_q", 2304), seed=seed,
                       synthetic=data.get("synthetic", 0.0), exclude=data.get("exclude", ()))
    teacher, distill_w, gt_w = None, 0.0, 1.0
    if cfg.get("distill"):  # a trained model's outputs at the same queries are free extra targets
        from .zoo import create_model
        teacher = create_model(cfg["distill"]["teacher"], device=device).requires_grad_(False)
        distill_w = cfg["distill"].get("weight", 1.0)
        gt_w = cfg["distill"].get("gt_weight", 1.0)   # 0: the teacher's outputs are the only target
        if not (distill_w >= 0 and gt_w >= 0 and distill_w + gt_w > 0):
            raise ValueError(f"distill weight {distill_w!r} and gt_weight {gt_w!r} must be >= 0, not both 0")
    distill_se = bool(cfg.get("distill", {}).get("self_ensemble", False))
    crit = LOSSES.get(cfg.get("loss", "l1"))
    if crit is None:
        raise ValueError(f"loss {cfg.get('loss')!r} is not one of {sorted(LOSSES)}")
    keep_feat = (cfg.get("replay") or {}).get("features", True)   # false: rerun the encoder each step
    own_feat = keep_feat and _frozen_encoder(model)
    shared = own_feat and _shares_frozen_encoder(model, teacher)
    amp = dist.choose_precision(cfg.get("precision", "auto"), device)
    log = {"precision": str(amp or "fp32"), "device": str(device), "world": world,
           "cpu_native_bf16": dist.cpu_has_native_bf16(), "threads": torch.get_num_threads(),
           "replay": cfg.get("replay")}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        print("train:", json.dumps(log), flush=True)
        _truncate_log(out / "log.csv", step)   # rows past the checkpoint (or all, from 0) are redone
    ctx = torch.autocast(device.type, dtype=amp) if amp else nullcontext()

    def frozen_batch(g: int) -> dict:
        """Generated batch ``g`` with what the networks that do not learn make of it."""
        b = {k: v.to(device) for k, v in _batch(ds, g, cfg.get("batch_size", 16), rank, world, seed).items()}
        with torch.no_grad(), ctx:
            if own_feat:  # a frozen encoder's features are frozen work too (the teacher's, if shared)
                b["feat"] = model.encoder(model.normalise(b["lr"])).float()
            if teacher is not None:
                b["target"] = teacher_targets(teacher, b, views=8 if distill_se else 1,
                                              feat=b["feat"] if shared else None)
        return b

    rep = cfg.get("replay")
    key = {k: cfg.get(k) for k in ("data", "batch_size", "seed", "distill", "init_from", "freeze")}
    key.update(world=world, precision=str(amp), data_root=str(cfg.get("data_root")))
    batch_at = (BatchReplay(out / "replay" / f"rank{rank}", frozen_batch, rep.get("slots", 256),
                            rep.get("reuse", 4), key, device) if rep else frozen_batch)
    ema_decay, clip = cfg.get("ema", 0.999), cfg.get("grad_clip", 0.0)
    save_every = cfg.get("save_every", 100)
    budget = t_used + 60 * minutes if minutes else math.inf   # in training seconds (validation excluded)
    saved = step

    def save(at: int):
        nonlocal saved
        state = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                 "step": at, "best": best, "time": time.time() - t0, "rng": torch.get_rng_state()}
        atomic_write(ckpt, lambda tmp: torch.save(state, tmp))
        saved = at

    def monitor_into(row: dict, due: list):
        """PSNR of the EMA weights on the ``val.monitor`` sets due, into their columns of ``row``:
        watched, never used to pick or ship weights; not training time either."""
        nonlocal t0
        t_val = time.time()
        for m in due:
            row[_monitor_column(m)] = round(validate(ema, cfg, m), 4)
        t0 += time.time() - t_val

    def validate_into(row: dict):
        """Validate the EMA weights into ``row``; validation time is not training time."""
        nonlocal t0, best, validated, final_val
        t_val = time.time()
        row["val_psnr"] = final_val = round(validate(ema, cfg), 4)
        t0 += time.time() - t_val
        validated = row["step"]
        if row["val_psnr"] > best:
            best = row["val_psnr"]
            export(ema, cfg, out / "best.safetensors", val_psnr=best, step=row["step"], hours=row["time_s"] / 3600)

    validated = final_val = None
    monitors = cfg.get("val", {}).get("monitor", [])
    if cfg.get("batch_size", 16) % world:
        raise ValueError(f"batch_size {cfg.get('batch_size', 16)} is not divisible by {world} processes")
    bar = tqdm(total=cfg["steps"], initial=step, disable=rank != 0, desc=out.name, unit="step",
               mininterval=cfg.get("progress_interval", 1.0))
    t0 = time.time() - t_used
    first, last = step, min(cfg["steps"], stop_at or cfg["steps"])
    while step < last and not dist.any_rank(rank == 0 and time.time() - t0 >= budget):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg) * g.get("lr_mult", 1.0)
        b = batch_at(step)
        with ctx:
            pred = ddp(b["lr"], b["coord"], b["cell"], feat=b.get("feat"))
        loss = gt_w * crit(pred.float(), b["gt"])
        if teacher is not None:
            loss = loss + distill_w * crit(pred.float(), b["target"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        with torch.no_grad():
            d = min(ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr_at(step - 1, cfg):.2e}")
        if rank != 0:
            continue
        row = {"step": step, "time_s": round(time.time() - t0, 1), "loss": round(loss.item(), 5),
               "lr": lr_at(step - 1, cfg), "val_psnr": "", **dict.fromkeys(map(_monitor_column, monitors), "")}
        due = [m for m in monitors if val_due(step, cfg, m.get("every"))]
        if due:
            monitor_into(row, due)
        if val_due(step, cfg):
            validate_into(row)
        _log_row(out / "log.csv", row)
        if step % save_every == 0 or step == cfg["steps"] or row["val_psnr"] != "" or due:
            save(step)
    bar.close()
    if rank == 0 and step > 0 and validated != step and time.time() - t0 >= budget:
        # stopped by the time budget between validations: measure where it stopped, so a budgeted
        # run always ends with a validation (curves compared at equal time need it)
        row = {"step": step, "time_s": round(time.time() - t0, 1), "loss": "", "lr": lr_at(step - 1, cfg),
               "val_psnr": "", **dict.fromkeys(map(_monitor_column, monitors), "")}
        validate_into(row)
        _log_row(out / "log.csv", row)
        save(step)
    if rank == 0 and saved != step:  # stopped by stop_at or the time budget: keep the progress
        save(step)
    if rank == 0 and step == cfg["steps"] > first:   # reached the end of the schedule: its EMA weights,
        # whatever validation picked, as a start for a later round (init_from: runs/NAME/final.safetensors)
        at_end = {"val_psnr": final_val} if validated == step else {}
        export(ema, cfg, out / "final.safetensors", step=step, hours=(time.time() - t0) / 3600, **at_end)
    if rep and step == cfg["steps"]:
        batch_at.clear()
    if rank == 0 and ship:
        ship_weights(cfg, out / "best.safetensors")
    dist.cleanup()
    return {"step": step, "best_val_psnr": best, **log}


def dihedral_view(lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, t: int):
    """View ``t`` (0-7) of a query batch: ``lr`` (B, 3, H, W) transposed when ``t >= 4``, then
    flipped upside down when ``t & 1`` and left to right when ``t & 2``; ``coord`` and ``cell``
    (B, Q, 2) then name the same points of that view (pixel centres are symmetric about 0)."""
    if t >= 4:
        lr, coord, cell = lr.transpose(-2, -1), coord.flip(-1), cell.flip(-1)
    dims = [d for d, bit in ((-2, 1), (-1, 2)) if t & bit]
    if dims:
        lr = lr.flip(dims)
        coord = coord * coord.new_tensor([-1.0 if t & 1 else 1.0, -1.0 if t & 2 else 1.0])
    return lr, coord, cell


def teacher_targets(teacher, b: dict, views: int = 1, feat=None) -> torch.Tensor:
    """The teacher's RGB at the batch's queries. ``views=8``: its geometric self-ensemble, the
    mean over the 8 flips/transposes of the input, each clipped to [0, 1] as the self-ensemble
    of :func:`csr.evaluation.super_resolve` is (0.1 dB above the plain LIIF checkpoint on Set5), a
    target the student can exceed its teacher by following."""
    if views == 1:
        return teacher(b["lr"], b["coord"], b["cell"], feat=feat).float()
    total = 0
    for t in range(views):
        lr, coord, cell = dihedral_view(b["lr"], b["coord"], b["cell"], t)
        total = total + teacher(lr.contiguous(), coord, cell).float().clamp_(0, 1)
    return total / views


def _monitor_column(spec: dict) -> str:
    """log.csv column of a ``val.monitor`` entry, e.g. ``psnr_Urban100_x4`` (``_first10`` with a limit)."""
    name = f"psnr_{spec['dataset']}_x{spec['scale']:g}"
    return name + (f"_first{spec['limit']}" if spec.get("limit") else "")


def _frozen_encoder(model) -> bool:
    """True when ``model`` has an encoder that does not learn: its features are then a function of
    the batch alone, made with the batch (and replayed with it) instead of at every step."""
    return (hasattr(model, "encoder") and hasattr(model, "normalise")
            and not any(p.requires_grad for p in model.encoder.parameters()))


def _shares_frozen_encoder(model, teacher) -> bool:
    """True when the student's encoder is frozen and identical to the teacher's (same weights,
    same input normalisation), so its features can be computed once for both."""
    if teacher is None or not hasattr(teacher, "encoder") or not _frozen_encoder(model):
        return False
    if (model.input_mean, model.input_std) != (teacher.input_mean, teacher.input_std):
        return False
    a, b = model.encoder.state_dict(), teacher.encoder.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k].to(a[k].device)) for k in a)


def _truncate_log(path: Path, step: int):
    """Keep the well-formed rows of ``log.csv`` up to ``step`` (atomically); none from step 0."""
    if not path.is_file():
        return
    if step == 0:
        path.unlink()
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head = rows[0] if rows else []
    keep = [head] + [r for r in rows[1:] if len(r) == len(head) and r[0].isdigit() and int(r[0]) <= step]
    if keep != rows:
        def write(tmp):
            with open(tmp, "w", newline="") as f:
                csv.writer(f).writerows(keep)
        atomic_write(path, write)


def _log_row(path: Path, row: dict):
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def export(model, cfg: dict, path: Path, **extra):
    """Write ``model`` as a self-describing checkpoint. With ``ship.encoder_from`` the encoder is left
    out and named instead, but only while it still equals that model's encoder: an encoder that was
    trained (or came from elsewhere) ships with the decoder."""
    base = cfg.get("ship", {}).get("encoder_from")
    if base and not _same_encoder(model, base, cfg.get("download")):
        base = None
    meta = {**extra, "config": cfg.get("name", Path(cfg["out"]).name)}
    if base:
        meta["encoder_from"] = base
    save_checkpoint(model, cfg["model"], path, extra=meta, drop="encoder." if base else None)  # only what is ours


def _same_encoder(model, base: str, download=None) -> bool:
    from .zoo import read_full
    theirs = {k: v for k, v in read_full(base, download=download)[1].items() if k.startswith("encoder.")}
    mine = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    return mine.keys() == theirs.keys() and all(torch.equal(v.detach().cpu(), theirs[k].to(v.dtype))
                                                for k, v in mine.items())


def ship_weights(cfg: dict, best: Path) -> bool:
    """Copy ``best`` into ``csr/weights/<name>.safetensors`` if its validation PSNR is higher."""
    from .zoo import WEIGHTS_DIR
    name = cfg.get("ship", {}).get("name")
    if not name or not best.is_file():
        return False
    new = read_checkpoint(best)[2].get("val_psnr", -math.inf)
    dest = WEIGHTS_DIR / f"{name}.safetensors"
    old = read_checkpoint(dest)[2].get("val_psnr", -math.inf) if dest.is_file() else -math.inf
    if new <= old:
        print(f"ship: kept {dest.name} (val {old:.4f} dB >= new {new:.4f} dB)")
        return False
    shutil.copyfile(best, dest)
    print(f"ship: {dest} updated, val {old:.4f} -> {new:.4f} dB")
    return True
