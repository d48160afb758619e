"""interp.resources: a job's memory and run time grow with its inputs and its retry attempt."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from interp.resources import SCALING, count_lines, job_resources


def test_resources_grow_linearly_with_input_size_and_units() -> None:
    small = job_resources("ancestry", 1.0)
    big = job_resources("ancestry", 101.0)
    s = SCALING["ancestry"]
    assert big["mem_mb"] - small["mem_mb"] == pytest.approx(100 * s.mb_per_mb, abs=1)
    assert big["runtime"] > small["runtime"]
    shard = job_resources("haplotypes_shard", 0.0, units=2504 * 10)
    assert shard["mem_mb"] == 1000 + round(0.2 * 25040)


def test_a_retry_asks_for_more_and_the_cap_holds() -> None:
    once, twice = job_resources("embed", 10.0), job_resources("embed", 10.0, attempt=2)
    assert twice["mem_mb"] == 2 * once["mem_mb"] and twice["runtime"] == 2 * once["runtime"]
    huge = job_resources("embed", 1e9)
    assert huge == {"mem_mb": SCALING["embed"].max_mb, "runtime": SCALING["embed"].max_min}
    assert all(isinstance(v, int) for v in huge.values())


def test_unknown_rule_and_bad_sizes_are_refused() -> None:
    with pytest.raises(KeyError, match="known"):
        job_resources("nope", 1.0)
    with pytest.raises(ValueError):
        job_resources("embed", -1.0)
    with pytest.raises(ValueError):
        job_resources("embed", 1.0, attempt=0)


def test_ancestry_asks_for_the_regions_genotypes_it_holds(tmp_path: Path) -> None:
    """ancestry holds every sample's genotypes at every variant of the studied regions (about 16.5 B per sample x
    variant): at 3,000 samples and 6 Mb of regions (64,000 variants at 1000 Genomes' 10.6 per kb, 3.3 GB measured)
    it asked for its flat 2,000 MB, 4,000 on the retry; now for samples x kb at 20 variants per kb."""
    import polars as pl

    from interp.resources import region_kb

    pl.DataFrame({"name": ["a", "b"], "contig": ["chr1", "chr2"], "start": [0, 1_000_000],
                  "end": [4_000_000, 3_000_000]}).write_parquet(tmp_path / "regions.parquet")
    kb = region_kb(str(tmp_path / "regions.parquet"))
    assert kb == 6_000
    ask = job_resources("ancestry", 0.0, units=3_000 * kb)["mem_mb"]
    measured_mb = 330 + 16.5 * 3_000 * 10.6 * kb / 2**20
    assert ask > 2 * measured_mb  # room for twice 1000 Genomes' density on the first attempt
    assert job_resources("ancestry", 0.0, units=300 * 25.4)["mem_mb"] == 2004  # the demo: about the base
    # while Snakemake builds the DAG the regions and a simulated samples.tsv are not written yet: 0, not a
    # FileNotFoundError that stops the run (the job's resources are evaluated again before it runs)
    assert region_kb(str(tmp_path / "later.parquet")) == 0.0 and count_lines(str(tmp_path / "later.tsv")) == 0


def test_count_lines_skips_header_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "s.tsv").write_text("sample_id\tp\nA\t1\nB\t0\n\n")
    assert count_lines(str(tmp_path / "s.tsv")) == 2


def test_ancestry_and_rank_are_sized_by_their_own_inputs_not_the_reference(tmp_path: Path) -> None:
    """A whole-genome FASTA, a GENCODE GTF and a chromosome VCF are read only in the regions studied: their size
    must not raise ancestry's or rank's request (sparse files: sizes without the disk)."""
    from types import SimpleNamespace

    from interp.resources import SIZED_BY, inputs_size_mb

    def sized(name: str, mb: int) -> str:
        path = tmp_path / name
        with open(path, "wb") as fh:
            fh.truncate(mb << 20)
        return str(path)

    vcf = tmp_path / "cohort.vcf.gz"
    vcf.symlink_to(sized("chr1.vcf.gz", 20_000))
    (tmp_path / "emb").mkdir()
    ancestry = SimpleNamespace(fasta=sized("genome.fa", 3_000), annotation=sized("gencode.gtf", 1_500),
                               vcf=str(vcf), panel=sized("markers.vcf.gz", 120), samples=sized("samples.tsv", 1))
    rank = SimpleNamespace(fasta=ancestry.fasta, annotation=ancestry.annotation, emb_dirs=[str(tmp_path / "emb")],
                           genotypes=sized("genotypes.h5ad", 40), variant_effect=[sized("ve.parquet", 2)])
    assert inputs_size_mb(ancestry, SIZED_BY["ancestry"]) == 120
    assert inputs_size_mb(rank, SIZED_BY["rank"]) == 42  # an empty embedding folder counts nothing
    assert inputs_size_mb(ancestry, ["vcf"]) == 20_000  # a link counts its target
    assert job_resources("rank", inputs_size_mb(rank, SIZED_BY["rank"]))["runtime"] < 60


def test_audit_and_rank_are_sized_by_the_tables_inside_their_embedding_folders(tmp_path: Path) -> None:
    """Snakemake's input.size_mb counts a folder as its own 4 kB entry: rank asked for its base 30 minutes and
    4 GB whatever the per-window tables inside held (3,000 samples x 12,000 windows x d 128: 18 GB a layer)."""
    from types import SimpleNamespace

    from interp.resources import SIZED_BY, inputs_size_mb

    emb = tmp_path / "emb" / "m"
    emb.mkdir(parents=True)
    for name, mb in (("block1.windows.h5ad", 18_000), ("block2.windows.h5ad", 18_000), ("block1.samples.h5ad", 2),
                     ("block2.samples.h5ad", 2), ("notes.txt", 500)):
        with open(emb / name, "wb") as fh:
            fh.truncate(mb << 20)
    job = SimpleNamespace(emb_dirs=[str(emb)], genotypes=str(emb / "block1.samples.h5ad"), variant_effect=[])
    assert inputs_size_mb(job, SIZED_BY["rank"]) == 36_006
    assert inputs_size_mb(job, SIZED_BY["audit"]) == 6  # sample tables only: the audit reads no windows table
    assert inputs_size_mb(job, SIZED_BY["audit_by_region"]) == 36_006
    rank = job_resources("rank", inputs_size_mb(job, SIZED_BY["rank"]))
    # at the demo's measured 0.0026 min/MB this rank takes about 94 min; it asks for x4, and memory by column
    assert 6 * 60 < rank["runtime"] < 12 * 60 and 8_000 < rank["mem_mb"] < 16_000
    assert job_resources("audit", 6)["runtime"] == 31  # a plain audit stays at its base


def test_every_rule_asks_for_more_on_a_retry() -> None:
    """Rules with a fixed request (sae, pretrain, variant_effect, probe, ...) asked for the same memory and time
    on the SLURM profile's retry, so a job killed for either failed again; each now goes through `fixed` or
    `scaled` (times the attempt number), never a bare number."""
    import re

    rules = Path(__file__).resolve().parents[1] / "workflow" / "rules"
    blocks = 0
    for smk in sorted(rules.glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^(\s*)resources:\n((?:\1\s+.*\n)+)", text, flags=re.M):
            blocks += 1
            body = m.group(2)
            assert re.search(r"\*\*(fixed|scaled)\(", body), f"{smk.name}: {body}"
            assert not re.search(r"^\s*(mem_mb|runtime)\s*=", body, flags=re.M), f"{smk.name}: {body}"
    assert blocks >= 25
    common = (rules / "common.smk").read_text()
    assert "mem_mb * attempt" in common and "runtime * attempt" in common


def test_place_cohort_time_follows_the_vcf_copy_it_must_make(tmp_path: Path) -> None:
    """place_cohort (check_cohort until it was split) copies a plain, plain-gzip or unindexed VCF whole (bgzip +
    tabix); a fixed 10 minutes killed it on a chromosome VCF. An indexed VCF is linked: the base request, as for
    check_cohort, which reads the placed VCF in the studied regions only."""
    import pysam

    from interp.resources import SIZE_OF, vcf_copy_size_mb

    header = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=1000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    plain = tmp_path / "chr1.vcf"
    plain.write_text(header + "chr1\t10\t.\tA\tG\t.\tPASS\t.\n")
    pysam.tabix_compress(str(plain), str(tmp_path / "indexed.vcf.gz"))
    pysam.tabix_index(str(tmp_path / "indexed.vcf.gz"), preset="vcf")
    with open(plain, "r+b") as fh:  # 10 GB of plain VCF (sparse: the size without the disk)
        fh.truncate(10 << 30)

    def runtime(vcf: Path | None) -> int:
        return job_resources("place_cohort", SIZE_OF["place_cohort"](SimpleNamespace(vcf=vcf)))["runtime"]

    assert runtime(tmp_path / "indexed.vcf.gz") == 10 and vcf_copy_size_mb(tmp_path / "indexed.vcf.gz") == 0
    assert runtime(None) == runtime(tmp_path / "not-yet.vcf.gz") == 10  # simulate_cohort has not run (dry run)
    assert runtime(plain) >= 60
    assert job_resources("place_cohort", vcf_copy_size_mb(plain), attempt=2)["runtime"] >= 120
    assert job_resources("place_cohort", vcf_copy_size_mb(plain))["mem_mb"] == 2000  # streamed: memory stays
    assert job_resources("check_cohort", 0.0)["runtime"] == 10
    # an index older than the VCF counts as none: ensure_indexed copies and indexes it anew
    stale = tmp_path / "indexed.vcf.gz"
    os.utime(f"{stale}.tbi", (1, 1))
    assert vcf_copy_size_mb(stale) == pytest.approx(5 * stale.stat().st_size / (1 << 20))


def test_variant_effect_asks_for_the_models_memory_and_time_by_its_genotypes() -> None:
    """variant_effect loads the same model weights as embed but asked for a fixed 4 GB (half of embed's base) and
    60 min whatever the number of variants; it now starts at embed's base and its time follows the genotypes
    (sized by genotypes.h5ad alone, not the FASTA it reads by region)."""
    from interp.resources import SIZED_BY

    assert job_resources("variant_effect", 0.0)["mem_mb"] >= SCALING["embed"].base_mb
    assert job_resources("variant_effect", 500.0)["runtime"] > job_resources("variant_effect", 5.0)["runtime"]
    assert SIZED_BY["variant_effect"] == ("genotypes",)
