"""The audit stage's work around `interp.audit`: the whole run (`audit_run`: every embedding table, and with
audit.by_region every region's, verdicts adjusted together), one embedding table audited for every phenotype
(`audit_embedding`), the summaries reported beside each verdict (`attribution_summary`,
`sae_feature_leakage`), the masking of small groups (`mask_small_groups`) and the run's table and
details (`audit_tables`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from interp.audit import (
    MIN_REPORTED_GROUP,
    AuditConfig,
    assign_verdicts,
    audit_phenotype,
    feature_attribution,
    floor_level,
    null_replicates_needed,
    reference_sizes,
    small_cell,
    suppressed_groups,
)
from interp.cohort.genotype_file import GenotypeFile, dosage_columns
from interp.cohort.vcf import population_obs_column
from interp.errors import InputError

if TYPE_CHECKING:
    import anndata as ad

#: per-sample columns of the embedding tables that are functions of the genotypes: reported, not adjusted for
DESCRIPTOR_COLUMNS = ("gc", "missing_rate")

#: groups smaller than this keep their name only in the details
MIN_GROUP_SIZE = MIN_REPORTED_GROUP


def attribution_summary(attribution: pl.DataFrame) -> dict:
    """Counts and top rows of a per-feature ancestry vs phenotype attribution of one embedding.

    attribution: `interp.audit.feature_attribution` output, one row per feature (q_ancestry, q_phenotype,
    p_ancestry, p_phenotype, ancestry_dominated, ...). Returns n_features, the numbers of features with
    BH q <= 0.05 for the PCs' and for the phenotype's F-test, n_ancestry_dominated, the rule's text, and
    the 10 rows with the smallest p_ancestry (top_ancestry) and p_phenotype (top_phenotype) as dicts.
    """
    return {
        "n_features": attribution.height,
        "n_ancestry_significant": int((attribution["q_ancestry"] <= 0.05).sum()),
        "n_phenotype_significant": int((attribution["q_phenotype"] <= 0.05).sum()),
        "n_ancestry_dominated": int(attribution["ancestry_dominated"].sum()),
        "ancestry_dominated_rule": "BH q of the PCs' F-test <= 0.05 and its p below the phenotype's F-test p",
        "top_ancestry": attribution.sort("p_ancestry").head(10).to_dicts(),
        "top_phenotype": attribution.sort("p_phenotype").head(10).to_dicts()}


def sae_feature_leakage(features: np.ndarray | None, y: np.ndarray, pcs: np.ndarray,
                        population: np.ndarray) -> dict | None:
    """Per-SAE-feature ancestry leakage at the SAE layer (None when `features` is None: other layers).

    features: [n_samples, n_features] sample-level SAE codes (`sae.features.h5ad`); y [n_samples]
    phenotype (NaN left out); pcs [n_samples, k]; population [n_samples] labels.
    Only alive features (non-zero SD over samples) are tested by `interp.audit.feature_attribution`; their
    rows carry `feature`, the column index in `features`. Returns n_features_alive, the number of alive
    features whose best one-population-vs-rest AUROC exceeds 0.8, n_ancestry_dominated, and the 10 leakiest
    (by that AUROC) and 10 most phenotype-related (smallest p_phenotype) rows.
    """
    if features is None:
        return None
    F = np.asarray(features, dtype=np.float64)
    alive = F.std(axis=0) > 0
    fa = feature_attribution(F[:, alive], y, pcs, population).with_columns(pl.Series("feature", np.flatnonzero(alive)))
    return {
        "n_features_alive": int(alive.sum()),
        "n_features_population_auroc_over_0.8": int((fa["ancestry_auroc_feature"] > 0.8).sum()),
        "n_ancestry_dominated": int(fa["ancestry_dominated"].sum()),
        "top_leaky": fa.sort("ancestry_auroc_feature", descending=True).head(10).to_dicts(),
        "top_phenotype": fa.sort("p_phenotype").head(10).to_dicts()}


def _group_cases(g: dict) -> int | None:
    """A by_population group's case count (its prevalence x n), or None when it has no prevalence."""
    prevalence, n = g.get("prevalence"), g.get("n")
    if not isinstance(n, (int, np.integer)) or not isinstance(prevalence, (float, int, np.floating)):
        return None
    return int(round(float(prevalence) * int(n))) if np.isfinite(prevalence) else None


