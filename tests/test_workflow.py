"""The workflow as a user runs it: config validation, lint, SLURM profile, and end to end."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import copy_workflow, report_without_clock, run_snakemake


def _write_config(workdir: Path, cfg: dict) -> Path:
    path = workdir / "configs" / "user.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_dry_run_of_demo_config_plans_every_stage(workflow_copy: Path) -> None:
    res = run_snakemake(workflow_copy, "-n", "--quiet", "rules")
    assert res.returncode == 0, res.stderr
    for rule in ("windows", "pretrain_tiny_dnalm", "embed", "probe", "probe_sae", "sae", "simulate_cohort",
                 "check_cohort", "haplotypes", "ancestry", "embed_cohort", "audit", "rank", "report"):
        assert rule in res.stdout, f"rule {rule} missing from the demo plan:\n{res.stdout}"


def test_dry_run_plans_one_job_per_shard_and_sizes_resources(workflow_copy: Path) -> None:
    """cohort.shard_genes: 1 over a BED of 3 regions plans 3 haplotype and 3 embedding shard jobs, gathered once."""
    import re

    (workflow_copy / "configs" / "three.bed").write_text(
        "chr17\t6010\t14000\tpartA\nchr17\t14000\t22000\tpartB\nchr17\t22000\t31427\tpartC\n")
    path = _write_config(workflow_copy, {"run": "shards",
                                         "cohort": {"genes": [], "bed": "configs/three.bed", "shard_genes": 1}})
    res = run_snakemake(workflow_copy, "-n", "--configfile", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    for rule, count in (("haplotypes_shard", 3), ("embed_cohort_shard", 3), ("haplotypes", 1), ("embed_cohort", 1)):
        assert re.search(rf"^{rule}\s+{count}$", out, flags=re.M), f"{rule} x {count} not planned:\n{out}"
    for shard in ("s0000", "s0001", "s0002"):
        assert f"results/shards/cohort/shards/per1/{shard}/emb/tiny-dnalm.npz" in out


def test_lint_reports_nothing(workflow_copy: Path) -> None:
    res = run_snakemake(workflow_copy, "--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_slurm_profile_parses(workflow_copy: Path) -> None:
    res = run_snakemake(workflow_copy, "-n", "--profile", "configs/profiles/slurm")
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"windwos": {"width": 100}}, "unknown key 'windwos'"),
        ({"windows": {"width": "wide"}}, "windows.width: expected integer"),
        ({"reference": {"fasta": "resources/demo/missing.fa"}}, "reference.fasta = 'resources/demo/missing.fa': file not found"),
        ({"models": ["no-such-model"]}, "no model card models/no-such-model.yaml"),
        ({"sae": {"sweep": [{"name": "k8", "kk": 8}]}}, "sae.sweep[0] (k8): unknown key 'kk' for SAEConfig"),
    ],
)
def test_bad_config_gets_one_clear_message(workflow_copy: Path, patch: dict, expected: str) -> None:
    path = _write_config(workflow_copy, patch)
    res = run_snakemake(workflow_copy, "-n", "--configfile", str(path))
    out = res.stdout + res.stderr  # snakemake prints its errors on either stream
    assert res.returncode != 0
    assert expected in out, out
    assert "Traceback" not in out, out


def test_region_on_absent_contig_fails_in_windows_rule(workflow_copy: Path) -> None:
    path = _write_config(workflow_copy, {"regions": [{"name": "x", "contig": "chr5", "start": 0, "end": 1000}],
                                         "cohort": {"enabled": False}})
    res = run_snakemake(workflow_copy, "results/demo/windows/windows.parquet", "--configfile", str(path))
    assert res.returncode != 0
    log = (workflow_copy / "results" / "demo" / "logs" / "windows.log").read_text()
    assert "chr5" in log and "not in the FASTA" in log, log
    assert "Traceback" not in log
    assert not (workflow_copy / "results" / "demo" / "windows" / "windows.parquet").exists()


def test_end_to_end_test_config_twice_gives_identical_report(tmp_path: Path) -> None:
    """The tiny config end to end, twice from clean: every section present and real, and the same
    report.json both times apart from generated_at and the wall-clock timings."""
    wd, again = copy_workflow(tmp_path / "wf"), copy_workflow(tmp_path / "again")
    for workdir in (wd, again):
        res = run_snakemake(workdir, "--configfile", "configs/test.yaml", timeout=900)
        assert res.returncode == 0, res.stderr[-5000:]
    assert report_without_clock(wd / "reports" / "test" / "report.json") == report_without_clock(
        again / "reports" / "test" / "report.json")
    report = json.loads((wd / "reports" / "test" / "report.json").read_text())
    html = (wd / "reports" / "test" / "index.html").read_text()
    for key in ("generated_at", "provenance", "lm", "probes", "sae", "planted", "timings", "audit", "biomarkers",
                "truth_recovery"):
        assert key in report, key
    # the copy has no reports/planted/calibration.json: the report says the planted calibration is absent
    assert report["planted"]["available"] is False and "Planted-motif calibration" in html
    prov = report["provenance"]
    for key in ("config", "inputs", "packages", "seeds", "models", "git_commit"):
        assert key in prov
    assert all(len(h) == 64 for h in prov["inputs"].values())
    assert prov["models"][0]["checkpoint_sha256"] and len(prov["models"][0]["checkpoint_sha256"]) == 64
    lm = report["lm"][0]
    assert lm["heldout_ce"] < lm["baseline_order0_ce"], lm
    probes = pl.DataFrame(report["probes"])
    repeat = probes.filter(pl.col("target") == "repeat")
    best = repeat.filter(pl.col("features") == "embedding")["auroc_mean"].max()
    shuffled = repeat.filter(pl.col("features") == "shuffled")["auroc_mean"].max()
    assert best - shuffled > 0.15, repeat
    assert set(probes["features"].unique()) == {"embedding", "shuffled", "kmer3"}
    sae = report["sae"][0]
    assert sae["fvu"] < 0.3 and sae["l0"] <= sae["k"] and 0 <= sae["dead_fraction"] <= 1
    assert {"timings", "audit"} <= set(report)
    assert {r["rule"].split("/")[0] for r in report["timings"]} >= {"windows", "embed", "probe", "sae"}
    for row in report["audit"]:
        assert row["verdict"] in {"PASS", "FAIL", "NO SIGNAL", "INCONCLUSIVE"}
        assert row["reason"] and row["verdict_rule"] and row["p_within_adjusted"] >= row["p_within"]
    assert "data:image/png;base64," in html and "<img src=\"http" not in html
    # privacy: no per-sample identifiers in the report
    samples = pl.read_csv(wd / "results" / "test" / "cohort" / "input" / "samples.tsv", separator="\t")
    text = json.dumps(report)
    assert not any(s in text or s in html for s in samples["sample_id"].to_list())
