"""Calibration suite: error rates and power of the audit and rank, measured over simulated replicates.

A grid of cohort scenarios (`grid_cells`): a base cell (OutOfAfrica_3G09, labels given, causal odds ratio
2 per allele, flat causal allele frequency, 30% cases, no confounding, n = 1,000), then one axis varied
at a time. Each replicate simulates one cohort carrying three phenotypes with known truth -- `causal`
(one planted SNV), `confounded` (ancestry only) and `null` -- and runs the real pipeline stages on it
(`interp.stages`: simulate_cohort, place_cohort, check_cohort, haplotypes, ancestry, embed_cohort with the shared
built-in LM and SAE, audit, rank). `summarise_replicate` reduces one replicate to counts;
`calibration_table` pools replicates per cell and truth into rates with Clopper-Pearson intervals.

Definitions (per cell; "family" = one BH family of rank: the `family` column when rank writes one,
else (kind, model, layer)):
- verdict rate: share of (replicate, model, layer) audit verdicts of a truth equal to each verdict string.
- power_variant: share of replicates whose planted causal variant has q < alpha in the variant family
  of the causal phenotype.
- power_feature: share of replicates in which the model feature (any non-variant family) with the
  smallest p among those whose window holds the causal variant has q < alpha in its family.
- type-I error at level t: share of the null phenotype's tests (all families, every replicate) with
  p < t. Its Clopper-Pearson interval treats tests as independent; features in LD are not, so the
  between-replicate (cluster) standard error is given beside it.
- FDR: mean over replicates of the false discovery proportion V / max(R, 1) of the causal phenotype,
  where R counts features with q < alpha (all families) and V those whose locus lies more than
  `near_bp` bases from the causal variant (a window holding it is at distance 0).
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from interp.ratio_se import cluster_se

TRUTHS = {"causal": "causal", "confounded": "ancestry-only", "null": "null"}
TYPE1_LEVELS = (1e-2, 1e-3, 1e-4)
#: calibration.null_redraws' default (the schema's); the rule passes the key only when it differs, so that
#: replicates run before the key existed keep their params and are not rerun
NULL_REDRAWS = 20
BASE = {"demography": "OutOfAfrica_3G09", "labels": "given", "odds_ratio": 2.0, "frequency": "flat",
        "case_fraction": 0.3, "confounding": "none", "n": 1000}
AXES = {
    "odds_ratio": [1.2, 1.5, 2.0, 3.0],
    "frequency": ["flat", "differentiated"],
    "case_fraction": [0.1, 0.3, 0.5],
    "confounding": ["none", "mild", "strong"],
    "labels": ["given", "absent"],
    "demography": ["OutOfAfrica_3G09", "AmericanAdmixture_4B18"],
    "n": [300, 1000, 3000],
}
DIFFERENTIATED_TARGETS = {"YRI": 0.05, "CEU": 0.3, "CHB": 0.6}
#: cells outside the one-axis-at-a-time grid. "admixed_with_sources": admixture inside one (withheld) label.
#: In AmericanAdmixture_4B18 alone (one pulse, 12 generations, loci simulated independently) an individual's
#: ancestry proportion varies only by which source each panel locus drew (sd ~0.02), independently of the
#: studied region, so an ancestry-only phenotype there is nothing the region can read. Mixing the admixed
#: group with individuals of two of its sources (a fraction `source_share`, split evenly) gives ancestry that
#: differs between individuals at every locus, as in a real cohort whose admixed and unadmixed members
#: share one label or none.
EXTRA_CELLS = [
    {"cell": "admixed_with_sources", "axis": "combined", "value": "AmericanAdmixture_4B18 + AFR, EUR; labels absent",
     **BASE, "demography": "AmericanAdmixture_4B18", "labels": "absent", "source_share": 0.4,
     "sources": ("AFR", "EUR")},
]


# ---------------------------------------------------------------- grid


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def grid_cells(axes: dict[str, list] | None = None, base: dict | None = None) -> list[dict]:
    """The base cell, then one cell per non-base value of each axis (one axis varied at a time).

    Returns [{cell, axis, value, **settings}] with cell names "base" and "<axis>=<value>".
    """
    base = dict(BASE if base is None else base)
    cells = [{"cell": "base", "axis": "base", "value": "base", **base}]
    for axis, values in (AXES if axes is None else axes).items():
        if axis not in base:
            raise ValueError(f"unknown calibration axis {axis!r}; axes: {', '.join(base)}")
        for value in values:
            if value == base[axis]:
                continue
            cells.append({"cell": f"{axis}={_format(value)}", "axis": axis, "value": _format(value),
                          **{**base, axis: value}})
    return cells


def select_cells(names: list[str] | None) -> list[dict]:
    """Cells of the full grid and `EXTRA_CELLS` by name (None: all), in grid order; unknown names raise
    ValueError."""
    cells = grid_cells() + [dict(c) for c in EXTRA_CELLS]
    if not names:
        return cells
    known = {c["cell"]: c for c in cells}
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"unknown calibration cell(s) {missing}; cells: {', '.join(known)}")
    return [c for c in cells if c["cell"] in set(names)]


def cell_cohort(cell: dict, cohort: dict) -> dict:
    """The `cohort` config section of one cell: populations, simulate settings, population column."""
    out = json.loads(json.dumps(cohort))
    n = int(cell["n"])
    if cell["demography"] == "AmericanAdmixture_4B18":
        sources = list(cell.get("sources", ()))
        per_source = int(round(n * float(cell.get("source_share", 0.0)) / max(len(sources), 1)))
        populations = {"ADMIX": n - per_source * len(sources), **{s: per_source for s in sources}}
    else:
        size, extra = divmod(n, 3)
        populations = {p: size + (k < extra) for k, p in enumerate(("YRI", "CEU", "CHB"))}
    sim = out.setdefault("simulate", {})
    sim.update({"demography": cell["demography"], "labels": cell["labels"],
                "case_fraction": float(cell["case_fraction"])})
    sim["causal"] = {**sim.get("causal", {}), "odds_ratio": float(cell["odds_ratio"]),
                     "frequency": cell["frequency"], "confounding": cell["confounding"],
                     "target_freqs": DIFFERENTIATED_TARGETS}
    # the ancestry-only phenotype is never absent: at confounding "none" it stays mild; the cell's strength sets
    # it in either demography (a user's prevalence or ancestry odds ratio would override the cell's axis, and
    # each belongs to one demography's model: the simulation refuses it in the other's cells)
    sim["confounded"] = {**sim.get("confounded", {}),
                         "strength": cell["confounding"] if cell["confounding"] != "none" else "mild",
                         "prevalence": None, "ancestry_odds_ratio": None}
    out.update({"populations": populations, "phenotypes": ["causal", "confounded", "null"],
                "population_column": "population" if cell["labels"] == "given" else None})
    return out


# ---------------------------------------------------------------- statistics


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion k/n; (nan, nan) when n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    a = 1 - level
    low = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return low, high


def rate(k: int, n: int, level: float = 0.95) -> dict:
    """{rate, ci_low, ci_high, count, n} of k successes in n trials (Clopper-Pearson interval)."""
    low, high = clopper_pearson(int(k), int(n), level)
    return {"rate": (k / n) if n else float("nan"), "ci_low": low, "ci_high": high, "count": int(k), "n": int(n)}


# ---------------------------------------------------------------- one replicate


def _families(bio: pl.DataFrame) -> pl.DataFrame:
    if "family" in bio.columns:
        return bio.with_columns(pl.col("family").cast(pl.String).alias("_family"))
    return bio.with_columns(pl.concat_str([pl.col("kind"), pl.col("model").fill_null(""),
                                           pl.col("layer").fill_null("")], separator="/").alias("_family"))


def summarise_replicate(audit: pl.DataFrame, bio: pl.DataFrame | None, truth: dict, alpha: float = 0.05,
                        near_bp: int = 500) -> dict:
    """Counts of one replicate: verdicts per truth, power hits, null p-value exceedances, discoveries.

    audit: rows (phenotype, model, layer, verdict); bio: rank's biomarkers (phenotype, feature, kind, p,
    q, contig, start, end [, family]), or None when rank was not run (`calibration.rank_replicates`: the
    rank keys are then None and "ranked" False); truth: the simulation's truth.json.
    """
    verdicts = {}
    for phenotype in TRUTHS:
        rows = audit.filter(pl.col("phenotype") == phenotype)
        verdicts[phenotype] = [{"model": r["model"], "layer": r["layer"], "verdict": str(r["verdict"])}
                               for r in rows.iter_rows(named=True)]
    realised = truth.get("phenotypes", {}).get("realised_case_fraction", {})
    truth_summary = {"causal_freq": truth["causal_variant"].get("freq"),
                     "case_fraction": {k: v.get("all") for k, v in realised.items()},
                     "ancestry_sd": truth.get("ancestry", {}).get("sd"), "n_samples": truth.get("n_samples"),
                     "n_variants": truth.get("n_variants")}
    if bio is None:
        return {"verdicts": verdicts, "ranked": False, "variant": None, "feature": None, "discoveries": None,
                "type1": None, "null_discoveries": None, "truth": truth_summary}
    bio = _families(bio)
    causal = truth["causal_variant"]
    variant_id = causal.get("id") or f"{causal['contig']}:{causal['pos']}:{causal['ref']}:{causal['alt']}"
    pos0 = int(causal["pos"]) - 1
    c = bio.filter(pl.col("phenotype") == "causal")
    v = c.filter((pl.col("kind") == "variant") & (pl.col("feature") == variant_id))
    variant = {"id": variant_id, "tested": v.height > 0,
               "p": float(v["p"][0]) if v.height else None, "q": float(v["q"][0]) if v.height else None}
    variant["hit"] = bool(v.height and np.isfinite(variant["q"]) and variant["q"] < alpha)
    in_window = c.filter((pl.col("kind") != "variant") & (pl.col("contig") == causal["contig"])
                         & (pl.col("start") <= pos0) & (pl.col("end") > pos0) & pl.col("p").is_not_nan())
    feature = {"tested": in_window.height > 0}
    if in_window.height:
        top = in_window.sort("p").row(0, named=True)
        feature.update({"feature": top["feature"], "family": top["_family"], "p": float(top["p"]),
                        "q": float(top["q"]), "hit": bool(top["q"] < alpha)})
    else:
        feature["hit"] = False
    # discoveries of the causal phenotype and how far each lies from the causal variant
    found = c.filter(pl.col("q") < alpha)
    distance = np.maximum(0, np.maximum(found["start"].to_numpy() - pos0, pos0 - (found["end"].to_numpy() - 1)))
    far = (found["contig"].to_numpy().astype(str) != causal["contig"]) | (distance > near_bp)
    discoveries = {"n": int(found.height), "false": int(far.sum()),
                   "fdp": float(far.sum() / max(found.height, 1)),
                   # sorted: polars' group_by order changes from call to call, and summaries are also written
                   # as JSON with keys in insertion order (the archive, a re-audited replicate)
                   "by_family": {f: int(k) for f, k in found.group_by("_family").len().sort("_family").iter_rows()}}
    null = bio.filter(pl.col("phenotype") == "null")
    type1 = {}
    for family, p in [("all", null["p"].to_numpy())] + [
            (f, g["p"].to_numpy()) for (f,), g in null.group_by(["_family"], maintain_order=True)]:
        p = p[np.isfinite(p)]
        type1[family] = {"n_tests": int(p.size), **{f"{t:g}": int((p < t).sum()) for t in TYPE1_LEVELS}}
    null_found = int(null.filter(pl.col("q") < alpha).height)
    return {"verdicts": verdicts, "ranked": True, "variant": variant, "feature": feature,
            "discoveries": discoveries, "type1": type1, "null_discoveries": null_found, "truth": truth_summary}


def run_replicate(cell: dict, replicate: int, seed: int, config: dict, shared: dict, workdir: Path,
                  threads: int = 1, keep: bool = False, archive: Path | None = None) -> dict:
    """Simulate one cohort of `cell` and run the real cohort stages on it; returns the replicate summary.

    config: the run's checked config (reference, cohort, audit, rank, embed, sae keys); shared: paths
    {fasta, annotation, card, checkpoint, sae} of the LM and SAE trained once per suite; workdir:
    scratch folder (removed afterwards unless `keep`). archive: a folder that keeps what `reaudit_replicate`
    needs (sample embeddings, genotype PCs, truth, rank table; about 1 MB), so a changed audit can be
    measured again on the same cohorts without simulating and embedding them again.
    """
    from interp import stages

    t0, cpu0 = time.perf_counter(), time.process_time()
    code = code_version()  # before the work: what this process loaded, not what is checked out when it ends
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    cohort = cell_cohort(cell, config["cohort"])
    ref = {"fasta": str(shared["fasta"]), "annotation": str(shared["annotation"])}
    params = {"reference": config["reference"], "cohort": cohort, "n_folds": config["audit"]["n_folds"],
              "seed": seed}
    w = {name: str(workdir / name) for name in (
        "in.vcf.gz", "in.vcf.gz.tbi", "samples.tsv", "truth.json", "panel.vcf.gz", "panel.vcf.gz.tbi",
        "validation.json", "cohort.vcf.gz", "cohort.vcf.gz.tbi", "hap.parquet", "seq.parquet", "hap.json",
        "geno.h5ad", "emb", "emb.json", "audit.parquet", "audit.tsv", "audit.json", "bio.parquet", "bio.tsv",
        "rank.json")}
    panel = cohort["simulate"]["ancestry_panel"]["loci"] > 0
    seconds = {}

    def run(stage: str, inputs: dict, outputs: dict, stage_params: dict) -> None:
        s = time.perf_counter()
        getattr(stages, stage)(stages.Job(input=inputs, output=outputs, params=stage_params, threads=threads))
        seconds[stage] = round(time.perf_counter() - s, 2)

    sim_out = {"vcf": w["in.vcf.gz"], "tbi": w["in.vcf.gz.tbi"], "samples": w["samples.tsv"],
               "truth": w["truth.json"]}
    if panel:
        sim_out.update({"panel": w["panel.vcf.gz"], "panel_tbi": w["panel.vcf.gz.tbi"]})
    run("simulate_cohort", ref, sim_out, params)
    io = {**ref, "vcf": w["in.vcf.gz"], "samples": w["samples.tsv"], **({"panel": w["panel.vcf.gz"]} if panel else {})}
    run("place_cohort", io, {"vcf": w["cohort.vcf.gz"], "tbi": w["cohort.vcf.gz.tbi"]}, params)
    io = {**io, "vcf": w["cohort.vcf.gz"]}
    run("check_cohort", io, {"summary": w["validation.json"]}, {**params, "user_vcf": w["in.vcf.gz"]})
    run("haplotypes", io, {"assignments": w["hap.parquet"], "sequences": w["seq.parquet"], "stats": w["hap.json"]},
        params)
    run("ancestry", io, {"genotypes": w["geno.h5ad"]}, {**params, "umap_and_clusters": False})
    model = shared["model"]
    emb = str(Path(w["emb"]) / model)
    run("embed_cohort", {"card": str(shared["card"]), "checkpoint": str(shared["checkpoint"]),
                         "sequences": w["seq.parquet"], "assignments": w["hap.parquet"], "genotypes": w["geno.h5ad"],
                         "sae": str(shared["sae"])},
        {"out_dir": emb, "stats": w["emb.json"]},
        # no embedding cache: a replicate's haplotype windows are its own (a key left out would be the schema's)
        {"layers": shared["layers"], "sae_layer": config["sae"]["layer"], "batch_size": config["embed"]["batch_size"],
         "device": config["embed"]["device"], "cache": None, "keep_haplotypes": False})
    # audit and rank get the params their rules pass (workflow/rules/audit.smk, rank.smk): keep in step
    common = {"phenotypes": cohort["phenotypes"], "covariates": cohort["covariates"],
              "covariate_missing": cohort.get("covariate_missing", "refuse"), "seed": seed}
    run("audit", {"emb_dirs": [emb], "genotypes": w["geno.h5ad"], "assignments": w["hap.parquet"]},
        {"parquet": w["audit.parquet"], "tsv": w["audit.tsv"], "details": w["audit.json"]},
        {"audit": config["audit"], **common, "population_column": cohort["population_column"],
         "sae_layer": config["sae"]["layer"]})
    cal = config.get("calibration", {})
    ranked = cal.get("rank_replicates") is None or replicate < int(cal["rank_replicates"])
    if ranked:
        run("rank", {"emb_dirs": [emb], "genotypes": w["geno.h5ad"], **ref},
            {"parquet": w["bio.parquet"], "tsv": w["bio.tsv"], "summary": w["rank.json"]},
            {"rank": config["rank"], **common, "reference": config["reference"]})
    truth = json.loads(Path(w["truth.json"]).read_text())
    redraws = int(cal.get("null_redraws", NULL_REDRAWS)) if ranked else 0
    type1_redraw = null_redraw_type1(w["geno.h5ad"], [emb], common["covariates"], common["covariate_missing"],
                                     config["rank"], redraws, seed) if redraws else None
    summary = summarise_replicate(pl.read_parquet(w["audit.parquet"]),
                                  pl.read_parquet(w["bio.parquet"]) if ranked else None, truth,
                                  alpha=float(cal.get("alpha", 0.05)), near_bp=int(cal.get("near_bp", 500)))
    hap = json.loads(Path(w["hap.json"]).read_text())
    if type1_redraw is not None:
        summary["type1_redraw"] = type1_redraw
    summary.update({"cell": cell["cell"], "axis": cell["axis"], "value": cell["value"], "replicate": int(replicate),
                    "seed": int(seed),
                    "settings": {k: cell[k] for k in BASE} | {k: cell[k] for k in ("source_share", "sources") if k in cell},
                    "n_distinct_windows": hap["n_distinct"], "dedup_ratio": hap["dedup_ratio"],
                    "stage_seconds": seconds, "seconds": round(time.perf_counter() - t0, 2),
                    # CPU time of this process: the wall time on one dedicated core (the work is single-threaded)
                    "cpu_seconds": round(time.process_time() - cpu0, 2), "code": code})
    if archive is not None:
        _archive(workdir, Path(emb), Path(archive), summary)
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


def null_redraw_type1(genotypes: str | Path, emb_dirs: list[str | Path], covariates: list[str],
                      covariate_missing: str, rank: dict, draws: int, seed: int) -> dict:
    """Exceedance counts of rank's tests of `draws` fresh null phenotypes on one replicate's real features.

    One null phenotype per replicate makes the pooled type-I error lumpy: features in LD share one test
    statistic, so a replicate's null either crosses a level with hundreds of features or with none, and 20
    replicates pin the rate only to about +-1e-2 at 1e-2. Each draw here is y* ~ Bernoulli(c) (c: the case
    fraction of the replicate's `null` phenotype), tested like rank does (`interp.rank.columns_to_test`, the
    PCs + covariate design of `interp.rank_inputs.rank_cohort`, the score test with SPA) against the
    variants and every `*.windows.h5ad` family of emb_dirs. Returns {"draws", family name / "all":
    {n_tests, "0.01", "0.001", "0.0001"}} with n_tests and counts summed over draws.
    """
    from interp.cohort.genotype_file import read_genotypes
    from interp.config import settings_from_section
    from interp.rank import (
        RankConfig,
        association,
        carrier_counts,
        columns_to_test,
        mean_impute,
        null_model,
    )
    from interp.rank_inputs import rank_design, variant_family, window_families
    from interp.stages import RANK_NOT_FIT

    cfg = settings_from_section(RankConfig, rank, ignore=RANK_NOT_FIT, source="rank", seed=seed)
    geno = read_genotypes(genotypes)
    cov, _ = rank_design(geno, covariates, covariate_missing)
    raw = np.asarray(variant_family(geno).matrix, dtype=np.float64)
    dosage = mean_impute(raw)
    matrices = {"variant": columns_to_test(dosage, cfg.min_carriers, carrier_counts(raw), standardise=False)}
    for fam in window_families(emb_dirs, geno.obs_names):
        x = fam.columns().read(slice(None))  # calibration cohorts are small: the whole family at once
        matrices[fam.name] = columns_to_test(x, cfg.min_carriers, carrier_counts(x))
    matrices = {name: xs[:, filtered == ""] for name, (xs, filtered) in matrices.items()}
    y_null = geno.obs["null"].to_numpy(dtype=np.float64)
    case_fraction = float(np.nanmean(y_null))
    rng = np.random.default_rng([int(seed), 0x7E1])
    counts = {name: {"n_tests": 0, **{f"{t:g}": 0 for t in TYPE1_LEVELS}} for name in [*matrices, "all"]}
    for _ in range(int(draws)):
        y = (rng.random(y_null.size) < case_fraction).astype(np.float64)
        if y.min() == y.max():
            continue
        null = null_model(y, cov, binary=True)
        for name, xs in matrices.items():
            p = association(xs, null, cfg.spa_cutoff)["p"].to_numpy()
            p = p[np.isfinite(p)]
            for key in (name, "all"):
                counts[key]["n_tests"] += int(p.size)
                for t in TYPE1_LEVELS:
                    counts[key][f"{t:g}"] += int((p < t).sum())
    return {"draws": int(draws), **counts}


_ARCHIVED = ("truth.json", "bio.parquet", "geno.h5ad")


def _archive(workdir: Path, emb: Path, archive: Path, summary: dict) -> None:
    from interp.io import write_text_atomic

    archive.mkdir(parents=True, exist_ok=True)
    for name in _ARCHIVED:
        if (workdir / name).exists():  # bio.parquet only where rank ran
            shutil.copy2(workdir / name, archive / name)
    for path in emb.glob("*.samples.h5ad"):
        shutil.copy2(path, archive / path.name)
    # written last and atomically: its presence marks a complete archive (oracle_rows, --reaudit)
    write_text_atomic(archive / "summary.json", json.dumps(_strict(summary), indent=1))


def reaudit_replicate(archive: Path, config: dict, population_column: str | None) -> dict:
    """The replicate summary of an archived replicate (`run_replicate(archive=...)`) with the audit run
    again by the current code: the cohort, embeddings and rank table are the archived ones."""
    from interp import stages

    archive = Path(archive)
    before = json.loads((archive / "summary.json").read_text())
    cell = select_cells([before["cell"]])[0]
    cohort = cell_cohort(cell, config["cohort"])
    work = archive / "reaudit"
    work.mkdir(exist_ok=True)
    emb = work / "emb"
    emb.mkdir(exist_ok=True)
    for path in archive.glob("*.samples.h5ad"):
        target = emb / path.name
        if not target.exists():
            target.symlink_to(path.resolve())
    out = {k: str(work / k) for k in ("audit.parquet", "audit.tsv", "audit.json")}
    common = {"phenotypes": cohort["phenotypes"], "covariates": cohort["covariates"],
              "covariate_missing": cohort.get("covariate_missing", "refuse"), "seed": before["seed"]}
    t0 = time.perf_counter()
    stages.audit(stages.Job(input={"emb_dirs": [str(emb)], "genotypes": str(archive / "geno.h5ad")},
                            output={"parquet": out["audit.parquet"], "tsv": out["audit.tsv"],
                                    "details": out["audit.json"]},
                            params={"audit": config["audit"], **common, "population_column": cohort["population_column"],
                                    "sae_layer": config["sae"]["layer"]}))
    truth = json.loads((archive / "truth.json").read_text())
    cal = config.get("calibration", {})
    bio = archive / "bio.parquet"
    summary = summarise_replicate(pl.read_parquet(out["audit.parquet"]), pl.read_parquet(bio) if bio.exists() else None,
                                  truth, alpha=float(cal.get("alpha", 0.05)), near_bp=int(cal.get("near_bp", 500)))
    seconds = dict(before["stage_seconds"], audit=round(time.perf_counter() - t0, 2))
    # the verdicts are this code's: its commit, not the original run's
    return {**before, **summary, "stage_seconds": seconds, "reaudited": True, "code": code_version()}


# ---------------------------------------------------------------- oracle


#: bands of the oracle's p in which `oracle_rows` counts the audit's PASSes: (label, low, high), low <= p < high
ORACLE_P_BANDS = (("<1e-6", 0.0, 1e-6), ("1e-6..1e-4", 1e-6, 1e-4), ("1e-4..1e-2", 1e-4, 1e-2), (">=1e-2", 1e-2, 2.0))


def _causal_dosage(geno: Any, truth: dict) -> np.ndarray | None:
    """The planted causal variant's dosage [n] (NaN missing) in geno's sample order, as rank tests it; None when the
    variant is not among geno's variants."""
    from interp.rank_inputs import variant_family

    vid = truth["causal_variant"]["id"]
    variants = variant_family(geno)  # the dosage rank tests (layers["dosage"], else X; NaN missing)
    if vid not in variants.features:
        return None
    return variants.matrix[:, variants.features.index(vid)].astype(np.float64)


