"""The report's summary logic on synthetic inputs: worst verdict across layers, caveats, grouped notes,
per-family biomarker tables, calibration matching, methods; and the report written without Chromium."""

from __future__ import annotations

import json
import logging
from html import escape as html_escape
from pathlib import Path

import pytest
import report_synthetic as rs

from interp.errors import InputError
from interp.report import summary
from interp.report.build import _clean, finish_report, fmt_num, render_html

ROOT = Path(__file__).resolve().parents[1]

LAYERS = {"m": ["embed", "block1", "block2", "block3"]}


def _row(phenotype: str, layer: str, verdict: str, **kw) -> dict:
    return {"phenotype": phenotype, "model": "m", "layer": layer, "verdict": verdict, **kw}


# ------------------------------------------------------------------------------------------ verdicts
def test_worst_verdict_across_layers_names_the_deciding_layer_and_its_reason() -> None:
    audit = [_row("a", "embed", "PASS", reasons="fine"),
             _row("a", "block2", "FAIL", reason="ancestry alone explains it."),
             _row("a", "block1", "NO SIGNAL", reason="no signal"),
             _row("a", "block3", "FAIL", reason="also ancestry."),
             _row("b", "block1", "PASS", reason="within-population signal"),
             _row("b", "embed", "PASS", reason="within-population signal (embed)")]
    out = {v["phenotype"]: v for v in summary.worst_verdicts(audit, LAYERS)}
    assert out["a"]["verdict"] == "FAIL"
    assert out["a"]["layer"] == "block2"  # the first FAIL in layer order, not in row order
    assert out["a"]["also"] == ["block3"]
    assert out["a"]["reason"] == "ancestry alone explains it."
    assert out["a"]["css"] == "v-fail"
    assert [b["layer"] for b in out["a"]["by_layer"]] == ["embed", "block1", "block2", "block3"]
    # all PASS: the first layer decides, the others are listed
    assert (out["b"]["verdict"], out["b"]["layer"], out["b"]["also"]) == ("PASS", "embed", ["block1"])


def test_region_rows_reach_the_headline_only_when_they_fail() -> None:
    """audit.by_region: a gene without the effect is NO SIGNAL by design and must not turn the phenotype's
    headline from PASS to NO SIGNAL; a region whose signal ancestry explains (FAIL) must reach it."""
    audit = [_row("a", "block2", "PASS", reason="whole cohort"),
             _row("a", "block2", "NO SIGNAL", region="GENE1", reason="not here"),
             _row("a", "block2", "PASS", region="GENE2", reason="here"),
             _row("b", "block2", "PASS", reason="whole cohort"),
             _row("b", "block2", "FAIL", region="GENE3", reason="ancestry explains GENE3's signal")]
    out = {v["phenotype"]: v for v in summary.worst_verdicts(audit, LAYERS)}
    assert (out["a"]["verdict"], out["a"]["region"]) == ("PASS", None)
    assert [b["region"] for b in out["a"]["by_layer"]] == [None]
    assert (out["b"]["verdict"], out["b"]["region"]) == ("FAIL", "GENE3")
    assert "verdicts_disagree" not in {c["id"] for c in summary.detect_caveats({"audit": audit[:3]}, LAYERS)}
    groups = summary.group_verdict_reasons(audit[:3])
    assert [g["layers"] for g in groups] == [["block2", "block2 (region GENE2)"], ["block2 (region GENE1)"]]


@pytest.mark.parametrize(("verdicts", "worst"), [
    (["PASS", "NO SIGNAL"], "NO SIGNAL"),
    (["NO SIGNAL", "INCONCLUSIVE"], "INCONCLUSIVE"),
    (["INCONCLUSIVE", "FAIL", "PASS"], "FAIL"),
    (["PASS", "WARN"], "WARN"),
    (["PASS", "SOMETHING NEW"], "SOMETHING NEW"),  # an unknown verdict is never read as a pass
])
def test_verdict_severity_order(verdicts: list[str], worst: str) -> None:
    audit = [_row("p", la, v, reason="r") for la, v in zip(LAYERS["m"], verdicts, strict=False)]
    assert summary.worst_verdicts(audit, LAYERS)[0]["verdict"] == worst


def test_reason_falls_back_to_the_reasons_list_or_string() -> None:
    assert summary.reason_of({"reasons": ["a", "b"]}) == "a; b"
    assert summary.reason_of({"reasons": "a; b", "reason": ""}) == "a; b"
    assert summary.reason_of({"reason": "One sentence.", "reasons": "x"}) == "One sentence."
    assert summary.reason_of({}) == "no reason recorded by the audit"


# ------------------------------------------------------------------------------------------ notes
def _probe(layer: str, target: str, features: str, skipped: int, model: str = "m", used: int = 4) -> dict:
    return {"model": model, "layer": layer, "target": target, "features": features, "n_folds_skipped": skipped,
            "n_folds_used": used, "n_pos": 22, "n_neg": 377}


def test_repeated_fold_skip_notes_are_grouped_into_one_line() -> None:
    probes = [_probe(la, "exon", f, 1) for la in LAYERS["m"] for f in ("embedding", "shuffled")]
    probes.append(_probe("3-mer frequencies", "exon", "kmer3", 1, model="kmer3"))
    probes += [_probe(la, "repeat", "embedding", 0, used=5) for la in LAYERS["m"]]
    lines = summary.group_probe_notes(probes, LAYERS)
    assert lines == ["exon probes: 1 of 5 folds skipped in every layer and the shuffled-label control and "
                     "the 3-mer control: a fold had no exon windows or only exon windows (22 of 399 windows are exon)"]


def test_fold_skip_notes_list_the_layers_when_not_every_layer_is_affected() -> None:
    probes = [_probe("block1", "gc_high", "embedding", 2, used=3), _probe("block3", "gc_high", "embedding", 2, used=3),
              _probe("embed", "gc_high", "embedding", 1)]
    lines = summary.group_probe_notes(probes, LAYERS)
    assert len(lines) == 2
    assert lines[0].startswith("gc_high probes: 2 of 5 folds skipped in m block1, block3:")
    assert lines[1].startswith("gc_high probes: 1 of 5 folds skipped in m embed:")


def test_repeated_verdict_reasons_are_grouped_by_rule() -> None:
    """Layers of one phenotype and model with the same verdict and rule fold into one entry; a different
    rule (or verdict) stays separate."""
    rows = [{"phenotype": "confounded", "model": "m", "layer": la, "verdict": "FAIL",
             "verdict_rule": "signal_explained_by_ancestry", "reason": f"numbers of {la}"} for la in LAYERS["m"]]
    rows.insert(1, {"phenotype": "confounded", "model": "m", "layer": "extra", "verdict": "INCONCLUSIVE",
                    "verdict_rule": "within_effect_undetermined", "reason": "undetermined"})
    rows.append({"phenotype": "null", "model": "m", "layer": "embed", "verdict": "NO SIGNAL",
                 "verdict_rule": "no_signal", "reason": "nothing"})
    groups = summary.group_verdict_reasons(rows)
    assert [(g["phenotype"], g["verdict"], len(g["layers"])) for g in groups] == [
        ("confounded", "FAIL", len(LAYERS["m"])), ("confounded", "INCONCLUSIVE", 1), ("null", "NO SIGNAL", 1)]
    assert groups[0]["layers"] == list(LAYERS["m"]) and groups[0]["reason"] == f"numbers of {LAYERS['m'][0]}"


# ------------------------------------------------------------------------------------------ caveats
def _ids(report: dict) -> set[str]:
    return {c["id"] for c in summary.detect_caveats(report, LAYERS)}


def test_caveat_lm_not_beating_order3_markov_only_when_it_does_not() -> None:
    worse = {"lm": [{"model": "m", "heldout_ce": 1.375, "baseline_order3_ce": 1.356}]}
    better = {"lm": [{"model": "m", "heldout_ce": 1.30, "baseline_order3_ce": 1.356}]}
    assert "lm_vs_markov3" in _ids(worse)
    assert "lm_vs_markov3" not in _ids(better)
    text = summary.detect_caveats(worse)[0]["text"]
    assert "1.375" in text and "1.356" in text


def test_caveat_probes_not_beating_the_kmer_control() -> None:
    def probes(best: float) -> list[dict]:
        rows = [{"model": "m", "layer": la, "target": "exon", "features": "embedding", "auroc_mean": best - 0.01 * i,
                 "auroc_sd": 0.02} for i, la in enumerate(LAYERS["m"])]
        rows += [{"model": "m", "layer": la, "target": "exon", "features": "shuffled", "auroc_mean": 0.5,
                  "auroc_sd": 0.02} for la in LAYERS["m"]]
        return rows + [{"model": "kmer3", "layer": "3-mer", "target": "exon", "features": "kmer3", "auroc_mean": 0.80,
                        "auroc_sd": 0.02}]
    assert "probes_vs_kmer3" in _ids({"probes": probes(0.81)})  # within one fold-SD of the 3-mer control
    assert "probes_vs_kmer3" not in _ids({"probes": probes(0.90)})
    assert "probes_vs_shuffled" in _ids({"probes": probes(0.51)})


def test_caveat_small_or_masked_population_and_few_cases() -> None:
    ok = {"cohort": {"populations": {"A": 200, "B": 300}},
          "audit": [_row("p", "embed", "PASS", n_samples=500, n_cases=200)]}
    assert not {"small_population", "few_cases"} & _ids(ok)
    small = {"cohort": {"populations": {"A": 200, "B": "<5", "C": 30}},
             "audit": [_row("p", "embed", "PASS", n_samples=235, n_cases=12)]}
    caveats = {c["id"]: c["text"] for c in summary.detect_caveats(small)}
    assert "B (n = <5)" in caveats["small_population"] and "C (n = 30)" in caveats["small_population"]
    assert "A (" not in caveats["small_population"]
    assert "p (12 cases of 235)" in caveats["few_cases"]
    # a group under MIN_REPORTED_GROUP is not counted exactly, neither the cases nor the controls (n - cases)
    tiny = {"audit": [_row("p", "embed", "PASS", n_samples=235, n_cases=3),
                      _row("q", "embed", "PASS", n_samples=235, n_cases=232)]}
    text = {c["id"]: c["text"] for c in summary.detect_caveats(tiny)}["few_cases"]
    assert "p (<5 cases of 235)" in text and "q (<5 controls of 235)" in text
    assert "3 cases" not in text and "232 cases" not in text


def test_one_population_under_five_is_not_the_total_minus_the_others(monkeypatch) -> None:
    """cohort.populations showed {CEU: 60, CHB: "<5", YRI: 60} beside n_samples 124: CHB's 4 by subtraction. A second
    population's size is masked ("masked", the first by name), the caveats do not call it small, and the
    ancestry PCA's legend does not give its size."""
    import numpy as np

    from interp.audit import suppressed_sizes
    from interp.report import plots

    # the complement is the first by name, whatever its size: CEU, or YRI when the names are swapped
    assert suppressed_sizes([60, 4, 60], ["CEU", "CHB", "YRI"]) == ["masked", "<5", None]
    assert suppressed_sizes([60, 4, 60], ["YRI", "CHB", "CEU"]) == [None, "<5", "masked"]
    assert suppressed_sizes([200, 12, 30, 3], ["d", "c", "b", "a"]) == [None, None, "masked", "<5"]
    assert suppressed_sizes([200, 12, 30, 3]) == ["masked", None, None, "<5"]  # no names: the order given
    assert suppressed_sizes([8, 3]) == ["masked", "<5"]
    assert suppressed_sizes([3, 2]) == ["<5", "<5"]  # their sum, 5, leaves each its 1-4
    assert suppressed_sizes([3, 1, 100]) == ["<5", "<5", "masked"]  # a sum of 4 tells each is at most 3
    assert suppressed_sizes([1, 1, 100]) == ["<5", "<5", "masked"]  # a sum of 2 pins both to 1
    assert suppressed_sizes([60, 60]) == [None, None]
    populations = {"CEU": "masked", "CHB": "<5", "YRI": 60}
    text = {c["id"]: c["text"] for c in summary.detect_caveats({"cohort": {"populations": populations}})}
    assert "CHB (n = <5)" in text["small_population"] and "CEU" not in text["small_population"]
    pcs = np.random.default_rng(0).normal(size=(124, 2))
    population = np.array(["CEU"] * 60 + ["CHB"] * 4 + ["YRI"] * 60)
    seen = []
    monkeypatch.setattr(plots, "to_png",
                        lambda fig: seen.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()]) or "")
    plots.ancestry_pca(pcs, population, np.array([0.1, 0.05]), 5, sizes=populations)
    assert seen == [["CEU", "YRI (n = 60)"]]


def test_caveat_one_population_label() -> None:
    assert "one_population_label" in _ids({"cohort": {"populations": {"ADMIX": 600}}})
    assert "one_population_label" not in _ids({"cohort": {"populations": {"all": 600}}})  # no labels at all
    assert "one_population_label" not in _ids({"cohort": {"populations": {"A": 300, "B": 300}}})


def test_caveat_ancestry_pcs_unconverged_only_when_the_krylov_route_stopped_short() -> None:
    stopped = {"cohort": {"ancestry_markers": {"vcf": "panel.vcf.gz", "method": "randomized block Krylov",
                                               "n_passes": 60, "converged": False}}}
    [caveat] = [c for c in summary.detect_caveats(stopped) if c["id"] == "ancestry_pcs_unconverged"]
    assert "60 passes" in caveat["text"] and caveat["severity"] == "high"
    converged = {"cohort": {"ancestry_markers": {"vcf": "p", "n_passes": 25, "converged": True}}}
    assert "ancestry_pcs_unconverged" not in _ids(converged)
    assert "ancestry_pcs_unconverged" not in _ids({"cohort": {"ancestry_markers": {"method": "exact blockwise Gram"}}})


def test_caveat_unphased_calls_names_the_share_and_the_policy() -> None:
    phased = {"cohort": {"validation": {"unphased_het_rate": 0.0}, "haplotypes": {"unphased_policy": "ref"}}}
    assert "unphased_calls" not in _ids(phased)
    masked = {"cohort": {"validation": {"unphased_het_rate": 0.25}, "haplotypes": {"unphased_policy": "N"}}}
    [caveat] = [c for c in summary.detect_caveats(masked) if c["id"] == "unphased_calls"]
    assert "25.0% of the heterozygous calls" in caveat["text"] and "masked (N)" in caveat["text"]
    assert "samples_mostly_missing" not in _ids(masked)
    half = {"cohort": {"validation": {"unphased_het_rate": 0.25, "n_unphased_half_missing": 3}}}
    [caveat] = [c for c in summary.detect_caveats(half) if c["id"] == "unphased_calls"]
    assert "unphased (3 of them half-missing, './1'); under cohort.unphased: ref they are REF" in caveat["text"]
    assert "samples_mostly_missing" in _ids({"cohort": {"validation": {"n_samples_mostly_missing": 2}}})
    unphased = _ids({"cohort": {"validation": {"n_samples_mostly_unphased": 3}}})
    assert "samples_mostly_unphased" in unphased
    assert "samples_mostly_unphased" not in _ids({"cohort": {"validation": {"n_samples_mostly_unphased": 0}}})


