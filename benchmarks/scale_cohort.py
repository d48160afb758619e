"""Does a cohort run's cost follow the region studied, not the VCF? (issue 8's scale benchmark)

Builds (once, cached under benchmarks/out/scale/): an msprime cohort of N diploid samples in three
populations (out-of-Africa model) over L Mb, written as a phased VCF; a 4x longer VCF with the same density
(the same simulated L Mb tiled four times along the contig, so the gene's records are identical in
both files); a synthetic FASTA (default 100 Mb, soft-masked blocks, a few IUPAC codes) that carries
every VCF REF allele; one gene of 30 kb in a UCSC-style table; samples.tsv.

Then runs check_cohort, haplotypes and ancestry on each VCF, ancestry twice: `ancestry_gene` (PCs from
the gene's own variants, no marker VCF) and `ancestry_markers` (the whole VCF as the ancestry-marker
VCF: its cost follows the markers by design), each stage in a fresh subprocess, and prints wall time and the stage's peak RSS
(VmHWM of that subprocess), its CPU time (user + system: steadier than wall time on a shared
machine), and the 4x/1x ratios. The wall time includes starting Python and importing the stage's
libraries (~1 s; numba compiles UMAP's code in each fresh `ancestry` process, ~20 s).

    nice -n 10 python benchmarks/scale_cohort.py                  # 2,504 samples, 20 Mb and 80 Mb
    nice -n 10 python benchmarks/scale_cohort.py --samples 500 --mb 5   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONTIG = "chr1"
# (label, stage, PCs from the whole VCF as the ancestry-marker VCF?)
STAGES = (("check_cohort", "check_cohort", True), ("haplotypes", "haplotypes", False),
          ("ancestry_gene", "ancestry", False), ("ancestry_markers", "ancestry", True))


def _gene_start(mb: float) -> int:
    """The 30 kb gene sits in the middle of the first copy of the simulated stretch."""
    return int(mb * 1e6) // 2 - 15_000


def _fasta(path: Path, length: int, seed: int, gene_start: int) -> np.ndarray:
    """Random ACGT bases, ~45% soft-masked in blocks, 1 IUPAC code per ~5 Mb; returns the bases (uint8)."""
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, length)]
    lower = np.zeros(length, dtype=bool)
    starts = rng.integers(0, length, length // 700)
    for s, w in zip(starts, rng.integers(100, 700, starts.size), strict=True):
        lower[s:s + w] = True
    text = bases.copy()
    iupac = rng.integers(0, length, max(length // 5_000_000, 1))
    iupac = np.append(iupac, gene_start + 12_345)  # one inside the gene: the report counts it
    text[iupac] = np.frombuffer(b"RYMKSW", dtype=np.uint8)[rng.integers(0, 6, iupac.size)]
    text[lower] |= 0x20
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(f">{CONTIG} synthetic\n".encode())
        for start in range(0, length, 60):
            out.write(text[start:start + 60].tobytes() + b"\n")
    os.replace(tmp, path)
    return bases


def _simulate(n_samples: int, length: int, seed: int):
    """Out-of-Africa (Gutenkunst et al. 2009, as the workflow's simulation): 1000 Genomes-like density."""
    import msprime

    from interp.cohort.simulate import out_of_africa_demography

    sizes = [n_samples // 3 + (1 if k < n_samples % 3 else 0) for k in range(3)]
    ts = msprime.sim_ancestry(samples=dict(zip(("YRI", "CEU", "CHB"), sizes, strict=True)),
                              demography=out_of_africa_demography(), sequence_length=length,
                              recombination_rate=1e-8, random_seed=seed)
    return msprime.sim_mutations(ts, rate=1.29e-8, random_seed=seed, discrete_genome=True)


def _write_vcfs(ts, bases: np.ndarray, length: int, copies: int, out: Path, seed: int) -> tuple[list[Path], int]:
    """The 1x VCF and the tiled `copies`x VCF (bgzip, tabix index); REF from the FASTA, one ALT.

    Streams: the 1x text is written while the tree sequence is decoded, the tiles are re-read from it.
    """
    import pysam

    rng = np.random.default_rng(seed)
    n = ts.num_samples // 2
    names = [f"S{i:05d}" for i in range(n)]
    header = ("##fileformat=VCFv4.2\n" f"##contig=<ID={CONTIG},length={bases.size}>\n"
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
              + "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *names]) + "\n")
    paths = [out / "cohort_1x.vcf", out / f"cohort_{copies}x.vcf"]
    cells = np.empty((n, 4), dtype=np.uint8)
    cells[:, 1], cells[:, 3] = ord("|"), ord("\t")
    last, n_records = -1, 0
    with open(paths[0], "w") as one:
        one.write(header)
        for variant in ts.variants():
            pos0 = int(variant.site.position)
            if pos0 == last or len(variant.alleles) != 2:
                continue
            last = pos0
            g = variant.genotypes
            cells[:, 0], cells[:, 2] = g[0::2] + 48, g[1::2] + 48
            ref = chr(bases[pos0])
            alt = "ACGT"[("ACGT".index(ref) + 1 + int(rng.integers(0, 3))) % 4]
            one.write(f"{CONTIG}\t{pos0 + 1}\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t{cells.tobytes()[:-1].decode()}\n")
            n_records += 1
    with open(paths[1], "w") as many:
        many.write(header)
        for copy in range(copies):
            with open(paths[0]) as one:
                for line in one:
                    if line.startswith("#"):
                        continue
                    fields = line.split("\t", 5)
                    pos0 = int(fields[1]) - 1 + copy * length
                    ref = chr(bases[pos0])  # a tile carries the FASTA's base at its new position
                    alt = fields[4] if fields[4] != ref else fields[3]
                    many.write(f"{CONTIG}\t{pos0 + 1}\t.\t{ref}\t{alt}\t{fields[5]}")
    gz = []
    for p in paths:
        target = p.with_suffix(".vcf.gz")
        if shutil.which("bgzip"):  # multi-threaded
            with open(target, "wb") as dst:
                subprocess.run(["bgzip", "-@", "2", "-c", str(p)], stdout=dst, check=True)
        else:
            pysam.tabix_compress(str(p), str(target), force=True)
        pysam.tabix_index(str(target), preset="vcf", force=True)
        p.unlink()
        gz.append(target)
    return gz, n_records


def build_inputs(out: Path, n_samples: int, mb: float, copies: int, fasta_mb: float, seed: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "inputs.json"
    key = {"samples": n_samples, "mb": mb, "copies": copies, "fasta_mb": fasta_mb, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        return json.loads(stamp.read_text())
    length = int(mb * 1e6)
    fasta_length = max(int(fasta_mb * 1e6), copies * length + 1000)
    t0 = time.perf_counter()
    gene_start = _gene_start(mb)
    bases = _fasta(out / "genome.fa", fasta_length, seed, gene_start)
    for stale in (out / "genome.fa.fai",):
        stale.unlink(missing_ok=True)
    t1 = time.perf_counter()
    ts = _simulate(n_samples, length, seed)
    t2 = time.perf_counter()
    vcfs, n_records = _write_vcfs(ts, bases, length, copies, out, seed)
    t3 = time.perf_counter()
    (out / "genes.tsv").write_text(
        "#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END\n"
        f"GENE30K\t{CONTIG}\t+\t{gene_start}\t{gene_start + 30_000}\t"
        f"{gene_start},{gene_start + 10_000},{gene_start + 28_000},\t"
        f"{gene_start + 500},{gene_start + 10_400},{gene_start + 30_000},\n")
    rng = np.random.default_rng(seed)
    pops = np.repeat(["pop_0", "pop_1", "pop_2"], [n_samples // 3 + (k < n_samples % 3) for k in range(3)])
    lines = ["sample_id\tpopulation\tcase"] + [f"S{i:05d}\t{pops[i]}\t{int(rng.random() < 0.4)}"
                                               for i in range(n_samples)]
    (out / "samples.tsv").write_text("\n".join(lines) + "\n")
    info = {"key": key, "vcfs": [str(v) for v in vcfs], "n_records_1x": None,
            "seconds": {"fasta": round(t1 - t0, 1), "msprime": round(t2 - t1, 1), "vcf": round(t3 - t2, 1)},
            "sizes_mb": {Path(v).name: round(Path(v).stat().st_size / 1e6, 1) for v in vcfs}}
    info["n_records_1x"] = n_records
    stamp.write_text(json.dumps(info, indent=2))
    return info


_RUNNER = """
import json, resource, sys, time
from interp import stages
job = stages.Job.from_json(sys.argv[2])
t0 = time.perf_counter()
getattr(stages, sys.argv[1])(job)
wall = time.perf_counter() - t0
use = resource.getrusage(resource.RUSAGE_SELF)
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would include the parent's memory at fork time
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"stage_seconds": wall, "cpu_s": use.ru_utime + use.ru_stime, "max_rss_mb": hwm / 1024}))
"""


def _job(out: Path, run: Path, vcf: Path, stage: str, cohort_vcf: Path, panel: bool) -> dict:
    inputs = {"fasta": str(out / "genome.fa"), "annotation": str(out / "genes.tsv"),
              "samples": str(out / "samples.tsv"),
              "vcf": str(vcf if stage == "check_cohort" else cohort_vcf)}
    if panel:
        inputs["panel"] = str(vcf)  # genome-wide-like markers: the whole VCF
    outputs = {"check_cohort": {"summary": run / "validation.json", "vcf": cohort_vcf,
                                "tbi": Path(f"{cohort_vcf}.tbi")},
               "haplotypes": {"assignments": run / "haplotypes.parquet", "sequences": run / "sequences.parquet",
                              "stats": run / "haplotypes.stats.json"},
               "ancestry": {"genotypes": run / "genotypes.h5ad"}}[stage]
    cohort = {"genes": ["GENE30K"], "flank": 0, "window": {"width": 1000, "stride": 1000},
              "phenotypes": ["case"], "covariates": [], "population_column": "population", "missing": "ref",
              "unphased": "ref", "maf": 0.05, "n_pcs": 5}
    params = {"reference": {"fasta": inputs["fasta"], "annotation_format": "ucsc", "contig_aliases": {}},
              "cohort": cohort, "n_folds": 5, "seed": 7, "reference_cache": str(run / "reference")}
    return {"input": inputs, "output": {k: str(v) for k, v in outputs.items()}, "params": params, "threads": 1}


def run_stage(stage: str, job: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _RUNNER, stage, json.dumps(job)], env=env, cwd=REPO,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{stage} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2504)
    parser.add_argument("--mb", type=float, default=20.0, help="length of the 1x VCF, Mb")
    parser.add_argument("--copies", type=int, default=4, help="the long VCF is this many times longer")
    parser.add_argument("--fasta-mb", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "scale")
    args = parser.parse_args()
    out = args.out / f"n{args.samples}_{args.mb:g}mb"
    info = build_inputs(out, args.samples, args.mb, args.copies, args.fasta_mb, args.seed)
    print(f"inputs: {args.samples} samples, {info['n_records_1x']} records per {args.mb:g} Mb, "
          f"files {info['sizes_mb']} MB, built in {info['seconds']} s", flush=True)
    results: dict[str, dict[str, dict]] = {}
    for label, vcf in zip(("1x", f"{args.copies}x"), info["vcfs"], strict=True):
        run = out / f"run_{label}"
        run.mkdir(exist_ok=True)
        cohort_vcf = run / "cohort.vcf.gz"
        results[label] = {}
        for name, stage, panel in STAGES:
            results[label][name] = run_stage(stage, _job(out, run, Path(vcf), stage, cohort_vcf, panel))
            r = results[label][name]
            print(f"{label:>3} {name:<16} wall {r['wall_s']:6.1f} s (stage {r['stage_seconds']:6.1f} s)  "
                  f"CPU {r['cpu_s']:6.1f} s  peak RSS {r['max_rss_mb']:7.0f} MB", flush=True)
        validation = json.loads((run / "validation.json").read_text())
        print(f"    validation: {validation['n_records_checked']} records checked in the gene, "
              f"IUPAC->N in gene: {validation['reference']['iupac_to_n']}", flush=True)
    big = f"{args.copies}x"
    print(f"\n| stage | 1x wall s | {big} wall s | ratio | 1x CPU s | {big} CPU s | ratio | 1x peak MB | "
          f"{big} peak MB | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, _, _ in STAGES:
        a, b = results["1x"][name], results[big][name]
        print(f"| {name} | {a['wall_s']:.1f} | {b['wall_s']:.1f} | {b['wall_s'] / a['wall_s']:.2f} | "
              f"{a['cpu_s']:.1f} | {b['cpu_s']:.1f} | {b['cpu_s'] / a['cpu_s']:.2f} | "
              f"{a['max_rss_mb']:.0f} | {b['max_rss_mb']:.0f} | {b['max_rss_mb'] / a['max_rss_mb']:.2f} |")
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
