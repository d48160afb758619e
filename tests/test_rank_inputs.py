"""interp.rank_inputs: phenotype values, the variant and window feature families, locus annotation
against a tiny annotation table and the rank table's order."""

from __future__ import annotations

from pathlib import Path

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


def test_phenotype_values_refuses_an_infinite_value() -> None:
    """A log-transformed reading of 0 (-inf) was dropped by rank as missing: the lowest values left the
    analysis unseen, counted as missing phenotypes."""
    import pandas as pd

    from interp.errors import InputError
    from interp.rank_inputs import phenotype_values

    with pytest.raises(InputError, match=r"phenotype 'log_crp' has an infinite value \(-inf, 1 in all\)"):
        phenotype_values(np.log(pd.Series([1.2, 0.0, 3.4, np.nan])), "log_crp")


def test_phenotype_values_refuses_a_two_valued_phenotype_not_coded_0_1() -> None:
    """A case/control column coded 1/2 used to be taken as quantitative and tested by OLS (the t-test the
    issue showed anti-conservative for rare carriers); it is refused with a message. 0/1, and quantitative
    columns with more values, pass."""
    import pandas as pd

    from interp.errors import InputError
    from interp.rank_inputs import phenotype_values

    with pytest.raises(InputError, match=r"phenotype 'p' has two values \(1, 2\); code a binary phenotype 0/1"):
        phenotype_values(pd.Series([1, 2, 2, None, 1], dtype=object), "p")
    np.testing.assert_array_equal(phenotype_values(pd.Series([0, 1, None], dtype=object), "p"), [0, 1, np.nan])
    np.testing.assert_array_equal(phenotype_values(pd.Series([1, 1, None], dtype=object), "p"), [1, 1, np.nan])
    np.testing.assert_array_equal(phenotype_values(pd.Series([1.5, 2, 3], dtype=object), "p"), [1.5, 2, 3])


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


def test_window_family_follows_the_sample_order(tmp_path: Path) -> None:
    """In memory and on disk (the rank stage's path: X stays in the h5ad and is read by column blocks)."""
    import anndata as ad
    import pandas as pd

    from interp.errors import InputError
    from interp.rank_inputs import window_family

    var = pd.DataFrame({"contig": ["chr1"] * 2, "start": [100, 100], "end": [150, 150], "dim": [0, 1]},
                       index=["m/b2/chr1:100-150/f0", "m/b2/chr1:100-150/f1"])
    w = ad.AnnData(X=np.array([[1, 2], [3, 4]], dtype=np.float32), obs=pd.DataFrame(index=["s2", "s1"]), var=var)
    w.uns.update({"kind": "sae", "model": "m", "layer": "b2"})
    w.write_h5ad(tmp_path / "sae.windows.h5ad")
    for source in (w, tmp_path / "sae.windows.h5ad"):
        fam = window_family(source, ["s1", "s2"])
        assert (fam.name, fam.kind, fam.model, fam.layer) == ("sae:m/b2", "sae", "m", "b2")
        np.testing.assert_array_equal(fam.columns().read(slice(None)), [[3, 4], [1, 2]])
        np.testing.assert_array_equal(fam.columns(np.array([False, True])).read(np.array([1])), [[2]])
        assert fam.short_names == ["b2 chr1:100-150 f0", "b2 chr1:100-150 f1"]
        assert fam.features == ["m/b2/chr1:100-150/f0", "m/b2/chr1:100-150/f1"]
        with pytest.raises(InputError, match="lacks sample 's3'"):
            window_family(source, ["s1", "s3"])


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


# ------------------------------------------------------------------------------- variant-effect burden family
def _tiny_geno(dosage: np.ndarray, contig: list[str], pos: list[int], ids: list[str]):
    import anndata as ad
    import pandas as pd

    var = pd.DataFrame({"contig": contig, "pos": pos}, index=ids)
    geno = ad.AnnData(X=np.zeros(dosage.shape, dtype=np.float32), var=var,
                      obs=pd.DataFrame(index=[f"s{i}" for i in range(dosage.shape[0])]))
    geno.layers["dosage"] = dosage.astype(np.float32)
    return geno