def test_validation_counts_of_people_are_masked_under_5() -> None:
    """cohort.validation gave n_samples_mostly_missing (and _unphased) exactly, and the caveat "2 sample(s) have
    missing genotypes ..."; with the per-sample descriptor `missing_rate` set apart in those few, the audit's
    AUROC then told their case status. 1-4 are now "<5" in report.json and "Fewer than 5" in the caveat."""
    from interp.report import summary
    from interp.report.build import validation_section

    raw = {"n_samples_mostly_missing": 2, "n_samples_mostly_unphased": 0, "n_samples": 300, "samples": ["s1"],
           "n_het_calls": 3}
    shown = validation_section(raw)
    assert shown == {"n_samples_mostly_missing": "<5", "n_samples_mostly_unphased": 0, "n_samples": 300,
                     "n_het_calls": 3}
    assert validation_section({"n_samples_mostly_unphased": 7})["n_samples_mostly_unphased"] == 7
    [caveat] = [c for c in summary.detect_caveats({"cohort": {"validation": shown}}) if c["id"] == "samples_mostly_missing"]
    assert caveat["text"].startswith("Fewer than 5 sample(s) have missing genotypes")
    unphased = summary.detect_caveats({"cohort": {"validation": validation_section({"n_samples_mostly_unphased": 4})}})
    assert [c["text"][:30] for c in unphased if c["id"] == "samples_mostly_unphased"] == ["Fewer than 5 sample(s) have ov"]


def test_caveat_mixed_devices_only_when_shards_ran_on_more_than_one() -> None:
    one = {"cohort": {"embedding": [{"devices": ["cuda"]}, {"devices": ["cpu"]}]}}  # two models, one device each
    assert "mixed_devices" not in _ids(one)
    resumed = {"cohort": {"embedding": [{"devices": ["cpu", "unknown"]}]}}  # a shard from before devices were kept
    assert "mixed_devices" not in _ids(resumed)
    mixed = {"cohort": {"embedding": [{"devices": ["cpu", "cuda"]}]}}
    [caveat] = [c for c in summary.detect_caveats(mixed) if c["id"] == "mixed_devices"]
    assert "cpu, cuda" in caveat["text"] and "embed.device" in caveat["text"]


def test_caveat_permutation_floor_against_the_multiplicity_adjusted_level() -> None:
    cfg = {"provenance": {"config": {"audit": {"alpha": 0.05}}}}
    few = dict(cfg, audit=[_row("p", la, "PASS", n_permutations=19) for la in LAYERS["m"]])
    many = dict(cfg, audit=[_row("p", la, "PASS", n_permutations=19, n_null_replicates=1999) for la in LAYERS["m"]])
    assert "permutation_floor" in _ids(few)
    assert "permutation_floor" not in _ids(many)
    # sequential tests stop early: the run's B, not the fewest replicates a test used, sets the floor
    stopped = dict(cfg, audit=[_row("p", la, "NO SIGNAL", n_null_replicates=12, n_null_replicates_max=1999)
                               for la in LAYERS["m"]])
    assert "permutation_floor" not in _ids(stopped)
    capped = dict(cfg, audit=[_row("p", la, "PASS", n_null_replicates=12, n_null_replicates_max=39)
                              for la in LAYERS["m"]])
    assert "audit.max_null_replicates" in {c["id"]: c["text"] for c in summary.detect_caveats(capped)}[
        "permutation_floor"]
    # under BH every p at the floor adjusts to itself, so a floor under alpha rules nothing out (it warned that no
    # verdict could pass beside BH PASS verdicts); above alpha it still does
    bh = {"provenance": {"config": {"audit": {"alpha": 0.05, "multiplicity": "bh"}}}}
    assert "permutation_floor" not in _ids(dict(bh, audit=capped["audit"]))  # floor 1/40 = 0.025
    tiny = [_row("p", la, "NO SIGNAL", n_null_replicates=12, n_null_replicates_max=9) for la in LAYERS["m"]]
    assert "above alpha = 0.05" in {c["id"]: c["text"] for c in summary.detect_caveats(dict(bh, audit=tiny))}[
        "permutation_floor"]


def test_caveat_verdicts_disagreeing_and_truth_not_recovered() -> None:
    report = {"audit": [_row("p", "embed", "WARN"), _row("p", "block1", "FAIL")],
              "truth_recovery": {"causal_variant_rank": 1, "verdicts": {
                  "confounded|m|embed": {"verdict": "WARN", "expected": "FAIL", "as_expected": False}}}}
    caveats = summary.detect_caveats(report)
    assert caveats[0]["id"] == "truth_missed" and caveats[0]["severity"] == "high"  # high first
    assert "verdicts_disagree" in {c["id"] for c in caveats}


# ------------------------------------------------------------------------------------------ biomarkers
def test_one_table_per_family_with_its_own_scope_and_ranks() -> None:
    rows = []
    for ph in ("causal", "null"):
        for i in range(30):
            rows.append({"phenotype": ph, "feature": f"chr1:{100 + i}:A:G", "kind": "variant", "model": "", "layer": "",
                         "p": 0.001 * (i + 1), "q": 0.01 * (i + 1), "rank": i + 1})
        for layer in ("block1", "block2"):
            for i in range(20):
                rows.append({"phenotype": ph, "feature": f"m/{layer}/chr1:0-1000/dim{i}", "kind": "embedding",
                             "model": "m", "layer": layer, "p": 0.01 * (i + 1), "q": 0.2, "rank": i + 1})
        rows.append({"phenotype": ph, "feature": "m/block2/chr1:0-1000/f3", "kind": "sae", "model": "m",
                     "layer": "block2", "p": 0.5, "q": 0.9, "rank": 1, "family": "sae:m/block2",
                     "bh_scope": "BH over the 1 SAE features of m/block2"})
    tables = summary.family_tables(rows, top=10)
    keys = [(t["phenotype"], t["family"]) for t in tables]
    assert keys == [("causal", "variant"), ("causal", "embedding:m/block1"), ("causal", "embedding:m/block2"),
                    ("causal", "sae:m/block2"), ("null", "variant"), ("null", "embedding:m/block1"),
                    ("null", "embedding:m/block2"), ("null", "sae:m/block2")]
    variant = tables[0]
    assert variant["n_tests"] == 30 and len(variant["rows"]) == 10
    assert variant["n_q_below_0_05"] == 4  # q = 0.01 .. 0.04
    assert [r["rank"] for r in variant["rows"]] == list(range(1, 11))
    assert variant["rows"][0]["short_name"] == "chr1:100 A>G"
    assert variant["rows"][0]["feature"] == "chr1:100:A:G"  # the full id stays
    emb = tables[1]
    assert emb["title"] == "Embedding features: m / block1"
    assert all(r["family"] == "embedding:m/block1" for r in emb["rows"])
    assert emb["rows"][0]["short_name"] == "dim0"
    assert "causal" in emb["bh_scope"]
    assert tables[3]["bh_scope"] == "BH over the 1 SAE features of m/block2"  # rank's own scope is kept


def test_family_is_derived_when_rank_does_not_write_it() -> None:
    assert summary.family_of({"kind": "variant"}) == "variant"
    assert summary.family_of({"kind": "embedding", "model": "nt", "layer": "layer.6"}) == "embedding:nt/layer.6"
    assert summary.family_of({"kind": "sae", "model": "nt", "layer": "layer.6"}) == "sae:nt/layer.6"
    assert summary.family_of({"kind": "variant_effect", "model": "nt", "layer": ""}) == "variant_effect:nt"
    assert summary.family_of({"kind": "sae", "family": "sae:x/y", "model": "m", "layer": "l"}) == "sae:x/y"
    assert summary.family_title("variant_effect:nt") == "Variant-effect scores: nt"


def test_variant_effect_family_gets_its_own_table_and_a_methods_line() -> None:
    rows = [{"phenotype": "c", "feature": "chr1:100:A:G", "kind": "variant", "model": "", "layer": "", "p": 0.01,
             "q": 0.02, "rank": 1, "family": "variant", "bh_scope": "BH within phenotype 'c' and family 'variant'"}]
    rows += [{"phenotype": "c", "feature": f"m/variant_effect/chr1:{w}-{w + 500}", "kind": "variant_effect",
              "model": "m", "layer": "", "p": 0.001 * (k + 1), "q": 0.002 * (k + 1), "rank": k + 1,
              "short_name": f"burden chr1:{w}-{w + 500}", "family": "variant_effect:m",
              "bh_scope": "BH within phenotype 'c' and family 'variant_effect:m' (3 tests)"}
             for k, w in enumerate((0, 500, 1000))]
    tables = summary.family_tables(rows, top=10)
    assert [t["family"] for t in tables] == ["variant", "variant_effect:m"]
    ve = tables[1]
    assert (ve["title"], ve["kind"], ve["n_tests"]) == ("Variant-effect scores: m", "variant_effect", 3)
    assert ve["rows"][0]["short_name"] == "burden chr1:0-500" and "variant_effect:m" in ve["bh_scope"]
    cfg = rs.config()
    assert "Variant-effect burden" not in {m["name"] for m in summary.methods(cfg, [], tables[:1])}
    entry = {m["name"]: m for m in summary.methods({**cfg, "variant_effect": {"width": 128}}, [], tables)}[
        "Variant-effect burden"]
    assert "max(-score, 0)" in entry["statistic"] and "up to 128 bases" in entry["statistic"]
    assert "variant_effect:m" in entry["scheme"]


# ------------------------------------------------------------------------------------------ calibration
def test_the_base_cell_is_on_every_axis_at_its_own_setting() -> None:
    """The committed grid's n axis holds n = 300 and 3,000; the base cell (n 1,000) was matched only when no axis
    matched, so a run of n = 1,000 was quoted the n = 3,000 cell (ancestry-only FAIL 79% where the base cell
    has 12%). The base cell now stands on every axis at its own setting (`interp.calibration.BASE`)."""
    import json

    from interp.config import ROOT

    rows = json.loads((ROOT / "reports" / "calibration" / "calibration.json").read_text())["rows"]
    picks = {n: summary.calibration_summary(rows, {"n_samples": n}) for n in (300, 800, 1000, 1200, 2500)}
    assert {n: p["cell"] for n, p in picks.items()} == {300: "n=300", 800: "base", 1000: "base", 1200: "base",
                                                        2500: "n=3000"}
    assert picks[1000]["note"] == "Closest calibration cell to this run: n = 1000 (the base cell) (this run: 1000)."
    assert summary.calibration_summary(rows, {"odds_ratio": 1.9})["cell"] == "base"
    assert summary.calibration_summary(rows, {"odds_ratio": 2.9})["cell"] == "odds_ratio=3"


def test_calibration_picks_the_nearest_cell_else_base_else_says_unavailable() -> None:
    rows = rs.calibration_rows()
    near = summary.calibration_summary(rows, {"n_samples": 250})
    assert near["available"] and near["cell"] == "n300" and near["matched_by"] == "nearest"
    assert {r["truth"] for r in near["rows"]} == {"causal", "ancestry", "null"}
    assert near["rows"][0]["verdict_rates"]["PASS"]["rate"] == 0.8
    assert summary.calibration_summary(rows, {"n_samples": 5000})["cell"] == "n1000"
    base = summary.calibration_summary(rows, {"odds_ratio": 2.0})  # the base cell's own odds ratio
    assert base["available"] and base["cell"] == "base" and base["matched_by"] == "nearest"
    assert summary.calibration_summary(rows, {"permutations": 999})["matched_by"] == "base"  # no axis matches
    none = summary.calibration_summary(None, {"n_samples": 250})
    assert not none["available"] and "not available" in none["note"]
    no_base = summary.calibration_summary([r for r in rows if r["cell"] != "base"], {"odds_ratio": 2.0})
    assert not no_base["available"]
    # the run's null-replicate cap is read from the config key that exists (`permutations` was renamed)
    run = summary.run_characteristics({"provenance": {"config": {"audit": {"max_null_replicates": 999}}}})
    assert run == {"permutations": 999.0}


# ------------------------------------------------------------------------------------------ methods
def test_biomarker_methods_name_the_test_rank_ran() -> None:
    """The phenotype is the outcome (score test with the SPA for binary, OLS for quantitative), as interp.rank
    does; not the likelihood-ratio test or the OLS of the feature on the phenotype it once said."""
    cfg = rs.config()
    cfg["rank"] = {**cfg.get("rank", {}), "min_carriers": 12, "refit_top": 40}

    def entry(methods: list[str]) -> dict:
        fams = [{"family": "variant", "rows": [{"method": m} for m in methods]}]
        return {m["name"]: m for m in summary.methods(cfg, [], fams)}["Candidate biomarkers"]

    binary = entry(["score_spa"])
    assert "score test" in binary["statistic"] and "saddle-point" in binary["statistic"]
    assert "phenotype is the outcome" in binary["statistic"] and "best 40 features" in binary["statistic"]
    assert "likelihood-ratio" not in binary["statistic"] and "quantitative" not in binary["statistic"]
    assert "fewer than 12 individuals" in binary["thresholds"]
    quant = entry(["ols"])
    assert "ordinary least squares of the phenotype on the feature" in quant["statistic"]
    assert "inverse normal" in quant["statistic"] and "score test" not in quant["statistic"]
    cfg["rank"]["quantitative_transform"] = "none"
    assert "inverse normal" not in entry(["ols"])["statistic"]
    both = entry([])  # no rows: both tests described
    assert "score test" in both["statistic"] and "least squares" in both["statistic"]


def test_biomarker_methods_state_the_transform_rank_recorded_and_the_effect_scale() -> None:
    """Methods says the quantitative test's transform as rank recorded it (rank_summary.phenotypes `transform`; a rank
    summary without it tested y as given), not the report-time config's, and the scale of a quantitative effect."""
    cfg = rs.config()
    cfg["rank"] = {**cfg.get("rank", {}), "quantitative_transform": "rint"}
    fams = [{"family": "variant", "rows": [{"method": "ols"}]}]

    def text(phenotypes):
        out = {m["name"]: m for m in summary.methods(cfg, [], fams, rank_phenotypes=phenotypes)}
        return out["Candidate biomarkers"]["statistic"]

    rint = text([{"phenotype": "ldl", "type": "quantitative", "transform": "rint"}])
    assert "inverse normal" in rint and "SD units of the transformed phenotype" in rint
    as_given = text([{"phenotype": "ldl", "type": "quantitative", "transform": "none"}])
    assert "inverse normal" not in as_given and "the phenotype's own units" in as_given
    before = text([{"phenotype": "ldl", "type": "quantitative"}])  # a rank summary from before the transform
    assert "inverse normal" not in before
    assert "inverse normal" in text(None)  # no rank summary: the config's setting


