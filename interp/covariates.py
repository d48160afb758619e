"""Covariates as a user means them: the one design-matrix builder shared by audit and rank.

* Numeric covariates are one column each (centred).
* Categorical covariates (any non-numeric value, or named in `categorical`, e.g. a batch coded 1/2/3:
  `cohort.categorical_covariates`) are one-hot encoded against their first level in sorted order; casting
  category codes to floats would impose an order that levels do not have. A numeric covariate with 3-10
  distinct integer values is kept numeric (an age in years, a count) but its `info` carries a note
  saying how to declare it categorical.
* Missing values are refused (an `InputError` naming the covariate and the first samples) or imputed, as
  the user chooses (`cohort.covariate_missing`): numeric ones by the mean plus a 0/1 "missing" indicator
  column, categorical ones as a level of their own. What was done is returned in `info` for the report.
  An infinite number is a bad value, not a missing one: it is always refused.
* Descriptors such as the GC content of a sample's haplotypes are functions of the genotypes: adjusting
  for them would remove part of a real genetic effect (over-adjustment), so they are reported beside the
  audit but never enter a design matrix. `DESCRIPTORS` names them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from interp.errors import InputError
from interp.io import is_missing

#: Per-sample quantities derived from the genotypes themselves: reported, never adjusted for.
DESCRIPTORS = ("gc",)

MissingPolicy = Literal["refuse", "impute"]


@dataclass
class CovariateDesign:
    """A covariate design matrix and how it was made.

    matrix: float64 [n, c] (no intercept; every column centred). columns: c column names, e.g. "age",
    "batch=B2", "age:missing". info: per covariate {kind: numeric|categorical, levels, reference,
    n_missing, missing_policy, columns}.
    """

    matrix: np.ndarray
    columns: list[str] = field(default_factory=list)
    info: dict[str, dict] = field(default_factory=dict)


def _missing_mask(values: np.ndarray) -> np.ndarray:
    """[n] True where a value is missing (`interp.io.is_missing`: NaN, None, pandas' NA, "NA", "." ...; an infinite number
    is not missing: `covariate_design` refuses it)."""
    if values.dtype.kind in "fiu":
        return np.isnan(values.astype(np.float64))
    return np.array([is_missing(v) for v in values], dtype=bool)


def _samples(mask: np.ndarray, sample_ids: Sequence[str] | None) -> str:
    """The first 5 samples where mask [n] is True, as ' (samples s1, s7 ...)'; '' without sample_ids."""
    who = [str(sample_ids[i]) for i in np.flatnonzero(mask)[:5]] if sample_ids is not None else []
    return f" (samples {', '.join(who)}{' ...' if mask.sum() > 5 else ''})" if who else ""


def _level(value) -> str:
    """A category label; codes read as floats (2.0) are written as the integers they are (2)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _parse_numbers(values: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 [n] values, NaN where missing or not a number; bool [n] present values that are not numbers)."""
    if values.dtype.kind in "fiub":
        return values.astype(np.float64), np.zeros(values.shape[0], dtype=bool)
    out, bad = np.full(values.shape[0], np.nan), np.zeros(values.shape[0], dtype=bool)
    for i, v in enumerate(values):
        if not missing[i]:
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                bad[i] = True
    return out, bad


def covariate_design(
    table: Mapping[str, Sequence],
    names: Sequence[str],
    missing: MissingPolicy = "refuse",
    sample_ids: Sequence[str] | None = None,
    source: str = "samples.tsv",
    categorical: Sequence[str] = (),
) -> CovariateDesign:
    """Build the design matrix of covariates `names` from `table` ({column: values [n]}).

    missing: "refuse" raises InputError naming the covariate and up to 5 samples with no value;
    "impute" fills numeric gaps with the mean and adds a "<name>:missing" indicator, and gives
    categorical gaps a level "NA" (missing: NaN, None, pandas' NA, "", "NA", "."; an infinite value is refused
    either way). categorical: covariates one-hot encoded even when every value is a
    number (category codes); each must be one of `names`. Descriptors (`DESCRIPTORS`) are refused: they
    are not confounders. Constant columns (one level, or no variation) are dropped and noted in info.
    """
    if missing not in ("refuse", "impute"):
        raise InputError(f"covariate missing-value policy {missing!r}: expected 'refuse' or 'impute'")
    unknown = [c for c in categorical if c not in names]
    if unknown:
        raise InputError(f"categorical covariate(s) {', '.join(map(repr, unknown))} are not among the covariates "
                         f"({', '.join(names) or 'none'}); add them to cohort.covariates")
    cols: list[np.ndarray] = []
    col_names: list[str] = []
    info: dict[str, dict] = {}
    n = None
    for name in names:
        if name in DESCRIPTORS:
            raise InputError(f"covariate {name!r} is a function of the genotypes (a descriptor): it is reported, "
                             "not adjusted for; remove it from cohort.covariates")
        if name not in table:
            raise InputError(f"{source}: covariate column {name!r} is missing")
        values = np.asarray(table[name])
        if values.dtype.kind not in "fiub":
            values = values.astype(object)
        if n is None:
            n = values.shape[0]
        elif values.shape[0] != n:
            raise InputError(f"{source}: covariate {name!r} has {values.shape[0]} values, expected {n}")
        if sample_ids is not None and len(sample_ids) != n:
            raise InputError(f"{source}: covariate {name!r} has {n} values for {len(sample_ids)} samples")
        miss = _missing_mask(values)
        entry: dict = {"n_missing": int(miss.sum()), "missing_policy": missing}
        if miss.any() and missing == "refuse":
            raise InputError(f"{source}: covariate {name!r} has {int(miss.sum())} missing value(s)"
                             f"{_samples(miss, sample_ids)}; fill them in or set cohort.covariate_missing: impute")
        parsed, not_numbers = _parse_numbers(values, miss)
        numeric = None if name in categorical or not_numbers.any() else parsed
        # a bad value, not a missing one: never imputed, nor a level of a covariate of numbers declared categorical
        # (a text covariate's level spelled "inf", say infected, is text: float() reads it, the user does not)
        bad = np.isinf(parsed) & ~miss if not not_numbers.any() else np.zeros_like(miss)
        if bad.any():
            raise InputError(f"{source}: covariate {name!r} has {int(bad.sum())} infinite value(s)"
                             f"{_samples(bad, sample_ids)}; expected finite numbers (NA for a missing value)")
        new_cols: list[tuple[str, np.ndarray]] = []
        if numeric is not None:
            entry["kind"] = "numeric"
            present = numeric[~miss]
            n_levels = np.unique(present).size
            if 3 <= n_levels <= 10 and np.all(present == np.round(present)):
                entry["note"] = (f"{n_levels} distinct integer values, adjusted for as one linear term; if they "
                                 "are category codes (a batch, a site), list it in cohort.categorical_covariates")
            x = numeric.copy()
            if miss.any():
                x[miss] = np.nanmean(x) if (~miss).any() else 0.0
                new_cols.append((f"{name}:missing", miss.astype(np.float64)))
            new_cols.insert(0, (name, x))
        else:
            entry["kind"] = "categorical"
            if name in categorical:
                entry["declared"] = True
            else:
                # a numeric column with a stray text value ("-", "30,5") would become one level per sample
                bad = not_numbers
                if bad.sum() <= (~miss).sum() / 2:
                    shown = ", ".join(repr(str(v)) for v in values[bad][:5])
                    raise InputError(
                        f"{source}: covariate {name!r} holds numbers but for {int(bad.sum())} value(s): {shown}"
                        f"{_samples(bad, sample_ids)}; write NA for a missing value, or list {name} in "
                        "cohort.categorical_covariates if it is a category")
            labels = np.array(["NA" if m else _level(v) for v, m in zip(values, miss, strict=True)])
            # the reference is the first observed level; "NA" (imputed) is never the reference
            levels = sorted(set(labels[~miss].tolist())) + (["NA"] if miss.any() else [])
            n_present, n_observed = int((~miss).sum()), len(levels) - int(miss.any())
            if n_observed > max(5, n_present / 2):  # e.g. an ID column: an indicator per sample or two adjusts for anything
                raise InputError(
                    f"{source}: categorical covariate {name!r} has {n_observed} distinct values among {n_present} "
                    "samples with a value; a category must group samples (is it an ID column?)")
            entry["levels"] = levels
            entry["reference"] = levels[0]
            for lv in levels[1:]:
                new_cols.append((f"{name}={lv}", (labels == lv).astype(np.float64)))
        kept = []
        for cname, x in new_cols:
            if np.ptp(x) > 0:
                cols.append(x - x.mean())
                col_names.append(cname)
                kept.append(cname)
        entry["columns"] = kept
        if not kept:
            entry["note"] = "constant: not adjusted for"
        info[name] = entry
    if n is None:  # no covariates: zero columns, but still one row per sample so designs can be stacked
        n = len(sample_ids) if sample_ids is not None else 0
    matrix = np.column_stack(cols) if cols else np.zeros((n, 0))
    return CovariateDesign(matrix=matrix.astype(np.float64), columns=col_names, info=info)