def test_variant_effect_family_is_the_damaging_weighted_burden_by_hand() -> None:
    from interp.rank import Family
    from interp.rank_inputs import model_windows, variant_effect_family

    ids = ["chr1:101:A:G", "chr1:151:C:T", "chr1:201:G:A", "chr1:301:AT:A", "chr2:101:T:C", "chr1:251:A:C"]
    dosage = np.array([[1, 2, 0, 1, 2, 1],
                       [0, 1, np.nan, 0, 0, 0],  # v2 missing: mean of the observed 0 and 2
                       [2, 0, 2, 2, 1, 1]], dtype=float)
    geno = _tiny_geno(dosage, ["chr1", "chr1", "chr1", "chr1", "chr2", "chr1"], [101, 151, 201, 301, 101, 251], ids)
    # v1 has a positive score (ALT more likely: weight 0), v3 (a deletion) none, v5 is not in the table
    scores = pl.DataFrame({"variant_id": ids[:5], "score": [-2.0, 1.0, -0.5, None, -1.0], "model": ["m"] * 5})

    def fam(contig, start, end):
        return Family(name="embedding:m/b", kind="embedding", matrix=np.zeros((3, len(start))),
                      features=[str(i) for i in range(len(start))], short_names=[""] * len(start),
                      contig=np.array(contig), start=np.array(start), end=np.array(end))

    windows = model_windows([fam(["chr1", "chr1", "chr2"], [150, 100, 0], [250, 200, 200]),
                             fam(["chr1", "chr1", "chr3", "chr1"], [100, 300, 0, 100], [200, 400, 100, 200])])
    assert windows.rows() == [("chr1", 100, 200), ("chr1", 150, 250), ("chr1", 300, 400), ("chr2", 0, 200),
                              ("chr3", 0, 100)]
    f = variant_effect_family(geno, scores, windows)
    assert (f.name, f.kind, f.model, f.layer) == ("variant_effect:m", "variant_effect", "m", "")
    # chr1:300-400 holds only the unscored deletion and chr3 no variant: no feature
    assert f.features == ["m/variant_effect/chr1:100-200", "m/variant_effect/chr1:150-250",
                          "m/variant_effect/chr2:0-200"]
    assert f.short_names == ["burden chr1:100-200", "burden chr1:150-250", "burden chr2:0-200"]
    np.testing.assert_array_equal(f.start, [100, 150, 0])
    np.testing.assert_array_equal(f.end, [200, 250, 200])
    # by hand: window 1 = 2 x d(v0) (v1 weighs 0; v2 at 0-based 200 is outside [100, 200)),
    # window 2 = 0.5 x d(v2) (s1 imputed to 1), window 3 = 1 x d(v4)
    np.testing.assert_allclose(f.matrix, [[2.0, 0.0, 2.0], [0.0, 0.5, 0.0], [4.0, 1.0, 1.0]])
    assert f.matrix.dtype == np.float32
    none = variant_effect_family(geno, scores.with_columns(pl.col("score").abs()), windows)
    assert none is None  # no variant the model finds less likely than REF: no family


def test_burden_carriers_are_called_alt_carriers_not_imputed_missing_calls() -> None:
    """A missing call at a damaging variant takes the mean burden (above 0), which made its sample a
    "carrier" of the window: with 3 real carriers and 20 missing calls the window was tested (21-23
    "carriers" against min_carriers 10), its effect resting on 3 people. Carriers are now the samples with
    a called ALT of positive weight: 3, so the window is filtered like the variant itself."""
    import anndata
    import pandas as pd

    from interp.rank import RankConfig, rank_phenotype
    from interp.rank_inputs import variant_effect_family, variant_family

    rng = np.random.default_rng(0)
    n = 1000
    dosage = np.zeros((n, 2), dtype=np.float32)
    dosage[:3, 0] = 1  # the window's damaging variant: 3 carriers
    dosage[500:520, 0] = np.nan  # 20 missing calls
    dosage[:, 1] = rng.binomial(2, 0.3, n)
    geno = anndata.AnnData(X=dosage, var=pd.DataFrame({"contig": ["chr1", "chr1"], "pos": [1101, 1201]},
                                                      index=["chr1:1101:A:G", "chr1:1201:A:G"]))
    scores = pl.DataFrame({"variant_id": ["chr1:1101:A:G", "chr1:1201:A:G"], "score": [-4.0, 0.5],
                           "model": ["m", "m"]})
    fam = variant_effect_family(geno, scores, pl.DataFrame({"contig": ["chr1"], "start": [1000], "end": [1500]}))
    assert fam.matrix[500, 0] > 0  # the imputed burden stays in the test
    y = (rng.random(n) < 0.1).astype(float)
    y[:3] = 1
    y[700] = np.nan  # one sample without a value: the count among the others, capped as for any family
    table, _ = rank_phenotype("ph", y, rng.normal(size=(n, 2)), variant_family(geno), [fam], RankConfig(resamples=0))
    burden = table.filter(pl.col("family") == "variant_effect:m").row(0, named=True)
    assert (burden["n_carriers"], burden["n_carriers_cohort"]) == (3, 3)
    assert burden["filtered"] == "fewer than 10 carriers" and not np.isfinite(burden["p"] or np.nan)
    dosage[:40, 0] = 1  # 40 carriers: tested, and the count is theirs
    fam = variant_effect_family(geno, scores, pl.DataFrame({"contig": ["chr1"], "start": [1000], "end": [1500]}))
    table, _ = rank_phenotype("ph", y, rng.normal(size=(n, 2)), variant_family(geno), [fam], RankConfig(resamples=0))
    burden = table.filter(pl.col("family") == "variant_effect:m").row(0, named=True)
    assert (burden["n_carriers"], burden["n_carriers_cohort"], burden["filtered"]) == (40, 40, "")