def test_methods_come_from_the_config() -> None:
    cfg = rs.config()
    cfg["audit"]["max_null_replicates"] = 499
    cfg["audit"]["alpha"] = 0.01
    entries = {m["name"]: m for m in summary.methods(cfg, [])}
    assert set(entries) == {"Language model fit", "Linear probes", "Sparse autoencoder", "Ancestry audit (verdicts)",
                            "Candidate biomarkers"}
    audit = entries["Ancestry audit (verdicts)"]
    assert "499 null replicates" in audit["resampling"] and "alpha 0.01" in audit["thresholds"]
    assert f"{cfg['audit']['n_folds']}-fold" in audit["scheme"]
    assert "none across verdicts" in audit["multiplicity"]
    assert f"{cfg['windows']['n_blocks']} contiguous genome blocks" in entries["Linear probes"]["scheme"]
    # the audit's own multiplicity and null-replicate counts win when it reports them
    rows = [_row("p", "embed", "PASS", multiplicity="Holm over 9 verdicts", n_null_replicates=1999,
                 verdict_rule="PASS if p_within_adjusted <= alpha", within_auroc=0.7, p_within=0.01)]
    audit = {m["name"]: m for m in summary.methods(cfg, rows)}["Ancestry audit (verdicts)"]
    assert audit["multiplicity"] == "Holm over 9 verdicts" and "1999 null replicates" in audit["resampling"]
    assert "PASS if p_within_adjusted <= alpha" in audit["thresholds"]
    assert "signed root likelihood-ratio" in audit["statistic"]
    b_rows = [{**rows[0], "n_null_replicates_max": 3999, "null_method": "phenotype permuted inside strata"}]
    audit = {m["name"]: m for m in summary.methods(cfg, b_rows)}["Ancestry audit (verdicts)"]
    assert "up to 3999 null replicates" in audit["resampling"] and "permuted inside strata" in audit["resampling"]
    no_cohort = rs.config(cohort=False)
    assert len(summary.methods(no_cohort)) == 3


def test_fmt_num_filter() -> None:
    assert fmt_num(0.12345) == "0.123"
    assert fmt_num(None) == "n/a" and fmt_num(float("nan"), missing="–") == "–"
    assert fmt_num("<5") == "<5"


# ------------------------------------------------------------------------------------------ the written report
@pytest.mark.parametrize("new_keys", [True, False], ids=["new-interfaces", "legacy-interfaces"])
def test_report_written_with_summary_first_and_every_section(tmp_path: Path, new_keys: bool, monkeypatch,
                                                             caplog) -> None:
    """Without Chromium: report.json and index.html are written, report.pdf is not (and the log says so),
    and a stale PDF of an earlier run is removed."""
    monkeypatch.setenv("INTERP_CHROMIUM", str(tmp_path / "no-such-chromium"))
    (tmp_path / "report.pdf").write_bytes(b"%PDF stale")
    report, figs, layers, calib, cfg = rs.report_parts(new_keys=new_keys)
    with caplog.at_level(logging.WARNING):
        out = finish_report(report, figs, layers, calib, cfg, "synthetic",
                            {"json": tmp_path / "report.json", "html": tmp_path / "index.html"})
    assert "report.pdf not written: Chromium not found" in caplog.text
    assert not (tmp_path / "report.pdf").exists()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved == json.loads(json.dumps(out))
    for key in ("generated_at", "provenance", "lm", "probes", "sae", "timings", "audit", "biomarkers",
                "summary", "limitations", "methods", "biomarker_families"):
        assert key in saved, key
    s = saved["summary"]
    assert {"model", "layers", "data", "verdicts", "calibration", "caveats"} <= set(s)
    assert [v["phenotype"] for v in s["verdicts"]] == ["causal", "confounded", "null"]
    assert s["calibration"]["available"] is new_keys
    assert s["data"]["cohort"]["populations"]["CHB"] == "<5"
    html = (tmp_path / "index.html").read_text()
    order = [html.index(f'id="{sec}"') for sec in ("summary", "audit", "biomarkers", "represents", "model", "methods")]
    assert order == sorted(order)
    for v in s["verdicts"]:
        assert f'data-phenotype="{v["phenotype"]}"' in html
    # every family table is there with its scope; full ids on hover
    for fam in saved["biomarker_families"]:
        assert fam["bh_scope"].replace("<", "&lt;") in html
    has_ve = any(f["kind"] == "variant_effect" for f in saved["biomarker_families"])
    assert has_ve is new_keys  # the synthetic rank table of the new interfaces has a variant-effect family
    assert ("Variant-effect scores: " in html) is new_keys and ("Variant-effect burden" in html) is new_keys
    first = saved["biomarker_families"][0]["rows"][0]
    assert f'title="{first["feature"]}"' in html
    assert "Calibration is not available" in html or new_keys
    assert html.count("the same rule in") == sum(len(g["layers"]) > 1 for g in saved["audit_reasons_grouped"])
    # a region's own row (audit.by_region) is in the table, not in the headline unless it FAILs
    assert ("/ region GENE2</td>" in html) is new_keys
    assert all(b.get("region") is None for v in s["verdicts"] for b in v["by_layer"])
    # no individual-level rows: the synthetic cohort's sizes only as counts
    assert "sample_id" not in html


def test_report_without_cohort_renders(tmp_path: Path) -> None:
    report, figs, layers, calib, cfg = rs.report_parts(cohort=False)
    from interp.report import summary as sm

    first = sm.assemble(report, layers, None)
    report = dict(report, summary={k: v for k, v in first.items() if k != "_all_caveats"},
                  limitations=first["_all_caveats"], methods=sm.methods(cfg))
    html = render_html(report, figs, "nocohort", cfg)
    assert "No cohort in this run" in html and 'id="model"' in html
    assert first["verdicts"] == [] and not first["calibration"]["available"]


def test_discoveries_are_counted_at_rank_alpha() -> None:
    """rank calls a row significant at q < rank.alpha; the report counted q < 0.05 whatever the level (4
    discoveries of these 5 rows at alpha 0.01, where rank's level gives 1) and said "q < 0.05" in its methods."""
    rows = [{"phenotype": "ph", "kind": "variant", "feature": f"chr1:{i}:A:G", "p": 0.001 * (i + 1), "q": q,
             "rank": i + 1} for i, q in enumerate([0.004, 0.02, 0.03, 0.04, 0.2])]
    fam = summary.family_tables(rows, 10, alpha=0.01)[0]
    assert fam["n_significant"] == 1 and fam["alpha"] == 0.01 and fam["n_q_below_0_05"] == 4
    link = summary.linkage_summary(rows, 0.01)[0]
    assert link["n_variants_q"] == 1 and link["alpha"] == 0.01
    cfg = {"cohort": {"enabled": True}, "audit": {},
           "rank": {"alpha": 0.01, "min_carriers": 10, "report_top": 50, "resamples": 50, "top_k": 20}}
    biomarkers = [m for m in summary.methods(cfg, [], [fam], None, []) if m["name"] == "Candidate biomarkers"][0]
    assert "q < 0.01 (rank.alpha) counted as a discovery" in biomarkers["thresholds"]


def test_linkage_summary_counts_signals_not_features() -> None:
    rows = [{"phenotype": "c", "kind": "variant", "feature": "chr1:150:A:G", "q": 1e-6, "p": 1e-8, "contig": "chr1",
             "start": 149, "end": 150},
            {"phenotype": "c", "kind": "variant", "feature": "chr1:900:A:G", "q": 0.5, "p": 0.1, "contig": "chr1",
             "start": 899, "end": 900}]
    rows += [{"phenotype": "c", "kind": "embedding", "feature": f"m/l/chr1:0-1000/dim{i}", "q": 1e-3, "p": 1e-5,
              "contig": "chr1", "start": 0 if i % 2 else 500, "end": 1000 if i % 2 else 1500} for i in range(40)]
    rows += [{"phenotype": "n", "kind": "embedding", "feature": f"m/l/chr1:{i * 100}-1000/dim0", "q": 0.01, "p": 1e-4,
              "contig": "chr1", "start": i * 100, "end": i * 100 + 1000} for i in range(30)]
    link = {x["phenotype"]: x for x in summary.linkage_summary(rows)}
    assert link["c"] == {"phenotype": "c", "alpha": 0.05, "n_model_features_q": 40, "n_windows": 2, "n_variants_q": 1,
                         "lead_variant": "chr1:150 A>G", "n_tagged_variants": None}
    assert link["n"]["n_windows"] == 30
    caveats = [c for c in summary.detect_caveats({"biomarker_linkage": list(link.values())}) if c["id"] == "linked_features"]
    assert len(caveats) == 1 and caveats[0]["text"].startswith("c: 40 model features at q < 0.05 lie in 2 window(s)")
    # a rank table with the column but no tagged variant: a count of 0, not null (null: the column is absent)
    untagged = [{**r, "tags_variants": None} for r in rows]
    assert summary.linkage_summary(untagged)[0]["n_tagged_variants"] == 0
    rows[2]["tags_variants"] = "chr1:150:A:G,chr1:160:C:T"
    assert summary.linkage_summary(rows)[0]["n_tagged_variants"] == 2


def test_tagged_variants_counted_once_whatever_r_each_feature_gives() -> None:
    """rank writes tags as "id(r=0.82);id2(r=-0.41)": two features tagging the same variants with other r values
    tag the same 2 variants, not 4 (the demo's note claimed 3,203 tagged variants among 32)."""
    rows = [{"phenotype": "c", "kind": "embedding", "feature": f"m/l/chr1:0-1000/dim{i}", "q": 1e-3, "p": 1e-5,
             "contig": "chr1", "start": 0, "end": 1000,
             "tags_variants": f"chr1:150:A:G(r={0.9 - i / 100:.2f});chr1:160:C:T(r=-{0.5 + i / 100:.2f})"}
            for i in range(3)]
    assert summary.linkage_summary(rows)[0]["n_tagged_variants"] == 2


def test_sae_entry_passes_the_documented_metrics_and_draws_the_test_block_density(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """The density figure was drawn from features.parquet's density over every token of the store, and titled
    with its own dead count (206 of 512 in the demo) beside the table's dead fraction (190) and the test blocks'
    (244): it is now the SAE stage's test-block histogram. The metrics the README lists for the `sae` entries
    (lm_loss_*, density_histogram, validation_fvu, the split sizes) are passed through."""
    import numpy as np
    import polars as pl

    import interp.report.plots as plots
    from interp.report.build import sae_entry

    histogram = {"log10_edges": [-3.0, -2.0, -1.0, 0.0], "counts": [2, 3, 1], "n_zero": 4}
    metrics = {"model": "m", "layer": "block2", "architecture": "topk", "n_features": 10, "k": 2, "fvu": 0.1,
               "l0": 2.0, "dead_fraction": 0.3, "dead_fraction_test": 0.4, "n_train_tokens": 100,
               "n_heldout_tokens": 40, "dense_fraction": 0.1, "loss_recovered": 0.9, "lm_loss_clean": 1.2,
               "lm_loss_zero": 1.4, "lm_loss_sae": 1.22, "density_histogram": histogram, "validation_fvu": 0.12,
               "n_validation_tokens": 20, "n_test_tokens": 20, "n_train_blocks": 5, "n_validation_blocks": 1,
               "n_test_blocks": 1, "n_concepts_matched_sae": 0}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    pl.DataFrame({"feature": np.arange(10), "density": [0.0] * 3 + [0.01] * 7, "best_label": ["unlabelled"] * 10,
                  "best_f1": [0.1] * 10, "top_windows": [""] * 10}).write_parquet(tmp_path / "features.parquet")
    drawn = []
    monkeypatch.setattr(plots, "feature_density_histogram", lambda *a: drawn.append(a) or "png")
    entry, figure = sae_entry(tmp_path / "metrics.json", tmp_path / "features.parquet", 3)
    assert figure == "png" and drawn[0][0] == histogram and drawn[0][1] == 10
    assert {k: entry[k] for k in metrics} == metrics
    assert len(entry["top_features"]) == 3
    monkeypatch.undo()
    import base64

    assert base64.b64decode(plots.feature_density_histogram(histogram, 10)).startswith(b"\x89PNG")


def test_sae_atlas_is_found_beside_the_sae_metrics(tmp_path: Path) -> None:
    from interp.report.build import sae_atlas

    sae_dir = tmp_path / "results" / "run" / "sae" / "m" / "block2"
    (sae_dir / "atlas").mkdir(parents=True)
    (sae_dir / "atlas" / "index.html").write_text("<html></html>")
    metrics = sae_dir / "metrics.json"
    report_dir = tmp_path / "reports" / "run"
    report_dir.mkdir(parents=True)
    assert sae_atlas({}, metrics, report_dir) == "../../results/run/sae/m/block2/atlas/index.html"
    assert sae_atlas({"atlas": "atlas/index.html"}, metrics, report_dir) == "../../results/run/sae/m/block2/atlas/index.html"
    assert sae_atlas({}, metrics, None) == str(sae_dir / "atlas" / "index.html")
    assert sae_atlas({"atlas": "missing.html"}, metrics, report_dir) is None
    (sae_dir / "atlas" / "index.html").unlink()
    assert sae_atlas({}, metrics, report_dir) is None


def test_the_atlas_is_copied_into_the_report_folder_and_the_pdf_linked_only_when_written(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    """The report linked its atlas at ../../results/<run>/sae/..., so a report folder handed on (or moved) had a
    dead link, and it linked report.pdf even where no PDF was written (no Chromium). The atlas is now copied into
    the report's folder (atlas/<model>/<layer>/, hard links where possible; a rerun replaces it whole) and the
    page says when there is no PDF."""
    from interp.report.build import ATLAS_SOURCE

    monkeypatch.setenv("INTERP_CHROMIUM", "/nonexistent")
    atlas = tmp_path / "results" / "sae" / "atlas"
    (atlas / "logos").mkdir(parents=True)
    (atlas / "index.html").write_text('<a href="page_0.html">p</a>')
    (atlas / "page_0.html").write_text("<img src='logos/f1.png'>")
    (atlas / "logos" / "f1.png").write_bytes(b"png")
    report, figs, layers, _, cfg = rs.report_parts(cohort=False)
    report["sae"][0].update({"atlas": "atlas/m/block2/index.html", ATLAS_SOURCE: str(atlas / "index.html")})
    model, layer = report["sae"][0]["model"], report["sae"][0]["layer"]
    report["sae"][0]["atlas"] = f"atlas/{model}/{layer}/index.html"
    out_dir = tmp_path / "reports" / "run"
    stale = out_dir / "atlas" / model / layer / "page_9.html"
    stale.parent.mkdir(parents=True)
    stale.write_text("an earlier run's page")
    out = finish_report(report, figs, layers, None, cfg, "x",
                        {"json": out_dir / "report.json", "html": out_dir / "index.html"})
    copied = out_dir / "atlas" / model / layer
    assert sorted(str(p.relative_to(copied)) for p in copied.rglob("*")) == ["index.html", "logos", "logos/f1.png",
                                                                             "page_0.html"]
    assert ATLAS_SOURCE not in out["sae"][0]
    saved = json.loads((out_dir / "report.json").read_text())
    assert saved["sae"][0]["atlas"] == f"atlas/{model}/{layer}/index.html" and ATLAS_SOURCE not in saved["sae"][0]
    html = (out_dir / "index.html").read_text()
    assert f'href="atlas/{model}/{layer}/index.html"' in html
    assert 'href="report.pdf"' not in html and "printable: none (no Chromium to print it with)" in html
    assert not (out_dir / "report.pdf").exists()


def test_user_text_with_dollars_or_a_leading_underscore_is_drawn_as_written(monkeypatch) -> None:
    """matplotlib read text between two '$' as mathtext: a population 'A$_$B' or a phenotype 'p$\\x$' stopped
    the report build with a ParseException; a legend label starting with '_' was left out of the legend."""
    import matplotlib.pyplot as plt
    import numpy as np
    import polars as pl

    from interp.report import plots

    rng = np.random.default_rng(0)
    population = np.repeat(["A$_$B", "EUR$$", "_admixed"], 20)
    assert plots.ancestry_pca(rng.normal(size=(60, 2)), population, np.array([0.3, 0.1]))
    captured = []

    def legend_of(fig) -> str:
        captured.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()])
        fig.canvas.draw()  # the text is parsed when drawn
        plt.close(fig)
        return "png"

    monkeypatch.setattr(plots, "to_png", legend_of)
    plots.ancestry_pca(rng.normal(size=(60, 2)), population, np.array([0.3, 0.1]))
    monkeypatch.undo()
    assert captured == [["A$_$B (n = 20)", "EUR$$ (n = 20)", "\u200b_admixed (n = 20)"]]
    audit = pl.DataFrame({"phenotype": ["p$\\x$"], "model": ["m"], "layer": ["l"], "region": ["G$\\q$"],
                          "auroc_random_cv": [0.7], "auroc_ancestry_stratified_cv": [0.6]})
    assert plots.cv_schemes(audit)


