"""A tiny registry of model classes and self-describing checkpoints.

Models are described by specs, ``{"name": ..., "args": {...}}``, the way the LIIF reference code
does it. A checkpoint is a safetensors file whose metadata holds the spec as JSON, so loading never
unpickles code: ``save_checkpoint(model, spec, path)`` / ``load_checkpoint(path)``.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from .io import atomic_write

_MODELS: dict[str, type] = {}


class UnknownName(KeyError, ValueError):
    """An unknown model or download name. A ``KeyError`` (a failed look-up) and a ``ValueError``
    (a bad argument, as every other invalid request to ``csr`` raises), printed without the
    quotes ``KeyError`` adds."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def register(name: str):
    """Class decorator: make ``name`` available to :func:`make`."""
    def deco(cls):
        if name in _MODELS and _MODELS[name] is not cls:
            raise KeyError(f"model name {name!r} is registered twice")
        _MODELS[name] = cls
        return cls
    return deco


def registered() -> list[str]:
    _import_all()
    return sorted(_MODELS)


def make(spec: dict, args: dict | None = None, load_sd: bool = False):
    """Build a module from ``{"name", "args"}``; ``args`` override the spec's own.

    With ``load_sd`` the spec's ``sd`` entry (a state dict) is loaded into the module.
    """
    _import_all()
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a model spec is a dict with 'name' and 'args', got {spec!r}")
    name = spec["name"]
    if name not in _MODELS:
        raise UnknownName(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS))}")
    kwargs = copy.deepcopy(spec.get("args") or {})
    kwargs.update(args or {})
    model = _MODELS[name](**kwargs)
    if load_sd:
        model.load_state_dict(spec["sd"])
    return model


def _import_all():
    # importing the model modules runs their @register decorators
    from . import models  # noqa: F401


# ---------------------------------------------------------------------------- checkpoints

def save_checkpoint(model, spec: dict, path, extra: dict | None = None, drop: str | None = None):
    """Write ``model``'s weights with ``spec`` (and optional ``extra`` JSON) as safetensors.

    ``drop``: leave out the parameters under this prefix (for example ``"encoder."``), for a
    checkpoint that sits on weights stored elsewhere (named in ``extra``, as ``encoder_from``).
    """
    from safetensors.torch import save_file

    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
          if drop is None or not k.startswith(drop)}
    meta = {"spec": json.dumps({"name": spec["name"], "args": spec.get("args", {})})}
    if extra:
        meta["extra"] = json.dumps(extra)
    return atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=meta))


def read_checkpoint(path, header_only: bool = False) -> tuple[dict, dict, dict]:
    """Return ``(spec, state_dict, extra)`` from a safetensors checkpoint (``header_only``: no
    tensors are read and the state dict is empty)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    sd = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        for k in [] if header_only else f.keys():
            sd[k] = f.get_tensor(k)
    if "spec" not in meta:
        raise ValueError(f"{path} is not a csr checkpoint (no 'spec' in its metadata)")
    return json.loads(meta["spec"]), sd, json.loads(meta.get("extra", "{}"))


def fingerprint(path) -> str:
    """First 12 hex digits of a sha256 over a checkpoint's tensor names and bytes, in name order:
    which weights a measurement used, the same however the file was serialised."""
    import hashlib
    import torch

    h = hashlib.sha256()
    _, sd, _ = read_checkpoint(path)
    for k in sorted(sd):
        t = sd[k].contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def load_checkpoint(path, strict: bool = True):
    """Build the model a checkpoint describes and load its weights."""
    spec, sd, _ = read_checkpoint(path)
    model = make(spec)
    model.load_state_dict(sd, strict=strict)
    return model
