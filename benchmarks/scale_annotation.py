"""Does reading the gene annotation cost what is studied, not the file? (real-size inputs review)

Writes (under benchmarks/out/annotation/) two GENCODE-like GTFs with the same 200 studied genes on chr1/chr2:
one of `--genes` genes and one 4x larger (the extra genes on other contigs and further along chr1/chr2), each
gene with 4 transcripts of 10 exons plus CDS rows and GENCODE's long attribute lists. Then, in a fresh process
each, reads every file whole (`read_annotation`) and keeping the studied genes only
(`keep=KeepStudied(..., genes=...)`, what the cohort stages do) and prints CPU seconds, peak RSS (VmHWM) and
the 4x/1x ratios. The file is still scanned line by line (time follows the file); a transcript that is not studied is
dropped at its `transcript` line, so memory follows the studied genes.

    nice -n 10 python benchmarks/scale_annotation.py            # 2,000 and 8,000 genes (62 and 248 MB)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "annotation"
STUDIED = [f"G{g:04d}" for g in range(200)]


def gene_place(g: int) -> tuple[str, int, str]:
    """(contig, 0-based start, strand) of gene g: genes 0-399 on chr1/chr2 (the first 200 studied), the rest
    on chr3..chr22."""
    contig = ("chr1", "chr2")[g % 2] if g < 400 else f"chr{3 + g % 20}"
    start = 1_000_000 + (g // 2) * 100_000 if g < 400 else 1_000_000 + g * 1000
    return contig, start, "+-"[g % 2]


def write_gtf(path: Path, n_genes: int, transcript_lines: bool = True) -> None:
    """GENCODE-like GTF: genes 0-399 on chr1/chr2 (the first 200 studied), the rest on chr3..chr22; without
    `transcript_lines`, exon and CDS rows only (as some older or hand-made GTFs)."""
    with open(path, "w") as out:
        out.write("##description: synthetic GENCODE-like annotation\n")
        for g in range(n_genes):
            contig, start, strand = gene_place(g)
            common = (f'gene_id "ENSG{g:011d}.1"; gene_type "protein_coding"; gene_name "G{g:04d}"; level 2; '
                      f'hgnc_id "HGNC:{g}"; havana_gene "OTTHUMG{g:011d}.1";')
            out.write(f"{contig}\tHAVANA\tgene\t{start + 1}\t{start + 30_000}\t.\t{strand}\t.\t{common}\n")
            for t in range(4):
                attrs = (common + f' transcript_id "ENST{g:08d}{t:03d}.1"; transcript_type "protein_coding"; '
                         f'transcript_name "G{g:04d}-20{t}"; protein_id "ENSP{g:08d}{t:03d}.1"; tag "basic";')
                lo, hi = start + t * 100, start + 30_000 - t * 100
                if transcript_lines:
                    out.write(f"{contig}\tHAVANA\ttranscript\t{lo + 1}\t{hi}\t.\t{strand}\t.\t{attrs}\n")
                for k in range(10):
                    e = lo + k * (hi - lo - 200) // 9
                    ea = attrs + f' exon_number {k + 1}; exon_id "ENSE{g:08d}{t}{k:02d}.1";'
                    out.write(f"{contig}\tHAVANA\texon\t{e + 1}\t{e + 200}\t.\t{strand}\t.\t{ea}\n")
                    out.write(f"{contig}\tHAVANA\tCDS\t{e + 1}\t{e + 200}\t.\t{strand}\t0\t{ea}\n")


def write_gff3(path: Path, n_genes: int, unsorted: bool = False) -> None:
    """The same genes as `write_gtf` in GENCODE-style GFF3 (gene -> mRNA -> exon / CDS, every row an ID);
    `unsorted`: each gene's rows children first (exons and CDS, then the mRNA, the gene line last)."""
    with open(path, "w") as out:
        out.write("##gff-version 3\n")
        for g in range(n_genes):
            contig, start, strand = gene_place(g)
            gid = f"gene:ENSG{g:011d}"
            rows = [f"{contig}\tensembl\tgene\t{start + 1}\t{start + 30_000}\t.\t{strand}\t.\tID={gid};"
                    f"Name=G{g:04d};biotype=protein_coding;gene_id=ENSG{g:011d};version=1\n"]
            for t in range(4):
                tid = f"transcript:ENST{g:08d}{t:03d}"
                lo, hi = start + t * 100, start + 30_000 - t * 100
                tx = [f"{contig}\tensembl\tmRNA\t{lo + 1}\t{hi}\t.\t{strand}\t.\tID={tid};Parent={gid};"
                      f"Name=G{g:04d}-20{t};biotype=protein_coding;tag=basic;transcript_id=ENST{g:08d}{t:03d}\n"]
                for k in range(10):
                    e = lo + k * (hi - lo - 200) // 9
                    tx.append(f"{contig}\tensembl\texon\t{e + 1}\t{e + 200}\t.\t{strand}\t.\tParent={tid};"
                              f"ID=exon:ENST{g:08d}{t:03d}:{k + 1};Name=ENSE{g:08d}{t}{k:02d};exon_id=ENSE{g:08d}{t}{k:02d};rank={k + 1};version=1\n")
                    tx.append(f"{contig}\tensembl\tCDS\t{e + 1}\t{e + 200}\t.\t{strand}\t0\t"
                              f"ID=CDS:ENSP{g:08d}{t:03d};Parent={tid};protein_id=ENSP{g:08d}{t:03d}\n")
                rows += tx[1:] + tx[:1] if unsorted else tx  # unsorted: the mRNA after its exons
            out.writelines(rows[1:] + rows[:1] if unsorted else rows)  # unsorted: the gene line last