def _adjusted_lr_p(obs: Any, pcs: np.ndarray, sample_ids: list[str], score: np.ndarray, cohort: dict,
                   ancestry_bins: int, seed: int) -> float:
    """Likelihood-ratio p of `score` [n] in logistic causal ~ ancestry + covariates + score, the nuisance the
    audit's (`interp.audit.ancestry_strata` from the population labels, or PC bins without them; the PCs;
    `interp.covariates.covariate_design`); samples with no causal phenotype or no score left out."""
    from interp.audit import ancestry_strata, lr_test, nuisance_design
    from interp.covariates import covariate_design

    y = obs["causal"].to_numpy(dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(score)
    column = cohort.get("population_column")
    population = (obs[column].astype(str).to_numpy() if column and column in obs else np.array(["all"] * y.size))
    covs = list(cohort.get("covariates") or [])
    design = covariate_design({c: obs[c].to_numpy()[keep] for c in covs if c in obs}, covs,
                              missing=cohort.get("covariate_missing", "refuse"),
                              sample_ids=[s for s, k in zip(sample_ids, keep, strict=True) if k],
                              categorical=cohort.get("categorical_covariates") or [])
    strata, _ = ancestry_strata(population[keep], pcs[keep], ancestry_bins, seed)
    nuis = nuisance_design(strata, pcs[keep], design.matrix)
    reduced = np.hstack([nuis["ancestry"], nuis["covariates"]])
    p, _ = lr_test(y[keep], reduced, score[keep, None] - score[keep].mean())
    return p


def oracle_causal_p(geno: Any, truth: dict, cohort: dict, ancestry_bins: int = 4, seed: int = 0) -> float:
    """Likelihood-ratio p of the planted causal variant's dosage in logistic causal ~ ancestry + covariates
    + dosage: the test of an analyst who knew the variant, adjusted as the audit adjusts.

    This is the ceiling of the audit's within-ancestry test, which must find the variant's direction in the
    embeddings among everything else they carry. The nuisance is the audit's (`_adjusted_lr_p`).
    geno: the ancestry stage's AnnData (layers["dosage"] [n, variants] of the region's variants, obs with the
    phenotypes and covariates, obsm["X_pca"]); truth: the simulation's truth.json (`causal_variant.id`);
    cohort: the cell's cohort config (`cell_cohort`: population_column, covariates, covariate_missing).
    Samples with no causal phenotype are left out. NaN when the variant is not among geno's variants.
    """
    dosage = _causal_dosage(geno, truth)
    if dosage is None:
        return float("nan")
    return _adjusted_lr_p(geno.obs, np.asarray(geno.obsm["X_pca"], dtype=np.float64), geno.obs_names.tolist(),
                          dosage, cohort, ancestry_bins, seed)


def oracle_embedding(table: Any, geno: Any, truth: dict, cohort: dict, ancestry_bins: int = 4,
                     seed: int = 0) -> dict[str, float]:
    """The oracle told the variant but reading only the embedding: {p, r2}.

    The causal dosage's leave-one-out ridge prediction from the sample embeddings (`interp.audit.RidgeProbe`, the
    audit's probe, fitted to the dosage, never to the phenotype, so under no effect it is independent of y given
    ancestry), tested as `oracle_causal_p` tests the dosage; r2: the squared correlation of the dosage and its
    prediction (how much of the variant the embedding holds, learned from the other samples). It separates the
    audit's two costs: an embedding that holds little of the variant (low r2, this oracle weak too) and the search
    for the variant's direction without being told it (this oracle strong, the audit weaker). table: the layer's
    `<layer>.samples.h5ad` (X [n, d], obs_names those of geno); NaN for both when the variant is not in geno.
    """
    from interp.audit import RidgeProbe

    dosage = _causal_dosage(geno, truth)
    if dosage is None:
        return {"p": float("nan"), "r2": float("nan")}
    where = geno.obs_names.get_indexer(table.obs_names)
    if (where < 0).any():
        raise ValueError(f"{int((where < 0).sum())} sample(s) of the embedding table are not in the genotypes")
    dosage = dosage[where]
    known = np.isfinite(dosage)
    X = np.asarray(table.X, dtype=np.float64)[known]
    predicted = np.full(dosage.size, np.nan)
    predicted[known] = RidgeProbe.from_embeddings(X).loo_scores(dosage[known][None])[0][0]
    r = np.corrcoef(dosage[known], predicted[known])[0, 1] if known.sum() > 2 else np.nan
    p = _adjusted_lr_p(table.obs, np.asarray(table.obsm["X_pca"], dtype=np.float64), table.obs_names.tolist(),
                       predicted, cohort, ancestry_bins, seed)
    return {"p": float(p), "r2": float(r**2) if np.isfinite(r) else float("nan")}


def oracle_rows(archive: Path, config: dict, cells: list[str] | None = None, alpha: float = 0.05) -> list[dict]:
    """Per cell of an archive (`run_replicate(archive=...)`: <cell>/<replicate>/{summary,truth}.json,
    geno.h5ad): the audit's causal PASS rate beside the oracle's power (`oracle_causal_p`).

    The oracle is significant at alpha / m, m the replicate's number of verdicts (phenotypes x layers: the
    strictest level of the audit's Holm family; the audit's causal verdict often meets a looser one, so the
    comparison favours the audit). Rows {cell, n_replicates, replicates (first, last), oracle_level,
    oracle_significant, audit_pass (each `rate`), audit_pass_when_oracle_significant, audit_pass_when_not,
    oracle_log10_p_median, audit_pass_by_oracle_p: {"<1e-6", "1e-6..1e-4", "1e-4..1e-2", ">=1e-2"}: [PASS, n],
    embedding_oracle_n, embedding_oracle_significant, audit_pass_when_embedding_oracle_significant (rates, None
    without archived `<layer>.samples.h5ad`), embedding_oracle_r2_median, embedding_oracle_log10_p_median}: the
    same test of the variant as read from the layer's embedding (`oracle_embedding`), at the same level.
    A named cell that is unknown or has no folder in the archive raises ValueError.
    """
    import anndata as ad

    from interp.cohort.genotype_file import read_genotypes

    archive = Path(archive)
    names = cells if cells is not None else sorted(p.name for p in archive.iterdir() if p.is_dir())
    select_cells(names)  # unknown names raise, listing the known cells
    absent = [name for name in names if not (archive / name).is_dir()]
    if absent:
        raise ValueError(f"{archive}: no archived replicates of cell(s) {absent}")
    rows = []
    for name in names:
        cell = select_cells([name])[0]
        cohort = cell_cohort(cell, config["cohort"])
        ps, passed, levels, reps, emb_ps, emb_r2, has_table = [], [], [], [], [], [], []
        bins = int(config["audit"].get("ancestry_bins", 4))
        for folder in sorted((archive / name).iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1):
            if not (folder / "summary.json").exists() or not (folder / "geno.h5ad").exists():
                continue
            summary = json.loads((folder / "summary.json").read_text())
            truth = json.loads((folder / "truth.json").read_text())
            geno = read_genotypes(folder / "geno.h5ad")
            p = oracle_causal_p(geno, truth, cohort, bins, int(summary["seed"]))
            m = sum(len(v) for v in summary["verdicts"].values())
            by_layer: dict[str, dict] = {}
            for v in summary["verdicts"]["causal"]:
                ps.append(p)
                passed.append(v["verdict"] == "PASS")
                levels.append(alpha / max(m, 1))
                reps.append(int(summary["replicate"]))
                table = folder / f"{v.get('layer')}.samples.h5ad"
                if v.get("layer") not in by_layer:
                    by_layer[v.get("layer")] = (oracle_embedding(ad.read_h5ad(table), geno, truth, cohort, bins,
                                                                 int(summary["seed"])) if table.exists()
                                                else {"p": float("nan"), "r2": float("nan")})
                emb_ps.append(by_layer[v.get("layer")]["p"])
                emb_r2.append(by_layer[v.get("layer")]["r2"])
                has_table.append(table.exists())
        if not ps:
            continue
        p_arr, pass_arr, e_arr = np.asarray(ps), np.asarray(passed), np.asarray(emb_ps)
        sig = np.isfinite(p_arr) & (p_arr <= np.asarray(levels))
        e_sig = np.isfinite(e_arr) & (e_arr <= np.asarray(levels))
        # over the verdicts whose table is archived; a NaN p there (the variant not in geno) counts as not
        # significant, as the genotype oracle counts it, so the two rates share their verdicts
        has_emb = np.asarray(has_table, dtype=bool)
        r2_arr = np.asarray(emb_r2)[has_emb]
        log_p = np.log10(np.clip(e_arr[has_emb & np.isfinite(e_arr)], 1e-300, 1.0))
        rows.append({
            "cell": name, "n_replicates": len(set(reps)), "replicates": [min(reps), max(reps)],
            "oracle_level": float(min(levels)), "oracle_significant": rate(int(sig.sum()), sig.size),
            "audit_pass": rate(int(pass_arr.sum()), pass_arr.size),
            "audit_pass_when_oracle_significant": rate(int((pass_arr & sig).sum()), int(sig.sum())),
            "audit_pass_when_not": rate(int((pass_arr & ~sig).sum()), int((~sig).sum())),
            "oracle_log10_p_median": float(np.nanmedian(np.log10(np.clip(p_arr, 1e-300, 1.0)))),
            "audit_pass_by_oracle_p": {label: [int((pass_arr & (p_arr >= lo) & (p_arr < hi)).sum()),
                                               int(((p_arr >= lo) & (p_arr < hi)).sum())]
                                       for label, lo, hi in ORACLE_P_BANDS},
            # the variant read from the embedding (`oracle_embedding`), over the verdicts whose table is archived
            "embedding_oracle_n": int(has_emb.sum()),
            "embedding_oracle_significant": rate(int(e_sig.sum()), int(has_emb.sum())) if has_emb.any() else None,
            "audit_pass_when_embedding_oracle_significant": (rate(int((pass_arr & e_sig).sum()), int(e_sig.sum()))
                                                             if e_sig.any() else None),
            "embedding_oracle_r2_median": (float(np.median(r2_arr[np.isfinite(r2_arr)]))
                                           if np.isfinite(r2_arr).any() else None),
            "embedding_oracle_log10_p_median": float(np.median(log_p)) if log_p.size else None,
        })
    return rows


def oracle_markdown(rows: list[dict]) -> str:
    """The `oracle_rows` table as markdown: rate [95% Clopper-Pearson interval] (count/n)."""
    lines = ["| cell | replicates | audit PASS | oracle significant | audit PASS where the oracle is | audit PASS "
             "by oracle p: <1e-6 / 1e-6..1e-4 / 1e-4..1e-2 / >=1e-2 | embedding oracle significant | audit PASS "
             "where it is | embedding r2 (median) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        counts = r["audit_pass_by_oracle_p"]  # in band order, also when read back from sorted JSON
        bands = " / ".join("{}/{}".format(*counts[label]) for label, _, _ in ORACLE_P_BANDS)
        r2 = r.get("embedding_oracle_r2_median")  # absent in rows written before the embedding oracle
        lines.append(f"| {r['cell']} | {r['n_replicates']} ({r['replicates'][0]}-{r['replicates'][1]}) | "
                     f"{_fmt_rate(r['audit_pass'])} | {_fmt_rate(r['oracle_significant'])} | "
                     f"{_fmt_rate(r['audit_pass_when_oracle_significant'])} | {bands} | "
                     f"{_fmt_rate(r.get('embedding_oracle_significant'))} | "
                     f"{_fmt_rate(r.get('audit_pass_when_embedding_oracle_significant'))} | "
                     f"{'–' if r2 is None else f'{r2:.3f}'} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- pooling


@functools.cache
def code_version() -> dict:
    """{git_commit, git_dirty} of the checkout running the replicate (None outside git): a cell's summaries
    may come from several runs, and the table says which code made each (`code_versions`). Asked once per
    process: a long-lived worker (workflow/scripts/calibration_local.py) keeps running the modules it imported
    after a commit or an edit of the checkout, so a later answer would name code it does not run."""
    from interp.report.provenance import git_commit, git_dirty

    repo = Path(__file__).resolve().parents[1]
    return {"git_commit": git_commit(repo), "git_dirty": git_dirty(repo)}


def code_versions(replicates: list[dict]) -> dict[str, int]:
    """{commit (12 hex digits, "+dirty" for uncommitted changes), or "unrecorded": number of replicates}; a
    summary written before the `code` key existed, or outside git, counts as "unrecorded"."""
    out: dict[str, int] = {}
    for rep in replicates:
        code = rep.get("code") or {}
        key = (code["git_commit"][:12] + ("+dirty" if code.get("git_dirty") else "")) if code.get("git_commit") \
            else "unrecorded"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def calibration_table(replicates: list[dict]) -> list[dict]:
    """Rows {cell, axis, value, truth, n_replicates, replicates, verdict_rates, power_variant, power_feature,
    type1, fdr, ...} pooled over replicate summaries; grid order of cells, truths causal / ancestry-only / null.

    replicates: [first, last] replicate index of the cell (a failed replicate leaves a gap, so last + 1 can
    exceed n_replicates). A replicate index given twice in one cell raises ValueError.
    """
    by_cell: dict[str, list[dict]] = {}
    for rep in replicates:
        by_cell.setdefault(rep["cell"], []).append(rep)
    for cell, reps in by_cell.items():
        indices = [int(r["replicate"]) for r in reps]
        if len(set(indices)) < len(indices):
            twice = sorted({i for i in indices if indices.count(i) > 1})
            raise ValueError(f"calibration cell {cell}: replicate(s) {twice} given more than once; pooling would "
                             "count them twice")
    order = {c["cell"]: k for k, c in enumerate(grid_cells())}
    rows = []
    for cell in sorted(by_cell, key=lambda c: (order.get(c, len(order)), c)):
        reps = sorted(by_cell[cell], key=lambda r: r["replicate"])
        first = reps[0]
        ranked = [r for r in reps if r.get("variant") is not None]  # rank ran (calibration.rank_replicates)
        for phenotype, truth in TRUTHS.items():
            verdicts = [v["verdict"] for r in reps for v in r["verdicts"].get(phenotype, [])]
            names = sorted(set(verdicts))
            row: dict[str, Any] = {
                "cell": cell, "axis": first["axis"], "value": first["value"], "truth": truth,
                "n_replicates": len(reps), "replicates": [int(reps[0]["replicate"]), int(reps[-1]["replicate"])],
                "n_verdicts": len(verdicts),
                "verdict_rates": {name: rate(verdicts.count(name), len(verdicts)) for name in names},
                "power_variant": None, "power_feature": None, "type1": None, "fdr": None,
                "median_seconds": float(np.median([r["seconds"] for r in reps])),
                "median_cpu_seconds": (float(np.median([r["cpu_seconds"] for r in reps]))
                                       if all("cpu_seconds" in r for r in reps) else None),
                "code_versions": code_versions(reps),
            }
            row["n_ranked_replicates"] = len(ranked)
            if phenotype == "causal" and ranked:
                row["power_variant"] = rate(sum(r["variant"]["hit"] for r in ranked), len(ranked))
                row["power_feature"] = rate(sum(r["feature"]["hit"] for r in ranked), len(ranked))
                fdp = np.array([r["discoveries"]["fdp"] for r in ranked])
                row["fdr"] = {"fdr": float(fdp.mean()),
                              "se": float(fdp.std(ddof=1) / np.sqrt(len(fdp))) if len(fdp) > 1 else float("nan"),
                              "mean_discoveries": float(np.mean([r["discoveries"]["n"] for r in ranked])),
                              "mean_false": float(np.mean([r["discoveries"]["false"] for r in ranked]))}
            if phenotype == "null" and ranked:
                row["type1"] = {}
                for level in TYPE1_LEVELS:
                    key = f"{level:g}"
                    counts = np.array([r["type1"]["all"][key] for r in ranked])
                    totals = np.array([r["type1"]["all"]["n_tests"] for r in ranked])
                    row["type1"][key] = {**rate(int(counts.sum()), int(totals.sum())),
                                         "cluster_se": cluster_se(counts, totals)}
                row["null_any_discovery"] = rate(sum(r["null_discoveries"] > 0 for r in ranked), len(ranked))
                redrawn = [r["type1_redraw"] for r in ranked if r.get("type1_redraw")]
                if redrawn:
                    row["type1_redraw"] = {"n_replicates": len(redrawn),
                                           "draws_per_replicate": int(np.median([r["draws"] for r in redrawn]))}
                    for level in TYPE1_LEVELS:
                        key = f"{level:g}"
                        counts = np.array([r["all"][key] for r in redrawn])
                        totals = np.array([r["all"]["n_tests"] for r in redrawn])
                        row["type1_redraw"][key] = {**rate(int(counts.sum()), int(totals.sum())),
                                                    "cluster_se": cluster_se(counts, totals)}
            rows.append(row)
    return rows


def _fmt_rate(r: dict | None) -> str:
    if not r or not r.get("n"):
        return ""
    return f"{r['rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] ({r['count']}/{r['n']})"


def table_frame(rows: list[dict]) -> pl.DataFrame:
    """Flat table for calibration.tsv: one column per verdict string (rate [95% CI] (count/n))."""
    verdict_names = sorted({v for r in rows for v in r["verdict_rates"]})
    flat = []
    for r in rows:
        out = {k: r[k] for k in ("cell", "axis", "value", "truth", "n_replicates", "n_verdicts")}
        out["n_ranked_replicates"] = r.get("n_ranked_replicates", r["n_replicates"])
        for name in verdict_names:
            out[name] = _fmt_rate(r["verdict_rates"].get(name, rate(0, r["n_verdicts"])))
        out["power_variant"] = _fmt_rate(r["power_variant"])
        out["power_feature"] = _fmt_rate(r["power_feature"])
        for level in TYPE1_LEVELS:
            t = (r["type1"] or {}).get(f"{level:g}")
            out[f"type1_{level:g}"] = "" if t is None else (
                f"{t['rate']:.2e} [{t['ci_low']:.2e}, {t['ci_high']:.2e}] (cluster SE {t['cluster_se']:.1e})")
        for level in TYPE1_LEVELS:
            t = (r.get("type1_redraw") or {}).get(f"{level:g}")
            out[f"type1_redraw_{level:g}"] = "" if t is None else (
                f"{t['rate']:.2e} [{t['ci_low']:.2e}, {t['ci_high']:.2e}] (cluster SE {t['cluster_se']:.1e})")
        out["fdr"] = "" if r["fdr"] is None else f"{r['fdr']['fdr']:.2f} (SE {r['fdr']['se']:.2f}; " \
            f"{r['fdr']['mean_discoveries']:.0f} discoveries/replicate)"
        out["median_seconds"] = round(r["median_seconds"], 1)
        versions = r.get("code_versions") or {"unrecorded": r["n_replicates"]}
        out["code_versions"] = "; ".join(f"{k} ({n})" for k, n in versions.items())
        flat.append(out)
    return pl.DataFrame(flat)


def write_plots(rows: list[dict], out_dir: Path) -> list[Path]:
    """verdicts.png (verdict rates with 95% CIs per cell, one panel per truth), power.png, type1.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    verdict_names = sorted({v for r in rows for v in r["verdict_rates"]})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    for ax, truth in zip(axes, TRUTHS.values(), strict=True):
        sub = [r for r in rows if r["truth"] == truth]
        x = np.arange(len(sub))
        width = 0.8 / max(len(verdict_names), 1)
        for k, name in enumerate(verdict_names):
            vals = [r["verdict_rates"].get(name) for r in sub]
            y = np.array([v["rate"] if v else 0.0 for v in vals])
            low = np.array([v["ci_low"] if v else 0.0 for v in vals])
            high = np.array([v["ci_high"] if v else 0.0 for v in vals])
            ax.bar(x + k * width, y, width, label=name, yerr=[y - low, high - y], capsize=2)
        ax.set_xticks(x + 0.4 - width / 2, [r["cell"] for r in sub], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{truth} phenotype")
        ax.axhline(0.05, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("share of verdicts (95% Clopper-Pearson CI)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "verdicts.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    causal = [r for r in rows if r["truth"] == "causal" and r["power_variant"]]  # cells that ran rank
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(causal))
    for k, key in enumerate(("power_variant", "power_feature")):
        y = np.array([r[key]["rate"] for r in causal])
        err = [y - np.array([r[key]["ci_low"] for r in causal]), np.array([r[key]["ci_high"] for r in causal]) - y]
        ax.errorbar(x + 0.15 * k, y, yerr=err, fmt="o", capsize=3, label=key.replace("_", " "))
    ax.set_xticks(x, [r["cell"] for r in causal], rotation=60, ha="right", fontsize=7)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("power (q < 0.05), 95% CI")
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "power.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    null = [r for r in rows if r["truth"] == "null" and r["type1"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(null))
    for k, level in enumerate(TYPE1_LEVELS):
        t = [r["type1"][f"{level:g}"] for r in null]
        y = np.array([v["rate"] for v in t]) / level
        half = np.array([1.96 * v["cluster_se"] if np.isfinite(v["cluster_se"]) else 0.0 for v in t]) / level
        ax.errorbar(x + 0.15 * k, y, yerr=half, fmt="o", capsize=3, label=f"p < {level:g}")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [r["cell"] for r in null], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("empirical / nominal type-I error\n(null phenotype, all families; 95% cluster CI)")
    ax.set_yscale("symlog", linthresh=1)
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "type1.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def compact_markdown(rows: list[dict]) -> str:
    """A short markdown table (for the README): verdict counts with 95% CIs, power, type-I, FDR per row."""
    def short(r: dict | None) -> str:
        return "" if not r or not r.get("n") else f"{r['count']}/{r['n']} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"

    lines = ["| cell | truth | reps | verdicts: count/n [95% CI] | power variant | power feature | "
             "type-I p<1e-2 | type-I p<1e-3 | FDR |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        verdicts = "; ".join(f"{name} {short(v)}" for name, v in sorted(r["verdict_rates"].items()))
        t = r["type1"] or {}
        t2 = "" if "0.01" not in t else f"{t['0.01']['rate']:.1e} ({t['0.01']['count']}/{t['0.01']['n']})"
        t3 = "" if "0.001" not in t else f"{t['0.001']['rate']:.1e} ({t['0.001']['count']}/{t['0.001']['n']})"
        fdr = "" if r["fdr"] is None else f"{r['fdr']['fdr']:.2f} ({r['fdr']['mean_discoveries']:.0f}/rep)"
        lines.append(f"| {r['cell']} | {r['truth']} | {r['n_replicates']} | {verdicts} | {short(r['power_variant'])} | "
                     f"{short(r['power_feature'])} | {t2} | {t3} | {fdr} |")
    return "\n".join(lines) + "\n"


def markdown_report(rows: list[dict], meta: dict) -> str:
    """A calibration report (markdown): what ran, the targets, and the table."""
    frame = table_frame(rows)
    lines = ["# Calibration of the audit and rank", "",
             f"Generated from {meta.get('n_replicate_files', '?')} replicate summaries "
             f"({meta.get('command', '')}). Each replicate simulates one cohort with a causal, an ancestry-only "
             "and a null phenotype and runs the real pipeline stages (simulate_cohort, place_cohort, check_cohort, haplotypes, "
             "ancestry, embed_cohort with the built-in tiny LM and its SAE, audit, rank).", "",
             "Rates are shares of replicates (verdicts: of replicate x model x layer verdicts) with 95% "
             "Clopper-Pearson intervals and (count/n). Type-I error: share of the null phenotype's tests "
             "(all feature families) with p below the level; the interval treats tests as independent, the "
             "cluster SE does not. FDR: mean false discovery proportion among q < 0.05 features of the causal "
             "phenotype, a discovery being false when it lies more than "
             f"{meta.get('near_bp', 500)} bp from the causal variant. type1_redraw: the same tests of fresh "
             "null phenotypes (`calibration.null_redraws` per ranked replicate) on each replicate's features, "
             "which averages over phenotype draws (one null phenotype per replicate makes the type-I error "
             "lumpy: linked features cross a level together).", "",
             *([f"Verdict counts pooled with an earlier table ({meta['prior']['path']}, "
                f"{meta['prior']['meta'].get('n_replicate_files', '?')} replicate summaries, sha256 "
                f"{meta['prior']['sha256'][:12]}): its replicates 0..n-1 of each cell plus the summaries here, "
                "which start where it ends. Power, type-I error and FDR come from the replicates that ran rank "
                "(`calibration.rank_replicates`).", ""] if meta.get("prior") else []),
             "Targets (issue 7): causal with OR >= 2, n >= 1,000: FAIL <= 5%, PASS >= 80%; ancestry-only: "
             "PASS <= 5%; null: PASS <= 5% and FAIL <= 5%; rank type-I error within the binomial CI of the "
             "nominal level at 1e-2 and 1e-3.", "",
             "![verdicts](verdicts.png)", "", "![power](power.png)", "", "![type-I error](type1.png)", "",
             "## Summary", "", compact_markdown(rows), "## Full table", ""]
    cols = frame.columns
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in frame.iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v) for v in r) + " |")
    return "\n".join(lines) + "\n"


_RANK_KEYS = ("power_variant", "power_feature", "type1", "fdr", "null_any_discovery", "type1_redraw")


def pool_with_prior(rows: list[dict], prior_rows: list[dict], first_new: dict[str, int],
                    supersede: tuple[str, ...] = ()) -> list[dict]:
    """Rows of `calibration_table` over new replicate summaries pooled with the rows of an earlier table.

    An earlier run whose per-replicate summaries are gone survives as its table (calibration.json rows);
    replicates run since then add to it. Verdict counts of the same (cell, truth) are added and their rates
    and Clopper-Pearson intervals recomputed. Rank statistics (power, type-I, FDR) are not poolable from a
    table (the type-I cluster SE needs per-replicate counts), so they are taken from whichever side ran rank,
    and pooling is refused when both did. first_new: {cell: smallest replicate index among the new
    summaries}; it must be at least the earlier table's replicate count of that cell, because the earlier run
    ran replicates 0, 1, ... of each cell (`calibration_local.py --first 0`); where the earlier row records its
    `replicates` [first, last], it must exceed last (a replicate that failed, e.g. no variant matching the
    frequencies, leaves a gap: 58 replicates can end at index 58). An earlier table that is itself pooled
    (rows with `n_replicates_prior`) but records no `replicates` is refused: its new part may have begun
    anywhere. Pooling a table with summaries it already counts therefore raises ValueError instead of counting
    them twice. `median_seconds` comes from
    the new replicates where there are any. Each pooled row gets `n_replicates_prior` (its count in the
    earlier table). supersede: cells whose earlier rows are dropped, not pooled (the cell's simulation
    changed since, so its new replicates, from 0, replace them); ValueError when one is not in the earlier table.
    """
    unknown = sorted(set(supersede) - {r["cell"] for r in prior_rows})
    if unknown:
        raise ValueError(f"cannot supersede calibration cell(s) {unknown}: not in the earlier table")
    prior = {(r["cell"], r["truth"]): r for r in prior_rows if r["cell"] not in set(supersede)}
    new = {(r["cell"], r["truth"]): r for r in rows}
    for cell, truth in new:
        before = prior.get((cell, truth))
        if before is None:
            continue
        if not before.get("replicates") and "n_replicates_prior" in before:
            # a pooled table's new part began anywhere (e.g. 20-103 after 0-15): its count is not its end
            raise ValueError(f"calibration cell {cell}: the earlier table is itself pooled and does not record "
                             "which replicates it holds ([first, last]); pooling could count replicates twice "
                             "(regather it from its replicate summaries and its own prior)")
        last = int(before["replicates"][1]) if before.get("replicates") else int(before["n_replicates"]) - 1
        if first_new[cell] <= last:
            raise ValueError(f"calibration cell {cell}: new replicates start at {first_new[cell]} but the earlier "
                             f"table already holds {before['n_replicates']} replicates (0-{last}"
                             "); pooling would count replicates twice")
    order = {c["cell"]: k for k, c in enumerate(grid_cells())}
    truth_order = {t: k for k, t in enumerate(TRUTHS.values())}
    pooled = []
    for key in sorted(set(prior) | set(new), key=lambda k: (order.get(k[0], len(order)), k[0], truth_order[k[1]])):
        a, b = prior.get(key), new.get(key)
        if a is None or b is None:
            only = a or b
            pooled.append({**only, "code_versions": only.get("code_versions") or {"unrecorded": only["n_replicates"]},
                           "n_replicates_prior": a["n_replicates"] if a else 0})
            continue
        if a.get("n_ranked_replicates") and b.get("n_ranked_replicates"):
            raise ValueError(f"calibration cell {key[0]}: both the earlier table and the new replicates ran rank; "
                             "rank statistics cannot be pooled from a table (regather from replicate summaries)")
        ranked = a if a.get("n_ranked_replicates") else b
        n_verdicts = a["n_verdicts"] + b["n_verdicts"]
        names = sorted(set(a["verdict_rates"]) | set(b["verdict_rates"]))
        counts = {name: sum(side["verdict_rates"].get(name, {}).get("count", 0) for side in (a, b)) for name in names}
        first = int(a["replicates"][0]) if a.get("replicates") else 0
        row = {**a, "n_replicates": a["n_replicates"] + b["n_replicates"], "n_verdicts": n_verdicts,
               **({"replicates": [min(first, int(b["replicates"][0])), int(b["replicates"][1])]}
                  if b.get("replicates") else {}),
               "verdict_rates": {name: rate(counts[name], n_verdicts) for name in names},
               "n_ranked_replicates": ranked.get("n_ranked_replicates", 0),
               **{k: ranked.get(k) for k in _RANK_KEYS if k in ranked},
               "median_seconds": b["median_seconds"], "median_cpu_seconds": b.get("median_cpu_seconds"),
               "code_versions": _add_counts(a.get("code_versions") or {"unrecorded": a["n_replicates"]},
                                            b.get("code_versions") or {"unrecorded": b["n_replicates"]}),
               "n_replicates_prior": a["n_replicates"]}
        pooled.append(row)
    return pooled


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}


#: keys every replicate summary has (`run_replicate` writes them): a JSON file without them is not one
REPLICATE_KEYS = ("cell", "replicate", "verdicts")


def _read_table_json(path: str | Path, what: str, keys: tuple[str, ...]) -> dict:
    """A JSON object with `keys` from `path`; InputError naming the file and what was expected otherwise."""
    from interp.errors import InputError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON {what} ({exc})") from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise InputError(f"{path}: not a {what} (expected a JSON object with {', '.join(keys)}; "
                         f"{'it lacks ' + ', '.join(missing) if isinstance(data, dict) else 'it is not an object'})")
    return data


def gather(replicate_files: list[str | Path], out: dict[str, str | Path], meta: dict | None = None,
           prior: str | Path | None = None, supersede: tuple[str, ...] = ()) -> list[dict]:
    """Read replicate summaries, write calibration.{tsv,json}, the plots and report.md (atomically).

    prior: an earlier calibration.json to pool with (`pool_with_prior`); its path, sha256 and meta are kept in
    the new table's meta. supersede: cells of `prior` replaced by the new summaries (meta["superseded_cells"]).
    """
    import hashlib

    from interp.io import write_text_atomic

    replicates = [_read_table_json(p, "replicate summary (<cell>/<replicate>.json of the calibration suite)",
                                   REPLICATE_KEYS) for p in replicate_files]
    earlier = None
    if prior is not None:  # read before any pooling: a wrong --prior is named, not met as a KeyError
        earlier = _read_table_json(prior, "calibration table (an earlier calibration.json)", ("rows",))
        if not isinstance(earlier["rows"], list):
            raise ValueError(f"{prior}: rows is not a list; expected an earlier calibration.json")
    rows = calibration_table(replicates)
    meta = {**(meta or {}), "n_replicate_files": len(replicates)}
    if earlier is not None:
        text = Path(prior).read_text()
        first_new: dict[str, int] = {}
        for rep in replicates:
            first_new[rep["cell"]] = min(first_new.get(rep["cell"], rep["replicate"]), rep["replicate"])
        rows = pool_with_prior(rows, earlier["rows"], first_new, tuple(supersede))
        meta["prior"] = {"path": str(prior), "sha256": hashlib.sha256(text.encode()).hexdigest(),
                         "meta": earlier.get("meta", {})}
        meta["superseded_cells"] = sorted(supersede)
    elif supersede:
        raise ValueError("supersede names cells of an earlier table: give prior too")
    # everything rendered (plots written) before any table is replaced: a failure leaves the earlier set whole
    texts = {"json": json.dumps(_strict({"meta": meta, "rows": rows}), indent=2, sort_keys=True,
                                allow_nan=False) + "\n",
             "tsv": _tsv(table_frame(rows)), "report": markdown_report(rows, meta)}
    write_plots(rows, Path(out["report"]).parent)
    for key in ("json", "tsv", "report"):
        write_text_atomic(out[key], texts[key])
    return rows


def _tsv(frame: pl.DataFrame) -> str:
    import io

    buffer = io.StringIO()
    frame.write_csv(buffer, separator="\t")
    return buffer.getvalue()


def _strict(obj: Any) -> Any:
    """Plain JSON values: numpy scalars as Python numbers, NaN / inf as null."""
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj
