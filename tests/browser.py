"""Headless-browser helpers for tests: open an HTML page in Chromium the way a person would look at it.

Not a test module; tests import it as ``from browser import CHROMIUM, probe_images, screenshot, png_is_blank``
(pytest puts ``tests/`` on ``sys.path`` because the tests directory has no ``__init__.py``).
``make system`` installs Debian's ``chromium`` package when it is missing.
"""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

# The chromium binary (Debian's launcher script), or None when it is not installed.
CHROMIUM: str | None = shutil.which("chromium")

TIMEOUT_S = 60
PROBE_ID = "iterkd-probe"

# Runs on window `load` (every <img> has loaded or failed by then) and writes one JSON object per <img>.
_PROBE_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var out = Array.prototype.map.call(document.images, function (img) {
    var src = img.getAttribute("src") || "";
    return {alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
            naturalHeight: img.naturalHeight, width: img.width, height: img.height,
            src_prefix: src.slice(0, 30)};
  });
  var pre = document.createElement("pre");
  pre.id = "__PROBE_ID__";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
""".replace("__PROBE_ID__", PROBE_ID)


def _require_chromium() -> str:
    if CHROMIUM is None:
        raise AssertionError("chromium is not installed (run `make system`, or apt-get install chromium)")
    return CHROMIUM


def _run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        _require_chromium(),
        "--headless",
        "--no-sandbox",  # needed as root (containers, CI)
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    # its own process group, so that a timeout ends chromium's helper processes too
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise AssertionError(
            f"chromium did not finish within {TIMEOUT_S} s: {' '.join(cmd)}\nstderr tail:\n{_tail(err)}"
        ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _tail(text: str | None, n: int = 20) -> str:
    """The last n lines of chromium's stderr, less its D-Bus complaints (no bus in containers; harmless)."""
    lines = [line for line in (text or "").splitlines() if "dbus/" not in line]
    return "\n".join(lines[-n:])


def probe_images(html: Path) -> list[dict]:
    """Load `html` in headless Chromium and return, per <img> in document order, what the browser made of it.

    Each dict has: alt, complete, naturalWidth, naturalHeight (0 when the image did not decode), width, height
    (the rendered size) and src_prefix (the first 30 characters of src, e.g. ``data:image/png;base64,iVBO``).
    The page is copied into a temporary directory and the probe script injected there; `html` is not modified.
    Relative image paths are not copied, so use it on self-contained pages (images as data: URIs).
    """
    text = Path(html).read_text(encoding="utf-8")
    matches = list(re.finditer(r"</body\s*>", text, flags=re.IGNORECASE))
    at = matches[-1].start() if matches else len(text)
    probed = text[:at] + _PROBE_SCRIPT + text[at:]
    with tempfile.TemporaryDirectory(prefix="iterkd-browser-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(probed, encoding="utf-8")
        proc = _run_chromium(
            ["--virtual-time-budget=10000", "--dump-dom", page.as_uri()],  # let `load` fire before the dump
            Path(tmp) / "profile",
        )
    found = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', proc.stdout, flags=re.DOTALL)
    if found is None:
        raise AssertionError(
            f"no #{PROBE_ID} in chromium's dumped DOM of {html} (exit code {proc.returncode}); "
            f"stdout starts {proc.stdout[:200]!r}; stderr tail:\n{_tail(proc.stderr)}"
        )
    return json.loads(html_lib.unescape(found.group(1)))


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 2000) -> Path:
    """Render `html` in headless Chromium at width x height CSS pixels and save the screenshot to `png`."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="iterkd-browser-") as tmp:
        proc = _run_chromium(
            [f"--screenshot={png}", f"--window-size={width},{height}", Path(html).resolve().as_uri()],
            Path(tmp) / "profile",
        )
    if not png.is_file() or png.stat().st_size == 0:
        raise AssertionError(
            f"chromium wrote no screenshot of {html} (exit code {proc.returncode}); stderr tail:\n{_tail(proc.stderr)}"
        )
    return png


def png_is_blank(path: Path) -> bool:
    """True when the PNG has a single colour: every pixel (alpha included) equals the first."""
    import matplotlib.image  # a dependency of iterkd (its report plots); decodes through Pillow

    pixels = matplotlib.image.imread(path)  # palette images come back as RGB(A)
    return bool((pixels == pixels[0, 0]).all())