CHILD = """
import json, resource, sys, time
from interp.genome.annotation import KeepStudied, read_annotation
path, mode, genes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
t = time.process_time()
keep = KeepStudied(["chr1", "chr2"], genes=genes) if mode == "studied" else None
table = read_annotation(path, keep=keep)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"rows": table.height, "cpu_s": time.process_time() - t, "rss_mb": hwm / 1024}))
"""


def measure(path: Path, mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, json.dumps(STUDIED)], cwd=REPO,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--format", choices=("gtf", "gtf-exons", "gff3", "gff3-unsorted"), default="gtf",
                        help="gtf-exons: a GTF without transcript lines; gff3-unsorted: children before parents")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    files = {}
    writers = {"gtf": write_gtf, "gff3": write_gff3,
               "gtf-exons": lambda path, n: write_gtf(path, n, transcript_lines=False),
               "gff3-unsorted": lambda path, n: write_gff3(path, n, unsorted=True)}
    writer = writers[args.format]
    for label, n in (("1x", args.genes), ("4x", 4 * args.genes)):
        name = {"gtf-exons": f"genes_{n}.exons.gtf", "gff3-unsorted": f"genes_{n}.unsorted.gff3"}.get(
            args.format, f"genes_{n}.{args.format}")
        files[label] = OUT / name
        if not files[label].exists():
            writer(files[label], n)
    rows = {(label, mode): measure(path, mode) for label, path in files.items() for mode in ("whole", "studied")}
    print(f"{'read':8} {'file':>5} {'MB':>6} {'rows':>8} {'CPU s':>6} {'peak RSS MB':>11}")
    for (label, mode), r in rows.items():
        size = files[label].stat().st_size / 2**20
        print(f"{mode:8} {label:>5} {size:6.0f} {r['rows']:8d} {r['cpu_s']:6.1f} {r['rss_mb']:11.0f}")
    for mode in ("whole", "studied"):
        a, b = rows[("1x", mode)], rows[("4x", mode)]
        print(f"{mode}: 4x/1x CPU {b['cpu_s'] / a['cpu_s']:.2f}, peak RSS {b['rss_mb'] / a['rss_mb']:.2f}")


if __name__ == "__main__":
    main()
