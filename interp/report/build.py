"""Assemble report.json (the interface audit tools read) and the self-contained index.html.

Stable keys of report.json: generated_at; provenance {config, inputs, packages, seeds, models,
git_commit}; lm; probes; sae; timings; audit; biomarkers; truth_recovery. Everything except
`generated_at` (and the wall-clock `timings`) is a pure function of the run's outputs.
Privacy: no individual-level genotype, sequence or per-sample row is written; groups of fewer
than 5 samples are shown as "<5".
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import anndata as ad
import jinja2
import numpy as np
import polars as pl

from interp.io import write_text_atomic
from interp.report import plots
from interp.report.provenance import git_commit, model_entries, package_versions, rule_timings, sha256_file

TEMPLATES = Path(__file__).parent / "templates"
MIN_GROUP = 5


def _clean(obj: Any, digits: int = 6) -> Any:
    """JSON-safe copy: floats rounded to `digits` significant digits, NaN -> None, numpy -> python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, digits) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist(), digits)
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        if math.isnan(x) or math.isinf(x):
            return None
        return float(f"{x:.{digits}g}")
    return obj


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _read_json(path: str | Path) -> dict:
    with open(path) as fh:
        return json.load(fh)


def small_group(n: int) -> int | str:
    """Counts under MIN_GROUP are masked so no individual can be singled out."""
    return "<5" if n < MIN_GROUP else int(n)


def provenance(inputs: dict, params: dict) -> dict:
    cfg = params["config"]
    hashed = {}
    for key in ("fasta", "annotation", "cohort_vcf", "cohort_samples"):
        for path in _as_list(inputs.get(key)):
            hashed[path] = sha256_file(path)
    for path in _as_list(inputs.get("cards")):
        hashed[path] = sha256_file(path)
    seeds = {"seed": cfg["seed"], "lm": cfg["seed"], "probe": cfg["seed"], "sae": cfg["seed"]}
    if cfg.get("cohort", {}).get("enabled"):
        seeds.update({"cohort": cfg["seed"], "audit": cfg["seed"], "rank": cfg["seed"]})
    models = model_entries(_as_list(inputs.get("cards")), _as_list(inputs.get("checkpoints")))
    for entry in models:
        sae_w = [w for w in _as_list(inputs.get("sae_weights")) if f"/sae/{entry['name']}/" in w]
        entry["sae_sha256"] = {Path(w).parent.name: sha256_file(w) for w in sae_w}
    return {"config": cfg, "inputs": hashed, "packages": package_versions(), "seeds": seeds,
            "models": models, "git_commit": git_commit(Path(__file__).resolve().parents[2])}


