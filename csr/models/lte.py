"""LTE: local texture estimator (Lee & Jin, CVPR 2022).

From the encoder's features two 3x3 convolutions estimate, per LR pixel, amplitudes (``coef``)
and 2-D frequencies (``freq``); a linear map of the cell gives a phase. A query's Fourier
features ``cos/sin(pi * (freq . rel + phase))``, weighted by the amplitudes, go through an MLP,
and the bilinearly upsampled input is added back. Cells are clipped at ``cell_clip`` (the
training scale's maximum), as the authors evaluate beyond it.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..registry import make, register
from .implicit import ImplicitSR


@register("lte")
class LTE(ImplicitSR):
    def __init__(self, encoder_spec: dict, imnet_spec: dict, hidden_dim: int = 256,
                 local_ensemble: bool = True, add_bilinear: bool = True, cell_clip: float | None = 4.0,
                 input_mean: float = 0.5, input_std: float = 0.5):
        super().__init__(encoder_spec, local_ensemble, add_bilinear, input_mean, input_std, cell_clip)
        c = self.encoder.out_dim
        self.coef = nn.Conv2d(c, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(c, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        self.imnet = make(imnet_spec, args={"in_dim": hidden_dim})

    def prepare(self, feat):
        return {"coef": self.coef(feat).flatten(2).transpose(1, 2),
                "freq": self.freq(feat).flatten(2).transpose(1, 2)}

    def decode(self, state, idx, rel, rel_cell):
        coef = self.gather(state["coef"], idx)
        freq = self.gather(state["freq"], idx)
        # frequencies come in (y, x) pairs: project the offset onto each with two strided
        # products, far cheaper on CPU than a size-2 sum over a (Q, K, 2) view
        arg = freq[..., 0::2] * rel[..., :1]
        arg = arg.addcmul_(freq[..., 1::2], rel[..., 1:]).add_(self.phase(rel_cell)).mul_(math.pi)
        if torch.is_grad_enabled():   # cos needs arg intact for its gradient
            return self.imnet(coef * torch.cat([arg.cos(), arg.sin()], dim=-1))
        return self.imnet(torch.cat([arg.cos(), arg.sin_()], dim=-1).mul_(coef))


def widen_basis(source: dict, target: dict) -> dict:
    """``target`` (a wider LTE's state: more frequencies, freshly initialised) with ``source``'s
    trained basis in place, so that the wider model computes ``source``'s function: the source's
    K frequencies, phases and amplitudes keep their places among the wider model's K', and the new
    frequencies' features enter the MLP's first layer with zero weight (their own amplitudes and
    frequencies keep their random start, so the zero weights get gradients). Features are ordered
    ``[cos of all K', sin of all K']``; frequencies are (y, x) channel pairs of ``freq``."""
    if "phase.weight" not in source or "phase.weight" not in target:
        raise ValueError("widen_basis: both the source and the model must be LTE decoders")
    k_old, k_new = source["phase.weight"].shape[0], target["phase.weight"].shape[0]
    if k_new < k_old:
        raise ValueError(f"widen_basis: {k_new} frequencies cannot hold {k_old}")
    feat_rows = [*range(k_old), *range(k_new, k_new + k_old)]   # cos_j -> j, sin_j -> k_new + j
    first = next(k for k in source if k.startswith("imnet.") and k.endswith(".weight"))
    placed = {"coef.weight": (feat_rows,), "coef.bias": (feat_rows,), "freq.weight": (slice(2 * k_old),),
              "freq.bias": (slice(2 * k_old),), "phase.weight": (slice(k_old),), first: (slice(None), feat_rows)}
    out = dict(source)   # everything else (encoder, later MLP layers) as it was
    for name, where in placed.items():
        grown = target[name].clone() if name != first else torch.zeros_like(target[name])
        grown[where] = source[name]
        out[name] = grown
    return out
