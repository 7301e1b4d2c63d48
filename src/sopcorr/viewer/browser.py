"""Drive a run's viewer in headless Chromium through Playwright (the ``dev`` extras): the
browser test (tests/test_viewer_browser.py) and ``benchmarks/bench_viewer.py`` share it.

Chromium is Debian's ``chromium`` package, launched by path (``executable_path``); Playwright's
own browser downloads are never used. Nothing here is imported by the pipeline.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["CHROMIUM_ARGS", "INSTALL_HINT", "find_chromium", "missing", "viewer_page", "ViewerPage"]

#: the launch flags: headless, no sandbox (containers, root), nothing that reaches the network
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: how to get what the browser test needs
INSTALL_HINT = ("install Debian's Chromium (apt-get install -y chromium) and the dev extras "
                "(pip install -e '.[dev]', which brings playwright)")


def find_chromium() -> str | None:
    """Path of the system's Chromium (``chromium`` on PATH, else /usr/bin/chromium), or None."""
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def missing() -> str | None:
    """Why the viewer cannot be driven here (None when it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if find_chromium() is None:
        return "no chromium on PATH"
    return None


class ViewerPage:
    """A loaded viewer page. ``page``: the Playwright page; ``errors``: page errors and console
    errors seen so far."""

    def __init__(self, page, errors: list[str]):
        self.page = page
        self.errors = errors

    def js(self, expr: str, arg=None):
        return self.page.evaluate(expr, arg)

    def wait_loaded(self, key: str | None = None, timeout_ms: float = 60_000) -> None:
        """Wait until the page shows ``key`` ('<category>/<method>'; None: anything)."""
        self.page.wait_for_function(
            "k => document.body.dataset.state === 'ready' && (!k || window.viewerState.loaded === k)",
            arg=key, timeout=timeout_ms)

    @property
    def state(self) -> dict:
        return self.js("() => { const s = window.viewerState; return {loaded: s.loaded, category: s.category, "
                       "method: s.method, source: s.source, point: s.point, markers: s.markers}; }")

    def select_category(self, name: str) -> None:
        self.page.select_option("#category", name)
        self.wait_loaded(f"{name}/{self.js('() => window.viewerState.method')}")

    def select_method(self, name: str) -> None:
        self.page.select_option("#method", name)
        self.wait_loaded(f"{self.js('() => window.viewerState.category')}/{name}")

    def images(self, category: str) -> list[dict]:
        """The category's image records as the page has them (id, w, h, tw, th, ...; no pixels)."""
        return self.js("c => window.SOPCORR_VIEWER_DATA[c + '/images'].images.map("
                       "({src, ...rest}) => rest)", category)

    def page_xy(self, i: int, x: float, y: float) -> tuple[float, float]:
        """Page (viewport) coordinates of pixel (x, y) of image ``i`` of the shown category."""
        loc = self.page.locator(f"canvas.marks[data-index='{i}']")
        # in the middle of the window: never under the sticky header, never off screen
        loc.evaluate("c => c.scrollIntoView({block: 'center', inline: 'center'})")
        box = loc.bounding_box()
        px, py = self.js("([i, x, y]) => window.viewer.tilePoint(i, x, y)", [i, x, y])
        return box["x"] + px, box["y"] + py

    def move_to(self, i: int, x: float, y: float) -> dict:
        """Move the pointer over pixel (x, y) of image ``i`` (a real pointer event) and return
        the page's state after its redraw: point (what the page took, in image pixels) and
        markers."""
        n = self.js("() => window.viewerTimings.length")
        self.page.mouse.move(*self.page_xy(i, x, y))
        self.page.wait_for_function("n => window.viewerTimings.length > n", arg=n, timeout=10_000)
        return self.state

    def timings(self) -> list[float]:
        """ms from each pointer event to the end of its redraw."""
        return list(self.js("() => window.viewerTimings"))

    def load_times(self) -> dict:
        """{'ready_ms': navigation start -> first category and method drawn, 'first_match_ms':
        -> the first match drawn (the page draws one on load)}."""
        r, f = self.js("() => [window.viewerReadyAt, window.viewerFirstMatchAt]")
        return {"ready_ms": r, "first_match_ms": f}


@contextlib.contextmanager
def viewer_page(index: str | Path, viewport: tuple[int, int] = (1300, 900)) -> Iterator[ViewerPage]:
    """Open ``index`` (a viewer's index.html, from disk: file://) in headless Chromium and wait
    until its first category and method are drawn."""
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError(f"no Chromium: {INSTALL_HINT}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(Path(index).resolve().as_uri())
            vp = ViewerPage(page, errors)
            vp.wait_loaded()
            yield vp
        finally:
            browser.close()
