"""Image quality metrics: PSNR, SSIM (MATLAB-equivalent) and LPIPS.

This is the one metric implementation of the project; it follows BasicSR's names and the usual
super-resolution conventions:

* inputs are numpy arrays HxWx3 (or HxW), float in [0, 1] or uint8 / uint16, or torch tensors
  (3,H,W) / (1,3,H,W) float in [0, 1]; both images must have exactly the same shape;
* ``crop_border`` shaves that many pixels off every side before measuring;
* ``test_y_channel`` measures the luma Y = 16 + 65.481 R + 128.553 G + 24.966 B ([0, 255] scale);
* PSNR and SSIM work on unquantised float values on the [0, 255] scale, peak 255;
* SSIM is Wang et al.'s MATLAB ``ssim_index``: 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
  K2 = 0.03, 'valid' filtering, averaged over the channels when not on Y.

LPIPS (Zhang et al. 2018, BSD-2-Clause) uses the ``lpips`` package's network with the ImageNet
backbone taken from :mod:`csr.hub` (``python -m csr download alexnet`` / ``vgg16``), because the
torchvision weight server is not reachable. torch and lpips are imported only when LPIPS is used.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np

__all__ = ["to_y", "psnr", "ssim", "lpips", "LPIPS", "compute"]

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_HUB_NAMES = {"alex": "alexnet", "vgg": "vgg16"}


def _as_float(img) -> np.ndarray:
    """HxWx3 / HxW float64 in [0, 1] from a numpy array or a torch tensor."""
    if hasattr(img, "detach"):  # a torch tensor: (3,H,W), (1,3,H,W) or (H,W)
        t = img.detach().cpu().float()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected a single image, got a batch of shape {tuple(t.shape)}")
            t = t[0]
        arr = t.numpy().astype(np.float64)
        if arr.ndim == 3:
            arr = arr.transpose(1, 2, 0)
    else:
        arr = np.asarray(img)
        if arr.dtype == np.uint8:
            arr = arr / 255.0
        elif arr.dtype == np.uint16:
            arr = arr / 65535.0
        elif np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        else:
            raise TypeError(f"unsupported image dtype {arr.dtype}: use float in [0,1], uint8 or uint16")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected an HxWx3 or HxW image, got shape {arr.shape}")
    return arr


def _pair(img, img2, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_float(img), _as_float(img2)
    if a.shape != b.shape:
        n = 2 if a.ndim == b.ndim else 3   # width x height (x channels when those differ)
        fmt = lambda s: "x".join(str(d) for d in (s[1], s[0], *s[2:n]))  # noqa: E731
        raise ValueError(f"images differ in size: {fmt(a.shape)} vs {fmt(b.shape)} (width x height)")
    c = int(crop_border)
    if c < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if c:
        if a.shape[0] <= 2 * c or a.shape[1] <= 2 * c:
            raise ValueError(f"crop_border={c} leaves nothing of a {a.shape[1]}x{a.shape[0]} image")
        a, b = a[c:-c, c:-c], b[c:-c, c:-c]
    return a, b


def to_y(img: np.ndarray) -> np.ndarray:
    """Luma of an HxWx3 RGB float image in [0, 1], as HxW float64 on the [0, 255] scale (16..235)."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"to_y expects an HxWx3 RGB image, got shape {img.shape}")
    return img @ _Y_WEIGHTS + 16.0


