"""Confound audit: is a model's view of a phenotype more than ancestry?

A probe that predicts a phenotype from sample embeddings may be reading ancestry instead of biology when
the phenotype's prevalence differs between populations. The verdicts rest on three tests per
(phenotype, model, layer), each with a Monte Carlo null in which the probe is refitted on every replicate:

* **Probe score.** s = leave-one-out prediction of a ridge (least-squares) probe of y on the standardised
  embeddings, its penalty chosen by leave-one-out error from a grid (`RIDGE_GRID`, x n) separately for the
  observed phenotype and for every null replicate. The hat-matrix identity makes the leave-one-out scores of
  thousands of replicates one SVD plus matrix products, so the null can be large enough to reach a
  multiplicity-corrected level. (An L2 logistic probe per replicate would cost ~100 s per verdict at n = 1,000;
  the least-squares probe finds the same linear direction up to shrinkage: LDA with a ridge.)
* **Ancestry model.** A = [strata, genotype PCs, covariates]. Strata are the population labels when they
  have two or more levels; otherwise (no labels, a single label) k-means bins of the genotype PCs
  (`ancestry_bins`). The PCs always enter as covariates, which carries continuous ancestry (admixture,
  also inside a label). Covariates come from `interp.covariates.covariate_design` (one-hot categoricals);
  descriptors of the genotypes (GC content, missing-genotype rate) are reported, never adjusted for.
* **Within-ancestry test** (`p_within`): the largest of two signed root likelihood-ratio statistics in the
  logistic model y ~ A + s, one per probe score s (`within_statistic`): the leave-one-out ridge probe
  fitted to the residual y - p̂(y | A) of the ancestry model, and the same probe fitted to y. Under strong
  ancestry risk a probe fitted to y spends itself on the ancestry direction that the test then conditions
  away, and misses a weaker within-ancestry effect; the residual probe does not. When the causal allele's
  frequency differs between populations, the between-population part of y points the y-probe at the
  causal direction, which the residual probe cannot use. The maximum is one statistic whose null
  replicates refit both probes, so the null stays exact. (Measured on Balding-Nichols cohorts: README,
  the audit stage's calibration, "Against the audit before the two-probe statistic".)
  With the studied region's genotypes (`variant_dosage`, `cfg.variant_scan`) the test adds the
  variant-direction scan (`interp.variant_scan`): the largest score |z| of y on each variant's
  leave-one-out ridge prediction from X (fitted to the dosage, never to y) given A, Sidak-scaled over the
  directions' effective number. Each of the two statistics is standardised by its mean and SD over a
  calibration batch of null replicates drawn apart from the test's (`CombinedWithin`), and the larger is
  the statistic tested; the null replicates recompute both, so the test stays exact. With few cases the
  probe often cannot find a single causal variant's direction that the embedding holds well; the scan,
  which does not have to learn it, does (calibration, 10% cases: causal PASS 69/100 -> 84/100, README).
  Null (`null: auto`): with population labels, no covariates, and PCs that add nothing to the labels in
  the logistic model of y (likelihood-ratio p >= AUTO_PERMUTE_MIN_P, `p_pcs_beyond_strata`), y permuted
  inside the labelled strata (exact when the phenotype depends on ancestry through the label alone);
  otherwise (PC-bin strata; a phenotype that follows continuous ancestry inside a label, as admixed
  individuals under one label, which the permutation would decouple from y: 7.9% of null p-values <= 0.05
  against 4.4% for the bootstrap in a planted case; covariates) a parametric bootstrap
  y* ~ Bernoulli(p̂(y | A)) from the fitted ancestry-only model. Both probes (on each y* and on its residual) and both models are refitted. A probe that reads only ancestry earns on
  y* what it earns on y, so it is not significant.
* **Signal test** (`p_signal`): the same statistic without ancestry (y ~ 1 + s, and with the variant scan the
  scan too, standardised on a calibration batch of permutations as `CombinedWithin`), null = y permuted over
  all samples: is there anything to explain? (Until the thirty-fourth session the probe alone, while the
  within test had the scan: a causal variant the scan found within ancestry could be "nothing to explain".)
* **Ancestry test** (`p_ancestry`, `p_covariates`): analytic likelihood-ratio tests of the strata + PCs
  (and of the covariates) in the logistic model of y, each beyond the other, and of both together
  (`p_ancestry_and_covariates`; NaN without covariates); plus the ancestry-only AUROC (cross-validated
  logistic regression on A) with a bootstrap CI.

Monte Carlo p-values are sequential (Besag & Clifford 1991): replicates are drawn in doubling rounds and
stop at the h-th replicate at least as extreme as the observed statistic (p = h / L), otherwise at the
maximum B (p = (1 + #) / (1 + B)). The stage sets B from the number of verdicts N of the run so that the
Holm level alpha / N can be reached (`null_replicates_needed`). Multiplicity: Holm over all N verdicts of
the run, separately for p_within and p_signal (`assign_verdicts`).

Verdicts, in this order (`verdict_rule` names the one that decided):

* PASS `within_ancestry_signal`: p_within_adjusted <= alpha.
* NO SIGNAL `no_signal`: p_signal_adjusted > alpha (and no within-ancestry signal).
* INCONCLUSIVE `ancestry_phenotype_collinear`: signal, no within-ancestry signal, and the effective
  within-ancestry sample size n_eff = sum p̂(1 - p̂) / (ȳ(1 - ȳ)) (p̂ from the ancestry model) is below
  `min_effective_n`: ancestry nearly determines the phenotype, so absence of a within signal says little.
* FAIL `signal_explained_by_ancestry` (or `..._by_covariates`, or `..._by_ancestry_and_covariates` when only
  both together are significant: covariates collinear with ancestry): signal, no within-ancestry signal, the
  ancestry (or covariate, or joint) likelihood-ratio test has p <= alpha, and the upper 95% bound of the
  within-ancestry AUROC is below both 0.5 + `fail_within_margin` and 0.5 + `fail_max_within_share` x
  (probe AUROC - 0.5): the data exclude a within-ancestry effect larger than the margin (an equivalence
  test) and one larger than that share of the apparent signal. The absolute margin is what keeps a real
  but weak effect from FAILing when ancestry adds a large signal of its own: a single variant at OR 2 has
  a within-ancestry AUROC near 0.57, and under a six-fold prevalence difference between populations the
  probe AUROC is about 0.7, so the share bound alone (0.6) sits above that effect. In 24 Balding-Nichols
  cohorts of 600 (OR 2, prevalences 0.6 / 0.1 / 0.3) the share bound alone FAILed 4, with the margin 1.
  The price: at small n an ancestry-only phenotype is INCONCLUSIVE more often than FAIL, since the data
  cannot exclude a within-ancestry effect of the margin.
* INCONCLUSIVE `within_effect_undetermined`: everything else with a signal (e.g. a within-ancestry effect
  that is neither detected nor excluded).

Effect size shown to users: the within-ancestry AUROC, the probability that a case scores above a control of
the same stratum, with a bootstrap CI that resamples inside strata. Its scores are out-of-fold L2 logistic
probes (`interp.probe.fit_logistic`) in folds stratified by stratum x phenotype, residualised on strata +
PCs inside each fold; only pairs scored by the same fold's probe are compared, and per stratum x fold
AUROCs are pooled with weights n_cases x n_controls. Two probes are fitted, as for the test: one on the
embeddings, and one on the embeddings residualised on strata + PCs in each training fold (it can only
learn within-ancestry directions); the larger estimate is reported (`within_auroc_probe` names it;
`within_auroc_<probe>_probe` and its `_ci_low` / `_ci_high` keep both) and is the one the FAIL rule bounds, so a probe that spent itself on
ancestry cannot make a real within-ancestry effect look excluded. Those folds keep each training fold's
per-stratum prevalence, so a probe that only learns stratum means cannot rank a held-out case below its
stratum's controls; the leave-one-out scores of the test have that artefact (a leave-one-out stratum mean
is anti-correlated with the left-out label), which is harmless for the test, whose null replicates share
it, but would bias an effect size. Any estimate from a probe that must learn its direction is biased
towards 0.5 (a single OR-2 variant, whose genotype gives a within AUROC near 0.57, is estimated near 0.52
in the synthetic cohorts of the tests), so FAIL's equivalence bound is conservative only as far as that
bias allows: this is what the measured FAIL rates below quantify. The logistic probes of the earlier audit (random, stratified,
leave-one-population-out and PC-residualised CV, shuffled labels, population read-outs) are kept as a
report, all in two batched `fit_logistic` calls.

Known limit: the tests condition on the genotype PCs, an estimate of ancestry. If the phenotype follows
true ancestry and the embeddings carry ancestry information beyond the PCs (continuous admixture, PCs from
few markers), part of that association looks within-ancestry; more (genome-wide) ancestry markers shrink it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
from fairlearn.metrics import MetricFrame
from scipy import stats

from interp.covariates import CovariateDesign
from interp.errors import InputError
from interp.io import is_missing
from interp.multiplicity import benjamini_hochberg, holm
from interp.probe import ProbeConfig, auroc, fit_logistic, predict_proba
from interp.variant_scan import VariantDirections, scan_statistics, scan_z, variant_directions

Folds = list[tuple[np.ndarray, np.ndarray]]

VERDICTS = ("PASS", "FAIL", "NO SIGNAL", "INCONCLUSIVE")
#: groups of fewer samples are never reported on (counts masked, statistics left out)
MIN_REPORTED_GROUP = 5


def small_cell(n: int, n_cases: int) -> str | None:
    """Why a group of `n` samples with `n_cases` cases is not reported on, or None when it is: fewer than
    MIN_REPORTED_GROUP samples ("<5"), cases ("<5 cases") or controls ("<5 controls"), zero included. A group's
    prevalence times its size is its case count, and its AUROC ranks its few cases against its controls, so a
    phenotype x population cell of 1-4 people (or of all but 1-4) would be reported on. A group of 5-9 (under
    2 x MIN_REPORTED_GROUP) says neither which side is small (SMALL_EITHER): there the side named, with the size
    shown, narrows the other (a group of 5 marked "<5 controls" has 5 cases, since cases are checked first)."""
    m = MIN_REPORTED_GROUP
    if n < m:
        return f"<{m}"
    if min(n_cases, n - n_cases) < m and n < 2 * m:
        return SMALL_EITHER
    if n_cases < m:
        return f"<{m} cases"
    if n - n_cases < m:
        return f"<{m} controls"
    return None


#: `small_cell` of a group of 5-9 samples with fewer than 5 cases or fewer than 5 controls
SMALL_EITHER = f"<{MIN_REPORTED_GROUP} cases or controls"


#: the group of samples without a population label in the report's cohort table (they may have no phenotype
#: value either: the audit refuses a phenotype value without a label)
NO_LABEL = "(no label)"

#: `small_cell` reason of a group masked only so that a small group's count cannot be had by subtraction
COMPLEMENTARY = "masked (complementary)"

#: `suppressed_groups`' reason for a group of 5 or more whose size is hidden too: it says nothing of which count
#: is small, since "<5 cases" or "masked (complementary)" say 10 or more samples and "<5 cases or controls" 5-9,
#: a size class that with the cohort table's sizes narrowed a "<5" group's size
SIZE_MASKED = "masked"


def _feasible(ranges: list[tuple[float, float]], total: float) -> list[tuple[float, float]]:
    """Per hidden cell, the narrowest interval a reader can place it in from the ranges the report lets a
    reader know (lo, hi per hidden cell) and the hidden cells' sum `total` (the shown margin minus the shown
    cells)."""
    lo_sum, hi_sum = sum(lo for lo, _ in ranges), sum(hi for _, hi in ranges)
    return [(max(lo, total - (hi_sum - hi)), min(hi, total - (lo_sum - lo))) for lo, hi in ranges]


def _size_label_range(label: str | None, total: float) -> tuple[float, float]:
    """What a masked size's label lets a reader know: "<5" is 1-4, any other mask 5 up to the table's total."""
    m = MIN_REPORTED_GROUP
    return (1, m - 1) if label == f"<{m}" else (m, total)


def _few_left_out(n: int, reference: int) -> bool:
    """A group's size `n` in a phenotype against its size `reference` in the cohort: 1 to MIN_REPORTED_GROUP - 1
    of its people were left out (no phenotype value), a count the two sizes would give by subtraction."""
    return 0 < reference - n < MIN_REPORTED_GROUP


def suppressed_groups(n: list[int], cases: list[int], reference: list[int] | None = None,
                      absent: list[int] | None = None, names: list[str] | None = None,
                      absent_names: list[str] | None = None) -> list[tuple[str | None, bool]]:
    """Per group of a partition of the samples (sizes `n`, case counts `cases`): (why it is not reported on,
    or None; whether its size is hidden too). Primary suppression is `small_cell` ("<5" hides the size as
    well). The report also gives the partition's total samples and cases exactly, so complementary
    suppression follows: while the totals minus the shown groups tell more of a small group's case count,
    control count (or of a "<5" size) than its label does, or pin any hidden count (`_exposed`; what the
    report says of the hidden ones: "<5 cases": 0-4 cases of 10 or more samples, "<5 controls": 0-4 controls
    of 10 or more, SMALL_EITHER: 5-9 samples, COMPLEMENTARY: 5 or more of each, SIZE_MASKED: a size hidden,
    nothing said of the counts), one more shown group is masked with COMPLEMENTARY (its size hidden too where a
    size is exposed), the first in the order of `names` (None: as given): the choice depends on the names and
    the shown numbers, never on the hidden counts (chosen by size until the thirty-seventh session, the
    smallest of 15 or more, which bounded a masked size by the shown ones for a reader who knew the rule). When
    every group is masked and a count is still told, a size is hidden (that group then says SIZE_MASKED). The
    sizes hidden are at least `suppressed_sizes`' (the cohort table's), the same in every phenotype of a cohort
    and in its population table: chosen per phenotype by where the cases fall, one phenotype hid one group's
    size and another a second's, and the sizes shown by either gave the "<5" one. Every group whose size is
    hidden, "<5" ones apart, is returned as SIZE_MASKED: "<5 cases" told 10 or more samples, a size class the
    cohort table's "masked" does not give.

    reference: the same groups' sizes in the whole cohort (the report's `cohort.populations`, or the cohort's
    PC bins), when the phenotype left samples out for a missing value (None: the sizes are the cohort's). The
    sizes hidden are then `suppressed_sizes`' of the cohort's sizes (the cohort table's), and a group's size is
    hidden too where 1-4 of its people were left out (`_few_left_out`: the cohort's size minus the shown one
    would count them), its statistics with it (its prevalence would give its size back); complementary
    suppression then also keeps every hidden group's left-out count (the phenotype's exact
    n_missing_phenotype minus the shown groups') from being placed within 1-4.

    absent: the cohort's sizes of its further groups with no sample here (every one of their people left out,
    e.g. the "(no label)" group, which may hold only samples without a phenotype value; `reference_sizes`). They
    are part of the cohort table's partition, so they take part in which sizes it hides (a "<5" group absent
    here still needs its complement hidden here), and their hidden sizes in what n_missing_phenotype minus the
    shown groups' counts leaves. names, absent_names: the groups' names and the absent groups' (both or
    neither): the cohort table masks by name, so a table listing its groups in another order masks the same.
    The left-out counts' check still asks only that none be placed within 1-4 (a value-dependent trigger: a
    reader who knows the rule may learn more there)."""
    m = MIN_REPORTED_GROUP
    n = [int(k) for k in n]
    ref = n if reference is None else [int(k) for k in reference]
    absent = [int(k) for k in (absent or [])]
    if names is not None and len(absent_names or []) != len(absent):
        raise ValueError(f"suppressed_groups: {len(absent_names or [])} names for {len(absent)} absent groups")
    cohort_table = suppressed_sizes(ref + absent, None if names is None else [*names, *(absent_names or [])])
    # an absent group the cohort table hides: its left-out count is its size, in its "<5" or "masked" range
    absent_hidden = [(k, _size_label_range(w, float(sum(ref + absent))))
                     for k, w in zip(absent, cohort_table[len(n):], strict=True) if w is not None]
    why = [small_cell(k, int(c)) for k, c in zip(n, cases, strict=True)]
    # (one group is the whole set: its size is the phenotype's exact n_samples, nothing to hide)
    size_hidden = [w is not None or (len(n) > 1 and _few_left_out(k, r)) or k < m
                   for w, k, r in zip(cohort_table[:len(n)], n, ref, strict=True)]
    why = [COMPLEMENTARY if w is None and h else w for w, h in zip(why, size_hidden, strict=True)]
    big = float(sum(n))
    total_n = float(sum(ref + absent))

    def generic(i: int) -> bool:  # shown as SIZE_MASKED: size hidden, no size class told
        return size_hidden[i] and why[i] != f"<{m}"

    # what a reader knows of a hidden group from its label (`small_cell`), with its size shown: "<5 cases" and
    # "<5 controls" are groups of 10 or more (so the other side has 6 or more), SMALL_EITHER one of 5-9; of a
    # SIZE_MASKED group only that it has 5 or more samples
    def case_range(i: int) -> tuple[float, float]:
        if generic(i):
            return 0, big
        if why[i] == COMPLEMENTARY:
            return m, n[i] - m
        if why[i] == f"<{m} controls":
            return n[i] - (m - 1), n[i]
        if why[i] == SMALL_EITHER:
            return 0, n[i]
        return 0, m - 1  # "<5 cases", and "<5" (0 to its size, under 5)

    def control_range(i: int) -> tuple[float, float]:  # a hidden group's controls: its size less its cases
        if generic(i):
            return 0, big
        if why[i] == COMPLEMENTARY:
            return m, n[i] - m
        if why[i] == f"<{m} cases":
            return n[i] - (m - 1), n[i]
        if why[i] == SMALL_EITHER:
            return 0, n[i]
        return 0, m - 1  # "<5 controls", and "<5"

    def protected(i: int, count: int, label: tuple[float, float]) -> tuple[float, float] | None:
        """The interval of a small count (`count`: a hidden group's cases or controls) that the totals must
        leave whole: its label's range, or for a SIZE_MASKED group 0-4 where the count is under 5 (a value-
        dependent test: a rule-aware reader may learn which side of such a group is small, cohort [2, 7, 15];
        asking it of both sides masked every group in nearly every realistic table)."""
        if why[i] == COMPLEMENTARY:
            return None
        if generic(i):
            return (0, m - 1) if count < m else None
        return label if count < m or why[i] == SMALL_EITHER else None

    def size_range(i: int) -> tuple[float, float]:
        return _size_label_range(why[i], big)

    def left_out_range(i: int, size: tuple[float, float] | None = None) -> tuple[float, float]:
        """The cohort's size (its number where the cohort table shows it, else its public range) minus the hidden
        size (its range `size`, default what its label says): with the hidden cohort size the rule itself used,
        a reader who knew the rule pinned a "<5" group."""
        lo, hi = size or size_range(i)
        c_lo, c_hi = cohort_range(i)
        return max(0.0, c_lo - hi), max(0.0, c_hi - lo)

    def cohort_range(i: int) -> tuple[float, float]:  # a group's size in the cohort table, as a reader has it
        w = cohort_table[i]
        return (ref[i], ref[i]) if w is None else _size_label_range(w, total_n)

    total_left_out = float(sum(r - k for r, k in zip(ref, n, strict=True)) + sum(absent))  # n_missing_phenotype

    def unavoidable(i: int) -> bool:
        """The group's left-out count lies in 1-4 from what is public whatever else is masked: its own range
        (the cohort's size less its hidden size) starts at 1 or more and it cannot exceed the exact total (a cohort
        group of 6 shown as "<5" with 2 left out in all); masking other groups would hide their tables for nothing."""
        lo, hi = left_out_range(i)
        return lo >= 1 and min(hi, total_left_out) <= m - 1

    def hidden_left_out(groups: list[int]) -> float:
        """The left-out count of `groups` (sizes hidden) and of the absent groups the cohort table hides: the exact
        n_missing_phenotype less what the rest show (an absent group whose cohort size is shown is public)."""
        return float(sum(ref[i] - n[i] for i in groups) + sum(k for k, _ in absent_hidden))

    # what the absent groups' hidden sizes would be placed in were every size here hidden: the most masking can do
    floor = _feasible([left_out_range(i, _size_label_range(f"<{m}" if k < m else SIZE_MASKED, big))
                       for i, k in enumerate(n)]
                      + [r for _, r in absent_hidden], hidden_left_out(list(range(len(n)))))
    absent_floor = [f if r == (1, m - 1) else None for f, (_, r) in zip(floor[len(n):], absent_hidden, strict=True)]

    order = _name_order(names, len(n))
    while True:
        hidden = [i for i, w in enumerate(why) if w is not None]
        sizes = [i for i in hidden if size_hidden[i]]
        # the small counts: "<5" (both), "<5 cases", "<5 controls", SMALL_EITHER (either), SIZE_MASKED's under 5
        case_ranges = [case_range(i) for i in hidden]
        pinned_cases = _exposed(case_ranges, float(sum(cases[i] for i in hidden)),
                                [protected(i, cases[i], r) for i, r in zip(hidden, case_ranges, strict=True)])
        # the controls too: the totals give the hidden groups' controls as well (a "<5" group of cases only,
        # beside a complement with exactly 5 controls, had its controls pinned to 0)
        control_ranges = [control_range(i) for i in hidden]
        pinned_cases = pinned_cases or _exposed(
            control_ranges, float(sum(n[i] - cases[i] for i in hidden)),
            [protected(i, n[i] - cases[i], r) for i, r in zip(hidden, control_ranges, strict=True)])
        pinned_size = _exposed([size_range(i) for i in sizes], float(sum(n[i] for i in sizes)),
                               [size_range(i) if why[i] == f"<{m}" else None for i in sizes])
        # a hidden group's left-out count placed within 1-4 (0, or 5 and more, tell of no few people)
        feasible = _feasible([left_out_range(i) for i in sizes] + [r for _, r in absent_hidden],
                             hidden_left_out(sizes))
        pinned_left_out = any(1 <= lo and hi <= m - 1 and not unavoidable(i)
                              for i, (lo, hi) in zip(sizes, feasible[:len(sizes)], strict=True))
        # an absent "<5" group's size (all its people left out) narrowed within 1-4 by the shown groups' left-out
        # counts (a SAS shown with 10 of 70 left out, of 13 in all, put "(no label)" at 1-3), where hiding
        # sizes can widen it (n_missing_phenotype of 2 bounds it whatever is hidden)
        pinned_left_out = pinned_left_out or any(
            f is not None and (lo > f[0] or hi < f[1])
            for (lo, hi), f in zip(feasible[len(sizes):], absent_floor, strict=True))
        pinned_size = pinned_size or pinned_left_out
        if not (pinned_cases or pinned_size):
            break
        shown = [i for i in order if why[i] is None]
        if shown:
            why[shown[0]] = COMPLEMENTARY
            size_hidden[shown[0]] = pinned_size
        elif extra := [i for i in order if why[i] is not None and not size_hidden[i]]:
            # every group masked and a count still told: hide a size, which leaves that group's label saying
            # nothing of its counts (SIZE_MASKED; a complement of 10 said 5 cases and 5 controls)
            size_hidden[extra[0]] = True
        else:
            break  # every group masked: nothing more to hide (the totals themselves are the cohort's)
    return [(SIZE_MASKED if generic(i) else why[i], size_hidden[i]) for i in range(len(n))]


def reference_sizes(names: list[str], n: list[int], reference: dict[str, int] | None,
                    ) -> tuple[list[int] | None, list[int], list[str]]:
    """`suppressed_groups`' reference, absent sizes and absent names for groups `names` of sizes `n` from
    {group: its size in the whole cohort} (None: unknown, the sizes are the cohort's): each group's cohort size
    (its own size where the reference lacks it), and the cohort sizes and names of the reference's groups
    missing from `names`, in the reference's order."""
    if reference is None:
        return None, [], []
    present = set(names)
    missing = [g for g in reference if g not in present]
    return ([int(reference.get(g, k)) for g, k in zip(names, n, strict=True)],
            [int(reference[g]) for g in missing], [str(g) for g in missing])


def suppressed_sizes(n: list[int], names: list[str] | None = None) -> list[str | None]:
    """Per group of a partition of the samples whose total the report gives: how its size is shown instead of
    the number, or None: "<5" under MIN_REPORTED_GROUP, and "masked" for as many further groups, taken in the
    order of `names` (None: in the given order), as keep the total minus the shown sizes from telling more of a
    "<5" size than that it is 1-4 (`_exposed`). The groups masked depend on the names and on the sizes shown
    only, never on the hidden ones: chosen by size (the smallest of 15 or more, until the thirty-seventh
    session), a masked size was bounded by the shown ones, and a reader who knew the rule had the hidden sizes
    of [60, 4, 60] (60 and 4)."""
    m = MIN_REPORTED_GROUP
    shown_as: list[str | None] = [f"<{m}" if k < m else None for k in n]
    order = _name_order(names, len(n))
    while True:
        hidden = [i for i, w in enumerate(shown_as) if w is not None]
        shown = [i for i in order if shown_as[i] is None]
        ranges = [_size_label_range(shown_as[i], float(sum(n))) for i in hidden]
        protect = [r if shown_as[i] == f"<{m}" else None for i, r in zip(hidden, ranges, strict=True)]
        if not shown or not _exposed(ranges, float(sum(n[i] for i in hidden)), protect):
            return shown_as
        shown_as[shown[0]] = "masked"


def _name_order(names: list[str] | None, k: int) -> list[int]:
    """Indices of `k` groups in the order their complements are taken: by name (None: as given). A public
    order, the same in every table of one cohort whatever order a table lists its groups in."""
    if names is None:
        return list(range(k))
    if len(names) != k:
        raise ValueError(f"{len(names)} names for {k} groups")
    return sorted(range(k), key=lambda i: (str(names[i]), i))


def _exposed(ranges: list[tuple[float, float]], total: float,
             protect: list[tuple[float, float] | None]) -> bool:
    """Whether the hidden cells (`ranges`: what their labels let a reader know of each; `total`: their sum,
    the shown margin minus the shown cells) tell a reader more of a small count than its label does: a cell's
    `protect` interval (its label's range, e.g. 0-4 for "<5 cases"; None for a count that is not small) not
    wholly within what the totals leave it; or pin any cell to one value. Asking for the whole interval, not
    only "not pinned", is what lets the masking follow the shown numbers: with "not pinned" as the test, masking
    one more group told that the step before had pinned a value. A complement's count (5 or more) may be
    narrowed, but a pinned one is as good as shown (its phenotype size, with the cohort's, gave a "<5" group's
    size); one its label alone pins does not count. Where the totals themselves are that small (a cohort of 13
    in groups of 1, 1, 6 and 5), every group ends up masked."""
    return any((p is not None and (lo > p[0] or hi < p[1])) or (hi <= lo and r[0] < r[1])
               for p, (lo, hi), r in zip(protect, _feasible(ranges, total), ranges, strict=True))


#: `null: auto` permutes y inside population labels only where the PCs add nothing to the labels in the
#: ancestry model of y, at this likelihood-ratio p or above (a liberal pre-test: where the labels do explain
#: ancestry's part, both nulls are calibrated, and the bootstrap costs nothing in validity)
AUTO_PERMUTE_MIN_P = 0.2
#: ridge penalties tried by the leave-one-out probe, in units of n (standardised embeddings)
RIDGE_GRID = tuple(float(v) for v in np.logspace(-2, 2, 9))


@dataclass
class AuditConfig:
    """Audit settings (defaults as in workflow/schemas/config.schema.yaml; see the module docstring).

    n_folds: folds of the logistic report probes. bootstrap: resamples for every confidence interval.
    C: inverse L2 strength of the logistic report probes. alpha: family-wise level of the verdicts.
    max_null_replicates: cap on Monte Carlo null replicates per test (the stage lowers it to what the
    Holm level of the run needs). stop_exceedances: h of the sequential (Besag-Clifford) stop.
    first_round: replicates in the first sequential round (rounds double). multiplicity: "holm" or "bh".
    null: "permute" (y permuted inside strata: exact when labels are the strata), "bootstrap"
    (parametric, from the ancestry model: for PC-bin strata, continuous ancestry, covariates), or "auto"
    (permute with population labels and no covariates, bootstrap otherwise).
    ancestry_bins: k-means bins of the genotype PCs used as strata when population labels are absent.
    min_effective_n: INCONCLUSIVE below this effective within-ancestry sample size.
    fail_max_within_share: FAIL needs the within-ancestry AUROC's upper 95% bound to be below
    0.5 + share x (probe AUROC - 0.5): at most that share of the apparent signal can be within ancestry.
    fail_within_margin: ... and below 0.5 + margin: the data exclude a within-ancestry effect (AUROC
    units) larger than this.
    ridge_alpha: penalty of the closed-form ridge used for R^2 read-outs (standardised features).
    variant_scan: add the variant-direction scan (`interp.variant_scan`) to the within-ancestry test when
    the region's genotypes are given. max_scan_variants: the scan keeps the variants the embedding
    predicts best (leave-one-out R^2), at most this many.
    """

    n_folds: int = 5
    bootstrap: int = 200
    C: float = 1.0
    alpha: float = 0.05
    max_null_replicates: int = 4000
    stop_exceedances: int = 10
    first_round: int = 64
    multiplicity: str = "holm"
    null: str = "auto"
    ancestry_bins: int = 4
    min_effective_n: float = 30.0
    fail_max_within_share: float = 0.5
    fail_within_margin: float = 0.05
    seed: int = 0
    ridge_alpha: float = 1.0
    variant_scan: bool = True
    max_scan_variants: int = 100
    max_iter: int = 200
    accelerator: str = "cpu"


# ----------------------------------------------------------------------------------------------- folds


def stratified_folds(strata: np.ndarray, n_folds: int, seed: int) -> Folds:
    """K folds with every stratum spread evenly, as (train_index, test_index); strata [n] any labels."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(strata.shape[0], dtype=np.int64)
    offset = 0
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        # continue the round-robin where the previous stratum stopped so fold sizes stay balanced
        fold_of[idx] = (offset + np.arange(idx.shape[0])) % n_folds
        offset += idx.shape[0]
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(n_folds)]


def leave_one_group_out(groups: np.ndarray) -> tuple[list[str], Folds]:
    """One fold per group (sorted): test that group, train on the rest."""
    groups = np.asarray(groups).astype(str)
    names = [str(g) for g in np.unique(groups)]
    return names, [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in names]


def permute_within(y: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """y [n] with its values shuffled inside each group, so group-level prevalences are kept."""
    out = np.array(y, copy=True)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = y[rng.permutation(idx)]
    return out


# ------------------------------------------------------------------------------------------ regression


def _design(Z: np.ndarray) -> np.ndarray:
    """[n, 1 + q] intercept plus covariates Z [n, q]."""
    Z = np.asarray(Z, dtype=np.float64).reshape(Z.shape[0], -1)
    return np.hstack([np.ones((Z.shape[0], 1)), Z])


def residualise_in_fold(X: np.ndarray, Z: np.ndarray, train: np.ndarray) -> np.ndarray:
    """X [n, d] minus its OLS prediction from 1 + Z [n, q], coefficients fitted on rows `train` only.

    Fitting on all rows would let the test rows shape the correction (leakage), so every fold gets its own.
    """
    D = _design(Z)
    beta, *_ = np.linalg.lstsq(D[train], X[train], rcond=None)
    return X - D @ beta


def ridge_cv_r2(X: np.ndarray, T: np.ndarray, folds: Folds, ridge_alpha: float) -> np.ndarray:
    """Out-of-fold R^2 [q] of ridge predictions of targets T [n, q] from X [n, d].

    X is standardised and T centred with each fold's training rows; R^2 = 1 - SS_res / SS_tot over all
    out-of-fold predictions.
    """
    X = np.asarray(X, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64).reshape(X.shape[0], -1)
    pred = np.full_like(T, np.nan)
    for train, test in folds:
        mu, sd = X[train].mean(0), X[train].std(0)
        sd[sd < 1e-12] = 1.0
        Xtr, Xte = (X[train] - mu) / sd, (X[test] - mu) / sd
        t_mu = T[train].mean(0)
        gram = Xtr.T @ Xtr + ridge_alpha * np.eye(X.shape[1])
        beta = np.linalg.solve(gram, Xtr.T @ (T[train] - t_mu))
        pred[test] = Xte @ beta + t_mu
    ok = np.isfinite(pred).all(axis=1)
    ss_res = ((T[ok] - pred[ok]) ** 2).sum(0)
    ss_tot = ((T[ok] - T[ok].mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


# ------------------------------------------------------------------------------------------ probe jobs


@dataclass
class _Jobs:
    """Binary probes queued for one `fit_logistic` call, each tagged with a scheme name and fold."""

    labels: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    keys: list = field(default_factory=list)  # (tag, fold, test_index)
    X_slices: list = field(default_factory=list)  # per-probe X [n, d] when X is not shared

    def add_folds(self, tag: str, y: np.ndarray, folds: Folds, X_per_fold: list | None = None) -> None:
        """Queue one probe per fold whose training rows have both classes."""
        n = y.shape[0]
        for f, (train, test) in enumerate(folds):
            if np.unique(y[train]).size < 2:
                continue
            mask = np.zeros(n, dtype=bool)
            mask[train] = True
            self.labels.append(y)
            self.masks.append(mask)
            self.keys.append((tag, f, test))
            if X_per_fold is not None:
                self.X_slices.append(X_per_fold[f])

    def run(self, X: np.ndarray | None, cfg: AuditConfig) -> dict[str, list]:
        """Fit every queued probe; returns {tag: [(fold, test_index, y_test, score_test)]}."""
        out: dict[str, list] = {}
        if not self.keys:
            return out
        X_all = np.stack(self.X_slices) if X is None else X
        pcfg = ProbeConfig(C=cfg.C, max_iter=cfg.max_iter, seed=cfg.seed, accelerator=cfg.accelerator)
        probes = fit_logistic(X_all, np.stack(self.labels).astype(np.float64), np.stack(self.masks), pcfg)
        proba = predict_proba(probes, X_all)
        for p, (tag, f, test) in enumerate(self.keys):
            out.setdefault(tag, []).append((f, test, self.labels[p][test], proba[p, test]))
        return out


def _fold_auroc(results: list) -> tuple[float, float, int]:
    """Mean and sd (ddof=1) of per-fold AUROC over folds whose test rows have both classes, and their count."""
    vals = np.array([auroc(yt, s) for _, _, yt, s in results], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return float("nan"), float("nan"), 0
    return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else float("nan"), int(vals.size)


def _oof_scores(results: list, n: int) -> np.ndarray:
    """Out-of-fold scores [n] (NaN for rows never tested)."""
    oof = np.full(n, np.nan)
    for _, test, _, s in results:
        oof[test] = s
    return oof


def _oof_folds(results: list, n: int) -> np.ndarray:
    """The fold [n] whose probe scored each row (-1 for rows never tested)."""
    fold = np.full(n, -1, dtype=np.int64)
    for f, test, _, _ in results:
        fold[test] = f
    return fold


def _macro_ovr_auroc(results_by_class: dict[str, list], labels: np.ndarray, n: int) -> float:
    """Macro one-vs-rest AUROC of out-of-fold class scores (one binary probe per class)."""
    vals = []
    for c, res in results_by_class.items():
        oof = _oof_scores(res, n)
        ok = np.isfinite(oof)
        vals.append(auroc(labels[ok] == c, oof[ok]))
    vals = np.array(vals, dtype=np.float64)
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")


# ------------------------------------------------------------------------------------------ inputs


def _first_rows(mask: np.ndarray, limit: int = 5) -> str:
    """The first `limit` row indices where mask [n] is True, e.g. "rows 3, 17, 40 ..."."""
    rows = np.flatnonzero(mask)
    return "rows " + ", ".join(map(str, rows[:limit])) + (" ..." if rows.size > limit else "")


def _phenotype_values(y: np.ndarray) -> np.ndarray:
    """y [n] as float64, NaN where missing (None, NaN, NA, "" ...); InputError naming the first value that is
    not a number."""
    if y.dtype.kind in "fiub":
        return y.astype(np.float64)
    out = np.full(y.shape[0], np.nan)
    for i, v in enumerate(y):
        if is_missing(v):
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise InputError(f"audit phenotype: value {v!r} (row {i}) is not a number; expected 0 (control), "
                             "1 (case) or NA (missing)") from None
    return out


def _check_inputs(X, y, population, pcs, covariates, descriptors):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"audit embeddings: expected a [n_samples, d] matrix, got shape {X.shape}")
    n = X.shape[0]
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # one phenotype as a column
        y = y[:, 0]
    if y.ndim != 1:
        raise InputError(f"audit phenotype: expected one value per sample [n_samples], got shape {y.shape}")
    population = np.asarray(population)
    pcs = np.asarray(pcs, dtype=np.float64)
    if pcs.ndim == 1:
        pcs = pcs[:, None]
    for name, arr in [("phenotype", y), ("population", population), ("genotype PCs", pcs)]:
        if arr.shape[0] != n:
            raise InputError(f"audit {name}: {arr.shape[0]} samples but the embeddings have {n}")
    if pcs.shape[1] == 0:  # the ancestry the audit adjusts for, and its strata without labels
        raise InputError("audit genotype PCs: no PC column; at least one is needed (cohort.n_pcs)")
    for name, arr in (("embeddings", X), ("genotype PCs", pcs)):
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            raise InputError(f"audit {name}: {int(bad.sum())} sample(s) have NaN/inf values ({_first_rows(bad)}); "
                             "expected finite values")
    y_num = _phenotype_values(y)
    keep = ~np.isnan(y_num)  # samples without a phenotype are left out, not guessed
    values = np.unique(y_num[keep])
    if not np.all((values == 0) | (values == 1)):
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (" ..." if values.size > 5 else "")
        hint = " (coded 1/2 as in plink? recode 1 -> 0 and 2 -> 1)" if set(values) == {1.0, 2.0} else ""
        raise InputError(f"audit phenotype: expected binary 0/1 values, found {shown}{hint}; quantitative "
                         "phenotypes are refused at validation")
    if values.size < 2:
        raise InputError("audit phenotype: needs both cases (1) and controls (0) among samples with a value")
    no_label = keep & np.array([is_missing(v) for v in population], dtype=bool)
    if no_label.any():  # a missing label would otherwise become a population of its own ("nan", "None")
        raise InputError(f"audit population: {int(no_label.sum())} sample(s) with a phenotype have no population "
                         f"label ({_first_rows(no_label)}); fill them in, or audit without labels (strata then "
                         "come from the genotype PCs)")
    population = population.astype(str)
    cov = None
    if covariates is not None:
        cov = np.asarray(covariates.matrix, dtype=np.float64)
        if cov.size == 0:
            cov = np.zeros((n, 0))
        if cov.ndim == 1:
            cov = cov[:, None]
        # checked before any reshape: a matrix of another sample set must not be folded into n rows
        if cov.ndim != 2 or cov.shape[0] != n:
            raise InputError(f"audit covariates: a design matrix of shape {cov.shape} but the embeddings have {n} "
                             "samples; build it from the same samples, in the same order")
        if not np.all(np.isfinite(cov)):
            raise InputError("audit covariates: the design matrix contains NaN/inf")
        cov = cov[keep]
    desc = {}
    for name, arr in (descriptors or {}).items():
        arr = np.asarray(arr, dtype=np.float64)
        if arr.shape[0] != n:
            raise InputError(f"audit descriptor {name}: {arr.shape[0]} values but the embeddings have {n} samples")
        desc[name] = arr[keep]
    return X[keep], y_num[keep].astype(np.int64), population[keep], pcs[keep], cov, desc, int((~keep).sum())


# ------------------------------------------------------------------------------------------ by population


def _metric_auroc(y_true, y_pred) -> float:
    return float(auroc(np.asarray(y_true), np.asarray(y_pred)))


def _metric_accuracy(y_true, y_pred) -> float:
    return float(np.mean((np.asarray(y_pred) >= 0.5) == np.asarray(y_true).astype(bool)))


def _metric_prevalence(y_true, y_pred) -> float:
    return float(np.mean(y_true))


def _metric_count(y_true, y_pred) -> float:
    return float(len(y_true))


def bootstrap_ci(
    y: np.ndarray, score: np.ndarray, n_boot: int, rng: np.random.Generator, q: tuple = (0.025, 0.975)
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of AUROC and accuracy (threshold 0.5) for one group, vectorised.

    y, score [n]; resamples are drawn with replacement from this group only; resamples lacking a class
    are dropped from the AUROC quantiles.
    """
    idx = rng.integers(0, y.shape[0], size=(n_boot, y.shape[0]))
    yb, sb = y[idx], score[idx]
    aucs = np.asarray(auroc(yb, sb))
    accs = ((sb >= 0.5) == yb.astype(bool)).mean(axis=1)
    aucs = aucs[np.isfinite(aucs)]
    nan2 = (float("nan"), float("nan"))
    return {
        "auroc": tuple(float(v) for v in np.quantile(aucs, q)) if aucs.size else nan2,
        "accuracy": tuple(float(v) for v in np.quantile(accs, q)),
    }


def by_population(
    y: np.ndarray, score: np.ndarray, population: np.ndarray, n_boot: int, seed: int,
    reference: dict[str, int] | None = None,
) -> tuple[list[dict], dict[str, float]]:
    """Per-population AUROC / accuracy of out-of-fold scores (fairlearn MetricFrame) with bootstrap CIs.

    Returns ([{population, n, prevalence, auroc, auroc_ci_low, auroc_ci_high, accuracy, accuracy_ci_low,
    accuracy_ci_high}], {metric: between-group difference (max - min over the populations of at least
    MIN_REPORTED_GROUP samples, cases and controls and not masked as their complement (`suppressed_groups`);
    NaN with fewer than two such)}): a difference that takes a group of 2-4 people, or of 1-4 cases, as its
    extreme would report on them.
    CIs are 2.5/97.5% quantiles of `n_boot` seeded resamples within each population (NaN when
    n_boot < 2); MetricFrame's own n_boot resamples the whole cohort and is ~50x slower.
    reference: {group: its size in the whole cohort, samples without a phenotype value included}
    (`suppressed_groups`' reference; None: the sizes here are the cohort's).
    """
    ok = np.isfinite(score)
    y, score, population = y[ok], score[ok], population[ok]
    metrics = {"auroc": _metric_auroc, "accuracy": _metric_accuracy, "prevalence": _metric_prevalence,
               "n": _metric_count}
    frame = MetricFrame(metrics=metrics, y_true=y, y_pred=score, sensitive_features=population)
    table = frame.by_group
    rng = np.random.default_rng(seed)
    groups, n_cases = [], []
    for g in table.index:
        row = {"population": str(g), "n": int(table.loc[g, "n"]), "prevalence": float(table.loc[g, "prevalence"])}
        sel = population == g
        ci = bootstrap_ci(y[sel], score[sel], n_boot, rng) if n_boot >= 2 else None
        for m in ("auroc", "accuracy"):
            row[m] = float(table.loc[g, m])
            row[f"{m}_ci_low"] = ci[m][0] if ci else float("nan")
            row[f"{m}_ci_high"] = ci[m][1] if ci else float("nan")
        groups.append(row)
        n_cases.append(int(y[sel].sum()))
    names = [g["population"] for g in groups]
    ref, absent, absent_names = reference_sizes(names, [g["n"] for g in groups], reference)
    masked = suppressed_groups([g["n"] for g in groups], n_cases, ref, absent, names, absent_names)
    shown = [g for g, (why, _) in zip(groups, masked, strict=True) if why is None]
    diff = {m: (float(np.nanmax([g[m] for g in shown]) - np.nanmin([g[m] for g in shown])) if len(shown) >= 2
                else float("nan")) for m in ("auroc", "accuracy", "prevalence")}
    return groups, diff


# ------------------------------------------------------------------------------------------ ancestry model


def ancestry_strata(population: np.ndarray, pcs: np.ndarray, n_bins: int, seed: int) -> tuple[np.ndarray, str]:
    """Strata [n] (str) and where they came from: "labels", "pc_bins" or "none".

    Population labels with two or more levels are the strata. Otherwise (labels absent, one label) the
    samples are binned by k-means on the genotype PCs (n_bins clusters, at most n / 20), so a cohort
    without labels still gets ancestry strata; the bins do not depend on the order of the samples.
    """
    population = np.asarray(population).astype(str)
    if np.unique(population).size >= 2:
        return population, "labels"
    from sklearn.cluster import KMeans

    k = int(max(1, min(n_bins, population.size // 20)))
    if k < 2:  # too few samples to bin: one stratum, the PCs alone carry ancestry
        return population, "none"
    pcs = np.asarray(pcs, dtype=np.float64).reshape(population.size, -1)
    # k-means' seeded starts pick rows by index, so the input order would change the partition (reordering
    # samples.tsv moved 1-96 of the demo's 300 samples between bins): it sees the rows sorted by PC1, PC2, ...
    canonical = np.lexsort(pcs.T[::-1])
    lab = np.empty(population.size, dtype=np.int64)
    lab[canonical] = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(pcs[canonical])
    # name bins by their order along PC1 so the names do not depend on k-means' arbitrary numbering
    order = np.argsort(np.argsort([pcs[lab == c, 0].mean() for c in range(k)]))
    return np.array([f"pc_bin{order[c] + 1}" for c in lab]), "pc_bins"


def _standardise_columns(M: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to sd 1; constant columns dropped."""
    M = np.asarray(M, dtype=np.float64).reshape(M.shape[0], -1)
    sd = M.std(axis=0)
    keep = sd > 1e-12
    return (M[:, keep] - M[:, keep].mean(axis=0)) / sd[keep]


def nuisance_design(strata: np.ndarray, pcs: np.ndarray, covariates: np.ndarray | None = None) -> dict:
    """Ancestry and covariate columns of the nuisance model (no intercept), each standardised.

    Returns {"ancestry": [n, a] (stratum dummies against the first stratum, then PCs),
    "covariates": [n, c]}.
    """
    strata = np.asarray(strata).astype(str)
    levels = np.unique(strata)
    dummies = (strata[:, None] == levels[None, 1:]).astype(np.float64)
    anc = _standardise_columns(np.hstack([dummies, np.asarray(pcs, dtype=np.float64).reshape(strata.size, -1)]))
    cov = (_standardise_columns(covariates) if covariates is not None and np.size(covariates)
           else np.zeros((strata.size, 0)))
    return {"ancestry": anc, "covariates": cov}


def logistic_many(D: np.ndarray, Y: np.ndarray, penalty: float = 1e-3, max_iter: int = 50) -> dict:
    """Penalised logistic regressions of many responses, Newton with step-halving.

    D: design [n, p] shared or [B, n, p] per response, without intercept (one is added, unpenalised);
    Y: {0,1} [B, n]. The L2 penalty `penalty` on the other coefficients keeps fits finite under
    separation (a stratum of cases only). Returns {"beta" [B, 1 + p], "loglik" [B] (unpenalised),
    "prob" [B, n]}.
    """
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    B, n = Y.shape
    D = np.asarray(D, dtype=np.float64)
    D = np.broadcast_to(D, (B, *D.shape)) if D.ndim == 2 else D
    D = np.concatenate([np.ones((B, n, 1)), D], axis=2)
    p = D.shape[2]
    pen = np.full(p, penalty)
    pen[0] = 0.0
    beta = np.zeros((B, p))
    ybar = Y.mean(axis=1).clip(1e-6, 1 - 1e-6)
    beta[:, 0] = np.log(ybar / (1 - ybar))

    def objective(b):
        eta = np.matmul(D, b[..., None])[..., 0]
        ll = (Y * eta - np.logaddexp(0.0, eta)).sum(axis=1)
        return ll - 0.5 * (pen * b**2).sum(axis=1), ll, eta

    obj, ll, eta = objective(beta)
    for _ in range(max_iter):
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1 - mu)
        Dt = D.transpose(0, 2, 1)
        grad = np.matmul(Dt, (Y - mu)[..., None])[..., 0] - pen * beta
        hess = np.matmul(Dt * w[:, None, :], D) + np.diag(pen + 1e-10)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        t = np.ones(B)
        for _ in range(20):  # halve steps that would lower the penalised likelihood
            new = beta + t[:, None] * step
            new_obj, new_ll, new_eta = objective(new)
            worse = new_obj < obj - 1e-12
            if not worse.any():
                break
            t = np.where(worse, t / 2, t)
        beta, obj, ll, eta = new, new_obj, new_ll, new_eta
        if np.max(np.abs(t[:, None] * step)) < 1e-8:
            break
    return {"beta": beta, "loglik": ll, "prob": 1.0 / (1.0 + np.exp(-eta))}


def lr_test(y: np.ndarray, reduced: np.ndarray, extra: np.ndarray) -> tuple[float, int]:
    """Analytic likelihood-ratio p (chi-square) of columns `extra` [n, e] added to `reduced` [n, r]; and df."""
    if extra.shape[1] == 0:
        return float("nan"), 0
    full = np.hstack([reduced, extra])
    df = int(np.linalg.matrix_rank(np.hstack([np.ones((y.size, 1)), full]))
             - np.linalg.matrix_rank(np.hstack([np.ones((y.size, 1)), reduced])))
    if df == 0:
        return float("nan"), 0
    ll0 = logistic_many(reduced, y[None])["loglik"][0]
    ll1 = logistic_many(full, y[None])["loglik"][0]
    return float(stats.chi2.sf(max(2 * (ll1 - ll0), 0.0), df)), df


# ------------------------------------------------------------------------------------------ ridge probe


@dataclass
class RidgeProbe:
    """Leave-one-out ridge probes of any number of responses on one embedding matrix.

    Built from X [n, d]: standardised, centred and decomposed once (U [n, r], sv [r]); `loo_scores`
    then costs O(n r) per response and penalty.
    """

    U: np.ndarray
    sv2: np.ndarray
    n: int

    @classmethod
    def from_embeddings(cls, X: np.ndarray) -> RidgeProbe:
        Xs = _standardise_columns(X)
        if Xs.shape[1] == 0:
            return cls(U=np.zeros((X.shape[0], 0)), sv2=np.zeros(0), n=X.shape[0])
        U, sv, _ = np.linalg.svd(Xs, full_matrices=False)
        keep = sv > sv[0] * 1e-10
        return cls(U=U[:, keep], sv2=sv[keep] ** 2, n=X.shape[0])

    def loo_scores(self, Y: np.ndarray, grid: tuple[float, ...] = RIDGE_GRID) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out probe scores [B, n] of responses Y [B, n] and the penalty [B] (units of n) chosen
        for each response by its own leave-one-out squared error.

        The response is centred by its full-sample mean (a constant, so no ranking leaks through it) and
        the ridge has no intercept; score_i is the exact prediction for row i of the ridge fitted without
        row i (hat-matrix identity). An intercept re-estimated without row i would give every score a
        -y_i / (n - 1) term: a probe with no signal would then rank cases below controls (AUROC << 0.5).
        """
        Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
        Yc = Y - Y.mean(axis=1, keepdims=True)
        proj = Yc @ self.U  # [B, r]
        best_err = np.full(Y.shape[0], np.inf)
        best = np.zeros_like(Yc)
        chosen = np.full(Y.shape[0], np.nan)
        for lam in grid:
            shrink = self.sv2 / (self.sv2 + lam * self.n)  # [r]
            fitted = (proj * shrink) @ self.U.T
            lev = (self.U**2) @ shrink  # [n]
            resid = (Yc - fitted) / (1.0 - lev)
            err = (resid**2).mean(axis=1)
            better = err < best_err
            best[better], best_err[better], chosen[better] = (Yc - resid)[better], err[better], lam
        return best, chosen


def signed_root_lr(Y: np.ndarray, S: np.ndarray, nuisance: np.ndarray, reduced: dict | None = None) -> np.ndarray:
    """Signed root likelihood-ratio statistics [B] of score S[b] in logistic y[b] ~ 1 + nuisance + S[b].

    Y, S [B, n]; nuisance [n, q] (q may be 0); reduced: `logistic_many(nuisance, Y)` when already fitted.
    The sign is that of S's coefficient, so a probe that predicts the wrong way round scores low.
    """
    Y = np.atleast_2d(Y)
    S = np.atleast_2d(S)
    B, n = Y.shape
    sd = S.std(axis=1, keepdims=True)
    ok = sd[:, 0] > 1e-12
    Sz = np.where(ok[:, None], (S - S.mean(axis=1, keepdims=True)) / np.where(sd > 1e-12, sd, 1.0), 0.0)
    reduced = logistic_many(nuisance, Y) if reduced is None else reduced
    full_design = np.concatenate([np.broadcast_to(nuisance, (B, *nuisance.shape)), Sz[..., None]], axis=2)
    full = logistic_many(full_design, Y)
    lr = np.clip(2.0 * (full["loglik"] - reduced["loglik"]), 0.0, None)
    out = np.sign(full["beta"][:, -1]) * np.sqrt(lr)
    return np.where(ok, out, 0.0)


#: the probes whose statistics `within_statistic` maximises: fitted to the ancestry-model residual, and to y
WITHIN_PROBES = ("residual", "phenotype")
#: the cross-validated probes whose within-ancestry AUROC the effect size takes the larger of
WITHIN_AUROC_PROBES = ("phenotype", "ancestry_residualised")


def within_statistics(Y: np.ndarray, probe: RidgeProbe, nuisance: np.ndarray,
                      probes: tuple[str, ...] = WITHIN_PROBES, reduced: dict | None = None,
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{probe name: (signed root LR statistics [B], penalties [B])} of responses Y [B, n] for each probe.

    "residual": the probe is fitted to y - p(y | nuisance), the residual of the ancestry (+ covariate)
    model: under strong ancestry risk a probe fitted to y spends itself on the ancestry direction that the
    test then conditions away, and misses a weaker within-ancestry effect. "phenotype": fitted to y: when
    the causal allele's frequency differs between populations, the between-population part of y points
    the probe at the causal direction, which the residual probe cannot use. Each score enters
    `signed_root_lr` against the same nuisance.
    """
    Y = np.atleast_2d(Y)
    reduced = logistic_many(nuisance, Y) if reduced is None else reduced
    out = {}
    for name in probes:
        target = Y - reduced["prob"] if name == "residual" else Y
        S, lam = probe.loo_scores(target)
        out[name] = (signed_root_lr(Y, S, nuisance, reduced=reduced), lam)
    return out


def within_statistic(Y: np.ndarray, probe: RidgeProbe, nuisance: np.ndarray,
                     probes: tuple[str, ...] = WITHIN_PROBES, reduced: dict | None = None) -> np.ndarray:
    """The within-ancestry statistic [B] of responses Y [B, n]: the largest of `within_statistics`.

    A maximum over probes is one statistic of (y, X, strata); since every null replicate recomputes it
    with both probes refitted, a within-strata permutation or parametric bootstrap null stays exact, and
    the test has the power of whichever probe suits the data.
    """
    return np.max(np.stack([t for t, _ in within_statistics(Y, probe, nuisance, probes, reduced).values()]), axis=0)


def within_components(Y: np.ndarray, probe: RidgeProbe, nuisance: np.ndarray,
                      directions: VariantDirections | None,
                      probes: tuple[str, ...] = WITHIN_PROBES) -> dict[str, np.ndarray]:
    """The within-ancestry test's components for responses Y [B, n], sharing one fit of y ~ nuisance:
    "probe": `within_statistic` [B]; with directions (`interp.variant_scan.variant_directions`) also
    "scan": the largest score |z| over the variant directions [B], "scan_z": it on the scale of one z
    (`scan_z`, Li-Ji effective number of directions) and "scan_variant": the direction that gave it [B]."""
    Y = np.atleast_2d(Y)
    reduced = logistic_many(nuisance, Y)
    out = {"probe": within_statistic(Y, probe, nuisance, probes, reduced)}
    if directions is not None:
        out["scan"], out["scan_variant"] = scan_statistics(Y, reduced["prob"], directions.S, nuisance)
        out["scan_z"] = scan_z(out["scan"], directions.m_eff)
    return out


@dataclass
class CombinedWithin:
    """The within-ancestry statistic with the variant scan: max over the components "probe" and "scan_z" of
    (component - mean) / sd, mean and sd from a calibration batch of null replicates drawn apart from the
    test's (so, given the batch, the statistic is a fixed function of y and the Monte Carlo p stays exact).
    Standardising puts both components on one scale, so neither dominates the maximum under the null."""

    mean: dict[str, float]
    sd: dict[str, float]

    @classmethod
    def calibrate(cls, comps: dict[str, np.ndarray]) -> CombinedWithin:
        keys = ("probe", "scan_z")
        return cls(mean={k: float(np.mean(comps[k])) for k in keys},
                   sd={k: float(max(np.std(comps[k], ddof=1), 1e-6)) for k in keys})

    def __call__(self, comps: dict[str, np.ndarray]) -> np.ndarray:
        return np.max(np.stack([(comps[k] - self.mean[k]) / self.sd[k] for k in self.mean]), axis=0)


# ------------------------------------------------------------------------------------------ Monte Carlo


#: null replicates drawn and evaluated at once inside a round of `sequential_mc_p` (memory: MAX_DRAW x n x design)
MAX_DRAW = 256


def sequential_mc_p(observed: float, draw: Callable[[int], np.ndarray], h: int, b_max: int,
                    first_round: int = 64) -> tuple[float, int, int]:
    """Sequential Monte Carlo p-value (Besag & Clifford 1991) for "statistic >= observed".

    draw(m) returns m null statistics. Rounds of first_round, 2 x first_round, ... replicates; stops at
    the replicate that brings the h-th exceedance (p = h / L, L replicates used) or at b_max
    (p = (1 + exceedances) / (1 + b_max)). Returns (p, replicates used, exceedances).
    """
    if not np.isfinite(observed):
        return 1.0, 0, 0
    tol = 1e-9 * max(1.0, abs(observed))
    exceed, used, m = 0, 0, first_round
    while used < b_max:
        size = min(m, b_max - used)
        # drawn MAX_DRAW at a time: a round of 2,048 replicates held B x n x design arrays at once (3.2 GB at
        # n = 5,000); the draws are sequential in their generators, so the statistics are the same
        t = np.concatenate([np.asarray(draw(min(MAX_DRAW, size - lo))) for lo in range(0, size, MAX_DRAW)])
        cum = exceed + np.cumsum(t >= observed - tol)
        hit = np.flatnonzero(cum >= h)
        if hit.size:
            used += int(hit[0]) + 1
            return h / used, used, h
        exceed, used, m = int(cum[-1]), used + t.size, m * 2
    return (1 + exceed) / (1 + used), used, exceed


def null_replicates_needed(n_verdicts: int, alpha: float, cap: int, margin: int = 4) -> int:
    """Replicates B so that a Monte Carlo p of (1 + k) / (1 + B) with k < margin exceedances reaches the
    strictest Holm level alpha / n_verdicts; at most cap, at least 99."""
    need = int(math.ceil(margin * max(n_verdicts, 1) / alpha)) - 1
    return int(max(99, min(cap, need)))


def floor_level(alpha: float, n_verdicts: int, method: str) -> float:
    """The largest raw p with which some verdict can still pass after `adjust` across n_verdicts: alpha / n under
    Holm (the smallest p alone), alpha under BH (every p at the floor adjusts to itself)."""
    return alpha if method == "bh" else alpha / max(n_verdicts, 1)


def adjust(p: np.ndarray, method: str) -> np.ndarray:
    if method == "holm":
        return holm(p)
    if method == "bh":
        return benjamini_hochberg(p)
    raise InputError(f"audit.multiplicity {method!r}: expected 'holm' or 'bh'")


# ------------------------------------------------------------------------------------------ effect sizes


def _cell_u(y: np.ndarray, s: np.ndarray, cells: np.ndarray) -> tuple[list, float, float]:
    """Per cell with at least one case and one control: (name, n1, n0, auroc); pooled U and n1*n0."""
    rows, u, pairs = [], 0.0, 0.0
    for g in np.unique(cells):
        sel = cells == g
        n1 = int(y[sel].sum())
        n0 = int(sel.sum()) - n1
        if n1 < 1 or n0 < 1:
            continue
        a = float(auroc(y[sel], s[sel]))
        rows.append((g, n1, n0, a))
        u += a * n1 * n0
        pairs += n1 * n0
    return rows, u, pairs


def within_auroc(y: np.ndarray, s: np.ndarray, strata: np.ndarray, pcs: np.ndarray, n_boot: int,
                 rng: np.random.Generator, fold: np.ndarray | None = None) -> dict:
    """Within-ancestry AUROC of out-of-fold score s [n]: P(case scores above a control of the same stratum
    whose score came from the same cross-validation fold).

    fold [n] (int, default one fold): the fold whose model scored each row. Pairs are only formed inside a
    stratum x fold cell: scores of different folds come from different models, and a fold whose test rows
    hold one more case of a stratum trained on one fewer, which shifts all its scores of that stratum
    together, so pairs across folds bias the estimate below 0.5 under the null (about -0.01 at n = 1,000).
    Inside each fold s is residualised on strata + PCs (OLS), so continuous ancestry inside a stratum does
    not count. The pooled estimate weights cells by n_cases x n_controls (a stratified Mann-Whitney U);
    its 95% CI is from a bootstrap that resamples inside each cell. NaN when no cell has both classes.
    """
    fold = np.zeros(y.size, dtype=np.int64) if fold is None else np.asarray(fold)
    strata = np.asarray(strata).astype(str)
    r = np.full(y.size, np.nan)
    for f in np.unique(fold):
        sel = fold == f
        D = np.hstack([(strata[sel, None] == np.unique(strata[sel])[None, :]).astype(np.float64), pcs[sel]])
        r[sel] = s[sel] - D @ np.linalg.lstsq(D, s[sel], rcond=None)[0]
    cells = np.char.add(np.char.add(strata, "|"), fold.astype(str))
    rows, u, pairs = _cell_u(y, r, cells)
    out = {"within_auroc": u / pairs if pairs else float("nan"), "within_auroc_ci_low": float("nan"),
           "within_auroc_ci_high": float("nan"),
           "n_strata_used": len({name.rsplit("|", 1)[0] for name, *_ in rows})}
    if not pairs or n_boot < 2:
        return out
    boot_u, boot_pairs = np.zeros(n_boot), np.zeros(n_boot)
    for name, _, _, _ in rows:
        idx = np.flatnonzero(cells == name)
        take = idx[rng.integers(0, idx.size, size=(n_boot, idx.size))]
        yb = y[take]
        a = np.asarray(auroc(yb, r[take]))
        nb1 = yb.sum(axis=1)
        w = nb1 * (idx.size - nb1)
        boot_u += np.where(np.isfinite(a), a * w, 0.0)
        boot_pairs += np.where(np.isfinite(a), w, 0.0)
    vals = boot_u / np.where(boot_pairs > 0, boot_pairs, np.nan)
    vals = vals[np.isfinite(vals)]
    if vals.size:
        out["within_auroc_ci_low"], out["within_auroc_ci_high"] = (float(v) for v in np.quantile(vals, [0.025, 0.975]))
    return out


def auroc_with_ci(y: np.ndarray, score: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """AUROC of score [n] for y [n] with a 95% percentile bootstrap CI (NaN CI when n_boot < 2)."""
    a = float(auroc(y, score))
    if n_boot < 2:
        return a, float("nan"), float("nan")
    idx = rng.integers(0, y.size, size=(n_boot, y.size))
    b = np.asarray(auroc(y[idx], score[idx]))
    b = b[np.isfinite(b)]
    lo, hi = np.quantile(b, [0.025, 0.975]) if b.size else (np.nan, np.nan)
    return a, float(lo), float(hi)


def _cv_logistic_scores(D: np.ndarray, y: np.ndarray, folds: Folds) -> np.ndarray:
    """Out-of-fold probabilities [n] of a (lightly penalised) logistic regression of y on D [n, p]."""
    out = np.full(y.size, np.nan)
    for train, test in folds:
        if np.unique(y[train]).size < 2:
            continue
        beta = logistic_many(D[train], y[None, train])["beta"][0]
        out[test] = 1.0 / (1.0 + np.exp(-(beta[0] + D[test] @ beta[1:])))
    return out


def descriptor_small_cell(x: np.ndarray, y: np.ndarray) -> str | None:
    """Why a descriptor x [n] is not reported against the phenotype y [n] (0/1), or None when it is.

    A descriptor that sets a few samples apart (e.g. `missing_rate`, 0 but for the 1-4 samples with missing
    calls) splits the cohort into those at its most common value and the others. Its AUROC and correlation then
    count the cases among the others, as a population's prevalence would: with those few (1-4), or their 1-4
    cases or controls, that tells people's status. `small_cell` of that group (and of those at the common value),
    where the common value is shared by at least MIN_REPORTED_GROUP samples (a continuous descriptor has no such
    group)."""
    values, counts = np.unique(x, return_counts=True)
    at_mode = x == values[np.argmax(counts)]
    if at_mode.sum() < MIN_REPORTED_GROUP:
        return None
    y = np.asarray(y, dtype=np.float64)
    for where, group in (("off", ~at_mode), ("at", at_mode)):
        if (why := small_cell(int(group.sum()), int(y[group].sum()))) is not None:
            return f"{why} among the samples {where} its most common value"
    return None


def descriptor_report(values: np.ndarray, y: np.ndarray, strata: np.ndarray, pcs: np.ndarray) -> dict:
    """A genotype-derived descriptor (e.g. haplotype GC content): its association with the phenotype
    (Pearson r, p; AUROC) and with ancestry (R^2 on strata + PCs and its F-test p). Never adjusted for.
    NaN statistics with `small_cell` where the descriptor sets apart a group of 1-4 people, cases or controls
    (`descriptor_small_cell`): its ancestry R^2 too, which would place those few among the populations."""
    x = np.asarray(values, dtype=np.float64)
    out = {"kind": "descriptor", "adjusted_for": False}
    nan = {"pearson_r": float("nan"), "p_value": float("nan"), "ancestry_r2": float("nan"), "ancestry_p": float("nan")}
    if not np.all(np.isfinite(x)) or x.std() == 0:
        return {**out, **nan}
    if (why := descriptor_small_cell(x, y)) is not None:
        return {**out, **nan, "small_cell": why}
    r, p = stats.pearsonr(x, y)
    anc = nuisance_design(strata, pcs)["ancestry"]
    D = _design(anc)
    ssr = float(((x - D @ np.linalg.lstsq(D, x, rcond=None)[0]) ** 2).sum())
    sst = float(((x - x.mean()) ** 2).sum())
    k, n = anc.shape[1], x.size
    r2 = 1 - ssr / sst
    f = (r2 / max(k, 1)) / max((1 - r2) / max(n - k - 1, 1), 1e-300)
    return {**out, "pearson_r": float(r), "p_value": float(p), "auroc": float(auroc(y, x)),
            "ancestry_r2": float(r2), "ancestry_p": float(stats.f.sf(f, k, n - k - 1)) if k else float("nan")}


# ------------------------------------------------------------------------------------------ audit


def audit_phenotype(
    X: np.ndarray,
    y: np.ndarray,
    population: np.ndarray,
    pcs: np.ndarray,
    cfg: AuditConfig,
    covariates: CovariateDesign | None = None,
    descriptors: dict[str, np.ndarray] | None = None,
    max_null_replicates: int | None = None,
    variant_dosage: np.ndarray | None = None,
    variant_ids: list[str] | None = None,
    directions_cache: dict | None = None,
) -> dict:
    """Statistics of one (phenotype, model, layer) audit: raw p-values, effect sizes, read-outs; no verdict.

    X [n, d] sample embeddings; y [n] binary phenotype, 0/1 as numbers or text (NaN, None, "NA": left out,
    counted in n_missing_phenotype); population [n] labels ("all" or one value when there are none; a sample
    with a phenotype and no label is an InputError); pcs [n, k] genotype PCs from
    ancestry markers; covariates: `interp.covariates.covariate_design` output (entering the nuisance
    model); descriptors {name: [n]} reported only. max_null_replicates: B of the Monte Carlo tests
    (default cfg.max_null_replicates; the stage passes `null_replicates_needed`).
    variant_dosage [n, V] (NaN missing; an array or a lazy `interp.cohort.genotype_file.DosageColumns`, read a
    block at a time) and variant_ids [V]: the studied region's genotypes, rows as X's;
    with cfg.variant_scan the within-ancestry test adds the variant-direction scan (`within_components`,
    `CombinedWithin`); without them it is the probe statistic alone. directions_cache: a dict shared by
    calls on the same X and variant_dosage (one table's phenotypes): the scan's directions depend only on
    which samples have a phenotype, so they are computed once per such set.
    `assign_verdicts` adds the multiplicity-adjusted p-values and the verdict.
    """
    y_all, all_population, all_pcs = y, np.asarray(population), pcs
    X, y, population, pcs, cov, desc, n_missing = _check_inputs(X, y_all, population, pcs, covariates, descriptors)
    keep = ~np.isnan(_phenotype_values(np.asarray(y_all).reshape(-1)))
    all_pcs = np.asarray(all_pcs, dtype=np.float64).reshape(keep.size, -1)
    n = X.shape[0]
    b_max = int(max_null_replicates or cfg.max_null_replicates)
    rng = np.random.default_rng(cfg.seed)
    # every group's size in the whole cohort, samples without a phenotype value included: a phenotype's group
    # size that is the cohort's minus 1-4 would count those left out (`suppressed_groups`' reference)
    # (samples without a label form the cohort table's group NO_LABEL: part of the partition its masking reads)
    labels, label_counts = np.unique([NO_LABEL if is_missing(v) else str(v) for v in all_population],
                                     return_counts=True)
    group_sizes: dict[str, dict[str, int]] = {"population": dict(zip(labels.tolist(), label_counts.tolist(), strict=True))}
    if np.unique(population).size >= 2:
        strata, strata_source = ancestry_strata(population, pcs, cfg.ancestry_bins, cfg.seed)
    else:
        # PC bins of the whole cohort, the same for every phenotype: bins fitted to each phenotype's own samples
        # differ by those left out, whose count per bin two phenotypes' tables would then give
        all_strata, strata_source = ancestry_strata(np.array(["all"] * all_pcs.shape[0]), all_pcs,
                                                    cfg.ancestry_bins, cfg.seed)
        strata = all_strata[keep] if strata_source == "pc_bins" else population
        if strata_source == "pc_bins":
            bins, bin_counts = np.unique(all_strata, return_counts=True)
            group_sizes["stratum"] = dict(zip(bins.tolist(), bin_counts.tolist(), strict=True))
    nuis = nuisance_design(strata, pcs, cov)
    A = np.hstack([nuis["ancestry"], nuis["covariates"]])
    if variant_dosage is not None:
        if not hasattr(variant_dosage, "ndim"):  # an array or a lazy view is kept as given: read a chunk at a time
            variant_dosage = np.asarray(variant_dosage)
        if variant_dosage.ndim != 2 or variant_dosage.shape[0] != keep.size:
            raise InputError(f"audit genotypes: a dosage matrix of shape {variant_dosage.shape} but the embeddings "
                             f"have {keep.size} samples; give one row per sample, in the same order")
        if variant_ids is None or len(variant_ids) != variant_dosage.shape[1]:
            raise InputError("audit genotypes: one variant ID per dosage column is needed")
    out: dict = {"n_samples": n, "n_cases": int(y.sum()), "n_missing_phenotype": n_missing,
                 "strata_source": strata_source, "n_strata": int(np.unique(strata).size)}

    # --- the probe score and the three tests
    probe = RidgeProbe.from_embeddings(X)
    s_obs, lam = probe.loo_scores(y[None].astype(np.float64))
    out["probe_penalty"] = float(lam[0])
    observed = within_statistics(y[None].astype(np.float64), probe, A, WITHIN_PROBES)
    t_within = max(float(t[0]) for t, _ in observed.values())
    for name, (t, lam) in observed.items():  # flat scalars, so they reach the audit table
        out[f"within_statistic_{name}_probe"], out[f"within_penalty_{name}_probe"] = float(t[0]), float(lam[0])
    out["within_probe_penalty"] = float(observed[WITHIN_PROBES[0]][1][0])
    t_signal = float(signed_root_lr(y[None], s_obs, np.zeros((n, 0)))[0])
    out["within_statistic"], out["signal_statistic"] = t_within, t_signal

    nuis_fit = logistic_many(A, y[None])
    p_hat = nuis_fit["prob"][0]
    null_rng = np.random.default_rng([cfg.seed, 1])
    # permuting inside strata would also break the phenotype's link to covariates: with covariates, bootstrap;
    # and its link to ancestry inside a label (admixed individuals under one label): where the PCs add to the
    # labels in the ancestry model of y, the permuted null is too narrow (false PASS), so bootstrap
    n_dummies = int(np.unique(strata).size) - 1
    p_pcs = lr_test(y, nuis["ancestry"][:, :n_dummies], nuis["ancestry"][:, n_dummies:])[0]
    out["p_pcs_beyond_strata"] = p_pcs
    exact = (strata_source == "labels" and nuis["covariates"].shape[1] == 0
             and not p_pcs < AUTO_PERMUTE_MIN_P)  # NaN (no PC adds a dimension): the labels are all of A
    null = cfg.null if cfg.null != "auto" else ("permute" if exact else "bootstrap")
    if null not in ("bootstrap", "permute"):
        raise InputError(f"audit.null {cfg.null!r}: expected 'auto', 'bootstrap' or 'permute'")

    def null_y(m: int, gen: np.random.Generator) -> np.ndarray:
        if null == "bootstrap":
            return (gen.random((m, n)) < p_hat).astype(np.float64)
        return np.stack([permute_within(y, strata, gen) for _ in range(m)]).astype(np.float64)

    directions = None
    if variant_dosage is not None and cfg.variant_scan:
        cache = directions_cache if directions_cache is not None else {}
        key = (np.packbits(keep).tobytes(), cfg.max_scan_variants)
        if key not in cache:
            cache[key] = variant_directions(probe, variant_dosage[keep], list(variant_ids), cfg.max_scan_variants,
                                            min_carriers=MIN_REPORTED_GROUP)
        directions = cache[key]
    scan_keys = ("variant_scan_statistic", "variant_scan_z", "variant_scan_variant", "variant_scan_r2",
                 "variant_scan_n_variants", "variant_scan_n_candidates", "variant_scan_m_eff",
                 "within_probe_null_mean", "within_probe_null_sd", "variant_scan_null_mean", "variant_scan_null_sd")
    out.update(dict.fromkeys(scan_keys))
    if directions is None:
        t_test = t_within
        out["within_test"] = "probe"

        def draw_within(m: int) -> np.ndarray:
            return within_statistic(null_y(m, null_rng), probe, A, WITHIN_PROBES)
    else:
        # the calibration batch has its own stream: the test's replicates stay independent of the combination
        combine = CombinedWithin.calibrate(within_components(
            null_y(max(cfg.first_round, 32), np.random.default_rng([cfg.seed, 4])), probe, A, directions))
        obs = within_components(y[None].astype(np.float64), probe, A, directions)
        t_test = float(combine(obs)[0])
        hit = int(obs["scan_variant"][0])
        out.update({"within_test": "probe + variant scan", "variant_scan_statistic": float(obs["scan"][0]),
                    "variant_scan_z": float(obs["scan_z"][0]), "variant_scan_variant": directions.ids[hit],
                    "variant_scan_r2": float(directions.r2[hit]), "variant_scan_n_variants": len(directions.ids),
                    "variant_scan_n_candidates": directions.n_candidates, "variant_scan_m_eff": directions.m_eff,
                    "within_probe_null_mean": combine.mean["probe"], "within_probe_null_sd": combine.sd["probe"],
                    "variant_scan_null_mean": combine.mean["scan_z"], "variant_scan_null_sd": combine.sd["scan_z"]})

        def draw_within(m: int) -> np.ndarray:
            return combine(within_components(null_y(m, null_rng), probe, A, directions))
    out["within_combined_statistic"] = t_test
    sig_rng = np.random.default_rng([cfg.seed, 2])

    def permuted(m: int, gen: np.random.Generator) -> np.ndarray:
        return np.stack([gen.permutation(y) for _ in range(m)]).astype(np.float64)

    if directions is None:
        def draw_signal(m: int) -> np.ndarray:
            Y = permuted(m, sig_rng)
            return signed_root_lr(Y, probe.loo_scores(Y)[0], np.zeros((n, 0)))
    else:
        # the same statistic as the within test, without ancestry: the probe and the variant scan, each
        # standardised on its own calibration batch of permutations (until the thirty-fourth session the probe
        # alone, so a causal variant the scan found within ancestry could be called "nothing to explain")
        # (without ancestry the residual probe is the phenotype probe: y less its mean; one is computed)
        no_ancestry, one_probe = np.zeros((n, 0)), ("phenotype",)
        sig_combine = CombinedWithin.calibrate(within_components(
            permuted(max(cfg.first_round, 32), np.random.default_rng([cfg.seed, 5])), probe, no_ancestry,
            directions, one_probe))
        t_signal = float(sig_combine(within_components(y[None].astype(np.float64), probe, no_ancestry,
                                                       directions, one_probe))[0])
        out["signal_statistic"] = t_signal

        def draw_signal(m: int) -> np.ndarray:
            return sig_combine(within_components(permuted(m, sig_rng), probe, no_ancestry, directions, one_probe))

    h = cfg.stop_exceedances
    out["p_within"], out["n_null_replicates"], out["n_null_exceedances"] = sequential_mc_p(
        t_test, draw_within, h, b_max, cfg.first_round)
    out["p_signal"], out["n_signal_replicates"], _ = sequential_mc_p(t_signal, draw_signal, h, b_max, cfg.first_round)
    out["n_null_replicates_max"] = b_max  # B: the smallest attainable p is 1 / (B + 1)
    out["null_method"] = ("parametric bootstrap from y ~ strata + PCs + covariates" if null == "bootstrap"
                          else "phenotype permuted inside strata")
    out["permutation_p"] = out["p_within"]  # report.json name of the within-ancestry p

    # --- does ancestry (or a covariate) explain the phenotype?
    cov_cols = nuis["covariates"]
    out["p_ancestry"], out["df_ancestry"] = lr_test(y, cov_cols, nuis["ancestry"])
    out["p_covariates"], out["df_covariates"] = lr_test(y, nuis["ancestry"], cov_cols)
    # both together, for covariates collinear with ancestry (a site that is a population): each adds nothing
    # beyond the other, so neither test above can be significant, however strongly the two explain y
    out["p_ancestry_and_covariates"], out["df_ancestry_and_covariates"] = (
        lr_test(y, np.zeros((y.size, 0)), A) if cov_cols.shape[1] else (float("nan"), 0))
    ybar = y.mean()
    out["effective_n_within"] = float((p_hat * (1 - p_hat)).sum() / (ybar * (1 - ybar)))
    counts = [(int(y[strata == g].sum()), int((strata == g).sum())) for g in np.unique(strata)]
    out["n_minority_within"] = int(sum(min(c, t - c) for c, t in counts))

    # --- effect sizes with intervals, from cross-validated L2 logistic probes (the report read-outs)
    random_folds = stratified_folds(y, cfg.n_folds, cfg.seed)
    readouts, oof = _logistic_readouts(X, y, population, strata, pcs, cfg, rng, random_folds)
    out.update(readouts)
    eff_rng = np.random.default_rng([cfg.seed, 3])
    # folds stratified by stratum x phenotype keep every training fold's per-stratum prevalence, so a
    # probe that learns stratum means cannot score a held-out case below its stratum's controls
    by_probe = {}
    for name, key in (("phenotype", "strat"), ("ancestry_residualised", "strat_within")):
        if name not in WITHIN_AUROC_PROBES:
            continue
        tested = oof[f"{key}_fold"] >= 0
        by_probe[name] = within_auroc(y[tested], oof[key][tested], strata[tested], pcs[tested], cfg.bootstrap,
                                      eff_rng, fold=oof[f"{key}_fold"][tested])
    for name, est in by_probe.items():
        out.update({f"within_auroc_{name}_probe{k.removeprefix('within_auroc')}": v for k, v in est.items()
                    if k.startswith("within_auroc")})
    # the headline (and the FAIL rule's bound) is the probe that finds more within-ancestry signal
    best = max(by_probe, key=lambda k: np.nan_to_num(by_probe[k]["within_auroc"], nan=-np.inf))
    out.update(by_probe[best])
    out["within_auroc_probe"] = best
    ok = np.isfinite(oof["random"])
    out["auroc_probe"], out["auroc_probe_ci_low"], out["auroc_probe_ci_high"] = auroc_with_ci(
        y[ok], oof["random"][ok], cfg.bootstrap, eff_rng)
    anc_score = _cv_logistic_scores(nuis["ancestry"], y, random_folds)
    ok = np.isfinite(anc_score)
    out["auroc_ancestry_only"], out["auroc_ancestry_only_ci_low"], out["auroc_ancestry_only_ci_high"] = (
        auroc_with_ci(y[ok], anc_score[ok], cfg.bootstrap, eff_rng))
    out["by_population"], out["between_group_difference"] = by_population(
        y, oof["strat"], population, cfg.bootstrap, cfg.seed, group_sizes["population"])
    if strata_source == "pc_bins":
        out["by_stratum"], _ = by_population(y, oof["strat"], strata, cfg.bootstrap, cfg.seed,
                                             group_sizes.get("stratum"))
    out["group_sizes"] = group_sizes  # the cohort's, for the report's masking (never written as such)
    # a covariate is adjusted for when one of its columns is in the model: constant among this phenotype's samples
    # (a site whose samples all lack the value), `nuisance_design` drops it, and it was reported adjusted for
    live = (set() if cov is None or not np.size(cov) else
            {c for c, sd in zip(covariates.columns, cov.std(axis=0), strict=True) if sd > 1e-12})
    out["covariates"] = {name: {**info, "adjusted_for": (any(c in live for c in info["columns"]) if "columns" in info
                                                         else True)}
                         for name, info in (covariates.info.items() if covariates is not None else [])}
    out["descriptors"] = {name: descriptor_report(v, y, strata, pcs) for name, v in desc.items()}
    out["thresholds"] = asdict(cfg) | {"max_null_replicates_used": b_max}
    return out


def _logistic_readouts(X, y, population, strata, pcs, cfg: AuditConfig, rng: np.random.Generator,
                       random_folds: Folds) -> tuple[dict, dict[str, np.ndarray]]:
    """Cross-validated L2 logistic probes (random, stratum x phenotype stratified, leave-one-population-out,
    PC-residualised inside each fold, shuffled labels) and ancestry read-outs from the embeddings.

    Returns (read-outs, {"random": out-of-fold scores [n], "strat": out-of-fold scores [n], "strat_fold": the
    fold [n] that scored each row of "strat" (-1: never tested)}).
    """
    n = X.shape[0]
    pops = np.unique(population)
    strat_folds = stratified_folds(np.char.add(np.char.add(strata, "|"), y.astype(str)), cfg.n_folds, cfg.seed + 1)
    pop_folds = stratified_folds(population, cfg.n_folds, cfg.seed + 2)
    lopo_names, lopo_folds = leave_one_group_out(population)
    shared = _Jobs()
    shared.add_folds("random", y, random_folds)
    shared.add_folds("strat", y, strat_folds)
    shared.add_folds("lopo", y, lopo_folds)
    shared.add_folds("shuffled", y[rng.permutation(n)], random_folds)
    if pops.size >= 2:
        for c in pops:
            shared.add_folds(f"pop:{c}", (population == c).astype(np.int64), pop_folds)
    res = shared.run(X, cfg)
    per_fold = _Jobs()
    per_fold.add_folds("residualised", y, random_folds, [residualise_in_fold(X, pcs, tr) for tr, _ in random_folds])
    # a probe that can only see within-ancestry variation: X residualised on strata + PCs in each training fold
    anc = nuisance_design(strata, pcs)["ancestry"]
    per_fold.add_folds("strat_within", y, strat_folds, [residualise_in_fold(X, anc, tr) for tr, _ in strat_folds])
    res.update(per_fold.run(None, cfg))
    out: dict = {}
    out["ancestry_auroc"] = (_macro_ovr_auroc({c: res.get(f"pop:{c}", []) for c in pops}, population, n)
                             if pops.size >= 2 else float("nan"))
    out["ancestry_pc_r2"] = float(np.nanmean(ridge_cv_r2(X, pcs, pop_folds, cfg.ridge_alpha)))
    out["auroc_random_cv"], out["auroc_random_cv_sd"], out["n_folds_used"] = _fold_auroc(res.get("random", []))
    out["auroc_ancestry_stratified_cv"] = _fold_auroc(res.get("strat", []))[0]
    out["auroc_lopo_by_population"] = {lopo_names[f]: float(auroc(yt, s)) for f, _, yt, s in res.get("lopo", [])}
    out["auroc_lopo_cv"] = _fold_auroc(res.get("lopo", []))[0]
    out["auroc_residualised"] = _fold_auroc(res.get("residualised", []))[0]
    out["auroc_shuffled"] = _fold_auroc(res.get("shuffled", []))[0]
    return out, {"random": _oof_scores(res.get("random", []), n), "strat": _oof_scores(res.get("strat", []), n),
                 "strat_fold": _oof_folds(res.get("strat", []), n),
                 "strat_within": _oof_scores(res.get("strat_within", []), n),
                 "strat_within_fold": _oof_folds(res.get("strat_within", []), n)}


# ------------------------------------------------------------------------------------------ verdicts


def _fmt(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3g}"


def verdict(r: dict, cfg: AuditConfig) -> tuple[str, str, str]:
    """(verdict, verdict_rule, reason) of one audit row that already has p_within_adjusted and
    p_signal_adjusted; the rules are those of the module docstring, in that order."""
    a = cfg.alpha
    pw, ps = r["p_within_adjusted"], r["p_signal_adjusted"]
    wa = (f"within-ancestry AUROC {_fmt(r['within_auroc'])} [{_fmt(r['within_auroc_ci_low'])}, "
          f"{_fmt(r['within_auroc_ci_high'])}]")
    tail = f"({r['multiplicity']})"
    if np.isfinite(pw) and pw <= a:
        scan = (f" (probe + variant scan; largest variant |z| {_fmt(r['variant_scan_statistic'])} at "
                f"{r['variant_scan_variant']})" if r.get("within_test") == "probe + variant scan" else "")
        return "PASS", "within_ancestry_signal", (
            f"signal within ancestry{scan}: p_within {_fmt(r['p_within'])}, adjusted {_fmt(pw)} <= alpha {a} {tail}; "
            f"{wa}; ancestry-only AUROC {_fmt(r['auroc_ancestry_only'])} [{_fmt(r.get('auroc_ancestry_only_ci_low'))}, "
            f"{_fmt(r.get('auroc_ancestry_only_ci_high'))}]")
    if not (np.isfinite(ps) and ps <= a):
        return "NO SIGNAL", "no_signal", (
            f"nothing to explain: p_signal {_fmt(r['p_signal'])}, adjusted {_fmt(ps)} > alpha {a} {tail}; "
            f"probe AUROC {_fmt(r['auroc_probe'])} [{_fmt(r['auroc_probe_ci_low'])}, "
            f"{_fmt(r['auroc_probe_ci_high'])}]")
    base = f"signal (p_signal adjusted {_fmt(ps)}) but none within ancestry (p_within adjusted {_fmt(pw)} > {a})"
    if not r["effective_n_within"] >= cfg.min_effective_n:  # NaN (unknown) is not enough either: never a FAIL
        return "INCONCLUSIVE", "ancestry_phenotype_collinear", (
            f"{base}; ancestry nearly determines the phenotype: effective within-ancestry n "
            f"{r['effective_n_within']:.1f} < {cfg.min_effective_n}, so the within test has little to work with")
    # np.minimum keeps a NaN probe AUROC NaN (Python's min returned the margin): then nothing is excluded
    bound = 0.5 + float(np.minimum(cfg.fail_within_margin, cfg.fail_max_within_share * (r["auroc_probe"] - 0.5)))
    small_within = bool(np.isfinite(r["within_auroc_ci_high"]) and np.isfinite(bound)
                        and r["within_auroc_ci_high"] < bound)
    wa_bound = (f"{wa}, its upper bound < {_fmt(bound)} = 0.5 + min(margin {cfg.fail_within_margin}, "
                f"{cfg.fail_max_within_share} x (probe AUROC {_fmt(r['auroc_probe'])} - 0.5))")
    pa, pc = r["p_ancestry"], r["p_covariates"]
    if small_within and np.isfinite(pa) and pa <= a:
        return "FAIL", "signal_explained_by_ancestry", (
            f"{base}; ancestry explains the phenotype (likelihood-ratio p {_fmt(pa)}, ancestry-only AUROC "
            f"{_fmt(r['auroc_ancestry_only'])} [{_fmt(r['auroc_ancestry_only_ci_low'])}, "
            f"{_fmt(r['auroc_ancestry_only_ci_high'])}]); {wa_bound}")
    if small_within and np.isfinite(pc) and pc <= a:
        return "FAIL", "signal_explained_by_covariates", (
            f"{base}; the covariates explain the phenotype (likelihood-ratio p {_fmt(pc)}); {wa_bound}")
    pj = r.get("p_ancestry_and_covariates", float("nan"))
    if small_within and np.isfinite(pj) and pj <= a:
        return "FAIL", "signal_explained_by_ancestry_and_covariates", (
            f"{base}; ancestry and the covariates together explain the phenotype (likelihood-ratio p {_fmt(pj)}), "
            f"neither beyond the other (p {_fmt(pa)}, {_fmt(pc)}): they are collinear, so which of them cannot be "
            f"told; {wa_bound}")
    return "INCONCLUSIVE", "within_effect_undetermined", (
        f"{base}; a within-ancestry effect is neither detected nor excluded: {wa} (FAIL needs its upper bound "
        f"< {_fmt(bound)} and ancestry or covariates significant: p {_fmt(pa)}, {_fmt(pc)}, together {_fmt(pj)})")


def assign_verdicts(results: list[dict], cfg: AuditConfig) -> list[dict]:
    """Adjust p_within and p_signal for multiplicity over all results of the run (cfg.multiplicity),
    then set verdict, verdict_rule, reason (and reasons, a one-element list) on each; returns results."""
    m = len(results)
    label = f"{cfg.multiplicity} over {m} verdict{'s' if m != 1 else ''}"
    pw = adjust(np.array([r["p_within"] for r in results], dtype=float), cfg.multiplicity)
    ps = adjust(np.array([r["p_signal"] for r in results], dtype=float), cfg.multiplicity)
    for r, a, b in zip(results, pw, ps, strict=True):
        r["p_within_adjusted"], r["p_signal_adjusted"], r["multiplicity"] = float(a), float(b), label
        r["verdict"], r["verdict_rule"], r["reason"] = verdict(r, cfg)
        r["reasons"] = [r["reason"]]
    return results


# ------------------------------------------------------------------------------------------ attribution


def _ssr(D: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Residual sum of squares [m] of OLS fits of every column of F [n, m] on design D [n, p]."""
    beta, *_ = np.linalg.lstsq(D, F, rcond=None)
    return ((F - D @ beta) ** 2).sum(axis=0)


def feature_attribution(
    F: np.ndarray, y: np.ndarray, pcs: np.ndarray, population: np.ndarray | None = None, alpha: float = 0.05
) -> pl.DataFrame:
    """Per-feature ancestry leakage vs phenotype signal, from OLS fits F_j ~ 1 + y + PCs.

    F [n, m] per-sample feature activations; y [n] phenotype; pcs [n, k]; population [n] optional.
    partial_r2_ancestry = 1 - SSR(1+y+PCs) / SSR(1+y): variance the PCs explain beyond the phenotype;
    partial_r2_phenotype = 1 - SSR(1+y+PCs) / SSR(1+PCs): variance the phenotype explains beyond the PCs;
    ancestry_auroc_feature = max over populations of max(AUROC, 1 - AUROC) of F_j for that population
    vs the rest (NaN without `population`). Rows in feature order, column `feature` is the index.
    Samples whose y is NaN are left out.

    A fair comparison of the two (partial R^2 of k PCs against that of one phenotype column would favour
    the PCs even for pure noise): p_ancestry is the F-test of the k PCs given the phenotype (df k, n-k-2;
    k the rank the PCs add, so a redundant column costs nothing), p_phenotype the F-test of the phenotype
    given the PCs (df 1, n-k-2), q_* their Benjamini-Hochberg
    q-values over the features, and ancestry_dominated = q_ancestry <= alpha and p_ancestry < p_phenotype
    (the ancestry association is significant and stronger, on the same scale, than the phenotype's).
    """
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2:
        raise InputError(f"feature matrix: expected [n_samples, n_features], got shape {F.shape}")
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    pcs = np.asarray(pcs, dtype=np.float64)
    pcs = pcs.reshape(pcs.shape[0], -1)
    if y.shape[0] != F.shape[0] or pcs.shape[0] != F.shape[0]:
        raise InputError(f"feature attribution: {y.shape[0]} phenotype values / {pcs.shape[0]} PC rows "
                         f"for {F.shape[0]} samples")
    keep = ~np.isnan(y[:, 0])  # samples without a phenotype are left out
    F, y, pcs = F[keep], y[keep], pcs[keep]
    if population is not None:
        population = np.asarray(population)[keep]
    ones = np.ones((F.shape[0], 1))
    ssr_full = _ssr(np.hstack([ones, y, pcs]), F)
    ssr_no_pcs = _ssr(np.hstack([ones, y]), F)
    ssr_no_y = _ssr(np.hstack([ones, pcs]), F)
    with np.errstate(invalid="ignore", divide="ignore"):
        pr2_anc = np.where(ssr_no_pcs > 0, 1.0 - ssr_full / ssr_no_pcs, np.nan)
        pr2_phe = np.where(ssr_no_y > 0, 1.0 - ssr_full / ssr_no_y, np.nan)
    anc_auc = np.full(F.shape[1], np.nan)
    if population is not None:
        population = np.asarray(population).astype(str)
        best = np.zeros(F.shape[1])
        for c in np.unique(population):
            a = auroc(population == c, F.T)  # [m], one AUROC per feature
            best = np.maximum(best, np.maximum(a, 1.0 - a))
        anc_auc = best
    # degrees of freedom from ranks, not column counts: a redundant PC column adds no freedom to either fit
    ones_y = np.hstack([ones, y])
    full_rank = np.linalg.matrix_rank(np.hstack([ones_y, pcs]))
    n, k = F.shape[0], full_rank - np.linalg.matrix_rank(ones_y)
    df_res = n - full_rank
    with np.errstate(invalid="ignore", divide="ignore"):
        f_anc = ((ssr_no_pcs - ssr_full) / k) / (ssr_full / df_res)
        f_phe = (ssr_no_y - ssr_full) / (ssr_full / df_res)
    p_anc = np.where(np.isfinite(f_anc), stats.f.sf(f_anc, k, df_res), np.nan)
    p_phe = np.where(np.isfinite(f_phe), stats.f.sf(f_phe, 1, df_res), np.nan)
    q_anc, q_phe = benjamini_hochberg(p_anc), benjamini_hochberg(p_phe)
    return pl.DataFrame({
        "feature": np.arange(F.shape[1], dtype=np.int64),
        "partial_r2_ancestry": np.clip(pr2_anc, 0.0, 1.0),
        "partial_r2_phenotype": np.clip(pr2_phe, 0.0, 1.0),
        "ancestry_auroc_feature": anc_auc,
        "p_ancestry": p_anc, "q_ancestry": q_anc, "p_phenotype": p_phe, "q_phenotype": q_phe,
        "ancestry_dominated": (q_anc <= alpha) & (p_anc < p_phe),
    })
