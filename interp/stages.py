"""One function per Snakemake rule: read the rule's inputs, call the library, write its outputs.

Each stage takes a `Job` (the rule's named inputs and outputs, its settings, its threads) and
touches nothing else. Rule `X` in `workflow/rules/*.smk` calls `stages.X`; the science lives in the
modules each stage calls (named in its docstring), and their tests in `tests/test_<module>.py`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from interp.io import atomic_path, write_text_atomic

STAGES = (
    "windows", "pretrain_tiny_dnalm", "embed", "probe", "sae",
    "simulate_cohort", "check_cohort", "haplotypes", "ancestry", "embed_cohort", "audit", "rank",
    "report",
)


@dataclass
class Job:
    input: dict[str, Any]
    output: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    threads: int = 1

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        return cls(input=data.get("input", {}), output=data.get("output", {}),
                   params=data.get("params", {}), threads=int(data.get("threads", 1)))


def write_json(obj: Any, path: str | Path) -> None:
    """Write JSON atomically (temp file in the same folder, then rename), keys sorted."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_table(df: pl.DataFrame, parquet: str | Path | None = None, tsv: str | Path | None = None) -> None:
    """Write a polars table as parquet and/or TSV, each atomically."""
    for path, writer in ((parquet, "parquet"), (tsv, "tsv")):
        if path is None:
            continue
        with atomic_path(path) as tmp:
            if writer == "parquet":
                df.write_parquet(tmp)
            else:
                flat = df.with_columns([pl.col(c).cast(pl.String) for c, t in df.schema.items()
                                        if isinstance(t, (pl.List, pl.Struct))])
                flat.write_csv(tmp, separator="\t")


