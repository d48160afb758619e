"""One function per Snakemake rule: read the rule's inputs, call the library, write its outputs.

Each stage takes a `Job` (the rule's named inputs and outputs, its settings, its threads) and
touches nothing else. Rule `X` in `workflow/rules/*.smk` calls `stages.X`; the science lives in the
modules each stage calls (named in its docstring), and their tests in `tests/test_<module>.py`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=_json_default)
        fh.write("\n")
    os.replace(tmp, path)


def write_table(df: pl.DataFrame, parquet: str | Path | None = None, tsv: str | Path | None = None) -> None:
    """Write a polars table as parquet and/or TSV, each atomically."""
    for path, writer in ((parquet, "parquet"), (tsv, "tsv")):
        if path is None:
            continue
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        if writer == "parquet":
            df.write_parquet(tmp)
        else:
            flat = df.with_columns([pl.col(c).cast(pl.String) for c, t in df.schema.items()
                                    if isinstance(t, (pl.List, pl.Struct))])
            flat.write_csv(tmp, separator="\t")
        os.replace(tmp, path)


def write_h5ad(adata, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.h5ad")
    adata.write_h5ad(tmp)
    os.replace(tmp, path)


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
        annotation = to_contigs(annotation, fasta.keys(), ref.get("contig_aliases") or {})
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

    _set_threads(job.threads)
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
                       Path(job.output["checkpoint"]), threads=job.threads,
                       accelerator=p.get("accelerator", "cpu"))
    write_json(metrics, job.output["metrics"])


def _device(name: str) -> str:
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def embed(job: Job) -> None:
    """Pooled (h5ad) and per-token (zarr) activations of every window (interp.embed)."""
    from interp.embed.registry import load_card, make_embedder
    from interp.embed.run import embed_windows

    _set_threads(job.threads)
    p = job.params
    card = load_card(job.input["card"])
    checkpoint = job.input.get("checkpoint")
    embedder = make_embedder(card, Path(checkpoint) if checkpoint else None, _device(p["device"]))
    win = pl.read_parquet(job.input["windows"])
    bases = pl.read_parquet(job.input["bases"])
    out_dir = Path(job.output["pooled_dir"])
    pooled_out = {layer: out_dir / f"{layer}.h5ad" for layer in p["layers"]}
    token_out = {layer: Path(job.output["tokens_dir"]) / f"{layer}.zarr" for layer in p["token_layers"]}
    Path(job.output["tokens_dir"]).mkdir(parents=True, exist_ok=True)
    stats = embed_windows(embedder, win, bases, p["layers"], p["token_layers"], p["batch_size"],
                          pooled_out, token_out)
    write_json({"model": card["name"], **stats}, job.output["stats"])


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

    _set_threads(job.threads)
    p = job.params
    cfg = SAEConfig(n_features=p["n_features"], k=p["k"], lr=p["lr"], epochs=p["epochs"],
                    batch_size=p["batch_size"], seed=p["seed"], heldout_fraction=p["heldout_fraction"])
    store = Path(job.input["tokens_dir"]) / f"{p['layer']}.zarr"
    model, metrics = train_sae(store, cfg, threads=job.threads)
    win = pl.read_parquet(job.input["windows"])
    features = feature_table(model, store, win, top_n=p["top_windows"])
    save_sae(model, job.output["weights"])
    write_table(features, job.output["features"])
    write_json({"model": p["model"], "layer": p["layer"], **metrics}, job.output["metrics"])


def report(job: Job) -> None:
    """HTML + JSON audit report with provenance (interp.report)."""
    from interp.report.build import build_report

    build_report(job.input, job.output, job.params)
