"""The headless-browser tooling (tests/browser.py) that the report test uses to look at report.html."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure

from browser import CHROMIUM, png_is_blank, probe_images, screenshot

BROKEN_SRC = "data:image/png;base64,AAAA"


def _plot_png() -> bytes:
    """A small matplotlib plot as PNG bytes, as the report makes them."""
    fig = Figure(figsize=(2, 1.5), dpi=50)  # no pyplot: no global backend state
    fig.add_subplot().plot([0, 1, 2, 3], [0, 1, 4, 9])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        msg = "chromium is not installed (`make system` installs Debian's chromium package)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI must run the browser tests")
        pytest.skip(msg)
    return CHROMIUM


@pytest.fixture(scope="module")
def plot_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("png") / "plot.png"
    path.write_bytes(_plot_png())
    return path


@pytest.fixture(scope="module")
def page(tmp_path_factory, plot_png) -> Path:
    good = "data:image/png;base64," + base64.b64encode(plot_png.read_bytes()).decode("ascii")
    path = tmp_path_factory.mktemp("page") / "report.html"
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>probe</title></head><body>"
        "<h1>Report</h1>"
        f"<img alt='good plot' src='{good}'>"
        f"<img alt='broken &lt;plot&gt;' src='{BROKEN_SRC}'>"
        "</body></html>",
        encoding="utf-8",
    )
    return path


def test_probe_images_good_and_broken(chromium, page):
    before = page.read_text(encoding="utf-8")
    images = probe_images(page)
    assert page.read_text(encoding="utf-8") == before  # probed a copy
    assert [img["alt"] for img in images] == ["good plot", "broken <plot>"]
    good, broken = images
    assert good["complete"] is True
    assert good["naturalWidth"] > 0 and good["naturalHeight"] > 0, good
    assert good["width"] > 0 and good["height"] > 0, good
    assert good["src_prefix"] == "data:image/png;base64,iVBORw0K"
    assert broken["naturalWidth"] == 0 and broken["naturalHeight"] == 0, broken
    assert broken["src_prefix"] == BROKEN_SRC


def test_screenshot_not_blank(chromium, page, tmp_path):
    png = screenshot(page, tmp_path / "shot.png", width=400, height=300)
    assert png.read_bytes().startswith(b"\x89PNG")
    assert not png_is_blank(png)


def test_png_is_blank(plot_png, tmp_path):
    white = tmp_path / "white.png"
    matplotlib.image.imsave(white, np.ones((30, 40, 3)))
    assert png_is_blank(white)
    assert not png_is_blank(plot_png)
