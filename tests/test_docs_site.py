"""The documentation site as a reader sees it: built strict with mkdocs, served on 127.0.0.1, and opened
in headless Chromium (as the serve page test does): the theme's header, navigation and search box are
laid out, the page is not blank, and nothing is fetched from another host (the site builds and works
offline); the search index holds the pages. Screenshots of the home page and a tutorial are kept in the test's tmp
folder (CNNEXP_SITE_SCREENSHOTS=<folder> copies them there too)."""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"home": "", "tutorial": "tutorials/olivetti/", "notebook": "notebooks/olivetti/"}
WIDTH, HEIGHT = 1280, 900


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built strict into a tmp folder and served over HTTP on a free port of 127.0.0.1."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    handler = functools.partial(QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def layout(browser) -> dict:
    """Where the theme put its parts, and what the page fetched."""
    return browser.evaluate("""(() => {
        const box = sel => { const e = document.querySelector(sel); if (!e) return null;
                             const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; };
        const header = document.querySelector('.md-header');
        return {
            header: box('.md-header'),
            header_position: header ? getComputedStyle(header).position : null,
            header_color: header ? getComputedStyle(header).backgroundColor : null,
            nav: box('.md-sidebar--primary'),
            content: box('.md-content'),
            search: box('.md-search__input') || box('label.md-header__button[for=__search]'),
            nav_links: document.querySelectorAll('.md-sidebar--primary a.md-nav__link').length,
            hosts: performance.getEntriesByType('resource').map(r => new URL(r.name).host),
        };
    })()""")


def non_blank_fraction(png: Path) -> float:
    from PIL import Image

    histogram = Image.open(png).convert("L").histogram()
    return sum(histogram[:240]) / sum(histogram)


def test_the_search_index_holds_every_page(site):
    """The built-in search plugin's index (what the search box searches, offline) has the pages."""
    import json
    import urllib.request

    index = json.load(urllib.request.urlopen(site + "search/search_index.json", timeout=30))
    locations = {doc["location"].split("#")[0] for doc in index["docs"]}
    for page in ("", "tutorials/olivetti/", "reference/commands/train/", "how-to/speed/"):
        assert page in locations, page
    assert any("tencrop" in doc["text"] for doc in index["docs"] if doc["location"].startswith("reference/commands/eval/"))


def test_the_site_is_laid_out_in_chromium(site, tmp_path):
    from cdp_browser import Chromium, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    shots = {}
    with Chromium(tmp_path / "profile", size=(WIDTH, HEIGHT)) as browser:
        for name, path in PAGES.items():
            browser.open(site + path)
            browser.wait_for("document.querySelector('.md-header') && document.fonts.status === 'loaded'")
            parts = layout(browser)
            assert parts["header_position"] == "sticky", parts  # the theme's stylesheet is applied
            assert parts["header_color"] not in (None, "rgba(0, 0, 0, 0)"), parts
            assert parts["header"]["h"] >= 40 and parts["header"]["w"] > WIDTH - 20, parts  # the width less a scroll bar
            assert parts["nav"]["w"] > 150 and parts["nav"]["x"] < parts["content"]["x"], parts  # sidebar left of text
            assert parts["nav_links"] >= 10 and parts["search"] is not None, parts
            assert set(parts["hosts"]) <= {site.split("/")[2]}, parts["hosts"]  # nothing from a CDN
            shots[name] = browser.screenshot(tmp_path / f"site-{name}.png")
    for name, png in shots.items():
        assert non_blank_fraction(png) > 0.05, name
    if folder := os.environ.get("CNNEXP_SITE_SCREENSHOTS"):
        for png in shots.values():
            shutil.copy(png, Path(folder) / png.name)
