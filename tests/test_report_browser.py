"""The report as a reviewer sees it: index.html loaded in headless Chromium (Debian package) and report.pdf
rendered page by page with poppler's pdftoppm.

Checks: no console errors; no network request (the page is self-contained); the summary with one verdict
card per phenotype on the first screen; every section present and reachable from the table of contents;
every figure decoded; print CSS that keeps figures and cards whole; a PDF whose every page renders, with
each numbered section starting a page. Screenshots are saved under the test's tmp dir (path printed; run
with -s to see it; INTERP_SCREENSHOT_DIR=<dir> keeps copies). Skipped, with a note, where Chromium or poppler is not installed (`make sysdeps`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import report_synthetic as rs
from conftest import copy_workflow, run_snakemake
from PIL import Image

from interp.report.browser import Chromium, find_chromium
from interp.report.build import finish_report

SECTIONS = ("summary", "audit", "biomarkers", "represents", "model", "methods")
HEADINGS = ("1. Audit", "2. Candidate biomarkers", "3. What the model represents", "4. The model itself",
            "5. Methods, limitations and provenance")

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="Chromium not installed (Debian package "
                                    "`chromium`; `make sysdeps` as root installs it): browser checks skipped")
needs_poppler = pytest.mark.skipif(shutil.which("pdftoppm") is None or shutil.which("pdfinfo") is None,
                                   reason="poppler-utils not installed (`make sysdeps`): PDF page checks skipped")


@pytest.fixture(scope="module")
def synthetic_reports(tmp_path_factory) -> dict[str, Path]:
    """index.html (+ report.pdf when Chromium is there) of the synthetic report, new and legacy interfaces."""
    out = {}
    for name, new_keys in (("new", True), ("legacy", False)):
        folder = tmp_path_factory.mktemp(f"report-{name}")
        report, figs, layers, calib, cfg = rs.report_parts(new_keys=new_keys)
        finish_report(report, figs, layers, calib, cfg, "synthetic",
                      {"json": folder / "report.json", "html": folder / "index.html"})
        out[name] = folder
    return out


def check_page(html: Path, shots: Path, n_phenotypes: int) -> dict:
    """Load `html` in headless Chromium and check what a reviewer relies on; returns numbers for asserts."""
    with Chromium(width=1280, height=1000) as browser:
        url = html.resolve().as_uri()
        browser.load(url)
        errors = browser.console_errors()
        external = [u for u in browser.requests() if u != url and not u.startswith("data:")]
        found = browser.evaluate(
            "JSON.stringify({"
            f"sections: {list(SECTIONS)!r}.filter(id => document.getElementById(id) !== null),"
            "toc: Array.from(document.querySelectorAll('nav.toc a')).map(a => a.getAttribute('href')),"
            "toc_ok: Array.from(document.querySelectorAll('nav.toc a'))"
            "  .every(a => document.querySelector(a.getAttribute('href')) !== null),"
            "cards: document.querySelectorAll('#summary .vcard').length,"
            "card_top: document.querySelector('#summary .vcard') ?"
            "  document.querySelector('#summary .vcard').getBoundingClientRect().top : null,"
            "calibration: document.getElementById('calibration') !== null,"
            "images: document.images.length,"
            "images_ok: Array.from(document.images).every(i => i.complete && i.naturalWidth > 0),"
            "details: document.querySelectorAll('details').length,"
            "open_details: document.querySelectorAll('details[open]').length"
            "})")
        first_screen = browser.screenshot(shots / "report_first_screen.png")
        full = browser.screenshot(shots / "report_full_page.png", full_page=True)
        browser.send("Emulation.setEmulatedMedia", session=True, media="print")
        printed = browser.evaluate(
            "JSON.stringify({"
            "avoid: Array.from(document.querySelectorAll('figure, .vcard, .box'))"
            "  .every(e => getComputedStyle(e).breakInside === 'avoid'),"
            "thead: Array.from(document.querySelectorAll('thead'))"
            "  .every(e => getComputedStyle(e).display === 'table-header-group'),"
            "tallest_figure: Math.max(0, ...Array.from(document.querySelectorAll('figure img'))"
            "  .map(i => i.getBoundingClientRect().height))"
            "})")
    import json

    keep = os.environ.get("INTERP_SCREENSHOT_DIR")  # pytest keeps only its last 3 tmp dirs
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in (first_screen, full):
            shutil.copy(shot, Path(keep) / f"{html.parent.name}_{shot.name}")
    print(f"\nreport screenshots: {first_screen} {full}" + (f" (copied to {keep})" if keep else ""))
    return {"errors": errors, "external": external, **json.loads(found), **json.loads(printed),
            "n_phenotypes": n_phenotypes, "first_screen": first_screen}


def assert_page(res: dict) -> None:
    assert res["errors"] == [], res["errors"]
    assert res["external"] == [], f"the report made network requests: {res['external']}"
    assert res["sections"] == list(SECTIONS)
    assert res["toc"] == [f"#{s}" for s in SECTIONS] and res["toc_ok"]
    assert res["cards"] == res["n_phenotypes"]
    assert res["card_top"] is not None and res["card_top"] < 1000, "verdicts are not on the first screen"
    assert res["calibration"]
    assert res["images"] >= 5 and res["images_ok"]
    assert res["details"] > 0 and res["open_details"] == 0  # long tables collapsed on screen
    assert res["avoid"] and res["thead"]
    # A4 at 96 CSS px/inch minus the 30 mm of vertical margins: 267 mm = 1009 px; a figure fits one page
    assert 0 < res["tallest_figure"] < 1009
    img = np.asarray(Image.open(res["first_screen"]).convert("L"))
    assert img.shape == (1000, 1280) and img.std() > 10  # something is drawn


@needs_chromium
@pytest.mark.parametrize("name", ["new", "legacy"])
def test_report_loads_cleanly_in_chromium(synthetic_reports: dict[str, Path], name: str) -> None:
    assert_page(check_page(synthetic_reports[name] / "index.html", synthetic_reports[name], n_phenotypes=3))


def check_pdf(pdf: Path, out: Path) -> int:
    """Every page of `pdf` rendered to PNG by pdftoppm and not blank; each numbered section starts a page;
    A4 pages. Returns the page count."""
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert "A4" in info or "595" in info, info
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(out / "page")], check=True, timeout=120)
    pngs = sorted(out.glob("page*.png"))
    assert len(pngs) == pages
    for png in pngs:
        px = np.asarray(Image.open(png).convert("L"))
        assert px.std() > 3, f"{png} is blank"
    if shutil.which("pdftotext"):
        first_lines = []
        for page in range(1, pages + 1):
            text = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), "-layout", str(pdf), "-"],
                                  capture_output=True, text=True, check=True).stdout
            first_lines.append(next((ln.strip() for ln in text.splitlines() if ln.strip()), ""))
        starts = [next((i for i, ln in enumerate(first_lines) if ln.startswith(h)), None) for h in HEADINGS]
        assert None not in starts, list(zip(HEADINGS, starts, strict=True))
        assert starts == sorted(starts)
    return pages


@needs_chromium
@needs_poppler
def test_pdf_beside_index_renders_every_page(synthetic_reports: dict[str, Path], tmp_path: Path) -> None:
    pdf = synthetic_reports["new"] / "report.pdf"
    assert pdf.exists(), "report.pdf was not written although Chromium is installed"
    pages = check_pdf(pdf, tmp_path)
    assert pages >= 6  # summary + five sections, each from a new page
    print(f"\nreport.pdf: {pages} pages rendered under {tmp_path}")


@pytest.mark.slow
@needs_chromium
@needs_poppler
def test_workflow_report_in_chromium(tmp_path: Path) -> None:
    """The test config end to end: the real report loads cleanly, has every section, and its PDF renders."""
    wd = copy_workflow(tmp_path / "wf")
    res = run_snakemake(wd, "--configfile", "configs/test.yaml", timeout=900)
    assert res.returncode == 0, res.stderr[-5000:]
    folder = wd / "reports" / "test"
    assert_page(check_page(folder / "index.html", tmp_path, n_phenotypes=3))
    assert (folder / "report.pdf").exists()
    (tmp_path / "pages").mkdir()
    check_pdf(folder / "report.pdf", tmp_path / "pages")


@needs_chromium
def test_browser_checks_catch_console_errors_and_network_requests(tmp_path: Path) -> None:
    """The checks above can fail: a page with a console error, an uncaught exception and a remote image."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><head><meta charset='utf-8'><title>b</title></head><body>"
                    "<img src='http://192.0.2.1/x.png'><script>console.error('boom'); throw new Error('bad');"
                    "</script></body></html>")
    with Chromium() as browser:
        browser.load(page.resolve().as_uri())
        errors = browser.console_errors()
        requests = browser.requests()
    assert any("boom" in e for e in errors) and any("bad" in e for e in errors), errors
    assert "http://192.0.2.1/x.png" in requests
