"""The standalone explorer page in a real browser: Voilà on localhost, headless Chromium.

Builds a smoke store (two tiny source models), starts ``python -m rtstudy.explorer.server``
on a free port, opens the page with every non-local request blocked (the page must work
offline), waits for the plotly figures (FigureWidgets when anywidget is installed) and
checks that they show the explorer's first view, picks other layers in the dropdown and
checks that the heatmap and the channel-survival figure changed (titles, heatmap rows and
data) in place: the same five plot elements, no page or console errors. Times each change
(select -> both figures show the new layer) and saves a screenshot in the test's tmp_path.
Skipped, with the reason, when Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"explorer server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"explorer server not listening on {port} after {timeout}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server (it shuts its kernels down), then SIGKILL its process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the server and its kernels only
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=10)


def _mask_figure_state(page) -> dict:
    """The heatmap figure (the first plot): title, rows and a digest of the natural mask."""
    return page.evaluate("""() => {
        const gd = document.querySelector('.js-plotly-plot');
        const title = gd && gd.querySelector('.gtitle');
        const z = gd && gd._fullData && gd._fullData[0] ? gd._fullData[0].z : null;  // decoded heatmap
        const flat = z ? Array.from(z, row => Array.from(row).join('')).join('|') : null;
        return {title: title ? title.textContent : null, rows: z ? z.length : null,
                cols: z && z.length ? z[0].length : null, kept: flat ? (flat.match(/1/g) || []).length : null,
                digest: flat ? flat.slice(0, 400) : null};
    }""")


def _titles(page) -> list:
    return page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'),"
                         " gd => { const t = gd.querySelector('.gtitle'); return t ? t.textContent : null; })")


# the heatmap's and the channel-survival figure's titles both name the layer shown
_SHOWS_LAYER = """name => {
    const t = Array.from(document.querySelectorAll('.js-plotly-plot .gtitle'), e => e.textContent);
    return t.length >= 4 && t[0].startsWith(name + ' ') && t[3].includes(name + ':');
}"""


def test_standalone_page_in_chromium(tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no Chromium executable on PATH (shutil.which('chromium') is None); "
                    "install Debian's chromium to run the browser test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not importable ({exc}); it is in the 'test' extra")

    from rtstudy.explorer import figure_widgets_available

    store_dir = tmp_path / "store"
    port = _free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "RTSTUDY_STORE": str(store_dir), "RTSTUDY_PROGRESS": "0"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtstudy.explorer.server", "--port", str(port), "--profile", "smoke"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # the page reads the store only when it is opened: build it while the server starts
        import torch

        from rtstudy.core.pipeline import pretrain
        from rtstudy.core.store import Store
        from rtstudy.profiles import get_profile

        torch.set_num_threads(1)
        profile = get_profile("smoke")
        for eps in (0.0, profile.eps_star):
            pretrain(profile.source_model(eps), store=Store(store_dir), progress=False)
        _wait_listening(port, proc, log)

        external: list[str] = []
        local: list[str] = []

        def offline(route):
            url = route.request.url
            if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
                local.append(url)
                route.continue_()
            else:
                external.append(url)
                route.abort()

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1900})
                page.route("**/*", offline)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
                start = time.monotonic()
                page.goto(f"http://127.0.0.1:{port}/", timeout=90_000)
                page.wait_for_selector(".js-plotly-plot", timeout=90_000)
                page.wait_for_function(
                    "() => document.querySelectorAll('.js-plotly-plot').length >= 5 && "
                    "document.querySelectorAll('.js-plotly-plot .gtitle').length >= 5", timeout=30_000)
                load_s = time.monotonic() - start
                # the explorer's first view, not the figures as they were constructed
                page.wait_for_function(_SHOWS_LAYER, arg="layer1.0.conv1", timeout=10_000)
                before = _mask_figure_state(page)
                assert before["title"] and "layer1.0.conv1" in before["title"], before
                assert (before["rows"], before["cols"]) == (8, 8 * 9), before  # smoke resnet8: 8 filters in layer1
                assert 0 < before["kept"] < 8 * 8 * 9, before  # an 80%-sparse mask, not the empty placeholder
                titles_before = _titles(page)
                assert all(titles_before) and len(titles_before) == 5, titles_before
                # laid out for their boxes (the heatmaps the page's width, the others half), not 700 px
                widths = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'),"
                                       " gd => gd._fullLayout.width)")
                assert widths[0] > 1200 and all(550 < w < 760 for w in widths[1:]), widths
                # mark the plot elements: after a change they must be the same (updated in place)
                page.evaluate("() => document.querySelectorAll('.js-plotly-plot').forEach("
                              "(gd, i) => { gd.dataset.rtMark = String(i); })")

                select = page.locator(".widget-dropdown", has=page.locator("label", has_text="layer")).locator("select")
                options = select.locator("option").all_text_contents()
                redraws = []
                # the last one is what the assertions below check; the others time a change
                for name in ("layer2.0.conv1", "layer1.0.conv2", "layer3.0.conv1", "layer2.0.conv2",
                             "layer3.0.conv2"):
                    label = next(o for o in options if o.replace("\xa0", " ").startswith(name + " "))
                    start = time.monotonic()
                    select.select_option(label=label)
                    page.wait_for_function(_SHOWS_LAYER, arg=name, timeout=30_000)
                    redraws.append(time.monotonic() - start)
                redraw_s = statistics.median(redraws)
                after = _mask_figure_state(page)
                assert (after["rows"], after["cols"]) == (32, 32 * 9), after  # 32 filters in layer3.0.conv2
                assert after["title"] != before["title"] and after["digest"] != before["digest"]
                assert 0 < after["kept"] < 32 * 32 * 9, after
                titles_after = _titles(page)
                assert titles_after[3] != titles_before[3] and "32/32" in titles_after[3], titles_after
                marks = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'),"
                                      " gd => gd.dataset.rtMark || null)")
                if figure_widgets_available():  # the Output fallback (no anywidget) re-renders each plot
                    assert marks == ["0", "1", "2", "3", "4"], f"plot elements were replaced, not updated: {marks}"
                shot = tmp_path / "explorer.png"
                page.screenshot(path=str(shot), full_page=True)
                widget_fetches = [u for u in local if "/static/plotly-widget-" in u]
                print(f"\n[browser] page with figures in {load_s:.1f} s; layer change redrawn in "
                      f"{redraw_s * 1000:.0f} ms (median of {len(redraws)}, select -> new heatmap and "
                      f"channel titles; all: {', '.join(f'{r * 1000:.0f}' for r in redraws)} ms); "
                      f"plotly widget module fetched {len(widget_fetches)}x; screenshot: {shot}")
                assert not external, f"the page tried to reach the network: {external}"
                assert not errors, f"page errors: {errors}"
            finally:
                browser.close()
    finally:
        _stop(proc)
