"""Family-wise p-values of the concept-label test from circular shifts of the concept tracks.

The label test's binomial p (`interp.sae.concepts.binomial_sf_effective`) counts effective tokens, and
Bonferroni needs its far tail to be right. When a concept comes in a few long runs the true-positive count is a
sum over a few chance overlaps of runs, whose tail is heavier than the effective binomial's (1.5-2.7x at 1e-4 with
the exact design effect); Bonferroni's bound is also loose for correlated units, so family-wise it measured at or
under alpha (4 and 11 of 200 planted null families) while labelling fewer of the units that are there. Here the
null follows the runs instead, exact for a rotation-invariant pair of tracks (11 and 9 of 200): every concept track is shifted circularly
along the test bases, by the same `n_shifts` random offsets for every concept, against the units' firing,
which keeps both sides' run structure and breaks only their alignment (the circular permutation of
genomic-interval tests). The family is one test per unit, of its candidate concept (chosen on the validation
blocks, so the choice does not depend on the test blocks). For each shift the whole family's binomial p-values
are recomputed and their minimum kept; a unit's family-wise p is (1 + shifts whose minimum is <= its p) /
(1 + n_shifts) (Westfall and Young's single-step min-p), which controls the family-wise error without
Bonferroni's bound.

Coordinates: the test tokens' bases, merged into disjoint intervals and laid end to end (`circular_layout`), so
that a shift moves a concept's runs to other test bases only. A token covering bases [x, x + span) under shift
s holds concept c when any base of [x + s, x + s + span) (mod the total length L) does.
Cost of the pass: (shifts + 1) x the firing entries of the test tokens (sparse codes; a matrix product per
concept for dense ones, tokens x units x (shifts + 1)), plus tokens x concepts x (shifts + 1) binary searches;
memory (shifts + 1) x (units + concepts) counts, never per token beyond one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def circular_layout(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint intervals (starts, ends) [k] covering the spans [starts, ends) (genome keys, any order,
    overlapping), and offsets [k + 1]: interval i occupies [offsets[i], offsets[i + 1]) of the circle."""
    if starts.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order].astype(np.int64), ends[order].astype(np.int64)
    reach = np.maximum.accumulate(e)
    new = np.r_[True, s[1:] > reach[:-1]]  # touching spans (s == previous reach) join one interval
    first = np.flatnonzero(new)
    merged_s = s[first]
    merged_e = np.maximum.reduceat(e, first)
    return merged_s, merged_e, np.r_[0, np.cumsum(merged_e - merged_s)]


def to_circle(keys: np.ndarray, starts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Circle coordinate [m] of genome keys lying in the `circular_layout` intervals."""
    i = np.searchsorted(starts, keys, side="right") - 1
    return offsets[i] + (keys - starts[i])


def runs_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) [r] of the runs of True in bool [L]."""
    edge = np.diff(np.r_[0, values.astype(np.int8), 0])
    return np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)


def overlaps_runs(x: np.ndarray, span: np.ndarray, run_starts: np.ndarray, run_ends: np.ndarray,
                  length: int) -> np.ndarray:
    """bool, shape of x: does the circular interval [x, x + span) (x in [0, length)) meet a run?
    Runs: sorted, disjoint, inside [0, length)."""
    if run_starts.size == 0:
        return np.zeros(x.shape, dtype=bool)

    def meets(a, b):  # [a, b) inside [0, length]
        j = np.searchsorted(run_ends, a, side="right")  # first run ending after a
        return (j < run_starts.size) & (run_starts[np.minimum(j, run_starts.size - 1)] < b)

    end = x + span
    out = meets(x, np.minimum(end, length))
    wraps = end > length
    if wraps.any():
        out[wraps] |= meets(np.zeros(int(wraps.sum()), dtype=x.dtype), end[wraps] - length)
    return out