def write_h5ad(adata, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _reference(job: Job):
    """(fasta dict, annotation frame or None) with annotation contigs mapped to the FASTA's names."""
    from interp.genome.annotation import read_annotation, to_contigs
    from interp.genome.fasta import read_fasta

    ref = job.params["reference"]
    fasta = read_fasta(job.input["fasta"])
    annotation = None
    if job.input.get("annotation"):
        annotation = read_annotation(job.input["annotation"], ref.get("annotation_format", "auto"))
        raw = annotation
        # a genome-wide annotation with a one-chromosome FASTA is fine; one matching nothing is not
        annotation = to_contigs(raw, fasta.keys(), ref.get("contig_aliases") or {}, drop_missing=True)
        if annotation.is_empty() and not raw.is_empty():
            to_contigs(raw, fasta.keys(), ref.get("contig_aliases") or {})  # raises, naming the contig
    return fasta, annotation


# ---------------------------------------------------------------- reference part
def windows(job: Job) -> None:
    """Tile regions into windows with per-base labels (interp.genome)."""
    from interp.genome.regions import regions_from_config
    from interp.genome.windows import build_windows, write_windows

    fasta, annotation = _reference(job)
    p = job.params
    regions = regions_from_config(p["regions"], fasta, p["reference"].get("contig_aliases") or {})
    w = p["windows"]
    win, bases = build_windows(fasta, regions, annotation, w["width"], w["stride"],
                               w["heldout_fraction"], w["n_blocks"], w["gc_high_quantile"])
    o = job.output
    write_windows(win, bases, o["parquet"], o["tsv"], o["fasta"], o["bases"])


def pretrain_tiny_dnalm(job: Job) -> None:
    """Masked-LM pretraining of the built-in model on the training part of each region (interp.lm)."""
    from interp.embed.registry import load_card
    from interp.genome.fasta import read_fasta
    from interp.genome.regions import regions_from_config
    from interp.genome.windows import heldout_start
    from interp.lm.pretrain import pretrain_tiny_dnalm as pretrain

    # one thread: multi-threaded CPU reductions made weights differ in the last bits between runs
    _set_threads(1)
    p = job.params
    fasta = read_fasta(job.input["fasta"])
    regions = regions_from_config(p["regions"], fasta, p["reference"].get("contig_aliases") or {})
    train, heldout = [], []
    for region in regions:
        cut = heldout_start(region, p["heldout_fraction"])
        seq = fasta[region.contig]
        train.append(seq[region.start:cut].upper())
        heldout.append(seq[cut:region.end].upper())
    card = load_card(job.input["card"])
    metrics = pretrain(train, heldout, card, p.get("overrides") or {}, p["seed"],
                       Path(job.output["checkpoint"]), threads=1,
                       accelerator=p.get("accelerator", "cpu"))
    write_json(metrics, job.output["metrics"])


def _device(name: str) -> str:
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _embed_options(p: dict) -> dict:
    return {"hf_cache": p.get("hf_cache"), "dtype": p.get("dtype", "auto"), "token_budget": p.get("token_budget")}


def embed(job: Job) -> None:
    """Pooled (h5ad) and per-token (zarr) activations of every window (interp.embed)."""
    from interp.embed.registry import load_card, make_embedder
    from interp.embed.run import embed_windows

    _set_threads(job.threads)
    p = job.params
    card = load_card(job.input["card"])
    checkpoint = job.input.get("checkpoint")
    embedder = make_embedder(card, Path(checkpoint) if checkpoint else None, _device(p["device"]),
                             **_embed_options(p))
    win = pl.read_parquet(job.input["windows"])
    bases = pl.read_parquet(job.input["bases"])
    out_dir = Path(job.output["pooled_dir"])
    pooled_out = {layer: out_dir / f"{layer}.h5ad" for layer in p["layers"]}
    token_out = {layer: Path(job.output["tokens_dir"]) / f"{layer}.zarr" for layer in p["token_layers"]}
    Path(job.output["tokens_dir"]).mkdir(parents=True, exist_ok=True)
    stats = embed_windows(embedder, win, bases, p["layers"], p["token_layers"], p["batch_size"],
                          pooled_out, token_out)
    write_json({"model": card["name"], "layers": p["layers"], **stats,
                "provenance": getattr(embedder, "provenance", None),
                "input_counts": getattr(embedder, "input_counts", None)}, job.output["stats"])


def probe(job: Job) -> None:
    """Linear probes per (model, layer, target) with shuffled and 3-mer controls (interp.probe)."""
    import anndata as ad

    from interp.probe import ProbeConfig, probe_table

    _set_threads(job.threads)
    p = job.params
    win = pl.read_parquet(job.input["windows"])
    pooled = {}
    paths = sorted(p for d in job.input["emb_dirs"] for p in Path(d).glob("*.h5ad"))
    for path in paths:
        a = ad.read_h5ad(path)
        pooled[(a.uns["model"], a.uns["layer"])] = np.asarray(a.X, dtype=np.float32)
    cfg = ProbeConfig(C=p["C"], max_iter=p["max_iter"], seed=p["seed"])
    table = probe_table(pooled, win, p["targets"], cfg, n_shuffles=p["n_shuffles"])
    write_table(table, job.output["parquet"], job.output["tsv"])


def sae(job: Job) -> None:
    """TopK SAE on one layer's per-token activations, and its concept table (interp.sae)."""
    from interp.sae.concepts import feature_table
    from interp.sae.config import SAEConfig
    from interp.sae.train import save_sae, train_sae

    _set_threads(1)  # bitwise-reproducible weights (see pretrain_tiny_dnalm)
    p = job.params
    cfg = SAEConfig(n_features=p["n_features"], k=p["k"], lr=p["lr"], epochs=p["epochs"],
                    batch_size=p["batch_size"], seed=p["seed"], heldout_fraction=p["heldout_fraction"])
    store = Path(job.input["tokens_dir"]) / f"{p['layer']}.zarr"
    model, metrics = train_sae(store, cfg, threads=1)
    win = pl.read_parquet(job.input["windows"])
    features = feature_table(model, store, win, top_n=p["top_windows"])
    save_sae(model, job.output["weights"])
    write_table(features, job.output["features"])
    write_json({"model": p["model"], "layer": p["layer"], **metrics}, job.output["metrics"])


def report(job: Job) -> None:
    """HTML + JSON audit report with provenance (interp.report)."""
    from interp.report.build import build_report

    build_report(job.input, job.output, job.params)


# ---------------------------------------------------------------- cohort part
def _cohort_regions(job: Job, fasta: dict, annotation):
    """Regions of the cohort: genes from the gene table (+ flank) and/or a BED file."""
    from interp.genome.regions import gene_regions, read_bed

    c = job.params["cohort"]
    aliases = job.params["reference"].get("contig_aliases") or {}
    regions = []
    if c.get("genes"):
        regions += gene_regions(annotation, c["genes"], c.get("flank", 0), fasta)
    if job.input.get("bed"):
        regions += read_bed(job.input["bed"], fasta, aliases)
    return regions


def simulate_cohort(job: Job) -> None:
    """msprime Out-of-Africa cohort over the cohort region, with planted phenotypes (interp.cohort.simulate)."""
    from interp.cohort.simulate import simulate_cohort as simulate

    fasta, annotation = _reference(job)
    regions = _cohort_regions(job, fasta, annotation)
    if len({r.contig for r in regions}) != 1:
        from interp.errors import InputError

        raise InputError("cohort.simulate: the simulated cohort's regions must lie on one contig")
    from interp.genome.regions import Region

    span = Region(name="+".join(r.name for r in regions), contig=regions[0].contig,
                  start=min(r.start for r in regions), end=max(r.end for r in regions))
    c = job.params["cohort"]
    from interp.cohort.simulate import simulate_ancestry_panel

    sim = {k: v for k, v in c["simulate"].items() if k != "ancestry_panel"}
    truth = simulate(fasta, annotation, span, c["populations"], job.params["seed"], sim,
                     Path(job.output["vcf"]), Path(job.output["samples"]), Path(job.output["truth"]))
    panel = c["simulate"]["ancestry_panel"]
    if "panel" in job.output:
        # written even with loci = 0 would be wrong: the rule only asks for it when loci > 0
        info = simulate_ancestry_panel(c["populations"], job.params["seed"], panel["loci"], panel["locus_length"],
                                       Path(job.output["panel"]))
        truth["ancestry_panel"] = info
        write_json(truth, job.output["truth"])


def _samples(job: Job) -> pl.DataFrame:
    from interp.cohort.vcf import read_samples_tsv

    c = job.params["cohort"]
    return read_samples_tsv(job.input["samples"], c["phenotypes"], c["covariates"], c.get("population_column"))


def check_cohort(job: Job) -> None:
    """Validate VCF + samples.tsv against the reference before any work; keep an indexed copy of the VCF."""
    import shutil

    from interp.cohort.vcf import ensure_indexed, validate_cohort

    fasta, annotation = _reference(job)
    regions = _cohort_regions(job, fasta, annotation)
    samples = _samples(job)
    summary = validate_cohort(job.input["vcf"], samples, fasta,
                              job.params["reference"].get("contig_aliases") or {}, regions,
                              job.params["cohort"]["phenotypes"], job.params["n_folds"])
    # an indexed bgzipped copy, whatever the user gave (plain, gzip, bgzip; indexed or not)
    staging = Path(job.output["vcf"]).parent / ".staging"
    indexed = ensure_indexed(job.input["vcf"], out_dir=staging)
    index = Path(f"{indexed}.tbi") if Path(f"{indexed}.tbi").exists() else Path(f"{indexed}.csi")
    for src, dst in ((indexed, job.output["vcf"]), (index, job.output["tbi"])):
        tmp = Path(dst).with_name(f".{Path(dst).name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    shutil.rmtree(staging, ignore_errors=True)
    summary["regions"] = [f"{r.name}={r.contig}:{r.start}-{r.end}" for r in regions]
    if job.input.get("panel"):
        summary["ancestry_panel"] = _check_panel(job.input["panel"], samples)
    write_json(summary, job.output["summary"])


def _check_panel(panel_vcf: str, samples: pl.DataFrame) -> dict:
    """The ancestry marker VCF must hold every sample of samples.tsv (extra samples are ignored)."""
    from interp.cohort.vcf import vcf_samples
    from interp.errors import InputError

    present = set(vcf_samples(panel_vcf))
    missing = [s for s in samples["sample_id"].to_list() if s not in present]
    if missing:
        shown = ", ".join(missing[:20])
        raise InputError(f"{panel_vcf}: {len(missing)} sample(s) of samples.tsv are not in the ancestry VCF: "
                         f"{shown}{' ...' if len(missing) > 20 else ''}")
    return {"vcf": panel_vcf, "n_samples": len(present)}


def _genotypes(job: Job, fasta: dict, samples: pl.DataFrame):
    from interp.cohort.vcf import read_genotypes

    return read_genotypes(job.input["vcf"], samples=samples["sample_id"].to_list(), regions=None,
                          fasta_contigs=list(fasta), aliases=job.params["reference"].get("contig_aliases") or {})


def haplotypes(job: Job) -> None:
    """Per-sample, per-haplotype window sequences, deduplicated by hash (interp.cohort.haplotypes)."""
    from interp.cohort.haplotypes import haplotype_sequences, haplotype_windows

    fasta, annotation = _reference(job)
    regions = _cohort_regions(job, fasta, annotation)
    samples = _samples(job)
    geno = _genotypes(job, fasta, samples)
    c = job.params["cohort"]
    assignments, distinct = [], []
    for region in regions:
        seqs = haplotype_sequences(fasta, geno, region, missing=c["missing"], unphased=c["unphased"])
        a, d = haplotype_windows(seqs, region, geno, c["window"]["width"], c["window"]["stride"])
        assignments.append(a)
        distinct.append(d)
    contig_of = {r.name: r.contig for r in regions}
    assign = pl.concat(assignments).with_columns(
        pl.col("region").replace_strict(contig_of, return_dtype=pl.String).alias("contig"))
    assign = assign.with_columns(
        (pl.col("contig") + ":" + pl.col("start").cast(pl.String) + "-" + pl.col("end").cast(pl.String))
        .alias("window_id"))
    dist = (pl.concat(distinct).group_by("seq_hash").agg(pl.col("sequence").first(),
                                                         pl.col("n_haplotypes").sum())
            .sort("seq_hash"))
    # window_index restarts per region: make it unique across regions, in genome order
    order = (assign.select("region", "start").unique().sort(["region", "start"])
             .with_row_index("cohort_window").with_columns(pl.col("cohort_window").cast(pl.Int64)))
    assign = assign.join(order, on=["region", "start"]).drop("window_index").rename(
        {"cohort_window": "window_index"}).sort(["sample", "hap", "window_index"])
    write_table(assign, job.output["assignments"])
    write_table(dist, job.output["sequences"])
    n_windows = assign.height
    write_json({"n_haplotype_windows": n_windows, "n_windows": order.height, "n_distinct": dist.height,
                "dedup_ratio": n_windows / max(dist.height, 1), "missing_policy": c["missing"],
                "unphased_policy": c["unphased"], "n_samples": samples.height,
                "regions": [f"{r.name}={r.contig}:{r.start}-{r.end}" for r in regions]},
               job.output["stats"])


def ancestry(job: Job) -> None:
    """Genotype AnnData with PCs, UMAP and clusters (interp.cohort.ancestry)."""
    from interp.cohort.ancestry import genotype_anndata, genotype_pca

    _set_threads(job.threads)
    fasta, annotation = _reference(job)
    regions = _cohort_regions(job, fasta, annotation)
    samples = _samples(job)
    geno = _genotypes(job, fasta, samples)
    adata = genotype_anndata(geno, samples)
    keep = np.zeros(adata.n_vars, dtype=bool)
    pos0 = adata.var["pos"].to_numpy() - 1
    contig = adata.var["contig"].astype(str).to_numpy()
    for r in regions:
        keep |= (contig == r.contig) & (pos0 >= r.start) & (pos0 < r.end)
    adata = adata[:, keep].copy()
    c = job.params["cohort"]
    missing_rate = np.isnan(np.asarray(adata.X, dtype=np.float32)).mean(axis=1)
    n_pcs = max(c["n_pcs"], 2)
    if job.input.get("panel"):
        # PCs from genome-wide-like markers, so the region's own (maybe causal) variants do not define them
        from interp.cohort.vcf import read_genotypes

        panel_geno = read_genotypes(job.input["panel"], samples=samples["sample_id"].to_list())
        pcs = genotype_pca(genotype_anndata(panel_geno, samples), maf_min=c["maf"], n_pcs=n_pcs,
                           seed=job.params["seed"])
        pcs = pcs[adata.obs_names].copy()
        keep_var = (adata.var["maf"].to_numpy() >= c["maf"]) & (adata.var["missing_rate"].to_numpy() <= 0.5)
        adata = adata[:, keep_var].copy()
        adata.layers["dosage"] = adata.X.copy()
        for key in ("X_pca", "X_umap"):
            adata.obsm[key] = pcs.obsm[key]
        adata.obs["cluster"] = pcs.obs["cluster"].to_numpy()
        adata.uns["pca"] = dict(pcs.uns["pca"])
        adata.uns["ancestry_source"] = {"vcf": Path(job.input["panel"]).name, "n_markers": int(pcs.n_vars)}
    else:
        adata = genotype_pca(adata, maf_min=c["maf"], n_pcs=n_pcs, seed=job.params["seed"])
        adata.uns["ancestry_source"] = {"vcf": "cohort", "n_markers": int(adata.n_vars)}
    adata.obs["missing_rate"] = missing_rate
    write_h5ad(adata, job.output["genotypes"])


def embed_cohort(job: Job) -> None:
    """Embed each distinct haplotype window once, then pool per sample and per (sample, window)."""
    import time

    import anndata as ad
    import torch

    from interp.embed.registry import load_card, make_embedder
    from interp.embed.run import embed_sequences
    from interp.sae.train import load_sae

    _set_threads(job.threads)
    t0 = time.perf_counter()
    p = job.params
    card = load_card(job.input["card"])
    ckpt = job.input.get("checkpoint")
    embedder = make_embedder(card, Path(ckpt) if ckpt else None, _device(p["device"]), **_embed_options(p))
    seqs = pl.read_parquet(job.input["sequences"]).sort("seq_hash")
    assign = pl.read_parquet(job.input["assignments"])
    geno = ad.read_h5ad(job.input["genotypes"])
    sae_model = load_sae(job.input["sae"]).eval()

    def sae_encode(acts: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return sae_model.encode(torch.from_numpy(np.ascontiguousarray(acts))).numpy()

    pooled = embed_sequences(embedder, seqs["sequence"].to_list(), p["layers"], p["batch_size"],
                             token_transforms={"sae": (p["sae_layer"], sae_encode)})
    index_of = {h: i for i, h in enumerate(seqs["seq_hash"].to_list())}
    samples = geno.obs_names.tolist()
    windows = (assign.select("window_index", "window_id", "region", "contig", "start", "end").unique()
               .sort("window_index"))
    n_s, n_w = len(samples), windows.height
    # seq_index[s, w, h]: row of the distinct-sequence matrix for sample s, window w, haplotype h
    seq_index = np.full((n_s, n_w, 2), -1, dtype=np.int64)
    s_pos = {s: i for i, s in enumerate(samples)}
    a = assign.filter(pl.col("sample").is_in(samples))
    seq_index[a["sample"].replace_strict(s_pos, return_dtype=pl.Int64).to_numpy(),
              a["window_index"].to_numpy(), a["hap"].to_numpy() - 1] = (
        a["seq_hash"].replace_strict(index_of, return_dtype=pl.Int64).to_numpy())
    if (seq_index < 0).any():
        raise ValueError("some (sample, window, haplotype) has no sequence")
    gc = np.array([_gc(s) for s in seqs["sequence"].to_list()])
    obs = geno.obs.copy()
    obs["gc"] = gc[seq_index].mean(axis=(1, 2))
    out_dir = Path(job.output["out_dir"])
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp_dir.exists():
        import shutil

        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir(parents=True)
    var_w = windows.to_pandas().set_index("window_id", drop=False)
    for name, mat in pooled.items():
        per = mat[seq_index]  # [n_samples, n_windows, 2, d]
        d = per.shape[-1]
        by_window = per.mean(axis=2)  # mean of the two haplotypes
        sample_level = ad.AnnData(X=by_window.mean(axis=1).astype(np.float32), obs=obs.copy())
        sample_level.obsm["X_pca"] = np.asarray(geno.obsm["X_pca"])
        if p.get("keep_haplotypes"):
            sample_level.obsm["hap1"] = per[:, :, 0].mean(axis=1)
            sample_level.obsm["hap2"] = per[:, :, 1].mean(axis=1)
        layer = p["sae_layer"] if name == "sae" else name
        kind = "sae" if name == "sae" else "embedding"
        sample_level.uns.update({"model": card["name"], "layer": layer, "kind": kind})
        # sample-level SAE features feed the per-feature leakage audit, not a probe of their own
        sample_level.write_h5ad(tmp_dir / (f"{name}.samples.h5ad" if kind == "embedding" else "sae.features.h5ad"))
        var = var_w.loc[np.repeat(var_w.index.to_numpy(), d)].reset_index(drop=True)
        var["dim"] = np.tile(np.arange(d), n_w)
        prefix = "f" if kind == "sae" else "dim"
        var.index = [f"{card['name']}/{layer}/{w}/{prefix}{j}" for w, j in zip(var["window_id"], var["dim"],
                                                                                strict=True)]
        wide = ad.AnnData(X=by_window.reshape(n_s, n_w * d).astype(np.float32), obs=obs.copy(), var=var)
        wide.obsm["X_pca"] = np.asarray(geno.obsm["X_pca"])
        wide.uns.update({"model": card["name"], "layer": layer, "kind": kind})
        wide.write_h5ad(tmp_dir / f"{name}.windows.h5ad")
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp_dir.rename(out_dir)
    n_hw = int(assign.height)
    write_json({"model": card["name"], "layers": p["layers"], "n_haplotype_windows": n_hw,
                "n_distinct_sequences": int(seqs.height), "dedup_ratio": n_hw / max(int(seqs.height), 1),
                "seconds": round(time.perf_counter() - t0, 1)}, job.output["stats"])


def _gc(seq: str) -> float:
    acgt = sum(seq.count(b) for b in "ACGT")
    return (seq.count("G") + seq.count("C")) / acgt if acgt else 0.0


def _confounders(obs, covariates: list[str]) -> dict[str, np.ndarray]:
    """Per-sample confounders the audit checks beside ancestry."""
    out = {}
    for name in ["gc", "missing_rate", *covariates]:
        if name in obs:
            col = obs[name]
            out[name] = (col.astype("category").cat.codes.to_numpy().astype(float)
                         if col.dtype == object or str(col.dtype) == "category" else col.to_numpy(dtype=float))
    return out


def audit(job: Job) -> None:
    """Ancestry / confound audit per phenotype x model x layer (interp.audit)."""
    import anndata as ad

    from interp.audit import AuditConfig, audit_phenotype, feature_attribution

    _set_threads(job.threads)
    p = job.params
    cfg = AuditConfig(n_folds=p["n_folds"], permutations=p["permutations"], bootstrap=p["bootstrap"], C=p["C"],
                      min_auroc=p["min_auroc"], alpha=p["alpha"], max_drop=p["max_drop"],
                      ancestry_margin=p["ancestry_margin"], seed=p["seed"])
    pop_col = p.get("population_column") or "population"
    rows, details = [], []
    for d in sorted(job.input["emb_dirs"]):
        for path in sorted(Path(d).glob("*.samples.h5ad")):
            a = ad.read_h5ad(path)
            X = np.asarray(a.X, dtype=np.float64)
            pcs = np.asarray(a.obsm["X_pca"], dtype=np.float64)
            population = (a.obs[pop_col].astype(str).to_numpy() if pop_col in a.obs
                          else np.array(["all"] * a.n_obs))
            confounders = _confounders(a.obs, p["covariates"])
            sae_path = Path(d) / "sae.features.h5ad"
            sae_feats = ad.read_h5ad(sae_path) if sae_path.exists() and a.uns["layer"] == p["sae_layer"] else None
            for phenotype in p["phenotypes"]:
                y = a.obs[phenotype].to_numpy(dtype=float)
                res = audit_phenotype(X, y, population, pcs, cfg, confounders=confounders)
                attribution = feature_attribution(X, y, pcs, population)
                row = {"phenotype": phenotype, "model": a.uns["model"], "layer": a.uns["layer"]}
                row.update({k: v for k, v in res.items() if np.isscalar(v) or v is None})
                row["reasons"] = "; ".join(res.get("reasons", []))
                rows.append(row)
                top_anc = attribution.sort("partial_r2_ancestry", descending=True).head(10)
                top_phe = attribution.sort("partial_r2_phenotype", descending=True).head(10)
                sae_leak = None
                if sae_feats is not None:
                    F = np.asarray(sae_feats.X, dtype=np.float64)
                    alive = F.std(axis=0) > 0
                    fa = feature_attribution(F[:, alive], y, pcs, population).with_columns(
                        pl.Series("feature", np.flatnonzero(alive)))
                    sae_leak = {
                        "n_features_alive": int(alive.sum()),
                        "n_features_population_auroc_over_0.8": int((fa["ancestry_auroc_feature"] > 0.8).sum()),
                        "n_ancestry_dominated": int((fa["partial_r2_ancestry"] > fa["partial_r2_phenotype"]).sum()),
                        "top_leaky": fa.sort("ancestry_auroc_feature", descending=True).head(10).to_dicts(),
                        "top_phenotype": fa.sort("partial_r2_phenotype", descending=True).head(10).to_dicts()}
                details.append({
                    **{k: row[k] for k in ("phenotype", "model", "layer", "verdict")},
                    "reasons": res.get("reasons", []), "thresholds": res.get("thresholds"),
                    "by_population": _mask_small_groups(res.get("by_population", [])),
                    "between_group_difference": res.get("between_group_difference"),
                    "confounders": res.get("confounders"),
                    "attribution": {
                        "n_features": attribution.height,
                        "n_ancestry_dominated": int((attribution["partial_r2_ancestry"]
                                                     > attribution["partial_r2_phenotype"]).sum()),
                        "top_ancestry": top_anc.to_dicts(), "top_phenotype": top_phe.to_dicts()},
                    "sae_feature_leakage": sae_leak,
                })
    table = pl.DataFrame(rows).sort(["phenotype", "model", "layer"])
    write_table(table, job.output["parquet"], job.output["tsv"])
    write_json(details, job.output["details"])


def _mask_small_groups(groups: list[dict]) -> list[dict]:
    """Groups of fewer than 5 samples keep their name only; counts shown as "<5"."""
    out = []
    for g in groups:
        n = g.get("n", 0)
        if isinstance(n, (int, np.integer)) and n < 5:
            out.append({"population": g.get("population"), "n": "<5"})
        else:
            out.append(g)
    return out


def rank(job: Job) -> None:
    """Rank variants and model-derived window features per phenotype, adjusted for PCs (interp.rank)."""
    import anndata as ad

    from interp.rank import (
        adjusted_association,
        benjamini_hochberg,
        rank_features,
        stability,
        variant_association,
    )

    _set_threads(job.threads)
    p = job.params
    geno = ad.read_h5ad(job.input["genotypes"])
    fasta, annotation = _reference(job)
    n_pcs = geno.obsm["X_pca"].shape[1]
    var = geno.var
    v_contig = var["contig"].astype(str).to_numpy()
    v_pos0 = var["pos"].to_numpy().astype(np.int64) - 1
    v_ids = var.index.astype(str).to_numpy()
    tables = []
    for phenotype in p["phenotypes"]:
        obs = geno.obs
        y = obs[phenotype].to_numpy(dtype=float)
        named = {k: v for k, v in _confounders(obs, p["covariates"]).items() if k in p["covariates"]}
        cov = np.hstack([np.asarray(geno.obsm["X_pca"])[:, :n_pcs]]
                        + [v[:, None] for v in named.values() if np.nanstd(v) > 0])
        dosage = np.asarray(geno.layers["dosage"], dtype=np.float64)
        vt = variant_association(dosage, y, cov, binary=_is_binary(y))
        vt = vt.with_columns(
            pl.Series("feature", v_ids), pl.lit("variant").alias("kind"), pl.lit("").alias("model"),
            pl.lit("").alias("layer"), pl.Series("contig", v_contig), pl.Series("start", v_pos0),
            pl.Series("end", v_pos0 + 1))
        # stability ranks by the linear test: the same ordering as logistic in practice, 50x cheaper
        vt = vt.with_columns(pl.Series("stability", stability(dosage, y, cov, p["top_k"], p["resamples"],
                                                             p["seed"], kind="variant_linear")))
        tables.append(_finish_rank(vt, phenotype, benjamini_hochberg, rank_features))
        for d in sorted(job.input["emb_dirs"]):
            for path in sorted(Path(d).glob("*.windows.h5ad")):
                w = ad.read_h5ad(path)
                F = np.asarray(w.X, dtype=np.float64)
                ft = adjusted_association(F, y, cov)
                stab = stability(F, y, cov, p["top_k"], p["resamples"], p["seed"], kind="feature")
                ft = ft.with_columns(
                    pl.Series("feature", w.var_names.astype(str).to_numpy()), pl.lit(w.uns["kind"]).alias("kind"),
                    pl.lit(w.uns["model"]).alias("model"), pl.lit(w.uns["layer"]).alias("layer"),
                    pl.Series("contig", w.var["contig"].astype(str).to_numpy()),
                    pl.Series("start", w.var["start"].to_numpy().astype(np.int64)),
                    pl.Series("end", w.var["end"].to_numpy().astype(np.int64)),
                    pl.Series("stability", stab))
                tables.append(_finish_rank(ft, phenotype, benjamini_hochberg, rank_features))
    table = pl.concat(tables, how="diagonal_relaxed")
    table = _annotate_loci(table, annotation, v_contig, v_pos0, v_ids)
    table = table.sort(["phenotype", "kind", "rank"])
    write_table(table, job.output["parquet"], job.output["tsv"])


def _is_binary(y: np.ndarray) -> bool:
    return set(np.unique(y[~np.isnan(y)]).tolist()) <= {0.0, 1.0}


def _finish_rank(t: pl.DataFrame, phenotype: str, bh, rank_features) -> pl.DataFrame:
    """BH q-values and 1-based ranks within one (phenotype, kind) family of tests."""
    t = t.with_columns(pl.Series("q", bh(t["p"].to_numpy())), pl.lit(phenotype).alias("phenotype"))
    return rank_features(t)


def _annotate_loci(t: pl.DataFrame, annotation, v_contig, v_pos0, v_ids) -> pl.DataFrame:
    """Where each feature sits: its window (a variant's is the model window holding it), the gene and
    exon it overlaps, and the variants inside it (nearest variants, up to 5)."""
    model_windows = (t.filter(pl.col("kind") != "variant").select("contig", "start", "end").unique()
                     .sort(["contig", "start"]))

    def holding_window(contig: str, pos: int) -> str:
        hit = model_windows.filter((pl.col("contig") == contig) & (pl.col("start") <= pos) & (pl.col("end") > pos))
        return "" if hit.is_empty() else f"{contig}:{hit['start'][0]}-{hit['end'][0]}"

    rows = []
    for kind_is_variant, contig, start, end in (
            t.select((pl.col("kind") == "variant").alias("v"), "contig", "start", "end").unique().iter_rows()):
        gene, exon = "", False
        if annotation is not None:
            hit = annotation.filter((pl.col("contig") == contig) & (pl.col("start") < end) & (pl.col("end") > start))
            exon = bool((hit["feature"] == "exon").any())
            gene = ",".join(sorted(set(hit["gene"].to_list())))
        inside = v_ids[(v_contig == contig) & (v_pos0 >= start) & (v_pos0 < end)]
        window = holding_window(contig, start) if kind_is_variant else f"{contig}:{start}-{end}"
        rows.append({"v": kind_is_variant, "contig": contig, "start": start, "end": end, "gene": gene,
                     "exon_overlap": exon, "nearest_variants": ",".join(inside[:5].tolist()), "window": window})
    loci = pl.DataFrame(rows, schema_overrides={"start": pl.Int64, "end": pl.Int64})
    t = t.with_columns(pl.col("start").cast(pl.Int64), pl.col("end").cast(pl.Int64),
                       (pl.col("kind") == "variant").alias("v"))
    return t.join(loci, on=["v", "contig", "start", "end"], how="left").drop("v")
