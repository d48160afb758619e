"""One function per Snakemake rule: read the rule's inputs, call the library, write its outputs.

Each stage takes a `Job` (the rule's named inputs and outputs, its settings, its threads) and
touches nothing else. Rule `X` in `workflow/rules/*.smk` calls `stages.X`; the science lives in the
modules each stage calls (named in its docstring), and their tests in `tests/test_<module>.py`.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from interp.cohort.config import CohortConfig
from interp.config import settings_from_section
from interp.embed.config import EmbedConfig
from interp.errors import InputError
from interp.io import atomic_dir, atomic_path, write_text_atomic

#: keys of the probe / rank sections read by the stages themselves (or the rules, the report), not fit settings
PROBE_NOT_FIT = ("targets", "n_shuffles", "block_gap", "sae_top_k", "sae_bootstrap", "sae_sample_folds",
                 "sae_C_grid")
RANK_NOT_FIT = ("report_top", "variant_effect")
#: audit keys read by the stage, not by interp.audit.AuditConfig
AUDIT_NOT_FIT = ("by_region",)

#: params of the SAE rules next to the `sae` section's keys: the job's own (the run's seed is passed as seed)
SAE_JOB_KEYS = ("model", "log_dir", "seed", "accelerator")
#: params of the cohort embedding rules next to the `embed` section's keys: the job's own
EMBED_COHORT_JOB_KEYS = ("sae_layer", "keep_haplotypes")
#: params of the variant_effect rule next to the `embed` section's keys: the job's own
VARIANT_EFFECT_JOB_KEYS = ("width", "reference_cache")

STAGES = (
    "windows", "pretrain_tiny_dnalm", "embed", "probe", "probe_sae", "sae", "sae_sweep", "sae_frontier",
    "sae_steer", "sae_atlas", "simulate_cohort", "place_cohort", "check_cohort", "haplotypes_shard", "haplotypes", "ancestry",
    "embed_cohort_shard", "embed_cohort",
    "variant_effect", "audit", "rank", "report", "calibration_replicate", "calibration", "planted_genome",
    "planted_calibration",
)


#: a list input or output of at least this many paths travels compacted in the JSON job (`compact_paths`)
COMPACT_MIN_PATHS = 8


def compact_paths(paths: list[str]) -> list[str] | dict[str, Any]:
    """A long list of paths as {"prefix", "suffix", "stems"}, each path = prefix + stem + suffix (`expand_paths`
    inverts it). A rule's JSON job is one argument of its shell command (`bash -c '<command>'`), which Linux caps
    at 128 KiB: listed in full, the 800 shards of a gather or the 1,000+ replicates of the calibration suite
    overran it and the job failed with "Argument list too long" before the stage started."""
    paths = [str(p) for p in paths]
    if len(paths) < COMPACT_MIN_PATHS:
        return paths
    prefix = os.path.commonprefix(paths)
    rest = [p[len(prefix):] for p in paths]
    suffix = os.path.commonprefix([r[::-1] for r in rest])[::-1]
    return {"prefix": prefix, "suffix": suffix, "stems": [r[:len(r) - len(suffix)] for r in rest]}


def expand_paths(value: Any) -> Any:
    """The list of paths a `compact_paths` dict stands for; any other value as it is."""
    if isinstance(value, dict) and set(value) == {"prefix", "suffix", "stems"}:
        return [f"{value['prefix']}{stem}{value['suffix']}" for stem in value["stems"]]
    return value


def job_json(input: dict[str, Any], output: dict[str, Any], params: Any, threads: int) -> str:
    """The JSON job of a rule (`Job.from_json` reads it): named inputs and outputs (a path or a list of paths,
    long lists compacted), settings, threads."""

    def plain(named: dict[str, Any]) -> dict[str, Any]:
        return {k: v if isinstance(v, str) else compact_paths(list(v)) for k, v in named.items()}

    return json.dumps({"input": plain(input), "output": plain(output), "params": params, "threads": threads},
                      sort_keys=True)


class JobPart(dict):
    """A job's input, output or params: a key the stage needs but the job lacks (a job typed by hand) is an
    InputError naming it, not a KeyError traceback."""

    def __init__(self, part: str, items: dict) -> None:
        super().__init__(items)
        self.part = part

    def __missing__(self, key: str) -> Any:
        raise InputError(f"stage job: no {self.part} {key!r} (the job has {', '.join(map(repr, self)) or 'none'})")


@dataclass
class Job:
    input: dict[str, Any]
    output: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    threads: int = 1

    @classmethod
    def from_json(cls, text: str) -> Job:
        """The JSON job a rule passes (`{input, output, params, threads}`); InputError if it is not one."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"stage job: not valid JSON ({exc}); expected {{input, output, params, threads}}") from None
        if not isinstance(data, dict) or not {"input", "output"} <= set(data):
            raise InputError(f"stage job: expected a JSON object with input, output, params and threads, got "
                             f"{text[:80]!r}")
        bad = [k for k in ("input", "output", "params") if data.get(k) is not None and not isinstance(data[k], dict)]
        if bad:
            raise InputError(f"stage job: {', '.join(bad)} must be objects, got {text[:80]!r}")
        threads = data.get("threads", 1)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InputError(f"stage job: threads must be an integer >= 1, got {text[:80]!r}")
        named = {k: {name: expand_paths(v) for name, v in (data.get(k) or {}).items()} for k in ("input", "output")}
        return cls(input=JobPart("input", named["input"]), output=JobPart("output", named["output"]),
                   params=JobPart("params", data.get("params") or {}), threads=threads)


