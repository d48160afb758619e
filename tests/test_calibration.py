"""Calibration suite: the rate / interval code against scipy, the grid, the replicate summary on known tables,
and a reduced grid that runs the real stages end to end (simulate -> check -> haplotypes -> ancestry ->
tiny-LM embeddings -> audit -> rank) and checks the gross targets measurable at that size.

Targets are asserted as rates with Clopper-Pearson intervals: "PASS <= 5%" fails only when the interval's
lower bound lies above 5% (the observed count is incompatible with a 5% rate).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from scipy import stats

from interp import calibration as cal
from interp import stages
from interp.config import check_config
from tests.conftest import (
    DEMO_FASTA,
    DEMO_GENES,
    REPO,
    copy_workflow,
    run_snakemake,
    train_small_reference_model,
)

LAYER = "block2"


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize("n", [1, 7, 30, 200])
def test_clopper_pearson_matches_scipy(n):
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        if not 0 <= k <= n:
            continue
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert cal.clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-10)
        ci90 = stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
        assert cal.clopper_pearson(k, n, 0.9) == pytest.approx((ci90.low, ci90.high), abs=1e-10)


def test_rate_carries_count_interval_and_handles_zero_trials():
    r = cal.rate(3, 10)
    assert r["rate"] == 0.3 and r["count"] == 3 and r["n"] == 10
    assert r["ci_low"] < 0.3 < r["ci_high"]
    assert np.isnan(cal.rate(0, 0)["rate"]) and np.isnan(cal.rate(0, 0)["ci_low"])


def test_cluster_se_matches_the_spread_of_the_pooled_rate_under_overdispersion():
    """Correlated tests (beta-binomial counts per replicate): the cluster SE estimates the true SD of the
    pooled rate, which the independent-tests binomial SE underestimates."""
    rng = np.random.default_rng(0)
    totals = rng.integers(800, 1200, size=40)
    ratios, ses, naive = [], [], []
    for _ in range(2000):
        p = rng.beta(2, 198, size=totals.size)  # mean 0.01, replicate-to-replicate variation
        counts = rng.binomial(totals, p)
        ratio = counts.sum() / totals.sum()
        ratios.append(ratio)
        ses.append(cal.cluster_se(counts, totals))
        naive.append(np.sqrt(ratio * (1 - ratio) / totals.sum()))
    assert np.mean(ses) == pytest.approx(np.std(ratios), rel=0.1)
    assert np.mean(naive) < 0.6 * np.std(ratios)
    assert cal.cluster_se(np.array([5, 10]), np.array([100, 200])) == 0.0


# ---------------------------------------------------------------- grid


def test_grid_varies_one_axis_at_a_time():
    cells = cal.grid_cells()
    assert cells[0]["cell"] == "base" and {k: cells[0][k] for k in cal.BASE} == cal.BASE
    names = [c["cell"] for c in cells]
    assert len(names) == len(set(names)) == 1 + sum(len(v) - 1 for v in cal.AXES.values()) == 13
    for c in cells[1:]:
        changed = [k for k in cal.BASE if c[k] != cal.BASE[k]]
        assert changed == [c["axis"]], c
    assert {c["cell"] for c in cells} >= {"odds_ratio=1.2", "frequency=differentiated", "case_fraction=0.1",
                                          "confounding=strong", "labels=absent", "demography=AmericanAdmixture_4B18",
                                          "n=3000"}
    with pytest.raises(ValueError, match="unknown calibration cell"):
        cal.select_cells(["odds_ratio=9"])


def test_cell_cohort_settings():
    cohort = check_config(_config(1), base_dir=REPO)["cohort"]
    base = cal.cell_cohort(cal.select_cells(["base"])[0], cohort)
    assert base["populations"] == {"YRI": 334, "CEU": 333, "CHB": 333}
    assert base["simulate"]["causal"]["odds_ratio"] == 2.0 and base["simulate"]["case_fraction"] == 0.3
    assert base["simulate"]["confounded"]["strength"] == "mild" and base["population_column"] == "population"
    admixed = cal.cell_cohort(cal.select_cells(["demography=AmericanAdmixture_4B18"])[0], cohort)
    assert admixed["populations"] == {"ADMIX": 1000}
    mixed = cal.cell_cohort(cal.select_cells(["admixed_with_sources"])[0], cohort)
    assert mixed["populations"] == {"ADMIX": 600, "AFR": 200, "EUR": 200}
    assert mixed["population_column"] is None and mixed["simulate"]["demography"] == "AmericanAdmixture_4B18"
    absent = cal.cell_cohort(cal.select_cells(["labels=absent"])[0], cohort)
    assert absent["population_column"] is None and absent["simulate"]["labels"] == "absent"
    strong = cal.cell_cohort(cal.select_cells(["confounding=strong"])[0], cohort)
    assert strong["simulate"]["causal"]["confounding"] == "strong"
    assert strong["simulate"]["confounded"]["strength"] == "strong"
    # a user's ancestry odds ratio (admixed model only) is the cell axis's to set, as prevalence is: left in,
    # every discrete-population cell's simulation refused it
    from interp.cohort.simulate import simulation_config

    user = {**cohort, "simulate": {**cohort.get("simulate", {}), "confounded": {"ancestry_odds_ratio": 2.0}}}
    for name in ("base", "demography=AmericanAdmixture_4B18"):
        sim = cal.cell_cohort(cal.select_cells([name])[0], user)["simulate"]
        assert sim["confounded"]["ancestry_odds_ratio"] is None
        simulation_config(sim, cal.cell_cohort(cal.select_cells([name])[0], user)["populations"])


# ---------------------------------------------------------------- one replicate's summary


def _bio(with_family: bool) -> pl.DataFrame:
    rows = [
        # phenotype, feature, kind, model, layer, p, q, contig, start, end
        ("causal", "chr17:1001:A:G", "variant", "", "", 1e-6, 1e-4, "chr17", 1000, 1001),  # the causal variant
        ("causal", "chr17:9001:C:T", "variant", "", "", 1e-4, 0.01, "chr17", 9000, 9001),  # far: false
        ("causal", "m/b/w0/dim1", "embedding", "m", "b", 1e-3, 0.2, "chr17", 500, 1500),  # in window, q > .05
        ("causal", "m/b/w0/dim2", "embedding", "m", "b", 1e-2, 0.3, "chr17", 500, 1500),
        ("causal", "m/b/w1/dim1", "embedding", "m", "b", 1e-5, 0.001, "chr17", 1500, 2000),  # near: true
        ("null", "chr17:1001:A:G", "variant", "", "", 5e-3, 0.5, "chr17", 1000, 1001),
        ("null", "chr17:9001:C:T", "variant", "", "", 0.5, 0.9, "chr17", 9000, 9001),
        ("null", "m/b/w0/dim1", "embedding", "m", "b", 5e-4, 0.04, "chr17", 500, 1500),
        ("null", "m/b/w0/dim2", "embedding", "m", "b", float("nan"), float("nan"), "chr17", 500, 1500),
    ]
    frame = pl.DataFrame(rows, schema=["phenotype", "feature", "kind", "model", "layer", "p", "q", "contig",
                                       "start", "end"], orient="row")
    if with_family:
        frame = frame.with_columns(pl.when(pl.col("kind") == "variant").then(pl.lit("variants"))
                                   .otherwise(pl.lit("embedding:m/b")).alias("family"))
    return frame


TRUTH = {"causal_variant": {"contig": "chr17", "pos": 1001, "ref": "A", "alt": "G", "freq": {"YRI": 0.3}},
         "phenotypes": {"realised_case_fraction": {"causal": {"all": 0.31}}}, "n_samples": 100}
AUDIT = pl.DataFrame({"phenotype": ["causal", "confounded", "null"], "model": ["m"] * 3, "layer": ["b"] * 3,
                      "verdict": ["PASS", "FAIL", "NO SIGNAL"]})


@pytest.mark.parametrize("with_family", [False, True])
def test_summarise_replicate_on_a_known_table(with_family):
    s = cal.summarise_replicate(AUDIT, _bio(with_family), TRUTH, alpha=0.05, near_bp=500)
    assert s["verdicts"]["null"] == [{"model": "m", "layer": "b", "verdict": "NO SIGNAL"}]
    assert s["variant"] == {"id": "chr17:1001:A:G", "tested": True, "p": 1e-6, "q": 1e-4, "hit": True}
    # the top model feature in the causal window is dim1 (p 1e-3) whose q 0.2 misses
    assert s["feature"]["feature"] == "m/b/w0/dim1" and s["feature"]["hit"] is False
    # discoveries: the causal variant, the far variant (false) and the neighbouring window (within 500 bp)
    assert s["discoveries"]["n"] == 3 and s["discoveries"]["false"] == 1
    assert s["discoveries"]["fdp"] == pytest.approx(1 / 3)
    assert s["type1"]["all"] == {"n_tests": 3, "0.01": 2, "0.001": 1, "0.0001": 0}
    assert sum(f["n_tests"] for k, f in s["type1"].items() if k != "all") == 3
    assert s["null_discoveries"] == 1
    tight = cal.summarise_replicate(AUDIT, _bio(with_family), TRUTH, near_bp=0)
    assert tight["discoveries"]["false"] == 2


def test_summarise_replicate_is_the_same_text_every_time():
    """A replicate summary is written as JSON without sorted keys (the calibration archive, a re-audited
    replicate): its discoveries per family must come in one order, not polars' group_by order, which
    changes from call to call."""
    families = ["variants", "embedding:m/b0", "embedding:m/b1", "embedding:m/b2", "sae:m/b1", "variant_effect:m"]
    rows = [("causal", f"{fam}/f{i}", "variant" if fam == "variants" else "embedding", 1e-6, 1e-4, "chr17",
             1000 + i, 1001 + i, fam) for fam in families for i in range(3)]
    bio = pl.DataFrame(rows, schema=["phenotype", "feature", "kind", "p", "q", "contig", "start", "end", "family"],
                       orient="row")
    texts = {json.dumps(cal.summarise_replicate(AUDIT, bio, TRUTH)) for _ in range(8)}
    assert len(texts) == 1
    by_family = cal.summarise_replicate(AUDIT, bio, TRUTH)["discoveries"]["by_family"]
    assert list(by_family) == sorted(families) and set(by_family.values()) == {3}


def test_summarise_replicate_without_rank():
    """Replicates past `calibration.rank_replicates` have verdicts but no rank keys; the table pools rank
    statistics over the ranked replicates only and says how many."""
    s = cal.summarise_replicate(AUDIT, None, TRUTH)
    assert s["ranked"] is False and s["variant"] is None and s["type1"] is None
    assert s["verdicts"]["confounded"] == [{"model": "m", "layer": "b", "verdict": "FAIL"}]
    ranked = _summary("base", 0, "PASS", True, 0.0, 3, 100)
    unranked = {**_summary("base", 1, "FAIL", False, 0.0, 0, 100), "variant": None, "feature": None,
                "discoveries": None, "type1": None, "null_discoveries": None}
    rows = cal.calibration_table([ranked, unranked])
    assert rows[0]["n_replicates"] == 2 and rows[0]["n_ranked_replicates"] == 1
    assert rows[0]["verdict_rates"]["FAIL"] == cal.rate(1, 2)
    assert rows[0]["power_variant"] == cal.rate(1, 1)
    assert rows[2]["type1"]["0.01"]["count"] == 3 and rows[2]["type1"]["0.01"]["n"] == 100
    assert cal.table_frame(rows)["n_ranked_replicates"].to_list() == [1, 1, 1]


def _summary(cell: str, replicate: int, verdict: str, hit: bool, fdp: float, k: int, n: int) -> dict:
    verdicts = {p: [{"model": "m", "layer": "b", "verdict": verdict}] for p in cal.TRUTHS}
    return {"cell": cell, "axis": "base", "value": "base", "replicate": replicate, "verdicts": verdicts,
            "variant": {"hit": hit}, "feature": {"hit": not hit}, "seconds": 1.0,
            "discoveries": {"n": 4, "false": round(4 * fdp), "fdp": fdp}, "null_discoveries": int(hit),
            "type1": {"all": {"n_tests": n, "0.01": k, "0.001": 0, "0.0001": 0}}}


def test_calibration_table_pools_replicates():
    reps = [_summary("base", r, "PASS" if r < 3 else "FAIL", r % 2 == 0, 0.25 * (r % 2), r, 100) for r in range(5)]
    rows = cal.calibration_table(reps)
    assert [r["truth"] for r in rows] == ["causal", "ancestry-only", "null"]
    causal = rows[0]
    assert causal["n_replicates"] == 5 and causal["verdict_rates"]["PASS"] == cal.rate(3, 5)
    assert causal["verdict_rates"]["FAIL"] == cal.rate(2, 5)
    assert causal["power_variant"] == cal.rate(3, 5) and causal["power_feature"] == cal.rate(2, 5)
    assert causal["fdr"]["fdr"] == pytest.approx(0.1)
    t = rows[2]["type1"]["0.01"]
    assert (t["count"], t["n"]) == (10, 500) and t["rate"] == 0.02
    assert t["cluster_se"] == pytest.approx(cal.cluster_se(np.arange(5), np.full(5, 100)))
    assert rows[2]["null_any_discovery"] == cal.rate(3, 5)
    frame = cal.table_frame(rows)
    assert {"PASS", "FAIL", "power_variant", "type1_0.01", "fdr"} <= set(frame.columns)


def test_code_versions_count_the_replicates_each_commit_made_through_pooling():
    """A cell pooled from runs of different code says how many replicates each commit made; summaries from
    before the `code` key (or outside git) count as unrecorded, through `pool_with_prior` too."""
    def made_by(rep: dict, commit: str | None, dirty: bool = False) -> dict:
        return {**rep, "code": {"git_commit": commit, "git_dirty": dirty}}

    old = [_summary("base", r, "PASS", False, 0.0, 0, 10) for r in range(2)] + \
        [made_by(_summary("base", 2, "PASS", False, 0.0, 0, 10), "a" * 40)]
    rows = cal.calibration_table(old)
    assert rows[0]["code_versions"] == {"aaaaaaaaaaaa": 1, "unrecorded": 2}
    new = [_unranked(made_by(_summary("base", r, "FAIL", False, 0.0, 0, 10), "b" * 40, dirty=r == 4))
           for r in (3, 4)] + [_unranked(made_by(_summary("base", 5, "FAIL", False, 0.0, 0, 10), None))]
    pooled = cal.pool_with_prior(cal.calibration_table(new), rows, {"base": 3})
    assert pooled[0]["code_versions"] == {"aaaaaaaaaaaa": 1, "bbbbbbbbbbbb": 1, "bbbbbbbbbbbb+dirty": 1,
                                          "unrecorded": 3}
    legacy = [{k: v for k, v in r.items() if k != "code_versions"} for r in rows]  # a table from before the key
    assert cal.pool_with_prior([], legacy, {})[0]["code_versions"] == {"unrecorded": 3}
    assert cal.table_frame(pooled)["code_versions"][0] == \
        "aaaaaaaaaaaa (1); bbbbbbbbbbbb (1); bbbbbbbbbbbb+dirty (1); unrecorded (3)"


def test_code_version_is_the_one_the_process_started_with(monkeypatch):
    """A long-lived calibration worker keeps the modules it imported: a commit made while it runs must not
    be recorded as the code of its later replicates."""
    from interp.report import provenance

    cal.code_version.cache_clear()
    monkeypatch.setattr(provenance, "git_commit", lambda repo=".": "c" * 40)
    monkeypatch.setattr(provenance, "git_dirty", lambda repo=".": False)
    first = cal.code_version()
    monkeypatch.setattr(provenance, "git_commit", lambda repo=".": "d" * 40)
    monkeypatch.setattr(provenance, "git_dirty", lambda repo=".": True)
    assert cal.code_version() == first == {"git_commit": "c" * 40, "git_dirty": False}
    cal.code_version.cache_clear()


def test_gather_writes_strict_json_tsv_report_and_plots(tmp_path):
    files = []
    for r in range(4):
        files.append(tmp_path / "reps" / f"{r}.json")
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].write_text(json.dumps(_summary("base", r, "NO SIGNAL" if r else "PASS", True, 0.0, r, 50)))
    single = tmp_path / "single.json"
    single.write_text(json.dumps(_summary("labels=absent", 0, "FAIL", False, 0.5, 0, 10)))
    out = {"tsv": tmp_path / "c.tsv", "json": tmp_path / "c.json", "report": tmp_path / "report" / "report.md"}
    cal.gather([*files, single], out, meta={"near_bp": 500})

    def refuse(constant):
        raise ValueError(constant)

    data = json.loads(out["json"].read_text(), parse_constant=refuse)  # no NaN / Infinity tokens
    assert data["meta"]["n_replicate_files"] == 5 and len(data["rows"]) == 6
    absent_null = data["rows"][5]
    assert absent_null["cell"] == "labels=absent" and absent_null["type1"]["0.01"]["cluster_se"] is None
    assert pl.read_csv(out["tsv"], separator="\t").height == 6
    assert "| base | null | 4 |" in out["report"].read_text()
    assert (out["report"].parent / "verdicts.png").exists()
    # the same from the command line, for partial results of a running suite
    from interp.cli import main

    assert main(["calibration-gather", str(tmp_path / "reps" / ".."), str(tmp_path / "cli")]) == 0
    assert json.loads((tmp_path / "cli" / "calibration.json").read_text())["meta"]["n_replicate_files"] == 4
    assert main(["calibration-gather", str(tmp_path / "nothing"), str(tmp_path / "cli2")]) == 2


def test_gather_that_fails_in_its_plots_leaves_the_earlier_tables(tmp_path, monkeypatch):
    """gather wrote calibration.json and .tsv before the plots: a plotting failure left new tables beside the
    earlier report.md."""
    f = tmp_path / "reps" / "0.json"
    f.parent.mkdir()
    f.write_text(json.dumps(_summary("base", 0, "PASS", True, 0.0, 0, 50)))
    out = {"tsv": tmp_path / "c.tsv", "json": tmp_path / "c.json", "report": tmp_path / "report" / "report.md"}
    for key in out:
        out[key].parent.mkdir(exist_ok=True)
        out[key].write_text("earlier")

    def broken(rows, folder):
        raise RuntimeError("no display")

    monkeypatch.setattr(cal, "write_plots", broken)
    with pytest.raises(RuntimeError):
        cal.gather([f], out, meta={})
    assert all(out[key].read_text() == "earlier" for key in out)


def _unranked(summary: dict) -> dict:
    return {**summary, "variant": None, "feature": None, "discoveries": None, "type1": None,
            "null_discoveries": None}


def test_pooling_with_an_earlier_table_equals_pooling_all_summaries(tmp_path):
    """A table of replicates 0..5 (rank in 0..2) pooled with summaries 6..11 gives the verdict rates, counts and
    intervals of one table over all 12, and the rank statistics of the ranked replicates; pooling the result
    again with the same summaries is refused (it would count them twice), from the command line too."""
    verdicts = ["PASS", "FAIL", "NO SIGNAL", "PASS", "INCONCLUSIVE", "PASS"] * 2
    reps = [_summary("base", r, v, r % 2 == 0, 0.25, r, 100) if r < 3 else _unranked(_summary("base", r, v, False,
                                                                                              0.0, 0, 100))
            for r, v in enumerate(verdicts)]
    reps.append(_summary("labels=absent", 0, "FAIL", True, 0.0, 1, 10))  # a cell only the earlier table has
    earlier = {"meta": {"n_replicate_files": 7}, "rows": cal.calibration_table(reps[:6] + reps[12:])}
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps(earlier))
    files = []
    for rep in reps[6:12]:
        files.append(tmp_path / "reps" / "base" / f"{rep['replicate']}.json")
        files[-1].parent.mkdir(parents=True, exist_ok=True)
        files[-1].write_text(json.dumps(rep))
    out = {"tsv": tmp_path / "c.tsv", "json": tmp_path / "c.json", "report": tmp_path / "report" / "report.md"}
    pooled = cal.gather(files, out, prior=prior)
    whole = cal.calibration_table(reps)
    assert [(r["cell"], r["truth"]) for r in pooled] == [(r["cell"], r["truth"]) for r in whole]
    for p_row, w_row in zip(pooled, whole, strict=True):
        for key in ("n_replicates", "n_verdicts", "verdict_rates", "n_ranked_replicates", "power_variant",
                    "power_feature", "fdr"):
            same = json.dumps(p_row[key], sort_keys=True) == json.dumps(w_row[key], sort_keys=True)  # NaN == NaN
            assert same, (p_row["cell"], p_row["truth"], key)
        if w_row["type1"]:
            assert p_row["type1"]["0.01"]["count"] == w_row["type1"]["0.01"]["count"]
    assert pooled[0]["n_replicates_prior"] == 6 and pooled[0]["verdict_rates"]["PASS"] == cal.rate(6, 12)
    meta = json.loads(out["json"].read_text())["meta"]
    assert meta["prior"]["path"] == str(prior) and len(meta["prior"]["sha256"]) == 64
    assert "pooled with an earlier table" in out["report"].read_text()
    with pytest.raises(ValueError, match="twice"):
        cal.gather(files, {k: tmp_path / "again" / Path(v).name for k, v in out.items()}, prior=out["json"])
    from interp.cli import main

    assert main(["calibration-gather", str(tmp_path / "reps"), str(tmp_path / "cli"), "--prior",
                 str(out["json"])]) == 2
    assert not (tmp_path / "cli" / "calibration.json").exists()
    # both sides ranked: rank statistics cannot be pooled from a table
    ranked_new = [_summary("base", 6, "PASS", True, 0.0, 1, 100)]
    with pytest.raises(ValueError, match="rank"):
        cal.pool_with_prior(cal.calibration_table(ranked_new), earlier["rows"], {"base": 6})



def test_pooling_refuses_a_replicate_behind_a_failed_one_and_duplicates():
    """An earlier table whose replicate 2 failed (no matching variant) holds 3 replicates, 0, 1 and 3: new
    summaries from 3 on would count replicate 3 twice (the count alone, 3, let them through) and are refused;
    from 4 on they pool. The same replicate twice among the summaries of one cell is refused too."""
    earlier = cal.calibration_table([_summary("base", r, "PASS", False, 0.0, 0, 10) for r in (0, 1, 3)])
    assert earlier[0]["n_replicates"] == 3 and earlier[0]["replicates"] == [0, 3]
    again = cal.calibration_table([_unranked(_summary("base", 3, "FAIL", False, 0.0, 0, 10))])
    with pytest.raises(ValueError, match="twice"):
        cal.pool_with_prior(again, earlier, {"base": 3})
    later = cal.calibration_table([_unranked(_summary("base", r, "FAIL", False, 0.0, 0, 10)) for r in (4, 5)])
    pooled = cal.pool_with_prior(later, earlier, {"base": 4})
    assert pooled[0]["n_replicates"] == 5 and pooled[0]["replicates"] == [0, 5]
    assert pooled[0]["verdict_rates"]["PASS"] == cal.rate(3, 5)
    with pytest.raises(ValueError, match="more than once"):
        cal.calibration_table([_summary("base", 1, "PASS", False, 0.0, 0, 10)] * 2)


def test_pooling_refuses_a_pooled_table_that_does_not_record_its_replicates():
    """A cell pooled from an earlier table's replicates 0.. and later summaries after a gap (as OR 1.2 was until
    2026-12-05: 0-16 from 2026-11-25 with summaries 20-53, 51 replicates) ends beyond its count: without its
    [first, last] its n_replicates says nothing of where it ends, so new summaries from n_replicates on would
    count the last ones twice. Such a table is refused as a prior; with its range the new replicate is refused as
    already held; a plain earlier table without ranges (replicates 0.. of each cell) still pools. (The committed
    table no longer holds such a cell: every pooled cell was rerun whole, so the case is built here.)"""
    earliest = [{k: v for k, v in r.items() if k != "replicates"}
                for r in cal.calibration_table([_summary("base", r, "PASS", False, 0.0, 0, 10) for r in range(17)])]
    after_gap = cal.calibration_table([_unranked(_summary("base", r, "FAIL", False, 0.0, 0, 10))
                                       for r in range(20, 54)])
    ranged = cal.pool_with_prior(after_gap, earliest, {"base": 20})
    assert {(r["n_replicates"], tuple(r["replicates"])) for r in ranged} == {(51, (0, 53))}
    first_new = 51  # n_replicates: replicate 51 is held already
    committed = [{k: v for k, v in r.items() if k != "replicates"} for r in ranged]
    new = cal.calibration_table([_unranked(_summary("base", first_new, "PASS", False, 0.0, 0, 10))])
    with pytest.raises(ValueError, match="does not record"):
        cal.pool_with_prior(new, committed, {"base": first_new})
    with pytest.raises(ValueError, match="already holds"):
        cal.pool_with_prior(new, ranged, {"base": first_new})
    plain = [{k: v for k, v in r.items() if k != "replicates"}
             for r in cal.calibration_table([_summary("base", r, "PASS", False, 0.0, 0, 10) for r in range(3)])]
    later = cal.calibration_table([_unranked(_summary("base", 3, "FAIL", False, 0.0, 0, 10))])
    assert cal.pool_with_prior(later, plain, {"base": 3})[0]["n_replicates"] == 4


def test_gather_command_skips_the_temporary_file_of_a_summary_being_written(tmp_path):
    """calibration-gather runs while replicates are still written: a summary's temporary sibling
    (interp.io.atomic_path: .<name>.tmp<pid>.json, half written, or whole but not yet renamed) is not a
    summary of its own."""
    from interp.cli import main

    reps = tmp_path / "reps" / "base"
    reps.mkdir(parents=True)
    for r in range(2):
        (reps / f"{r}.json").write_text(json.dumps(_summary("base", r, "PASS", False, 0.0, 0, 10)))
    (reps / ".1.json.tmp4242.json").write_text(json.dumps(_summary("base", 1, "PASS", False, 0.0, 0, 10)))
    (reps / ".2.json.tmp4243.json").write_text('{"cell": "base", "repl')
    assert main(["calibration-gather", str(tmp_path / "reps"), str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert data["meta"]["n_replicate_files"] == 2 and data["rows"][0]["n_replicates"] == 2


def test_archived_summary_is_written_atomically(tmp_path, monkeypatch):
    """summary.json marks an archived replicate as complete (oracle_rows, --reaudit read it): a write cut
    short leaves the earlier summary whole, not a truncated file."""
    archive, work, emb = tmp_path / "archive", tmp_path / "work", tmp_path / "emb"
    for folder in (archive, work, emb):
        folder.mkdir()
    (archive / "summary.json").write_text(json.dumps({"replicate": 0, "before": True}))
    original = Path.write_text

    def cut_short(self, text, *args, **kwargs):
        original(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError("no space left on device")

    monkeypatch.setattr(Path, "write_text", cut_short)
    with pytest.raises(OSError):
        cal._archive(work, emb, archive, {"replicate": 0, "before": False, "verdicts": {"causal": []}})
    monkeypatch.undo()
    assert json.loads((archive / "summary.json").read_text()) == {"replicate": 0, "before": True}


def test_superseded_cells_are_replaced_not_pooled(tmp_path):
    """A cell whose simulation changed is rerun from replicate 0: with supersede its earlier rows are dropped
    and the table equals one over the new summaries alone (other cells of the earlier table are kept); without
    supersede the overlap is refused; an unknown cell, or supersede without a prior, is refused too."""
    old = [_summary("labels=absent", r, "PASS", False, 0.0, 0, 10) for r in range(4)]
    kept = [_summary("base", r, "FAIL", False, 0.0, 0, 10) for r in range(3)]
    earlier = {"meta": {}, "rows": cal.calibration_table(old + kept)}
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps(earlier))
    new = [_unranked(_summary("labels=absent", r, v, False, 0.0, 0, 10))
           for r, v in enumerate(["NO SIGNAL", "NO SIGNAL", "PASS"])]
    files = []
    for rep in new:
        files.append(tmp_path / "reps" / rep["cell"] / f"{rep['replicate']}.json")
        files[-1].parent.mkdir(parents=True, exist_ok=True)
        files[-1].write_text(json.dumps(rep))
    out = {"tsv": tmp_path / "c.tsv", "json": tmp_path / "c.json", "report": tmp_path / "report" / "report.md"}
    with pytest.raises(ValueError, match="twice"):
        cal.gather(files, out, prior=prior)
    rows = {(r["cell"], r["truth"]): r for r in cal.gather(files, out, prior=prior, supersede=("labels=absent",))}
    alone = {(r["cell"], r["truth"]): r for r in cal.calibration_table(new)}
    for key, row in alone.items():
        assert rows[key]["verdict_rates"] == row["verdict_rates"] and rows[key]["n_replicates"] == 3
        assert rows[key]["n_replicates_prior"] == 0
    assert rows[("base", "causal")]["n_replicates"] == 3  # untouched cells of the earlier table stay
    assert json.loads(out["json"].read_text())["meta"]["superseded_cells"] == ["labels=absent"]
    with pytest.raises(ValueError, match="not in the earlier table"):
        cal.gather(files, out, prior=prior, supersede=("odds_ratio=3",))
    with pytest.raises(ValueError, match="give prior"):
        cal.gather(files, out, supersede=("labels=absent",))
    from interp.cli import main

    assert main(["calibration-gather", str(tmp_path / "reps"), str(tmp_path / "cli"), "--prior", str(prior),
                 "--supersede", "labels=absent"]) == 0
    assert "--supersede labels=absent" in json.loads((tmp_path / "cli" / "calibration.json").read_text())["meta"][
        "command"]


# ---------------------------------------------------------------- the workflow target


def test_calibration_target_builds_its_dag(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    overlay = tmp_path / "cal.yaml"
    overlay.write_text(yaml.safe_dump({"calibration": {"replicates": 3, "cells": ["base", "labels=absent"]}}))
    result = run_snakemake(wf, "-n", "-p", "calibration", "--configfile", "configs/calibration.yaml", str(overlay))
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"calibration_replicate\s+6\b", result.stdout), result.stdout[-2000:]
    # the replicate jobs get the redraw count the stage uses: the default by omission (so replicates run before
    # the key existed keep their params), any other value explicitly
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["calibration"]["properties"]["null_redraws"]["default"] == cal.NULL_REDRAWS

    def calibration_params(stdout: str) -> list[dict]:
        found = re.findall(r"interp\.cli stage calibration_replicate (.*?) > ", stdout)
        return [json.loads(shlex.split(m)[0])["params"]["config"]["calibration"] for m in found]

    assert all("null_redraws" not in c for c in calibration_params(result.stdout))
    # of embed and sae a replicate gets only what it reads: the whole sections made an atlas page size, a sweep
    # SAE or a cache folder rerun every replicate of the suite
    config = json.loads(shlex.split(re.findall(r"interp\.cli stage calibration_replicate (.*?) > ",
                                               result.stdout)[0])[0])["params"]["config"]
    assert set(config["embed"]) == {"batch_size", "device"} and config["sae"] == {"layer": "block2"}
    overlay.write_text(yaml.safe_dump({"calibration": {"replicates": 1, "cells": ["base"], "null_redraws": 5}}))
    result = run_snakemake(wf, "-n", "-p", "calibration", "--configfile", "configs/calibration.yaml", str(overlay))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [c["null_redraws"] for c in calibration_params(result.stdout)] == [5]


# ---------------------------------------------------------------- reduced grid, real stages


def _config(seed: int) -> dict:
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    overlay = yaml.safe_load((REPO / "configs" / "calibration.yaml").read_text())
    for key, value in overlay.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    cfg.update({"seed": seed})
    cfg["reference"].update({"fasta": str(DEMO_FASTA), "annotation": str(DEMO_GENES)})
    cfg["audit"].update({"max_null_replicates": 199, "bootstrap": 20})
    cfg["rank"].update({"resamples": 2})
    cfg["cohort"]["simulate"]["ancestry_panel"] = {"loci": 60, "locus_length": 5000}
    return cfg


def _job(inputs: dict, outputs: dict, params: dict) -> stages.Job:
    return stages.Job(input={k: str(v) for k, v in inputs.items()}, output={k: str(v) for k, v in outputs.items()},
                      params=params, threads=1)


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory) -> dict:
    """The built-in LM (small) and a TopK SAE on its block2 tokens, trained once for all replicates."""
    cfg = check_config(_config(7), base_dir=REPO)
    model = train_small_reference_model(tmp_path_factory.mktemp("calibration_model"), cfg, LAYER)
    return {"fasta": DEMO_FASTA, "annotation": DEMO_GENES, "card": model["card"], "checkpoint": model["checkpoint"],
            "sae": model["sae"], "model": "tiny-dnalm", "layers": [LAYER]}


def _run_grid(shared: dict, out: Path, cells: list[str], n: int, replicates: int) -> list[Path]:
    cfg = check_config(_config(7), base_dir=REPO)
    files = []
    for name in cells:
        for r in range(replicates):
            files.append(out / name / f"{r}.json")
            # the rule's stage, as Snakemake calls it; `n` shrinks the cell's cohort; replicate 0 is archived
            # (workflow/scripts/calibration_local.py --archive) for the re-audit test
            stages.calibration_replicate(_job(
                {k: shared[k] for k in ("fasta", "annotation", "card", "checkpoint", "sae")}, {"summary": files[-1]},
                {"cell": name, "replicate": r, "seed": cfg["calibration"]["seed"] + r, "n": n, "model": shared["model"],
                 "layers": shared["layers"], "config": cfg, "workdir": str(out / "work" / name / str(r)),
                 **({"archive": str(out / "archive" / name / "0")} if r == 0 else {})}))
    return files


REDUCED = ["base", "labels=absent", "demography=AmericanAdmixture_4B18"]


@pytest.fixture(scope="module")
def reduced(shared_model, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reduced")
    files = _run_grid(shared_model, out, REDUCED, n=120, replicates=2)
    paths = {"tsv": out / "calibration.tsv", "json": out / "calibration.json", "report": out / "report" / "report.md"}
    rows = cal.gather(files, paths, meta={"near_bp": 500, "command": "tests/test_calibration.py"})
    return {"files": files, "rows": rows, "paths": paths}


def _not_above(r: dict | None, level: float) -> bool:
    """The count is compatible with a rate <= level (the 95% interval's lower bound is at most level)."""
    return r is None or r["ci_low"] <= level


def test_reduced_grid_machinery(reduced):
    reps = [json.loads(p.read_text()) for p in reduced["files"]]
    assert len(reps) == 6
    for rep in reps:
        assert rep["variant"]["tested"], rep["variant"]  # the planted variant reached rank
        assert rep["settings"]["n"] == rep["truth"]["n_samples"] == 120
        assert all(len(rep["verdicts"][p]) == 1 for p in cal.TRUTHS)
        assert rep["type1"]["all"]["n_tests"] > 100
        redraw = rep["type1_redraw"]  # calibration.null_redraws fresh null phenotypes on the same features
        assert redraw["draws"] == 20 and redraw["all"]["n_tests"] > 10 * rep["type1"]["all"]["n_tests"]
        assert set(rep["stage_seconds"]) == {"simulate_cohort", "place_cohort", "check_cohort", "haplotypes", "ancestry",
                                             "embed_cohort", "audit", "rank"}
        assert set(rep["code"]) == {"git_commit", "git_dirty"}  # which code made it (None outside git)
    admixed = [r for r in reps if r["cell"].startswith("demography=")]
    assert all(r["truth"]["ancestry_sd"]["AFR"] > 0 for r in admixed)
    rows = reduced["rows"]
    assert [(r["cell"], r["truth"]) for r in rows] == [(c, t) for c in REDUCED for t in cal.TRUTHS.values()]
    for r in rows:
        assert r["n_replicates"] == 2 and sum(v["count"] for v in r["verdict_rates"].values()) == r["n_verdicts"] == 2
        for v in r["verdict_rates"].values():
            assert v["ci_low"] <= v["rate"] <= v["ci_high"]
    data = json.loads(reduced["paths"]["json"].read_text())
    assert data["rows"][0]["verdict_rates"] and "type1" in data["rows"][2]
    assert data["rows"][2]["type1_redraw"]["n_replicates"] == 2 and "type1_redraw_0.01" in pl.read_csv(
        reduced["paths"]["tsv"], separator="\t").columns
    tsv = pl.read_csv(reduced["paths"]["tsv"], separator="\t")
    assert tsv.height == 9
    report = reduced["paths"]["report"]
    assert "| cell |" in report.read_text()
    assert all((report.parent / f).stat().st_size > 1000 for f in ("verdicts.png", "power.png", "type1.png"))


def test_reaudit_of_an_archived_replicate_reproduces_its_summary(reduced):
    """An archived replicate re-audited by the same code gives the same verdicts and the same rank counts."""
    first = reduced["files"][0]
    archive = first.parent.parent / "archive" / "base" / "0"
    assert {p.name for p in archive.iterdir()} >= {"truth.json", "bio.parquet", "summary.json",
                                                    f"{LAYER}.samples.h5ad"}
    cfg = check_config(_config(7), base_dir=REPO)
    again = cal.reaudit_replicate(archive, cfg, None)
    before = json.loads(first.read_text())
    assert again["reaudited"] is True
    assert again["verdicts"] == before["verdicts"]
    # the re-audited verdicts are credited to the code that recomputed them, not to the archived run's commit
    cal.code_version.cache_clear()
    archived = json.loads((archive / "summary.json").read_text())
    (archive / "summary.json").write_text(json.dumps({**archived, "code": {"git_commit": "0" * 40, "git_dirty": False}}))
    try:
        assert cal.reaudit_replicate(archive, cfg, None)["code"] == cal.code_version() != {"git_commit": "0" * 40,
                                                                                          "git_dirty": False}
    finally:
        (archive / "summary.json").write_text(json.dumps(archived))
    assert again["type1"] == before["type1"] and again["variant"] == before["variant"]


def test_reduced_grid_gross_targets(reduced):
    """At n = 120 and 2 replicates per cell (3 until the thirty-seventh session: `make test`'s time), only gross
    violations are detectable: summed over the reduced cells, null and ancestry-only phenotypes must not be
    PASSed, nor null FAILed, at a rate incompatible with 5%."""
    rows = reduced["rows"]
    for truth, verdict in (("null", "PASS"), ("null", "FAIL"), ("ancestry-only", "PASS")):
        sub = [r for r in rows if r["truth"] == truth]
        k = sum(r["verdict_rates"].get(verdict, {"count": 0})["count"] for r in sub)
        n = sum(r["n_verdicts"] for r in sub)
        assert _not_above(cal.rate(k, n), 0.05), (truth, verdict, k, n)


@pytest.mark.slow
def test_base_cells_at_full_size(shared_model, tmp_path):
    """Issue 7's targets on the base cell and the labels-absent / mild-confounding cells at n = 1,000,
    10 replicates each (30 replicates of about 45 CPU seconds: about 25 minutes on one core)."""
    files = _run_grid(shared_model, tmp_path, ["base", "labels=absent", "confounding=mild"], n=1000, replicates=10)
    rows = cal.calibration_table([json.loads(p.read_text()) for p in files])
    for r in rows:
        rates = r["verdict_rates"]
        if r["truth"] == "causal":
            assert _not_above(rates.get("FAIL"), 0.05), r
            passed = rates.get("PASS", cal.rate(0, r["n_verdicts"]))
            assert passed["ci_high"] >= 0.8, r
        else:
            assert _not_above(rates.get("PASS"), 0.05), r
        if r["truth"] == "null":
            assert _not_above(rates.get("FAIL"), 0.05), r


def test_null_redraws_are_calibrated_on_independent_features(tmp_path):
    """`null_redraw_type1` tests fresh null phenotypes as rank does: on independent features (50 variants at
    MAF 0.05-0.5, 300 window features) and 40 draws, the counts below 1e-2 and 1e-3 (14,000 independent
    tests) fall inside the 99.9% binomial interval of the nominal level, as do the per-family counts."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(11)
    n, n_var, n_feat = 500, 50, 300
    samples = [f"S{i:04d}" for i in range(n)]
    maf = rng.uniform(0.05, 0.5, n_var)
    dosage = rng.binomial(2, maf, size=(n, n_var)).astype(np.float32)
    var = pd.DataFrame({"contig": "chr1", "pos": np.arange(n_var) * 100 + 1},
                       index=[f"chr1:{k * 100 + 1}:A:G" for k in range(n_var)])
    obs = pd.DataFrame({"null": rng.binomial(1, 0.3, n), "sex": rng.integers(0, 2, n)}, index=samples)
    geno = ad.AnnData(X=dosage, obs=obs, var=var, layers={"dosage": dosage},
                      obsm={"X_pca": rng.normal(size=(n, 5))})
    geno.write_h5ad(tmp_path / "geno.h5ad")
    emb = tmp_path / "emb"
    emb.mkdir()
    wvar = pd.DataFrame({"contig": "chr1", "start": np.repeat(np.arange(10) * 1000, 30),
                         "end": np.repeat(np.arange(10) * 1000 + 1000, 30), "dim": np.tile(np.arange(30), 10)},
                        index=[f"w{k}" for k in range(n_feat)])
    table = ad.AnnData(X=rng.normal(size=(n, n_feat)).astype(np.float32), obs=pd.DataFrame(index=samples), var=wvar,
                       uns={"kind": "embedding", "model": "m", "layer": "b"})
    table.write_h5ad(emb / "b.windows.h5ad")
    out = cal.null_redraw_type1(tmp_path / "geno.h5ad", [emb], ["sex"], "refuse", {"min_carriers": 10}, 40, 3)
    assert out["draws"] == 40 and set(out) == {"draws", "variant", "embedding:m/b", "all"}
    assert out["all"]["n_tests"] == 40 * (n_var + n_feat)
    for family in ("all", "embedding:m/b"):
        for level in (1e-2, 1e-3):
            k, total = out[family][f"{level:g}"], out[family]["n_tests"]
            low, high = cal.clopper_pearson(k, total, 0.999)
            assert low <= level <= high, (family, level, k, total)


# ------------------------------------------------------------------------------------------ oracle


def _oracle_cohort(rng: np.random.Generator, n_per: int, odds_ratio: float, labels: bool = True):
    """Three populations with a differentiated causal variant (0.1 / 0.3 / 0.6) and ancestry-dependent
    prevalence: the dosage is confounded unless ancestry is adjusted for."""
    import anndata as ad
    import pandas as pd

    pops = np.repeat(["A", "B", "C"], n_per)
    freq = {"A": 0.1, "B": 0.3, "C": 0.6}
    dosage = rng.binomial(2, [freq[p] for p in pops]).astype(np.float32)
    base = {"A": -2.0, "B": -1.0, "C": 0.0}
    eta = np.array([base[p] for p in pops]) + np.log(odds_ratio) * dosage
    y = (rng.random(pops.size) < 1 / (1 + np.exp(-eta))).astype(float)
    centre = {"A": (2.0, 0.0), "B": (-1.0, 1.7), "C": (-1.0, -1.7)}
    pcs = np.array([centre[p] for p in pops]) + rng.normal(scale=0.3, size=(pops.size, 2))
    obs = pd.DataFrame({"causal": y, "sex": rng.integers(0, 2, pops.size), **({"population": pops} if labels else {})},
                       index=[f"S{i}" for i in range(pops.size)])
    var = pd.DataFrame({"contig": "chr1", "pos": [100, 200]}, index=["chr1:100:A:G", "chr1:200:C:T"])
    X = np.stack([dosage, rng.binomial(2, 0.3, pops.size).astype(np.float32)], axis=1)
    geno = ad.AnnData(X=X, obs=obs, var=var, layers={"dosage": X}, obsm={"X_pca": pcs})
    return geno, {"causal_variant": {"id": "chr1:100:A:G"}}


ORACLE_COHORT = {"population_column": "population", "covariates": ["sex"], "covariate_missing": "refuse"}


@pytest.mark.parametrize("labels", [True, False], ids=["labels", "pc_bins"])
def test_oracle_is_calibrated_under_the_null_with_confounded_frequency(labels):
    """No effect, but frequency and prevalence both differ by population: adjusted as the audit adjusts
    (strata from labels or PC bins, PCs, covariates), the oracle's p < 0.05 and < 0.01 rates over 600 cohorts
    of 900 sit inside the 99% binomial interval of the level (unadjusted, the same test rejects in nearly all)."""
    rng = np.random.default_rng(21)
    ps = np.array([cal.oracle_causal_p(*_oracle_cohort(rng, 300, 1.0, labels), ORACLE_COHORT) for _ in range(600)])
    assert np.isfinite(ps).all()
    for level in (0.05, 0.01):
        low, high = cal.clopper_pearson(int((ps < level).sum()), ps.size, 0.99)
        assert low <= level <= high, (level, (ps < level).sum())


def test_oracle_finds_a_real_effect_and_is_nan_for_a_missing_variant():
    rng = np.random.default_rng(6)
    ps = [cal.oracle_causal_p(*_oracle_cohort(rng, 334, 2.0), ORACLE_COHORT) for _ in range(20)]
    assert sum(p < 1e-4 for p in ps) >= 18, ps
    geno, _ = _oracle_cohort(rng, 50, 2.0)
    assert np.isnan(cal.oracle_causal_p(geno, {"causal_variant": {"id": "chr1:999:A:G"}}, ORACLE_COHORT))


def _embedding_table(rng: np.random.Generator, geno, noise: float):
    """A sample table whose 16-dimensional embedding is a random linear map of the two variants plus noise."""
    import anndata as ad

    X = geno.layers["dosage"] @ rng.normal(size=(2, 16)) + rng.normal(scale=noise, size=(geno.n_obs, 16))
    return ad.AnnData(X=X.astype(np.float32), obs=geno.obs.copy(), obsm={"X_pca": geno.obsm["X_pca"]})


def test_embedding_oracle_finds_a_variant_the_embedding_holds():
    """The embedding oracle (the causal dosage's leave-one-out ridge prediction from the embedding, tested as the
    genotype oracle tests the dosage): an embedding that holds the variant well (r2 > 0.8) finds an OR 2 effect
    in 18 of 20 cohorts at p < 1e-4, a noisy one holds less (r2 lower) and finds it less often (the prediction never
    sees the phenotype: `test_embedding_oracle_holds_its_level`)."""
    rng = np.random.default_rng(8)
    clear, noisy = [], []
    for _ in range(20):
        geno, truth = _oracle_cohort(rng, 334, 2.0)
        clear.append(cal.oracle_embedding(_embedding_table(rng, geno, 0.3), geno, truth, ORACLE_COHORT))
        noisy.append(cal.oracle_embedding(_embedding_table(rng, geno, 3.0), geno, truth, ORACLE_COHORT))
    assert sum(o["p"] < 1e-4 for o in clear) >= 18 and min(o["r2"] for o in clear) > 0.8, clear
    assert np.median([o["r2"] for o in noisy]) < np.median([o["r2"] for o in clear]) - 0.2
    assert sum(o["p"] < 1e-4 for o in noisy) < sum(o["p"] < 1e-4 for o in clear)
    geno, _ = _oracle_cohort(rng, 50, 2.0)
    missing = cal.oracle_embedding(_embedding_table(rng, geno, 1.0), geno, {"causal_variant": {"id": "chr1:9:A:G"}},
                                   ORACLE_COHORT)
    assert np.isnan(missing["p"]) and np.isnan(missing["r2"])


@pytest.mark.parametrize("labels", [True, False], ids=["labels", "pc_bins"])
def test_embedding_oracle_holds_its_level(labels):
    """No effect, frequency and prevalence both differing by population: the embedding oracle's p < 0.05 and < 0.01
    rates over 600 cohorts of 600 sit inside the 99% binomial interval of the level, with strata from labels or PC
    bins (a one-off run of 1,500 cohorts each: 0.050 / 0.011 / 0.0013 at 0.05 / 0.01 / 0.001 with labels,
    0.051 / 0.011 / 0.0013 with PC bins)."""
    rng = np.random.default_rng(31)
    ps = np.array([cal.oracle_embedding(_embedding_table(rng, geno, 1.0), geno, truth, ORACLE_COHORT)["p"]
                   for geno, truth in (_oracle_cohort(rng, 200, 1.0, labels) for _ in range(600))])
    assert np.isfinite(ps).all()
    for level in (0.05, 0.01):
        low, high = cal.clopper_pearson(int((ps < level).sum()), ps.size, 0.99)
        assert low <= level <= high, (level, (ps < level).sum())


def test_oracle_rows_cross_tabulate_the_audit_verdicts(tmp_path):
    """Two archived replicates of the base cell: the oracle is significant in both; the audit PASSed one."""
    rng = np.random.default_rng(7)
    cfg = check_config(_config(7), base_dir=REPO)
    for rep, verdict in ((0, "PASS"), (1, "NO SIGNAL")):
        folder = tmp_path / "base" / str(rep)
        folder.mkdir(parents=True)
        geno, truth = _oracle_cohort(rng, 334, 3.0)
        geno.obs = geno.obs.assign(batch=rng.choice(["b1", "b2"], geno.n_obs))
        geno.write_h5ad(folder / "geno.h5ad")
        (folder / "truth.json").write_text(json.dumps(truth))
        verdicts = {p: [{"model": "m", "layer": "b", "verdict": verdict if p == "causal" else "NO SIGNAL"}]
                    for p in cal.TRUTHS}
        (folder / "summary.json").write_text(json.dumps({"seed": 1000 + rep, "replicate": rep, "verdicts": verdicts}))
        if rep == 0:  # one replicate with its layer's sample table archived: the embedding oracle reads it
            _embedding_table(rng, geno, 0.3).write_h5ad(folder / "b.samples.h5ad")
    (row,) = cal.oracle_rows(tmp_path, cfg)
    assert row["cell"] == "base" and row["n_replicates"] == 2 and row["replicates"] == [0, 1]
    assert row["oracle_level"] == pytest.approx(0.05 / 3)
    assert row["oracle_significant"]["count"] == 2 and row["audit_pass"]["count"] == 1
    assert row["audit_pass_when_oracle_significant"]["count"] == 1 and row["audit_pass_when_not"]["n"] == 0
    assert sum(n for _, n in row["audit_pass_by_oracle_p"].values()) == 2
    assert row["embedding_oracle_n"] == 1 and row["embedding_oracle_significant"]["count"] == 1
    assert row["audit_pass_when_embedding_oracle_significant"]["count"] == 1 and row["embedding_oracle_r2_median"] > 0.8
    assert "| base | 2 (0-1) |" in cal.oracle_markdown([row])
    # the bands print in p order, also from JSON written with sorted keys
    shuffled = {**row, "audit_pass_by_oracle_p": {">=1e-2": [0, 9], "<1e-6": [1, 1], "1e-4..1e-2": [0, 7],
                                                  "1e-6..1e-4": [1, 2]}}
    assert "| 1/1 / 1/2 / 0/7 / 0/9 |" in cal.oracle_markdown([shuffled])
    # a row written before the embedding oracle prints empty cells for it
    old = {k: v for k, v in row.items() if "embedding_oracle" not in k}
    assert cal.oracle_markdown([old]).rstrip().endswith(" |  |  | – |")


def test_embedding_oracle_rows_count_every_archived_table(tmp_path):
    """Two layers: replicate 0 archives both tables (a holds the variant, b is noise), replicate 1 only b's and
    its truth names a variant not in the genotypes (both oracles NaN), replicate 2 none. The embedding oracle's
    rate is over the 3 verdicts with a table, a NaN p counted as not significant as the genotype oracle counts it
    (dropping it would raise the embedding oracle's rate above the genotype one's for no reason)."""
    import anndata as ad

    rng = np.random.default_rng(9)
    cfg = check_config(_config(7), base_dir=REPO)
    for rep in range(3):
        folder = tmp_path / "base" / str(rep)
        folder.mkdir(parents=True)
        geno, truth = _oracle_cohort(rng, 334, 3.0)
        geno.obs = geno.obs.assign(batch=rng.choice(["b1", "b2"], geno.n_obs))
        geno.write_h5ad(folder / "geno.h5ad")
        if rep == 1:
            truth = {"causal_variant": {"id": "chr1:999:A:G"}}
        (folder / "truth.json").write_text(json.dumps(truth))
        verdicts = {p: [{"model": "m", "layer": layer, "verdict": "PASS" if p == "causal" and rep == 0 else "NO SIGNAL"}
                        for layer in ("a", "b")] for p in cal.TRUTHS}
        (folder / "summary.json").write_text(json.dumps({"seed": 1000 + rep, "replicate": rep, "verdicts": verdicts}))
        noise = ad.AnnData(X=rng.normal(size=(geno.n_obs, 16)).astype(np.float32), obs=geno.obs.copy(),
                           obsm={"X_pca": geno.obsm["X_pca"]})
        if rep == 0:
            _embedding_table(rng, geno, 0.3).write_h5ad(folder / "a.samples.h5ad")
        if rep < 2:
            noise.write_h5ad(folder / "b.samples.h5ad")
    (row,) = cal.oracle_rows(tmp_path, cfg)
    assert row["oracle_significant"]["count"] == 4 and row["oracle_significant"]["n"] == 6
    assert row["embedding_oracle_n"] == 3
    assert row["embedding_oracle_significant"]["count"] == 1 and row["embedding_oracle_significant"]["n"] == 3
    assert row["audit_pass_when_embedding_oracle_significant"]["count"] == 1
    assert row["audit_pass_when_embedding_oracle_significant"]["n"] == 1


def test_oracle_command_refuses_an_unknown_or_unarchived_cell(tmp_path, capsys):
    """Bad input to `interp calibration-oracle`: exit 2 with the reason, no traceback, no output file."""
    from interp.cli import main

    (tmp_path / "archive" / "base").mkdir(parents=True)
    out = tmp_path / "oracle.json"
    configs = [str(REPO / "configs" / "demo.yaml"), str(REPO / "configs" / "calibration.yaml")]
    for cells, message in ((["no_such_cell"], "unknown calibration cell"), (["n=300"], "no archived replicates")):
        argv = ["calibration-oracle", str(tmp_path / "archive"), str(out), "--cells", *cells]
        argv += [a for c in configs for a in ("--configfile", c)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert main(["calibration-oracle", str(tmp_path / "missing"), str(out)]) == 2
    assert "no such calibration archive" in capsys.readouterr().err
    assert not out.exists()
