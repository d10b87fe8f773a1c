"""The HTML pages in a real headless browser: Debian's Chromium, driven by Playwright (the `browser` extra).

Each page is opened from a file:// URL: no console error, no request but the page itself (the figure is a
data: URL), the checkpoint under the mouse shows its values, the arrow keys step through the checkpoints,
and a screenshot is not blank. Skipped, saying why, only where Playwright or Chromium is not installed.
"""

from __future__ import annotations

import io
import json
import shutil

import matplotlib.image as mpimg
import pytest

import grokmon
from grokmon.results import read_results

from conftest import DATA

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install -e '.[browser]'")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no Chromium on this machine: apt-get install chromium (CI installs it)", allow_module_level=True)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def open_page(browser, path):
    """The page at `path` with what it logged and requested."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    seen = {"errors": [], "requests": []}
    page.on("console", lambda message: seen["errors"].append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    page.on("request", lambda request: seen["requests"].append(request.url))
    page.goto(path.resolve().as_uri())
    return page, seen


def hover(page, panel: int, run: int, index: int) -> str:
    """Move the mouse onto checkpoint `index` of `run` in `panel`; the tooltip's text."""
    document = json.loads(page.evaluate("document.getElementById('grokmon-hover').textContent"))
    image = page.locator("#grokmon-figure img").bounding_box()
    left, top, right, bottom = document["panels"][panel]["box"]
    u = document["runs"][run]["u"][index]
    page.mouse.move(image["x"] + (left + u * (right - left)) * image["width"],
                    image["y"] + (top + bottom) / 2 * image["height"])
    assert page.locator("#grokmon-figure .tip").is_visible()
    return page.inner_text("#grokmon-figure .tip")


def assert_clean(page, seen, path) -> None:
    assert seen["errors"] == []
    assert all(url == path.resolve().as_uri() or url.startswith("data:") for url in seen["requests"]), seen["requests"]
    pixels = mpimg.imread(io.BytesIO(page.screenshot(full_page=False)), format="png")[..., :3]
    assert pixels.std() > 0.1 and (pixels.mean(axis=-1) < 0.9).mean() > 0.05  # drawn, not one flat colour


def test_report_shows_a_checkpoints_values_under_the_mouse(browser, sample_subset, tmp_path):
    path = grokmon.report(sample_subset / "grokmon.parquet", tmp_path / "report.html")
    frame, _ = read_results(sample_subset / "grokmon.parquet")
    steps = sorted(frame["step"].unique())
    index = next(i for i, s in enumerate(steps)
                 if frame.query("step == @s and split == 'test'")["accuracy"].iloc[0] >= 0.5)
    row = frame.query("step == @steps[@index] and split == 'test'").iloc[0]
    page, seen = open_page(browser, path)
    text = hover(page, panel=0, run=0, index=index)
    assert f"step {steps[index]} · {row['checkpoint']}" in text and "phase " in text
    assert f"{row['accuracy']:.4g} ± {row['accuracy_se']:.2g}" in text
    assert "centroid_alignment" in text and "lc" in text  # every measured column, not only the panel's
    assert page.locator("#grokmon-figure .marks .dot").count() >= 4  # the checkpoint marked on the lines
    page.mouse.move(5, 5)
    assert not page.locator("#grokmon-figure .tip").is_visible()
    page.focus("#grokmon-figure")
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#grokmon-figure .tip").startswith(f"step {steps[0]} ·")
    assert_clean(page, seen, path)


def test_comparison_page_lists_every_run_at_the_mouse(browser, sample_subset, tmp_path):
    frame, _ = read_results(sample_subset / "grokmon.parquet")
    path = tmp_path / "compare.html"
    grokmon.compare([frame, DATA / "no_grok.parquet"], path, names=["grokking", "<b>control</b>"])
    page, seen = open_page(browser, path)
    last = frame["step"].nunique() - 1
    text = hover(page, panel=0, run=0, index=last)
    assert "grokking: step 5458" in text and "<b>control</b>: step" in text  # names as text, never as markup
    assert "accuracy" in text and "centroid_alignment" not in text  # several runs: the panel's metric only
    assert page.locator("#grokmon-figure .tip b").count() == 0
    assert_clean(page, seen, path)
