"""The per-query MLP used by the implicit decoders, and the product its layers are made of."""
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register

_KERNEL: dict = {}   # device type -> "conv" or "gemm", chosen once per process (rows_linear)


def _pick_kernel() -> str:
    """Time both kernels once on a typical block (4096 rows, 128 wide; about 10 ms): oneDNN's 1x1
    convolution beat MKL's GEMM about 1.7x at 64 wide and 2.5x at 256 wide on an AMD EPYC here
    (ad-hoc timing; whole upscales: benchmarks/speed.py), but which is faster depends on the CPU
    and the BLAS, so it is measured, not assumed."""
    g = torch.Generator().manual_seed(0)   # not the global generator: users' seeds stay theirs
    x, w = torch.randn(4096, 128, generator=g), torch.randn(128, 128, generator=g)
    best = {}
    with torch.autocast("cpu", enabled=False):
        for kernel in ("gemm", "conv"):
            times = []
            for _ in range(5):
                t = time.perf_counter()
                _product(x, w, None, kernel)
                times.append(time.perf_counter() - t)
            best[kernel] = min(times[1:])
    return min(best, key=best.get)


def _product(x, weight, bias, kernel):
    if kernel == "gemm":
        return F.linear(x, weight, bias)
    m, k = x.shape   # rows as the pixels of a 1 x M channels-last image: a view, both ways
    y = F.conv2d(x.view(1, m, 1, k).permute(0, 3, 1, 2), weight.view(*weight.shape, 1, 1), bias)
    return y.permute(0, 2, 3, 1).reshape(m, -1)


def rows_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` for a (M, K) block of query rows: with gradients, on CUDA or for
    float64, ``F.linear``; otherwise whichever of GEMM and a 1x1 convolution is faster on this
    CPU (``_pick_kernel``; ``$CSR_ROWS_KERNEL=gemm|conv`` forces one). The same numbers to float
    rounding."""
    if (torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype == torch.float64
            or not x.is_contiguous() or not x.shape[0]):
        return F.linear(x, weight, bias)
    kernel = os.environ.get("CSR_ROWS_KERNEL") or _KERNEL.get("cpu")
    if kernel not in (None, "gemm", "conv"):
        raise ValueError(f"CSR_ROWS_KERNEL must be gemm or conv, not {kernel!r}")
    if kernel is None:
        kernel = _KERNEL["cpu"] = _pick_kernel()
    return _product(x, weight, bias, kernel)


@register("mlp")
class MLP(nn.Module):
    """Linear/ReLU stack; ``layers`` is one Sequential, so weights are ``layers.{2i}.weight``."""

    def __init__(self, in_dim: int, out_dim: int, hidden_list):
        super().__init__()
        dims = [in_dim, *hidden_list]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], out_dim))
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x, start: int = 0):
        """Apply ``layers[start:]``; at inference, ReLUs work in place and each layer is one
        :func:`rows_linear` with its bias fused."""
        shape = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1])
        if torch.is_grad_enabled():
            h = self.layers[start:](h)
            return h.view(*shape, h.shape[-1])
        owned = False  # never modify the caller's tensor
        for layer in self.layers[start:]:
            if isinstance(layer, nn.ReLU):
                h = h.relu_() if owned else h.relu()
            else:
                h = rows_linear(h, layer.weight, layer.bias)
            owned = True
        return h.view(*shape, h.shape[-1])


def deepen(state: dict, prefix: str, extra: int) -> dict:
    """A copy of ``state`` whose MLP under ``prefix`` (``imnet.``, say) has ``extra`` more hidden
    layers, inserted before its output layer as identity maps with zero bias. The function is
    unchanged, because they follow a ReLU: ``relu(I @ h + 0) = h`` for ``h >= 0`` (Net2Net's
    deepening). The inserted layers are as wide as the last hidden layer."""
    if extra < 0:
        raise ValueError(f"deepen {prefix}: extra layers must be >= 0, not {extra}")
    head = f"{prefix}layers."
    indices = {int(k[len(head):].split(".")[0]) for k in state if k.startswith(head)}
    if not indices:
        raise ValueError(f"deepen: no MLP weights under {prefix!r}")
    last = max(indices)
    if last == 0:
        raise ValueError(f"deepen {prefix}: an MLP without hidden layers has no ReLU to follow")
    out = {k: v for k, v in state.items() if not k.startswith(f"{head}{last}.")}
    w = state[f"{head}{last}.weight"]
    for j in range(extra):
        out[f"{head}{last + 2 * j}.weight"] = torch.eye(w.shape[1], dtype=w.dtype)
        out[f"{head}{last + 2 * j}.bias"] = torch.zeros(w.shape[1], dtype=w.dtype)
    for name in ("weight", "bias"):
        if f"{head}{last}.{name}" in state:
            out[f"{head}{last + 2 * extra}.{name}"] = state[f"{head}{last}.{name}"]
    return out
