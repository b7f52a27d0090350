"""report.html as a browser shows it: every evidence image decodes and displays."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge_agent.config import Config, ReportSettings
from edge_agent.read import read_study
from tests.peers import chromium_dom

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
    # Each finding's thumbnails, plus every image of the trail once.
    assert total == cited + len(trajectory["images"])


def test_each_evidence_thumbnail_links_to_the_step_that_made_it(out):
    html = (out / "report.html").read_text()
    report = json.loads((out / "report.json").read_text())
    for finding in report["findings"]:
        for evidence in finding["evidence"]:
            target = (
                f"step-{evidence['step']}" if evidence["step"] else f"image-{evidence['index']}"
            )
            assert f"href='#{target}'" in html and f"id='{target}'" in html
