"""Assemble report.json (the interface audit tools read) and the self-contained index.html.

Stable keys of report.json: generated_at; provenance {config, config_sha256, inputs, packages, python, seeds, models,
git_commit, git_dirty}; lm; probes; probe_sae_vs_raw; sae; planted; timings; audit; biomarkers; truth_recovery. Everything except
`generated_at` (and the wall-clock `timings`) is a pure function of the run's outputs.
Privacy: no individual-level genotype, sequence or per-sample row is written; populations and strata of
fewer than 5 samples are shown as "<5", and those with fewer than 5 cases or controls as "<5 cases" / "<5 controls" ("<5 cases or controls" for a group of 5-9)
(interp.audit_summary.mask_small_groups). Aggregate counts (cases, missing values) are exact, so further groups are
masked as their complement where a masked count would follow by subtraction (interp.audit.suppressed_groups,
suppressed_sizes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import platform
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anndata as ad
import jinja2
import numpy as np
import polars as pl

from interp.audit import MIN_REPORTED_GROUP, NO_LABEL, suppressed_sizes
from interp.cohort.genotype_file import read_genotypes
from interp.cohort.vcf import population_obs_column
from interp.errors import InputError
from interp.io import atomic_dir, is_missing, write_text_atomic
from interp.report import plots, summary
from interp.report.browser import html_to_pdf
from interp.report.provenance import (
    git_commit,
    git_dirty,
    model_entries,
    package_versions,
    rule_timings,
    sha256_cached,
    sha256_file,
)

TEMPLATES = Path(__file__).parent / "templates"
MIN_GROUP = MIN_REPORTED_GROUP  # one threshold for the audit's tables and the report's counts
log = logging.getLogger(__name__)


class ExactFloats(dict):
    """A dict whose floats `_clean` keeps whole (17 significant digits, which give a float back exactly): the
    resolved config, whose values are settings (an lr of 0.00123456 and one of 0.001234564 are two configs)."""


def _clean(obj: Any, digits: int = 6) -> Any:
    """JSON-safe copy: floats rounded to `digits` significant digits (inside an `ExactFloats`, 17), NaN -> None,
    numpy -> python."""
    if isinstance(obj, ExactFloats):
        return ExactFloats({str(k): _clean(v, 17) for k, v in obj.items()})
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
    return f"<{MIN_GROUP}" if n < MIN_GROUP else int(n)


#: cohort validation counts of people (how many samples have mostly missing or unphased genotypes): 1-4 are
#: shown as "<5", since a per-sample descriptor (`missing_rate`) set apart in those few would be theirs
VALIDATION_PERSON_COUNTS = ("n_samples_mostly_missing", "n_samples_mostly_unphased")


def validation_section(validation: dict) -> dict:
    """The cohort validation summary as report.json shows it: its per-sample `samples` dropped, and the counts
    of people in VALIDATION_PERSON_COUNTS masked as "<5" when 1-4 (0 is kept: it singles no one out)."""
    out = {k: v for k, v in validation.items() if k != "samples"}
    for k in VALIDATION_PERSON_COUNTS:
        if isinstance(out.get(k), (int, np.integer)) and out[k] > 0:
            out[k] = small_group(int(out[k]))
    return out


#: keys of a stage's stats.json that describe how this execution went, not what it computed: the wall clock, and
#: the embedding cache's hits and misses (a rerun with a warm cache hits where the first run missed)
RUN_STATE_KEYS = ("seconds", "cache")


def run_state_removed(stats: dict) -> dict:
    """A stats.json without RUN_STATE_KEYS: what the report may carry and a rerun reproduces."""
    return {k: v for k, v in stats.items() if k not in RUN_STATE_KEYS}


#: what the embedder records of the weights it loaded (`<emb dir>.stats.json` provenance) that identifies them;
#: `loaded_from` (an absolute path into a local cache) and `offline` describe the machine, not the weights
WEIGHTS_KEYS = ("hf_id", "revision_requested", "commit", "checkpoint", "trust_remote_code", "trust_pickle_weights",
                "dtype", "model_class", "loaded_by")


def loaded_weights(emb_dirs: list[str]) -> dict[str, dict]:
    """{model: the WEIGHTS_KEYS of the embedder's provenance} from the embed stage's `<emb dir>.stats.json`
    (a hub model's snapshot commit actually loaded, whatever revision its card names); {} where absent."""
    out = {}
    for d in emb_dirs:
        stats_path = Path(d).with_suffix(".stats.json")
        prov = (_read_json(stats_path).get("provenance") or {}) if stats_path.exists() else {}
        if prov:
            out[Path(d).name] = {k: prov[k] for k in WEIGHTS_KEYS if k in prov}
    return out


def variant_effect_stats(paths: list[str] | str | None) -> list[dict]:
    """report.json `cohort.variant_effect`: each model's `cohort/variant_effect/<model>.stats.json` (model, method,
    context, width: the bases actually scored around each variant, min(variant_effect.width, context), n_variants,
    n_scored, n_not_snv, skipped) without its wall clock."""
    return [run_state_removed(_read_json(p)) for p in _as_list(paths)]


def provenance(inputs: dict, params: dict) -> dict:
    cfg = params["config"]
    hashed = {}
    # the embedding cache's sibling: shared by runs, so each version of a large input is read once
    digests = Path(cfg.get("embed", {}).get("cache") or "results/cache/embeddings").parent / "sha256"
    for key in ("fasta", "annotation", "cohort_vcf", "cohort_samples", "ancestry_vcf", "cohort_bed", "calibration",
                "planted"):
        for path in _as_list(inputs.get(key)):
            hashed[path] = sha256_cached(path, digests)
    for path in _as_list(inputs.get("cards")):
        hashed[path] = sha256_file(path)
    seeds = {"seed": cfg["seed"], "lm": cfg["seed"], "probe": cfg["seed"], "sae": cfg["seed"]}
    if cfg.get("cohort", {}).get("enabled"):
        seeds.update({"cohort": cfg["seed"], "audit": cfg["seed"], "rank": cfg["seed"]})
    models = model_entries(_as_list(inputs.get("cards")), _as_list(inputs.get("checkpoints")), digests)
    weights = loaded_weights(_as_list(inputs.get("emb_dirs")))
    for entry in models:
        entry["weights"] = weights.get(entry["name"])
        sae_w = [w for w in _as_list(inputs.get("sae_weights")) if f"/sae/{entry['name']}/" in w]
        entry["sae_sha256"] = {Path(w).parent.name: sha256_file(w) for w in sae_w}
    return {"config": ExactFloats(cfg), "config_sha256": config_sha256(cfg), "inputs": hashed, "packages": package_versions(),
            "python": platform.python_version(), "seeds": seeds,
            "models": models, "git_commit": git_commit(Path(__file__).resolve().parents[2]),
            "git_dirty": git_dirty(Path(__file__).resolve().parents[2])}


def config_sha256(cfg: dict) -> str:
    """sha256 of the resolved config as report.json carries it (`_clean` of an `ExactFloats`: floats whole,
    where until the thirty-fifth session they were rounded to 6 significant digits, so two settings differing
    in the 7th digit had one digest), as compact JSON with sorted keys: `json.dumps(report["provenance"]["config"],
    sort_keys=True, separators=(",", ":"))` gives it back, so two reports' configs compare by one string."""
    text = json.dumps(_clean(ExactFloats(cfg)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


#: SAE metrics copied into report.json's `sae` entries when present (the README's list)
SAE_EXTRA = ("dense_fraction", "loss_recovered", "lm_loss_clean", "lm_loss_zero", "lm_loss_sae", "density_histogram",
             "dead_fraction_test", "validation_fvu", "n_validation_tokens", "n_test_tokens", "n_train_blocks",
             "n_validation_blocks", "n_test_blocks")
#: key of an `sae` entry holding its atlas's source page until `finish_report` copies it (never written)
ATLAS_SOURCE = "_atlas_source"


def sae_atlas(metrics: dict, metrics_path: str | Path, html_dir: str | Path | None) -> str | None:
    """The SAE's feature atlas page when the SAE stage made one (metrics `atlas` / `atlas_path`, else
    `atlas/index.html` or `atlas.html` beside metrics.json): its path relative to the report's folder (its own
    path without `html_dir`), or None. `report_atlas` copies it into the report's folder for the link."""
    found = None
    for key in ("atlas", "atlas_path", "atlas_html"):
        if isinstance(metrics.get(key), str) and metrics[key]:
            cand = Path(metrics[key])
            found = cand if cand.is_absolute() or cand.exists() else Path(metrics_path).parent / cand
            break
    if found is None:
        for cand in (Path(metrics_path).parent / "atlas" / "index.html", Path(metrics_path).parent / "atlas.html"):
            if cand.exists():
                found = cand
                break
    if found is None or not found.exists():
        return None
    return os.path.relpath(found.resolve(), Path(html_dir).resolve()) if html_dir else str(found)


def report_atlas(source: str | Path, report_dir: str | Path, model: str, layer: str) -> str:
    """Copy an SAE's atlas (its `atlas/` folder, or a single atlas page) into the report's folder, as
    `atlas/<model>/<layer>/`, and return the page's link relative to the report: a report folder handed on holds
    its atlas (the link pointed into results/ until the thirty-first session). Files are hard-linked where the
    file system allows (a 32k-feature atlas costs no second copy), the folder replaced whole (`atomic_dir`)."""
    source = Path(source)
    target = Path(report_dir) / "atlas" / model / layer
    with atomic_dir(target) as tmp:
        if source.parent.name == "atlas":  # the stage's atlas folder: pages, logos
            shutil.copytree(source.parent, tmp, dirs_exist_ok=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(source, tmp / source.name)
    return "/".join(quote(part) for part in ("atlas", model, layer, source.name))


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    """A hard link of `src` at `dst`, or a copy where the file system refuses one (another device)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


PROBE_SAE_KEYS = ("model", "layer", "target", "level", "k", "auroc_raw", "auroc_sae", "difference", "ci_low",
                  "ci_high", "winner", "n_folds_used", "n_missing", "C_raw", "C_sae", "auroc_raw_ci_low",
                  "auroc_raw_ci_high", "auroc_sae_ci_low", "auroc_sae_ci_high")


def probe_sae_rows(path: str | Path | None) -> list[dict]:
    """report.json `probe_sae_vs_raw`: the SAE-features vs raw-activations probe table (interp.sae.probe_compare),
    one row per (model, layer, target, level, k); [] when the run made none."""
    if not path or not Path(path).exists():
        return []
    table = pl.read_parquet(path)
    return table.select([k for k in PROBE_SAE_KEYS if k in table.columns]).to_dicts()


def reference_sections(inputs: dict, params: dict) -> tuple[dict, dict]:
    """(json part, figures) for the LM, probes and SAE."""
    out: dict[str, Any] = {}
    figs: dict[str, str] = {}
    out["lm"] = [_read_json(p) for p in _as_list(inputs.get("lm_metrics"))]
    for row in out["lm"]:
        row.pop("train_seconds", None)  # wall clock: lives in timings, not in the reproducible part
    if out["lm"]:
        figs["lm"] = plots.lm_fit(out["lm"])

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
    figs["probe_by_layer"] = plots.probe_panels(probes, layer_order)
    out["probe_sae_vs_raw"] = probe_sae_rows(inputs.get("probe_sae"))
    out["layers"] = layer_order
    out["probe_notes_grouped"] = summary.group_probe_notes(out["probes"], layer_order)

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
        entry, fig = sae_entry(metrics_path, features_path, top_n)
        out["sae"].append(entry)
        figs[f"density_{entry.get('model')}"] = fig
    return out, figs


def sae_entry(metrics_path: str | Path, features_path: str | Path, top_n: int) -> tuple[dict, str]:
    """One SAE's report.json `sae` entry from its `metrics.json` and `features.parquet` (the stage's held-out
    figures, the keys of SAE_EXTRA, its top_n features alive by F1, the atlas page to copy), and its feature
    density figure (base64 PNG): the stage's test-block histogram, where the entry's held-out figures come from
    (the features table's density counts every token of the store, training ones first; it is drawn only for
    metrics without the histogram)."""
    m = _read_json(metrics_path)
    feats = pl.read_parquet(features_path)
    # an undefined F1 (NaN: its concept absent from the test blocks) sorts last, not first as polars orders NaN
    alive = feats.filter(pl.col("density") > 0).sort([pl.col("best_f1").fill_nan(None), "feature"],
                                                     descending=[True, False], nulls_last=True)
    top = [{"id": r["feature"], "label": r["best_label"], "f1": r["best_f1"], "density": r["density"],
            "top_windows": r.get("top_windows")} for r in alive.head(top_n).iter_rows(named=True)]
    entry = {k: m.get(k) for k in ("model", "layer", "architecture", "n_features", "k", "fvu", "l0",
                                   "dead_fraction", "n_train_tokens", "n_heldout_tokens")}
    # metrics the SAE stage may add (honest labels, loss recovered, concept counts): passed through
    for k, v in m.items():
        if k in SAE_EXTRA or k.startswith("n_concepts_matched"):
            entry[k] = v
    for r, t in zip(alive.head(top_n).iter_rows(named=True), top, strict=True):
        for k in ("lift", "best_lift", "auprc", "best_auprc", "precision", "best_precision"):
            if r.get(k) is not None:
                t[k.removeprefix("best_")] = r[k]
        # the candidate concept and its label test, so an unlabelled feature of high lift says why
        for k in ("concept", "p_value", "p_family", "design_effect"):
            if r.get(k) is not None:
                t[k] = r[k]
    entry["top_features"] = top
    atlas = sae_atlas(m, metrics_path, None)
    if atlas:  # copied into the report's folder by `finish_report`, with the rest of the report
        entry["atlas"] = f"atlas/{quote(str(m.get('model')))}/{quote(str(m.get('layer')))}/{quote(Path(atlas).name)}"
        entry[ATLAS_SOURCE] = str(Path(atlas).resolve())
    entry["best_f1_by_label"] = {
        col[3:]: float(feats[col].max()) for col in feats.columns if col.startswith("f1_")}
    figure = plots.feature_density_histogram(m.get("density_histogram"), int(m.get("n_features") or feats.height),
                                             feats["density"].to_numpy())
    return entry, figure


def population_labels(obs, pop_col: str | None) -> np.ndarray:
    """[n_samples] str population of each sample for the report's counts and ancestry plot: "all" without a
    population column; a sample without a label (allowed when it has no phenotype value: the audit refuses it
    otherwise) is the group "(no label)", not the text "nan"."""
    if not pop_col:
        return np.array(["all"] * len(obs))
    return np.array([NO_LABEL if is_missing(v) else str(v) for v in obs[pop_col].astype(object)])


def cohort_sections(inputs: dict, params: dict, layer_order: dict[str, list[str]]) -> tuple[dict, dict]:
    """(json part, figures) for the cohort: ancestry, verdicts, CV schemes, biomarkers, truth."""
    out: dict[str, Any] = {}
    figs: dict[str, str] = {}
    cfg = params["config"]
    geno = read_genotypes(inputs["genotypes"], dosage=False)  # obs, PCs and uns: no matrix
    pop_col = population_obs_column(cfg["cohort"].get("population_column"))  # samples.tsv's, renamed
    population = population_labels(geno.obs, pop_col)
    var_ratio = np.asarray(geno.uns.get("pca", {}).get("variance_ratio", [0, 0]))
    pops, counts = np.unique(population, return_counts=True)
    # a single "<5" population's size would be n_samples minus the others': `suppressed_sizes` masks more
    shown_as = suppressed_sizes([int(c) for c in counts], [str(p) for p in pops])
    sizes = {str(p): int(c) if why is None else why for p, c, why in zip(pops, counts, shown_as, strict=True)}
    figs["ancestry_pca"] = plots.ancestry_pca(np.asarray(geno.obsm["X_pca"]), population, var_ratio, MIN_GROUP,
                                              sizes=sizes)
    validation = _read_json(inputs["validation"])
    hap_stats = _read_json(inputs["haplotype_stats"])
    emb_stats = [run_state_removed(_read_json(p)) for p in _as_list(inputs.get("cohort_emb_stats"))]
    out["cohort"] = {
        "source": cfg["cohort"]["source"],
        "n_samples": small_group(int(geno.n_obs)),
        "populations": sizes,
        "n_variants": int(validation.get("n_variants_in_regions", geno.n_vars)),
        "n_variants_pca": int(geno.n_vars),
        "genotype_pc_variance_ratio": var_ratio[:5].tolist(),
        "ancestry_markers": dict(geno.uns.get("ancestry_source", {})),
        "validation": validation_section(validation),
        "haplotypes": hap_stats,
        "embedding": emb_stats,
        "missing_policy": cfg["cohort"]["missing"],
        "unphased_policy": cfg["cohort"]["unphased"],
    }
    if inputs.get("variant_effect_stats"):
        out["cohort"]["variant_effect"] = variant_effect_stats(inputs["variant_effect_stats"])
    audit = pl.read_parquet(inputs["audit"])
    details = _read_json(inputs["audit_details"])
    keys = ["phenotype", "model", "layer", "region", "verdict", "ancestry_auroc", "auroc_random_cv", "auroc_lopo_cv",
            "auroc_residualised", "auroc_ancestry_only", "permutation_p"]
    extra = [c for c in audit.columns if c not in keys]
    out["audit"] = [{k: r.get(k) for k in keys + extra} for r in audit.iter_rows(named=True)]
    out["audit_details"] = details
    figs["cv_schemes"] = plots.cv_schemes(audit)
    all_layers = list(dict.fromkeys(la for layers in layer_order.values() for la in layers))
    if any(d.get("by_population") for d in details):
        figs["population_auroc"] = plots.population_auroc(details, all_layers)

    bio = pl.read_parquet(inputs["biomarkers"])
    sections = biomarker_sections(bio, cfg["rank"]["report_top"], float(cfg["rank"].get("alpha", 0.05)))
    out["biomarkers"] = sections.pop("biomarkers")
    if inputs.get("rank_summary"):
        out["rank_summary"] = _read_json(inputs["rank_summary"])
    out.update(sections)
    truth = _read_json(inputs["truth"]) if inputs.get("truth") else None
    if truth is not None:
        out["truth_recovery"] = truth_recovery(truth, audit, bio)
    exons = _annotation_near(inputs, params, bio)
    for phenotype in bio["phenotype"].unique(maintain_order=True).to_list():
        figs[f"regional_{phenotype}"] = regional_plot(bio, phenotype, exons, truth)
    return out, figs


def biomarker_sections(bio: pl.DataFrame, top: int, alpha: float = 0.05) -> dict:
    """report.json's `biomarkers`, `biomarker_families` and `biomarker_linkage` from rank's table (every row of
    every phenotype and family); `top`: rows per (phenotype, family); `alpha`: `rank.alpha`, the q below which
    rank calls a row significant (and the report counts a discovery)."""
    out: dict[str, Any] = {}
    bio_keys = ["phenotype", "feature", "kind", "window", "effect", "ci_low", "ci_high", "p", "q",
                "stability", "rank"]
    carriers = variant_carriers(bio)
    # the carriers shown (`n_carriers`) are the cohort's (rank's `n_carriers_cohort`), never rank's per-phenotype
    # `n_carriers`: two phenotypes' counts of one variant differ by its carriers among the people one leaves out
    bio = bio.drop("n_carriers", strict=False)
    if "n_carriers_cohort" in bio.columns:
        bio = bio.rename({"n_carriers_cohort": "n_carriers"})
    else:  # a rank table from before the cohort's count: the key stays, null (README)
        bio = bio.with_columns(pl.lit(None, dtype=pl.Int64).alias("n_carriers"))
    extra_bio = [c for c in ("family", "bh_scope", "short_name", "method", "effect_method", "n_carriers",
                             "tags_variants", "lead_variant", "p_conditional", "conditional_significant",
                             "p_conditional_top_variant", "model",
                             "layer", "gene", "exon_overlap", "nearest_variants") if c in bio.columns]
    # the top rows of each (phenotype, family): ranks of separate BH families are never interleaved
    family = ["family"] if "family" in bio.columns else []
    tested = bio.filter(pl.col("rank").is_not_null())
    rows = (tested.sort(["phenotype", *family, "rank"])
            .group_by(["phenotype", *family], maintain_order=True).head(top))
    out["biomarkers"] = [rare_variants_unnamed({k: r.get(k) for k in bio_keys + extra_bio}, carriers)
                         for r in rows.iter_rows(named=True)]
    keep = [c for c in bio.columns if c in FAMILY_KEYS]
    families = summary.family_tables(bio.select(keep).to_dicts(), top, alpha)
    for fam in families:
        fam["rows"] = [rare_variants_unnamed({k: r.get(k) for k in FAMILY_KEYS if k in r}, carriers)
                       for r in fam["rows"]]
    out["biomarker_families"] = families
    out["biomarker_linkage"] = summary.linkage_summary(
        bio.select([c for c in ("phenotype", "kind", "q", "p", "contig", "start", "end", "feature", "tags_variants")
                    if c in bio.columns]).to_dicts(), alpha)
    return out


def variant_carriers(bio: pl.DataFrame) -> dict[str, int]:
    """Per variant id: its carriers in the cohort (`n_carriers_cohort` of its variant rows: individuals, among
    every sample, whose called genotype differs from the modal one; the same in every phenotype's rows). A rank
    table written before that column: the fewest carriers rank counted for it over the phenotypes (`n_carriers`,
    among those with the phenotype)."""
    col = next((c for c in ("n_carriers_cohort", "n_carriers") if c in bio.columns), None)
    if bio.is_empty() or col is None:
        return {}
    v = (bio.filter(pl.col("kind") == "variant").group_by("feature")
         .agg(pl.col(col).min()).drop_nulls(col))
    return dict(zip(v["feature"].cast(pl.String).to_list(), v[col].cast(pl.Int64).to_list(), strict=True))


#: rank's columns of a biomarker row that name variants, and how each separates its entries
VARIANT_LISTS = {"tags_variants": ";", "nearest_variants": ","}


def rare_variants_unnamed(row: dict, carriers: dict[str, int]) -> dict:
    """row with the variants its `tags_variants` and `nearest_variants` name kept only where `carriers` counts at
    least MIN_GROUP of them (a variant not counted is left out too); the others counted, not named:
    "chr1:150:A:G(r=0.80);(+2 with <5 carriers)", "chr1:150:A:G,chr1:180:T:A (+3 with <5 carriers)"."""
    for col, sep in VARIANT_LISTS.items():
        value = row.get(col)
        if not isinstance(value, str) or not value.strip():
            continue
        entries = [e.strip() for e in value.split(sep) if e.strip()]
        shown = [e for e in entries if carriers.get(summary._variant_id(e), 0) >= MIN_GROUP]
        if len(shown) == len(entries):
            continue
        hidden = f"(+{len(entries) - len(shown)} with <{MIN_GROUP} carriers)"
        # tags_variants: "a;b;(+2 ...)"; nearest_variants: "a,b (+2 ...)" (its entries stay comma-separated)
        if not shown:
            row[col] = hidden
        else:
            row[col] = sep.join([*shown, hidden]) if sep == ";" else f"{sep.join(shown)} {hidden}"
    return row


FAMILY_KEYS = ("phenotype", "feature", "short_name", "family", "kind", "model", "layer", "window", "gene",
               "exon_overlap", "effect", "ci_low", "ci_high", "p", "q", "stability", "rank", "method",
               "n_carriers", "tags_variants", "lead_variant", "p_conditional", "bh_scope", "nearest_variants")


def _annotation_near(inputs: dict, params: dict, bio: pl.DataFrame) -> pl.DataFrame:
    """Transcript and exon rows of the gene table overlapping a biomarker row's own span (window or variant;
    empty without a table). Per row, not one span from the first to the last row on every contig: genes at
    both ends of chr1 kept every transcript of the chromosome."""
    from interp.genome.annotation import KeepStudied, read_annotation, to_contigs

    empty = pl.DataFrame(schema={"gene": pl.String, "transcript": pl.String, "contig": pl.String,
                                 "strand": pl.String, "feature": pl.String, "start": pl.Int64, "end": pl.Int64})
    if not inputs.get("annotation") or bio.is_empty():
        return empty
    ref = params["config"]["reference"]
    aliases = ref.get("contig_aliases") or {}
    spans = (bio.select(pl.col("contig").cast(pl.String), "start", "end").drop_nulls().unique()
             .sort("contig", "start"))
    contigs = spans["contig"].unique().to_list()
    keep = KeepStudied(contigs, aliases, spans=spans.iter_rows())
    ann = to_contigs(read_annotation(inputs["annotation"], ref.get("annotation_format", "auto"), keep=keep),
                     contigs, aliases, drop_missing=True)
    # `keep` kept the transcripts whose own span overlaps a biomarker row, whole (exons included)
    return ann.select(list(empty.columns)) if not ann.is_empty() else empty


def regional_plot(bio: pl.DataFrame, phenotype: str, exons: pl.DataFrame, truth: dict | None) -> str:
    """Regional association plot of one phenotype: every variant's -log10 p, the top feature of each model
    family (up to 4, smallest p) as its window, the lead variant, the gene's exons; the planted causal
    variant of a simulated cohort as a dotted line."""
    # untested rows (too few carriers, constant) have p NaN: not drawn, never a family's top
    sub = bio.filter((pl.col("phenotype") == phenotype) & pl.col("p").is_not_null() & pl.col("p").is_not_nan())
    contig = None
    variants = sub.filter(pl.col("kind") == "variant")
    if not variants.is_empty():
        contig = variants.sort("p")["contig"][0]
        variants = variants.filter(pl.col("contig") == contig)
    variants = variants.with_columns((pl.col("start") + 1).alias("pos"))
    lead = None
    if not variants.is_empty():
        r = variants.sort(["p", "pos"]).row(0, named=True)
        lead = {"pos": r["pos"], "p": r["p"], "name": summary.short_name(r)}
    model_rows = [dict(r, family=summary.family_of(r)) for r in
                  sub.filter(pl.col("kind") != "variant").sort(["p", "feature"])
                  .iter_rows(named=True) if contig is None or r["contig"] == contig]
    best: dict[str, dict] = {}
    for r in model_rows:
        best.setdefault(r["family"], r)
    top = sorted(best.values(), key=lambda r: r["p"])[:4]
    model_top = pl.DataFrame([{"start": int(r["start"]), "end": int(r["end"]), "p": float(r["p"]),
                               "family": r["family"], "short_name": summary.short_name(r)} for r in top],
                             schema={"start": pl.Int64, "end": pl.Int64, "p": pl.Float64, "family": pl.String,
                                     "short_name": pl.String})
    if contig is None and top:
        contig = top[0]["contig"]
    ex = exons.filter(pl.col("contig") == contig) if contig is not None else exons
    truth_pos = None
    if truth and phenotype == "causal" and truth.get("causal_variant", {}).get("contig") == contig:
        truth_pos = int(truth["causal_variant"]["pos"])
    return plots.regional_association(phenotype, variants.select("pos", "p"), model_top, ex, lead, truth_pos)


def truth_recovery(truth: dict, audit: pl.DataFrame, bio: pl.DataFrame) -> dict:
    """How the planted answers of a simulated cohort were recovered."""
    causal = truth["causal_variant"]
    variant_id = f"{causal['contig']}:{causal['pos']}:{causal['ref']}:{causal['alt']}"
    # the variants rank tested (an untested one, too few carriers, has rank empty and p NaN)
    tested = pl.col("rank").is_not_null() if "rank" in bio.columns else pl.col("p").is_not_nan()
    variants = bio.filter((pl.col("phenotype") == "causal") & (pl.col("kind") == "variant") & tested).sort("p")
    variant_rank = None
    if variant_id in variants["feature"].to_list():
        variant_rank = variants["feature"].to_list().index(variant_id) + 1
    model_feats = (bio.filter((pl.col("phenotype") == "causal") & (pl.col("kind") != "variant")
                              & pl.col("rank").is_not_null()).sort(["p", "rank"]))
    top_model = model_feats.row(0, named=True) if not model_feats.is_empty() else None
    pos0 = causal["pos"] - 1
    top_in_window = bool(top_model and top_model["contig"] == causal["contig"]
                         and top_model["start"] <= pos0 < top_model["end"])
    # the wrong verdicts for each planted truth: FAIL of a real effect, PASS of an ancestry-only or a null
    # phenotype, FAIL of a null; INCONCLUSIVE (or NO SIGNAL) is never wrong, only uninformative
    wrong = {"causal": {"FAIL"}, "confounded": {"PASS"}, "null": {"PASS", "FAIL"}}
    expected = {ph: "not " + " or ".join(sorted(w)) for ph, w in wrong.items()}
    verdicts = {}
    for r in audit.iter_rows(named=True):
        ph = r["phenotype"]
        exp = expected.get(ph)
        ok = None if exp is None else r["verdict"] not in wrong[ph]
        key = f"{ph}|{r['model']}|{r['layer']}" + (f"|{r['region']}" if r.get("region") else "")
        verdicts[key] = {"verdict": r["verdict"], "expected": exp, "as_expected": ok}
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


def _calibration_rows(path: str | Path | None) -> list[dict] | None:
    """Rows of the calibration table (a list, or {"rows": [...]}), or None when there is none. A file that is
    not such a table (no rows, rows without cell / truth / verdict_rates: another JSON given as
    report.calibration) is an InputError, not a report saying that no table was given."""
    if not path or not Path(path).exists():
        return None
    data = _read_json(path)
    rows = data.get("rows") if isinstance(data, dict) else data
    if not (isinstance(rows, list) and rows and all(
            isinstance(r, dict) and {"cell", "truth", "verdict_rates"} <= r.keys() for r in rows)):
        raise InputError(f"{path} (report.calibration): not a calibration table of `make calibration`; expected "
                         "{\"rows\": [...]} with at least one row, each with cell, truth and verdict_rates")
    return rows


PLANTED_MATCH_KEYS = ("concept", "feature", "f1", "precision", "recall", "lift", "matched", "oracle_f1",
                      "instance_feature", "instance_precision", "instance_recall", "instance_f1", "instance_lift",
                      "matched_instance", "n_test_instances", "probe_f1", "neuron_f1", "direction_f1", "subspace8_f1",
                      "subspace32_f1", "subspace_dim")
PLANTED_STEER_KEYS = ("concept", "feature", "rule", "strength", "n_windows", "n_motif_bases", "n_clamped",
                      "dp_motif", "control_dp_motif_q95", "dp_other", "raises_motif", "dp_motif_everywhere",
                      "control_dp_motif_q95_everywhere", "raises_motif_everywhere", "control_p_motif",
                      "control_p_motif_everywhere")


def planted_section(path: str | Path | None) -> dict:
    """report.json `planted`: the planted-motif calibration of the SAE features (`interp.sae.planted`,
    `make planted`) read from its calibration.json (`report.planted`, default the committed
    reports/planted/calibration.json): {available, source, note} and, when available, `pass`,
    `pass_instance`, `layer`, `lm` {heldout_ce, baseline_order0_ce, baseline_order3_ce}, `lm_beats_order3`,
    `sae`, `targets`, `n_types`, `n_matched`, `share_matched`, `n_matched_instance`,
    `share_matched_instance`, `match` [PLANTED_MATCH_KEYS present], `steering` [PLANTED_STEER_KEYS present],
    `steering_pass`."""
    if not path or not Path(path).exists():
        return {"available": False, "source": str(path) if path else None,
                "note": "The planted-motif calibration of the SAE features is not available: no calibration.json "
                        "of `make planted` was given (report.planted)."}
    data = _read_json(path)
    if not (isinstance(data, dict) and isinstance(data.get("pass"), bool) and isinstance(data.get("match"), list)
            and isinstance(data.get("match_n_types"), int)):
        raise InputError(f"{path} (report.planted): not the calibration.json of `make planted`; expected a JSON "
                         "object with pass (true/false), match_n_types and match (its match table)")
    out = {"available": True, "source": str(path),
           "note": "Measured on a synthetic genome with planted motifs, a repeat and GC islands (make planted); "
                   "it calibrates the method (LM + SAE + labels), not this run's model.",
           "pass": data.get("pass"), "pass_instance": data.get("pass_instance"), "layer": data.get("layer"),
           "lm": {k: (data.get("lm") or {}).get(k) for k in ("heldout_ce", "baseline_order0_ce",
                                                              "baseline_order3_ce")},
           "lm_beats_order3": data.get("lm_beats_order3"), "sae": data.get("sae"),
           "targets": data.get("match_targets"), "n_types": data.get("match_n_types"),
           "n_matched": data.get("match_n_matched"), "share_matched": data.get("match_share_matched"),
           "n_matched_instance": data.get("match_instance_n_matched"),
           "share_matched_instance": data.get("match_instance_share_matched"),
           "steering_pass": data.get("steering_pass")}
    out["match"] = [{k: r[k] for k in PLANTED_MATCH_KEYS if k in r} for r in data.get("match") or []]
    out["steering"] = [{k: r[k] for k in PLANTED_STEER_KEYS if k in r} for r in data.get("steering") or []]
    return out


def build_report(inputs: dict, outputs: dict, params: dict) -> dict:
    """Write report.json, index.html and (where Chromium is installed) report.pdf; returns the report."""
    params = dict(params, html_dir=str(Path(outputs["html"]).parent))
    report: dict[str, Any] = {"generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    report["provenance"] = provenance(inputs, params)
    ref, figs = reference_sections(inputs, params)
    report.update(ref)
    layer_order = ref["layers"]
    if params["config"].get("cohort", {}).get("enabled"):
        coh, cfigs = cohort_sections(inputs, params, layer_order)
        report.update(coh)
        figs.update(cfigs)
    report["planted"] = planted_section(inputs.get("planted"))
    report["timings"] = rule_timings(params["benchmarks"])
    return finish_report(report, figs, layer_order, _calibration_rows(inputs.get("calibration")),
                         params["config"], params["run"], outputs)


def finish_report(report: dict, figs: dict[str, str], layer_order: dict[str, list[str]],
                  calibration_rows: list[dict] | None, config: dict, run: str, outputs: dict) -> dict:
    """Add the summary, limitations and methods to the report's sections; write report.json, index.html
    and report.pdf (when Chromium is installed; else the log says so and a stale PDF is removed)."""
    atlases = [(entry.pop(ATLAS_SOURCE), entry) for entry in report.get("sae") or [] if ATLAS_SOURCE in entry]
    report = _clean(report)
    first = summary.assemble(report, layer_order, calibration_rows)
    report["limitations"] = first.pop("_all_caveats")
    report["summary"] = first
    report["methods"] = summary.methods(config, report.get("audit"), report.get("biomarker_families"),
                                        (report.get("cohort") or {}).get("ancestry_markers"), report.get("lm"),
                                        (report.get("cohort") or {}).get("variant_effect"),
                                        (report.get("rank_summary") or {}).get("phenotypes"))
    report["audit_reasons_grouped"] = summary.group_verdict_reasons(report.get("audit") or [])
    report = _clean(report)
    # both rendered before either is written: a failure leaves the earlier pair, never a new json beside an old page
    text = json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n"
    page = render_html(report, figs, run, config)
    for source, entry in atlases:  # beside the page that links them
        report_atlas(source, Path(outputs["html"]).parent, str(entry.get("model")), str(entry.get("layer")))
    write_text_atomic(outputs["json"], text)
    write_text_atomic(outputs["html"], page)
    pdf = Path(outputs.get("pdf") or Path(outputs["html"]).with_name("report.pdf"))
    if not html_to_pdf(outputs["html"], pdf, title=f"interp audit report: {run}"):
        # the page links report.pdf: without one it says so instead
        write_text_atomic(outputs["html"], render_html(report, figs, run, config, pdf_written=False))
        if pdf.exists():
            pdf.unlink()  # a PDF of an earlier run would contradict this index.html
            log.warning("removed the stale %s of an earlier run", pdf)
    return report


def render_html(report: dict, figs: dict[str, str], run: str, config: dict, pdf_written: bool = True) -> str:
    """index.html from the report dict and its figures (base64 PNGs), one self-contained page (its SAE atlases in
    the report's folder). pdf_written: link report.pdf (else the page says none was made)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.ChainableUndefined)
    env.filters["num"] = fmt_num
    env.filters["verdict_class"] = summary.verdict_class
    return env.get_template("report.html").render(
        r=report, figs=figs, run=run, config_yaml=json.dumps(config, indent=2), pdf_written=pdf_written,
        probe_pooling=summary.pooling_text((report.get("provenance") or {}).get("models")))


def fmt_num(x: Any, spec: str = ".3f", missing: str = "n/a") -> str:
    """Template filter: a number formatted with `spec`, or `missing` for None/NaN/non-numbers ("<5" stays)."""
    if isinstance(x, jinja2.Undefined):
        return missing
    if isinstance(x, str):
        return x
    v = summary._num(x)
    return missing if v is None else format(v, spec)