def test_variant_effect_family_equals_the_whole_matrix_imputation_bit_for_bit(monkeypatch) -> None:
    """The burdens are imputed a block of positive-weight columns and a window at a time (no float64 copy of
    the whole dosage matrix); they equal, bit for bit, the definition: `mean_impute` of the whole matrix in
    float64, then each window's columns times their weights. Fractional dosages and missing calls (a column
    entirely missing among them), blocks of one column and of many, overlapping windows, two contigs."""
    import interp.rank_inputs as ri
    from interp.rank import mean_impute

    rng = np.random.default_rng(3)
    n, v = 257, 90
    contig = np.where(np.arange(v) < 60, "chr1", "chr2")
    pos = np.where(contig == "chr1", 1 + np.sort(rng.choice(5000, v, replace=False)),
                   1 + np.sort(rng.choice(3000, v, replace=False)))
    dosage = rng.uniform(0, 2, size=(n, v)).astype(np.float32)  # DS-like fractional dosages
    dosage[rng.random((n, v)) < 0.1] = np.nan
    dosage[:, 7] = np.nan
    ids = [f"{c}:{p}:A:G" for c, p in zip(contig, pos, strict=True)]
    score = rng.normal(size=v)
    score[7] = -1.0
    scores = pl.DataFrame({"variant_id": ids, "score": score, "model": ["m"] * v})
    windows = pl.DataFrame({"contig": ["chr1"] * 20 + ["chr2"] * 12,
                            "start": list(range(0, 5000, 250)) + list(range(0, 3000, 250)),
                            "end": list(range(500, 5500, 250)) + list(range(500, 3500, 250))})
    geno = _tiny_geno(dosage.astype(np.float64), contig.tolist(), pos.tolist(), ids)
    weight = np.maximum(-score, 0.0)
    imputed = mean_impute(geno.layers["dosage"].astype(np.float64))
    expected = []
    for c, s, e in windows.iter_rows():
        inside = np.flatnonzero((contig == c) & (pos - 1 >= s) & (pos - 1 < e) & (weight > 0))
        if inside.size:
            expected.append(imputed[:, inside] @ weight[inside])
    expected = np.column_stack(expected).astype(np.float32)
    for chunk in (1 << 24, n, 3 * n):  # one block; one column per block; three columns per block
        monkeypatch.setattr(ri, "IMPUTE_CHUNK_VALUES", chunk)
        f = ri.variant_effect_family(geno, scores, windows)
        assert f.matrix.shape == expected.shape
        np.testing.assert_array_equal(f.matrix, expected)


