"""Library functions that the rule layer (`interp/stages.py`) calls, on small hand-built inputs: window
renumbering across regions, the merge of marker-panel PCs, cohort embedding pooling, the audit's summaries
and masking, and the rank stage's inputs (phenotype values, feature families, locus annotation)."""

from __future__ import annotations

import polars as pl
import pytest


# ---------------------------------------------------------------- haplotype windows
def _assignments(region: str, starts: list[int], samples=("s1",), width: int = 10) -> pl.DataFrame:
    rows = [{"sample": s, "hap": h, "region": region, "window_index": i, "window_id": f"{region}:{i}",
             "start": st, "end": st + width, "seq_hash": f"{region}{st}{s}{h}"}
            for s in samples for h in (1, 2) for i, st in enumerate(starts)]
    return pl.DataFrame(rows, schema={"sample": pl.String, "hap": pl.Int8, "region": pl.String,
                                      "window_index": pl.Int32, "window_id": pl.String, "start": pl.Int64,
                                      "end": pl.Int64, "seq_hash": pl.String})


def test_renumber_windows_is_unique_across_regions_in_region_then_start_order() -> None:
    from interp.cohort.haplotypes import renumber_windows

    # region "b" listed first; its per-region indices (0, 1) collide with region "a"'s
    assign = pl.concat([_assignments("b", [100, 50]), _assignments("a", [500, 700, 900])])
    out = renumber_windows(assign)
    assert out["window_index"].dtype == pl.Int64
    assert out.columns[-1] == "window_index"
    got = dict(zip(out.select("region", "start").rows(), out["window_index"], strict=True))
    assert got == {("a", 500): 0, ("a", 700): 1, ("a", 900): 2, ("b", 50): 3, ("b", 100): 4}
    assert out.height == assign.height
    assert out.select("sample", "hap", "window_index").rows() == sorted(
        out.select("sample", "hap", "window_index").rows())


def test_merge_region_windows_adds_contig_window_id_and_sums_shared_sequences() -> None:
    from interp.cohort.haplotypes import merge_region_windows

    a = _assignments("g2", [0, 10], samples=("s1", "s2"))
    b = _assignments("g1", [30], samples=("s1", "s2"))
    d1 = pl.DataFrame({"seq_hash": ["h2", "h1"], "sequence": ["CC", "AA"], "n_haplotypes": [3, 1]})
    d2 = pl.DataFrame({"seq_hash": ["h1", "h3"], "sequence": ["AA", "GG"], "n_haplotypes": [2, 5]})
    assign, dist = merge_region_windows([a, b], [d1, d2], {"g1": "chr1", "g2": "chr2"})
    assert dist.rows() == [("h1", "AA", 3), ("h2", "CC", 3), ("h3", "GG", 5)]
    first = assign.filter((pl.col("sample") == "s2") & (pl.col("hap") == 2)).sort("window_index")
    assert first["window_id"].to_list() == ["chr1:30-40", "chr2:0-10", "chr2:10-20"]
    assert first["contig"].to_list() == ["chr1", "chr2", "chr2"]
    assert first["window_index"].to_list() == [0, 1, 2]
    with pytest.raises(pl.exceptions.InvalidOperationError):
        merge_region_windows([a], [d1], {"g1": "chr1"})  # a region without a contig
