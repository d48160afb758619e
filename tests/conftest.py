"""Shared fixtures: repository paths and a helper that runs the workflow in a scratch copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_FASTA = REPO / "resources" / "demo" / "hg19_chr17_1-40000.fa"
DEMO_GENES = REPO / "resources" / "demo" / "grch37_chr17_1-40000_genes.tsv"
KG_VCF = REPO / "tests" / "data" / "1kg_pilot_chr2_10038-40424.vcf.gz"


def copy_workflow(dest: Path) -> Path:
    """Copy what a run needs (Snakefile, rules, schema, cards, configs, demo data) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    shutil.copy(REPO / "environment.yml", dest / "environment.yml")
    for folder in ("workflow", "models", "configs", "resources"):
        shutil.copytree(REPO / folder, dest / folder, dirs_exist_ok=True)
    return dest


def run_snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run snakemake (from this interpreter's venv) in `workdir`; returns the completed process."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path / "wf")
