"""The demo in a real browser: Debian's chromium driven by Playwright (never `playwright install`).

Opens the page, uploads an image, sets the scale, runs, waits for the result and saves a
screenshot to results/demo-screenshot.png. Skipped when /usr/bin/chromium is missing, except
under CI (.ci/run installs it), where that is a failure.
"""
import importlib.util
import os
import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "results" / "demo-screenshot.png"

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing under CI (.ci/run installs Debian's chromium)", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
from playwright.sync_api import expect, sync_playwright  # noqa: E402


def load_demo():
    spec = importlib.util.spec_from_file_location("csr_demo_app_browser", REPO / "demo" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    app = load_demo()
    # lazily cached examples go to a temporary folder, not to ./.gradio of the checkout
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path_factory.mktemp("examples-cache")))
        demo = app.build_app()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
               ssr_mode=False)
    try:
        yield demo.local_url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"])
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def test_upload_scale_run_screenshot(url, page):
    page.goto(url)
    page.set_input_files("#image input[type=file]", str(REPO / "demo" / "examples" / "landscape.png"))
    # the scale slider's number box; the size line under the upload follows it (96 x 72 at 3)
    box = page.locator("#scale input[type=number]")
    box.fill("3")
    box.press("Enter")
    expect(page.locator("#plan")).to_contain_text("output 288 x 216", timeout=20_000)

    page.get_by_role("button", name="Upscale", exact=True).click()
    expect(page.locator("#info")).to_contain_text("Output 288 x 216 pixels", timeout=90_000)
    after = page.locator("#result img").last
    expect(after).to_be_visible()
    assert after.evaluate("img => img.complete && img.naturalWidth") == 288  # the full-resolution result
    expect(page.locator("#download")).to_contain_text("landscape-288x216")

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_example_runs_and_is_cached(url, page):
    """Clicking an example runs it (lazy caching: the first click computes and stores it)."""
    page.goto(url)
    page.locator('[data-testid="dataset-cell-0-0"]').click()  # the first example's thumbnail
    # landscape.png is 96 x 72, its example scale 3.7: floor(355.2 + .5) x floor(266.4 + .5)
    expect(page.locator("#info")).to_contain_text("Output 355 x 266 pixels", timeout=90_000)