def _prepare(img, img2, crop_border: int, test_y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both images on the [0, 255] float scale, cropped, as Y if asked (grey images stay grey)."""
    a, b = _pair(img, img2, crop_border)
    if test_y_channel and a.ndim == 3:
        return to_y(a), to_y(b)
    return a * 255.0, b * 255.0


def psnr(img, img2, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """PSNR in dB with peak 255 on unquantised values; ``inf`` for identical images."""
    a, b = _prepare(img, img2, crop_border, test_y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(255.0 ** 2 / mse)


def _gaussian(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()  # outer(g, g) is MATLAB's fspecial('gaussian', 11, 1.5)


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """MATLAB filter2(outer(g, g), x, 'valid') for a symmetric separable kernel."""
    n = len(g)
    h, w = x.shape[0] - n + 1, x.shape[1] - n + 1
    rows = sum(g[k] * x[k:k + h, :] for k in range(n))
    return sum(g[k] * rows[:, k:k + w] for k in range(n))


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a ** 2
    var_b = _filter_valid(b * b, g) - mu_b ** 2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim(img, img2, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """Mean SSIM (MATLAB ``ssim_index`` equivalent), averaged over channels when not on Y."""
    a, b = _prepare(img, img2, crop_border, test_y_channel)
    if a.shape[0] < 11 or a.shape[1] < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels, got {a.shape[1]}x{a.shape[0]}")
    if a.ndim == 2:
        return _ssim_channel(a, b)
    return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))


# the smallest side each LPIPS backbone's pooling leaves a feature map for (found by trying)
LPIPS_MIN_SIDE = {"alex": 31, "vgg": 16}


class LPIPS:
    """LPIPS v0.1 (``net`` 'alex' or 'vgg') on one device, backbone weights from :mod:`csr.hub`.

    ``LPIPS(net)(img, img2)`` returns the spatially averaged distance of two images;
    ``.batch(x, y)`` takes (N,3,H,W) tensors in [0, 1] and returns a tensor of N distances.
    """

    def __init__(self, net: str = "alex", device=None):
        import torch
        import lpips as lpips_pkg
        from . import hub

        if net not in _HUB_NAMES:
            raise ValueError(f"unknown LPIPS net {net!r}; use one of {sorted(_HUB_NAMES)}")
        path = hub.weights_path(_HUB_NAMES[net])  # raises hub.WeightsMissing with the command
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.net_name, self.device = net, torch.device(device)
        with warnings.catch_warnings():  # torchvision's `pretrained=` deprecation notices
            warnings.simplefilter("ignore")
            model = lpips_pkg.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        self.model = _load_hub_weights(model, path).to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def batch(self, x, y):
        import torch

        if min(x.shape[-2:]) < LPIPS_MIN_SIDE[self.net_name]:
            h, w = x.shape[-2:]
            raise ValueError(f"LPIPS ({self.net_name}) needs images of at least {LPIPS_MIN_SIDE[self.net_name]} "
                             f"pixels a side, got {w}x{h}; leave lpips out of the metrics")
        with torch.no_grad():
            x, y = x.to(self.device, torch.float32), y.to(self.device, torch.float32)
            return self.model(x * 2 - 1, y * 2 - 1).flatten()

    def __call__(self, img, img2) -> float:
        import torch

        a, b = _pair(img, img2, 0)
        if a.ndim == 2:
            a, b = np.repeat(a[..., None], 3, 2), np.repeat(b[..., None], 3, 2)
        t = [torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1)))[None] for v in (a, b)]
        return float(self.batch(*t)[0])


def _load_hub_weights(model, path):
    """Copy torchvision-named convolutions (``features.{i}``) into ``net.slice{k}.{i}``; check the heads."""
    import torch
    from safetensors.torch import load_file

    src = load_file(str(path))
    sd = model.state_dict()
    used = set()
    for key in sd:
        if key.startswith("net.slice"):
            name = "features." + key.split(".", 2)[2]  # net.slice2.3.weight -> features.3.weight
            if name not in src:
                raise KeyError(f"{path} has no {name} (needed for {key})")
            sd[key] = src[name]
            used.add(name)
        elif m := re.fullmatch(r"lins?\.?(\d+)\.model\.1\.weight", key):  # lin0... / lins.0...
            if not torch.equal(sd[key], src[f"lin{m.group(1)}.model.1.weight"]):
                raise RuntimeError(f"LPIPS head {key} in {path} differs from the lpips package's")
    unused = {k for k in src if k.startswith("features.")} - used
    if unused:
        raise RuntimeError(f"backbone tensors of {path} not used by the lpips network: {sorted(unused)}")
    model.load_state_dict(sd, strict=True)
    return model


_CACHE: dict[tuple[str, str], LPIPS] = {}


def _get_lpips(net: str = "alex", device=None) -> LPIPS:
    if device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    key = (net, str(device))
    if key not in _CACHE:
        _CACHE[key] = LPIPS(net, device)
    return _CACHE[key]


def lpips(img, img2, net: str = "alex", device=None) -> float:
    """LPIPS distance (lower is closer); the network is built once per (net, device)."""
    return _get_lpips(net, device)(img, img2)


def compute(img, img2, crop_border: int = 0, test_y_channel: bool = True,
            metrics=("psnr", "ssim", "lpips")) -> dict:
    """The requested metrics as a dict. LPIPS is measured on RGB after the same border crop."""
    unknown = set(metrics) - {"psnr", "ssim", "lpips"}
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; known: psnr, ssim, lpips")
    out = {}
    if "psnr" in metrics:
        out["psnr"] = psnr(img, img2, crop_border, test_y_channel)
    if "ssim" in metrics:
        out["ssim"] = ssim(img, img2, crop_border, test_y_channel)
    if "lpips" in metrics:
        a, b = _pair(img, img2, crop_border)
        out["lpips"] = lpips(a, b)
    return out
