"""The report as a person sees it: index.html rendered in headless Chromium.

Skipped when no Chromium is installed, except in CI (ACTUNE_CHROMIUM_CI=1, set by .ci/run,
which installs Debian's ``chromium``): there a missing browser fails. ACTUNE_SCREENSHOTS=DIR
keeps the screenshots for a person to look at.
"""
import json
import os
import shutil
from pathlib import Path

import pytest
from headless import Chromium, find_chromium

from analysis.report import build_report

CHECK = """JSON.stringify({
  images: Array.from(document.images).map(i => ({src: i.getAttribute('src'),
                                                 loaded: i.complete && i.naturalWidth > 0})),
  tables: document.querySelectorAll('table').length,
  resolution_tables: document.querySelectorAll('#resolution table').length,
  pipe_text: Array.from(document.querySelectorAll('pre, p, div.table'))
                  .filter(e => e.textContent.includes('|---')).length,
  pre: document.querySelectorAll('pre').length,
  page_width: document.documentElement.scrollWidth,
  window_width: window.innerWidth,
  overflowing: Array.from(document.querySelectorAll('div.table'))
                    .filter(d => d.scrollWidth > d.clientWidth + 1).map(d => d.parentElement.id),
  captions: Array.from(document.querySelectorAll('figure'))
                 .filter(f => !f.querySelector('figcaption').textContent.trim()).length,
  problems_first: document.getElementById('problems').getBoundingClientRect().top <
                  document.querySelector('figure').getBoundingClientRect().top
})"""


@pytest.fixture(scope="module")
def chromium():
    if find_chromium() is None:
        if os.environ.get("ACTUNE_CHROMIUM_CI"):
            pytest.fail("ACTUNE_CHROMIUM_CI is set but no chromium is installed")
        pytest.skip("no chromium (Debian: apt-get install chromium)")
    with Chromium(width=1280, height=800) as browser:
        yield browser


@pytest.mark.parametrize("width", [1280, 1024])
def test_index_html_renders_every_image_and_html_tables(synthetic_results, tmp_path, chromium,
                                                        width):
    rep = build_report(synthetic_results, tmp_path / "report")
    figures = [m for m in rep.made if m.table is None]
    tables = [m for m in rep.made if m.table is not None]
    assert len(figures) >= 7 and len(tables) >= 8      # t-SNE included: fig6 has features

    chromium.resize(width, 800)
    chromium.open(tmp_path / "report" / "index.html")
    chromium.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    page = json.loads(chromium.evaluate(CHECK))

    assert [i["src"] for i in page["images"]] == \
        [str(m.files[0].relative_to(rep.out)) for m in figures]
    assert all(i["loaded"] for i in page["images"]), page["images"]
    assert page["resolution_tables"] == 1               # "What the study can resolve"
    assert page["tables"] == len(tables) + 1            # every table an HTML table
    assert page["pre"] == 0 and page["pipe_text"] == 0  # no Markdown pipes left on the page
    assert page["captions"] == 0                        # every figure has its caption
    assert page["problems_first"]
    # readable at a normal window width: no sideways scrolling of the page or of a table
    assert page["page_width"] <= page["window_width"]
    assert page["overflowing"] == []

    shot = chromium.screenshot(tmp_path / f"index_{width}.png")
    assert shot.stat().st_size > 50_000
    keep = os.environ.get("ACTUNE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