def test_sae_concept_counts_and_atlas_shown(tmp_path: Path) -> None:
    report, figs, layers, calib, cfg = rs.report_parts(cohort=False)
    report["sae"][0].update({"n_concepts_matched_sae": 5, "n_concepts_matched_neurons": 2,
                             "atlas": "../atlas/index.html"})
    first = summary.assemble(report, layers, None)
    report = dict(report, summary={k: v for k, v in first.items() if k != "_all_caveats"},
                  limitations=first["_all_caveats"], methods=summary.methods(cfg))
    html = render_html(report, figs, "x", cfg)
    assert "sae: 5" in html and "neurons: 2" in html
    assert 'href="../atlas/index.html"' in html


def test_pdf_skipped_with_a_log_line_when_the_browser_fails(tmp_path: Path, monkeypatch, caplog) -> None:
    """A browser that exits at once (here /bin/false) costs the PDF, never the run."""
    from interp.report.browser import html_to_pdf

    monkeypatch.setenv("INTERP_CHROMIUM", "/bin/false")
    page = tmp_path / "index.html"
    page.write_text("<html><body>x</body></html>")
    with caplog.at_level(logging.WARNING):
        assert html_to_pdf(page, tmp_path / "report.pdf", "t", timeout=20) is False
    assert "report.pdf not written" in caplog.text
    assert not (tmp_path / "report.pdf").exists()


# ------------------------------------------------------------------------------------------ planted calibration
def _planted_calibration() -> dict:
    """A calibration.json of `make planted` (interp.sae.planted.planted_calibration), two types."""
    return {
        "layer": "block2", "pass": False, "pass_instance": False, "lm_beats_order3": True, "steering_pass": False,
        "lm": {"heldout_ce": 1.081, "baseline_order0_ce": 1.3745, "baseline_order3_ce": 1.3214, "steps": 2500},
        "sae": {"architecture": "topk", "n_features": 256, "k": 16},
        "match_targets": {"min_f1": 0.8, "min_lift": 5.0, "min_share": 0.8},
        "match_n_types": 2, "match_n_matched": 1, "match_share_matched": 0.5,
        "match_instance_n_matched": 2, "match_instance_share_matched": 1.0,
        "match": [{"concept": "gc_island", "feature": 97, "threshold": 1.2, "f1": 0.858, "precision": 0.799,
                   "recall": 0.927, "lift": 14.5, "matched": True, "oracle_f1": None, "instance_feature": 97,
                   "instance_f1": 0.981, "instance_recall": 1.0, "instance_lift": 17.5, "matched_instance": True},
                  {"concept": "motif_TP53", "feature": 78, "threshold": 1.4, "f1": 0.251, "precision": 0.275,
                   "recall": 0.231, "lift": 3.88, "matched": False, "oracle_f1": 0.991, "instance_feature": 148,
                   "instance_f1": 0.958, "instance_recall": 0.949, "instance_lift": 13.7, "matched_instance": True,
                   "direction_f1": 0.49, "subspace8_f1": 0.71, "subspace32_f1": 0.87, "subspace_dim": 16}],
        "steering": [{"concept": "motif_TP53", "feature": 148, "rule": "instance", "strength": 4.76, "n_windows": 20,
                      "n_motif_bases": 379, "dp_motif": -0.0196, "dp_other": -0.0193, "control_dp_motif_q95": 0.0074,
                      "raises_motif": False, "kl_motif": 0.01}],
    }


def test_planted_match_table_in_report_json_and_html(tmp_path: Path) -> None:
    """report.planted: the committed planted calibration is shown (match table with the oracle and the
    instance-level columns, LM vs Markov, steering); without the file the report says it is absent."""
    from interp.report.build import PLANTED_MATCH_KEYS, planted_section

    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(_planted_calibration()))
    section = planted_section(path)
    assert section["available"] and section["n_matched"] == 1 and section["n_types"] == 2
    assert section["n_matched_instance"] == 2 and section["lm"]["baseline_order3_ce"] == 1.3214
    assert set(section["match"][0]) <= set(PLANTED_MATCH_KEYS) and "threshold" not in section["match"][0]
    assert section["steering"][0]["rule"] == "instance" and "kl_motif" not in section["steering"][0]
    report, figs, layers, _, cfg = rs.report_parts(cohort=False)
    report["planted"] = section
    out = finish_report(report, figs, layers, None, cfg, "x",
                        {"json": tmp_path / "report.json", "html": tmp_path / "index.html"})
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["planted"] == out["planted"] and saved["planted"]["match"][1]["oracle_f1"] == 0.991
    html = (tmp_path / "index.html").read_text()
    start = html.index('id="planted"')
    assert html.index('id="represents"') < start < html.index('id="model"')
    box = html[start:html.index('id="model"')]
    assert "<b>1 of 2</b> types matched (target: 80%)" in box and "2 of 2 matched" in box
    assert "held-out cross-entropy 1.0810 nats vs 1.3214" in box and "beats it" in box
    assert "<td class=\"l\">motif_TP53</td><td>78</td><td>0.251</td>" in box and "<td>0.991</td>" in box
    assert "<td>-0.0196</td>" in box.replace("&#43;", "+") and "does not pass" in box
    # the geometry columns: one direction or a subspace (the island row has none: "–")
    assert "<td>0.490</td><td>0.71 / 0.87</td><td>16</td></tr>" in box and "<td>–</td><td>– / –</td><td>–</td>" in box
    absent = planted_section(tmp_path / "missing.json")
    assert not absent["available"] and "not available" in absent["note"]
    html = render_html(dict(out, planted=absent), figs, "x", cfg)
    assert "Not available." in html[html.index('id="planted"'):]


def test_committed_planted_calibration_is_the_report_default() -> None:
    """reports/planted/calibration.json (committed, made by `make planted`) is what report.planted points at,
    and it holds what the report reads."""
    from interp.report.build import planted_section

    cfg = rs.config(cohort=False)
    path = rs.REPO / cfg["report"]["planted"]
    assert cfg["report"]["planted"] == "reports/planted/calibration.json" and path.exists()
    section = planted_section(path)
    assert section["available"] and section["n_types"] == len(section["match"]) == 7
    assert {"oracle_f1", "instance_f1", "matched_instance"} <= set(section["match"][1])
    assert section["lm"]["heldout_ce"] < section["lm"]["baseline_order3_ce"]
    # the steering rows carry the Monte Carlo control p that decides raises_motif (eleventh session's rerun)
    assert all(0 < r["control_p_motif"] <= 1 for r in section["steering"])
    assert all(r["raises_motif"] == (r["control_p_motif"] <= 0.05 and r["dp_motif"] > 0) for r in section["steering"])


def test_large_input_digest_is_cached_by_path_size_and_mtime(tmp_path, monkeypatch) -> None:
    """A whole-genome FASTA or chromosome VCF is hashed once per version of the file, not by every report."""
    import hashlib
    import os

    from interp.report import provenance

    monkeypatch.setattr(provenance, "CACHE_DIGEST_BYTES", 1000)
    big = tmp_path / "big.vcf.gz"
    big.write_bytes(b"x" * 5000)
    cache = tmp_path / "sha256"
    assert provenance.sha256_cached(big, cache) == hashlib.sha256(b"x" * 5000).hexdigest()
    [entry] = list(cache.glob("*.json"))
    reads = []
    monkeypatch.setattr(provenance, "sha256_file", lambda p, chunk=0: reads.append(p) or "recomputed")
    assert provenance.sha256_cached(big, cache) == hashlib.sha256(b"x" * 5000).hexdigest() and not reads
    big.write_bytes(b"y" * 5000)  # same size, new content and mtime
    os.utime(big, ns=(entry.stat().st_mtime_ns + 10**9, entry.stat().st_mtime_ns + 10**9))
    assert provenance.sha256_cached(big, cache) == "recomputed" and reads
    small = tmp_path / "samples.tsv"
    small.write_bytes(b"s" * 10)
    assert provenance.sha256_cached(small, cache) == "recomputed"  # small files are always read


