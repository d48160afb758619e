"""Makefile targets run in a scratch copy with stub tools: what they delete and which run they read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def _make(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """`make <args>` on a copy of the Makefile in `tmp`; BIN is a folder of stubs, STAMP an up-to-date file."""
    shutil.copy(REPO / "Makefile", tmp / "Makefile")
    (tmp / "pyproject.toml").write_text("")
    (tmp / "stamp").write_text("")
    os.utime(tmp / "pyproject.toml", (0, 0))
    return subprocess.run(["make", "--no-print-directory", f"BIN={tmp / 'bin'}", f"STAMP={tmp / 'stamp'}", *args],
                          cwd=tmp, capture_output=True, text=True, timeout=60)


def _stub(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def test_clean_keeps_the_tracked_calibration_tables(tmp_path: Path) -> None:
    """`make clean` once ran `rm -rf reports/*/`, deleting the committed reports/calibration/ (the suite's tables and
    per-replicate summaries, hours of compute) and reports/planted/ (the report's default report.planted)."""
    for path in ("reports/calibration/calibration.json", "reports/calibration/replicates/base/0.json",
                 "reports/planted/calibration.json", "reports/demo/index.html", "reports/README.md",
                 "results/demo/windows/windows.parquet", ".snakemake/log/x.log"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    res = _make(tmp_path, "clean")
    assert res.returncode == 0, res.stdout + res.stderr
    for kept in ("reports/calibration/calibration.json", "reports/calibration/replicates/base/0.json",
                 "reports/planted/calibration.json", "reports/README.md"):
        assert (tmp_path / kept).is_file(), kept
    for gone in ("reports/demo", "results", ".snakemake"):
        assert not (tmp_path / gone).exists(), gone


def test_planted_reads_the_run_name_as_the_workflow_does(tmp_path: Path) -> None:
    """`make planted CONFIG=<a config without run:>` once read `run` from that one file (KeyError traceback, then
    `cat results//planted/match.tsv`); snakemake takes it from configs/demo.yaml under the user's config."""
    _stub(tmp_path / "bin" / "snakemake", "#!/bin/sh\nexit 0\n")
    _stub(tmp_path / "bin" / "python", f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} \"$@\"\n")
    (tmp_path / "user.yaml").write_text("sae: {n_features: 64}\n")
    (tmp_path / "results" / "demo" / "planted").mkdir(parents=True)
    (tmp_path / "results" / "demo" / "planted" / "match.tsv").write_text("type\tmatched\nCTCF\ttrue\n")
    res = _make(tmp_path, "planted", "CONFIG=user.yaml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "CTCF\ttrue" in res.stdout and "Traceback" not in res.stderr, res.stdout + res.stderr