def _planted_cohort(seed: int = 5):
    """800 samples, 10 windows of 500 bases on chr1 with 3 independent variants each. The phenotype is
    driven by the variant at 3,251 (score -6, window chr1:3000-3500) and, as strongly, by the one at 1,251
    (score +6: ALT more likely than REF, weight 0; window chr1:1000-1500); the other scores are small."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n, starts = 800, np.arange(0, 5000, 500)
    pos = np.array([s + off for s in starts for off in (51, 251, 451)])
    v = pos.size
    dosage = rng.binomial(2, rng.uniform(0.1, 0.3, size=v), size=(n, v)).astype(float)
    ids = [f"chr1:{p}:A:G" for p in pos]
    score = rng.uniform(-0.3, -0.01, size=v)
    planted, decoy = int(np.flatnonzero(pos == 3251)[0]), int(np.flatnonzero(pos == 1251)[0])
    score[planted], score[decoy] = -6.0, 6.0
    pcs = rng.normal(size=(n, 2))
    lin = -1.5 + 1.0 * dosage[:, planted] + 1.0 * dosage[:, decoy] + 0.2 * pcs[:, 0]
    geno = _tiny_geno(dosage, ["chr1"] * v, pos.tolist(), ids)
    geno.obs["causal"] = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(float)
    geno.obs["null"] = (rng.random(n) < 0.3).astype(float)
    geno.obs["sex"] = pd.Categorical(rng.choice(["F", "M"], size=n))
    geno.obsm["X_pca"] = pcs
    scores = pl.DataFrame({"variant_id": ids, "score": score, "model": ["m"] * v})
    windows = pl.DataFrame({"contig": ["chr1"] * starts.size, "start": starts, "end": starts + 500})
    return geno, scores, windows, pd


def test_variant_effect_family_in_rank_cohort_own_scope_and_planted_window_first() -> None:
    from interp.rank import RankConfig, benjamini_hochberg
    from interp.rank_inputs import rank_cohort, variant_effect_family

    geno, scores, windows, _ = _planted_cohort()
    fam = variant_effect_family(geno, scores, windows)
    cfg = RankConfig(resamples=4, top_k=3, refit_top=2, seed=1)
    table, summary = rank_cohort(geno, [fam], None, ["causal", "null"], ["sex"], cfg)
    assert set(table["family"].unique()) == {"variant", "variant_effect:m"}
    ve = table.filter(pl.col("family") == "variant_effect:m")
    assert set(ve["kind"].unique()) == {"variant_effect"} and set(ve["model"].unique()) == {"m"}
    for phenotype in ("causal", "null"):
        t = ve.filter(pl.col("phenotype") == phenotype).sort("rank")
        assert t.height == 10  # every window holds a variant of positive weight
        assert set(t["bh_scope"]) == {f"BH within phenotype '{phenotype}' and family 'variant_effect:m' (10 tests)"}
        # BH within the family alone (not pooled with the 30 variant tests)
        np.testing.assert_allclose(t["q"].to_numpy(), benjamini_hochberg(t["p"].to_numpy()))
        assert t["rank"].to_list() == list(range(1, 11))
        assert "variant_effect:m" in next(s for s in summary["phenotypes"] if s["phenotype"] == phenotype)["families"]
    causal = ve.filter(pl.col("phenotype") == "causal").sort("rank")
    top = causal.row(0, named=True)
    # the planted damaging variant's window is first; the window of the equally causal variant with a
    # positive score (weight 0 in the damaging burden) is not found: |score| would have found it
    assert top["feature"] == "m/variant_effect/chr1:3000-3500" and top["q"] < 1e-6, causal
    assert top["lead_variant"] == "chr1:3251:A:G"
    decoy = causal.filter(pl.col("feature") == "m/variant_effect/chr1:1000-1500").row(0, named=True)
    assert decoy["p"] > 0.01, decoy
    assert causal.filter(pl.col("q") < 0.05)["feature"].to_list() == [top["feature"]]


def test_rank_cohort_without_covariates() -> None:
    """No covariates (the schema default `cohort.covariates: []`): the design is the PCs alone, and the
    variant results equal those with a constant covariate (which is dropped)."""
    from interp.covariates import covariate_design
    from interp.rank import RankConfig
    from interp.rank_inputs import rank_cohort

    assert covariate_design({}, [], sample_ids=["a", "b", "c"]).matrix.shape == (3, 0)
    geno, _, _, pd = _planted_cohort()
    cfg = RankConfig(resamples=2, top_k=3, refit_top=2, seed=1)
    table, summary = rank_cohort(geno, [], None, ["causal"], [], cfg)
    assert table.height == 30 and summary["covariate_columns"] == []
    geno.obs["const"] = pd.Categorical(["x"] * geno.n_obs)
    with_const, _ = rank_cohort(geno, [], None, ["causal"], ["const"], cfg)
    np.testing.assert_allclose(table.sort("feature")["p"].to_numpy(), with_const.sort("feature")["p"].to_numpy())


def test_rank_cohort_declared_categorical_covariate_is_one_hot() -> None:
    """cohort.categorical_covariates reaches rank's design: a site coded 1/2/3 is two one-hot columns."""
    from interp.rank import RankConfig
    from interp.rank_inputs import rank_cohort

    geno, _, _, _ = _planted_cohort()
    geno.obs["site"] = np.arange(geno.n_obs) % 3 + 1.0
    cfg = RankConfig(resamples=2, top_k=3, refit_top=2, seed=1)
    _, linear = rank_cohort(geno, [], None, ["causal"], ["site"], cfg)
    _, onehot = rank_cohort(geno, [], None, ["causal"], ["site"], cfg, categorical_covariates=["site"])
    assert linear["covariate_columns"] == ["site"]
    assert onehot["covariate_columns"] == ["site=2", "site=3"]


