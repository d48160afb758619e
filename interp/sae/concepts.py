"""Honest concept labels for SAE features and, as a baseline, for the model's raw neurons.

For every unit (SAE feature, or a neuron read in either direction) and concept
(`interp.sae.concept_tracks`), "fires" means activation above a threshold. The threshold is chosen
on the validation blocks (maximal F1 among `n_thresholds` evenly spaced levels up to the unit's
validation maximum) and precision, recall, F1, lift (precision / prevalence) and AUPRC are reported
on the test blocks, as InterPLM does. A unit's candidate concept is the one of highest validation F1
among concepts with validation lift >= min_lift (else of highest validation F1). It is labelled
with it only if on test blocks: lift >= min_lift, F1 above the "always fires" baseline 2p/(1+p)
and above a random unit of the same density d, 2pd/(p+d) (p = test prevalence), at least
`min_true_positives` true positives, and precision significantly above prevalence (one-sided
binomial test on effective token counts, both divided by `design_effect`: concepts and firing come in runs
along the sequence, and a chance overlap of two runs is one piece of evidence, not one per token;
one test per unit, of its candidate concept, family-wise `alpha` over the units by the family's minimum p under
circular shifts of the concept tracks, `interp.sae.shift_null`, or Bonferroni with `n_shifts` 0); otherwise it is
"unlabelled".

A linear probe (logistic regression on standardised raw activations of a training-token sample,
threshold chosen on validation) gives, per concept, what the raw activations can do at all;
`interp.sae.concept_geometry` says whether the concept is one direction there or needs a subspace
(what one latent, a single decoder direction, could do).
Everything streams over the store chunk by chunk; memory grows with features x (concepts + lags) x
thresholds, with (features + concepts) x `n_shifts` (and per read, tokens x `n_shifts`), by 16 bytes per test
token (their spans, for `bases_seen`)
and by concepts bytes per test base (the shift null's circle; about 40 bytes per test base while it is built), not with the store (the probe uses samples of about `probe_max_tokens` per split, each split sampled at its own rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from scipy.special import betainc

from interp.config import label_shifts_problem
from interp.errors import InputError
from interp.sae.concept_geometry import best_threshold, concept_geometry
from interp.sae.concept_tracks import ConceptTracks
from interp.sae.model import SparseAutoencoder
from interp.sae.shift_null import ShiftNull, circular_layout, to_circle
from interp.sae.splits import TEST, TRAIN, VALIDATION, BlockSplit
from interp.sae.train import open_store

UNLABELLED = "unlabelled"


@dataclass
class LabelConfig:
    """When a unit earns a concept label."""

    min_lift: float = 2.0
    """precision / prevalence on test blocks needed for a label."""
    min_true_positives: int = 10
    """test tokens where the unit fires and the concept holds, needed for a label."""
    alpha: float = 0.05
    """family-wise error rate of the one-sided binomial test "precision > prevalence" on the test tokens'
    effective counts (`design_effect`) over the family's units (SAE features, or neurons), each tested once, for its
    candidate concept: by the circular-shift min-p (`n_shifts`), or Bonferroni."""
    n_thresholds: int = 32
    """activation thresholds tried per unit (evenly spaced from 0 to its validation maximum)."""
    probe_max_tokens: int = 20000
    """about this many tokens per split are sampled for the linear-probe baseline."""
    n_shifts: int = 199
    """circular shifts of the concept tracks along the test bases whose family-wise minimum p is the label test's
    null (`interp.sae.shift_null`; Westfall-Young min-p, so `alpha` needs n_shifts >= 1 / alpha - 1); 0: Bonferroni
    over the units' binomial p-values instead (which leans on the binomial's far tail, heavier than it when a concept
    comes in a few long runs)."""

    def __post_init__(self) -> None:
        problem = label_shifts_problem(self.n_shifts, self.alpha)
        if problem:
            raise InputError(problem)


# ---------------------------------------------------------------- per-token concepts
def token_concepts(tracks: ConceptTracks, split: BlockSplit, window_index: np.ndarray,
                   base_start: np.ndarray, cumulative: np.ndarray,
                   following: tuple[int, int] | None = None) -> np.ndarray:
    """bool [m, C]: the concept holds on any base the token covers.

    A token covers [base_start, next token's base_start) when the next row is the same window,
    else one base. `cumulative` is the int32 [n + 1, C] cumulative sum of tracks.values. following: the
    (window_index, base_start) of the store row after these rows (None at the store's end), so that a chunk's
    last token covers its bases as it would inside the chunk.
    """
    w = np.asarray(window_index, dtype=np.int64)
    bs = np.asarray(base_start, dtype=np.int64)
    track_contig = np.array([tracks.contigs.index(c) if c in tracks.contigs else -1 for c in split.contigs])
    cid = track_contig[split.window_contig[w]]
    if (cid < 0).any():
        raise InputError(f"bases table: no bases on contig {split.contigs[int(split.window_contig[w][cid < 0][0])]}")
    rows = tracks.rows_of(cid, split.window_start[w] + bs)
    end = np.minimum(rows + token_spans(w, bs, following), cumulative.shape[0] - 1)
    return (cumulative[end] - cumulative[rows]) > 0


def token_spans(window_index: np.ndarray, base_start: np.ndarray,
                following: tuple[int, int] | None = None) -> np.ndarray:
    """int64 [m]: bases each token covers, up to the next token's base_start when the next row is the same window,
    else one base (`token_concepts`); following: the (window_index, base_start) of the store row after these."""
    w = np.asarray(window_index, dtype=np.int64)
    bs = np.asarray(base_start, dtype=np.int64)
    nxt_w, nxt_bs = following if following is not None else (-1, -1)
    nxt = np.r_[bs[1:], nxt_bs]
    same = np.r_[w[1:] == w[:-1], w.size > 0 and w[-1] == nxt_w]
    return np.where(same & (nxt > bs), nxt - bs, 1)


def bases_seen(start: np.ndarray, end: np.ndarray) -> float:
    """How often a base is seen by tokens covering [start, end) (genome keys): sum m^2 / sum m over the bases, m the
    number of tokens covering a base (a base seen m times adds m^2 times a single base's variance to a count and m to
    the binomial's); 1.0 with no tokens. Windows 200 wide every 100 bases give about 2, whatever the tokens (those
    of two windows need not start at the same bases: 6-mers, BPE)."""
    if start.size == 0:
        return 1.0
    edge = np.concatenate([start, end])
    step = np.concatenate([np.ones(start.size, dtype=np.int64), -np.ones(end.size, dtype=np.int64)])
    order = np.argsort(edge, kind="stable")
    depth = np.cumsum(step[order])[:-1].astype(np.float64)   # tokens covering [edge[i], edge[i + 1])
    length = np.diff(edge[order]).astype(np.float64)
    once = (depth * length).sum()
    return float((depth**2 * length).sum() / once) if once > 0 else 1.0


def circle_concepts(tracks: ConceptTracks, split: BlockSplit, layout: tuple[np.ndarray, np.ndarray, np.ndarray]
                    ) -> np.ndarray:
    """bool [L, C]: the concepts of the bases laid out on the circle of `interp.sae.shift_null.circular_layout`
    (intervals of genome keys in the split's contig numbering, every base of them a row of the bases table)."""
    starts, ends, _ = layout
    track_contig = np.array([tracks.contigs.index(c) if c in tracks.contigs else -1 for c in split.contigs])
    contig = track_contig[(starts >> 40).astype(np.int64)]
    if (contig < 0).any():
        raise InputError(f"bases table: no bases on contig {split.contigs[int(starts[contig < 0][0] >> 40)]}")
    first = tracks.rows_of(contig, starts & (2**40 - 1))
    length = ends - starts
    rows = np.repeat(first - np.r_[0, np.cumsum(length)[:-1]], length) + np.arange(int(length.sum()))
    expected = np.repeat((contig << 40) | (starts & (2**40 - 1)), length) + (
        np.arange(int(length.sum())) - np.repeat(np.r_[0, np.cumsum(length)[:-1]], length))
    if rows.size and (rows.max() >= tracks.keys.size or (tracks.keys[rows] != expected).any()):
        raise InputError("bases table: the test tokens' bases are not all rows of it (a gap inside a token's span)")
    return tracks.values[rows]


# ---------------------------------------------------------------- streaming threshold statistics
#: lags (tokens) at which the autocorrelations behind the design effect are measured; dyadic up to LAGS[-1]
LAGS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ThresholdCounts:
    """Firing counts of U units at T thresholds, overall and per concept, on one split; and, for the
    label test's design effect (`design_effect`), the counts of token pairs `LAGS` apart in one window on
    which the unit fires at both tokens (per level) or the concept holds at both.

    Unit u fires at threshold level j (0..T-1) when its score > j * scale[u] / T. tokens_per_base: how often
    the split's tokens see a base (`bases_seen`: overlapping windows see a base more than once; set by the caller).
    pairs: count the pairs (the test split's counts; validation only chooses thresholds and needs none).
    Memory: (1 + len(LAGS) if pairs) x U x (T + 1) counts plus C x U x (T + 1), never per token.
    """

    def __init__(self, scale: np.ndarray, n_concepts: int, n_thresholds: int, pairs: bool = True) -> None:
        self.scale = torch.from_numpy(np.where(scale > 0, scale, 1.0)).double()
        self.U, self.C, self.T = scale.size, n_concepts, n_thresholds
        self.hist = torch.zeros(self.U * (self.T + 1), dtype=torch.float64)
        self.hist_pos = torch.zeros(self.C, self.U * (self.T + 1), dtype=torch.float64)
        self.pairs = pairs
        self.pair_hist = torch.zeros(len(LAGS) if pairs else 0, self.U * (self.T + 1), dtype=torch.float64)
        self.n_tokens = 0
        self.n_pos = np.zeros(n_concepts)
        self.n_pairs = np.zeros(len(LAGS))
        self.n_pos_pairs = np.zeros((len(LAGS), n_concepts))
        self.tokens_per_base = 1.0
        # the last LAGS[-1] rows of the previous call (levels [t, U], concepts [t, C], segment of each row), so
        # pairs across calls count as within one
        self._tail: tuple[torch.Tensor, np.ndarray, np.ndarray] | None = None

    def add(self, scores: torch.Tensor, concepts: np.ndarray, follows: np.ndarray | None = None) -> None:
        """scores [m, U] (>= 0 means nothing; only > 0 can fire), concepts bool [m, C]; follows bool [m]: row i
        is the token after row i - 1's in the same window, row 0 after the last row of the previous call
        (default: a contiguous stream, every row after the first)."""
        m = scores.shape[0]
        if m == 0:
            return
        follows = np.arange(m) > 0 if follows is None else np.asarray(follows, dtype=bool)
        concepts = np.asarray(concepts, dtype=bool)
        self.n_tokens += m
        self.n_pos += concepts.sum(axis=0)
        tok, unit = torch.nonzero(scores > 0, as_tuple=True)
        level = torch.ceil(scores[tok, unit].double() * self.T / self.scale[unit]).clamp(1, self.T).long()
        dense = torch.zeros((m, self.U) if self.pairs else (0, 0), dtype=torch.int16)  # levels, 0: silent
        if tok.numel():
            if self.pairs:
                dense[tok, unit] = level.to(torch.int16)
            index = unit * (self.T + 1) + level
            size = self.U * (self.T + 1)
            self.hist += torch.bincount(index, minlength=size).double()
            c = torch.from_numpy(concepts)
            for j in range(self.C):
                self.hist_pos[j] += torch.bincount(index, weights=c[tok, j].double(), minlength=size)
        if self.pairs:
            self._add_pairs(dense, concepts, follows)

    def _add_pairs(self, level: torch.Tensor, concepts: np.ndarray, follows: np.ndarray) -> None:
        tail = self._tail if (self._tail is not None and follows[0]) else None
        if tail is not None:
            t = tail[0].shape[0]
            level = torch.cat([tail[0], level])
            concepts = np.concatenate([tail[1], concepts])
            segment = np.concatenate([tail[2], tail[2][-1] + np.cumsum(~follows)])
        else:
            t = 0
            segment = np.cumsum(~follows)
        n = level.shape[0]
        size = self.U * (self.T + 1)
        offsets = (torch.arange(self.U) * (self.T + 1)).to(torch.int32)
        row, unit = torch.nonzero(level, as_tuple=True)
        sparse = row.numel() * 8 < n * self.U  # sparse codes (an SAE's): pair the firing entries by key
        if sparse:
            key = row * self.U + unit                                           # ascending (row-major)
            entry_level = level[row, unit]
            segment_t = torch.from_numpy(segment)
        for i, lag in enumerate(LAGS):
            later = np.arange(max(t, lag), n)
            later = later[segment[later] == segment[later - lag]]
            if later.size == 0:
                continue
            self.n_pairs[i] += later.size
            self.n_pos_pairs[i] += (concepts[later] & concepts[later - lag]).sum(axis=0)
            if sparse:
                if key.numel() == 0:
                    continue
                partner = torch.searchsorted(key, key - lag * self.U).clamp(max=max(key.numel() - 1, 0))
                both = ((row >= max(t, lag)) & (key[partner] == key - lag * self.U)
                        & (segment_t[row] == segment_t[(row - lag).clamp(min=0)]))
                lower = torch.minimum(entry_level[both], entry_level[partner[both]]).long()
                self.pair_hist[i] += torch.bincount(unit[both] * (self.T + 1) + lower, minlength=size).double()
                continue
            for part in np.array_split(later, -(-later.size * self.U // 2**22)):  # temporaries of ~2**22 values
                idx = torch.from_numpy(part)
                both = torch.minimum(level[idx], level[idx - lag])                # [pairs, U]: the lower level
                on = both > 0
                self.pair_hist[i] += torch.bincount((offsets + both)[on], minlength=size).double()
        keep = max(0, n - LAGS[-1])
        self._tail = (level[keep:].clone(), concepts[keep:].copy(), segment[keep:].copy())

    def fires(self) -> tuple[np.ndarray, np.ndarray]:
        """(fires [U, T], true positives [C, U, T]): counts of tokens above each threshold level."""
        h = self.hist.view(self.U, self.T + 1).numpy()[:, 1:]
        hp = self.hist_pos.view(self.C, self.U, self.T + 1).numpy()[:, :, 1:]
        # level l fires at thresholds j < l: reverse cumulative sums
        return np.cumsum(h[:, ::-1], axis=1)[:, ::-1], np.cumsum(hp[:, :, ::-1], axis=2)[:, :, ::-1]

    def pair_fires(self) -> np.ndarray:
        """[len(LAGS), U, T]: token pairs LAGS apart in one window on which the unit fires at both, per level (zeros
        without `pairs`: no pair was counted, so the design effect is tokens_per_base alone)."""
        if not self.pairs:
            return np.zeros((len(LAGS), self.U, self.T))
        h = self.pair_hist.view(len(LAGS), self.U, self.T + 1).numpy()[:, :, 1:]
        return np.cumsum(h[:, :, ::-1], axis=2)[:, :, ::-1]


def lag_correlation(n_both: np.ndarray, n_pairs: np.ndarray | float, rate: np.ndarray) -> np.ndarray:
    """Autocorrelation of a 0/1 series at one lag from the pairs that are both 1 and its rate p:
    (P11 - p^2) / (p (1 - p)); NaN where undefined (no pairs, p 0 or 1)."""
    n_pairs = np.asarray(n_pairs, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (np.asarray(n_both, dtype=float) / n_pairs - rate**2) / (rate * (1 - rate))
    return np.where(np.isfinite(rho) & (n_pairs > 0), rho, np.nan)


def design_effect(rho_unit: np.ndarray, rho_concept: np.ndarray, tokens_per_base: float = 1.0) -> np.ndarray:
    """Variance inflation of the true-positive count over the binomial's, for a unit and a concept that are
    independent but each correlated along the sequence: Bartlett's formula for the cross-covariance of two
    independent series, 1 + 2 sum_{k >= 1} rho_u(k) rho_c(k), times tokens_per_base (a base seen in several
    overlapping windows is one observation). rho_*: [len(LAGS), ...] autocorrelations at `LAGS` (NaN: no
    pairs that far apart). Between two measured lags the product is interpolated geometrically (exact for
    Markov runs; above a decay with a long tail, whose log is convex, so the sum errs on the safe side); past
    the last measured lag it goes on at the last interval's rate (with lag 1 alone: rho^k, a two-state
    Markov run, giving (1 + r) / (1 - r)). Negative products count as 0. >= 1."""
    product = np.asarray(rho_unit, dtype=float) * np.asarray(rho_concept, dtype=float)
    measured = np.isfinite(product)
    product = np.clip(np.nan_to_num(product), 0.0, 0.999)
    shape = product.shape[1:]
    total = np.zeros(shape)
    last, last_lag, rate = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    seen = np.zeros(shape, dtype=bool)
    for i, lag in enumerate(LAGS):
        now = measured[i]
        gap = np.maximum(lag - last_lag, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.clip(np.nan_to_num(np.where(last > 0, (product[i] / last) ** (1.0 / gap), 0.0)), 0.0, 1.0)
        # the interval [last_lag, lag): last * step^j, j = 0 .. gap - 1
        interval = np.where(step < 1, last * (1 - step**gap) / np.maximum(1 - step, 1e-12), last * gap)
        total += np.where(now & seen, interval, 0.0)
        rate = np.where(now, np.where(seen, np.minimum(step, 0.999), product[i]), rate)
        last = np.where(now, product[i], last)
        last_lag = np.where(now, lag, last_lag)
        seen |= now
    # from the last measured lag on: last * rate^j, j >= 0 (lag 1 alone: r / (1 - r))
    total += np.where(seen, last / (1 - np.minimum(rate, 0.999)), 0.0)
    return np.maximum(tokens_per_base, 1.0) * (1 + 2 * total)


def binomial_sf_effective(tp: np.ndarray, fire: np.ndarray, prevalence: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """P(X >= tp) for X ~ Binomial(fire, prevalence) with both counts divided by the design effect (the
    effective number of independent tokens; continuous in the counts: the regularised incomplete beta
    function I_p(k, n - k + 1) with k = tp / effect, n = fire / effect). Equals binom.sf(tp - 1, fire, p) at
    effect 1. 1 where tp is 0 or nothing fires."""
    k = np.asarray(tp, dtype=float) / effect
    n = np.asarray(fire, dtype=float) / effect
    p = np.clip(np.nan_to_num(prevalence), 0, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = betainc(np.maximum(k, 1e-12), np.maximum(n - k + 1, 1e-12), p)
    return np.where((k > 0) & (n > 0), out, 1.0)


def _div(a, b):
    """a / b, 0 where b is not positive: for scores a choice is made on (an argmax), never for reporting."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return np.divide(a, b, out=np.zeros(a.shape), where=b > 0)


def _ratio(a, b):
    """a / b, NaN (undefined) where b is not positive or either is NaN: the reported statistics. A precision
    with nothing fired, a recall or F1 of a concept absent from the split, a lift at prevalence 0 are
    undefined, not 0 (0 would read as "measured, and the unit missed it")."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return np.divide(a, b, out=np.full(a.shape, np.nan), where=b > 0)


def finite_or_none(value):
    """A float for JSON: None (null) where it is NaN or infinite (undefined), else the float."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def nan_last(column: str) -> pl.Expr:
    """`column` with NaN as null, to sort with nulls last: polars orders NaN above every number, so a
    descending sort would put an undefined statistic first."""
    return pl.col(column).fill_nan(None)


def at_least(column: str, level: float) -> pl.Expr:
    """`column >= level`, false where the column is NaN or null (polars' `NaN >= level` is true)."""
    return (pl.col(column).fill_nan(None) >= level).fill_null(False)


def average_precision(fires: np.ndarray, tp: np.ndarray, n_tokens: int, n_pos: np.ndarray) -> np.ndarray:
    """AP [C, U] from counts at decreasing score levels plus the all-tokens point (step interpolation,
    as scikit-learn's average_precision_score on the quantised scores)."""
    C, U, T = tp.shape
    # thresholds from highest to lowest, then "every token"
    f = np.concatenate([np.broadcast_to(fires[None, :, ::-1], (C, U, T)),
                        np.full((C, U, 1), float(n_tokens))], axis=2)
    t = np.concatenate([tp[:, :, ::-1], np.broadcast_to(n_pos[:, None, None], (C, U, 1))], axis=2)
    recall = _div(t, n_pos[:, None, None])
    precision = _div(t, f)
    delta = np.diff(np.concatenate([np.zeros((C, U, 1)), recall], axis=2), axis=2)
    # a concept absent from the split has no precision-recall curve: undefined, not 0
    return np.where(n_pos[:, None] > 0, (delta * precision).sum(axis=2), np.nan)


def chosen_levels(val: ThresholdCounts) -> np.ndarray:
    """int64 [C, U]: each (concept, unit) pair's threshold index, the one of best validation F1 (ties: the
    lowest); the unit fires at index j when its score > j x scale / n_thresholds."""
    v_fires, v_tp = val.fires()
    return _div(2 * v_tp, v_fires[None] + val.n_pos[:, None, None]).argmax(axis=2)


def validation_choice(val: ThresholdCounts, names: list[str], min_lift: float) -> dict[str, np.ndarray]:
    """What the validation blocks decide, before any test token is read: {levels [C, U] (`chosen_levels`),
    validation_f1 [C, U] (NaN: concept absent from validation), validation_lift [C, U], candidate [U]: each
    unit's candidate concept, the one of highest validation F1 among those of validation lift >= min_lift
    (else among all; ties: the first name in order)}. A unit is tested for its candidate only."""
    v_fires, v_tp = val.fires()
    best = chosen_levels(val)
    take = lambda a: np.take_along_axis(a, best[..., None], axis=2)[..., 0]  # noqa: E731
    v_f1 = _div(2 * v_tp, v_fires[None] + val.n_pos[:, None, None])
    validation_f1 = np.where((val.n_pos > 0)[:, None], take(v_f1), np.nan)
    v_prev = _ratio(val.n_pos, val.n_tokens)[:, None]
    v_lift = _ratio(_ratio(take(v_tp), take(np.broadcast_to(v_fires[None], v_tp.shape))), v_prev)
    # lexicographic: eligible first, then validation F1 (undefined last), then the concept's name
    eligible = (np.nan_to_num(v_lift, nan=-np.inf) >= min_lift).astype(float)
    score = np.nan_to_num(validation_f1, nan=-np.inf)
    candidate = np.zeros(best.shape[1], dtype=np.int64)
    top_e, top_f = np.full(best.shape[1], -1.0), np.full(best.shape[1], -np.inf)
    for c in sorted(range(len(names)), key=lambda j: names[j]):  # strictly better only: the first name keeps ties
        better = (eligible[c] > top_e) | ((eligible[c] == top_e) & (score[c] > top_f))
        candidate[better], top_e[better], top_f[better] = c, eligible[c][better], score[c][better]
    return {"levels": best, "validation_f1": validation_f1, "validation_lift": v_lift, "candidate": candidate}


def label_units(val: ThresholdCounts, test: ThresholdCounts, names: list[str], cfg: LabelConfig,
                kind: str, shift_null: ShiftNull | None = None) -> pl.DataFrame:
    """Long table: one row per (unit, concept) with validation-chosen threshold and test statistics.

    Each unit is tested for its candidate concept only (`validation_choice`; column `candidate`): the label test's
    family is one test per unit. shift_null: the circular-shift null of the candidates' test counts
    (`interp.sae.shift_null`, built from `validation_choice`): the family-wise p (`p_family`) is then its
    Westfall-Young min-p, else Bonferroni's min(1, p x units); NaN for the pairs not tested."""
    t_fires, t_tp = test.fires()
    C, U, T = t_tp.shape
    choice = validation_choice(val, names, cfg.min_lift)
    best, validation_f1, v_lift = choice["levels"], choice["validation_f1"], choice["validation_lift"]
    candidate = np.zeros((C, U), dtype=bool)
    candidate[choice["candidate"], np.arange(U)] = True
    take = lambda a: np.take_along_axis(a, best[..., None], axis=2)[..., 0]  # noqa: E731
    tp = take(t_tp)
    fire = np.take_along_axis(np.broadcast_to(t_fires[None], t_tp.shape), best[..., None], axis=2)[..., 0]
    # undefined statistics are NaN (`_ratio`): recall, F1, lift, AUPRC of a concept absent from the test
    # blocks, precision and lift of a unit that never fires there; F1 is 0 (defined) when the concept is
    # there and the unit is silent. The threshold choice above reads 0 for an undefined validation F1.
    prevalence = _ratio(test.n_pos, test.n_tokens)[:, None] * np.ones((C, U))
    has_pos = (test.n_pos > 0)[:, None]
    precision = _ratio(tp, fire)
    recall = _ratio(tp, test.n_pos[:, None])
    f1 = np.where(has_pos, _ratio(2 * tp, fire + test.n_pos[:, None]), np.nan)
    density = _ratio(fire, test.n_tokens)
    f1_always = _ratio(2 * prevalence, 1 + prevalence)
    f1_random = _ratio(2 * prevalence * density, prevalence + density)
    lift = _ratio(precision, prevalence)
    # one-sided binomial test: tp or more of `fire` tokens carry the concept if firing were unrelated to it,
    # on the effective number of tokens: concepts (exons, repeats, islands) and firing come in runs, and a chance
    # overlap of two runs is one piece of evidence, not one per token (a planted null in runs labelled a
    # unit in 18 of 20 replicates at family-wise alpha 0.05 with tokens counted as independent)
    pairs = test.pair_fires()                                               # [L, U, T]
    pair_fire = np.stack([np.take_along_axis(np.broadcast_to(pairs[i][None], t_tp.shape), best[..., None],
                                             axis=2)[..., 0] for i in range(len(LAGS))])  # [L, C, U]
    rho_unit = lag_correlation(pair_fire, test.n_pairs[:, None, None], _div(fire, test.n_tokens)[None])
    rho_concept = lag_correlation(test.n_pos_pairs, test.n_pairs[:, None],
                                  _div(test.n_pos, test.n_tokens)[None])[:, :, None]
    effect = design_effect(rho_unit, rho_concept, test.tokens_per_base)
    p_value = binomial_sf_effective(tp, fire, prevalence, effect)
    units = np.arange(U)
    tested = choice["candidate"]
    p_family = np.full((C, U), np.nan)
    if shift_null is not None:
        if not (np.array_equal(shift_null.concept, tested)
                and np.array_equal(shift_null.levels.numpy(), best[tested, units])):
            raise ValueError("shift_null was built for other candidates or thresholds than the validation's choice")
        p_family[tested, units] = shift_null.family_p(p_value[tested, units], fire[tested, units],
                                                      effect[tested, units])[0]
    else:
        p_family[tested, units] = np.minimum(1.0, p_value[tested, units] * U)
    # every comparison with NaN is false: no label on an undefined statistic, nor for a pair not tested
    passes = ((lift >= cfg.min_lift) & (f1 > f1_always) & (f1 > f1_random) & (tp >= cfg.min_true_positives)
              & (p_family <= cfg.alpha))
    threshold = best * val.scale.numpy()[None, :] / T
    frame = pl.DataFrame({
        "kind": [kind] * (C * U),
        "unit": np.tile(np.arange(U, dtype=np.int64), C),
        "concept": np.repeat(np.array(names, dtype=object), U).tolist(),
        "threshold": threshold.ravel(), "validation_f1": validation_f1.ravel(), "validation_lift": v_lift.ravel(),
        "precision": precision.ravel(), "recall": recall.ravel(), "f1": f1.ravel(), "lift": lift.ravel(),
        "auprc": average_precision(t_fires, t_tp, test.n_tokens, test.n_pos).ravel(),
        "prevalence": prevalence.ravel(), "density": density.ravel(), "true_positives": tp.ravel(), "p_value": p_value.ravel(),
        "p_family": p_family.ravel(), "candidate": candidate.ravel(), "design_effect": effect.ravel(),
        "f1_always": f1_always.ravel(), "f1_random": f1_random.ravel(), "passes": passes.ravel(),
    })
    return frame


def shift_null_for(val: ThresholdCounts, scale: np.ndarray, names: list[str], cfg: LabelConfig, values: np.ndarray,
                   seed: int) -> ShiftNull:
    """The (empty) circular-shift null of each unit's candidate pair as `validation_choice` picks it; values bool
    [L, C]: the concepts along the test circle. Fill it with `ShiftNull.add` over the test tokens."""
    choice = validation_choice(val, names, cfg.min_lift)
    units = np.arange(choice["candidate"].size)
    return ShiftNull.build(choice["candidate"], choice["levels"][choice["candidate"], units], scale, cfg.n_thresholds,
                           values, cfg.n_shifts, seed)


def label_arrays(validation: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], names: list[str],
                 cfg: LabelConfig, kind: str = "sae", scale: np.ndarray | None = None, seed: int = 0) -> pl.DataFrame:
    """`label_units` on in-memory splits, each (scores [m, U] (> 0 fires), concepts bool [m, C]) of consecutive
    tokens one base apart (one contiguous stream per split; the test stream is the shift null's circle).
    scale [U]: the units' maxima (default: the validation maxima)."""
    v_scores, v_concepts = validation
    t_scores, t_concepts = test
    scale = np.asarray(v_scores, dtype=np.float64).max(axis=0) if scale is None else np.asarray(scale, dtype=float)
    counts = {}
    for code, (x, c) in ((VALIDATION, validation), (TEST, test)):
        counts[code] = ThresholdCounts(scale, len(names), cfg.n_thresholds, pairs=code == TEST)
        counts[code].add(torch.from_numpy(np.asarray(x, dtype=np.float64)), np.asarray(c, dtype=bool))
    null = None
    if cfg.n_shifts > 0:
        null = shift_null_for(counts[VALIDATION], scale, names, cfg, np.asarray(t_concepts, bool), seed)
        scores = torch.from_numpy(np.asarray(t_scores, dtype=np.float64))
        for start in range(0, scores.shape[0], 8192):  # chunks bound the [tokens, shifts] temporaries
            at = np.arange(start, min(start + 8192, scores.shape[0]))
            null.add(scores[at], at, np.ones(at.size, dtype=np.int64))
    return label_units(counts[VALIDATION], counts[TEST], names, cfg, kind, null)


def unit_labels(long: pl.DataFrame, min_lift: float) -> pl.DataFrame:
    """One row per unit: its candidate concept (by validation, `validation_choice`) and label (test criteria)."""
    if "candidate" in long.columns:
        first = long.filter(pl.col("candidate")).sort("unit")
        return first.with_columns(label=pl.when(pl.col("passes")).then(pl.col("concept")).otherwise(pl.lit(UNLABELLED)))
    ranked = long.with_columns(eligible=at_least("validation_lift", min_lift), _rank=nan_last("validation_f1")).sort(
        ["unit", "eligible", "_rank", "concept"], descending=[False, True, True, False], nulls_last=True)
    first = ranked.group_by("unit", maintain_order=True).first().drop("_rank")
    return first.with_columns(label=pl.when(pl.col("passes")).then(pl.col("concept")).otherwise(pl.lit(UNLABELLED)))


# ---------------------------------------------------------------- top windows (per feature)
def window_max(features: torch.Tensor, window_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-window maximum of each feature within one chunk.

    features [m, F] (non-negative), window_index [m] -> (windows [u] sorted, maxima float32 [F, u]).
    """
    windows, inverse = np.unique(window_index, return_inverse=True)
    index = torch.from_numpy(inverse.astype(np.int64))[:, None].expand_as(features)
    out = torch.zeros(windows.size, features.shape[1], dtype=features.dtype)
    out = out.scatter_reduce(0, index, features, reduce="amax", include_self=True)
    return windows, out.T.numpy()


def merge_top(best_values: np.ndarray, best_windows: np.ndarray, block: np.ndarray,
              block_windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold one chunk's per-window maxima into the running top-n windows of every feature.

    best_values / best_windows [F, n] (window -1 = empty slot), block [F, u] for sorted
    block_windows [u]. A window already among the candidates keeps the larger of its two maxima.
    Returns the new [F, n] pair ordered by value, descending (ties: earlier candidates first).
    """
    n = best_values.shape[1]
    block = block.copy()
    pos = np.clip(np.searchsorted(block_windows, best_windows), 0, block_windows.size - 1)
    seen = (block_windows[pos] == best_windows) & (best_windows >= 0)
    rows, cols = np.nonzero(seen)
    block[rows, pos[rows, cols]] = np.maximum(block[rows, pos[rows, cols]], best_values[rows, cols])
    values = np.concatenate([np.where(seen, 0.0, best_values), block], axis=1)
    windows = np.concatenate([best_windows, np.broadcast_to(block_windows, block.shape)], axis=1)
    order = np.argsort(-values, axis=1, kind="stable")[:, :n]
    values = np.take_along_axis(values, order, axis=1)
    windows = np.where(values > 0, np.take_along_axis(windows, order, axis=1), -1)
    return values, windows


def _window_ids(windows: pl.DataFrame) -> dict[int, str]:
    missing = {"window_index", "window_id"} - set(windows.columns)
    if missing:
        raise InputError(f"windows table: expected columns window_index and window_id, "
                         f"missing {sorted(missing)}")
    return dict(zip(windows["window_index"].cast(pl.Int64).to_list(),
                    windows["window_id"].cast(pl.String).to_list(), strict=True))


# ---------------------------------------------------------------- linear-probe baseline
def probe_baseline(samples: dict[int, tuple[list, list]], names: list[str], seed: int) -> list[dict]:
    """Per concept: logistic regression on standardised raw activations (train sample), threshold
    chosen for F1 on the validation sample, precision / recall / F1 / lift / AUPRC on the test sample."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    data = {}
    for code, (xs, ys) in samples.items():
        data[code] = (np.concatenate(xs) if xs else np.zeros((0, 0)), np.concatenate(ys) if ys else None)
    x_tr, y_tr = data[TRAIN]
    if x_tr.shape[0] == 0:
        return []
    mean, sd = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-8
    out = []
    for j, name in enumerate(names):
        row = {"concept": name, "probe_f1": None, "probe_precision": None, "probe_recall": None,
               "probe_lift": None, "probe_auprc": None}
        y = y_tr[:, j]
        x_va, y_va = data[VALIDATION]
        x_te, y_te = data[TEST]
        if y.min() == y.max() or y_va is None or y_te is None or not y_va[:, j].any() or not y_te[:, j].any():
            out.append(row)
            continue
        model = LogisticRegression(max_iter=500, random_state=seed).fit((x_tr - mean) / sd, y)
        p_va = model.predict_proba((x_va - mean) / sd)[:, 1]
        p_te = model.predict_proba((x_te - mean) / sd)[:, 1]
        t, _ = best_threshold(p_va, y_va[:, j])
        fire = p_te >= t
        tp = float((fire & y_te[:, j]).sum())
        prev = float(y_te[:, j].mean())
        precision = tp / fire.sum() if fire.any() else None  # nothing fired: undefined, as its lift
        recall = tp / y_te[:, j].sum()
        row.update(probe_f1=2 * tp / (fire.sum() + y_te[:, j].sum()), probe_precision=precision,
                   probe_recall=recall, probe_lift=None if precision is None else precision / prev,
                   probe_auprc=float(average_precision_score(y_te[:, j], p_te)))
        out.append(row)
    return out


# ---------------------------------------------------------------- the whole analysis
def token_rows_for(n_features: int, d: int) -> int:
    """Tokens encoded at a time so that one dense code block [rows, F] (or [rows, 2d] neuron block) holds about
    2**25 values (128 MiB of float32): 16,384 tokens for 512 features, 1,024 for 32,768; at least 256."""
    return max(256, min(16384, 2**25 // max(int(n_features), 2 * int(d))))


@torch.no_grad()
def feature_table(model: SparseAutoencoder, store_path: str | Path, windows: pl.DataFrame, split: BlockSplit,
                  tracks: ConceptTracks, cfg: LabelConfig | None = None, top_n: int = 5, rows: int | None = None,
                  seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(features, units, summary), streamed over the store `rows` tokens at a time.

    features: one row per SAE feature: feature, density (share of all tokens where it fires),
    mean_activation (mean code value when firing), concept (candidate), label (concept or
    "unlabelled"), threshold, precision, recall, f1, lift, auprc, prevalence, label_density (test
    density at the threshold), f1_always, f1_random, best_label (= label) and best_f1 (= f1, for
    report compatibility), top_windows (comma-joined window_id of the top_n windows by maximum
    activation). units: the long (unit, concept) table for SAE features (kind "sae") and neurons
    (kind "neuron", unit = 2 * dim for the high direction, 2 * dim + 1 for the low one).
    summary: per concept prevalence, matches by SAE features and neurons, probe baseline, and the
    counts n_concepts_matched_sae / n_concepts_matched_neurons / n_labelled_features.
    rows: tokens encoded at a time; by default about 2**25 dense values (16384 tokens for 512 features, 1024
    for 32768), so a large dictionary or a wide model does not blow up memory. The store is read through its
    stored chunks (`interp.embed.store.ChunkReader`): each is decompressed once per pass whatever `rows`.
    """
    cfg = cfg or LabelConfig()
    store = open_store(store_path)
    if rows is None:
        rows = token_rows_for(model.n_features, store.d)
    if store.d != model.d_in:
        raise InputError(f"{store_path}: activations have width {store.d} but the SAE expects {model.d_in}")
    ids = _window_ids(windows)
    model = model.cpu().eval()
    F, d, names = model.n_features, store.d, tracks.names
    cumulative = np.concatenate([np.zeros((1, len(names)), dtype=np.int32),
                                 np.cumsum(tracks.values, axis=0, dtype=np.int32)])

    def chunks():
        # read through the stored chunks: a stored chunk (up to 16,384 tokens) spans many `rows` slices when the
        # dictionary is wide, and each is decompressed once per pass, not once per slice
        index, starts, acts = store.reader("window_index"), store.reader("base_start"), store.reader("activations")
        for start in range(0, store.n_tokens, rows):
            sl = slice(start, min(start + rows, store.n_tokens))
            w, bs = index[sl], starts[sl]
            after = (int(index[sl.stop]), int(starts[sl.stop])) if sl.stop < store.n_tokens else None
            yield sl, w, bs, split.of_tokens(w, bs), after, acts

    # pass 1: scales on validation tokens (feature maxima, neuron ranges); tokens per split
    feat_max = np.zeros(F)
    lo, hi = np.full(d, np.inf), np.full(d, -np.inf)
    per_split = np.zeros(3, dtype=np.int64)
    for sl, _, _, code, _, acts in chunks():
        per_split += np.bincount(code[code >= 0], minlength=3)[:3]
        keep = code == VALIDATION
        if not keep.any():
            continue
        x = acts[sl][keep]
        feat_max = np.maximum(feat_max, model.encode(torch.from_numpy(x)).max(dim=0).values.double().numpy())
        lo, hi = np.minimum(lo, x.min(axis=0)), np.maximum(hi, x.max(axis=0))
    if not np.isfinite(lo).all():
        raise InputError(f"{store_path}: no validation tokens (check sae.validation_fraction / split_block_bases)")
    span = np.maximum(hi - lo, 1e-12)
    sae_counts = {c: ThresholdCounts(feat_max, len(names), cfg.n_thresholds, pairs=c == TEST) for c in (VALIDATION, TEST)}
    neuron_counts = {c: ThresholdCounts(np.ones(2 * d), len(names), cfg.n_thresholds, pairs=c == TEST)
                     for c in (VALIDATION, TEST)}
    # each split's probe sample holds about probe_max_tokens (the training split is the largest)
    rate = np.minimum(1.0, cfg.probe_max_tokens / np.maximum(per_split, 1))
    rng = np.random.default_rng([seed, 97])
    samples: dict[int, tuple[list, list]] = {TRAIN: ([], []), VALIDATION: ([], []), TEST: ([], [])}

    # pass 2: all tokens (density, top windows); validation/test (threshold counts); probe samples
    n_fire = np.zeros(F)
    activation_sum = np.zeros(F)
    best_values = np.zeros((F, top_n), dtype=np.float32)
    best_windows = np.full((F, top_n), -1, dtype=np.int64)
    lo_t, span_t = torch.from_numpy(lo), torch.from_numpy(span)
    test_spans: list[np.ndarray] = []  # [2, m] (contig, base) spans of the test tokens: tokens_per_base
    last_test = (-2, -1, -1)  # (store row, window, base_start) of the last test token read
    for sl, w, bs, code, after, acts in chunks():
        x = torch.from_numpy(np.asarray(acts[sl], dtype=np.float32))
        features = model.encode(x)
        n_fire += (features > 0).sum(dim=0).double().numpy()
        activation_sum += features.sum(dim=0).double().numpy()
        block_windows, block = window_max(features, w)
        best_values, best_windows = merge_top(best_values, best_windows, block, block_windows.astype(np.int64))
        concepts = token_concepts(tracks, split, w, bs, cumulative, after)
        w64, bs64 = np.asarray(w, dtype=np.int64), np.asarray(bs, dtype=np.int64)
        next_in_window = np.r_[False, (w64[1:] == w64[:-1]) & (bs64[1:] > bs64[:-1])]
        spans = token_spans(w64, bs64, after)
        for c in (VALIDATION, TEST):
            keep = torch.from_numpy(code == c)
            if not bool(keep.any()):
                continue
            kept = keep.numpy()
            follows = None  # pairs and spans: only the test counts' design effect uses them
            if c == TEST:
                follows = (next_in_window & np.r_[False, kept[:-1]])[kept]
                at = np.flatnonzero(kept)
                row, window, base = last_test  # the last test token before this read, if it is the row before
                follows[0] = row == sl.start + at[0] - 1 and window == w64[at[0]] and base < bs64[at[0]]
                last_test = (sl.start + int(at[-1]), int(w64[at[-1]]), int(bs64[at[-1]]))
                at_base = ((split.window_contig[w64[kept]].astype(np.int64) << 40) + split.window_start[w64[kept]]
                           + bs64[kept])
                test_spans.append(np.stack([at_base, at_base + spans[kept]]))
            # the test tokens encoded alone, as the shift null's pass encodes them: a matrix product's rounding
            # depends on the batch, and shift 0 must be these counts (a level at a boundary would flip)
            sae_counts[c].add(model.encode(x[keep]) if c == TEST else features[keep], concepts[kept], follows)
            scaled = (x[keep].double() - lo_t) / span_t
            # a neuron is read both ways (unit 2 * dim high, 2 * dim + 1 low); +1e-9 so the unit's validation
            # minimum still "fires" at level 0
            both = torch.stack([scaled + 1e-9, 1 - scaled + 1e-9], dim=2).reshape(scaled.shape[0], 2 * d)
            neuron_counts[c].add(both, concepts[kept], follows)
        take = rng.random(code.size) < rate[np.clip(code, 0, 2)]
        for c in (TRAIN, VALIDATION, TEST):
            sel = take & (code == c)
            if sel.any():
                samples[c][0].append(x.numpy()[sel])
                samples[c][1].append(concepts[sel])

    spans_test = np.concatenate(test_spans, axis=1) if test_spans else np.zeros((2, 0), dtype=np.int64)
    sae_counts[TEST].tokens_per_base = neuron_counts[TEST].tokens_per_base = bases_seen(*spans_test)
    unknown = sorted({int(v) for v in np.unique(best_windows) if v >= 0} - ids.keys())
    if unknown:
        raise InputError(f"windows table: no window_id for window_index {unknown[:5]} found in {store_path}")
    nulls: dict[str, ShiftNull | None] = {"sae": None, "neuron": None}
    if cfg.n_shifts > 0 and spans_test.shape[1]:
        # pass 3, test tokens only: true positives at the chosen thresholds under shifts of the concept tracks
        layout = circular_layout(*spans_test)
        values = circle_concepts(tracks, split, layout)
        nulls = {kind: shift_null_for(counts[VALIDATION], scale, names, cfg, values, seed)
                 for kind, counts, scale in (("sae", sae_counts, feat_max), ("neuron", neuron_counts, np.ones(2 * d)))}
        for sl, w, bs, code, after, acts in chunks():
            kept = code == TEST
            if not kept.any():
                continue
            w64, bs64 = np.asarray(w, dtype=np.int64)[kept], np.asarray(bs, dtype=np.int64)
            spans = token_spans(np.asarray(w, dtype=np.int64), bs64, after)[kept]
            bs64 = bs64[kept]
            at_base = (split.window_contig[w64].astype(np.int64) << 40) + split.window_start[w64] + bs64
            position = to_circle(at_base, layout[0], layout[2])
            x = torch.from_numpy(np.asarray(acts[sl], dtype=np.float32)[kept])
            nulls["sae"].add(model.encode(x), position, spans)
            scaled = (x.double() - lo_t) / span_t
            both = torch.stack([scaled + 1e-9, 1 - scaled + 1e-9], dim=2).reshape(scaled.shape[0], 2 * d)
            nulls["neuron"].add(both, position, spans)
    sae_long = label_units(sae_counts[VALIDATION], sae_counts[TEST], names, cfg, "sae", nulls["sae"])
    neuron_long = label_units(neuron_counts[VALIDATION], neuron_counts[TEST], names, cfg, "neuron", nulls["neuron"])
    sae_units = unit_labels(sae_long, cfg.min_lift)
    neuron_units = unit_labels(neuron_long, cfg.min_lift)

    n_tokens = max(store.n_tokens, 1)
    features_df = pl.DataFrame({
        "feature": np.arange(F, dtype=np.int64),
        "density": n_fire / n_tokens,
        "mean_activation": np.divide(activation_sum, n_fire, out=np.zeros(F), where=n_fire > 0),
        "top_windows": [",".join(ids[int(v)] for v in row if v >= 0) for row in best_windows],
    }).join(sae_units.select(
        pl.col("unit").alias("feature"), "concept", "label", "threshold", "precision", "recall", "f1", "lift",
        "auprc", "prevalence", pl.col("density").alias("label_density"), "f1_always", "f1_random", "p_value", "p_family", "design_effect"),
        on="feature", how="left").with_columns(
        pl.col("label").alias("best_label"), pl.col("f1").alias("best_f1")).sort("feature")
    # a feature that never fires cannot carry a label
    features_df = features_df.with_columns(
        pl.when(pl.col("density") > 0).then(pl.col("label")).otherwise(pl.lit(UNLABELLED)).alias("label"),
    ).with_columns(pl.col("label").alias("best_label"))

    probes = {r["concept"]: r for r in probe_baseline(samples, names, seed)}
    geometry = {r["concept"]: r for r in concept_geometry(samples, names, seed=seed)}
    per_concept = []
    for j, name in enumerate(names):
        # undefined numbers (the concept absent from the test blocks, a unit that never fires there) are null
        entry = {"concept": name, "prevalence": finite_or_none(_ratio(sae_counts[TEST].n_pos[j],
                                                                      sae_counts[TEST].n_tokens)),
                 "n_test_positive": int(sae_counts[TEST].n_pos[j])}
        for kind, long, units in (("sae", sae_long, sae_units), ("neuron", neuron_long, neuron_units)):
            best = long.filter(pl.col("concept") == name).sort([nan_last("validation_f1"), "unit"],
                                                               descending=[True, False], nulls_last=True
                                                               ).row(0, named=True)
            entry[f"n_{kind}_labelled"] = int((units["label"] == name).sum())
            entry[f"best_{kind}_unit"] = int(best["unit"])
            for key in ("f1", "lift", "auprc", "precision", "recall"):
                entry[f"best_{kind}_{key}"] = finite_or_none(best[key])
        entry.update({k: v for k, v in probes.get(name, {}).items() if k != "concept"})
        entry.update({k: v for k, v in geometry.get(name, {}).items() if k != "concept"})
        per_concept.append(entry)
    summary = {
        "concepts": per_concept,
        "n_concepts": len(names),
        "n_concepts_matched_sae": int(sum(e["n_sae_labelled"] > 0 for e in per_concept)),
        "n_concepts_matched_neurons": int(sum(e["n_neuron_labelled"] > 0 for e in per_concept)),
        "n_labelled_features": int((features_df["label"] != UNLABELLED).sum()),
        "n_validation_tokens": int(sae_counts[VALIDATION].n_tokens),
        "n_test_tokens": int(sae_counts[TEST].n_tokens),
        "label_rule": {"min_lift": cfg.min_lift, "min_true_positives": cfg.min_true_positives,
                       "n_thresholds": cfg.n_thresholds, "alpha": cfg.alpha, "n_shifts": cfg.n_shifts,
                       "family": "circular_shift_min_p" if nulls["sae"] is not None else "bonferroni",
                       "n_shifts_drawn": int(nulls["sae"].shifts.size) if nulls["sae"] is not None else 0},
    }
    units = pl.concat([sae_long, neuron_long])
    return features_df, units, summary