def write_json(obj: Any, path: str | Path) -> None:
    """Write JSON atomically (temp file in the same folder, then rename), keys sorted."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_table(df: pl.DataFrame, parquet: str | Path | None = None, tsv: str | Path | None = None) -> None:
    """Write a polars table as parquet and/or TSV, each atomically; both are written under temporary names
    before either is renamed, so a failed write leaves neither new file beside an old one.

    In the TSV a list or struct column holds each value as JSON text (polars cannot cast them to strings).
    """
    with ExitStack() as renames:  # each temporary file is renamed into place only once all are written
        for path, writer in ((parquet, "parquet"), (tsv, "tsv")):
            if path is None:
                continue
            tmp = renames.enter_context(atomic_path(path))
            if writer == "parquet":
                df.write_parquet(tmp)
            else:
                nested = [c for c, t in df.schema.items() if isinstance(t, (pl.List, pl.Struct))]
                flat = df.with_columns([pl.Series(c, [None if v is None else json.dumps(v, default=str)
                                                      for v in df[c].to_list()], dtype=pl.String) for c in nested])
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


def _reference(job: Job, genes: list[str] | None = None, spans: list[tuple[str, int, int]] | None = None):
    """(indexed FASTA, annotation frame or None) with annotation contigs mapped to the FASTA's names.

    The FASTA is an `interp.genome.fasta.Reference`: a mapping contig -> sequence supporting `len` and
    slicing, fetched through the .fai only where used (a missing index goes to `reference_cache` when
    the FASTA's folder is read-only). See `_annotation` for `genes` and `spans`.
    """
    from interp.genome.fasta import open_reference

    fasta = open_reference(job.input["fasta"], job.params.get("reference_cache"))
    return fasta, _annotation(job, fasta, genes, spans)


def _annotation(job: Job, fasta, genes: list[str] | None = None, spans: list[tuple[str, int, int]] | None = None):
    """The annotation (None without one) with contigs mapped to the FASTA's names; with `genes` or `spans`
    [(FASTA contig, start, end), 0-based half-open] only the transcripts of those genes and those overlapping
    those spans (`interp.genome.annotation.KeepStudied`: memory follows what is studied, not the file)."""
    from interp.genome.annotation import KeepStudied, read_annotation, to_contigs
    from interp.genome.fasta import resolve_contig

    if not job.input.get("annotation"):
        return None
    ref = job.params["reference"]
    aliases = ref.get("contig_aliases") or {}
    keep = None if genes is None and spans is None else KeepStudied(fasta.keys(), aliases, genes or (), spans or ())
    raw = read_annotation(job.input["annotation"], ref.get("annotation_format", "auto"), keep=keep)
    # a genome-wide annotation with a one-chromosome FASTA is fine; one matching nothing is not
    annotation = to_contigs(raw, fasta.keys(), aliases, drop_missing=True)
    if keep is not None:  # raw holds the studied transcripts only: whether any contig of the file matched
        if keep.contigs_seen and not keep.contigs_matched:
            resolve_contig(keep.contigs_seen[0], list(fasta.keys()), aliases, source="annotation")  # raises
    elif annotation.is_empty() and not raw.is_empty():
        to_contigs(raw, fasta.keys(), aliases)  # raises, naming the contig
    return annotation


# ---------------------------------------------------------------- reference part
def windows(job: Job) -> None:
    """Tile regions into windows with per-base labels (interp.genome)."""
    from interp.genome.fasta import open_reference
    from interp.genome.regions import regions_from_config
    from interp.genome.windows import build_windows, write_windows

    p = job.params
    fasta = open_reference(job.input["fasta"], p.get("reference_cache"))
    regions = regions_from_config(p["regions"], fasta, p["reference"].get("contig_aliases") or {})
    annotation = _annotation(job, fasta, spans=[(r.contig, r.start, r.end) for r in regions])
    w = p["windows"]
    win, bases = build_windows(fasta, regions, annotation, w["width"], w["stride"],
                               w["heldout_fraction"], w["n_blocks"], w["gc_high_quantile"])
    o = job.output
    write_windows(win, bases, o["parquet"], o["tsv"], o["fasta"], o["bases"])
    if o.get("reference"):
        write_json(_reference_stats(fasta, regions), o["reference"])


def _reference_stats(fasta, regions) -> dict:
    """What the model saw of the reference: IUPAC codes in the regions (read as N), bases, contigs."""
    return {"fasta": str(fasta.path), "n_contigs": len(fasta), "n_region_bases": sum(r.length for r in regions),
            "iupac_to_n": fasta.ambiguity_counts(regions)}


def pretrain_tiny_dnalm(job: Job) -> None:
    """Masked-LM pretraining of the built-in model on the training part of each region (interp.lm)."""
    from interp.embed.registry import load_card
    from interp.genome.fasta import open_reference
    from interp.genome.regions import regions_from_config
    from interp.genome.windows import lm_split
    from interp.lm.pretrain import pretrain_tiny_dnalm as pretrain

    # one thread: multi-threaded CPU reductions made weights differ in the last bits between runs
    _set_threads(1)
    p = job.params
    fasta = open_reference(job.input["fasta"], p.get("reference_cache"))
    regions = regions_from_config(p["regions"], fasta, p["reference"].get("contig_aliases") or {})
    train, heldout = lm_split(fasta, regions, p["heldout_fraction"])
    card = load_card(job.input["card"])
    metrics = pretrain(train, heldout, card, p.get("overrides") or {}, p["seed"],
                       Path(job.output["checkpoint"]), threads=1,
                       accelerator=_accelerator(p))
    write_json(metrics, job.output["metrics"])


#: what a job that was told to use a GPU says when it sees none
NO_GPU = ("embed.device is 'cuda', but this job sees no CUDA GPU (torch.cuda.is_available() is false: a node "
          "without a GPU, no GPU requested from the scheduler, or a CPU build of torch); set embed.device: auto "
          "(a GPU where there is one) or cpu, or run the job where a GPU is visible")


def _device(name: str) -> str:
    """The torch device of embed.device ("auto": cuda where visible, else cpu); InputError (NO_GPU) for cuda
    where none is visible (torch's own error is a traceback)."""
    import torch

    from interp.embed.devices import claim_one_gpu

    if name in ("auto", "cuda"):
        claim_one_gpu()  # a job given several GPUs (grouped shards): one of its own, before CUDA starts
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError(NO_GPU)
    return name


def _accelerator(params: dict) -> str:
    """The Lightning accelerator of a training job's params ("gpu" where embed.device is cuda, else "cpu");
    InputError (NO_GPU) for "gpu" where no GPU is visible."""
    value = params.get("accelerator", "cpu")
    if value == "gpu":
        _device("cuda")
    return value


def _embed_settings(params: dict, ignore: tuple[str, ...] = ()) -> EmbedConfig:
    """EmbedConfig of an embedding rule's params: the `embed` section's keys and the job's own (`ignore`)."""
    return settings_from_section(EmbedConfig, params, ignore=ignore, source="embed")


def embed(job: Job) -> None:
    """Pooled (h5ad) and per-token (zarr) activations of every window (interp.embed)."""
    from interp.embed.registry import load_card, make_embedder
    from interp.embed.run import embed_windows

    _set_threads(job.threads)
    e = _embed_settings(job.params)
    card = load_card(job.input["card"])
    checkpoint = job.input.get("checkpoint")
    embedder = make_embedder(card, Path(checkpoint) if checkpoint else None, _device(e.device), **e.model_options())
    win = pl.read_parquet(job.input["windows"])
    bases = pl.read_parquet(job.input["bases"])
    out_dir = Path(job.output["pooled_dir"])
    pooled_out = {layer: out_dir / f"{layer}.h5ad" for layer in e.layers}
    token_out = {layer: Path(job.output["tokens_dir"]) / f"{layer}.zarr" for layer in e.token_layers}
    Path(job.output["tokens_dir"]).mkdir(parents=True, exist_ok=True)
    stats = embed_windows(embedder, win, bases, e.layers, e.token_layers, e.batch_size, pooled_out, token_out)
    write_json({"model": card["name"], "layers": e.layers, **stats,
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
    section = p["probe"]
    cfg = settings_from_section(ProbeConfig, section, ignore=PROBE_NOT_FIT, source="probe", seed=p["seed"])
    table = probe_table(pooled, win, section["targets"], cfg, n_shuffles=section["n_shuffles"],
                        block_gap=section["block_gap"])
    write_table(table, job.output["parquet"], job.output["tsv"])


def probe_sae(job: Job) -> None:
    """Probes on the main SAE's top-k features vs on raw activations, same folds
    (interp.sae.probe_compare.compare_run): per window and, with a cohort, per sample."""
    from interp.probe import ProbeConfig
    from interp.sae.probe_compare import compare_run

    _set_threads(job.threads)
    p = job.params
    cfg = settings_from_section(ProbeConfig, p["probe"], ignore=PROBE_NOT_FIT, source="probe", seed=p["seed"])
    summary, folds = compare_run(pl.read_parquet(job.input["windows"]), job.input["tokens_dirs"],
                                 job.input["sae_weights"], job.input.get("cohort_emb_dirs", []), p["sae_layer"],
                                 p["probe"], cfg, p.get("phenotypes", []), p["seed"])
    write_table(summary, job.output["parquet"], job.output["tsv"])
    write_table(folds, job.output["folds"])


def _sae_settings(params: dict, source: str = "sae"):
    """SAEConfig of an SAE rule's params: the `sae` section's keys, the job's own (SAE_JOB_KEYS) and the seed."""
    from interp.sae.config import sae_settings

    return sae_settings(params, ignore=SAE_JOB_KEYS, source=source, seed=params["seed"])


def sae(job: Job) -> None:
    """The main SAE of one layer: training, evaluation, honest concept labels (interp.sae.run.train_and_label)."""
    from interp.sae.run import train_and_label
    from interp.sae.train import save_sae

    _set_threads(1)  # bitwise-reproducible weights (see pretrain_tiny_dnalm)
    p = job.params
    cfg = _sae_settings(p)
    state = Path(job.output["weights"]).parent / "train_state.safetensors"
    model, features, units, metrics = train_and_label(
        Path(job.input["tokens_dir"]) / f"{p['layer']}.zarr", pl.read_parquet(job.input["windows"]),
        pl.read_parquet(job.input["bases"]), cfg, p["layer"], job.input.get("checkpoint"), state, p["concepts"],
        p["labels"], p["top_windows"], job.input.get("planted_bed"), p.get("log_dir"), _accelerator(p))
    save_sae(model, job.output["weights"], {"config": cfg.to_dict(), "model": p["model"], "layer": p["layer"]})
    write_table(features, job.output["features"])
    write_table(units, job.output["units"])
    write_json({"model": p["model"], "layer": p["layer"], "name": "main", **metrics}, job.output["metrics"])
    state.unlink(missing_ok=True)  # only now: a failure before reruns without training


def sae_sweep(job: Job) -> None:
    """One SAE of the sweep (`sae.sweep` entry overriding the main settings): training and evaluation."""
    from interp.sae.run import train_and_evaluate
    from interp.sae.train import save_sae

    _set_threads(1)
    p = job.params
    cfg = _sae_settings({**p["base"], **p["overrides"]}, source=f"sae.sweep {p['name']}")
    store = Path(job.input["tokens_dir"]) / f"{p['layer']}.zarr"
    windows = pl.read_parquet(job.input["windows"])
    out_dir = Path(job.output["weights"]).parent
    state = out_dir / "train_state.safetensors"
    model, metrics = train_and_evaluate(store, windows, cfg, p["layer"], job.input.get("checkpoint"), state,
                                        p.get("log_dir"), progress_bar=True,
                                        accelerator=_accelerator(p["base"]), keep_state=True)
    save_sae(model, job.output["weights"], {"config": cfg.to_dict(), "model": p["model"], "layer": p["layer"]})
    write_json({"model": p["model"], "layer": p["layer"], "name": p["name"], **metrics}, job.output["metrics"])
    state.unlink(missing_ok=True)


def sae_steer(job: Job) -> None:
    """Steer the main SAE's top features in the built-in LM against random-direction controls (interp.sae.steer)."""
    from interp.sae.run import steer_on_test
    from interp.sae.train import load_sae

    _set_threads(1)
    p = job.params
    table = steer_on_test(job.input["checkpoint"], p["layer"], load_sae(job.input["weights"]),
                          pl.read_parquet(job.input["windows"]), pl.read_parquet(job.input["features"]),
                          _sae_settings(p), p["steer"])
    write_table(table, job.output["parquet"])


def sae_atlas(job: Job) -> None:
    """Static HTML atlas of the main SAE's features (interp.sae.atlas)."""
    from interp.sae.atlas import build_atlas
    from interp.sae.train import load_sae

    p = job.params
    with atomic_dir(job.output["atlas_dir"]) as folder:
        build_atlas(load_sae(job.input["weights"]), Path(job.input["tokens_dir"]) / f"{p['layer']}.zarr",
                    pl.read_parquet(job.input["windows"]), pl.read_parquet(job.input["features"]),
                    pl.read_parquet(job.input["units"]), folder, per_page=p["atlas"]["per_page"],
                    max_logos=p["atlas"]["max_logos"])


def sae_frontier(job: Job) -> None:
    """The sweep's L0 vs FVU and L0 vs loss-recovered frontier, table and plots (interp.sae.run)."""
    from interp.sae.run import frontier_plots, frontier_table

    metrics = [json.loads(Path(path).read_text()) for path in job.input["metrics"]]
    table = frontier_table(metrics)
    write_table(table, job.output["parquet"])
    with atomic_path(job.output["fvu_png"]) as fvu, atomic_path(job.output["loss_png"]) as loss:
        frontier_plots(table, fvu, loss, f"{job.params['model']} {job.params['layer']}: SAE sweep")


def report(job: Job) -> None:
    """HTML + JSON audit report with provenance (interp.report)."""
    from interp.report.build import build_report

    build_report(job.input, job.output, job.params)


# ---------------------------------------------------------------- cohort part
def _cohort_settings(job: Job) -> CohortConfig:
    """CohortConfig of the `cohort` section the cohort rule passes (interp.cohort.config.cohort_rule_settings);
    with params.cohort_rules (a key of READ_BY), one that refuses to read the keys those rules do not get."""
    from interp.cohort.config import READ_BY, OnlyRead

    c = settings_from_section(CohortConfig, job.params["cohort"], source="cohort")
    rules = job.params.get("cohort_rules")
    return OnlyRead(c, READ_BY[rules], rules) if rules else c


def _cohort_regions(job: Job, c: CohortConfig, fasta: dict, annotation):
    """Regions of the cohort: genes from the gene table (+ flank) and/or a BED file."""
    from interp.genome.regions import explain_missing_genes, gene_regions, read_bed, require_unique_names

    aliases = job.params["reference"].get("contig_aliases") or {}
    regions = []
    if c.genes:
        try:
            try:
                regions += gene_regions(annotation, c.genes, c.flank, fasta)
            except InputError:
                # the annotation holds only the studied genes (`_annotation`): a gene missing from it lies on a
                # contig the FASTA lacks, or is not in the file; say which, naming the genes the file has
                if job.input.get("annotation"):
                    explain_missing_genes(job.input["annotation"],
                                          job.params["reference"].get("annotation_format", "auto"),
                                          c.genes, annotation, list(fasta),
                                          job.params["reference"].get("contig_aliases") or {})
                raise
        except InputError as err:  # named by the setting and the file it was looked up in
            path = str(job.input.get("annotation") or "reference.annotation")
            raise InputError(f"cohort.genes: {err}" + ("" if path in str(err) else f" (annotation: {path})")) from None
    if job.input.get("bed"):
        regions += read_bed(job.input["bed"], fasta, aliases)
    return require_unique_names(regions, f"cohort.genes and the BED {job.input.get('bed')}")


def _studied_regions(job: Job, c: CohortConfig):
    """(indexed FASTA, the cohort's regions): read from check_cohort's `regions.parquet` when the job has it,
    so that the annotation is parsed once per run and not once per shard; otherwise from the annotation."""
    if job.input.get("regions"):
        from interp.genome.fasta import open_reference
        from interp.genome.regions import read_regions

        fasta = open_reference(job.input["fasta"], job.params.get("reference_cache"))
        return fasta, read_regions(job.input["regions"], fasta)
    fasta, annotation = _reference(job, genes=c.genes, spans=[])  # the genes' spans only
    return fasta, _cohort_regions(job, c, fasta, annotation)


def simulate_cohort(job: Job) -> None:
    """msprime cohort (Out-of-Africa or admixed) over the cohort region, planted phenotypes (interp.cohort.simulate)."""
    from interp.cohort.config import causal_gene
    from interp.cohort.simulate import simulate_cohort as simulate
    from interp.genome.fasta import open_reference

    c = _cohort_settings(job)
    fasta = open_reference(job.input["fasta"], job.params.get("reference_cache"))
    # the annotation read once: the genes' transcripts, or for regions from a BED alone (which need none to be
    # placed) those the regions span, where the causal gene is then looked for
    annotation = _annotation(job, fasta, genes=c.genes, spans=[]) if c.genes else None
    regions = _cohort_regions(job, c, fasta, annotation)
    if not c.genes:
        annotation = _annotation(job, fasta, spans=[(r.contig, r.start, r.end) for r in regions])
    if len({r.contig for r in regions}) != 1:
        raise InputError("cohort.simulate: the simulated cohort's regions must lie on one contig")
    from interp.genome.regions import Region

    span = Region(name="+".join(r.name for r in regions), contig=regions[0].contig,
                  start=min(r.start for r in regions), end=max(r.end for r in regions))
    sim = {k: v for k, v in c.simulate.items() if k != "ancestry_panel"}
    sim["causal"] = {**sim.get("causal", {}), "gene": causal_gene(c.simulate, c.genes)}
    # the panel is only an output when it has loci (see the rule)
    simulate(fasta, annotation, span, c.populations, job.params["seed"], sim,
             Path(job.output["vcf"]), Path(job.output["samples"]), Path(job.output["truth"]),
             panel=c.simulate["ancestry_panel"], out_panel=job.output.get("panel"))


def _samples(job: Job, c: CohortConfig) -> pl.DataFrame:
    from interp.cohort.vcf import read_samples_tsv

    return read_samples_tsv(job.input["samples"], c.phenotypes, c.covariates, c.population_column)


def place_cohort(job: Job) -> None:
    """The cohort's regions resolved once (output regions, when asked: the shard and ancestry jobs read them, not
    the annotation) and the VCF placed where the cohort rules read it (interp.cohort.check.place_cohort_vcf). It
    reads no samples.tsv: a new phenotype or covariate re-checks the cohort, never re-places its VCF or rebuilds
    the haplotype shards that read it."""
    from interp.cohort.check import place_cohort_vcf

    c = _cohort_settings(job)
    _, regions = _studied_regions(job, c)
    place_cohort_vcf(job.input["vcf"], job.output["vcf"], job.output["tbi"])
    if job.output.get("regions"):
        from interp.genome.regions import write_regions

        write_regions(regions, job.output["regions"])


def check_cohort(job: Job) -> None:
    """Validate the placed VCF + samples.tsv (covariates included) against the reference before any work
    (interp.cohort.check.check_cohort_inputs); messages name the user's VCF (params.user_vcf)."""
    from interp.cohort.check import check_cohort_inputs

    c = _cohort_settings(job)
    fasta, regions = _studied_regions(job, c)
    summary = check_cohort_inputs(job.input["vcf"], job.input["samples"], _samples(job, c), fasta,
                                  job.params["reference"].get("contig_aliases") or {}, regions, c,
                                  job.params["n_folds"], panel=job.input.get("panel"),
                                  shown_as=job.params.get("user_vcf"))
    summary["reference"] = _reference_stats(fasta, regions)
    write_json(summary, job.output["summary"])


@contextmanager
def _as_users_vcf(job: Job):
    """InputErrors raised inside name the user's VCF (params.user_vcf) instead of the placed one (input vcf):
    the shards and ancestry read place_cohort's VCF without waiting for check_cohort, so their errors can come
    first, and the user knows their own file, not the pipeline's copy of it."""
    try:
        yield
    except InputError as err:
        user, placed = job.params.get("user_vcf"), job.input.get("vcf")
        if not user or not placed or str(user) == str(placed):
            raise
        from interp.cohort.check import _as_user_file

        raise InputError(_as_user_file(str(err), placed, user)) from None


def _genotypes(job: Job, fasta, samples: pl.DataFrame, regions):
    """Genotypes of the studied regions only, fetched through the VCF's index (errors name params.user_vcf)."""
    from interp.cohort.vcf import read_genotypes

    with _as_users_vcf(job):
        return read_genotypes(job.input["vcf"], samples=samples["sample_id"].to_list(), regions=regions,
                              fasta_contigs=list(fasta), aliases=job.params["reference"].get("contig_aliases") or {})


def haplotypes_shard(job: Job) -> None:
    """Per-sample, per-haplotype window sequences of one shard's regions, deduplicated by hash
    (interp.cohort.haplotypes); params.shard {index, size} picks the regions (interp.cohort.shards.shard_slice;
    absent: every region)."""
    from interp.cohort.haplotypes import cohort_haplotype_windows
    from interp.cohort.shards import haplotype_stats, shard_slice

    c = _cohort_settings(job)
    fasta, regions = _studied_regions(job, c)
    shard = job.params.get("shard")
    if shard:
        regions = regions[shard_slice(len(regions), int(shard["size"]), int(shard["index"]))]
    # the sample IDs only: the sheet's phenotypes and covariates are check_cohort's and the audit's
    from interp.cohort.vcf import read_samples_tsv

    samples = read_samples_tsv(job.input["samples"], [], [], None)
    geno = _genotypes(job, fasta, samples, regions)
    try:
        assign, dist = cohort_haplotype_windows(fasta, geno, regions, c.window["width"], c.window["stride"],
                                                missing=c.missing, unphased=c.unphased)
    except InputError as err:  # a record's REF against the FASTA: name the VCF (the shards may fail first)
        vcf = job.params.get("user_vcf") or job.input["vcf"]
        raise InputError(f"{vcf}: {err}" if str(err).startswith("VCF record") else str(err)) from None
    write_table(assign, job.output["assignments"])
    write_table(dist, job.output["sequences"])
    write_json(haplotype_stats(assign, dist.height, samples.height, [f"{r.name}={r.contig}:{r.start}-{r.end}" for r in regions],
                               c.missing, c.unphased), job.output["stats"])


def haplotypes(job: Job) -> None:
    """The cohort's haplotype windows: the shards' tables gathered (inputs shard_assignments, shard_sequences,
    shard_stats, in shard order; interp.cohort.shards.gather_haplotype_files: both tables written one shard at a
    time, rows in shard order), or, without shards, every region computed here (`haplotypes_shard`)."""
    from interp.cohort.shards import gather_haplotype_files

    if not job.input.get("shard_assignments"):
        haplotypes_shard(job)
        return
    names = ("shard_assignments", "shard_sequences", "shard_stats")
    parts = [[job.input[n]] if isinstance(job.input[n], str) else list(job.input[n]) for n in names]
    # first the windows' (region, start) pairs and the sequences' hashes and counts, then one shard's table at a
    # time: neither cohort table is held whole
    stats = gather_haplotype_files(parts[0], parts[1], [json.loads(Path(x).read_text()) for x in parts[2]],
                                   job.output["assignments"], job.output["sequences"])
    write_json(stats, job.output["stats"])


def ancestry(job: Job) -> None:
    """Genotype AnnData of the studied regions with ancestry PCs, UMAP and clusters (interp.cohort.ancestry).

    With a marker panel (`cohort.ancestry_vcf` or the simulated one), PCs come from its int8 dosages but those
    within cohort.ancestry_exclude_flank bases of a studied region, read in chunks (exact Gram matrix, or a
    blockwise randomized SVD beyond 4,096 samples); otherwise from the regions' own variants.
    """
    from interp.cohort.ancestry import NearRegions, cohort_ancestry

    _set_threads(job.threads)
    c = _cohort_settings(job)
    fasta, regions = _studied_regions(job, c)
    samples = _samples(job, c)
    geno = _genotypes(job, fasta, samples, regions)
    # UMAP and Leiden clusters are for the report's ancestry plot; the calibration suite skips them
    adata = cohort_ancestry(geno, samples, maf_min=c.maf, n_pcs=c.n_pcs, seed=job.params["seed"],
                            panel=job.input.get("panel"),
                            umap_and_clusters=bool(job.params.get("umap_and_clusters", True)),
                            near_regions=NearRegions.of(regions, c.ancestry_exclude_flank,
                                                        job.params["reference"].get("contig_aliases")))
    write_h5ad(adata, job.output["genotypes"])


def _embedding_cache(e: EmbedConfig, card: dict, checkpoint: str | None, embedder):
    """The embedding cache of this model (interp.embed.cache) under embed.cache, or None (no cache set, or a
    hub model known only by a moving revision)."""
    import logging

    from interp.embed.cache import EmbeddingCache, model_identity

    if not e.cache:
        return None
    commit = (getattr(embedder, "provenance", None) or {}).get("commit")
    identity = model_identity(card, checkpoint, _device(e.device), e.dtype, commit)
    if identity is None:
        logging.getLogger(__name__).warning("embedding cache off for %s: its weights are not pinned (revision %r "
                                            "is not a commit, or hf_id is a local folder)", card["name"],
                                            card.get("revision"))
        return None
    return EmbeddingCache(e.cache, identity)


def _embed_distinct(job: Job, sequences: pl.DataFrame, **extra) -> tuple[dict, dict]:
    """Vectors of each distinct sequence (rows sorted by seq_hash) under the rule's model, through the cache;
    and the run's stats (cache, devices, plus `extra`)."""
    from interp.embed.cache import sae_key
    from interp.embed.cohort import embed_distinct_windows
    from interp.embed.registry import load_card, make_embedder
    from interp.sae.train import load_sae

    _set_threads(job.threads)
    e, sae_layer = _embed_settings(job.params, EMBED_COHORT_JOB_KEYS), job.params["sae_layer"]
    card, ckpt = load_card(job.input["card"]), job.input.get("checkpoint")
    embedder = make_embedder(card, Path(ckpt) if ckpt else None, _device(e.device), **e.model_options())
    cache = _embedding_cache(e, card, ckpt, embedder)
    vectors = embed_distinct_windows(embedder, sequences["sequence"].to_list(), e.layers, e.batch_size,
                                     load_sae(job.input["sae"]), sae_layer, cache=cache,
                                     sae_cache_key=sae_key(job.input["sae"], sae_layer) if cache else None)
    # the device resolved here (embed.device auto: per node); shards on different devices differ numerically
    return vectors, {"cache": cache.stats() if cache else None, "devices": [_device(e.device)], **extra}


def embed_cohort_shard(job: Job) -> None:
    """Vectors of each distinct haplotype window of one shard (its `sequences` table), each layer and the SAE's
    codes, embedded only where the embedding cache lacks them (interp.embed.cohort, interp.embed.cache)."""
    import time

    from interp.cohort.haplotypes import read_sequences
    from interp.cohort.shards import write_vectors

    t0 = time.perf_counter()
    sequences = read_sequences(job.input["sequences"], ["seq_hash", "sequence"]).sort("seq_hash")
    vectors, stats = _embed_distinct(job, sequences)
    write_vectors(job.output["vectors"], sequences["seq_hash"].to_list(), vectors)
    write_json({**stats, "n_sequences": sequences.height, "seconds": round(time.perf_counter() - t0, 1)},
               job.output["stats"])


def embed_cohort(job: Job) -> None:
    """Per-sample and per-(sample, window) tables of each layer and of the SAE's codes (interp.embed.cohort) from
    the distinct windows' vectors: gathered from the shards (interp.cohort.shards.gather_cohort_vectors: the
    sequences table's seq_hash and gc only), or, without shards (tests, the calibration suite), embedded here."""
    import time

    from interp.cohort.genotype_file import read_genotypes
    from interp.cohort.haplotypes import read_sequences
    from interp.cohort.shards import gather_cohort_vectors
    from interp.embed.cohort import embed_cohort_tables
    from interp.embed.registry import load_card

    t0, p = time.perf_counter(), job.params
    layers = _embed_settings(p, EMBED_COHORT_JOB_KEYS).layers  # settings checked before any input is read
    if job.input.get("shard_vectors"):
        sequences, pooled, extra = gather_cohort_vectors(job.input["sequences"], job.input["shard_vectors"],
                                                         job.input.get("shard_stats", []))
    else:
        sequences = read_sequences(job.input["sequences"]).sort("seq_hash")
        pooled, extra = _embed_distinct(job, sequences, n_shards=0)
    tables, stats = embed_cohort_tables(  # assignments read in batches (interp.embed.cohort.sequence_index)
        None, sequences, job.input["assignments"], read_genotypes(job.input["genotypes"], dosage=False),
        load_card(job.input["card"])["name"], layers, None, None,
        p["sae_layer"], keep_haplotypes=bool(p.get("keep_haplotypes")), pooled=pooled)
    with atomic_dir(job.output["out_dir"]) as folder:
        for name, table in tables:
            table.write_h5ad(folder / name)
    write_json({**stats, **extra, "seconds": round(time.perf_counter() - t0, 1)}, job.output["stats"])


def variant_effect(job: Job) -> None:
    """Zero-shot score of every cohort variant under one model, on the reference window around it
    (interp.embed.variant_effect): masked LLR or causal delta; non-SNVs get a null score and a count."""
    import time

    import anndata as ad

    from interp.embed.registry import load_card
    from interp.embed.variant_effect import cohort_variants, load_scorer, score_cohort_variants
    from interp.genome.fasta import open_reference

    _set_threads(job.threads)
    t0 = time.perf_counter()
    p = job.params
    e = _embed_settings(p, VARIANT_EFFECT_JOB_KEYS)
    card = load_card(job.input["card"])
    scorer = load_scorer(card, job.input.get("checkpoint"), _device(e.device), hf_cache=e.hf_cache, dtype=e.dtype,
                         batch_size=e.batch_size)
    geno = ad.read_h5ad(job.input["genotypes"], backed="r")  # the variant table only
    variants = cohort_variants(geno.var)
    geno.file.close()
    fasta = open_reference(job.input["fasta"], p.get("reference_cache"))
    table, stats = score_cohort_variants(variants, fasta, scorer, width=p.get("width"))
    write_table(table, job.output["parquet"])
    write_json({**stats, "seconds": round(time.perf_counter() - t0, 1)}, job.output["stats"])


def audit(job: Job) -> None:
    """Ancestry / confound audit per phenotype x model x layer, and with audit.by_region per region too,
    verdicts adjusted over the run (interp.audit_summary.audit_run)."""
    from interp.audit import AuditConfig
    from interp.audit_summary import audit_run

    _set_threads(job.threads)
    p = job.params
    cfg = settings_from_section(AuditConfig, p["audit"], ignore=AUDIT_NOT_FIT, source="audit", seed=p["seed"])
    table, details = audit_run(job.input["emb_dirs"], p["phenotypes"], p["covariates"], cfg,
                               by_region=bool(p["audit"].get("by_region")), sae_layer=p["sae_layer"],
                               covariate_missing=p.get("covariate_missing", "refuse"),
                               population_column=p.get("population_column"),
                               categorical_covariates=p.get("categorical_covariates", []),
                               genotypes=job.input.get("genotypes"))
    write_table(table, job.output["parquet"], job.output["tsv"])
    write_json(details, job.output["details"])


def rank(job: Job) -> None:
    """Rank variants and model-derived window features per phenotype and feature family, adjusted for PCs and
    covariates, with linkage to the variants (interp.rank, interp.rank_inputs). The optional input
    `variant_effect` (the variant_effect stage's tables) adds one burden family per model over the same
    windows; without it (the calibration suite) no such family is built."""
    from interp.rank import RankConfig
    from interp.rank_inputs import rank_files

    _set_threads(job.threads)
    p = job.params
    cfg = settings_from_section(RankConfig, p["rank"], ignore=RANK_NOT_FIT, source="rank", seed=p["seed"])
    scores = job.input.get("variant_effect") or []
    table, summary = rank_files(job.input["genotypes"], job.input["emb_dirs"],
                                sorted([scores] if isinstance(scores, str) else scores), p["phenotypes"],
                                p["covariates"], cfg, lambda spans: _reference(job, spans=spans)[1],
                                covariate_missing=p.get("covariate_missing", "refuse"),
                                categorical_covariates=p.get("categorical_covariates", []))
    write_table(table, job.output["parquet"], job.output["tsv"])
    if job.output.get("summary"):
        write_json(summary, job.output["summary"])


# ---------------------------------------------------------------- calibration suite
def calibration_replicate(job: Job) -> None:
    """One replicate of one calibration cell: simulate, run the cohort stages, summarise (interp.calibration)."""
    from interp.calibration import run_replicate, select_cells

    p = job.params
    cell = select_cells([p["cell"]])[0]
    if p.get("n"):  # a reduced grid (tests) shrinks the cohort
        cell = {**cell, "n": int(p["n"])}
    shared = {"fasta": job.input["fasta"], "annotation": job.input["annotation"], "card": job.input["card"],
              "checkpoint": job.input["checkpoint"], "sae": job.input["sae"], "model": p["model"],
              "layers": p["layers"]}
    archive = p.get("archive")  # set by workflow/scripts/calibration_local.py --archive, not by the rule
    summary = run_replicate(cell, p["replicate"], p["seed"], p["config"], shared, Path(p["workdir"]),
                            threads=job.threads, archive=Path(archive) if archive else None)
    write_json(summary, job.output["summary"])


def calibration(job: Job) -> None:
    """Pool replicate summaries into the calibration table, plots and report (interp.calibration)."""
    from interp.calibration import gather

    gather(job.input["replicates"], job.output, meta=job.params)


# ---------------------------------------------------------------- planted-motif calibration of the SAE
def planted_genome(job: Job) -> None:
    """Synthetic genome: order-3 Markov background fitted on the configured regions of the reference, with
    planted JASPAR motifs, a periodic repeat and GC-rich islands (interp.sae.planted_genome)."""
    from interp.genome.fasta import open_reference
    from interp.genome.regions import regions_from_config
    from interp.sae.planted_genome import PlantedConfig, write_planted
    from interp.sae.planted_genome import planted_genome as build

    p = job.params
    fasta = open_reference(job.input["fasta"], p.get("reference_cache"))  # the annotation is not used here
    regions = regions_from_config(p["regions"], fasta, p["reference"].get("contig_aliases") or {})
    cfg = PlantedConfig.from_params(p["genome"])
    sequence, elements, stats = build(cfg, [fasta[r.contig][r.start:r.end].upper() for r in regions])
    write_planted(sequence, elements, cfg.contig, job.output["fasta"], job.output["bed"])
    write_json(stats, job.output["stats"])


def planted_calibration(job: Job) -> None:
    """Match table of planted element types to SAE features (per base and per instance, validation-chosen,
    test-reported, beside the PWM oracle), the LM vs its order-3 Markov baseline, and the steering check of
    matched motif features (interp.sae.planted)."""
    from interp.embed.tiny import load_tiny_checkpoint
    from interp.sae.planted import PlantedTargets, load_planted_genome, planted_calibration
    from interp.sae.train import load_sae

    _set_threads(1)
    i, p = job.input, job.params
    match, steering, summary = planted_calibration(
        pl.read_parquet(i["units"]), load_planted_genome(i["fasta"], i["bed"], i["windows"], i["stats"]), Path(i["tokens_dir"]) / f"{p['layer']}.zarr",
        load_tiny_checkpoint(Path(i["checkpoint"])), p["layer"], load_sae(i["weights"]), pl.read_parquet(i["features"]),
        json.loads(Path(i["lm_metrics"]).read_text()), json.loads(Path(i["sae_metrics"]).read_text()),
        PlantedTargets(**p["targets"]), _sae_settings(p["sae"], "planted.sae"), p["steer"])
    write_table(match, tsv=job.output["match"])
    write_table(steering, tsv=job.output["steer"])
    write_json(summary, job.output["json"])
