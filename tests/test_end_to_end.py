"""The tiny config end to end, twice from clean (its own file, so that `make test`'s workers start it first)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import yaml

from tests.conftest import copy_workflow, report_without_clock, run_snakemake


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
    # the ancestry markers decide the PCs every verdict conditions on
    assert any(path.endswith("ancestry_panel.vcf.gz") for path in prov["inputs"]), prov["inputs"]
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
    # a changed setting reruns only the rules that read it (and the report, which records the whole config):
    # moving the model or vector caches reran every embedding, SAE and cohort analysis (hf_cache and cache were
    # compared as settings), and probe.n_shuffles reran the SAE-vs-raw comparison, which never reads it
    for patch, reruns in (({"embed": {"hf_cache": str(tmp_path / "hf"), "cache": str(tmp_path / "vectors")}},
                           {"report", "all"}),
                          ({"probe": {"n_shuffles": 2}}, {"probe", "report", "all"})):
        overlay = wd / "configs" / "overlay.yaml"
        overlay.write_text(yaml.safe_dump(patch))
        res = run_snakemake(wd, "-n", "--configfile", "configs/test.yaml", str(overlay))
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        assert set(re.findall(r"^\s*(?:local)?rule (\w+):", out, flags=re.M)) == reruns, (patch, out[-3000:])
