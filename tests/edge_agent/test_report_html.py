"""report.html as a browser shows it: every evidence image decodes and displays."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import cv2
import pydicom
import pytest

from edge_agent.config import Config, ReportSettings
from edge_agent.read import read_study
from tests.peers import chromium_dom, chromium_screenshot

# Added to a copy of the page only: the report itself carries no script.
PROBE = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const shown = images.filter(i => i.complete && i.naturalWidth > 0 && i.width > 0);
  document.body.setAttribute('data-images', shown.length + '/' + images.length);
  document.body.setAttribute('data-missing', images.filter(i => !shown.includes(i))
    .map(i => i.alt).join('|'));
});
</script>"""


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    from edge_agent.sample import write_sample_study

    folder = tmp_path_factory.mktemp("html")
    config = Config(report=ReportSettings(dicom=False))
    return read_study(write_sample_study(folder / "study"), folder / "out", config).out_dir


def test_chromium_shows_every_image(out, tmp_path):
    html = (out / "report.html").read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = chromium_dom(probed, tmp_path / "profile")
    loaded, total = map(int, re.search(r'data-images="(\d+)/(\d+)"', dom).groups())
    missing = re.search(r'data-missing="([^"]*)"', dom).group(1)
    assert loaded == total and missing == ""
    report = json.loads((out / "report.json").read_text())
    cited = sum(len(f["evidence"]) for f in report["findings"])
    trajectory = json.loads((out / "trajectory.json").read_text())
    # Each finding's key image and thumbnails, plus every image of the trail once.
    assert total == len(report["findings"]) + cited + len(trajectory["images"])


def test_each_evidence_thumbnail_links_to_the_step_that_made_it(out):
    html = (out / "report.html").read_text()
    report = json.loads((out / "report.json").read_text())
    for finding in report["findings"]:
        for evidence in finding["evidence"]:
            target = (
                f"step-{evidence['step']}" if evidence["step"] else f"image-{evidence['index']}"
            )
            assert f"href='#{target}'" in html and f"id='{target}'" in html


# Added to a copy of the page: how the reader's part is laid out at the window's width.
LAYOUT = """<script>
window.addEventListener('load', () => {
  const keys = [...document.querySelectorAll('a.key img')];
  document.body.setAttribute('data-layout', JSON.stringify({
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    inner: window.innerWidth,
    keys: keys.map(i => Math.round(i.getBoundingClientRect().width)),
    trailOpen: document.querySelector('details.trail').open,
  }));
});
</script>"""


def test_each_finding_says_where_it_is_in_a_readers_terms(out):
    report = json.loads((out / "report.json").read_text())
    page = (out / "report.html").read_text()
    assert report["end"]["summary"] == "The policy answered after 8 tool call(s)."
    assert "How the read ended</th><td>The policy answered" in page and "Read ended" not in page
    for finding in report["findings"]:
        # the sample study's CT slices: instance 3 at -65.7 mm along the normal
        assert finding["where"] == {
            "series_number": 1,
            "series_description": "sample CT (pydicom CT_small)",
            "instance_number": 3,
            "slice_position_mm": -65.7,
            "image_right": "patient's left",
            "frame": 1,
        }
        assert finding["key_image"] == finding["evidence"][-1]["image"]
        assert (
            "Series 1 (sample CT (pydicom CT_small)), instance 3, slice position -65.7 mm" in page
        )
        assert f"<a class='key' href='{finding['key_image']}'" in page  # full size on a click
    assert "20 mm</text>" in page  # the scale bar of finding 1 (a 51 mm wide zoom)
    assert page.count("<p class='shown'>Shown at W/L 400/40 (requested)</p>") == 2
    for letter in "RLAP":  # every edge of an axial slice named on its key image, bottom too
        assert f"paint-order='stroke'>{letter}</text>" in page
    assert "frame 1<" not in page and "source SOP" not in page  # no developer captions


@pytest.mark.parametrize("width", [1280, 480])
def test_the_page_reads_at_a_laptop_and_a_narrow_width(out, tmp_path, width):
    probed = tmp_path / "layout.html"
    probed.write_text((out / "report.html").read_text().replace("</body>", LAYOUT + "</body>"))
    dom = chromium_dom(probed, tmp_path / "profile", width=width)
    layout = json.loads(html.unescape(re.search(r'data-layout="([^"]*)"', dom).group(1)))
    assert layout["overflow"] <= 0, layout  # nothing wider than the window
    # the key image is large: 512 px where there is room, else most of the window's width
    wanted = min(512, 0.8 * layout["inner"])
    assert layout["keys"] and all(wanted <= w <= 520 for w in layout["keys"]), layout
    assert layout["trailOpen"] is False  # the trail starts folded
    shot = chromium_screenshot(
        out / "report.html",
        tmp_path / f"report-{width}.png",
        tmp_path / "profile-shot",
        width,
        1400,
    )
    pixels = cv2.imread(str(shot))
    assert pixels.shape[:2] == (1400, width)
    assert (pixels < 60).all(axis=2).mean() > 0.05  # the dark CT key images are drawn


def test_header_text_is_shown_as_text_never_as_markup(tmp_path):
    """A Series Description is whatever the modality wrote: the page shows it, runs nothing."""
    from edge_agent.sample import write_sample_study

    study = write_sample_study(tmp_path / "study")
    marked = "AX <img src=x onerror=document.body.id=7777> & more"
    for path in study.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = marked
        ds.save_as(path)
    config = Config(report=ReportSettings(dicom=False))
    out = read_study(study, tmp_path / "out", config).out_dir
    page = (out / "report.html").read_text()
    assert "<img src=x" not in page
    assert html.escape(marked) in page  # in every caption that names the series
    assert 'id="7777"' not in chromium_dom(out / "report.html", tmp_path / "profile")