def reference_sections(inputs: dict, params: dict) -> tuple[dict, dict]:
    """(json part, figures) for the LM, probes and SAE."""
    out: dict[str, Any] = {}
    figs: dict[str, str] = {}
    out["lm"] = [_read_json(p) for p in _as_list(inputs.get("lm_metrics"))]
    for row in out["lm"]:
        row.pop("train_seconds", None)  # wall clock: lives in timings, not in the reproducible part
    if out["lm"]:
        figs["lm"] = plots.lm_losses(out["lm"])

    probes = pl.read_parquet(inputs["probes"])
    out["probes"] = probes.to_dicts()
    skipped = probes.filter(pl.col("n_folds_skipped") > 0) if "n_folds_skipped" in probes.columns else probes[:0]
    out["probe_notes"] = [
        f"{r['model']} {r['layer']} {r['target']} ({r['features']}): {r['n_folds_skipped']} fold(s) skipped "
        "(a test or training fold lacked one of the classes)" for r in skipped.iter_rows(named=True)]

    layer_order: dict[str, list[str]] = {}
    pooled: dict[tuple[str, str], Path] = {}
    for d in _as_list(inputs.get("emb_dirs")):
        model = Path(d).name
        stats_path = Path(d).with_suffix(".stats.json")
        stats = _read_json(stats_path) if stats_path.exists() else {}
        files = {p.stem: p for p in Path(d).glob("*.h5ad")}
        order = stats.get("layers") or sorted(files)
        layer_order[model] = [layer for layer in order if layer in files]
        for layer, p in files.items():
            pooled[(model, layer)] = p
    figs["probe_by_layer"] = plots.probe_auroc_by_layer(probes, layer_order)

    cfg = params["config"]
    sae_layer = cfg["sae"]["layer"]
    first_model = next(iter(layer_order), None)
    if first_model and (first_model, sae_layer) in pooled:
        a = ad.read_h5ad(pooled[(first_model, sae_layer)])
        labels = {t: a.obs[t].to_numpy().astype(bool) for t in ("repeat", "exon", "gc_high") if t in a.obs}
        figs["embedding_pca"] = plots.embedding_pca(np.asarray(a.X), labels,
                                                    f"{first_model} {sae_layer}: window embeddings (PCA)")

    top_n = cfg["report"]["top_features"]
    out["sae"] = []
    for metrics_path, features_path in zip(_as_list(inputs.get("sae_metrics")),
                                           _as_list(inputs.get("sae_features")), strict=True):
        m = _read_json(metrics_path)
        feats = pl.read_parquet(features_path)
        alive = feats.filter(pl.col("density") > 0).sort(["best_f1", "feature"], descending=[True, False])
        top = [{"id": r["feature"], "label": r["best_label"], "f1": r["best_f1"], "density": r["density"],
                "top_windows": r.get("top_windows")} for r in alive.head(top_n).iter_rows(named=True)]
        entry = {k: m.get(k) for k in ("model", "layer", "architecture", "n_features", "k", "fvu", "l0",
                                       "dead_fraction", "n_train_tokens", "n_heldout_tokens")}
        entry["top_features"] = top
        entry["best_f1_by_label"] = {
            col[3:]: float(feats[col].max()) for col in feats.columns if col.startswith("f1_")}
        out["sae"].append(entry)
        figs[f"density_{m.get('model')}"] = plots.feature_density_histogram(feats["density"].to_numpy())
    return out, figs


def cohort_sections(inputs: dict, params: dict) -> tuple[dict, dict]:
    """(json part, figures) for the cohort: ancestry, verdicts, CV schemes, biomarkers, truth."""
    out: dict[str, Any] = {}
    figs: dict[str, str] = {}
    cfg = params["config"]
    geno = ad.read_h5ad(inputs["genotypes"])
    pop_col = cfg["cohort"].get("population_column") or "population"
    population = geno.obs[pop_col].astype(str).to_numpy() if pop_col in geno.obs else np.array(["all"] * geno.n_obs)
    var_ratio = np.asarray(geno.uns.get("pca", {}).get("variance_ratio", [0, 0]))
    figs["ancestry_pca"] = plots.ancestry_pca(np.asarray(geno.obsm["X_pca"]), population, var_ratio)
    pops, counts = np.unique(population, return_counts=True)
    validation = _read_json(inputs["validation"])
    hap_stats = _read_json(inputs["haplotype_stats"])
    emb_stats = [{k: v for k, v in _read_json(p).items() if k != "seconds"}  # wall clock is not reproducible
                 for p in _as_list(inputs.get("cohort_emb_stats"))]
    out["cohort"] = {
        "source": cfg["cohort"]["source"],
        "n_samples": small_group(int(geno.n_obs)),
        "populations": {str(p): small_group(int(c)) for p, c in zip(pops, counts, strict=True)},
        "n_variants": int(validation.get("n_variants_in_regions", geno.n_vars)),
        "n_variants_pca": int(geno.n_vars),
        "genotype_pc_variance_ratio": var_ratio[:5].tolist(),
        "ancestry_markers": dict(geno.uns.get("ancestry_source", {})),
        "validation": {k: v for k, v in validation.items() if k not in ("samples",)},
        "haplotypes": hap_stats,
        "embedding": emb_stats,
        "missing_policy": cfg["cohort"]["missing"],
        "unphased_policy": cfg["cohort"]["unphased"],
    }
    audit = pl.read_parquet(inputs["audit"])
    details = _read_json(inputs["audit_details"])
    keys = ["phenotype", "model", "layer", "verdict", "ancestry_auroc", "auroc_random_cv", "auroc_lopo_cv",
            "auroc_residualised", "auroc_ancestry_only", "permutation_p"]
    extra = [c for c in audit.columns if c not in keys]
    out["audit"] = [{k: r.get(k) for k in keys + extra} for r in audit.iter_rows(named=True)]
    out["audit_details"] = details
    figs["cv_schemes"] = plots.cv_scheme_comparison(audit)

    bio = pl.read_parquet(inputs["biomarkers"])
    top = cfg["rank"]["report_top"]
    bio_keys = ["phenotype", "feature", "kind", "window", "effect", "ci_low", "ci_high", "p", "q",
                "stability", "rank"]
    extra_bio = [c for c in ("family", "bh_scope", "short_name", "method", "effect_method", "n_carriers",
                             "tags_variants", "lead_variant", "p_conditional", "conditional_significant",
                             "p_conditional_top_variant", "model",
                             "layer", "gene", "exon_overlap", "nearest_variants") if c in bio.columns]
    # the top rows of each (phenotype, family): ranks of separate BH families are never interleaved
    family = ["family"] if "family" in bio.columns else []
    tested = bio.filter(pl.col("rank").is_not_null())
    rows = (tested.sort(["phenotype", *family, "rank"])
            .group_by(["phenotype", *family], maintain_order=True).head(top))
    out["biomarkers"] = [{k: r.get(k) for k in bio_keys + extra_bio} for r in rows.iter_rows(named=True)]
    if inputs.get("rank_summary"):
        out["rank_summary"] = _read_json(inputs["rank_summary"])
    if inputs.get("truth"):
        out["truth_recovery"] = truth_recovery(_read_json(inputs["truth"]), audit, bio)
    return out, figs


