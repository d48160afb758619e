"""interp.audit_summary: the audit stage's summaries (feature attribution, SAE feature leakage), the
masking of groups under 5 samples, the table and details, and one embedding audited per phenotype."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest


def test_mask_small_groups_hides_counts_below_five() -> None:
    from interp.audit_summary import mask_small_groups

    groups = [{"population": "A", "n": 4, "auroc": 0.7}, {"population": "B", "n": 5, "auroc": 0.6},
              {"population": "C", "n": np.int64(2), "auroc": 0.9}, {"population": "D", "auroc": 0.5},
              {"population": "E", "n": "<5"}]
    out = mask_small_groups(groups)
    assert out == [{"population": "A", "n": "<5"}, groups[1], {"population": "C", "n": "<5"},
                   {"population": "D", "n": "<5"}, groups[4]]
    assert mask_small_groups(groups, min_n=3)[0] == groups[0]
    assert mask_small_groups([]) == []


def test_attribution_summary_counts_and_orders() -> None:
    from interp.audit_summary import attribution_summary

    m = 12
    attribution = pl.DataFrame({
        "feature": np.arange(m), "p_ancestry": np.linspace(0.001, 0.9, m)[::-1],
        "q_ancestry": [0.01, 0.04, 0.05, 0.06] + [0.5] * (m - 4),
        "p_phenotype": np.linspace(0.001, 0.9, m), "q_phenotype": [0.2] * (m - 1) + [0.001],
        "ancestry_dominated": [True, True] + [False] * (m - 2)})
    s = attribution_summary(attribution)
    assert (s["n_features"], s["n_ancestry_significant"], s["n_phenotype_significant"],
            s["n_ancestry_dominated"]) == (12, 3, 1, 2)
    assert [r["feature"] for r in s["top_ancestry"]] == list(range(11, 1, -1))
    assert [r["feature"] for r in s["top_phenotype"]] == list(range(10))


def test_sae_feature_leakage_finds_the_population_feature_and_skips_dead_ones() -> None:
    from interp.audit_summary import sae_feature_leakage

    rng = np.random.default_rng(0)
    n = 80
    population = np.repeat(["A", "B"], n // 2)
    is_b = (population == "B").astype(float)
    pcs = (is_b + rng.normal(scale=0.1, size=n))[:, None]
    y = rng.integers(0, 2, n).astype(float)
    F = np.column_stack([np.zeros(n), 3 * is_b + rng.normal(scale=0.2, size=n), rng.normal(size=n)])
    assert sae_feature_leakage(None, y, pcs, population) is None
    out = sae_feature_leakage(F, y, pcs, population)
    assert out["n_features_alive"] == 2
    assert out["n_features_population_auroc_over_0.8"] == 1
    assert out["top_leaky"][0]["feature"] == 1  # the column of F, not of the alive features
    assert {r["feature"] for r in out["top_leaky"]} == {1, 2}


def _result(phenotype: str, layer: str, by_population: list[dict]) -> dict:
    return {"phenotype": phenotype, "model": "m", "layer": layer, "verdict": "PASS", "verdict_rule": "r",
            "reason": "why", "reasons": ["why"], "multiplicity": "holm over 2 verdicts", "null_method": "permute",
            "strata_source": "labels", "thresholds": {"t": 1}, "covariates": {}, "descriptors": {"gc": {"r": 0.1}},
            "by_population": by_population, "between_group_difference": 0.2,
            "auroc_lopo_by_population": {g["population"]: 0.6 for g in by_population},
            "p_within": 0.01, "n": 40, "auroc_ci": None}


def test_audit_tables_rows_sorted_scalars_only_and_details_masked() -> None:
    from interp.audit_summary import audit_tables

    results = [_result("z", "block1", [{"population": "A", "n": 3}, {"population": "B", "n": 37}]),
               _result("a", "block2", [{"population": "A", "n": 20}, {"population": "B", "n": 20}])]
    extras = [{"attribution": {"n_features": 4}, "sae_feature_leakage": None}] * 2
    table, details = audit_tables(results, extras, "impute")
    assert table["phenotype"].to_list() == ["a", "z"]
    assert table.columns[:3] == ["phenotype", "model", "layer"]
    assert table.columns[-1] == "reasons" and table["reasons"].to_list() == ["why", "why"]
    assert "thresholds" not in table.columns and "by_population" not in table.columns
    assert "auroc_ci" in table.columns and "p_within" in table.columns
    assert [d["phenotype"] for d in details] == ["z", "a"]  # input order
    assert details[0]["by_population"] == [{"population": "A", "n": "<5"}, {"population": "B", "n": 37}]
    # the held-out-population AUROC of a group under 5 is left out, as its other statistics are
    assert details[0]["auroc_lopo_by_population"] == {"B": 0.6}
    assert details[1]["auroc_lopo_by_population"] == {"A": 0.6, "B": 0.6}
    assert details[0]["covariate_policy"] == {"missing": "impute", "covariates": {},
                                              "descriptors_not_adjusted_for": ["gc"]}
    assert details[0]["attribution"] == {"n_features": 4} and details[0]["sae_feature_leakage"] is None
    assert details[1]["by_stratum"] == []


def test_audit_embedding_one_group_without_population_labels() -> None:
    import anndata as ad
    import pandas as pd

    from interp.audit import AuditConfig
    from interp.audit_summary import audit_embedding

    rng = np.random.default_rng(1)
    n = 60
    obs = pd.DataFrame({"pheno": rng.integers(0, 2, n).astype(float), "gc": rng.normal(0.4, 0.01, n),
                        "population": np.repeat(["A", "B"], n // 2)}, index=[f"s{i}" for i in range(n)])
    table = ad.AnnData(X=rng.normal(size=(n, 3)).astype(np.float32), obs=obs)
    table.obsm["X_pca"] = rng.normal(size=(n, 2))
    table.uns.update({"model": "m", "layer": "block1"})
    cfg = AuditConfig(n_folds=3, bootstrap=10, max_null_replicates=99, seed=0)
    [(res, extra)] = audit_embedding(table, None, ["pheno"], cfg, [], max_null_replicates=99)
    assert (res["phenotype"], res["model"], res["layer"]) == ("pheno", "m", "block1")
    assert [g["population"] for g in res["by_population"]] == ["all"]
    assert list(res["descriptors"]) == ["gc"]
    assert extra["attribution"]["n_features"] == 3 and extra["sae_feature_leakage"] is None
    [(labelled, _)] = audit_embedding(table, None, ["pheno"], cfg, [], population_column="population",
                                      max_null_replicates=99)
    assert sorted(g["population"] for g in labelled["by_population"]) == ["A", "B"]
    # a site coded 1/2/3, declared categorical (cohort.categorical_covariates), enters as one-hot columns
    table.obs["site"] = np.arange(n) % 3 + 1.0
    [(declared, _)] = audit_embedding(table, None, ["pheno"], cfg, ["site"], max_null_replicates=99,
                                      categorical_covariates=["site"])
    assert declared["covariates"]["site"]["columns"] == ["site=2", "site=3"]


def _write_sample_table(folder, ids: list[str], seed: int) -> None:
    """A 2-population sample table of len(ids) samples (3 random embedding columns, 2 PCs, a random binary
    phenotype `pheno`) at folder/m/block1.samples.h5ad."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = len(ids)
    obs = pd.DataFrame({"pheno": rng.integers(0, 2, n).astype(float), "population": np.repeat(["A", "B"], n // 2)},
                       index=ids)
    table = ad.AnnData(X=rng.normal(size=(n, 3)).astype(np.float32), obs=obs)
    table.obsm["X_pca"] = rng.normal(size=(n, 2))
    table.uns.update({"model": "m", "layer": "block1"})
    (folder / "m").mkdir()
    table.write_h5ad(folder / "m" / "block1.samples.h5ad")


def test_audit_run_finds_labels_from_a_population_column_of_any_name(tmp_path) -> None:
    """cohort.population_column names samples.tsv's column (here `superpopulation`); the cohort's tables carry
    it as `population`, and the audit must stratify by those labels, not fall back to PC bins."""
    from interp.audit import AuditConfig
    from interp.audit_summary import audit_run

    _write_sample_table(tmp_path, [f"s{i}" for i in range(60)], seed=2)
    cfg = AuditConfig(n_folds=3, bootstrap=10, max_null_replicates=99, seed=0)
    _, details = audit_run([str(tmp_path / "m")], ["pheno"], [], cfg, population_column="superpopulation")
    assert details[0]["strata_source"] == "labels"
    assert sorted(g["population"] for g in details[0]["by_population"]) == ["A", "B"]
    _, unlabelled = audit_run([str(tmp_path / "m")], ["pheno"], [], cfg, population_column=None)
    assert unlabelled[0]["strata_source"] == "pc_bins"


def test_audit_run_refuses_duplicate_sample_ids(tmp_path) -> None:
    """A sample listed twice in an embedding table was audited twice: its copy is its own neighbour for the
    leave-one-out probe, whose null replicates give the two copies independent labels. On a null phenotype
    with 150 of 300 samples listed twice that gave p_within 0.005-0.03 and PASS in 3 of 3 cohorts."""
    import pytest

    from interp.audit import AuditConfig
    from interp.audit_summary import audit_run
    from interp.errors import InputError

    _write_sample_table(tmp_path, [f"s{i}" for i in range(50)] + [f"s{i}" for i in range(10)], seed=3)
    cfg = AuditConfig(n_folds=3, bootstrap=10, max_null_replicates=99, seed=0)
    with pytest.raises(InputError, match=r"m block1: 10 sample ID\(s\) appear more than once.*'s0', 's1'"):
        audit_run([str(tmp_path / "m")], ["pheno"], [], cfg, population_column="population")


def test_groups_with_under_five_cases_or_controls_are_masked_not_just_small_groups() -> None:
    """A population of 200 with 2 cases is a phenotype x population cell of 2 people: its prevalence x n gives the
    count and its AUROC ranks those 2 against the controls, so only its size and "<5 cases" are shown, and its
    held-out-population AUROC is left out; zero cases (or controls) count as under 5 too."""
    from interp.audit_summary import audit_tables, mask_small_groups

    def group(pop: str, n: int, cases: int) -> dict:
        return {"population": pop, "n": n, "prevalence": cases / n, "auroc": 0.9, "auroc_ci_low": 0.8,
                "auroc_ci_high": 0.95, "accuracy": 0.7, "accuracy_ci_low": 0.6, "accuracy_ci_high": 0.8}

    groups = [group("FEW", 200, 2), group("ALL", 40, 37), group("OK", 100, 30), group("NONE", 50, 0),
              group("EDGE", 10, 5), {"population": "TINY", "n": 3, "prevalence": 1 / 3}]
    out = mask_small_groups(groups)
    # TINY's size would be the total minus the others': ALL's size (the first by name, as the cohort's population
    # table masks it, `suppressed_sizes`) is masked with it; that leaves every small count its label's whole range
    assert out == [{"population": "FEW", "n": 200, "small_cell": "<5 cases"},
                   {"population": "ALL", "n": "masked", "small_cell": "masked"},  # no size class told
                   groups[2],
                   {"population": "NONE", "n": 50, "small_cell": "<5 cases"}, groups[4],
                   {"population": "TINY", "n": "<5"}]
    result = _result("p", "block1", groups[:3])
    _, details = audit_tables([result], [{"attribution": {}, "sae_feature_leakage": None}], "refuse")
    # FEW's cases and ALL's are 39 together, so FEW's 0-4 would be 0-3 (ALL's 40 less 0-4 controls): OK is
    # masked too, and with it its held-out AUROC
    assert details[0]["auroc_lopo_by_population"] == {}
    assert details[0]["by_population"] == [
        out[0], {"population": "ALL", "n": 40, "small_cell": "<5 controls"},
        {"population": "OK", "n": 100, "small_cell": "masked (complementary)"}]


def _feasible_cases(details: dict, row: dict, population: str) -> set[int]:
    """Every case count of `population` consistent with what the report shows: the row's exact n_cases and
    n_minority_within, the shown groups' prevalence x n, and each masked group's declared range (a reader
    who knows the masking rule: "<5 cases" 0-4, "<5 controls" n-4..n, complementary 5..n-5)."""
    import itertools

    groups = details["by_population"]
    shown = sum(round(g["prevalence"] * g["n"]) for g in groups if "prevalence" in g)
    ranges = []
    for g in groups:
        if "prevalence" in g:
            continue
        n = g["n"] if isinstance(g["n"], int) else None
        why = g.get("small_cell")
        if why == "<5 controls":
            ranges.append(range(n - 4, n + 1))
        elif why == "<5 cases or controls":
            ranges.append(range(0, n + 1))
        elif why in (None, "<5 cases"):  # "<5" groups have no small_cell
            ranges.append(range(0, 5))
        else:
            ranges.append(range(5, (n - 5 if n else row["n_samples"]) + 1))
    masked = [g["population"] for g in groups if "prevalence" not in g]
    out = set()
    for combo in itertools.product(*ranges):
        if sum(combo) != row["n_cases"] - shown:
            continue
        out.add(combo[masked.index(population)])
    return out


def test_a_population_with_three_cases_cannot_be_had_by_subtraction() -> None:
    """Complementary suppression: with one population masked for 3 cases, the report's exact n_cases minus the
    other populations' prevalence x n gave the 3 (and n_minority_within, the sum over strata of min(cases,
    controls), gave it too). A second population is masked, its held-out AUROC and its extreme in the
    between-group difference left out with it, and n_minority_within is null while any stratum is masked (and
    n_strata_used, whose shortfall from n_strata told a masked stratum of 0 cases from one of 1-4)."""
    from interp.audit import by_population
    from interp.audit_summary import audit_tables

    rng = np.random.default_rng(0)
    sizes, cases = {"AFR": 120, "EUR": 80, "SAS": 40, "EAS": 30}, {"AFR": 40, "EUR": 25, "SAS": 12, "EAS": 3}
    population = np.concatenate([[p] * n for p, n in sizes.items()])
    y = np.concatenate([np.r_[np.ones(cases[p]), np.zeros(n - cases[p])] for p, n in sizes.items()])
    score = rng.normal(size=y.size) + y
    groups, diff = by_population(y, score, population, n_boot=0, seed=0)
    result = _result("p", "block1", groups) | {
        "between_group_difference": diff, "n_samples": int(y.size), "n_cases": int(y.sum()),
        "n_minority_within": int(sum(min(c, sizes[p] - c) for p, c in cases.items())),
        "n_strata": 4, "n_strata_used": 4}
    table, details = audit_tables([result], [{"attribution": {}, "sae_feature_leakage": None}], "refuse")
    row = table.row(0, named=True)
    # the strata with a case and a control: 3 of 4 would say the "<5 cases" one has none (its mask says 0-4)
    assert row["n_strata"] == 4 and row["n_strata_used"] is None
    masked = [g["population"] for g in details[0]["by_population"] if "prevalence" not in g]
    assert masked == ["AFR", "EAS"]  # the first group by name goes with the one of 3 cases
    assert details[0]["by_population"][0] == {"population": "AFR", "n": 120, "small_cell": "masked (complementary)"}
    assert _feasible_cases(details[0], row, "EAS") == {0, 1, 2, 3, 4}
    assert row["n_minority_within"] is None
    assert set(details[0]["auroc_lopo_by_population"]) == {"EUR", "SAS"}
    prev = {g["population"]: g["prevalence"] for g in groups}
    assert diff["prevalence"] == pytest.approx(abs(prev["SAS"] - prev["EUR"]))
    # nothing masked: nothing extra is hidden and n_minority_within is kept
    full = _result("q", "block1", [groups[0], groups[2]]) | {"n_minority_within": 7, "n_strata_used": 2}
    table, details = audit_tables([full], [{"attribution": {}, "sae_feature_leakage": None}], "refuse")
    assert details[0]["by_population"] == [groups[0], groups[2]] and table["n_minority_within"].to_list() == [7]
    assert table["n_strata_used"].to_list() == [2]


def test_complementary_suppression_covers_sizes_and_zero_sums() -> None:
    """A single group under 5 samples: its size is the total minus the others', so a second group's size is
    masked too. Two groups of 0 cases each: their sum, 0, pins both, so a third group is masked."""
    from interp.audit import COMPLEMENTARY, SIZE_MASKED, suppressed_groups

    names = ["Z", "Y", "X", "W"]  # the complement is the first by name: Y before Z
    assert suppressed_groups([100, 60, 3], [30, 20, 1], names=names[:3], absent_names=[]) == [
        (None, False), (SIZE_MASKED, True), ("<5", True)]
    assert suppressed_groups([100, 60, 50, 50], [30, 20, 0, 0], names=names, absent_names=[]) == [
        (None, False), (COMPLEMENTARY, False), ("<5 cases", False), ("<5 cases", False)]
    assert suppressed_groups([100, 60, 50], [30, 20, 2], names=names[:3], absent_names=[]) == [
        (None, False), (COMPLEMENTARY, False), ("<5 cases", False)]
    # by name, whatever the sizes (by size, the smallest of 15 or more, a reader who knew the rule bounded the
    # masked size by the shown ones); without names, in the order given
    assert suppressed_groups([100, 60, 50], [30, 20, 2]) == [(COMPLEMENTARY, False), (None, False), ("<5 cases", False)]
    assert suppressed_groups([12, 300, 16, 40], [6, 100, 8, 3], names=names, absent_names=[]) == [
        (None, False), (None, False), (COMPLEMENTARY, False), ("<5 cases", False)]
    # a complement of 16 with 8 cases leaves "<5 cases" its 0-4 (11 cases: 3-4 would not, with 12 and 6, be
    # 0-4: 9 cases give 2-4), so a second one is masked where the first has 12 samples
    assert suppressed_groups([12, 300, 16, 40], [6, 100, 8, 3]) == [
        (COMPLEMENTARY, False), (COMPLEMENTARY, False), (None, False), ("<5 cases", False)]
    # the complement of a "<5" group has its size hidden, so it says nothing of its counts ("masked"): 11 with 5
    # cases, "<5 cases or controls" before, a size class the cohort table's "masked" does not give
    assert suppressed_groups([12, 11, 3], [6, 5, 1], names=names[:3], absent_names=[]) == [
        (None, False), (SIZE_MASKED, True), ("<5", True)]
    assert suppressed_groups([100, 60], [30, 20]) == [(None, False), (None, False)]


def _hidden_values(n: list[int], cases: list[int], masked: list) -> dict[int, set]:
    """Exact reader of one phenotype's by_population: per hidden group, every (size, cases) it can have given the
    exact totals, the shown groups' sizes and prevalences, and what the README says of a hidden group ("<5": 1-4
    people; "<5 cases": 0-4 cases; "<5 controls": 0-4 controls; masked (complementary): 5 or more of each; a size
    shown or hidden), and the rule that gives each label (`small_cell`: cases are checked first, so "<5 controls"
    says 5 or more cases, and a group of 5-9 is "<5 cases or controls")."""
    from interp.audit import small_cell

    m, total_n, total_c = 5, sum(n), sum(cases)
    options = []
    for k, c, (why, size_hidden) in zip(n, cases, masked, strict=True):
        sizes = range(1, m) if why == "<5" else range(m, total_n + 1) if size_hidden else [k]
        if why is None:
            options.append({(k, c)})
            continue
        options.append({(s, x) for s in sizes for x in range(s + 1)  # "masked": a size hidden, any counts
                        if why == "masked" or small_cell(s, x) == (None if why == COMPLEMENT else why)})
    values = {}
    for j, (why, _) in enumerate(masked):
        if why is None:
            continue
        others = {(0, 0)}  # the sums the other groups can reach
        for i, opts in enumerate(options):
            if i != j:
                others = {(a + s, b + x) for a, b in others for s, x in opts if a + s <= total_n and b + x <= total_c}
        values[j] = {(s, x) for s, x in options[j] if (total_n - s, total_c - x) in others}
    return values


COMPLEMENT = "masked (complementary)"


def test_no_hidden_groups_cases_or_controls_follow_from_the_shown_ones() -> None:
    """Over random partitions with 1-2 groups under 5 samples or cases, an exact reader of the masked table and
    the exact totals cannot pin a hidden group's size, case count or control count. The masking checked the
    hidden cases and sizes only: a "<5" group of cases only beside a complement with exactly 5 controls ([3, 20,
    100] samples, [3, 15, 40] cases) had its controls pinned to 0 (all its people cases)."""
    from interp.audit import COMPLEMENTARY, suppressed_groups

    assert COMPLEMENTARY == COMPLEMENT
    rng = np.random.default_rng(11)
    # a group of 5, all cases, was "<5 controls" with its size shown: 5 cases, pinned by the label alone
    cohorts = [([3, 20, 100], [3, 15, 40]), ([5, 14, 3, 3], [5, 8, 3, 1]), ([13, 5, 5, 10], [7, 0, 5, 5]),
               ([60, 60, 60, 5], [20, 19, 21, 5])]
    while len(cohorts) < 150:  # tiny cohorts: most end with every group masked (the rule-aware tests cover more)
        small, k = int(rng.integers(1, 3)), int(rng.integers(3, 6))
        n = [int(rng.integers(1, 10)) if i < small else int(rng.integers(5, 50)) for i in range(k)]
        cases = [int(rng.integers(0, v + 1)) if v < 5 or rng.random() < 0.7 else
                 int(rng.choice([rng.integers(0, 5), rng.integers(v - 4, v + 1)])) for v in n]
        cohorts.append((n, cases))
    checked = 0
    for n, cases in cohorts:
        masked = suppressed_groups(n, cases)
        if all(why is not None for why, _ in masked):
            continue  # every group masked: what is left are the totals themselves
        checked += 1
        for j, vals in _hidden_values(n, cases, masked).items():
            assert (n[j], cases[j]) in vals
            for what, of in (("size", lambda v: v[0]), ("cases", lambda v: v[1]), ("controls", lambda v: v[0] - v[1])):
                if what == "size" and not masked[j][1]:
                    continue  # a size shown
                assert len({of(v) for v in vals}) > 1, (n, cases, masked, j, what, vals)
    assert checked >= 35


def test_held_out_population_auroc_of_a_masked_population_cannot_be_had_from_the_mean() -> None:
    """auroc_lopo_cv was the mean of every population's held-out AUROC, masked ones included, while
    auroc_lopo_by_population showed the others': the masked population's AUROC was 4 x mean minus the three shown
    (here EAS, 3 cases, masked with AFR, the first by name: 2 masked, so their sum). The mean is now over the
    populations shown."""
    from interp.audit import by_population
    from interp.audit_summary import audit_tables

    rng = np.random.default_rng(0)
    sizes, cases = {"AFR": 120, "EUR": 80, "SAS": 40, "EAS": 30}, {"AFR": 40, "EUR": 25, "SAS": 12, "EAS": 3}
    population = np.concatenate([[p] * n for p, n in sizes.items()])
    y = np.concatenate([np.r_[np.ones(cases[p]), np.zeros(n - cases[p])] for p, n in sizes.items()])
    groups, _ = by_population(y, rng.normal(size=y.size) + y, population, n_boot=0, seed=0)
    group = {g["population"]: g for g in groups}
    lopo = {"AFR": 0.7, "EUR": 0.6, "SAS": 0.55, "EAS": 0.95}
    result = _result("p", "block1", groups) | {"auroc_lopo_by_population": lopo,
                                               "auroc_lopo_cv": float(np.mean(list(lopo.values())))}
    table, details = audit_tables([result], [{"attribution": {}, "sae_feature_leakage": None}], "refuse")
    assert details[0]["auroc_lopo_by_population"] == {"EUR": 0.6, "SAS": 0.55}
    assert table["auroc_lopo_cv"].to_list() == [pytest.approx(0.575)]
    # nothing masked: the audit's own mean, untouched
    full = _result("q", "block1", [group["AFR"], group["EUR"]]) | {"auroc_lopo_by_population": {"AFR": 0.7, "EUR": 0.6},
                                                              "auroc_lopo_cv": 0.123}
    table, _ = audit_tables([full], [{"attribution": {}, "sae_feature_leakage": None}], "refuse")
    assert table["auroc_lopo_cv"].to_list() == [0.123]
    # every population masked: no mean to give
    few = _result("r", "block1", [group["EAS"]]) | {"auroc_lopo_by_population": {"EAS": 0.95}, "auroc_lopo_cv": 0.95}
    table, _ = audit_tables([few], [{"attribution": {}, "sae_feature_leakage": None}], "refuse")
    assert np.isnan(table["auroc_lopo_cv"][0])


def test_sizes_masked_alike_in_every_phenotype_and_in_the_cohort_table() -> None:
    """The size a complementary mask hides must not depend on the phenotype's case counts: populations of 3, 20,
    100 and 200 samples (no phenotype missing, so every phenotype's sizes are the cohort's). The cohort table
    (`suppressed_sizes`) masks the 20's size; a phenotype with 2 cases among the 20 masked the 100's size and
    showed the 20 (as "<5 cases", n 20), another masked the 20's and showed the 100: from the shown sizes
    together the "<5" population's size was n_samples - 20 - 100 - 200 = 3."""
    from interp.audit import suppressed_groups, suppressed_sizes

    n = [3, 20, 100, 200]
    cohort = [w is not None for w in suppressed_sizes(n)]
    shown_somewhere = [not h for h in cohort]
    for cases in ([1, 2, 30, 60], [1, 10, 30, 60], [0, 8, 3, 60], [2, 15, 50, 198]):
        hidden = [h for _, h in suppressed_groups(n, cases)]
        assert hidden == cohort, cases
        shown_somewhere = [s or not h for s, h in zip(shown_somewhere, hidden, strict=True)]
    # every size but the "<5" one's shown somewhere would give it by subtraction
    assert shown_somewhere.count(False) >= 2


def _phenotypes_with_missing_values(labelled: bool):
    """Four populations (AFR 120, EUR 80, SAS 40, EAS 30); B complete with 5 EUR cases, A = B with one EUR case
    left out (no value), C = B with two EUR controls left out; audited and masked as the stage does."""
    import anndata as ad
    import pandas as pd

    from interp.audit import AuditConfig
    from interp.audit_summary import audit_embedding, audit_tables

    rng = np.random.default_rng(0)
    sizes, cases = {"AFR": 120, "EUR": 80, "SAS": 40, "EAS": 30}, {"AFR": 40, "EUR": 5, "SAS": 12, "EAS": 10}
    pop = np.concatenate([[p] * n for p, n in sizes.items()])
    b = np.concatenate([np.r_[np.ones(cases[p]), np.zeros(n - cases[p])] for p, n in sizes.items()])
    eur = np.flatnonzero(pop == "EUR")
    a, c = b.copy(), b.copy()
    a[eur[0]] = np.nan
    c[eur[-2:]] = np.nan
    obs = pd.DataFrame({"A": a, "B": b, "C": c, "population": pop}, index=[f"s{i}" for i in range(pop.size)])
    pcs = np.c_[np.repeat([0.0, 3.0, 6.0, 9.0], list(sizes.values())), np.zeros(pop.size)] + rng.normal(size=(pop.size, 2))
    table = ad.AnnData(X=(rng.normal(size=(pop.size, 3)) + b[:, None]).astype(np.float32), obs=obs)
    table.obsm["X_pca"] = pcs
    table.uns.update({"model": "m", "layer": "block1"})
    cfg = AuditConfig(n_folds=3, bootstrap=10, max_null_replicates=19, seed=0, ancestry_bins=4)
    out = audit_embedding(table, None, ["A", "B", "C"], cfg, [], population_column="population" if labelled else None,
                          max_null_replicates=19)
    results = [r | {"verdict": "X", "verdict_rule": "r", "reason": "w", "reasons": ["w"], "multiplicity": "m"}
               for r, _ in out]
    return audit_tables(results, [e for _, e in out], "refuse")


def _shown_sizes(groups: list[dict]) -> dict:
    return {g["population"]: g["n"] for g in groups if isinstance(g["n"], int)}


def test_a_left_out_count_pinned_by_public_numbers_alone_does_not_mask_every_other_group() -> None:
    """A cohort group of 6 shown as "<5" for a phenotype that leaves 2 people out in all: its left-out count is
    2-4 from the cohort's size, "<5" and the exact n_missing_phenotype alone, whatever else is masked. Masking
    the other groups could not hide it and masked them all (every group's table gone); now the groups masked are
    those the cases and sizes need, as without the reference (where masking does help, it still masks)."""
    from interp.audit import SIZE_MASKED, suppressed_groups

    plain = suppressed_groups([4, 30, 40, 50], [2, 10, 15, 20])
    for reference in ([6, 30, 40, 50], [5, 30, 40, 50]):
        assert suppressed_groups([4, 30, 40, 50], [2, 10, 15, 20], reference) == plain
    assert [w for w, _ in plain] == ["<5", SIZE_MASKED, None, None]
    # one of 80 left out of a group shown "<5 cases": its size is hidden and one more group masked, as before
    masked = suppressed_groups([60, 79, 40, 30], [10, 4, 8, 6], [60, 80, 40, 30])
    assert masked == [(SIZE_MASKED, True), (SIZE_MASKED, True), (None, False), (None, False)]


def test_a_phenotypes_group_size_never_tells_how_many_of_its_people_have_no_value() -> None:
    """cohort.populations gives each population's size; a phenotype's by_population gave its size among those
    with a value. EUR 80 in the cohort and 78 for C: 2 EUR people have no C value, and with B (the same values,
    none missing: 5 cases of 80, C 5 of 78) both were controls. A (one EUR case without a value) showed EUR
    "<5 cases", n 79: with B's 5 cases of 80 that pinned A's masked count at 4. A phenotype's size of a
    group is now shown only where none or 5 or more of its people have no value, and no hidden group's count of
    those is pinned within 1-4 by n_missing_phenotype minus the shown groups'."""
    import itertools

    from interp.audit import suppressed_sizes

    table, details = _phenotypes_with_missing_values(labelled=True)
    cohort = {"AFR": 120, "EUR": 80, "SAS": 40, "EAS": 30}
    cohort_shown = {p: k for (p, k), w in zip(cohort.items(), suppressed_sizes(list(cohort.values()), list(cohort)),
                                              strict=True) if w is None}
    rows = {r["phenotype"]: r for r in table.to_dicts()}
    for d in details:
        groups = d["by_population"]
        shown = _shown_sizes(groups)
        for p, k in shown.items():  # what the subtraction gives: 0, or 5 and more
            assert cohort[p] - k == 0 or cohort[p] - k >= 5, (d["phenotype"], p)
        # every split of the hidden groups' left-out count (n_missing minus the shown groups') between them
        hidden = [g["population"] for g in groups if g["population"] not in shown]
        total = rows[d["phenotype"]]["n_missing_phenotype"] - sum(cohort[p] - k for p, k in shown.items())
        ranges = [range(0, cohort[p] - 4) for p in hidden]
        for p in hidden:
            feasible = {combo[hidden.index(p)] for combo in itertools.product(*ranges) if sum(combo) == total}
            assert not feasible <= {1, 2, 3, 4}, (d["phenotype"], p, feasible)
    by = {d["phenotype"]: d["by_population"] for d in details}
    assert _shown_sizes(by["B"]) == cohort  # nothing left out: nothing more hidden than before
    assert "EUR" not in _shown_sizes(by["A"]) and "EUR" not in _shown_sizes(by["C"])
    assert set(cohort_shown) == set(cohort)


def test_pc_bins_are_the_cohorts_so_two_phenotypes_bin_sizes_do_not_count_those_left_out() -> None:
    """Without labels the strata are k-means bins of the PCs. Fitted to each phenotype's own samples, the bins
    of A (one sample without a value) and B (none) were the same clusters with sizes differing by who was left
    out of each. The bins are now the whole cohort's, the same for every phenotype, and a bin's size is shown
    only where 0 or 5 and more of its people have no value."""
    _, details = _phenotypes_with_missing_values(labelled=False)
    by = {d["phenotype"]: d["by_stratum"] for d in details}
    assert all(d["strata_source"] == "pc_bins" for d in details)
    full = _shown_sizes(by["B"])
    assert sum(full.values()) == 270 and len(full) == 4
    for p in ("A", "C"):
        assert [g["population"] for g in by[p]] == [g["population"] for g in by["B"]]
        for s, k in _shown_sizes(by[p]).items():
            assert full[s] - k == 0 or full[s] - k >= 5, (p, s)


def _reader_range(cohort: dict, cohort_table: dict, groups: list[dict], n_phenotype: int, target: str,
                  ) -> tuple[float, float]:
    """The range of `target`'s cohort size a reader can derive from the report (linear relaxation, so a range
    of one value means it is pinned): the cohort's total and table (`cohort_table`: its number, "<5" or
    "masked"), and a phenotype's total `n_phenotype` and masked by_population `groups` (a cohort group missing
    from them has no sample with a value; a phenotype's size is at most the cohort's; n None: not shown), and the
    README's rule that a phenotype's size of a group is shown only where 0 or 5 or more of its people have no
    value (each such group's two cases tried in turn)."""
    import itertools

    from scipy.optimize import linprog

    m, names = 5, list(cohort)
    k = len(names)  # variables: cohort sizes c, then phenotype sizes p
    shown = {g["population"]: g for g in groups}
    bounds = []
    for p in names:
        w = cohort_table[p]
        bounds.append((w, w) if isinstance(w, int) else (1, m - 1) if w == "<5" else (m, None))
    for p in names:
        g = shown.get(p)
        if g is None:
            bounds.append((0, 0))
        elif isinstance(g["n"], int):
            bounds.append((g["n"], g["n"]))
        elif g["n"] is None:  # nothing shown but that the group has samples with a value
            bounds.append((1, None))
        elif g["n"] == "<5":
            bounds.append((1, m - 1))
        else:  # masked: at least 5 cases and 5 controls when complementary, at least 5 samples otherwise
            bounds.append((2 * m if g.get("small_cell") == "masked (complementary)" else m, None))
    a_eq = [[1] * k + [0] * k, [0] * k + [1] * k]
    b_eq = [sum(cohort.values()), n_phenotype]
    a_ub = [[(-1 if j == i else 0) for j in range(k)] + [(1 if j == i else 0) for j in range(k)] for i in range(k)]
    b_ub = [0] * k  # p_i - c_i <= 0
    objective = [0.0] * (2 * k)
    objective[names.index(target)] = 1.0
    sized = [i for i, p in enumerate(names) if isinstance(shown.get(p, {}).get("n"), int)]
    lo, hi = np.inf, -np.inf
    for none_left_out in itertools.product([True, False], repeat=len(sized)):
        rows, rhs = list(a_ub), list(b_ub)
        for i, none in zip(sized, none_left_out, strict=True):
            row = [(1 if j == i else 0) for j in range(k)] + [(-1 if j == i else 0) for j in range(k)]
            rows.append(row)  # c_i - p_i <= 0 (none left out), or p_i - c_i <= -5
            rhs.append(0)
            if not none:
                rows[-1], rhs[-1] = [-v for v in row], -m
        low = linprog(objective, A_ub=rows, b_ub=rhs, A_eq=a_eq, b_eq=b_eq, bounds=bounds)
        if low.status != 0:
            continue
        high = linprog([-v for v in objective], A_ub=rows, b_ub=rhs, A_eq=a_eq, b_eq=b_eq, bounds=bounds)
        lo, hi = min(lo, low.fun), max(hi, -high.fun)
    assert np.isfinite(lo), "the true sizes are feasible"
    return lo, hi


def test_a_small_group_absent_from_a_phenotype_is_not_given_by_its_shown_groups() -> None:
    """cohort.populations masks a "<5" group and its complement; a phenotype's by_population is a partition of
    its own samples. A "<5" group with no phenotype value at all (the "(no label)" group, which may hold only
    such samples, or a small population none of whose people has a value) was missing from the phenotype's
    partition, so its complement was shown there: (no label) 3, CEU 20, CHB 100, YRI 100 gave CEU's 20 and the
    cohort's total less the shown sizes was 3. The cohort table's masking now reads the whole partition, and
    over random cohorts a reader of both tables cannot pin the small group's size."""
    from interp.audit import NO_LABEL, suppressed_sizes
    from interp.audit_summary import mask_small_groups

    def check(cohort: dict, left_out: dict, prevalence: dict, target: str) -> None:
        names = list(cohort)
        table = dict(zip(names, [k if w is None else w for k, w in
                                 zip(cohort.values(), suppressed_sizes(list(cohort.values()), names),
                                     strict=True)],
                         strict=True))
        groups = [{"population": p, "n": cohort[p] - left_out[p], "prevalence": prevalence[p]}
                  for p in names if cohort[p] - left_out[p] > 0]
        n_phenotype = sum(g["n"] for g in groups)
        # pinned by the cohort table, the exact n_missing_phenotype and which groups have a value alone (e.g. the
        # small group is the only one with people left out): masking the phenotype's groups cannot help
        blind = [{"population": g["population"], "n": None} for g in groups]
        if np.ptp(_reader_range(cohort, table, blind, n_phenotype, target)) < 1 - 1e-9:
            return
        shown = mask_small_groups(groups, reference=cohort)
        lo, hi = _reader_range(cohort, table, shown, n_phenotype, target)
        assert hi - lo >= 1 - 1e-9, (cohort, left_out, shown, lo, hi)
        checked.append(target)

    checked: list[str] = []
    check({NO_LABEL: 3, "CEU": 20, "CHB": 100, "YRI": 100}, {NO_LABEL: 3, "CEU": 0, "CHB": 10, "YRI": 0},
          {"CEU": 0.5, "CHB": 0.3, "YRI": 0.3}, NO_LABEL)
    rng = np.random.default_rng(3)
    for _ in range(150):
        pops = [f"P{i}" for i in range(int(rng.integers(2, 5)))]
        cohort = {NO_LABEL if rng.random() < 0.5 else "SMALL": int(rng.integers(1, 5))}
        cohort |= {p: int(rng.integers(5, 80)) for p in pops}
        left_out = {p: int(rng.choice([0, rng.integers(1, 5), rng.integers(5, max(6, n // 2))])) if p in pops else n
                    for p, n in cohort.items()}
        left_out = {p: min(v, cohort[p] - (p in pops)) for p, v in left_out.items()}  # every population keeps one
        prevalence = {}
        for p in pops:
            n = cohort[p] - left_out[p]
            prevalence[p] = int(rng.integers(0, n + 1)) / n
        check(cohort, left_out, prevalence, next(iter(cohort)))
    assert len(checked) >= 50  # cohorts where the phenotype's table decides


def _sums(ranges: list[tuple[int, int]], total: int):
    """Every tuple of integers within `ranges` (inclusive) summing to `total`."""
    if not ranges:
        if total == 0:
            yield ()
        return
    (lo, hi), rest = ranges[0], ranges[1:]
    for v in range(max(lo, total - sum(r[1] for r in rest)), min(hi, total - sum(r[0] for r in rest)) + 1):
        for tail in _sums(rest, total - v):
            yield (v, *tail)


def _pinned_by_rule_aware_reader(n: list[int], cases: list[int] | None = None) -> list | None:
    """What a reader who knows the masking rule pins: every hidden configuration consistent with the labels and
    the exact totals is run through the rule again, and only those giving the same table are kept; a hidden
    size (or, with `cases`, a hidden case or control count) that is the same in all of them is pinned. Without
    `cases` the table is the cohort's (`suppressed_sizes`), with them a phenotype's (`suppressed_groups`)."""
    from interp.audit import COMPLEMENTARY, SIZE_MASKED, small_cell, suppressed_groups, suppressed_sizes

    if cases is None:
        out = suppressed_sizes(n)
        hidden = [i for i, w in enumerate(out) if w is not None]
        total = sum(n[i] for i in hidden)
        options = [[(v,) for v in (range(1, 5) if out[i] == "<5" else range(5, total + 1))] for i in hidden]
    else:
        out = suppressed_groups(n, cases)
        hidden = [i for i, (w, _) in enumerate(out) if w is not None]
        total = sum(n[i] for i in hidden)
        options = []
        for i in hidden:
            why, size_hidden = out[i]
            sizes = range(1, 5) if why == "<5" else range(5, total + 1) if size_hidden else [n[i]]
            if why == SIZE_MASKED:  # a size hidden: any counts
                options.append([(s, c) for s in sizes for c in range(s + 1)])
                continue
            want = None if why == COMPLEMENTARY else why
            options.append([(s, c) for s in sizes for c in range(s + 1) if small_cell(s, c) == want])
    if not hidden or len(hidden) == len(n):
        return None  # nothing hidden, or everything: the totals alone

    def configurations(j: int, left: tuple):
        if j == len(options):
            if not any(left):
                yield ()
            return
        for v in options[j]:
            if all(a <= b for a, b in zip(v, left, strict=False)):
                rest = tuple(b - a for a, b in zip(v, left, strict=False)) + left[len(v):]
                for tail in configurations(j + 1, rest):
                    yield (v, *tail)

    left = (total,) if cases is None else (total, sum(cases[i] for i in hidden))
    kept = []
    for config in configurations(0, left):
        a, b = list(n), list(cases or [])
        for i, v in zip(hidden, config, strict=True):
            a[i] = v[0]
            if cases is not None:
                b[i] = v[1]
        if (suppressed_sizes(a) if cases is None else suppressed_groups(a, b)) == out:
            kept.append(config)
    truth = tuple((n[i],) if cases is None else (n[i], cases[i]) for i in hidden)
    assert truth in kept
    pinned = []
    for j, i in enumerate(hidden):
        reads = {"size": lambda v: v[0]} if cases is None or out[i][1] else {}
        if cases is not None:
            reads |= {"cases": lambda v: v[1], "controls": lambda v: v[0] - v[1]}
        pinned += [(i, what) for what, of in reads.items() if len({of(c[j]) for c in kept}) == 1]
    return pinned


def test_a_reader_who_knows_the_masking_rule_cannot_pin_a_hidden_count() -> None:
    """The complement masked for a small group was the smallest of 15 or more: a reader who knew that had the
    masked size bounded by the shown ones, and cohort sizes [60, 4, 60] gave 60 and 4 (the old rule pinned a size
    in 1,167 of the README's 7,413 small cohort tables; 2-3 groups here, 4 groups in a one-off run). It is now the
    first by name (here: in the order given), masked whatever the hidden counts, and more are masked while the
    totals tell more of a small count than its label: rerunning the rule on every configuration the table
    allows pins nothing, over every cohort table of 2-3 groups with one under 5 that leaves something shown and
    over random phenotype tables with small groups, groups of 5-9 and few cases or controls."""
    import itertools

    assert _pinned_by_rule_aware_reader([60, 4, 60]) == []
    assert _pinned_by_rule_aware_reader([1, 1, 8, 60]) == []
    assert _pinned_by_rule_aware_reader([16, 15, 2, 1], [5, 6, 0, 0]) == []  # the old rule pinned cases here
    checked = 0
    for k in (2, 3):
        for n in itertools.product([1, 2, 3, 4, 5, 6, 7, 9, 12, 15, 20, 60], repeat=k):
            if min(n) < 5 and (pins := _pinned_by_rule_aware_reader(list(n))) is not None:
                assert pins == [], n
                checked += 1
    assert checked > 600
    rng = np.random.default_rng(5)
    checked = 0
    while checked < 25:
        k = int(rng.integers(3, 6))
        n = [int(rng.choice([rng.integers(1, 5), rng.integers(5, 10), rng.integers(10, 26)])) for _ in range(k)]
        cases = [int(rng.choice([rng.integers(0, min(v, 4) + 1), rng.integers(max(0, v - 4), v + 1),
                                 rng.integers(0, v + 1)])) for v in n]
        if (pins := _pinned_by_rule_aware_reader(n, cases)) is not None:
            assert pins == [], (n, cases)
            checked += 1


def _both_tables(names: list[str], cohort: list[int], n: list[int], cases: list[int]) -> tuple:
    """The cohort table (`suppressed_sizes`, groups in name order as the report lists them) and a phenotype's
    masking (`mask_small_groups` with the cohort's sizes as reference; a group with n 0 has no value)."""
    from interp.audit import suppressed_sizes
    from interp.audit_summary import _suppressed

    order = sorted(range(len(names)), key=lambda i: names[i])
    table = dict(zip([names[i] for i in order], suppressed_sizes([cohort[i] for i in order],
                                                                 [names[i] for i in order]), strict=True))
    present = [i for i in range(len(names)) if n[i] > 0]
    groups = [{"population": names[i], "n": n[i], "prevalence": cases[i] / n[i]} for i in present]
    return table, present, _suppressed(groups, dict(zip(names, cohort, strict=True)))


def _pinned_across_tables(names: list[str], cohort: list[int], n: list[int], cases: list[int],
                          limit: int = 20000) -> list | None:
    """A rule-aware reader of both tables and the exact totals (n_samples of the cohort and of the phenotype,
    n_cases, hence n_missing_phenotype): every hidden configuration (cohort sizes, phenotype sizes, case
    counts) that gives the same two tables when the rules are rerun on it. Returns what it pins: a hidden cohort
    size, case or control count, or a left-out count placed within 1-4 (None: too many configurations to try,
    or every group of the phenotype masked: there the fact that the rule masked them all can itself tell the
    counts of a tiny cohort, cohort [1, 10, 21] and 5 cases, and nothing more can be masked)."""
    table, present, masked = _both_tables(names, cohort, n, cases)
    if all(w is not None for w, _ in masked):
        return None
    k, hidden_c = len(names), [i for i in range(len(names)) if table[names[i]] is not None]
    mk = dict(zip(present, masked, strict=True))
    size_h = [i for i in present if mk[i][0] is not None and (mk[i][1] or n[i] < 5)]
    case_h = [i for i in present if mk[i][0] is not None]
    kept, tried = [], 0
    c_ranges = [(1, 4) if table[names[i]] == "<5" else (5, sum(cohort)) for i in hidden_c]
    for cv in _sums(c_ranges, sum(cohort[i] for i in hidden_c)):
        big = list(cohort)
        for i, v in zip(hidden_c, cv, strict=True):
            big[i] = v
        for pv in _sums([(1, big[i]) for i in size_h], sum(n[i] for i in size_h)):
            sizes = list(n)
            for i, v in zip(size_h, pv, strict=True):
                sizes[i] = v
            for cc in _sums([(0, sizes[i]) for i in case_h], sum(cases[i] for i in case_h)):
                tried += 1
                if tried > limit:
                    return None
                counts = list(cases)
                for i, v in zip(case_h, cc, strict=True):
                    counts[i] = v
                if _both_tables(names, big, sizes, counts) == (table, present, masked):
                    kept.append((big, sizes, counts))
    assert (cohort, n, cases) in kept
    pins = [(names[i], "cohort size") for i in hidden_c if len({c[0][i] for c in kept}) == 1]
    for i in case_h:
        if len({c[2][i] for c in kept}) == 1:
            pins.append((names[i], "cases"))
        if len({c[1][i] - c[2][i] for c in kept}) == 1:
            pins.append((names[i], "controls"))
    for i in range(k):
        left = {c[0][i] - c[1][i] for c in kept}
        public = i not in hidden_c and (i not in present or i not in size_h)
        if len(left) == 1 and 1 <= next(iter(left)) <= 4 and not public:
            pins.append((names[i], "left out"))
    return pins


def test_a_reader_of_the_cohort_table_and_a_phenotype_table_who_knows_the_rules_pins_nothing() -> None:
    """The phenotype's labels told a hidden size's class ("<5 cases": 10 or more samples), which the cohort table
    does not: cohort {ACB 10, CHB 1, GBR 95, YRI 110} showed ACB "masked", CHB "<5" and the phenotype ACB "<5
    cases" with its size hidden, so CHB = 216 - 95 - 110 - ACB with ACB >= 10: 1. A group whose size is hidden
    now says only "masked". The left-out check read a hidden cohort size as the rule knew it (P2 of 4 pinned
    with cohort [27, 20, 4], phenotype [27, 20, 1]), and an absent "<5" group's size was left narrowed by a
    shown group's left-out count. Over random cohorts of 3-4 groups with one under 5 and phenotypes with a value
    for everyone, a reader of both tables who reruns both rules pins a count in 2 of the 150 tables here (0
    of 150 with another seed; 10 of 150 under the old rule): a SIZE_MASKED group's counts are protected on
    its small side only, which tells such a reader which side that was (cohort [2, 7, 15], cases [0, 5, 5]).
    It can also narrow a "<5" size: a second complement masked tells that the first left its 1-4 narrowed.
    With people left out it pins something in 7-12 of 150 (18-20 before; README, Privacy): the left-out check
    masks only while a count is placed within 1-4, a trigger that depends on the counts."""
    from interp.audit import NO_LABEL

    assert _pinned_across_tables(["ACB", "CHB", "GBR", "YRI"], [10, 1, 95, 110], [10, 1, 95, 110],
                                 [2, 0, 20, 25]) == []
    # P2 was pinned at 4 with P0 and P1 shown: now every group is masked (the reader then has the totals alone)
    assert _both_tables(["P0", "P1", "P2"], [27, 20, 4], [27, 20, 1], [1, 2, 1])[2] == [
        ("masked", True), ("<5 cases", False), ("<5", True)]
    # "(no label)" 3 (no value), SAS 10 of 15 with a value: SAS's 5 left out put "(no label)" at 1-2 of 7 missing
    # in all with AFR and EUR masked; SAS's size is hidden too
    assert _both_tables([NO_LABEL, "AFR", "EUR", "SAS"], [3, 12, 11, 15], [0, 12, 11, 10], [0, 6, 5, 5])[2] == [
        ("masked", True)] * 3
    # the absent group's floor counts only the hidden sizes: a shown absent group (SAS, 50, public) does not
    # leave the floor out of reach and mask YRI for nothing
    from interp.audit import suppressed_groups

    assert suppressed_groups([100, 80, 90], [30, 20, 25], [100, 80, 90], [3, 50], ["AFR", "EUR", "YRI"],
                             [NO_LABEL, "SAS"])[2] == (None, False)
    rng = np.random.default_rng(7)
    checked, pinned = 0, []
    while checked < 150:
        k = int(rng.integers(3, 5))
        cohort = [int(rng.choice([rng.integers(1, 5), rng.integers(5, 15), rng.integers(15, 30)])) for _ in range(k)]
        cohort[0] = min(cohort[0], int(rng.integers(1, 5)))
        names = [f"P{j}" for j in rng.permutation(k)]
        cases = [int(rng.choice([rng.integers(0, min(v, 4) + 1), rng.integers(max(0, v - 4), v + 1),
                                 rng.integers(0, v + 1)])) for v in cohort]
        if sum(cases) in (0, sum(cohort)):
            continue
        pins = _pinned_across_tables(names, cohort, list(cohort), cases)
        if pins is None:
            continue
        checked += 1
        pinned += [(names, cohort, cases, pins)] if pins else []
    # 10 of 150 under the old rule; not 0: a SIZE_MASKED group's counts are protected on its small side only
    assert len(pinned) <= 3, pinned