def test_ancestry_plot_draws_no_individual_and_no_group_under_five(monkeypatch) -> None:
    """The PCA figure shows cell densities (cells of at least 5) and per-population ellipses: no point per
    person, and a population of fewer than 5 is neither drawn nor named."""
    import numpy as np

    from interp.report import plots

    captured = {}
    monkeypatch.setattr(plots, "to_png", lambda fig: captured.setdefault("fig", fig) and "png")
    rng = np.random.default_rng(0)
    pcs = np.vstack([rng.normal(0, 1, (60, 3)), rng.normal(4, 1, (60, 3)), rng.normal(8, 1, (2, 3))])
    population = np.array(["CEU"] * 60 + ["YRI"] * 60 + ["RARE"] * 2)
    plots.ancestry_pca(pcs, population, np.array([0.3, 0.1]))
    ax = captured["fig"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["CEU (n = 60)", "YRI (n = 60)"] and "1 group(s) under 5 not shown" in ax.get_title()
    # the only point markers are the two centres; the hexbin's cells hold at least 5 samples each
    markers = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(markers) == 2 and all(len(line.get_xdata()) == 1 for line in markers)
    [hexbin] = ax.collections
    assert hexbin.get_array().min() >= 5


def test_caveat_remote_code_from_a_moving_revision() -> None:
    def report(revision: str, trust: bool = True) -> dict:
        card = {"family": "hf", "trust_remote_code": trust, "revision": revision}
        return {"provenance": {"models": [{"name": "dnabert-2-117m", "card": card}]}}
    assert "remote_code_unpinned" in _ids(report("main"))
    assert "remote_code_unpinned" not in _ids(report("0123456789abcdef0123456789abcdef01234567"))
    assert "remote_code_unpinned" not in _ids(report("main", trust=False))


# ------------------------------------------------------------------------------------------ reproducibility, provenance
def _html(report: dict, figs: dict, layers: dict, calib: list | None, cfg: dict) -> str:
    """index.html of synthetic report sections, with the summary, limitations and methods finish_report adds."""
    first = summary.assemble(report, layers, calib)
    report = dict(report, summary={k: v for k, v in first.items() if k != "_all_caveats"},
                  limitations=first["_all_caveats"], methods=summary.methods(cfg, report.get("audit"),
                                                                             report.get("biomarker_families")),
                  audit_reasons_grouped=summary.group_verdict_reasons(report.get("audit") or []))
    return render_html(report, figs, "synthetic", cfg)


def test_embedding_cache_state_and_wall_clock_stay_out_of_report_json() -> None:
    """cohort.embedding came from embed_cohort's stats.json with its cache hits / misses: a rerun with a warm
    embedding cache wrote {hits: 282, misses: 0} where the first run wrote {hits: 0, misses: 282}."""
    from interp.report.build import run_state_removed

    first = {"model": "m", "n_distinct_sequences": 282, "cache": {"hits": 0, "misses": 282}, "seconds": 9.1}
    rerun = {"model": "m", "n_distinct_sequences": 282, "cache": {"hits": 282, "misses": 0}, "seconds": 0.9}
    assert run_state_removed(first) == run_state_removed(rerun) == {"model": "m", "n_distinct_sequences": 282}


def test_git_dirty_state_is_recorded(tmp_path: Path) -> None:
    import subprocess

    from interp.report.provenance import git_dirty

    assert git_dirty(tmp_path) is None  # not a checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    (tmp_path / "results.txt").write_text("untracked outputs do not count\n")
    assert git_dirty(tmp_path) is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_dirty(tmp_path) is True



def test_git_dirty_counts_untracked_code_but_not_a_users_config_or_outputs(tmp_path: Path) -> None:
    """A module or rule file never committed ran but is not in git_commit: the checkout was called clean."""
    import subprocess

    from interp.report.provenance import git_dirty

    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    for path in ("interp/a.py", "workflow/rules/a.smk", ".gitignore"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("__pycache__/\nresults/\n" if path == ".gitignore" else "x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    for path in ("configs/my_cohort.yaml", "models/my-model.yaml", "results/run/x.json", "notes.txt",
                 "interp/__pycache__/a.cpython-311.pyc"):  # a user's config and card, outputs, ignored caches
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("y\n")
    assert git_dirty(tmp_path) is False
    for path in ("interp/new_module.py", "workflow/rules/new.smk"):
        (tmp_path / path).write_text("y = 2\n")
        assert git_dirty(tmp_path) is True, path
        (tmp_path / path).unlink()
    assert git_dirty(tmp_path) is False

def test_provenance_hashes_the_config_and_the_cohort_bed(tmp_path: Path) -> None:
    """provenance named the cohort BED (the studied regions) only inside the config, with no digest: an edited
    BED of the same path left no trace in report.json. It is hashed like the other inputs; the config gets one
    digest that report.json's own provenance.config gives back; the Python version is recorded."""
    import hashlib

    from interp.report.build import provenance

    fasta, bed, card = tmp_path / "ref.fa", tmp_path / "regions.bed", tmp_path / "m.yaml"
    fasta.write_text(">chr1\nACGT\n")
    bed.write_text("chr1\t0\t4\tgeneA\n")
    card.write_text("name: m\nfamily: hf\nhf_id: org/m\n")
    cfg = {"seed": 7, "cohort": {"enabled": True, "bed": str(bed)}, "embed": {"cache": str(tmp_path / "c" / "e")},
           "audit": {"alpha": 0.05, "fail_within_margin": 0.0512345678}}
    inputs = {"fasta": str(fasta), "cohort_bed": str(bed), "cards": [str(card)]}
    prov = provenance(inputs, {"config": cfg})
    assert prov["inputs"][str(bed)] == hashlib.sha256(bed.read_bytes()).hexdigest()
    report = json.loads(json.dumps(_clean({"provenance": prov}), sort_keys=True))
    config_text = json.dumps(report["provenance"]["config"], sort_keys=True, separators=(",", ":"))
    assert prov["config_sha256"] == hashlib.sha256(config_text.encode()).hexdigest()
    changed = provenance(inputs, {"config": {**cfg, "seed": 8}})
    assert changed["config_sha256"] != prov["config_sha256"]
    assert prov["python"].count(".") == 2
    # settings differing in the 7th significant digit are two configs (floats were rounded to 6 digits)
    assert report["provenance"]["config"]["audit"]["fail_within_margin"] == 0.0512345678
    seventh = provenance(inputs, {"config": {**cfg, "audit": {**cfg["audit"], "fail_within_margin": 0.0512345679}}})
    assert seventh["config_sha256"] != prov["config_sha256"]
    twice = json.loads(json.dumps(_clean(_clean({"provenance": prov}))))  # finish_report cleans twice
    assert twice["provenance"]["config"] == report["provenance"]["config"]


def test_provenance_packages_cover_every_pinned_dependency() -> None:
    """provenance.packages left out stdpopsim (the simulated demography), pyjaspar (the planted motifs),
    umap-learn, igraph, pandas, pyyaml, logomaker and the evo2 extra, all pinned in pyproject.toml: a run
    in an environment with other versions of them said nothing of it."""
    import re
    import tomllib

    from interp.report.provenance import PACKAGES, package_versions

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    pinned = [*project["dependencies"], *project["optional-dependencies"]["evo2"]]
    names = {re.split(r"[=<>!~\[ ;]", dep, maxsplit=1)[0].lower() for dep in pinned}
    assert names <= set(PACKAGES), sorted(names - set(PACKAGES))
    versions = package_versions()
    assert versions["stdpopsim"] != "not installed" and versions["pyjaspar"] != "not installed"


def test_hub_weights_commit_reaches_the_report_without_machine_paths(tmp_path: Path) -> None:
    """A hub model's checkpoint_sha256 is None: the snapshot commit the embedder loaded (emb/<model>.stats.json)
    is its weights' identity, and must be in provenance.models[] and the provenance table."""
    from interp.report.build import loaded_weights

    emb = tmp_path / "emb" / "nt"
    emb.mkdir(parents=True)
    commit = "0123456789abcdef0123456789abcdef01234567"
    (tmp_path / "emb" / "nt.stats.json").write_text(json.dumps({"provenance": {
        "hf_id": "org/nt", "revision_requested": "main", "commit": commit, "trust_remote_code": True,
        "loaded_from": "/root/.cache/huggingface/hub/models--org--nt/snapshots/" + commit, "offline": True}}))
    weights = loaded_weights([str(emb), str(tmp_path / "emb" / "absent")])
    assert weights == {"nt": {"hf_id": "org/nt", "revision_requested": "main", "commit": commit,
                              "trust_remote_code": True}}
    report, figs, layers, calib, cfg = rs.report_parts()
    report["provenance"]["models"].append({"name": "nt", "card": {"family": "hf", "hf_id": "org/nt"},
                                           "checkpoint_sha256": None, "card_sha256": "d" * 64,
                                           "weights": weights["nt"]})
    report["provenance"]["git_dirty"] = True
    html = _html(report, figs, layers, calib, cfg)
    assert f"org/nt@{commit}" in html and "with uncommitted changes" in html


def test_local_model_weights_are_in_provenance(tmp_path: Path) -> None:
    """A card whose hf_id is a local folder has no snapshot commit: replacing its weights in place left the
    report's provenance byte for byte the same. Now models[].weights_sha256 digests the folder's files."""
    from interp.report.build import provenance

    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    card = tmp_path / "my.yaml"
    card.write_text(f"name: my\nfamily: hf\nhf_id: {folder}\ncontext: 64\nlayers: [hidden_states.1]\n")
    inputs = {"cards": [str(card)], "checkpoints": [], "emb_dirs": [], "sae_weights": []}
    params = {"config": {"seed": 1, "embed": {"cache": str(tmp_path / "cache" / "embeddings")}}}
    digests = []
    for weights in (b"version A", b"version B", b"version A"):
        (folder / "model.safetensors").write_bytes(weights)
        digests.append(provenance(inputs, params)["models"][0]["weights_sha256"])
    assert digests[0] != digests[1] and digests[0] == digests[2] and len(digests[0]) == 64
    (folder / ".cache").mkdir()
    (folder / ".cache" / "lock").write_text("x")  # hub-download bookkeeping is not the model
    assert provenance(inputs, params)["models"][0]["weights_sha256"] == digests[0]
    hub = tmp_path / "hub.yaml"
    hub.write_text("name: hub\nfamily: hf\nhf_id: org/model\ncontext: 64\nlayers: [hidden_states.1]\n")
    assert provenance(dict(inputs, cards=[str(hub)]), params)["models"][0]["weights_sha256"] is None
    report, figs, layers, calib, cfg = rs.report_parts()
    report["provenance"]["models"].append({"name": "my", "card": {"family": "hf"}, "checkpoint_sha256": None,
                                           "weights_sha256": digests[1], "card_sha256": "d" * 64})
    assert f"<code>{digests[1]}</code>" in _html(report, figs, layers, calib, cfg)


@pytest.mark.parametrize("text", ["{}", "[]", '{"rows": []}', '{"cells": {}}', '{"rows": [{"cell": "base"}]}'])
def test_a_file_that_is_no_calibration_table_is_refused(tmp_path: Path, text: str) -> None:
    """Given as report.planted, any JSON (the cohort calibration's table, also named calibration.json, or {})
    rendered as an available planted calibration that "does not pass", with null counts; given as
    report.calibration, a table of no rows read as "no calibration table was given"."""
    from interp.report.build import _calibration_rows, planted_section

    wrong = tmp_path / "calibration.json"
    wrong.write_text(text)
    with pytest.raises(InputError, match=r"report\.planted\): not the calibration\.json of `make planted`"):
        planted_section(wrong)
    with pytest.raises(InputError, match=r"report\.calibration\): not a calibration table"):
        _calibration_rows(wrong)
    with pytest.raises(InputError, match="report.planted"):
        planted_section(ROOT / "reports" / "calibration" / "calibration.json")
    assert planted_section(ROOT / "reports" / "planted" / "calibration.json")["available"]
    assert _calibration_rows(ROOT / "reports" / "calibration" / "calibration.json")
    assert _calibration_rows(tmp_path / "absent.json") is None and not planted_section(None)["available"]


def test_lm_table_takes_beats_from_report_json_and_survives_a_missing_baseline() -> None:
    """The template compared heldout_ce with the baselines itself (a None baseline, NaN in the metrics, raised
    TypeError); it shows the stage's beats_order0 / beats_order3."""
    report, figs, layers, calib, cfg = rs.report_parts(cohort=False)
    report["lm"] = [dict(report["lm"][0], baseline_order3_ce=None, beats_order3=None)]
    html = _html(report, figs, layers, calib, cfg)
    row = html[html.index("<td class=\"l\">tiny-dnalm</td><td>1.3747"):]
    row = row[: row.index("</tr>")]
    assert "<td>yes</td><td>not recorded</td>\n<td>n/a</td><td>not recorded</td>" in row
    # with the held-out differences (since 2026-12-06): each beside its "beats", with its interval
    diff = {"mean": -0.0172, "low": -0.0301, "high": -0.0043, "n_blocks": 16, "block": 500}
    report["lm"] = [dict(report["lm"][0], order0_difference=diff)]
    html = _html(report, figs, layers, calib, cfg)
    assert "<td>yes</td><td>-0.0172 [-0.0301, -0.0043]</td>" in html


@pytest.mark.parametrize("source", ["panel", "regions"])
def test_ancestry_pcs_source_stated_truly(tmp_path: Path, monkeypatch, source: str) -> None:
    """Without a marker panel the PCs come from the studied regions' own variants (ancestry_source vcf "cohort");
    the summary and Methods said "markers outside the regions" whatever the source."""
    monkeypatch.setenv("INTERP_CHROMIUM", str(tmp_path / "no-such-chromium"))
    report, figs, layers, calib, cfg = rs.report_parts()
    if source == "regions":
        report["cohort"]["ancestry_markers"] = {"vcf": "cohort", "n_markers": 40}
    out = finish_report(report, figs, layers, calib, cfg, "synthetic",
                        {"json": tmp_path / "report.json", "html": tmp_path / "index.html"})
    html = (tmp_path / "index.html").read_text()
    audit_method = next(m for m in out["methods"] if m["name"].startswith("Ancestry audit"))
    assert out["summary"]["data"]["cohort"]["ancestry_pcs_from"] == source
    assert ("markers outside the studied regions" in html) is (source == "panel")
    assert ("outside the studied regions" in audit_method["scheme"]) is (source == "panel")
    assert ("regions' own" in audit_method["scheme"]) is (source == "regions")


def test_each_verdict_card_shows_its_rule_and_multiplicity() -> None:
    """Each verdict carries the numbers, their intervals, and the rule that decided it: the summary's cards
    showed the reason only (the rule was in report.json and further down the page)."""
    report, figs, layers, calib, cfg = rs.report_parts()
    html = _html(report, figs, layers, calib, cfg)
    cards = html.split('<div class="vcard')[1:]
    verdicts = summary.worst_verdicts(report["audit"], layers)
    assert len(cards) == len(verdicts) == 3
    for card, v in zip(cards, verdicts, strict=True):
        assert v["verdict_rule"] and v["multiplicity"]
        card = card[: card.index('<div class="where">')]
        assert html_escape(f"rule: {v['verdict_rule']}; multiplicity: {v['multiplicity']}", quote=False) in card


# ------------------------------------------------------------------------------------------ README documents the keys
def _readme_report_json_words() -> set[str]:
    """Every name in backticks in README's report.json documentation (Outputs, up to the privacy line)."""
    import re

    text = (rs.REPO / "README.md").read_text()
    start = text.index("`reports/<run>/report.json` is an interface")
    doc = text[start: text.index("Privacy: the report holds", start)]
    words: set[str] = set()
    for quoted in re.findall(r"`([^`]+)`", doc):
        words.update(w.strip(".") for w in re.split(r"[^A-Za-z0-9_.*]+", quoted) if w.strip("."))
    return words


#: keys of the audit before the calibrated audit that the synthetic report keeps (old tables must still render);
#: no stage writes them now
LEGACY_KEYS = {"n_permutations", "confounders"}


def _documented(key: str, words: set[str]) -> bool:
    """Named, or covered by a `prefix_*` pattern, or `x_ci_low` / `x_ci_high` of a documented `x` ("(+ `_ci_low`,
    `_ci_high`)" in the README)."""
    for suffix in ("_ci_low", "_ci_high"):
        if key.endswith(suffix) and suffix in words and _documented(key.removesuffix(suffix), words):
            return True
    return key in words or key in LEGACY_KEYS or any(w.endswith("*") and key.startswith(w[:-1]) for w in words)


def test_every_top_and_second_level_report_json_key_is_documented_in_the_readme(tmp_path: Path, monkeypatch) -> None:
    """Keys of report.json are an interface, documented in README (Outputs): every key a full report writes at
    the top level, and inside each section (a section's dict keys, or the keys of its rows), is named there.
    Dicts keyed by data (layers {model: ...}) are not keys."""
    from interp.report.build import PROBE_SAE_KEYS, planted_section

    monkeypatch.setenv("INTERP_CHROMIUM", str(tmp_path / "no-such-chromium"))
    report, figs, layers, calib, cfg = rs.report_parts()
    (tmp_path / "planted.json").write_text(json.dumps(_planted_calibration()))
    report["planted"] = planted_section(tmp_path / "planted.json")
    report["probe_sae_vs_raw"] = [dict.fromkeys(PROBE_SAE_KEYS, 0)]
    report["probe_notes"] = ["m block1 exon (embedding): 1 fold(s) skipped"]
    report["biomarker_linkage"] = summary.linkage_summary(report["biomarkers"])
    report["rank_summary"] = {"config": {}, "n_pcs": 10, "covariate_columns": [], "covariates": {}, "phenotypes": [
        {"phenotype": "causal", "type": "binary", "n_individuals": 124, "n_missing_phenotype": 0, "n_cases": 60,
         "families": {}, "linkage": {}}]}
    out = finish_report(report, figs, layers, calib, cfg, "synthetic",
                        {"json": tmp_path / "report.json", "html": tmp_path / "index.html"})
    words = _readme_report_json_words()
    missing = [k for k in out if not _documented(k, words)]
    for section, value in out.items():
        if section == "layers":
            continue
        rows = value if isinstance(value, list) else [value]
        for row in rows:
            if isinstance(row, dict):
                missing += [f"{section}.{k}" for k in row if not _documented(k, words)]
    assert not sorted(set(missing)), f"report.json keys not documented in README (Outputs): {sorted(set(missing))}"


def test_rank_summary_phenotype_keys_are_documented_in_the_readme() -> None:
    """report.json `rank_summary.phenotypes` rows as rank_phenotype writes them, quantitative (with its `transform`,
    rank.quantitative_transform) and binary: every key is named in README (Outputs)."""
    import numpy as np

    from interp.rank import Family, RankConfig, rank_phenotype

    rng = np.random.default_rng(0)
    n = 60
    d = rng.binomial(2, 0.3, size=(n, 2)).astype(float)
    variants = Family("variant", "variant", d, ["v0", "v1"], ["v0", "v1"], np.array(["c", "c"]), np.array([1, 2]),
                      np.array([2, 3]))
    words = _readme_report_json_words()
    for y in (rng.lognormal(size=n), (rng.random(n) < 0.4).astype(float)):
        _, summ = rank_phenotype("p", y, None, variants, [], RankConfig(resamples=0, refit_top=0, min_carriers=5))
        missing = [k for k in summ if not _documented(k, words)]
        assert not missing, f"rank_summary.phenotypes keys not documented in README (Outputs): {missing}"


def test_annotation_near_the_biomarkers_reads_only_their_span(tmp_path: Path) -> None:
    """The regional plot's gene rows: those overlapping the biomarkers' span, as from the whole gene table."""
    import polars as pl

    from interp.genome.annotation import read_annotation, to_contigs
    from interp.report.build import _annotation_near
    from tests.conftest import DEMO_GENES

    genes = tmp_path / "genes.tsv"
    genes.write_text(DEMO_GENES.read_text() + "FAR\t17\t+\t39000\t39900\t39000,\t39900,\n"
                     "OTHER\t5\t+\t6000\t7000\t6000,\t7000,\n")
    bio = pl.DataFrame({"contig": ["chr17", "chr17"], "start": [6500, 11000], "end": [6501, 11500]})
    got = _annotation_near({"annotation": str(genes)}, {"config": {"reference": {}}}, bio)
    whole = to_contigs(read_annotation(genes), ["chr17"], drop_missing=True)
    # whole transcripts, exons outside the biomarkers' spans included, so the plot draws each gene whole
    expected = whole.filter(pl.col("gene") == "DOC2B").select(got.columns)
    assert got.equals(expected) and set(got["gene"]) == {"DOC2B"}
    # biomarkers near both ends of the contig: the gene in between is not theirs (until the thirty-third session
    # one span from the first row to the last kept it, and on chr1 every transcript of the chromosome)
    bio = pl.DataFrame({"contig": ["chr17", "chr17"], "start": [6500, 39500], "end": [6501, 39501]})
    middle = tmp_path / "middle.tsv"
    middle.write_text(genes.read_text() + "MIDDLE\t17\t+\t33000\t34000\t33000,\t34000,\n")
    got = _annotation_near({"annotation": str(middle)}, {"config": {"reference": {}}}, bio)
    assert set(got["gene"]) == {"DOC2B", "FAR"}


def test_audit_table_shows_the_ancestry_only_auroc_with_its_interval() -> None:
    """report.json has the ancestry-only AUROC's bootstrap interval; the audit table showed the point alone."""
    report, figs, layers, calib, cfg = rs.report_parts()
    html = _html(report, figs, layers, calib, cfg)
    table = html[html.index("<h2>1. Audit"):html.index("<h3>Why each verdict")]
    assert "ancestry only [95% CI]" in table and "0.460 [0.390, 0.530]" in table


def test_family_counts_and_rows_are_of_tested_features_only() -> None:
    """rank writes every column of a family, the untested ones (too few carriers, constant) with rank empty and
    p NaN; n_tests must be the tested ones (the BH scope's own count), not every column: the demo's family
    header read "BH within ... (4224 tests); 6528 tests"."""
    rows = [{"phenotype": "c", "feature": f"m/b1/chr1:0-1000/dim{i}", "kind": "embedding", "model": "m",
             "layer": "b1", "p": 0.01 * (i + 1), "q": 0.04 * (i + 1), "rank": i + 1} for i in range(3)]
    rows += [{"phenotype": "c", "feature": f"m/b1/chr1:0-1000/dim{i}", "kind": "embedding", "model": "m",
              "layer": "b1", "p": float("nan"), "q": float("nan"), "rank": None} for i in range(3, 8)]
    (table,) = summary.family_tables(rows, top=10)
    assert table["n_tests"] == 3
    assert table["n_q_below_0_05"] == 1
    assert [r["rank"] for r in table["rows"]] == [1, 2, 3]


def test_truth_recovery_ranks_the_causal_variant_among_tested_variants_only() -> None:
    """A variant rank leaves untested (too few carriers: rank empty, p NaN) is not "ranked": it must not count
    in n_variants_ranked, and an untested causal variant has no rank (not the last place among NaNs)."""
    import polars as pl

    from interp.report.build import truth_recovery

    def variant(pos: int, p: float, rank: int | None) -> dict:
        return {"phenotype": "causal", "feature": f"chr1:{pos}:A:G", "kind": "variant", "contig": "chr1",
                "start": pos - 1, "end": pos, "window": "", "p": p, "q": p, "stability": 0.5, "rank": rank}

    bio = pl.DataFrame([variant(100, 0.01, 1), variant(200, 0.2, 2), variant(300, float("nan"), None),
                        variant(400, float("nan"), None)])
    audit = pl.DataFrame({"phenotype": ["causal"], "model": ["m"], "layer": ["b1"], "verdict": ["PASS"]})
    truth = {"causal_variant": {"contig": "chr1", "pos": 200, "ref": "A", "alt": "G"}}
    out = truth_recovery(truth, audit, bio)
    assert (out["causal_variant_rank"], out["n_variants_ranked"]) == (2, 2)
    truth["causal_variant"]["pos"] = 400
    out = truth_recovery(truth, audit, bio)
    assert (out["causal_variant_rank"], out["n_variants_ranked"]) == (None, 2)


def test_biomarker_table_shows_a_dash_not_none_for_a_missing_optional_column() -> None:
    """lead_variant / p_conditional are set only for significant model features: the rows after the first
    showed the literal "None" in the demo's tables."""
    report, figs, layers, calib, cfg = rs.report_parts()
    fam = next(f for f in report["biomarker_families"] if f["kind"] == "embedding")
    fam["rows"][0].update(lead_variant="chr17:6141:C:T", p_conditional=0.2)
    for r in fam["rows"][1:]:
        r.update(lead_variant=None, p_conditional=None)
    html = _html(report, figs, layers, calib, cfg)
    assert "<td>chr17:6141:C:T</td>" in html
    assert "<td>None</td>" not in html


def test_sae_methods_name_the_sae_splits_of_the_config() -> None:
    """The SAE's held-out data are the test genome blocks of sae.test_fraction (sae.heldout_fraction does not
    exist): the demo's methods table read "None of windows held out"."""
    cfg = rs.config(cohort=False)
    sae = next(m for m in summary.methods(cfg) if m["name"] == "Sparse autoencoder")
    assert "None" not in sae["scheme"]
    s = cfg["sae"]
    assert f"{s['split_block_bases']}-base genome blocks" in sae["scheme"]
    assert f"{s['test_fraction']:g} of them held out as test" in sae["scheme"]
    assert "straddles two splits are in none" in sae["scheme"]


def _calibration_cell_as_written() -> list[dict]:
    """One cell of reports/calibration/calibration.json as interp.calibration writes it: power a rate dict, FDR
    {fdr, se, ...}, type-I {level: rate dict + cluster_se}, and verdict_rates only for verdicts that occurred."""
    def rate(k: int, n: int, low: float, high: float) -> dict:
        return {"rate": k / n, "ci_low": low, "ci_high": high, "count": k, "n": n}

    base = {"cell": "n=300", "axis": "n", "value": 300, "n_replicates": 100, "n_verdicts": 100}
    return [
        base | {"truth": "causal", "verdict_rates": {"PASS": rate(47, 100, 0.369, 0.572),
                                                      "NO SIGNAL": rate(53, 100, 0.428, 0.631)},
                "power_variant": rate(12, 20, 0.3605, 0.8088), "power_feature": rate(11, 20, 0.3153, 0.7694),
                "fdr": {"fdr": 0.438049, "se": 0.0902, "mean_discoveries": 811.9, "mean_false": 684.1},
                "type1": None},
        base | {"truth": "ancestry-only", "verdict_rates": {"FAIL": rate(1, 100, 0.0003, 0.0545),
                                                             "NO SIGNAL": rate(99, 100, 0.9455, 0.9997)},
                "power_variant": None, "power_feature": None, "fdr": None, "type1": None},
        base | {"truth": "null", "verdict_rates": {"NO SIGNAL": rate(97, 100, 0.915, 0.994),
                                                    "PASS": rate(3, 100, 0.0062, 0.0852)},
                "power_variant": None, "power_feature": None, "fdr": None,
                "type1": {"0.01": rate(2167, 205964, 0.0101, 0.0110) | {"cluster_se": 0.0009},
                          "0.001": rate(241, 205964, 0.00103, 0.00133) | {"cluster_se": 0.0001}}},
    ]


def test_calibration_box_shows_power_fdr_type1_and_zero_rates_of_the_calibration_table() -> None:
    """calibration.json gives power as a rate dict, FDR as {fdr, se}, type-I per p level, and leaves out a
    verdict that never occurred: the demo's box showed "–" for every power, FDR and type-I cell, and "–" for
    P(FAIL | causal), whose 0 of 100 (upper bound 0.036) is what a reviewer reads it for."""
    report, figs, layers, _, cfg = rs.report_parts()
    cal = summary.calibration_summary(_calibration_cell_as_written(), {"n_samples": 300.0})
    causal = next(r for r in cal["rows"] if r["truth"] == "causal")
    assert causal["verdict_rates"]["FAIL"]["count"] == 0 and causal["verdict_rates"]["FAIL"]["n"] == 100
    assert causal["verdict_rates"]["FAIL"]["ci_high"] == pytest.approx(0.0362, abs=1e-4)
    html = _html(report, figs, layers, _calibration_cell_as_written(), cfg)
    box = html[html.index('id="calibration"'):html.index("Key caveats")]
    assert "0.00 [0.00, 0.04]" in box  # P(FAIL | causal), P(FAIL | null)
    assert "0.60 [0.36, 0.81]" in box and "0.55 [0.32, 0.77]" in box  # power (variant), power (feature)
    assert "0.438" in box  # FDR
    assert "1.05e-02" in box and "1.17e-03" in box  # type-I error at p < 0.01 and p < 0.001


def test_a_failing_html_render_leaves_the_earlier_report_pair_untouched(tmp_path: Path, monkeypatch) -> None:
    """report.json and index.html are one pair: a template error must not leave a new report.json beside the
    index.html of an earlier run (each file is atomic, but report.json was written before the page rendered)."""
    import interp.report.build as build

    monkeypatch.setenv("INTERP_CHROMIUM", str(tmp_path / "no-such-chromium"))
    (tmp_path / "report.json").write_text('{"earlier": true}\n')
    (tmp_path / "index.html").write_text("<html>earlier</html>")

    def broken(*args, **kwargs):
        raise RuntimeError("template error")

    monkeypatch.setattr(build, "render_html", broken)
    report, figs, layers, calib, cfg = rs.report_parts(cohort=False)
    with pytest.raises(RuntimeError, match="template error"):
        build.finish_report(report, figs, layers, calib, cfg, "synthetic",
                            {"json": tmp_path / "report.json", "html": tmp_path / "index.html"})
    assert (tmp_path / "report.json").read_text() == '{"earlier": true}\n'
    assert (tmp_path / "index.html").read_text() == "<html>earlier</html>"


def test_caveat_shuffled_control_is_the_best_probes_own_model() -> None:
    """Two hub models share layer names (layer.6): the best probe's shuffled-label control is its own model's,
    not the first model's row of the same layer name."""
    rows = [{"model": "a", "layer": "layer.6", "target": "exon", "features": "embedding", "auroc_mean": 0.55,
             "auroc_sd": 0.02},
            {"model": "a", "layer": "layer.6", "target": "exon", "features": "shuffled", "auroc_mean": 0.54,
             "auroc_sd": 0.02},
            {"model": "b", "layer": "layer.6", "target": "exon", "features": "embedding", "auroc_mean": 0.90,
             "auroc_sd": 0.02},
            {"model": "b", "layer": "layer.6", "target": "exon", "features": "shuffled", "auroc_mean": 0.92,
             "auroc_sd": 0.02}]
    caveats = {c["id"]: c["text"] for c in summary.detect_caveats({"probes": rows})}
    assert "exon (0.900 vs shuffled 0.920)" in caveats.get("probes_vs_shuffled", "")
    rows[3]["auroc_mean"] = 0.50
    rows[1]["auroc_mean"] = 0.95
    assert "probes_vs_shuffled" not in {c["id"] for c in summary.detect_caveats({"probes": rows})}


def test_per_layer_details_show_the_genotype_descriptors_the_audit_writes() -> None:
    """The section promised confounders but read a `confounders` key the audit stopped writing: the descriptors
    (haplotype GC content, missing-genotype rate: reported, never adjusted for) were in report.json only."""
    report, figs, layers, calib, cfg = rs.report_parts()
    html = _html(report, figs, layers, calib, cfg)
    section = html.split("Per-population performance and confounders")[1].split("</details>")[0]
    assert "<td class=\"l\">gc</td><td>-0.053</td><td>0.362</td><td>0.461</td><td>0.153</td><td>2.19e-08</td>" in section
    assert "<td class=\"l\">missing_rate</td><td>–</td><td>–</td><td>–</td><td>–</td><td>–</td>" in section
    assert "Ancestry strata from genotype-PC bins" not in section  # labelled strata: no PC-bin table
    report["audit_details"][0]["by_stratum"] = [{"population": "bin0", "n": 40, "prevalence": 0.25, "auroc": 0.66,
                                                 "auroc_ci_low": 0.5, "auroc_ci_high": 0.8}]
    section = _html(report, figs, layers, calib, cfg).split("Per-population performance")[1].split("</details>")[0]
    assert "<td class=\"l\">bin0</td><td>40</td><td>0.25</td><td>0.660 [0.500, 0.800]</td>" in section


def test_population_with_under_five_cases_shows_its_size_and_the_mask_only() -> None:
    """A population whose cases (or controls) number under 5 comes from the audit as n and `small_cell`: the page says
    why its prevalence and AUROC are missing, and the per-population figure draws nothing for it."""
    report, figs, layers, calib, cfg = rs.report_parts()
    for d in report["audit_details"]:
        d["by_population"] = [*d["by_population"][:2], {"population": "FIN", "n": 80, "small_cell": "<5 cases"}]
    section = _html(report, figs, layers, calib, cfg).split("Per-population performance")[1].split("</details>")[0]
    assert "<td class=\"l\">FIN</td><td>80</td><td>&lt;5 cases</td><td>–</td>" in section
    from interp.report import plots

    plots.population_auroc(report["audit_details"], rs.LAYERS)  # a masked group is skipped, not an error


def test_regional_plot_leaves_out_untested_features(monkeypatch) -> None:
    """rank writes untested features (too few carriers) with p NaN; the plot took them as a family's top feature
    (polars sorts NaN last, so a family of untested features only was drawn with a NaN bar)."""
    import polars as pl

    from interp.report import build

    nan = float("nan")
    rows = [("chr1:101:A:G", "variant", "", 100, 101, 1e-4), ("chr1:201:C:T", "variant", "", 200, 201, nan),
            ("m/block1/chr1:0-1000/dim3", "embedding", "block1", 0, 1000, 1e-3),
            ("m/block2/chr1:0-1000/dim1", "embedding", "block2", 0, 1000, nan),
            ("m/sae/chr1:0-1000/f7", "sae", "block2", 0, 1000, nan)]
    bio = pl.DataFrame([{"phenotype": "causal", "feature": f, "kind": k, "model": "m", "layer": layer,
                         "contig": "chr1", "start": s, "end": e, "p": p} for f, k, layer, s, e, p in rows])
    captured = {}

    def fake(phenotype, variants, model_top, exons, lead, truth_pos):
        captured.update(variants=variants, model_top=model_top, lead=lead)
        return "png"

    monkeypatch.setattr(build.plots, "regional_association", fake)
    exons = pl.DataFrame(schema={"contig": pl.String, "start": pl.Int64, "end": pl.Int64})
    assert build.regional_plot(bio, "causal", exons, None) == "png"
    assert captured["variants"]["pos"].to_list() == [101] and captured["lead"]["pos"] == 101
    assert captured["model_top"]["p"].to_list() == [1e-3]  # the NaN families are not drawn


def test_samples_without_a_population_label_are_one_named_group() -> None:
    """A sample with no population label (and no phenotype) was counted as population "nan" in report.json's
    cohort.populations and drawn as such in the ancestry plot."""
    import pandas as pd

    from interp.report.build import population_labels

    obs = pd.DataFrame({"population": pd.Categorical(["CEU", None, "YRI", "CEU"])})
    assert population_labels(obs, "population").tolist() == ["CEU", "(no label)", "YRI", "CEU"]
    obs = pd.DataFrame({"population": ["CEU", "NA", "nan", "YRI"]})
    assert population_labels(obs, "population").tolist() == ["CEU", "(no label)", "(no label)", "YRI"]
    assert population_labels(obs, None).tolist() == ["all"] * 4


def test_first_screen_counts_each_phenotypes_missing_samples_and_names_the_covariates() -> None:
    """A user cohort with NA phenotypes and a one-hot covariate: the audit dropped and counted the NA rows and
    adjusted for the covariate's levels, but the HTML report said neither (only report.json had them)."""
    report, figs, layers, calib, cfg = rs.report_parts(cohort=True)
    for a in report["audit"]:
        a.update(n_samples=165, n_missing_phenotype=15, n_cases=60)
    policy = {"missing": "refuse", "covariates": {
        "site": {"adjusted_for": True, "columns": ["site=north", "site=south"], "kind": "categorical",
                 "levels": ["east", "north", "south"], "reference": "east", "n_missing": 0},
        "age": {"adjusted_for": True, "columns": ["age"], "kind": "numeric", "n_missing": 0}}}
    report["audit_details"] = [{"phenotype": a["phenotype"], "covariate_policy": policy} for a in report["audit"]]
    first = summary.assemble(report, layers, None)
    ph = report["audit"][0]["phenotype"]
    counts = first["data"]["cohort"]["phenotype_counts"]
    assert counts[ph] == {"n_samples": 165, "n_missing": 15, "n_cases": 60}
    assert first["data"]["cohort"]["covariates"] == ["site (categorical: north, south vs east)", "age"]
    report = dict(report, summary={k: v for k, v in first.items() if k != "_all_caveats"},
                  limitations=first["_all_caveats"], methods=summary.methods(cfg))
    html = render_html(report, figs, "x", cfg)
    assert f"{ph} (165 analysed, 60 cases; 15 with a missing value left out)" in html
    assert "Covariates adjusted for</dt><dd>site (categorical: north, south vs east), age" in html


def test_variants_carried_by_under_five_people_are_not_named_in_the_report() -> None:
    """`tags_variants` and `nearest_variants` named any variant that passed cohort.maf, singletons included (maf
    0.05 means 5 carriers only from n = 100; the schema allows maf 0), so `biomarkers` and `biomarker_families`
    (and the HTML) named variants carried by 1-4 people. They now name only variants rank counted at least 5
    carriers of (the fewest over the phenotypes) and say how many others they leave out."""
    import polars as pl

    from interp.report.build import biomarker_sections

    def variant(vid, pos, carriers, phenotype, p):
        return {"phenotype": phenotype, "family": "variant", "feature": vid, "kind": "variant", "contig": "chr1",
                "start": pos - 1, "end": pos, "p": p, "q": p, "rank": 1 if p == p else None,
                "n_carriers": carriers, "tags_variants": None, "nearest_variants": vid}

    nan = float("nan")
    rows = []
    for ph in ("causal", "null"):
        rows += [variant("chr1:150:A:G", 150, 40, ph, 1e-4), variant("chr1:160:C:T", 160, 2, ph, nan),
                 # 6 carriers among one phenotype's people, 4 among the other's: the fewer count
                 variant("chr1:170:G:A", 170, 6 if ph == "causal" else 4, ph, nan),
                 variant("chr1:180:T:A", 180, 12, ph, nan)]
        rows.append({"phenotype": ph, "family": "embedding:m/l", "feature": "m/l/chr1:100-600/dim0",
                     "kind": "embedding", "contig": "chr1", "start": 100, "end": 600, "p": 1e-6, "q": 1e-4,
                     "rank": 1, "n_carriers": 299,
                     "tags_variants": "chr1:160:C:T(r=0.91);chr1:150:A:G(r=0.80);chr1:170:G:A(r=0.40)",
                     "nearest_variants": "chr1:150:A:G,chr1:160:C:T,chr1:170:G:A,chr1:180:T:A,chr1:999:T:C"})
    out = biomarker_sections(pl.DataFrame(rows), 10)
    text = json.dumps(out)
    for rare in ("chr1:160:C:T", "chr1:170:G:A", "chr1:999:T:C"):  # 2, 4 (fewest), unknown: not counted
        assert rare not in text, rare
    emb = [b for b in out["biomarkers"] if b["kind"] == "embedding"]
    assert [b["tags_variants"] for b in emb] == ["chr1:150:A:G(r=0.80);(+2 with <5 carriers)"] * 2
    # the variants kept stay comma-separated, as rank writes them
    assert [b["nearest_variants"] for b in emb] == ["chr1:150:A:G,chr1:180:T:A (+3 with <5 carriers)"] * 2
    fam_rows = [r for f in out["biomarker_families"] for r in f["rows"]]
    assert {r["nearest_variants"] for r in fam_rows if r["kind"] == "variant"} == {"chr1:150:A:G"}
    assert {r["tags_variants"] for r in fam_rows if r["kind"] == "embedding"} == {
        "chr1:150:A:G(r=0.80);(+2 with <5 carriers)"}
    # the linkage counts every tagged variant (a count names nobody)
    assert [x["n_tagged_variants"] for x in out["biomarker_linkage"]] == [3, 3]
    # an old rank table (per-phenotype `n_carriers`, no `n_carriers_cohort`): the per-phenotype count is never
    # shown, and the key stays, null, in both lists (README; it was missing)
    assert all(b["n_carriers"] is None for b in out["biomarkers"]) and all(
        "n_carriers" in r and r["n_carriers"] is None for r in fam_rows)


def test_report_shows_one_carrier_count_per_variant_not_one_per_phenotype() -> None:
    """A variant's `n_carriers` is rank's count among the samples with a value for the phenotype: 12 for
    `b` (no one left out) and 11 for `a` (one person without an `a` value, who carries it). The report showed
    both in `biomarkers`, `biomarker_families` and the HTML tables, and 12 - 11 told that person's genotype. The
    report's `n_carriers` is now the cohort's count (rank's `n_carriers_cohort`, the same under every phenotype),
    never rank's per-phenotype one; the "<5 carriers, not named" rule reads the cohort's count too."""
    import polars as pl

    from interp.report.build import biomarker_sections

    def variant(vid, pos, per_phenotype, cohort, phenotype):
        return {"phenotype": phenotype, "family": "variant", "feature": vid, "kind": "variant", "contig": "chr1",
                "start": pos - 1, "end": pos, "p": 1e-4, "q": 1e-3, "rank": 1, "n_carriers": per_phenotype,
                "n_carriers_cohort": cohort, "tags_variants": None, "nearest_variants": None}

    rows = [variant("chr1:150:A:G", 150, 11, 12, "a"), variant("chr1:150:A:G", 150, 12, 12, "b"),
            # 5 carriers in the cohort, 4 among `a`'s people: carried by 5 people, named
            variant("chr1:170:G:A", 170, 4, 5, "a") | {"p": float("nan"), "rank": None},
            variant("chr1:170:G:A", 170, 5, 5, "b") | {"p": float("nan"), "rank": None}]
    for ph in ("a", "b"):
        rows.append({"phenotype": ph, "family": "embedding:m/l", "feature": "m/l/chr1:100-600/dim0",
                     "kind": "embedding", "contig": "chr1", "start": 100, "end": 600, "p": 1e-6, "q": 1e-4,
                     "rank": 1, "n_carriers": 298 if ph == "a" else 299, "n_carriers_cohort": 299,
                     "tags_variants": "chr1:170:G:A(r=0.40)", "nearest_variants": None})
    out = biomarker_sections(pl.DataFrame(rows), 10)
    shown = out["biomarkers"] + [r for f in out["biomarker_families"] for r in f["rows"]]
    assert shown and all("n_carriers_cohort" not in r for r in shown)  # one count, under the report's key
    by_feature: dict = {}
    for r in shown:
        by_feature.setdefault(r["feature"], set()).add(r["n_carriers"])
    assert by_feature == {"chr1:150:A:G": {12}, "m/l/chr1:100-600/dim0": {299}}
    assert {r["tags_variants"] for r in shown if r["kind"] == "embedding"} == {"chr1:170:G:A(r=0.40)"}
    report, figs, layers, calib, cfg = rs.report_parts()
    report.update(out)
    html = _html(report, figs, layers, calib, cfg)
    assert "<th>n carriers</th>" in html and "<td>11</td>" not in html and "<td>12</td>" in html


def test_report_without_a_cohort_carrier_count_shows_no_carrier_count() -> None:
    """A rank table written before `n_carriers_cohort`: its per-phenotype `n_carriers` is not shown (it is what
    differs between phenotypes); the naming rule falls back to the fewest per-phenotype count."""
    import polars as pl

    from interp.report.build import biomarker_sections

    rows = [{"phenotype": ph, "family": "variant", "feature": "chr1:150:A:G", "kind": "variant", "contig": "chr1",
             "start": 149, "end": 150, "p": 1e-4, "q": 1e-3, "rank": 1, "n_carriers": c}
            for ph, c in (("a", 11), ("b", 12))]
    out = biomarker_sections(pl.DataFrame(rows), 10)
    shown = out["biomarkers"] + [r for f in out["biomarker_families"] for r in f["rows"]]
    assert shown and all(r.get("n_carriers") is None and r.get("n_carriers_cohort") is None for r in shown)


def test_caveat_sae_dead_states_what_dead_fraction_counts() -> None:
    """`dead_fraction` (interp.sae.train) counts features firing on no test token and no token of the last
    training epoch; the caveat said "never fire on held-out tokens", which is `dead_fraction_test` (higher)."""
    report = {"sae": [{"model": "m", "layer": "block2", "dead_fraction": 0.3, "dead_fraction_test": 0.45}]}
    [caveat] = [c for c in summary.detect_caveats(report) if c["id"] == "sae_dead"]
    assert "30%" in caveat["text"]
    assert "never fire on held-out tokens" not in caveat["text"]
    assert "last training epoch" in caveat["text"]


def test_caveat_shuffled_control_says_the_one_fold_sd_margin() -> None:
    """The caveat fires when the best probe is not above its shuffled-label control by more than one fold-SD;
    it said "not above the shuffled-label control" beside numbers showing the probe above it (0.620 vs 0.550)."""
    rows = [{"model": "m", "layer": "block2", "target": "exon", "features": "embedding", "auroc_mean": 0.62,
             "auroc_sd": 0.10},
            {"model": "m", "layer": "block2", "target": "exon", "features": "shuffled", "auroc_mean": 0.55,
             "auroc_sd": 0.02}]
    text = {c["id"]: c["text"] for c in summary.detect_caveats({"probes": rows})}["probes_vs_shuffled"]
    assert "exon (0.620 vs shuffled 0.550)" in text
    assert "by more than one fold-SD" in text


def test_lm_caveat_when_the_lm_is_below_order3_but_its_interval_reaches_zero() -> None:
    """The LM "beating" the order-3 chain by a point estimate whose block interval reaches 0 is not shown; it is
    said (medium), while an interval below 0 says nothing and a point estimate above the chain stays high."""
    def lm(ce: float, low: float, high: float) -> dict:
        return {"model": "tiny", "heldout_ce": ce, "baseline_order3_ce": 1.30,
                "order3_difference": {"mean": ce - 1.30, "low": low, "high": high, "n_blocks": 16, "block": 500}}

    def caveat(row: dict) -> dict | None:
        return next((c for c in summary.detect_caveats({"lm": [row]}) if c["id"] == "lm_vs_markov3"), None)

    unclear = caveat(lm(1.29, -0.03, 0.01))
    assert unclear["severity"] == "medium" and "-0.0300 to +0.0100, 16 blocks of 500 bases" in unclear["text"]
    assert caveat(lm(1.20, -0.12, -0.08)) is None
    assert caveat(lm(1.31, 0.0, 0.02))["severity"] == "high"
    assert caveat({"model": "tiny", "heldout_ce": 1.29, "baseline_order3_ce": 1.30}) is None  # an older run


def test_probe_control_caveats_follow_the_paired_fold_test_over_the_layers() -> None:
    """With the paired fold comparison in the rows (vs_<control>_p, since 2026-12-06), the caveats follow
    `beats_controls`: a target is claimed beyond a control when some layer's one-sided p is below 0.05 / (2 x
    its layers); a fold-mean far above the control with a p that misses the corrected level is not claimed,
    and the caveat names the best layer's difference and interval."""
    def row(layer: str, p_kmer: float, p_shuffled: float) -> dict:
        return {"model": "m", "layer": layer, "target": "exon", "features": "embedding", "auroc_mean": 0.9,
                "auroc_sd": 0.01, "vs_kmer3_diff": 0.10, "vs_kmer3_low": -0.02, "vs_kmer3_high": 0.22,
                "vs_kmer3_p": p_kmer, "vs_shuffled_diff": 0.4, "vs_shuffled_low": 0.3, "vs_shuffled_high": 0.5,
                "vs_shuffled_p": p_shuffled}

    kmer = {"model": "kmer3", "layer": "3-mer frequencies", "target": "exon", "features": "kmer3",
            "auroc_mean": 0.8, "auroc_sd": 0.01}
    # two layers: the level is 0.05 / 4 = 0.0125
    texts = {c["id"]: c["text"] for c in summary.detect_caveats(
        {"probes": [row("block1", 0.02, 0.001), row("block2", 0.03, 0.5), kmer]})}
    assert "probes_vs_kmer3" in texts and "probes_vs_shuffled" not in texts
    assert ("exon (closest layer block1: +0.100 AUROC, one-sided p 0.02 against the Bonferroni level 0.0125; "
            "unadjusted 95% fold interval -0.020 to +0.220)") in texts["probes_vs_kmer3"]
    assert "Bonferroni over the target's models x layers" in texts["probes_vs_kmer3"]
    # the row named is the one closest to the claim (lowest p), not the largest difference; and its unadjusted
    # interval above 0 (the demo's gc_high: +0.002 to +0.011 at p 0.0057 against 0.0042) is not called nothing
    close = {**row("block2", 0.006, 0.5), "vs_kmer3_diff": 0.006, "vs_kmer3_low": 0.002, "vs_kmer3_high": 0.011}
    texts = {c["id"]: c["text"] for c in summary.detect_caveats(
        {"probes": [row("block1", 0.02, 0.001), close, kmer]})}
    assert "closest layer block2: +0.006 AUROC, one-sided p 0.006 against the Bonferroni level 0.0125" not in \
        texts.get("probes_vs_kmer3", "")  # 0.006 < 0.0125: claimed, no caveat
    close["vs_kmer3_p"] = 0.015
    texts = {c["id"]: c["text"] for c in summary.detect_caveats(
        {"probes": [row("block1", 0.02, 0.001), close, kmer]})}
    assert "exon (closest layer block2: +0.006 AUROC, one-sided p 0.015" in texts["probes_vs_kmer3"]
    assert "adds nothing" not in texts["probes_vs_kmer3"] and "rather than be absent" in texts["probes_vs_kmer3"]
    texts = {c["id"] for c in summary.detect_caveats(
        {"probes": [row("block1", 0.01, 0.02), row("block2", 0.03, 0.5), kmer]})}
    assert "probes_vs_kmer3" not in texts and "probes_vs_shuffled" in texts


def test_an_unlabelled_top_feature_names_its_candidate_concept_and_label_test(tmp_path: Path, monkeypatch) -> None:
    """The top-features table showed "unlabelled" beside lift 12 and F1 0.48 with no word of the concept or why
    (the demo's CTCF features, whose evidence is one ~1 kb stretch: design effect about 370); it now names the
    candidate concept, the label test's p and the design effect; a labelled feature shows its label alone."""
    monkeypatch.setenv("INTERP_CHROMIUM", str(tmp_path / "no-such-chromium"))
    report, figs, layers, calib, cfg = rs.report_parts()
    top = [{"id": 28, "label": "unlabelled", "f1": 0.48, "lift": 12.4, "density": 0.09, "top_windows": "chr17:1-200",
            "concept": "motif_CTCF", "p_value": 0.218, "design_effect": 370.9},
           {"id": 3, "label": "intron", "f1": 0.6, "density": 0.6, "top_windows": "chr17:1-200", "concept": "intron",
            "p_value": 1e-9, "design_effect": 2.0}]
    rep = {**report, "sae": [{**report["sae"][0], "top_features": top}]}
    finish_report(rep, figs, layers, calib, cfg, "synthetic", {"json": tmp_path / "report.json",
                                                               "html": tmp_path / "index.html"})
    html = (tmp_path / "index.html").read_text()
    assert "unlabelled (candidate motif_CTCF: label test p 0.22, design effect 371)" in html
    assert "intron (candidate" not in html


def test_sae_methods_name_the_architecture_and_the_label_rule() -> None:
    """The SAE's labels (the report's top features) pass a one-sided binomial test, family-wise by the circular-shift
    min-p (Bonferroni with n_shifts 0), and lift / true-positive / F1-baseline thresholds (interp.sae.concepts); the
    methods table said
    multiplicity and thresholds "none", and gave "k = 16" whatever the architecture (a relu SAE has no k)."""
    cfg = rs.config(cohort=False)
    cfg["sae"]["labels"] = {"min_lift": 3.0, "min_true_positives": 12, "alpha": 0.01, "n_thresholds": 16}
    sae = next(m for m in summary.methods(cfg) if m["name"] == "Sparse autoencoder")
    assert "topk" in sae["statistic"] and "k = 16" in sae["statistic"]
    assert "Westfall-Young" in sae["multiplicity"] and "0.01" in sae["multiplicity"]
    assert "199 circular shifts" in sae["multiplicity"] and "199 circular shifts" in sae["resampling"]
    assert "one test per feature" in sae["multiplicity"]
    assert "design effect" in sae["multiplicity"]  # tokens in runs are not independent evidence
    cfg["sae"]["labels"]["n_shifts"] = 0
    sae = next(m for m in summary.methods(cfg) if m["name"] == "Sparse autoencoder")
    assert "Bonferroni over the features" in sae["multiplicity"] and sae["resampling"] == "none"
    assert "none" not in sae["thresholds"]
    for text in ("lift >= 3", "12 true positives", "16 levels", "validation blocks"):
        assert text in sae["thresholds"]
    cfg["sae"]["architecture"] = "relu"
    sae = next(m for m in summary.methods(cfg) if m["name"] == "Sparse autoencoder")
    assert "relu" in sae["statistic"] and "L1 coefficient 0.1" in sae["statistic"]
    assert "k = " not in sae["statistic"]
    cfg["sae"]["architecture"] = "jumprelu"
    sae = next(m for m in summary.methods(cfg) if m["name"] == "Sparse autoencoder")
    assert "L0 coefficient 0.01" in sae["statistic"] and "k = " not in sae["statistic"]


def test_no_language_model_fit_in_methods_when_no_built_in_model_ran(tmp_path: Path, monkeypatch) -> None:
    """Only the built-in model is pretrained and scored on held-out bases (report.json `lm`); with hub models
    alone `lm` is [] and the page says so, but the methods table still described a held-out masked-LM
    cross-entropy against Markov baselines."""
    monkeypatch.setenv("INTERP_CHROMIUM", str(tmp_path / "no-such-chromium"))
    report, figs, layers, calib, cfg = rs.report_parts()
    assert report["lm"]
    out = finish_report(dict(report), figs, layers, calib, cfg, "synthetic",
                        {"json": tmp_path / "report.json", "html": tmp_path / "index.html"})
    assert "Language model fit" in {m["name"] for m in out["methods"]}
    out = finish_report({**report, "lm": []}, figs, layers, calib, cfg, "synthetic",
                        {"json": tmp_path / "report.json", "html": tmp_path / "index.html"})
    assert "Language model fit" not in {m["name"] for m in out["methods"]}
    assert "Language model fit" not in (tmp_path / "index.html").read_text()


def test_a_users_marker_panel_is_described_as_the_ancestry_stage_filtered_it(tmp_path: Path, monkeypatch) -> None:
    """The ancestry stage leaves out the panel's markers within cohort.ancestry_exclude_flank bases of a studied
    region and records how many (interp.cohort.ancestry.NearRegions): the summary and Methods say so; a genotype
    table from before that exclusion (no exclude_flank) read the panel whole, and they say that instead of
    "outside the regions" (which only the simulated panel, on its own contig, is by construction)."""
    monkeypatch.setenv("INTERP_CHROMIUM", str(tmp_path / "no-such-chromium"))
    report, figs, layers, calib, cfg = rs.report_parts()
    cfg = {**cfg, "cohort": {**cfg["cohort"], "source": "vcf", "ancestry_vcf": "markers.vcf.gz"}}

    def render(markers: dict) -> tuple[str, str]:
        rep = {**report, "cohort": {**report["cohort"], "source": "vcf", "ancestry_markers": markers}}
        out = finish_report(rep, figs, layers, calib, cfg, "synthetic",
                            {"json": tmp_path / "report.json", "html": tmp_path / "index.html"})
        scheme = next(m for m in out["methods"] if m["name"].startswith("Ancestry audit"))["scheme"]
        return (tmp_path / "index.html").read_text(), scheme

    html, scheme = render({"vcf": "markers.vcf.gz", "n_markers": 2000, "n_markers_near_regions": 37,
                           "exclude_flank": 500000})
    assert "ancestry PCs from 2000 markers of the marker panel less its 37 within 500,000 bases" in html
    assert "less its 37 within 500,000 bases of a studied region" in scheme
    _, scheme = render({"vcf": "markers.vcf.gz", "n_markers": 2000, "n_markers_near_regions": 3, "exclude_flank": 0})
    assert "less its 3 inside a studied region" in scheme
    html, scheme = render({"vcf": "markers.vcf.gz", "n_markers": 2000})
    assert "outside the regions" not in html and "outside the studied regions" not in scheme
    assert "read whole" in scheme and "ancestry PCs from 2000 markers of the marker panel, read whole" in html


def test_the_audits_monte_carlo_p_is_not_called_a_permutation_p_when_its_null_is_a_bootstrap() -> None:
    """With covariates or PC-bin strata the within-ancestry null is a parametric bootstrap (the row's
    `null_method`), and the signal test's null is a permutation over all samples: the audit table's p column
    and the permutation_floor caveat called every null a permutation."""
    report, figs, layers, calib, cfg = rs.report_parts()
    boot = "parametric bootstrap from y ~ strata + PCs + covariates"
    report["audit"] = [{**a, "null_method": boot} for a in report["audit"]]
    html = _html(report, figs, layers, calib, cfg)
    table = html[html.index("<h2>1. Audit"):html.index("<h3>Why each verdict")]
    assert "permutation p" not in table and "Monte Carlo p" in table
    assert f'title="{boot}"' in table  # each row's own null on hover
    assert "permutation p" not in html[html.index('id="limitations"'):]
    capped = {"provenance": {"config": {"audit": {"alpha": 0.05}}},
              "audit": [_row("p", la, "PASS", n_null_replicates=12, n_null_replicates_max=39, null_method=boot)
                        for la in LAYERS["m"]]}
    text = {c["id"]: c["text"] for c in summary.detect_caveats(capped)}["permutation_floor"]
    assert "permutation test" not in text and "Monte Carlo" in text and "parametric bootstrap" in text


def test_audit_methods_name_the_signal_tests_null_beside_the_within_ancestry_one() -> None:
    """interp.audit: p_within's null is the row's null_method (a permutation inside strata or a parametric
    bootstrap), p_signal's is the phenotype permuted over all samples; Methods named only the first."""
    cfg = rs.config()
    boot = "parametric bootstrap from y ~ strata + PCs + covariates"
    rows = [_row("p", "embed", "PASS", p_within=0.01, p_signal=0.01, n_null_replicates_max=3999, null_method=boot)]
    res = {m["name"]: m for m in summary.methods(cfg, rows)}["Ancestry audit (verdicts)"]["resampling"]
    assert f"within-ancestry test: {boot}" in res and "signal test: phenotype permuted over all samples" in res
    # no rows: the config's null rule (audit.null auto), not a permutation whatever the covariates
    res = {m["name"]: m for m in summary.methods(cfg, [])}["Ancestry audit (verdicts)"]["resampling"]
    assert "signal test: phenotype permuted over all samples" in res and "parametric bootstrap" in res


def test_probe_text_names_the_pooling_of_the_runs_model_cards() -> None:
    """interp.embed.run.pool_tokens pools a window as its card's `pooling` says (mean over its base-covering
    tokens, or the last one); the report said "mean-pooled" whatever the card."""
    report, figs, layers, calib, cfg = rs.report_parts()

    def probes_text(cards: list[dict]) -> str:
        models = [{"name": f"m{i}", "card": c} for i, c in enumerate(cards)]
        rep = {**report, "provenance": {**report["provenance"], "models": models}}
        html = _html(rep, figs, layers, calib, cfg)
        return html[html.index("<h3>Linear probes"):html.index("<figure", html.index("<h3>Linear probes"))]

    last = probes_text([{"family": "hf", "pooling": "last"}])
    assert "mean-pooled" not in last and "last base-covering token" in last
    assert "mean-pooled" in probes_text([{"family": "tiny"}])  # the registry's default is mean
    both = probes_text([{"family": "tiny", "pooling": "mean"}, {"family": "hf", "pooling": "last"}])
    assert "m0: mean" in both and "m1: last" in both


def test_variant_effect_methods_say_the_width_the_scorer_used_not_the_configured_one(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    """interp.embed.variant_effect.score_cohort_variants scores on min(variant_effect.width, the model's context)
    bases and records it (stats `width`); Methods printed the configured width as if it were used."""
    from interp.report.build import variant_effect_stats

    monkeypatch.setenv("INTERP_CHROMIUM", str(tmp_path / "no-such-chromium"))
    report, figs, layers, calib, cfg = rs.report_parts()
    cfg = {**cfg, "variant_effect": {"width": 1000}}

    def statistic(methods: list[dict]) -> str:
        return next(m for m in methods if m["name"] == "Variant-effect burden")["statistic"]

    # what the run recorded: the stage's stats.json, its wall clock left out
    path = tmp_path / "tiny-dnalm.stats.json"
    path.write_text(json.dumps({"model": rs.MODEL, "method": "masked_llr", "context": 256, "width": 256,
                                "n_variants": 152, "n_scored": 150, "n_not_snv": 2, "skipped": {}, "seconds": 3.0}))
    recorded = variant_effect_stats([str(path)])
    assert recorded[0]["width"] == 256 and "seconds" not in recorded[0]
    out = finish_report({**report, "cohort": {**report["cohort"], "variant_effect": recorded}}, figs, layers, calib,
                        cfg, "synthetic", {"json": tmp_path / "report.json", "html": tmp_path / "index.html"})
    text = statistic(out["methods"])
    assert "1000-base" not in text and f"256-base window ({rs.MODEL}" in text
    # a report without the stats: the configured width, said to be capped at the model's context
    text = statistic(summary.methods(cfg, [], report["biomarker_families"]))
    assert "up to 1000 bases" in text and "model's context" in text


def test_a_probe_target_too_few_folds_for_the_paired_test_is_not_silently_claimed_beyond_its_controls() -> None:
    """With the paired fold test, a target with a single CV fold (a rare label present in few blocks) has no p
    (`beats_controls`: None) and no caveat was written at all, so the report read as if the probes beat both
    controls, where the old rule compared the fold means. It is now listed in both caveats as untested. Rows as
    report.json holds them (NaN written as null), with several models: a best row whose interval is null (one
    fold) beside rows with a p no longer breaks the text, and the model is named."""
    def row(model: str, target: str, diff: float, p: float | None, low: float | None) -> dict:
        return {"model": model, "layer": "block1", "target": target, "features": "embedding", "auroc_mean": 0.9,
                "auroc_sd": None, "n_folds_used": 1 if p is None else 5, "vs_kmer3_diff": diff, "vs_kmer3_low": low,
                "vs_kmer3_high": None if low is None else low + 0.2, "vs_kmer3_p": p, "vs_shuffled_diff": diff,
                "vs_shuffled_low": low, "vs_shuffled_high": None if low is None else low + 0.2, "vs_shuffled_p": p}

    kmer = {"model": "kmer3", "layer": "3-mer frequencies", "target": "rare", "features": "kmer3",
            "auroc_mean": 0.8, "auroc_sd": None, "vs_kmer3_p": None}
    texts = {c["id"]: c["text"] for c in summary.detect_caveats(
        {"probes": [row("m1", "rare", 0.1, None, None), row("m2", "rare", 0.1, None, None), kmer]})}
    assert "rare" in texts.get("probes_vs_kmer3", "") and "rare" in texts.get("probes_vs_shuffled", ""), texts
    assert "fewer than 2" in texts["probes_vs_kmer3"]
    # one model's row has a single fold compared (null interval) and the largest difference, the other a p
    texts = {c["id"]: c["text"] for c in summary.detect_caveats(
        {"probes": [row("m1", "exon", 0.3, None, None), row("m2", "exon", 0.1, 0.4, -0.1), kmer]})}
    assert ("exon (closest layer m2 block1: +0.100 AUROC, one-sided p 0.4 against the Bonferroni level 0.025; "
            "unadjusted 95% fold interval -0.100 to +0.100)") in texts["probes_vs_kmer3"]
