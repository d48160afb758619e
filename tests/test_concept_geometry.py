"""Concept geometry: a concept held as one shared direction vs one held as a subspace (one direction per
offset, none shared), on planted activations, over several seeds."""

from __future__ import annotations

import numpy as np
import pytest

from interp.sae.concept_geometry import best_threshold_f1, concept_geometry
from interp.sae.splits import TEST, TRAIN, VALIDATION

D, N_OFFSETS, PREVALENCE = 64, 16, 0.1


def _samples(seed: int, n: dict[int, int] | None = None) -> tuple[dict, list[str]]:
    """Two concepts on disjoint tokens: "direction" adds 4 x one unit vector u; "subspace" adds 6 x one of
    16 orthonormal vectors (its offset, drawn per token), orthogonal to u, so its tokens share no direction."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(D, N_OFFSETS + 1)))[0].T  # [17, D] orthonormal
    u, offsets = basis[0], basis[1:]
    samples = {}
    for code, m in (n or {TRAIN: 20_000, VALIDATION: 6_000, TEST: 6_000}).items():
        x = rng.normal(size=(m, D))
        which = rng.random(m)
        direction = which < PREVALENCE
        subspace = (which >= PREVALENCE) & (which < 2 * PREVALENCE)
        x[direction] += 4.0 * u
        x[subspace] += 6.0 * offsets[rng.integers(0, N_OFFSETS, subspace.sum())]
        samples[code] = ([x[: m // 2], x[m // 2:]], [np.c_[direction, subspace][: m // 2],
                                                      np.c_[direction, subspace][m // 2:]])
    return samples, ["direction", "subspace"]


@pytest.mark.parametrize("seed", range(5))
def test_a_shared_direction_is_one_direction_and_offset_directions_need_a_subspace(seed):
    rows = {r["concept"]: r for r in concept_geometry(*_samples(seed))}
    one, many = rows["direction"], rows["subspace"]
    assert one["direction_f1"] > 0.9 and one["subspace_dim"] == 2  # the smallest subspace tried already has it
    # no direction is shared: the mean difference reads each offset at 6/4 = 1.5 noise SDs; it takes the
    # 16-dim subspace to hold all of them (measured: direction 0.45-0.47, subspace8 0.52-0.59, 16: 0.83-0.87)
    assert many["direction_f1"] < 0.55
    assert many["subspace8_f1"] < 0.7 and many["subspace16_f1"] > 0.8
    assert many["subspace_dim"] == 16


def test_best_threshold_is_chosen_on_validation_and_scored_on_test():
    y_val = np.array([0, 0, 1, 1], dtype=bool)
    # on validation "score >= 2" is perfect; on test the same threshold fires on one negative and one positive
    f1_val, f1_test = best_threshold_f1(np.array([0.0, 1.0, 2.0, 3.0]), y_val, np.array([2.5, 0.0, 1.0, 3.0]),
                                        np.array([0, 0, 1, 1], dtype=bool))
    assert f1_val == 1.0 and f1_test == pytest.approx(0.5)


def test_concepts_too_rare_in_training_or_absent_from_a_split_get_nulls():
    samples, names = _samples(0, {TRAIN: 200, VALIDATION: 200, TEST: 200})  # about 20 training tokens each
    rows = concept_geometry(samples, names)
    assert all(r["direction_f1"] is None and r["subspace_dim"] is None for r in rows)
    assert concept_geometry({TRAIN: ([], []), VALIDATION: ([], []), TEST: ([], [])}, ["a"])[0]["subspace32_f1"] is None


def test_wide_inputs_take_the_randomized_svd_and_agree_with_the_exact_one(monkeypatch):
    """Above EXACT_SVD_VALUES (concept tokens x width) the top directions come from a seeded randomized SVD,
    so a wide model costs O(n d k); on the planted concepts it gives the exact path's answer."""
    import interp.sae.concept_geometry as geometry

    samples, names = _samples(0)
    exact = {r["concept"]: r for r in concept_geometry(samples, names)}
    monkeypatch.setattr(geometry, "EXACT_SVD_VALUES", 0)
    called = []
    real = geometry._top_directions
    monkeypatch.setattr(geometry, "_top_directions", lambda m, k, seed: called.append(m.shape) or real(m, k, seed))
    fast = {r["concept"]: r for r in geometry.concept_geometry(samples, names)}
    assert called and all(shape[1] == D for shape in called)
    for name in names:
        assert fast[name]["subspace_dim"] == exact[name]["subspace_dim"]
        assert fast[name]["direction_f1"] == exact[name]["direction_f1"]  # the direction needs no SVD
        for g in (8, 16, 32):
            assert abs(fast[name][f"subspace{g}_f1"] - exact[name][f"subspace{g}_f1"]) < 0.02


def test_narrow_activations_fit_only_subspaces_below_their_width():
    """A 16-wide layer: subspaces of 16 or 32 dimensions would hold every token whole, so they are null; the
    narrower ones and the direction are still read (this raised an IndexError before)."""
    rng = np.random.default_rng(0)
    samples = {}
    for code in (TRAIN, VALIDATION, TEST):
        x = rng.normal(size=(3000, 16))
        y = rng.random(3000) < 0.1
        x[y, 0] += 8.0
        samples[code] = ([x], [y[:, None]])
    [row] = concept_geometry(samples, ["shift"])
    assert row["direction_f1"] > 0.9 and row["subspace_dim"] == 2
    assert row["subspace8_f1"] is not None and row["subspace16_f1"] is None and row["subspace32_f1"] is None