def test_rank_cohort_with_no_testable_phenotype_says_why() -> None:
    """Every phenotype skipped (one class after its missing values, or constant): rank_cohort died on
    polars' "cannot concat empty list"; it is an InputError naming each phenotype and its reason."""
    from interp.errors import InputError
    from interp.rank import RankConfig
    from interp.rank_inputs import rank_cohort

    geno, _, _, _ = _planted_cohort()
    geno.obs["all_cases"] = 1.0
    geno.obs["constant"] = 2.5
    geno.obs["no_values"] = np.nan  # a library caller's all-missing column (check_phenotypes refuses it earlier)
    cfg = RankConfig(resamples=2, top_k=3, refit_top=2, seed=1)
    with pytest.raises(InputError, match=r"no phenotype could be tested: 'all_cases' \(binary phenotype has only "
                                         r"one class\), 'constant' \(phenotype is constant.*\), 'no_values' \(no "
                                         r"individual has a value\)"):  # was numpy's "cannot reshape array of size 0"
        rank_cohort(geno, [], None, ["all_cases", "constant", "no_values"], [], cfg)
    table, summary = rank_cohort(geno, [], None, ["all_cases", "causal"], [], cfg)  # one is enough
    assert set(table["phenotype"]) == {"causal"} and "skipped" in summary["phenotypes"][0]


def test_annotate_loci_keeps_row_order_and_picks_the_shorter_window_on_a_tie() -> None:
    """Rows come back in rank's order (the join promised none), and a variant inside two windows that start at
    the same base (two models' window widths) is placed in the shorter one, not in whichever unique() gave."""
    from interp.rank_inputs import annotate_loci

    rows = [("variant", "chr1", 150, 151), ("embedding", "chr1", 100, 400), ("embedding", "chr1", 100, 200)]
    rows = rows * 50 + [("variant", "chr1", 350, 351)]
    t = pl.DataFrame({"kind": [r[0] for r in rows], "contig": [r[1] for r in rows], "start": [r[2] for r in rows],
                      "end": [r[3] for r in rows], "order": list(range(len(rows)))})
    out = annotate_loci(t, None, np.array(["chr1", "chr1"]), np.array([150, 350]), np.array(["v1", "v2"]))
    assert out["order"].to_list() == list(range(len(rows)))
    windows = dict(zip(out.filter(pl.col("kind") == "variant")["start"].to_list(),
                       out.filter(pl.col("kind") == "variant")["window"].to_list(), strict=False))
    assert windows == {150: "chr1:100-200", 350: "chr1:100-400"}


def _loci_one_by_one(t: pl.DataFrame, annotation, v_contig, v_pos0, v_ids) -> dict:
    """annotate_loci's columns written out locus by locus with full scans (the rule, not the fast way)."""
    windows = sorted({(c, s, e) for k, c, s, e in t.select("kind", "contig", "start", "end").iter_rows()
                      if k != "variant"})
    out = {}
    for k, c, s, e in t.select("kind", "contig", "start", "end").unique().iter_rows():
        hits = [] if annotation is None else [r for r in annotation.iter_rows(named=True)
                                              if r["contig"] == c and r["start"] < e and r["end"] > s]
        inside = [str(v) for v, vc, p in zip(v_ids, v_contig, v_pos0, strict=True) if vc == c and s <= p < e]
        holding = [w for w in windows if w[0] == c and w[1] <= s < w[2]]
        window = (f"{c}:{holding[0][1]}-{holding[0][2]}" if holding else "") if k == "variant" else f"{c}:{s}-{e}"
        out[(k == "variant", c, s, e)] = (",".join(sorted({r["gene"] for r in hits})),
                                          any(r["feature"] == "exon" for r in hits), ",".join(inside[:5]), window)
    return out


