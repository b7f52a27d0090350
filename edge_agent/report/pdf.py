"""report.pdf: the same page as report.html, printed by headless Chromium, for systems that only
take PDF.

Chromium, not an HTML-to-PDF library: it is the engine the HTML is written and checked for (the
SVG scale bars over the key images, the layout), so the PDF is the page a reader sees, with no
second renderer to keep in step and no Python dependency; WeasyPrint would add pango and cairo
and its own subset of CSS. Chromium is a system package (as dcmtk is): without it `--pdf` is a
one-line error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from imaging.errors import BadInput

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PRINT_CSS = "<style>@page{size:A4;margin:12mm}</style></head>"


def find_browser(needed_by: str = "--pdf") -> str:
    """Chromium's path; a one-line error naming what needs it (a service checks at start)."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if browser is None:
        raise BadInput(f"{needed_by} needs Chromium ({' or '.join(BROWSERS[:2])}) on the PATH")
    return browser


def write_pdf(out_dir: Path, *, timeout_s: float = 120) -> Path:
    """Print OUT/report.html to OUT/report.pdf, everything folded on screen unfolded (the
    reasoning trail, the identifiers: paper cannot unfold them)."""
    browser = find_browser()
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    printable = re.sub(r"<details\b", "<details open", page)
    printable = printable.replace("</head>", PRINT_CSS, 1)
    target = out_dir / "report.pdf"
    with tempfile.TemporaryDirectory(prefix="edge-agent-pdf-") as work:
        source = Path(work) / "report.html"
        source.write_text(printable, encoding="utf-8")
        partial = Path(work) / "report.pdf"
        command = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            # no connection but to the page's own files: background networking off is not enough
            # (the component updater and the account checks still look up Google's hosts)
            "--disable-background-networking",
            "--disable-component-update",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            f"--user-data-dir={Path(work) / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={partial}",
            source.as_uri(),
        ]
        if os.geteuid() == 0:  # Chromium will not start its sandbox as root
            command.insert(1, "--no-sandbox")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise BadInput(f"Chromium did not print the PDF within {timeout_s:g} s") from None
        if done.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
            raise BadInput(f"Chromium could not print the PDF ({done.returncode}): {tail[0]}")
        shutil.move(partial, target)
    return target
