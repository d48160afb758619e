"""A synthetic but complete report (every section, real plots) for the report's unit and browser tests.

`new_keys=True` uses the audit / rank / SAE / calibration interfaces of the calibrated audit (verdicts PASS,
FAIL, NO SIGNAL, INCONCLUSIVE with `reason`, `verdict_rule`, adjusted p, within-population AUROC with CI,
`family`, `bh_scope`, SAE `dense_fraction`, a calibration table); `new_keys=False` uses today's keys
(PASS / WARN / FAIL with `reasons`, no family column, no calibration), so both must render.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from interp.config import check_config, load_config_files
from interp.report import plots, summary

REPO = Path(__file__).resolve().parent.parent
LAYERS = ["embed", "block1", "block2", "block3"]
MODEL = "tiny-dnalm"


def config(cohort: bool = True) -> dict:
    cfg = check_config(load_config_files([REPO / "configs" / "demo.yaml"]), base_dir=REPO)
    cfg["run"] = "synthetic"
    cfg["cohort"]["enabled"] = cohort
    return cfg


def probes(rng: np.random.Generator) -> list[dict]:
    rows = []
    for target, base, kmer in (("exon", 0.80, 0.79), ("repeat", 0.70, 0.70), ("gc_high", 0.99, 0.99)):
        skipped = 1 if target == "exon" else 0
        for j, layer in enumerate(LAYERS):
            for feats, mean in (("embedding", base + 0.01 * j), ("shuffled", 0.5 + rng.normal(0, 0.02))):
                rows.append({"model": MODEL, "layer": layer, "target": target, "features": feats,
                             "auroc_mean": mean, "auroc_sd": 0.05, "balanced_accuracy": 0.6, "mcc": 0.2,
                             "n_folds_used": 5 - skipped, "n_folds_skipped": skipped, "n_pos": 22 if target == "exon" else 170,
                             "n_neg": 377 if target == "exon" else 229})
        rows.append({"model": "kmer3", "layer": "3-mer frequencies", "target": target, "features": "kmer3",
                     "auroc_mean": kmer, "auroc_sd": 0.04, "balanced_accuracy": 0.6, "mcc": 0.2,
                     "n_folds_used": 5 - skipped, "n_folds_skipped": skipped, "n_pos": 22, "n_neg": 377})
    return rows


def audit_rows(new_keys: bool) -> list[dict]:
    verdicts = ({"causal": "PASS", "confounded": "FAIL", "null": "NO SIGNAL"} if new_keys
                else {"causal": "PASS", "confounded": "FAIL", "null": "WARN"})
    rows = []
    for phenotype, v in verdicts.items():
        for j, layer in enumerate(LAYERS):
            verdict = "INCONCLUSIVE" if (new_keys and phenotype == "causal" and layer == "block3") else v
            if not new_keys and phenotype == "confounded" and layer == "embed":
                verdict = "WARN"
            row = {"phenotype": phenotype, "model": MODEL, "layer": layer, "verdict": verdict,
                   "ancestry_auroc": 0.72, "auroc_random_cv": 0.85 - 0.01 * j, "auroc_lopo_cv": 0.78,
                   "auroc_residualised": 0.83, "auroc_ancestry_only": 0.46, "permutation_p": 0.005,
                   "auroc_shuffled": 0.5, "n_samples": 180, "n_cases": 70, "n_permutations": 199}
            if new_keys:
                row.update({"reason": f"{phenotype} {layer}: within-population AUROC 0.71 [0.62, 0.80]; "
                                      "p_within_adjusted 0.004 <= alpha 0.05",
                            "verdict_rule": "PASS if p_within_adjusted <= alpha and ancestry does not explain it",
                            "p_within": 0.0005, "p_within_adjusted": 0.004, "p_signal": 0.0005,
                            "p_signal_adjusted": 0.004, "n_null_replicates": 1999, "multiplicity": "Holm over 12 verdicts",
                            "within_auroc": 0.71, "within_auroc_ci_low": 0.62, "within_auroc_ci_high": 0.80,
                            "auroc_ancestry_only_ci_low": 0.39, "auroc_ancestry_only_ci_high": 0.53})
            else:
                row["reasons"] = "within-population signal: permutation_p 0.005 <= alpha 0.05"
            rows.append(row)
            if new_keys and phenotype == "causal" and layer == LAYERS[-1]:  # one region's own verdict (by_region)
                rows.append(row | {"region": "GENE2", "verdict": "NO SIGNAL", "reason": "GENE2: no signal"})
    return rows


def details(audit: list[dict]) -> list[dict]:
    out = []
    for a in audit:
        pops = [{"population": p, "n": 60, "prevalence": 0.4, "auroc": 0.7 + 0.05 * i, "auroc_ci_low": 0.6 + 0.05 * i,
                 "auroc_ci_high": 0.8 + 0.05 * i} for i, p in enumerate(("CEU", "YRI"))]
        pops.append({"population": "CHB", "n": "<5"})
        out.append({k: a[k] for k in ("phenotype", "model", "layer", "verdict")} | {"region": a.get("region")} | {
            "by_population": pops, "by_stratum": [],
            # as interp.audit.descriptor_report writes them (a constant descriptor has NaN statistics, no auroc)
            "descriptors": {"gc": {"kind": "descriptor", "adjusted_for": False, "pearson_r": -0.0529,
                                   "p_value": 0.3616, "auroc": 0.4614, "ancestry_r2": 0.1535, "ancestry_p": 2.19e-08},
                            "missing_rate": {"kind": "descriptor", "adjusted_for": False, "pearson_r": None,
                                             "p_value": None, "ancestry_r2": None, "ancestry_p": None}}})
    return out


def biomarkers(rng: np.random.Generator, new_keys: bool) -> list[dict]:
    rows = []
    positions = np.sort(rng.choice(np.arange(6100, 31000), size=40, replace=False))
    for phenotype in ("causal", "confounded", "null"):
        p = rng.uniform(1e-3, 1, size=40)
        if phenotype == "causal":
            p[3] = 1e-14
        for i, pos in enumerate(positions):
            rows.append({"phenotype": phenotype, "feature": f"chr17:{pos}:C:T", "kind": "variant", "model": "",
                         "layer": "", "contig": "chr17", "start": int(pos) - 1, "end": int(pos), "p": float(p[i]),
                         "effect": 0.5, "ci_low": 0.1, "ci_high": 0.9, "stability": 0.5, "gene": "DOC2B",
                         "exon_overlap": False, "window": f"chr17:{pos // 1000 * 1000 + 10}-{pos // 1000 * 1000 + 1010}"})
        for kind, layers, n in (("embedding", LAYERS, 60), ("sae", ["block2"], 40)):
            for layer in layers:
                fp = rng.uniform(1e-4, 1, size=n)
                for d in range(n):
                    w0 = 6010 + 1000 * (d % 25)
                    row = {"phenotype": phenotype, "kind": kind, "model": MODEL, "layer": layer, "contig": "chr17",
                           "feature": f"{MODEL}/{layer}/chr17:{w0}-{w0 + 1000}/{'dim' if kind == 'embedding' else 'f'}{d}",
                           "start": w0, "end": w0 + 1000, "p": float(fp[d]), "effect": 0.3, "ci_low": 0.1,
                           "ci_high": 0.5, "stability": 0.3, "gene": "DOC2B", "exon_overlap": d % 3 == 0,
                           "window": f"chr17:{w0}-{w0 + 1000}"}
                    rows.append(row)
        if new_keys:
            for pos in positions:
                rows.append({"phenotype": phenotype, "feature": f"{MODEL}/llr/chr17:{pos}:C:T", "kind": "variant_effect",
                             "model": MODEL, "layer": "", "contig": "chr17", "start": int(pos) - 1, "end": int(pos),
                             "p": float(rng.uniform(1e-3, 1)), "effect": 0.1, "ci_low": -0.1, "ci_high": 0.3,
                             "stability": 0.2, "gene": "DOC2B", "exon_overlap": False, "window": ""})
    # BH q and 1-based ranks within (phenotype, family), as rank does
    from statsmodels.stats.multitest import multipletests

    out = []
    frame = pl.DataFrame(rows).with_columns(
        pl.struct("kind", "model", "layer").map_elements(lambda s: summary.family_of(s), return_dtype=pl.String)
        .alias("_family"))
    for (_, _), g in frame.group_by("phenotype", "_family", maintain_order=True):
        g = g.sort("p")
        q = multipletests(g["p"].to_numpy(), method="fdr_bh")[1]
        g = g.with_columns(pl.Series("q", q), pl.Series("rank", np.arange(1, g.height + 1)))
        if new_keys:
            fam = g["_family"][0]
            g = g.with_columns(pl.lit(fam).alias("family"),
                               pl.lit(f"BH within {fam} for {g['phenotype'][0]} ({g.height} tests)").alias("bh_scope"),
                               pl.lit(3).alias("n_carriers"), pl.lit(12).alias("n_carriers_cohort"))
        out += g.drop("_family").to_dicts()
    return out


def calibration_rows() -> list[dict]:
    rows = []
    for cell, axis, value in (("base", "base", None), ("n100", "n_samples", 100), ("n300", "n_samples", 300),
                              ("n1000", "n_samples", 1000)):
        for truth, rates in (("causal", {"PASS": 0.8, "FAIL": 0.02, "NO SIGNAL": 0.1, "INCONCLUSIVE": 0.08}),
                             ("ancestry", {"PASS": 0.01, "FAIL": 0.9, "NO SIGNAL": 0.04, "INCONCLUSIVE": 0.05}),
                             ("null", {"PASS": 0.02, "FAIL": 0.03, "NO SIGNAL": 0.9, "INCONCLUSIVE": 0.05})):
            rows.append({"cell": cell, "axis": axis, "value": value, "truth": truth, "n_replicates": 200,
                         "verdict_rates": {k: {"rate": v, "ci_low": max(0, v - 0.05), "ci_high": min(1, v + 0.05),
                                               "count": int(v * 200)} for k, v in rates.items()},
                         "power_variant": 0.8, "power_feature": 0.6, "type1": 0.03, "fdr": 0.04})
    return rows


def report_parts(new_keys: bool = True, cohort: bool = True, seed: int = 0):
    """(report sections, figs, layer_order, calibration rows, config) like build_report assembles them."""
    rng = np.random.default_rng(seed)
    cfg = config(cohort)
    layer_order = {MODEL: list(LAYERS)}
    pr = probes(rng)
    report: dict = {
        "generated_at": "2026-01-01T00:00:00+00:00",
        "provenance": {"config": cfg, "inputs": {"resources/demo/hg19_chr17_1-40000.fa": "0" * 64},
                       "packages": {"numpy": "2"}, "seeds": {"seed": 7},
                       "models": [{"name": MODEL, "card": {"family": "tiny"}, "checkpoint_sha256": "a" * 64,
                                   "card_sha256": "b" * 64}], "git_commit": "c" * 40},
        "lm": [{"model": MODEL, "heldout_ce": 1.3747, "baseline_order0_ce": 1.3964, "baseline_order3_ce": 1.3564,
                "n_params": 84164, "steps": 300, "beats_order0": True, "beats_order3": False}],
        "probes": pr, "layers": layer_order,
        "probe_notes_grouped": summary.group_probe_notes(pr, layer_order),
        "sae": [{"model": MODEL, "layer": "block2", "architecture": "topk", "n_features": 128, "k": 8, "fvu": 0.008,
                 "l0": 8.0, "dead_fraction": 0.04, "n_train_tokens": 65800, "n_heldout_tokens": 14000,
                 "top_features": [{"id": 3, "label": "intron", "f1": 0.6, "density": 0.6, "top_windows": "chr17:1-200"}]}
                | ({"dense_fraction": 0.15, "loss_recovered": 0.91} if new_keys else {})],
        "timings": [{"rule": "windows", "seconds": 1.0}],
    }
    figs = {"lm": plots.lm_fit(report["lm"]), "probe_by_layer": plots.probe_panels(pl.DataFrame(pr), layer_order),
            f"density_{MODEL}": plots.feature_density_histogram(
                {"log10_edges": list(np.arange(-6.0, 0.5, 0.5)), "counts": list(rng.integers(0, 20, 12)), "n_zero": 5},
                128)}
    if cohort:
        audit = audit_rows(new_keys)
        det = details(audit)
        bio = biomarkers(rng, new_keys)
        report.update({
            "cohort": {"source": "simulate", "n_samples": 124, "populations": {"CEU": 60, "CHB": "<5", "YRI": 60},
                       "n_variants": 152, "n_variants_pca": 40, "ancestry_markers": {"n_markers": 2000, "vcf": "panel.vcf.gz"},
                       "haplotypes": {"n_windows": 26, "n_haplotype_windows": 6000, "n_distinct": 300, "dedup_ratio": 20.0},
                       "validation": {"regions": ["DOC2B=chr17:6010-31427"]}, "missing_policy": "ref",
                       "unphased_policy": "ref"}
            | ({"variant_effect": [{"model": MODEL, "method": "masked_llr", "context": 256, "width": 256,
                                    "n_variants": 152, "n_scored": 150, "n_not_snv": 2,
                                    "skipped": {"not an SNV": 2}}]} if new_keys else {}),
            "audit": audit, "audit_details": det,
            "biomarkers": [b for b in bio if b["rank"] <= 5],
            "biomarker_families": summary.family_tables(bio, 50),
            "truth_recovery": {"causal_variant": "chr17:6141:C:T", "causal_variant_rank": 1, "n_variants_ranked": 40,
                               "top_model_feature": None, "top_model_feature_in_causal_window": False,
                               "null_features_q_below_0.05": 0, "verdicts": {}},
        })
        adf = pl.DataFrame(audit)
        figs["cv_schemes"] = plots.cv_schemes(adf)
        figs["population_auroc"] = plots.population_auroc(det, LAYERS)
        figs["ancestry_pca"] = plots.ancestry_pca(rng.normal(size=(124, 2)), np.array(["CEU", "YRI"] * 62),
                                                  np.array([0.1, 0.05]))
        bdf = pl.DataFrame(bio)
        exons = pl.DataFrame({"gene": ["DOC2B"] * 3, "transcript": ["NM_1"] * 3, "contig": ["chr17"] * 3,
                              "strand": ["-"] * 3, "feature": ["transcript", "exon", "exon"],
                              "start": [6010, 6010, 20000], "end": [31000, 6400, 20200]})
        from interp.report.build import regional_plot

        for ph in ("causal", "confounded", "null"):
            figs[f"regional_{ph}"] = regional_plot(bdf, ph, exons, None)
    return report, figs, layer_order, (calibration_rows() if new_keys else None), cfg