def test_annotate_loci_equals_the_rule_locus_by_locus_on_unsorted_variants_and_several_contigs() -> None:
    """Each locus's genes, exon flag, first five variants (file order) and holding window, found by binary
    search per contig (a scan of every variant per locus was quadratic: 9.1 s CPU at 20,000 variants and 4,000
    windows, now 0.3 s), equal a plain scan on random inputs: variants out of position order, windows and
    annotation rows on contigs the others lack, long and empty annotation rows."""
    from interp.rank_inputs import annotate_loci

    rng = np.random.default_rng(4)
    contigs = np.array(["chr1", "chr2", "chrX"])
    for trial in range(12):
        nv = int(rng.integers(1, 200))
        v_contig, v_pos0 = rng.choice(contigs, nv), rng.integers(0, 3000, nv)
        if trial % 2:  # a position-sorted file
            o = np.lexsort((v_pos0, v_contig))
            v_contig, v_pos0 = v_contig[o], v_pos0[o]
        v_ids = np.array([f"v{i}" for i in range(nv)])
        nw = int(rng.integers(0, 30))
        ws = rng.integers(0, 3000, nw)
        pick = rng.choice(nv, min(nv, 40), replace=False)
        t = pl.DataFrame({"kind": ["embedding"] * nw + ["variant"] * pick.size,
                          "contig": list(rng.choice(["chr1", "chr2", "chr9"], nw)) + list(v_contig[pick]),
                          "start": list(ws) + list(v_pos0[pick]),
                          "end": list(ws + rng.choice([100, 200, 500], nw)) + list(v_pos0[pick] + 1)},
                         schema_overrides={"start": pl.Int64, "end": pl.Int64})
        na = int(rng.integers(0, 25))
        a_start = rng.integers(0, 3000, na)
        annotation = None if trial % 4 == 0 else pl.DataFrame({
            "contig": rng.choice(contigs, na), "start": a_start, "end": a_start + rng.integers(0, 2000, na),
            "feature": rng.choice(["exon", "intron", "gene"], na), "gene": rng.choice(["G1", "G2", "G3"], na)})
        out = annotate_loci(t, annotation, v_contig, v_pos0, v_ids)
        expected = _loci_one_by_one(t, annotation, v_contig, v_pos0, v_ids)
        for r in out.iter_rows(named=True):
            key = (r["kind"] == "variant", r["contig"], r["start"], r["end"])
            assert (r["gene"], r["exon_overlap"], r["nearest_variants"], r["window"]) == expected[key], (trial, key)


def test_rank_cohort_counts_each_familys_cohort_carriers_once_for_every_phenotype(monkeypatch):
    """rank_cohort counts every family's carriers over the whole cohort once (`n_carriers_cohort`) and gives the
    same count to every phenotype's rows, whatever samples each phenotype leaves out."""
    import anndata as ad
    import pandas as pd

    import interp.rank as rank
    from interp.rank import RankConfig
    from interp.rank_inputs import rank_cohort

    rng = np.random.default_rng(3)
    n, m = 120, 4
    d = rng.binomial(2, 0.2, size=(n, m)).astype(np.float32)
    d[:, 0] = 0
    d[:9, 0] = 1  # 9 carriers
    obs = pd.DataFrame({"a": (rng.random(n) < 0.5).astype(float), "b": (rng.random(n) < 0.5).astype(float)},
                       index=[f"s{i}" for i in range(n)])
    obs.loc["s0", "a"] = np.nan  # one carrier without an `a` value
    var = pd.DataFrame({"contig": ["chr1"] * m, "pos": np.arange(1, m + 1) * 10},
                       index=[f"chr1:{(j + 1) * 10}:A:G" for j in range(m)])
    geno = ad.AnnData(X=d, obs=obs, var=var, obsm={"X_pca": rng.normal(size=(n, 2))})
    calls = []
    real = rank.cohort_carrier_counts
    monkeypatch.setattr(rank, "cohort_carrier_counts", lambda fam: calls.append(fam.name) or real(fam))
    table, _ = rank_cohort(geno, [], None, ["a", "b"], [], RankConfig(min_carriers=5, resamples=0, refit_top=0))
    assert calls == ["variant"]
    v0 = table.filter(pl.col("feature") == "chr1:10:A:G").sort("phenotype")
    assert v0["n_carriers"].to_list() == [8, 9] and v0["n_carriers_cohort"].to_list() == [9, 9]


