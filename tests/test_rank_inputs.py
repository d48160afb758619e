"""interp.rank_inputs: phenotype values, the variant and window feature families, locus annotation
against a tiny annotation table and the rank table's order."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest


def test_phenotype_values_numbers_missing_and_text() -> None:
    import pandas as pd

    from interp.errors import InputError
    from interp.rank_inputs import phenotype_values

    got = phenotype_values(pd.Series(["1", None, "0", 2.5, np.nan], dtype=object), "p")
    np.testing.assert_array_equal(got, [1.0, np.nan, 0.0, 2.5, np.nan])
    with pytest.raises(InputError, match="phenotype 'p' has non-numeric value 'case'"):
        phenotype_values(pd.Series(["1", "case"], dtype=object), "p")


def test_variant_family_positions_names_and_dosage() -> None:
    import anndata as ad
    import pandas as pd

    from interp.rank_inputs import variant_family

    var = pd.DataFrame({"contig": ["chr1", "chr1", "chr2"], "pos": [10, 20, 30]},
                       index=["chr1:10:A:G", "chr1:20:CT:C", "odd"])
    geno = ad.AnnData(X=np.zeros((2, 3), dtype=np.float32), var=var)
    geno.layers["dosage"] = np.array([[0, 1, 2], [np.nan, 2, 0]], dtype=np.float32)
    fam = variant_family(geno)
    assert (fam.name, fam.kind) == ("variant", "variant")
    assert fam.short_names == ["chr1:10 A>G", "chr1:20 CT>C", "odd"]
    np.testing.assert_array_equal(fam.start, [9, 19, 29])
    np.testing.assert_array_equal(fam.end, [10, 20, 30])
    np.testing.assert_array_equal(fam.matrix, geno.layers["dosage"])
    del geno.layers["dosage"]
    np.testing.assert_array_equal(variant_family(geno).matrix, np.zeros((2, 3)))  # X without a dosage layer


def test_window_family_follows_the_sample_order() -> None:
    import anndata as ad
    import pandas as pd

    from interp.rank_inputs import window_family

    var = pd.DataFrame({"contig": ["chr1"] * 2, "start": [100, 100], "end": [150, 150], "dim": [0, 1]},
                       index=["m/b2/chr1:100-150/f0", "m/b2/chr1:100-150/f1"])
    w = ad.AnnData(X=np.array([[1, 2], [3, 4]], dtype=np.float32), obs=pd.DataFrame(index=["s2", "s1"]), var=var)
    w.uns.update({"kind": "sae", "model": "m", "layer": "b2"})
    fam = window_family(w, ["s1", "s2"])
    assert (fam.name, fam.kind, fam.model, fam.layer) == ("sae:m/b2", "sae", "m", "b2")
    np.testing.assert_array_equal(fam.matrix, [[3, 4], [1, 2]])
    assert fam.short_names == ["b2 chr1:100-150 f0", "b2 chr1:100-150 f1"]
    assert fam.features == ["m/b2/chr1:100-150/f0", "m/b2/chr1:100-150/f1"]


def test_annotate_loci_against_a_tiny_annotation() -> None:
    from interp.rank_inputs import annotate_loci

    annotation = pl.DataFrame({"contig": ["chr1", "chr1", "chr1"], "start": [100, 200, 350], "end": [200, 400, 450],
                               "feature": ["exon", "intron", "exon"], "gene": ["G1", "G1", "G2"]})
    v_ids = np.array([f"v{i}" for i in range(8)])
    v_pos0 = np.array([160, 170, 180, 190, 210, 220, 500, 160])
    v_contig = np.array(["chr1"] * 7 + ["chr2"])
    t = pl.DataFrame({"kind": ["embedding", "embedding", "variant", "variant", "variant"],
                      "feature": ["w1", "w2", "v0", "v6", "v7"], "contig": ["chr1", "chr1", "chr1", "chr1", "chr2"],
                      "start": [150, 150, 160, 500, 160], "end": [300, 300, 161, 501, 161]},
                     schema_overrides={"start": pl.Int32, "end": pl.Int32})
    out = annotate_loci(t, annotation, v_contig, v_pos0, v_ids)
    assert out["feature"].to_list() == ["w1", "w2", "v0", "v6", "v7"]  # rows kept in order
    assert out.schema["start"] == pl.Int64
    rows = {r["feature"]: r for r in out.iter_rows(named=True)}
    assert rows["w1"]["window"] == "chr1:150-300" and rows["w1"]["gene"] == "G1" and rows["w1"]["exon_overlap"]
    assert rows["w1"]["nearest_variants"] == "v0,v1,v2,v3,v4"  # the first 5 of the 6 inside; not chr2's v7
    assert rows["v0"]["window"] == "chr1:150-300"  # the model window holding the variant
    assert (rows["v0"]["gene"], rows["v0"]["exon_overlap"], rows["v0"]["nearest_variants"]) == ("G1", True, "v0")
    assert (rows["v6"]["window"], rows["v6"]["gene"], rows["v6"]["exon_overlap"]) == ("", "", False)
    assert rows["v7"]["window"] == "" and rows["v7"]["nearest_variants"] == "v7"
    wide = annotate_loci(t.with_columns(pl.lit(150).alias("start"), pl.lit(380).alias("end")).head(1), annotation,
                         v_contig, v_pos0, v_ids)
    assert wide["gene"][0] == "G1,G2"
    bare = annotate_loci(t, None, v_contig, v_pos0, v_ids)
    assert set(bare["gene"]) == {""} and not bare["exon_overlap"].any()


def test_order_rank_table_sorts_and_puts_key_columns_first() -> None:
    from interp.rank_inputs import order_rank_table

    t = pl.DataFrame({"extra": ["e1", "e2", "e3", "e4"], "p": [0.1, 0.2, 0.3, 0.4],
                      "rank": [2, None, 1, 1], "family": ["variant", "variant", "variant", "sae:m/b"],
                      "phenotype": ["a", "a", "a", "a"]})
    out = order_rank_table(t)
    assert out.columns == ["phenotype", "family", "rank", "p", "extra"]
    assert out["extra"].to_list() == ["e4", "e3", "e1", "e2"]