def _suppressed(groups: list[dict], reference: dict[str, int] | None = None,
                ) -> list[tuple[str | None, bool]] | None:
    """`interp.audit.suppressed_groups` of by_population's groups (None when a group has no size or case count);
    reference: {group: its size in the whole cohort} (`audit_phenotype`'s `group_sizes`), None when unknown."""
    n = [g.get("n") for g in groups]
    cases = [_group_cases(g) for g in groups]
    if any(not isinstance(k, (int, np.integer)) for k in n) or any(c is None for c in cases):
        return None
    names = [str(g.get("population")) for g in groups]
    ref, absent, absent_names = reference_sizes(names, [int(k) for k in n], reference)
    return suppressed_groups([int(k) for k in n], cases, ref, absent, names, absent_names)


def _reportable(groups: list[dict], population: str, reference: dict[str, int] | None = None) -> bool:
    """`population` is among by_population's groups with at least MIN_GROUP_SIZE samples, cases and controls,
    and not masked as the complement of a small group (`interp.audit.suppressed_groups`)."""
    i = next((i for i, g in enumerate(groups) if g.get("population") == population), None)
    if i is None or not isinstance(groups[i].get("n"), (int, np.integer)):
        return False
    masked = _suppressed(groups, reference)
    return masked[i][0] is None if masked is not None else int(groups[i]["n"]) >= MIN_GROUP_SIZE


def mask_small_groups(groups: list[dict], min_n: int = MIN_GROUP_SIZE,
                      reference: dict[str, int] | None = None) -> list[dict]:
    """Groups (dicts with `n` samples) of fewer than `min_n` samples keep their population name only,
    with n shown as "<5" (for the default min_n). Groups of `min_n` or more whose cases or controls
    (prevalence x n, and n minus that) number under MIN_GROUP_SIZE, zero included, keep `population` and `n`
    and say why in `small_cell` ("<5 cases" / "<5 controls"; "<5 cases or controls" for 5-9 samples): their prevalence would give the small count and
    their AUROC and accuracy would rank those few people. The groups are a partition whose total samples and
    cases the report gives, so a small group's count must not follow by subtraction: further groups are
    masked the same way with `small_cell` COMPLEMENTARY ("masked (complementary)"), and `n` "masked" (with
    `small_cell` "masked", `interp.audit.SIZE_MASKED`, which tells no size class) where a small group's size
    would follow (`interp.audit.suppressed_groups`). Others are returned unchanged, in
    order. reference: {group: its size in the whole cohort, samples without a phenotype value included}: a
    group whose size here is that minus 1-4 is masked the same way (the subtraction would count those left
    out), with complementary suppression of those counts as well."""
    masked = _suppressed(groups, reference)
    out = []
    for i, g in enumerate(groups):
        n = g.get("n", 0)
        if isinstance(n, (int, np.integer)) and n < min_n:
            out.append({"population": g.get("population"), "n": f"<{min_n}"})
            continue
        cases = _group_cases(g)
        why, size_hidden = (masked[i] if masked is not None
                            else (small_cell(int(n), cases) if cases is not None else None, False))
        if why is not None:
            out.append({"population": g.get("population"), "n": "masked" if size_hidden else int(n),
                        "small_cell": why})
        else:
            out.append(g)
    return out