def test_rank_cohort_with_the_dosages_on_disk_equals_it_in_memory(tmp_path, monkeypatch) -> None:
    """The rank stage leaves genotypes.h5ad's dosages on disk (`GenotypeFile`) and reads them a block of columns
    at a time: variant tests, carrier counts, mean imputation among each phenotype's samples, the burden family,
    tags, the lead and top variants' conditional tests. Missing calls (and samples without a phenotype) included,
    blocks of 4 columns on disk against the whole matrix in memory: the same table."""
    from interp import rank
    from interp.cohort.genotype_file import GenotypeFile, read_genotypes
    from interp.rank import RankConfig, carrier_counts
    from interp.rank_inputs import rank_cohort, variant_effect_family, variant_family
    from tests.test_rank import assert_same_table, rounded

    geno, scores, windows, _ = _planted_cohort()
    rng = np.random.default_rng(11)
    dosage = geno.layers["dosage"].copy()
    dosage[rng.random(dosage.shape) < 0.03] = np.nan
    geno.layers["dosage"] = dosage
    geno.obs.loc[geno.obs_names[:3], "null"] = np.nan  # 3 samples without this phenotype
    geno.write_h5ad(tmp_path / "genotypes.h5ad")
    cfg = RankConfig(resamples=4, top_k=3, refit_top=2, seed=1, tag_r=0.05, max_tags=3)
    want, want_summary = rank_cohort(geno, [variant_effect_family(geno, scores, windows)], None, ["causal", "null"],
                                     ["sex"], cfg)
    assert (want["family"] == "variant_effect:m").any() and want["tags_variants"].drop_nulls().len() > 0
    monkeypatch.setattr(rank, "COLUMN_CHUNK", 4)
    meta = read_genotypes(tmp_path / "genotypes.h5ad", dosage=False)
    assert not meta.layers
    with GenotypeFile(tmp_path / "genotypes.h5ad") as on_disk:
        assert not isinstance(on_disk.matrix, np.ndarray)
        fam = variant_effect_family(meta, scores, windows, dosage=on_disk.matrix)
        got, got_summary = rank_cohort(meta, [fam], None, ["causal", "null"], ["sex"], cfg,
                                       variants=variant_family(meta, on_disk.matrix))
    assert_same_table(got, want)
    assert rounded(got_summary["phenotypes"]) == rounded(want_summary["phenotypes"])  # to the last bits
    # carriers among the called genotypes of the samples with a value (not of the imputed dosages)
    rows = got.filter((pl.col("family") == "variant") & (pl.col("phenotype") == "null"))
    by_id = dict(zip(rows["feature"].to_list(), rows["n_carriers"].to_list(), strict=True))
    expected = carrier_counts(dosage[3:])
    assert [by_id[v] for v in geno.var_names] == expected.tolist()
    assert (expected < carrier_counts(np.nan_to_num(dosage[3:], nan=0.5))).any()  # imputed values would count


def test_tagged_variants_streamed_in_blocks_equals_one_block(monkeypatch) -> None:
    """Tags are collected a block of variants at a time: every block size gives the strongest max_tags per feature,
    ties by variant order, as the whole correlation matrix does."""
    from interp import rank

    rng = np.random.default_rng(2)
    n, v = 300, 23
    g = rng.binomial(2, 0.3, size=(n, v)).astype(float)
    g[:, 5] = g[:, 4]  # a tie: the earlier variant first
    g[:, 9] = 1.0  # constant: never a tag
    f = np.column_stack([g[:, 4] + rng.normal(size=n), g[:, 12] - g[:, 13] + rng.normal(size=n), rng.normal(size=n),
                         np.zeros(n)])
    ids = [f"v{j}" for j in range(v)]
    whole = rank.tagged_variants(f, g, ids, 0.1, 3)
    assert whole[0].startswith("v4(r=") and whole[0].split(";")[1].startswith("v5(") and whole[3] == ""
    for chunk in (1, 4, 22):
        monkeypatch.setattr(rank, "COLUMN_CHUNK", chunk)
        assert rank.tagged_variants(f, g, ids, 0.1, 3) == whole
        assert rank.tagged_variants(f, rank.Columns(g), ids, 0.1, 3) == whole
