"""Shared fixtures: repository paths and a helper that runs the workflow in a scratch copy."""

from __future__ import annotations

import json
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

# The longest files (minutes each: end-to-end runs, the reduced calibration grid) are collected first, so that
# `make test`'s workers (pytest-xdist, one file per worker) start them at once rather than end on them.
LONGEST_FIRST = ("test_end_to_end.py", "test_calibration.py", "test_workflow.py", "test_cohort_pipeline.py",
                 "test_audit.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order inside a file is kept


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


def report_without_clock(path: Path) -> dict:
    """report.json without `generated_at` and the wall-clock `timings` (measured, not reproducible)."""
    report = json.loads(Path(path).read_text())
    report.pop("generated_at")
    report.pop("timings")
    return report


def train_small_reference_model(out: Path, cfg: dict, layer: str) -> dict:
    """A small tiny-dnalm and a TopK SAE on its `layer` tokens, through the real stages (windows,
    pretrain_tiny_dnalm, embed, sae_sweep without concept labels), for tests that need real embeddings.

    cfg: a checked config (its reference and regions are used). Returns {card, checkpoint, sae} paths.
    """
    from interp import stages

    def job(inputs: dict, outputs: dict, params: dict) -> stages.Job:
        return stages.Job(input={k: str(v) for k, v in inputs.items()},
                          output={k: str(v) for k, v in outputs.items()}, params=params, threads=1)

    ref = {"fasta": DEMO_FASTA, "annotation": DEMO_GENES}
    common = {"reference": cfg["reference"], "regions": cfg["regions"]}
    stages.windows(job(ref, {"parquet": out / "w.parquet", "tsv": out / "w.tsv", "fasta": out / "w.fa",
                             "bases": out / "b.parquet"}, {**common, "windows": cfg["windows"]}))
    card = REPO / "models" / "tiny-dnalm.yaml"
    overrides = {"d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 128, "max_steps": 150}
    stages.pretrain_tiny_dnalm(job({"fasta": DEMO_FASTA, "card": card},
                                   {"checkpoint": out / "lm.safetensors", "metrics": out / "lm.json"},
                                   {**common, "heldout_fraction": 0.2, "overrides": overrides, "seed": 7}))
    stages.embed(job({"card": card, "checkpoint": out / "lm.safetensors", "windows": out / "w.parquet",
                      "bases": out / "b.parquet"},
                     {"pooled_dir": out / "emb", "tokens_dir": out / "tokens", "stats": out / "emb.json"},
                     {"layers": [layer], "token_layers": [layer], "batch_size": 64, "device": "cpu"}))
    stages.sae_sweep(job({"tokens_dir": out / "tokens", "windows": out / "w.parquet"},
                         {"weights": out / "sae.safetensors", "metrics": out / "sae.json"},
                         {"base": {"n_features": 128, "k": 8, "epochs": 2, "batch_size": 512, "lr": 1e-3, "seed": 7},
                          "overrides": {}, "name": "reference", "model": "tiny-dnalm", "layer": layer}))
    return {"card": card, "checkpoint": out / "lm.safetensors", "sae": out / "sae.safetensors"}


def planted_dictionary(n_atoms: int, d_in: int, n_tokens: int, seed: int = 0):
    """Synthetic SAE data with known features: unit-norm atoms [n_atoms, d_in], each token the sum of 3
    atoms with coefficients in [1, 2], plus a 0.3 offset. Returns (rng, atoms, active [n_tokens, 3], x)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(n_atoms, d_in))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    active = np.stack([rng.choice(n_atoms, 3, replace=False) for _ in range(n_tokens)])
    coef = rng.uniform(1.0, 2.0, size=(n_tokens, 3))
    x = np.einsum("nk,nkd->nd", coef, atoms[active]) + 0.3
    return rng, atoms, active, x


def demo_config() -> dict:
    """The demo config, parsed: tests change a key and check what check-config says."""
    import yaml

    from interp.config import ROOT

    return yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())


def check_config_error(cfg: dict, path: Path, capsys) -> str:
    """Write cfg to path, run `interp check-config` on it, assert it refuses (exit 2, no traceback), return stderr."""
    import yaml

    from interp.cli import main

    path.write_text(yaml.safe_dump(cfg))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and "Traceback" not in err, err
    return err