def audit_embedding(table: ad.AnnData, sae_features: ad.AnnData | None, phenotypes: list[str],
                    cfg: AuditConfig, covariates: list[str], covariate_missing: str = "refuse",
                    population_column: str | None = None, max_null_replicates: int | None = None,
                    categorical_covariates: list[str] | tuple = (),
                    genotypes: GenotypeFile | ad.AnnData | None = None,
                    ) -> list[tuple[dict, dict]]:
    """Audit one sample-level embedding table (`<layer>.samples.h5ad`) for every phenotype.

    table: X [n_samples, d] embeddings, obs with the phenotypes (0/1, NaN missing), covariates, descriptor
    columns (`DESCRIPTOR_COLUMNS`) and the population column, obsm["X_pca"] [n_samples, k], uns model and
    layer, and uns region when the table is one region's (`interp.embed.cohort.region_sample_tables`; absent:
    the whole cohort's pooled embedding). sae_features: the SAE's `sae.features.h5ad` of the same samples when
    this is the SAE layer, else None. population_column: the obs column of the labels (an InputError when
    absent); None puts every sample in one group "all" (strata then
    come from the PCs). covariate_missing, categorical_covariates: the `interp.covariates.covariate_design`
    policy and the covariates one-hot encoded even when coded as numbers.
    genotypes: the studied regions' genotypes (`interp.cohort.genotype_file.GenotypeFile` over genotypes.h5ad,
    or an AnnData: obs sample IDs, var contig and 1-based pos, layers["dosage"] or X), for the audit's
    variant-direction scan (`interp.variant_scan`): every variant for the whole cohort's table, the variants
    inside uns["region_span"] for one region's, read from disk a block at a time (`dosage_columns`); the scan's
    directions are computed once per set of samples with a phenotype and shared by the phenotypes; None: no
    scan.
    Sample IDs (obs_names) repeated in the table are an InputError.
    Returns per phenotype (`audit_phenotype`'s result with phenotype, model, layer and region added, no verdict
    yet; extras: the embedding's feature attribution summary and the SAE feature leakage).
    """
    from interp.covariates import covariate_design

    ids = table.obs_names.astype(str)
    repeated = sorted(set(ids[ids.duplicated()]))
    if repeated:  # a copy is its own neighbour for the probe, whose null replicates split the copies' labels
        shown = ", ".join(f"'{s}'" for s in repeated[:20]) + (" ..." if len(repeated) > 20 else "")
        raise InputError(f"{table.uns.get('model')} {table.uns.get('layer')}: {len(repeated)} sample ID(s) appear "
                         f"more than once in the sample table ({shown}); a sample counted twice makes a false "
                         "within-ancestry signal: drop or rename the duplicates")
    X = np.asarray(table.X, dtype=np.float64)
    pcs = np.asarray(table.obsm["X_pca"], dtype=np.float64)
    if population_column and population_column not in table.obs:
        raise InputError(f"{table.uns.get('model')} {table.uns.get('layer')}: the sample table has no population "
                         f"column {population_column!r} (it has {', '.join(map(str, table.obs.columns))})")
    population = (table.obs[population_column].astype(str).to_numpy() if population_column
                  else np.array(["all"] * table.n_obs))
    design = covariate_design({c: table.obs[c].to_numpy() for c in covariates if c in table.obs}, covariates,
                              missing=covariate_missing, sample_ids=table.obs_names.tolist(),
                              categorical=categorical_covariates)
    descriptors = {k: table.obs[k].to_numpy(dtype=float) for k in DESCRIPTOR_COLUMNS if k in table.obs}
    sae_matrix = None if sae_features is None else sae_features.X
    dosage, variant_ids = (dosage_columns(genotypes, ids.tolist(), table.uns.get("region_span"))
                           if genotypes is not None else (None, None))
    directions_cache: dict = {}  # phenotypes with the same samples share the scan's directions
    out = []
    for phenotype in phenotypes:
        y = table.obs[phenotype].to_numpy(dtype=float)
        res = audit_phenotype(X, y, population, pcs, cfg, covariates=design, descriptors=descriptors,
                              max_null_replicates=max_null_replicates, variant_dosage=dosage,
                              variant_ids=variant_ids, directions_cache=directions_cache)
        res.update({"phenotype": phenotype, "model": table.uns["model"], "layer": table.uns["layer"],
                    "region": table.uns.get("region")})
        out.append((res, {"attribution": attribution_summary(feature_attribution(X, y, pcs, population)),
                          "sae_feature_leakage": sae_feature_leakage(sae_matrix, y, pcs, population)}))
    return out


