"""The test config on a real (one-node, local) SLURM cluster gives the same report as a local run.

Needs a running cluster: `make test-slurm` (root) starts one with workflow/scripts/slurm_cluster.sh and runs
these tests; `make test` deselects them. Skipped with a note when `sinfo` cannot reach a controller.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import copy_workflow, report_without_clock, run_snakemake

pytestmark = pytest.mark.slurm


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return res.returncode == 0 and any(s in res.stdout for s in ("idle", "mixed", "allocated"))


def test_test_config_on_slurm_equals_local_run(tmp_path: Path) -> None:
    if not _cluster_up():
        pytest.skip("no SLURM controller answers (start one with `make test-slurm` as root)")
    local, cluster = copy_workflow(tmp_path / "local"), copy_workflow(tmp_path / "slurm")
    res = run_snakemake(local, "--configfile", "configs/test.yaml", timeout=1200)
    assert res.returncode == 0, res.stderr[-5000:]
    res = run_snakemake(cluster, "--configfile", "configs/test.yaml", "--profile", "configs/profiles/slurm",
                        "--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks",
                        "5", timeout=2400)
    assert res.returncode == 0, (res.stdout + res.stderr)[-8000:]
    out = res.stdout + res.stderr
    # the jobs really went through sbatch, not a local fallback
    assert "sbatch" in out or "SLURM jobid" in out, out[-3000:]
    assert report_without_clock(cluster / "reports" / "test" / "report.json") == report_without_clock(
        local / "reports" / "test" / "report.json")
