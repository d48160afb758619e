"""The windows stage through an indexed FASTA: IUPAC counts in reference.json, index under the cache."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from interp import stages
from interp.genome import fasta as fasta_module


def test_windows_stage_counts_iupac_and_caches_index_of_read_only_fasta(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    bases = list("".join(rng.choice(list("ACGTacgt"), 3000)))
    for position, code in ((100, "R"), (1500, "y"), (2900, "S")):  # the last lies outside the region
        bases[position] = code
    sequence = "".join(bases)
    fasta = tmp_path / "genome.fa"
    fasta.write_text(">chrT\n" + "\n".join(sequence[i:i + 60] for i in range(0, 3000, 60)) + "\n")
    monkeypatch.setattr(fasta_module, "_writable", lambda folder: False)  # as if the folder were read-only
    out = tmp_path / "results"
    job = stages.Job(
        input={"fasta": str(fasta)},
        output={"parquet": str(out / "w.parquet"), "tsv": str(out / "w.tsv"), "fasta": str(out / "w.fa"),
                "bases": str(out / "b.parquet"), "reference": str(out / "reference.json")},
        params={"reference": {"fasta": str(fasta), "contig_aliases": {}},
                "regions": [{"name": "r", "contig": "chrT", "start": 0, "end": 2000}],
                "windows": {"width": 200, "stride": 100, "heldout_fraction": 0.2, "n_blocks": 2,
                            "gc_high_quantile": 0.5},
                "reference_cache": str(out / "reference")})
    stages.windows(job)
    stats = json.loads((out / "reference.json").read_text())
    assert stats["iupac_to_n"] == {"R": 1, "Y": 1} and stats["n_region_bases"] == 2000
    assert not (tmp_path / "genome.fa.fai").exists() and len(list((out / "reference").glob("*.fai"))) == 1
    seen = "".join(pl.read_parquet(out / "b.parquet")["base"].to_list())  # what models see: IUPAC -> N
    assert len(seen) == 2000 and seen[100] == "N" and seen[1500] == "N" and set(seen) <= set("ACGTN")
