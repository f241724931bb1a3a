"""Distributed training helpers: ``torchrun`` + DDP (gloo on CPU, nccl on GPU), a no-op alone."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> tuple[int, int, torch.device]:
    """Join the process group if launched by torchrun; return ``(rank, world_size, device)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
        if world > 1:  # share the cores instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return rank, world, device


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def barrier():
    if dist.is_initialized():
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every process if ``flag`` is true on any (so all stop at the same step); alone: ``flag``."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    t = torch.tensor([float(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def cleanup():
    """Leave the process group together: a rank that tears gloo down while another still works
    (rank 0 validating, saving, shipping) can abort at exit ("terminate called without an active
    exception")."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (avx512_bf16 or AMX); on AVX2-only CPUs bf16
    autocast is emulated and 20-40x slower, so it must never be chosen by default there."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_info() -> dict:
    """What a benchmark or a training log should say about the machine it ran on."""
    import platform
    name = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name)
    except OSError:
        pass
    return {"model": name, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_has_native_bf16()}


def choose_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """``auto`` -> bf16 on CUDA or on CPUs with native bf16, else fp32 (None = no autocast)."""
    if requested == "fp32":
        return None
    if requested == "bf16":
        if device.type == "cpu" and not cpu_has_native_bf16():
            raise ValueError("bf16 was requested but this CPU has no native bf16 (avx512_bf16/AMX): "
                             "it would be many times slower than fp32")
        return torch.bfloat16
    if requested != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, not {requested!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None
