"""The rank stage's inputs and outputs around `interp.rank`: phenotype values, the covariate design, the
feature families built from the cohort's tables (`variant_family`, `window_family`, and from zero-shot
variant scores `variant_effect_family`), where each ranked feature sits (`annotate_loci`) and the whole run
(`rank_cohort`).

Coordinates: 0-based half-open [start, end) throughout (a variant's `pos` in the genotype table is 1-based).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from interp.genome.regions import positions_by_contig
from interp.rank import Family, RankConfig, rank_phenotype

if TYPE_CHECKING:
    import anndata as ad
    import pandas as pd

    from interp.covariates import CovariateDesign

#: the rank table's leading columns, in this order; the rest follow in their own order
RANK_FIRST_COLUMNS = (
    "phenotype", "family", "rank", "feature", "short_name", "kind", "window", "effect", "ci_low", "ci_high", "p",
    "q", "method", "effect_method", "n_carriers", "n_carriers_cohort", "filtered", "stability", "tags_variants",
    "lead_variant", "p_conditional", "conditional_significant", "p_conditional_top_variant", "bh_scope")


def phenotype_values(col: pd.Series, name: str) -> np.ndarray:
    """A phenotype column as float64 [n] (missing -> NaN); text that is not a number is an InputError, and so are
    an infinite value (rank would drop it as missing) and a column with exactly two values other than 0/1 (a case/control phenotype coded 1/2, say): rank would test
    it as quantitative by OLS, whose t-test is anti-conservative for features with few carriers."""
    import pandas as pd

    from interp.errors import InputError

    values = pd.to_numeric(col.astype(object).where(col.notna(), None), errors="coerce").to_numpy(dtype=float)
    bad = col.notna().to_numpy() & np.isnan(values)
    if bad.any():
        raise InputError(f"samples.tsv: phenotype {name!r} has non-numeric value {col[bad].iloc[0]!r}; "
                         "expected 0/1 (binary) or numbers (quantitative), empty/NA for missing")
    infinite = np.isinf(values)
    if infinite.any():  # dropped as missing, the lowest (log of 0) or highest values would leave unseen
        raise InputError(f"samples.tsv: phenotype {name!r} has an infinite value ({values[infinite][0]:g}, "
                         f"{int(infinite.sum())} in all); expected finite numbers, empty/NA for missing")
    distinct = np.unique(values[np.isfinite(values)])
    if distinct.size == 2 and not set(distinct.tolist()) <= {0.0, 1.0}:
        raise InputError(f"samples.tsv: phenotype {name!r} has two values ({distinct[0]:g}, {distinct[1]:g}); "
                         "code a binary phenotype 0/1 (1 = case), empty/NA for missing")
    return values


def rank_covariates(obs: pd.DataFrame, names: list[str], missing: str,
                    categorical: list[str] | tuple = ()) -> CovariateDesign:
    """The rank stage's covariate design from the samples' obs (one-hot categoricals, `categorical` ones too
    when coded as numbers; missing values refused or imputed as `missing` says; names absent from obs are
    reported by `covariate_design`)."""
    from interp.covariates import covariate_design

    return covariate_design({n: obs[n].to_numpy() for n in names if n in obs}, names, missing=missing,
                            sample_ids=obs.index.astype(str).tolist(), source="samples.tsv",
                            categorical=categorical)


def rank_design(geno: ad.AnnData, covariates: list[str], missing: str,
                categorical: list[str] | tuple = ()) -> tuple[np.ndarray, CovariateDesign]:
    """The adjustment every rank test uses: [n, k + c] = the ancestry PCs (obsm["X_pca"]) and the covariate
    design (`rank_covariates`), with that design."""
    design = rank_covariates(geno.obs, covariates, missing, categorical)
    return np.hstack([np.asarray(geno.obsm["X_pca"], dtype=np.float64), design.matrix]), design


def window_families(emb_dirs: list[str | Path], sample_order: list[str] | pd.Index) -> list[Family]:
    """`window_family` of every `*.windows.h5ad` in emb_dirs (sorted), rows in `sample_order`; each family's
    matrix stays on disk and is read a block of columns at a time."""
    return [window_family(path, sample_order) for d in sorted(str(e) for e in emb_dirs)
            for path in sorted(Path(d).glob("*.windows.h5ad"))]


def variant_family(geno: ad.AnnData, dosage: Any = None) -> Family:
    """Every variant of the cohort as one family.

    geno: the ancestry stage's AnnData (var index "contig:pos:ref:alt", var contig and 1-based pos;
    layers["dosage"], else X, ALT dosage [n_samples, n_variants], NaN missing). dosage: that matrix when geno
    holds none, e.g. `interp.cohort.genotype_file.GenotypeFile(path).matrix` (left on disk: rank reads it a
    block of columns at a time), rows in geno's order.
    Returns a Family "variant": matrix the dosage (float32 when read from geno), features the variant ids,
    short names "contig:pos ref>alt", contig, start = pos - 1 and end = pos (0-based, the variant's first base).
    """
    var = geno.var
    ids = var.index.astype(str).tolist()
    pos0 = var["pos"].to_numpy().astype(np.int64) - 1
    short = []
    for vid in ids:
        parts = vid.split(":")
        short.append(f"{parts[0]}:{parts[1]} {parts[2]}>{parts[3]}" if len(parts) == 4 else vid)
    if dosage is None:
        dosage = np.asarray(geno.layers["dosage"] if "dosage" in geno.layers else geno.X, dtype=np.float32)
    return Family(name="variant", kind="variant", matrix=dosage, features=ids, short_names=short,
                  contig=var["contig"].astype(str).to_numpy(), start=pos0, end=pos0 + 1)


def window_family(table: str | Path | ad.AnnData, sample_order: list[str] | pd.Index) -> Family:
    """One model layer's window features (embedding dimensions or SAE features) as one family.

    table: a `<layer>.windows.h5ad` of `interp.embed.cohort.cohort_tables` (X [n_samples, n_windows * d];
    var contig, start, end, dim; uns kind, model, layer), as a path (its X stays on disk, an h5py Dataset
    that `interp.rank.Columns` reads a block of columns at a time: hundreds of genes x thousands of samples
    do not fit in memory) or an AnnData in memory. Rows are taken in `sample_order` (which the table must
    contain; `Family.rows`).
    Returns a Family "<kind>:<model>/<layer>" with features the var names and short names
    "<layer> contig:start-end d<j>" ("f<j>" for SAE features).
    """
    import anndata

    from interp.errors import InputError

    if isinstance(table, (str, Path)):
        import h5py

        path = Path(table)
        meta = anndata.read_h5ad(path, backed="r")
        matrix = h5py.File(path, "r")["X"]
        if not isinstance(matrix, h5py.Dataset) or matrix.ndim != 2:
            raise InputError(f"{path}: X must be a dense 2-D matrix (a windows table of the embed_cohort stage)")
        meta.file.close()
    else:
        meta, matrix = table, np.asarray(table.X, dtype=np.float32)
    position = {s: i for i, s in enumerate(meta.obs_names.astype(str))}
    missing = [s for s in sample_order if str(s) not in position]
    if missing:
        raise InputError(f"windows table {meta.uns.get('model')}/{meta.uns.get('layer')}: lacks sample "
                         f"{missing[0]!r} of the genotypes ({len(missing)} missing)")
    rows = np.array([position[str(s)] for s in sample_order], dtype=np.int64)
    kind, model, layer = meta.uns["kind"], meta.uns["model"], meta.uns["layer"]
    contig = meta.var["contig"].astype(str).to_numpy()
    start = meta.var["start"].to_numpy().astype(np.int64)
    end = meta.var["end"].to_numpy().astype(np.int64)
    prefix = "f" if kind == "sae" else "d"
    short = [f"{layer} {c}:{s}-{e} {prefix}{j}" for c, s, e, j in
             zip(contig, start, end, meta.var["dim"].to_numpy(), strict=True)]
    return Family(name=f"{kind}:{model}/{layer}", kind=kind, matrix=matrix,
                  features=meta.var_names.astype(str).tolist(), short_names=short, contig=contig, start=start,
                  end=end, model=str(model), layer=str(layer),
                  rows=None if np.array_equal(rows, np.arange(matrix.shape[0])) else rows)


def model_windows(families: list[Family]) -> pl.DataFrame:
    """The distinct windows (contig, start, end; 0-based half-open) of the window families, sorted."""
    frames = [pl.DataFrame({"contig": np.asarray(f.contig).astype(str), "start": np.asarray(f.start, dtype=np.int64),
                            "end": np.asarray(f.end, dtype=np.int64)}) for f in families]
    if not frames:
        return pl.DataFrame(schema={"contig": pl.String, "start": pl.Int64, "end": pl.Int64})
    return pl.concat(frames).unique().sort(["contig", "start", "end"])


def variant_effect_family(geno: ad.AnnData, scores: pl.DataFrame, windows: pl.DataFrame,
                          dosage: Any = None) -> Family | None:
    """One model's zero-shot variant scores as a window burden family "variant_effect:<model>".

    geno: the ancestry stage's AnnData (var index variant_id, contig, 1-based pos; layers["dosage"], else X,
    ALT dosage, NaN missing, mean-imputed per variant as in the variant family). scores: the variant_effect
    stage's table (variant_id, score, model; `interp.embed.variant_effect.score_cohort_variants`). dosage: the
    matrix when geno holds none (as in `variant_family`: on disk, read a window's columns at a time).
    windows: contig, start, end (0-based half-open): the windows of the model's window features
    (`model_windows`), so the burden and the embedding / SAE features of a window describe the same bases.

    Feature of sample i and window w: B[i, w] = sum over the variants v in w of weight_v x dosage[i, v], with
    weight_v = max(-score_v, 0), the "damaging" weight. score_v is log p(ALT) - log p(REF) (masked LLR or
    causal delta), so a negative score means the model finds ALT less likely than REF; the burden counts
    the ALT alleles a sample carries that the model finds surprising, each by how much. |score| was not
    chosen: it would add ALT alleles the model finds *more* likely than REF (REF is the odd allele there)
    with the same sign as damaging ones, mixing two opposite hypotheses in one sum and diluting either;
    the test is two-sided, so a protective burden is still found. Known limit: the polarity is the
    reference's, so a damaging REF allele (a common ALT with positive score) is not counted. Variants
    without a score (non-SNVs, REF mismatch) and variants not in `scores` weigh 0. Only windows holding a
    variant of positive weight are features (the others would be constant 0).
    Returns None when no window has one. Feature ids "<model>/variant_effect/<contig>:<start>-<end>", short
    names "burden <contig>:<start>-<end>"; kind "variant_effect", model set, layer "". Its carriers
    (`Family.carriers`) are the samples with a called ALT allele of positive weight in the window: a missing
    call is imputed in the burden but makes no one a carrier.
    """
    model = str(scores["model"][0]) if "model" in scores.columns and scores.height else "model"
    scored = scores.filter(pl.col("score").is_not_null() & pl.col("score").is_not_nan())
    score_of = dict(zip(scored["variant_id"].cast(pl.String).to_list(), scored["score"].to_list(), strict=True))
    ids = geno.var.index.astype(str).tolist()
    weight = np.array([max(-float(score_of.get(v, 0.0)), 0.0) for v in ids])
    # no float64 copy of the whole matrix (it took ~29 B per sample x variant at its peak): the imputed means of
    # the positive-weight columns only, then each window's columns made float64 and imputed as it is summed;
    # the same values as `mean_impute` of the whole matrix, so the same burdens, bit for bit
    if dosage is None:
        dosage = np.asarray(geno.layers["dosage"] if "dosage" in geno.layers else geno.X)
    means = _imputed_means(dosage, np.flatnonzero(weight > 0))
    v_contig = geno.var["contig"].astype(str).to_numpy()
    v_pos0 = geno.var["pos"].to_numpy().astype(np.int64) - 1
    weighted = np.flatnonzero(weight > 0)
    by_contig = positions_by_contig(v_contig[weighted], v_pos0[weighted], weighted)
    cols, carried, feats, short, contig, start, end = [], [], [], [], [], [], []
    for c, s, e in windows.select("contig", "start", "end").iter_rows():
        p0, idx = by_contig.get(c, (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
        inside = idx[np.searchsorted(p0, s, side="left"):np.searchsorted(p0, e, side="left")]
        if inside.size == 0:
            continue
        block = _take_columns(dosage, inside)
        missing = ~np.isfinite(block)
        # carriers from the called genotypes: a missing call's imputed mean is above 0 and made its sample a
        # "carrier" (a window with 1 real carrier and 20 missing calls was tested with 21)
        carried.append((np.where(missing, 0, block) > 0).any(axis=1))
        if missing.any():
            block[missing] = means[inside][np.nonzero(missing)[1]]
        cols.append(block @ weight[inside])
        feats.append(f"{model}/variant_effect/{c}:{s}-{e}")
        short.append(f"burden {c}:{s}-{e}")
        contig.append(c)
        start.append(s)
        end.append(e)
    if not cols:
        return None
    return Family(name=f"variant_effect:{model}", kind="variant_effect",
                  matrix=np.column_stack(cols).astype(np.float32), features=feats, short_names=short,
                  contig=np.asarray(contig, dtype=object), start=np.asarray(start, dtype=np.int64),
                  end=np.asarray(end, dtype=np.int64), model=model, layer="",
                  carriers=np.column_stack(carried))


#: genotypes (samples x variants) made float64 at a time by `_imputed_means`: 2^24, 128 MB
IMPUTE_CHUNK_VALUES = 1 << 24


def _imputed_means(dosage: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """float64 [n_variants]: for each of `columns`, the value `mean_impute` gives that column's missing
    (non-finite) entries, the mean of its observed ones (0 when none); 0 elsewhere. Read a block of columns
    at a time, so at most `IMPUTE_CHUNK_VALUES` float64 values are held (a column's sum runs down its rows
    whatever the block, as in `mean_impute`)."""
    means = np.zeros(dosage.shape[1], dtype=np.float64)
    step = max(1, IMPUTE_CHUNK_VALUES // max(dosage.shape[0], 1))
    for lo in range(0, columns.size, step):
        cols = columns[lo:lo + step]
        block = _take_columns(dosage, cols)
        missing = ~np.isfinite(block)
        counts = (~missing).sum(axis=0)
        sums = np.where(missing, 0.0, block).sum(axis=0)
        means[cols] = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return means


def _take_columns(dosage: Any, cols: np.ndarray) -> np.ndarray:
    """float64 [n, len(cols)] of the columns `cols` (any order) of an array or an on-disk dataset."""
    if isinstance(dosage, np.ndarray):
        return np.take(dosage, cols, axis=1).astype(np.float64, copy=False)
    from interp.rank import Columns

    order = np.argsort(cols, kind="stable")
    block = np.empty((dosage.shape[0], cols.size), dtype=np.float64)
    block[:, order] = Columns(dosage).read(np.asarray(cols)[order])
    return block


def _by_contig(table: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """{contig: its rows, in table order} in one pass."""
    return {str(key[0]): part for key, part in table.partition_by("contig", as_dict=True, maintain_order=True).items()}


def annotate_loci(t: pl.DataFrame, annotation: pl.DataFrame | None, v_contig: np.ndarray, v_pos0: np.ndarray,
                  v_ids: np.ndarray) -> pl.DataFrame:
    """Where each ranked feature sits.

    t: rank rows with kind, contig, start, end (a variant's own base, or a model feature's window).
    annotation: features with contig, start, end, feature ("exon", ...), gene (or None: no gene, no exon).
    v_contig, v_pos0, v_ids [n_variants]: every variant's contig, 0-based position and id, in file order.
    Adds: `window` ("contig:start-end"; a variant's is the model window of t holding it, "" if none),
    `gene` (the genes of the annotation rows overlapping [start, end), sorted, comma-joined),
    `exon_overlap` (one of them is an exon) and `nearest_variants` (the first 5 variants inside [start, end),
    comma-joined). start and end become Int64.
    """
    # sorted on every column: a variant inside two windows of the same start takes the shorter, whatever order
    # unique() returned
    model_windows = (t.filter(pl.col("kind") != "variant").select("contig", "start", "end").unique()
                     .sort(["contig", "start", "end"]))
    loci_in = t.select((pl.col("kind") == "variant").alias("v"), "contig", "start", "end").unique()
    v_contig = np.asarray(v_contig).astype(str)
    v_pos0 = np.asarray(v_pos0, dtype=np.int64)
    v_ids = np.asarray(v_ids)
    # every lookup is a binary search on a contig's sorted positions: a scan of all variants (or a polars filter)
    # per locus made this quadratic in the variants (minutes for a few hundred thousand)
    # and each contig's variants, windows and annotation rows are grouped once (a filter per contig made the
    # cost contigs x rows: a scaffold-level assembly of thousands of contigs)
    variants_by_contig = positions_by_contig(v_contig, v_pos0)
    no_variants = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    windows_by_contig = _by_contig(model_windows)
    annotation_by_contig = _by_contig(annotation.sort("start")) if annotation is not None else {}
    empty_annotation = annotation.clear() if annotation is not None else None
    rows = []
    for (contig,), part in loci_in.group_by("contig", maintain_order=True):
        contig = str(contig)
        is_var = part["v"].to_numpy()
        starts, ends = part["start"].to_numpy().astype(np.int64), part["end"].to_numpy().astype(np.int64)
        sorted_pos, by_pos = variants_by_contig.get(contig, no_variants)  # by position, then file order
        in_file_order = bool(np.all(np.diff(by_pos) > 0))
        first_in = np.searchsorted(sorted_pos, starts, side="left")
        past_in = np.searchsorted(sorted_pos, ends, side="left")
        w = windows_by_contig.get(contig, model_windows.clear())
        w_start, w_end = w["start"].to_numpy().astype(np.int64), w["end"].to_numpy().astype(np.int64)
        # the first window in (start, end) order holding pos: the first of those starting at or before pos whose
        # end passes pos, i.e. where the running maximum of the ends first passes pos
        w_reach = np.maximum.accumulate(w_end) if w_end.size else w_end
        if annotation is not None:
            a = annotation_by_contig.get(contig, empty_annotation)
            a_start, a_end = a["start"].to_numpy().astype(np.int64), a["end"].to_numpy().astype(np.int64)
            a_exon, a_gene = (a["feature"] == "exon").to_numpy(), np.asarray(a["gene"].to_list(), dtype=object)
            longest = int((a_end - a_start).max()) if a.height else 0
        for i in range(part.height):
            start, end = int(starts[i]), int(ends[i])
            gene, exon = "", False
            if annotation is not None:
                # rows overlapping [start, end): a_start < end and a_end > start (so a_start > start - longest)
                lo = int(np.searchsorted(a_start, start - longest, side="right"))
                hi = int(np.searchsorted(a_start, end, side="left"))
                hit = lo + np.flatnonzero(a_end[lo:hi] > start)
                exon = bool(a_exon[hit].any())
                gene = ",".join(sorted(set(a_gene[hit].tolist())))
            inside = by_pos[first_in[i]:past_in[i]]
            inside = inside[:5] if in_file_order else np.sort(inside)[:5]
            if is_var[i]:
                k = int(np.searchsorted(w_start, start, side="right"))
                j = int(np.searchsorted(w_reach[:k], start, side="right"))
                window = f"{contig}:{w_start[j]}-{w_end[j]}" if j < k else ""
            else:
                window = f"{contig}:{start}-{end}"
            rows.append({"v": bool(is_var[i]), "contig": contig, "start": start, "end": end, "gene": gene,
                         "exon_overlap": exon, "nearest_variants": ",".join(v_ids[inside].tolist()),
                         "window": window})
    loci = pl.DataFrame(rows, schema_overrides={"start": pl.Int64, "end": pl.Int64})
    t = t.with_columns(pl.col("start").cast(pl.Int64), pl.col("end").cast(pl.Int64),
                       (pl.col("kind") == "variant").alias("v"))
    # rank's row order kept (polars promises no join order otherwise; untested rows tie in order_rank_table)
    return t.join(loci, on=["v", "contig", "start", "end"], how="left", maintain_order="left").drop("v")


def order_rank_table(table: pl.DataFrame) -> pl.DataFrame:
    """Rows by phenotype, family, rank (untested features, rank null, last; ties keep their order), columns
    `RANK_FIRST_COLUMNS` first (those present), then the rest in their order."""
    table = table.sort(["phenotype", "family", "rank"], nulls_last=True, maintain_order=True)
    first = [c for c in RANK_FIRST_COLUMNS if c in table.columns]
    return table.select(first + [c for c in table.columns if c not in first])


def rank_cohort(geno: ad.AnnData, families: list[Family], annotation: pl.DataFrame | None, phenotypes: list[str],
                covariates: list[str], cfg: RankConfig, covariate_missing: str = "refuse",
                categorical_covariates: list[str] | tuple = (), variants: Family | None = None,
                ) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Rank the variants and every model feature family for each phenotype (`interp.rank.rank_phenotype`),
    adjusted for the ancestry PCs and the covariates.

    geno: the ancestry stage's AnnData (obs with the phenotypes and covariates, obsm["X_pca"] [n, k], the
    variants); families: `window_family` of each model layer, in the samples' order of geno, and any
    `variant_effect_family` (each family its own BH scope); variants: the variant family (default
    `variant_family(geno)`; the rank stage passes one whose dosages stay on disk).
    Returns (table: one row per (phenotype, family, feature), with the locus columns of `annotate_loci` and
    `n_carriers_cohort` (the column's carriers over every sample, `interp.rank.cohort_carrier_counts`),
    ordered by `order_rank_table`; summary: phenotypes (rank_phenotype's summaries), covariates and
    covariate_columns (the design's), n_pcs, config).
    """
    from interp import rank as _rank

    cov, design = rank_design(geno, covariates, covariate_missing, categorical_covariates)
    variants = variants if variants is not None else variant_family(geno)
    # each column's carriers over the whole cohort, counted once: the count the report shows (every phenotype's
    # own count differs by the carriers among the samples it leaves out)
    cohort_carriers = {fam.name: _rank.cohort_carrier_counts(fam) for fam in [variants, *families]}
    tables, summaries = [], []
    for phenotype in phenotypes:
        y = phenotype_values(geno.obs[phenotype], phenotype)
        t, s = rank_phenotype(phenotype, y, cov, variants, families, cfg, cohort_carriers)
        tables.append(t)
        summaries.append(s)
    if not any(t.height for t in tables):
        from interp.errors import InputError

        raise InputError("rank: no phenotype could be tested: " + ", ".join(
            f"{s['phenotype']!r} ({s.get('skipped', 'no features')})" for s in summaries))
    table = pl.concat([t for t in tables if t.height], how="diagonal_relaxed")
    table = annotate_loci(table, annotation, np.asarray(variants.contig), np.asarray(variants.start),
                          np.asarray(variants.features))
    summary = {"phenotypes": summaries, "covariates": design.info, "covariate_columns": design.columns,
               "n_pcs": int(geno.obsm["X_pca"].shape[1]), "config": cfg.__dict__}
    return order_rank_table(table), summary


def rank_files(genotypes: str | Path, emb_dirs: list[str | Path], variant_effect: list[str | Path],
               phenotypes: list[str], covariates: list[str], cfg: RankConfig,
               annotation_for: Callable[[list[tuple[str, int, int]]], pl.DataFrame | None],
               covariate_missing: str = "refuse", categorical_covariates: list[str] | tuple = (),
               ) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The rank stage on its files: `rank_cohort` of genotypes.h5ad (metadata read, the dosage matrix left on
    disk and read a block of columns at a time), every `*.windows.h5ad` of emb_dirs (`window_families`) and one
    burden family per variant_effect table (`variant_effect_family`; none when the list is empty).
    annotation_for(spans): the annotation rows overlapping spans [(contig, start, end)], 0-based half-open (the
    variants' bases and the model windows), or None."""
    from interp.cohort.genotype_file import GenotypeFile, read_genotypes

    geno = read_genotypes(genotypes, dosage=False)  # obs, PCs, var
    families = window_families(emb_dirs, geno.obs_names)
    windows = model_windows(families)
    pos0 = geno.var["pos"].to_numpy().astype(np.int64) - 1
    loci = list(zip(geno.var["contig"].astype(str), pos0.tolist(), (pos0 + 1).tolist(), strict=True))
    annotation = annotation_for(loci + list(windows.iter_rows()))
    with GenotypeFile(genotypes) as on_disk:
        for path in variant_effect:
            fam = variant_effect_family(geno, pl.read_parquet(path), windows, dosage=on_disk.matrix)
            families += [fam] if fam is not None else []
        return rank_cohort(geno, families, annotation, phenotypes, covariates, cfg,
                           covariate_missing=covariate_missing, categorical_covariates=categorical_covariates,
                           variants=variant_family(geno, on_disk.matrix))