def audit_tables(results: list[dict], extras: list[dict], covariate_missing: str,
                 ) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """The audit's table and details from results with verdicts (`interp.audit.assign_verdicts`).

    results, extras: in the same order, as from `audit_embedding`. Returns
      table: one row per result, phenotype, model, layer, region (null for the whole cohort's embedding)
          then every scalar (or None) statistic, and `reasons` (the verdict's reason), sorted by phenotype,
          model, layer, region (the whole cohort's row first);
      details: one dict per result, in input order: verdict and its rule, reasons, thresholds, the
          covariate policy, descriptors, per-population and per-stratum statistics (groups of fewer than 5
          samples, cases or controls masked, `mask_small_groups`), the between-group difference, leave-one-population-out
          AUROCs and the extras.
    """
    rows, details = [], []
    for res, extra in zip(results, extras, strict=True):
        row = {k: res.get(k) for k in ("phenotype", "model", "layer", "region")}
        row.update({k: v for k, v in res.items() if k not in row and (np.isscalar(v) or v is None)})
        row["reasons"] = res["reason"]
        # the sum over strata of min(cases, controls): with the shown strata's counts it gives a masked one's
        sizes = res.get("group_sizes") or {}
        strata_groups = res.get("by_stratum") or res["by_population"]
        masked = _suppressed(strata_groups, sizes.get("stratum" if res.get("by_stratum") else "population"))
        if masked is None or any(w for w, _ in masked):
            # ... and the count of strata with a case and a control (below n_strata: a masked "<5 cases" or
            # "<5 controls" stratum has none, where its mask says 0-4)
            for key in ("n_minority_within", "n_strata_used"):
                if key in row:
                    row[key] = None
        # a held-out population of fewer than MIN_GROUP_SIZE samples, cases or controls (or masked as the
        # complement of one): its AUROC would rank those few
        lopo = {pop: auc for pop, auc in res["auroc_lopo_by_population"].items()
                if _reportable(res["by_population"], pop, sizes.get("population"))}
        if "auroc_lopo_cv" in row and len(lopo) < len(res["auroc_lopo_by_population"]):
            # the mean over every population with the shown ones would give a masked one's AUROC: mean over the shown
            shown = [v for v in lopo.values() if v is not None and np.isfinite(v)]
            row["auroc_lopo_cv"] = float(np.mean(shown)) if shown else float("nan")
        rows.append(row)
        details.append({
            **{k: res[k] for k in ("phenotype", "model", "layer", "verdict", "verdict_rule", "reason",
                                   "multiplicity", "null_method", "strata_source")},
            "region": res.get("region"),
            "reasons": res["reasons"], "thresholds": res["thresholds"],
            "covariate_policy": {"missing": covariate_missing, "covariates": res["covariates"],
                                 "descriptors_not_adjusted_for": sorted(res["descriptors"])},
            "descriptors": res["descriptors"],
            "by_population": mask_small_groups(res["by_population"], reference=sizes.get("population")),
            "by_stratum": mask_small_groups(res.get("by_stratum", []), reference=sizes.get("stratum")),
            "between_group_difference": res["between_group_difference"],
            "auroc_lopo_by_population": lopo,
            **extra,
        })
    table = pl.DataFrame(rows).with_columns(pl.col("region").cast(pl.String))
    return table.sort(["phenotype", "model", "layer", "region"], nulls_last=False), details