@dataclass
class ShiftNull:
    """True-positive counts of every unit's candidate concept at its chosen threshold under circular shifts of the
    concept tracks; shift 0 (the data) first.

    One test per unit: its candidate concept (`interp.sae.concepts.validation_choice`, chosen on validation
    blocks) at that pair's threshold. concept [U]: each unit's candidate (index into the tracks); levels [U]:
    its threshold index (a unit fires when its `ThresholdCounts` level, ceil(score x n_thresholds / scale),
    exceeds it); scale [U]: the units' scales; values bool [L, C]: the concepts along the circle
    (`circular_layout`); shifts [B] in [0, L).
    """

    concept: np.ndarray
    levels: torch.Tensor
    scale: torch.Tensor
    n_thresholds: int
    run_starts: list[np.ndarray]
    run_ends: list[np.ndarray]
    length: int
    shifts: np.ndarray
    tp: np.ndarray
    n_pos: np.ndarray
    n_tokens: int = 0

    @classmethod
    def build(cls, concept: np.ndarray, levels: np.ndarray, scale: np.ndarray, n_thresholds: int,
              values: np.ndarray, n_shifts: int, seed: int) -> ShiftNull:
        L, C = values.shape
        runs = [runs_of(values[:, c]) for c in range(C)]
        # uniform over the whole circle, 0 included: the data and its shifted copies are then exchangeable (a random
        # rotation of a rotation-invariant pair is distributed as the pair), which (1 + count) / (1 + B) needs.
        # Leaving out shifts within 5% of 0 leaves out the copies most like the data, and null families were
        # labelled in 14 of 200 (7%); leaving out 0 alone errs by 1 / L (on a 3-base circle a null was labelled 1
        # time in 3). A circle of one base: every shift is 0, and every p 1
        rng = np.random.default_rng([seed, 211])
        shifts = rng.integers(0, L, size=n_shifts) if L > 0 else np.zeros(0, np.int64)
        return cls(concept=np.asarray(concept, dtype=np.int64),
                   levels=torch.from_numpy(np.asarray(levels, dtype=np.int64)),
                   scale=torch.from_numpy(np.where(scale > 0, scale, 1.0)).double(), n_thresholds=n_thresholds,
                   run_starts=[r[0] for r in runs], run_ends=[r[1] for r in runs], length=int(L),
                   shifts=np.asarray(shifts, dtype=np.int64), tp=np.zeros((shifts.size + 1, len(concept))),
                   n_pos=np.zeros((shifts.size + 1, C)))

    def add(self, scores: torch.Tensor, position: np.ndarray, span: np.ndarray) -> None:
        """scores [m, U] as `ThresholdCounts.add` takes them; position [m]: circle coordinate of each token's
        first base; span [m]: bases it covers."""
        m, U = scores.shape
        if m == 0:
            return
        self.n_tokens += m
        # the levels exactly as `ThresholdCounts.add` computes them (0: silent)
        tok, unit = torch.nonzero(scores > 0, as_tuple=True)
        level = torch.ceil(scores[tok, unit].double() * self.n_thresholds / self.scale[unit]).clamp(1, self.n_thresholds)
        on = level > self.levels[unit]
        tok, unit = tok[on], unit[on]                                    # the firing entries
        x = (np.asarray(position, dtype=np.int64)[:, None] + np.r_[0, self.shifts][None]) % max(self.length, 1)
        s = np.broadcast_to(np.asarray(span, dtype=np.int64)[:, None], x.shape)
        tp = torch.zeros(U, self.shifts.size + 1, dtype=torch.float32)  # exact: a chunk's counts are < 2**24
        dense = tok.numel() * 8 > m * U  # a dense code (neurons): one matrix product per concept
        if dense:
            fires = torch.zeros(m, U, dtype=torch.float32)
            fires[tok, unit] = 1.0
        unit_concept = torch.from_numpy(self.concept)
        for c in np.unique(self.concept):
            held = overlaps_runs(x, s, self.run_starts[c], self.run_ends[c], self.length)       # [m, B + 1]
            self.n_pos[:, c] += held.sum(axis=0)
            held_t = torch.from_numpy(held.astype(np.float32))
            if dense:
                cols = torch.from_numpy(np.flatnonzero(self.concept == c))
                tp[cols] += fires[:, cols].T @ held_t
            else:
                sel = torch.nonzero(unit_concept[unit] == c).ravel()
                for part in sel.split(65536):  # [entries, B + 1] temporaries of at most 65,536 rows
                    tp.index_add_(0, unit[part], held_t[tok[part]])
        self.tp += tp.T.double().numpy()

    def family_p(self, p_value: np.ndarray, fire: np.ndarray, effect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(family-wise p [U], the family's minimum p under each shift [B]) from the data's p-values, the units'
        firing counts and design effects [U] of their candidate pairs (the data's, also under the shifts: a shift
        moves the concept, not its runs). With no shifts (an empty circle) every p is 1."""
        from interp.sae.concepts import binomial_sf_effective

        B = self.shifts.size
        if B == 0:
            return np.ones(np.shape(p_value), dtype=float), np.zeros(0)
        prevalence = (self.n_pos[1:] / max(self.n_tokens, 1))[:, self.concept]                  # [B, U]
        shape = self.tp[1:].shape
        null_p = binomial_sf_effective(self.tp[1:], np.broadcast_to(fire, shape), prevalence,
                                       np.broadcast_to(effect, shape))
        minimum = null_p.min(axis=1)
        p = np.nan_to_num(np.asarray(p_value, dtype=float), nan=1.0)
        below = np.searchsorted(np.sort(minimum), p, side="right")
        return (1.0 + below) / (1.0 + B), minimum
