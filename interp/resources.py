"""Memory and run time a job asks the scheduler for, from the size of its inputs.

`workflow/rules/common.smk` (`scaled`) passes each heavy rule's `input.size_mb` (and, for the per-shard
cohort rules, the shard's regions times the cohort's samples) to `job_resources`; Snakemake calls it when
the job is about to run, so the sizes are those of the real inputs. The estimate is linear,
    mem_mb  = base_mb  + mb_per_mb  * size_mb  + mb_per_unit  * units
    runtime = base_min + min_per_mb * size_mb  + min_per_unit * units     (minutes)
times the attempt number (a job killed for memory or time asks for twice as much on its retry; the SLURM
profile sets `retries: 1`), rounded up and capped. The coefficients in `SCALING` come from the measured
runs of README's "Scale" section with a safety factor; they are a starting point, not a promise: override a
rule with `--set-resources <rule>:mem_mb=<n>` where a site knows better.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scaling:
    base_mb: float
    mb_per_mb: float = 0.0
    base_min: float = 10.0
    min_per_mb: float = 0.0
    mb_per_unit: float = 0.0
    min_per_unit: float = 0.0
    max_mb: int = 512_000
    max_min: int = 7 * 24 * 60


#: per rule: what a job costs beyond a fixed base, per MB of input and per unit (samples x regions)
SCALING: dict[str, Scaling] = {
    # haplotype windows: memory follows samples x records of the shard's regions (README "Scale": 373 MB
    # for 2,504 samples x one 30 kb gene); units = samples x regions of the shard
    "haplotypes_shard": Scaling(base_mb=1000, mb_per_unit=0.2, base_min=5, min_per_unit=0.002),
    "haplotypes": Scaling(base_mb=1000, mb_per_mb=4, base_min=5, min_per_mb=0.05),
    # ancestry: marker VCF streamed in chunks, kept as int8 (976 MB for a 123 MB VCF of 2,504 samples), sized by
    # its size (`SIZED_BY`: the cohort VCF, FASTA and annotation are read only in the regions); and the studied
    # regions' genotypes, all held at once (calls, dosages, the PCA's copy: 16.5 B per sample x variant over an
    # import base of 330 MB, measured at 1,000 x 20,000 and 3,000 x 64,000), which no file size tells:
    # units = samples x kb of regions, at 20 variant records per kb (1000 Genomes: 10.6) and 25 B each
    "ancestry": Scaling(base_mb=2000, mb_per_mb=12, base_min=10, min_per_mb=0.2, mb_per_unit=0.0005),
    # embeddings: model weights dominate memory; time follows the sequences (parquet size)
    "embed": Scaling(base_mb=8000, mb_per_mb=40, base_min=20, min_per_mb=2),
    "embed_cohort_shard": Scaling(base_mb=8000, mb_per_mb=40, base_min=20, min_per_mb=2),
    "embed_cohort": Scaling(base_mb=4000, mb_per_mb=8, base_min=10, min_per_mb=0.2),
    # variant effect: the same model weights as embed (it asked for 4 GB, half of embed's); one window scored per
    # variant, so time follows the genotypes (`SIZED_BY`: the variant table is read from genotypes.h5ad)
    "variant_effect": Scaling(base_mb=8000, base_min=30, min_per_mb=0.5),
    # audit and rank: sized by the embedding tables inside their folders (`SIZED_BY`). rank reads the per-window
    # tables a block of columns at a time: memory grows per column (its results), 0.19 MB per MB of table at
    # 1,000 samples (README "Scale": 388 -> 446 MB from 102 to 410 MB), time per value (the demo's 97 MB in 15 s,
    # 0.0026 min/MB; x4 here). The audit reads the sample tables ([n, d] per layer) and, with audit.by_region,
    # the per-window ones region by region, each region one more audit (x8 the rank's time per MB). Both read
    # genotypes.h5ad's dosages a block of columns at a time too (README "Scale": rank 699 -> 724 MB from 38 to
    # 153 MB of dosages), so counting its size at these rates over-asks a little, on the safe side; time does
    # follow it (every value is read)
    "audit": Scaling(base_mb=4000, mb_per_mb=0.2, base_min=30, min_per_mb=0.02),
    "audit_by_region": Scaling(base_mb=4000, mb_per_mb=0.2, base_min=30, min_per_mb=0.02),
    "rank": Scaling(base_mb=4000, mb_per_mb=0.25, base_min=30, min_per_mb=0.01),
    # place_cohort links a bgzipped, indexed VCF, but one that is not is copied whole as bgzip + tabix
    # (interp.cohort.vcf.ensure_indexed): time follows that copy, sized by `vcf_copy_size_mb` (0 for an indexed
    # VCF: the base 10 minutes). Measured here 0.022 s per MB of plain VCF (92 MB, 2,000 samples, compression +
    # index in 1.9 s); x~14 for slower disks and less compressible records: 10 GB plain -> 61 minutes. Memory
    # does not follow (streamed)
    "place_cohort": Scaling(base_mb=2000, base_min=10, min_per_mb=0.005),
    # check_cohort reads the placed (indexed) VCF in the studied regions only: the base request
    "check_cohort": Scaling(base_mb=2000, base_min=10),
}

#: place_cohort's copy of a VCF that is not bgzipped and indexed costs, per MB of the file, this many MB of plain
#: VCF (measured with `ensure_indexed` on the same records: plain 1.9 s; bgzip without index 0.21 s for 3.7 MB,
#: copied and indexed; plain gzip 2.0 s for 2.9 MB, decompressed, bgzipped and indexed). Phased genotype VCFs
#: compress 10-60x, so a gzip MB weighs 40 plain MB
VCF_COPY_WEIGHT: dict[str, float] = {"plain": 1.0, "bgzf": 5.0, "gzip": 40.0}

#: per rule: the inputs whose size counts (`inputs_size_mb`); rules not listed count every input. A whole-genome
#: FASTA, a GENCODE GTF or a chromosome VCF is read only in the regions studied, so its size says nothing of the
#: cost (counted, a 3 GB FASTA + 1.5 GB GTF asked rank for 13 GB and 38 hours more). "name/glob" counts the files
#: matching glob inside the folder input `name` (Snakemake's input.size_mb counts a folder as its own entry, 4 kB,
#: so an 18 GB windows table asked rank for its base 30 minutes)
SIZED_BY: dict[str, tuple[str, ...]] = {
    "ancestry": ("panel",),
    "audit": ("emb_dirs/*.samples.h5ad", "genotypes"),
    "audit_by_region": ("emb_dirs/*.h5ad", "genotypes"),
    "rank": ("emb_dirs/*.h5ad", "genotypes", "variant_effect"),
    "variant_effect": ("genotypes",),
}


def job_resources(rule: str, size_mb: float, units: float = 0.0, attempt: int = 1) -> dict[str, int]:
    """{"mem_mb", "runtime"} for a job of `rule` (a key of `SCALING`) with inputs of `size_mb` MB."""
    if rule not in SCALING:
        raise KeyError(f"no resource scaling for rule {rule!r}; known: {sorted(SCALING)}")
    if size_mb < 0 or units < 0 or attempt < 1:
        raise ValueError(f"size_mb ({size_mb}) and units ({units}) must be >= 0 and attempt ({attempt}) >= 1")
    s = SCALING[rule]
    mem = (s.base_mb + s.mb_per_mb * size_mb + s.mb_per_unit * units) * attempt
    minutes = (s.base_min + s.min_per_mb * size_mb + s.min_per_unit * units) * attempt
    return {"mem_mb": min(math.ceil(mem), s.max_mb), "runtime": min(math.ceil(minutes), s.max_min)}


def inputs_size_mb(input: object, names: Iterable[str]) -> float:
    """Size in MB of the inputs `names` of a job: `input` is Snakemake's (or any object with those attributes),
    each a path or a list of paths; a name "input/glob" counts the files matching glob inside each folder of that
    input (symlinks followed), a plain name the path itself (`os.path.getsize`, as Snakemake's `input.size_mb`:
    a folder its own entry only). An absent name or a missing file counts 0."""
    total = 0
    for entry in names:
        name, _, pattern = entry.partition("/")
        value = getattr(input, name, None)
        for path in [value] if isinstance(value, str | os.PathLike) else list(value or []):
            if pattern and os.path.isdir(path):
                total += sum(f.stat().st_size for f in Path(path).glob(pattern) if f.is_file())
            elif not pattern and os.path.exists(path):
                total += os.path.getsize(path)
    return total / (1 << 20)


def vcf_copy_size_mb(vcf: str | os.PathLike | None) -> float:
    """What place_cohort's copy of `vcf` costs, in MB of plain VCF (`VCF_COPY_WEIGHT`): 0 for a bgzipped VCF with
    a fresh .tbi/.csi (used as it is) or a file not there yet (a dry run before simulate_cohort), else its size
    times the weight of its compression."""
    from interp.cohort.vcf import is_indexed
    from interp.io import compression

    if not vcf or not os.path.isfile(vcf) or is_indexed(vcf):
        return 0.0
    return os.path.getsize(vcf) / (1 << 20) * VCF_COPY_WEIGHT[compression(vcf)]


#: per rule: a function of the job's input giving the size to scale by, where a file's size alone says too little
SIZE_OF = {"place_cohort": lambda input: vcf_copy_size_mb(getattr(input, "vcf", None))}


def region_kb(path: str) -> float:
    """Total length in kb of a regions table (parquet with start and end, as place_cohort writes): for `units`.
    0 for a table not written yet: Snakemake evaluates resources while it builds the DAG, then again, with every
    input present, before it runs the job (`reset_params_and_resources`)."""
    import polars as pl

    if not os.path.isfile(path):
        return 0.0
    spans = pl.read_parquet(path, columns=["start", "end"])
    return float((spans["end"] - spans["start"]).sum() or 0) / 1000


def count_lines(path: str, header: bool = True) -> int:
    """Data lines of a text table (samples.tsv): for `units` without parsing it; 0 for a table not written yet
    (a simulated cohort's, while Snakemake builds the DAG: see `region_kb`)."""
    if not os.path.isfile(path):
        return 0
    with open(path) as fh:
        n = sum(1 for line in fh if line.strip())
    return max(n - (1 if header else 0), 0)
