"""Covariate design: one-hot categoricals, missing-value policies, descriptors refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from interp.covariates import covariate_design
from interp.errors import InputError


def test_three_level_categorical_is_one_hot_not_ordinal():
    rng = np.random.default_rng(0)
    batch = rng.choice(["B1", "B2", "B3"], size=300)
    d = covariate_design({"batch": batch}, ["batch"])
    assert d.columns == ["batch=B2", "batch=B3"]
    assert d.info["batch"]["kind"] == "categorical" and d.info["batch"]["reference"] == "B1"
    # a phenotype that depends on batch non-monotonically (B2 high, B1 and B3 equal) is fully explained
    # by the one-hot design, which an ordinal code could not do: compare with statsmodels' C(batch)
    y = (batch == "B2") * 2.0 + rng.normal(size=300)
    X = np.column_stack([np.ones(300), d.matrix])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    fit = smf.ols("y ~ C(batch)", pd.DataFrame({"y": y, "batch": batch})).fit()
    assert np.allclose(beta[1:], fit.params.to_numpy()[1:], atol=1e-10)


def test_missing_refused_names_covariate_and_samples():
    with pytest.raises(InputError, match=r"'age' has 1 missing value.*s2"):
        covariate_design({"age": np.array([30.0, np.nan, 50.0])}, ["age"], sample_ids=["s1", "s2", "s3"])


def test_missing_imputed_with_indicator_and_na_level():
    d = covariate_design({"age": np.array([30.0, np.nan, 50.0, 40.0]),
                          "site": np.array(["a", "", "b", "a"], dtype=object)}, ["age", "site"], missing="impute")
    assert d.columns == ["age", "age:missing", "site=b", "site=NA"]
    assert d.info["age"]["n_missing"] == 1 and d.info["site"]["n_missing"] == 1
    assert np.allclose(d.matrix[:, 0] + 40.0, [30.0, 40.0, 50.0, 40.0])


def test_descriptor_gc_is_refused_as_a_confounder():
    with pytest.raises(InputError, match="descriptor"):
        covariate_design({"gc": np.ones(3)}, ["gc"])


def test_constant_covariate_dropped_and_noted():
    d = covariate_design({"sex": np.array([1.0, 1.0, 1.0])}, ["sex"])
    assert d.matrix.shape == (3, 0) and "constant" in d.info["sex"]["note"]


def test_integer_coded_batch_declared_categorical_is_one_hot():
    """A batch coded 1/2/3 (read from samples.tsv as floats) is one linear term unless declared: declared, it
    is one-hot and explains a non-monotone batch effect as statsmodels' C(batch) does; undeclared, the
    design says how to declare it."""
    rng = np.random.default_rng(1)
    batch = rng.choice([1.0, 2.0, 3.0], size=300)
    undeclared = covariate_design({"batch": batch}, ["batch"])
    assert undeclared.columns == ["batch"] and undeclared.info["batch"]["kind"] == "numeric"
    assert "cohort.categorical_covariates" in undeclared.info["batch"]["note"]
    d = covariate_design({"batch": batch}, ["batch"], categorical=["batch"])
    assert d.columns == ["batch=2", "batch=3"]
    assert d.info["batch"]["kind"] == "categorical" and d.info["batch"]["declared"]
    y = (batch == 2.0) * 2.0 + rng.normal(size=300)
    beta, *_ = np.linalg.lstsq(np.column_stack([np.ones(300), d.matrix]), y, rcond=None)
    fit = smf.ols("y ~ C(batch)", pd.DataFrame({"y": y, "batch": batch})).fit()
    assert np.allclose(beta[1:], fit.params.to_numpy()[1:], atol=1e-10)
    # an age in years with many distinct values carries no note
    assert "note" not in covariate_design({"age": rng.integers(20, 80, 300).astype(float)}, ["age"]).info["age"]


def test_declared_categorical_must_be_a_covariate():
    with pytest.raises(InputError, match="'site' are not among the covariates"):
        covariate_design({"batch": np.array([1.0, 2.0])}, ["batch"], categorical=["site"])


def test_pandas_na_is_missing_not_a_level():
    """A nullable pandas column gives pd.NA, which is a missing value (refused or imputed), never a level
    "<NA>" (which, sorting first, became the reference)."""
    site = pd.Series(["a", pd.NA, "b", "a"], dtype="string").to_numpy()
    with pytest.raises(InputError, match=r"'site' has 1 missing value.*s2"):
        covariate_design({"site": site}, ["site"], sample_ids=["s1", "s2", "s3", "s4"])
    d = covariate_design({"site": site}, ["site"], missing="impute")
    assert d.columns == ["site=b", "site=NA"] and d.info["site"]["reference"] == "a"
    assert d.info["site"]["n_missing"] == 1


def test_infinite_value_is_refused_not_imputed():
    """inf is a bad value, not a missing one: refused under both policies, naming the sample (it was imputed
    as a mean under impute, and text "inf" put NaN columns into the design)."""
    for values in (np.array([30.0, np.inf, 50.0]), np.array(["30", "inf", "50"], dtype=object)):
        for policy in ("refuse", "impute"):
            for categorical in ((), ["age"]):  # declared categorical, it became a level "inf" of the design
                with pytest.raises(InputError, match=r"'age' has 1 infinite value.*s2"):
                    covariate_design({"age": values}, ["age"], missing=policy, sample_ids=["s1", "s2", "s3"],
                                     categorical=categorical)
    # among text levels, "inf" (infected) is a level, not a number
    status = np.array(["inf", "uninf", "ctrl", "inf", "ctrl", "uninf"], dtype=object)
    for categorical in ((), ["status"]):
        design = covariate_design({"status": status}, ["status"], categorical=categorical)
        assert design.columns == ["status=inf", "status=uninf"], design.columns


def test_sample_ids_must_match_the_values():
    with pytest.raises(InputError, match="'age' has 3 values for 2 samples"):
        covariate_design({"age": np.array([30.0, 40.0, 50.0])}, ["age"], sample_ids=["s1", "s2"])


def test_a_numeric_covariate_with_a_stray_text_value_is_refused_not_made_categorical():
    """age with one "-" (or "30,5") among numbers became a categorical covariate of one level per sample: 60
    samples against a 60-column design, without a word. Now refused naming the value and the sample, as is a
    categorical column of (nearly) one level per sample; declared categorical, a coded column still works."""
    ids = [f"s{i}" for i in range(60)]
    age = np.array([str(20 + i) for i in range(60)], dtype=object)
    age[5] = "-"
    with pytest.raises(InputError, match=r"covariate 'age' holds numbers but for 1 value\(s\): '-' \(samples s5\); "
                                         r"write NA for a missing value"):
        covariate_design({"age": age}, ["age"], sample_ids=ids, source="samples.tsv")
    age[5] = "30,5"
    with pytest.raises(InputError, match=r"'30,5'"):
        covariate_design({"age": age}, ["age"], sample_ids=ids)
    with pytest.raises(InputError, match=r"categorical covariate 'age' has 60 distinct values among 60 samples"):
        covariate_design({"age": age}, ["age"], sample_ids=ids, categorical=["age"])
    sample_code = np.array([f"ID{i}" for i in range(60)], dtype=object)
    with pytest.raises(InputError, match=r"'code' has 60 distinct values"):
        covariate_design({"code": sample_code}, ["code"], sample_ids=ids)
    batch = np.array(["1", "2", "x"] * 20, dtype=object)  # codes with a text level, declared: one-hot
    d = covariate_design({"batch": batch}, ["batch"], categorical=["batch"])
    assert d.columns == ["batch=2", "batch=x"]
    site = np.array(["north", "south", "east"] * 20, dtype=object)  # text levels need no declaration
    assert covariate_design({"site": site}, ["site"]).info["site"]["kind"] == "categorical"