def truth_recovery(truth: dict, audit: pl.DataFrame, bio: pl.DataFrame) -> dict:
    """How the planted answers of a simulated cohort were recovered."""
    causal = truth["causal_variant"]
    variant_id = f"{causal['contig']}:{causal['pos']}:{causal['ref']}:{causal['alt']}"
    variants = bio.filter((pl.col("phenotype") == "causal") & (pl.col("kind") == "variant")).sort("p")
    variant_rank = None
    if variant_id in variants["feature"].to_list():
        variant_rank = variants["feature"].to_list().index(variant_id) + 1
    model_feats = (bio.filter((pl.col("phenotype") == "causal") & (pl.col("kind") != "variant")
                              & pl.col("rank").is_not_null()).sort(["p", "rank"]))
    top_model = model_feats.row(0, named=True) if not model_feats.is_empty() else None
    pos0 = causal["pos"] - 1
    top_in_window = bool(top_model and top_model["contig"] == causal["contig"]
                         and top_model["start"] <= pos0 < top_model["end"])
    expected = {"causal": "not FAIL", "confounded": "FAIL", "null": "not FAIL"}
    verdicts = {}
    for r in audit.iter_rows(named=True):
        ph = r["phenotype"]
        exp = expected.get(ph)
        ok = None if exp is None else (r["verdict"] == "FAIL") == (exp == "FAIL")
        verdicts[f"{ph}|{r['model']}|{r['layer']}"] = {"verdict": r["verdict"], "expected": exp, "as_expected": ok}
    null_hits = bio.filter((pl.col("phenotype") == "null") & (pl.col("q") < 0.05)).height
    return {
        "causal_variant": variant_id,
        "causal_variant_rank": variant_rank,
        "n_variants_ranked": variants.height,
        "top_model_feature": None if top_model is None else {
            k: top_model[k] for k in ("feature", "kind", "window", "p", "q", "stability")},
        "top_model_feature_in_causal_window": top_in_window,
        "verdicts": verdicts,
        "null_features_q_below_0.05": null_hits,
    }


def build_report(inputs: dict, outputs: dict, params: dict) -> dict:
    """Write report.json and index.html; returns the report dict."""
    report: dict[str, Any] = {"generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    report["provenance"] = provenance(inputs, params)
    ref, figs = reference_sections(inputs, params)
    report.update(ref)
    if params["config"].get("cohort", {}).get("enabled"):
        coh, cfigs = cohort_sections(inputs, params)
        report.update(coh)
        figs.update(cfigs)
    report["timings"] = rule_timings(params["benchmarks"])
    report = _clean(report)
    write_text_atomic(outputs["json"], json.dumps(report, indent=2, sort_keys=True) + "\n")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html").render(r=report, figs=figs, run=params["run"],
                                                  config_yaml=json.dumps(params["config"], indent=2))
    write_text_atomic(outputs["html"], html)
    return report