def region_windows_path(samples_path: Path) -> Path:
    """The `<layer>.windows.h5ad` beside a `<layer>.samples.h5ad` (InputError when it is missing)."""
    path = samples_path.with_name(samples_path.name.replace(".samples.h5ad", ".windows.h5ad"))
    if not path.exists():
        raise InputError(f"audit.by_region: {path} is missing (the embed_cohort stage writes it beside "
                         f"{samples_path.name})")
    return path


def audit_run(emb_dirs: list[str], phenotypes: list[str], covariates: list[str], cfg: AuditConfig,
              by_region: bool = False, sae_layer: str | None = None, covariate_missing: str = "refuse",
              population_column: str | None = None, categorical_covariates: list[str] | tuple = (),
              genotypes: str | Path | None = None,
              ) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """The audit stage: every `<layer>.samples.h5ad` of every embedding folder audited for every phenotype
    (`audit_embedding`; the SAE features' leakage at `sae_layer`), with by_region also each region's own pooled
    embedding (`interp.embed.cohort.region_sample_tables`, when the windows table has two or more regions),
    all verdicts adjusted together (`interp.audit.assign_verdicts`). The Monte Carlo null size B is what the
    strictest Holm level of that many verdicts needs (`null_replicates_needed`), at most
    cfg.max_null_replicates; when the cap keeps that level out of reach a warning names the B needed.
    genotypes: the ancestry stage's genotypes.h5ad, for the variant scan: opened once, its dosage columns read a
    block at a time (`interp.cohort.genotype_file`), never loaded whole; None: no scan.
    Returns `audit_tables`' (table, details).
    """
    import anndata as ad

    from interp.embed.cohort import region_sample_tables, window_regions

    paths = [path for d in sorted(emb_dirs) for path in sorted(Path(d).glob("*.samples.h5ad"))]
    windows = {path: region_windows_path(path) for path in paths} if by_region else {}
    n_regions = {path: len(window_regions(w)) for path, w in windows.items()}
    regions = {path: w for path, w in windows.items() if n_regions[path] > 1}  # one region: the cohort's own
    n_verdicts = (len(paths) + sum(n_regions[path] for path in regions)) * len(phenotypes)
    b = null_replicates_needed(n_verdicts, cfg.alpha, cfg.max_null_replicates)
    if 1 / (b + 1) > floor_level(cfg.alpha, n_verdicts, cfg.multiplicity):
        logging.getLogger(__name__).warning(
            "audit: %d verdicts need p <= %.3g, but audit.max_null_replicates %d allows p >= %.3g: no verdict "
            "can PASS; raise audit.max_null_replicates to at least %d", n_verdicts,
            floor_level(cfg.alpha, n_verdicts, cfg.multiplicity), cfg.max_null_replicates, 1 / (b + 1),
            null_replicates_needed(n_verdicts, cfg.alpha, 10**9))
    # samples.tsv's population column, whatever its name, is `population` in the cohort's tables
    kw = {"covariate_missing": covariate_missing, "population_column": population_obs_column(population_column),
          "max_null_replicates": b,
          "categorical_covariates": categorical_covariates,
          "genotypes": GenotypeFile(genotypes) if genotypes is not None and cfg.variant_scan else None}
    audited = []
    try:
        for path in paths:
            table = ad.read_h5ad(path)
            sae_path = path.parent / "sae.features.h5ad"
            sae = ad.read_h5ad(sae_path) if sae_path.exists() and table.uns["layer"] == sae_layer else None
            audited += audit_embedding(table, sae, phenotypes, cfg, covariates, **kw)
            for region_table in region_sample_tables(table, regions[path]) if path in regions else ():
                audited += audit_embedding(region_table, None, phenotypes, cfg, covariates, **kw)
    finally:
        if kw["genotypes"] is not None:
            kw["genotypes"].close()
    results = assign_verdicts([r for r, _ in audited], cfg)
    return audit_tables(results, [e for _, e in audited], covariate_missing)
