"""Planted-motif calibration of SAE features: the synthetic genome, the match table, the steering control,
and (slow) the whole `planted` rule chain against the issue's targets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pysam
import pytest

from interp.genome.fasta import read_fasta
from interp.lm.markov import encode_acgt
from interp.sae.concepts import LabelConfig, ThresholdCounts, label_units
from interp.sae.planted import (
    PlantedTargets,
    check_rows,
    match_table,
    match_verdict,
    steering_table,
    windows_with,
)
from interp.sae.planted_genome import (
    PlantedConfig,
    kmer_frequencies,
    motif_frequencies,
    planted_genome,
    planted_tracks,
    read_planted_bed,
    write_planted,
)

ROOT = Path(__file__).resolve().parent.parent
DEMO_FASTA = ROOT / "resources" / "demo" / "hg19_chr17_1-40000.fa"


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    source = read_fasta(DEMO_FASTA)["chr17"].upper()
    cfg = PlantedConfig(length=60_000, motifs=["CTCF", "REST"], motif_rate=1.0, repeat_rate=0.2, island_rate=0.05)
    seq, elements, stats = planted_genome(cfg, [source])
    out = tmp_path_factory.mktemp("planted")
    write_planted(seq, elements, cfg.contig, out / "planted.fa", out / "planted.bed")
    return {"cfg": cfg, "seq": seq, "elements": elements, "stats": stats, "source": source, "dir": out}


def test_planted_elements_sit_where_the_bed_says(genome):
    cfg, seq, elements = genome["cfg"], genome["seq"], genome["elements"]
    # the FASTA (through its pysam index) and the BED round-trip
    with pysam.FastaFile(str(genome["dir"] / "planted.fa")) as fa:
        assert fa.fetch(cfg.contig) == seq
    assert read_planted_bed(genome["dir"] / "planted.bed").equals(elements)
    counts = dict(elements.group_by("name").len().iter_rows())
    assert counts == {"motif_CTCF": 60, "motif_REST": 60, "repeat": 12, "gc_island": 3}
    starts, ends = elements["start"].to_numpy(), elements["end"].to_numpy()
    assert (starts[1:] - ends[:-1] >= cfg.min_gap).all() and starts[0] >= cfg.min_gap and ends[-1] <= cfg.length
    freqs = motif_frequencies(["CTCF", "REST"])
    comp = str.maketrans("ACGT", "TGCA")
    llr: dict[str, list[float]] = {}
    for r in elements.iter_rows(named=True):
        piece = seq[r["start"]:r["end"]]
        if r["name"] == "repeat":
            unit = cfg.repeat_unit
            assert piece == unit * (len(piece) // len(unit)) and cfg.repeat_copies[0] <= len(piece) // len(unit)
        elif r["name"] == "gc_island":
            assert cfg.island_length[0] <= len(piece) <= cfg.island_length[1]
            assert 0.65 < sum(b in "GC" for b in piece) / len(piece) < 0.85
        else:
            f = freqs[r["name"].removeprefix("motif_")]
            oriented = piece if r["strand"] == "+" else piece.translate(comp)[::-1]
            assert len(piece) == f.shape[1]
            # log-likelihood ratio, motif vs uniform, of the instance read on its own strand
            llr.setdefault(r["name"], []).append(
                sum(np.log(f["ACGT".index(b), j] / 0.25) for j, b in enumerate(oriented)))
    for name, values in llr.items():
        f = freqs[name.removeprefix("motif_")]
        expected = float((f * np.log(f / 0.25)).sum())  # the motif's relative entropy (nats): E[LLR]
        assert abs(np.mean(values) - expected) < 0.15 * expected, (name, np.mean(values), expected)
        assert np.mean(np.asarray(values) > 0) > 0.95
    # the strands are mixed
    assert set(elements.filter(pl.col("name") == "motif_CTCF")["strand"]) == {"+", "-"}
    # per-base tracks: exactly the planted bases
    bases = pl.DataFrame({"contig": [cfg.contig] * cfg.length, "pos": np.arange(cfg.length)})
    tracks = planted_tracks(bases, elements)
    assert tracks.names == ["gc_island", "motif_CTCF", "motif_REST", "repeat"]
    for j, name in enumerate(tracks.names):
        sub = elements.filter(pl.col("name") == name)
        expect = np.zeros(cfg.length, dtype=bool)
        for s, e in sub.select("start", "end").iter_rows():
            expect[s:e] = True
        assert (tracks.values[:, j] == expect).all()


def test_background_keeps_the_source_3mer_statistics(genome):
    seq, elements = genome["seq"], genome["elements"]
    background = np.frombuffer(seq.encode(), dtype=np.uint8).copy()
    for s, e in elements.select("start", "end").iter_rows():
        background[s:e] = ord("N")
    k3_source = kmer_frequencies(genome["source"], 3)
    k3_background = kmer_frequencies(background.tobytes().decode(), 3)
    # 64 frequencies of about 1/64 each: the chain reproduces them within sampling noise
    assert np.abs(k3_source - k3_background).max() < 0.004
    assert np.corrcoef(k3_source, k3_background)[0, 1] > 0.97
    # and the transition table it sampled from is the source's order-3 conditional frequencies
    transition = np.asarray(genome["stats"]["background_transition"])
    assert transition.shape == (64, 4) and np.allclose(transition.sum(axis=1), 1)
    # CpG depletion of the (human) source carries over: CG is rarer than GC
    k2 = kmer_frequencies(background.tobytes().decode(), 2)
    assert k2[1 * 4 + 2] < 0.5 * k2[2 * 4 + 1]


def _chain_z(seq: str, transition: np.ndarray, positions: np.ndarray) -> float:
    """z of the summed log-probability of the bases at `positions` under the order-3 chain, given the bases
    before them: about N(0, 1) when those bases were drawn from the chain given exactly those bases."""
    codes = encode_acgt(seq)
    log_t = np.log(transition)
    context = codes[positions - 3] * 16 + codes[positions - 2] * 4 + codes[positions - 1]
    observed = log_t[context, codes[positions]]
    mean = (transition * log_t).sum(axis=1)[context]
    var = (transition * log_t**2).sum(axis=1)[context] - mean**2
    return float((observed - mean).sum() / np.sqrt(var.sum()))


def test_background_after_each_element_follows_the_chain_given_the_element(genome):
    # The 3 background bases after an element are drawn given the element's last bases (until the thirty-
    # third session they were drawn given bases the element then overwrote: z -1.4 to -4.5 here, 7 of 12
    # beyond 2.58; -13 at 200 kb).
    # Over 12 genomes, the junction bases' z is N(0, 1): at most 2 beyond 2.58 (1% each) and a mean near 0.
    transition = np.asarray(genome["stats"]["background_transition"])
    z_junction, z_interior = [], []
    for seed in range(12):
        cfg = PlantedConfig(length=30_000, motifs=["CTCF", "REST"], motif_rate=1.0, repeat_rate=0.2,
                            island_rate=0.05, seed=seed)
        seq, elements, _ = planted_genome(cfg, [genome["source"]])
        planted = np.zeros(cfg.length, dtype=bool)
        for s, e in elements.select("start", "end").iter_rows():
            planted[s:e] = True
        recent = np.convolve(planted, np.ones(3, dtype=int))[:cfg.length]  # planted bases among i-2..i
        after = np.zeros(cfg.length, dtype=bool)
        after[1:] = recent[:-1] > 0  # a planted base among the 3 before i
        positions = np.arange(3, cfg.length)
        background = ~planted[positions]
        z_junction.append(_chain_z(seq, transition, positions[background & after[positions]]))
        z_interior.append(_chain_z(seq, transition, positions[background & ~after[positions]]))
    for z in (z_junction, z_interior):
        assert sum(abs(v) > 2.58 for v in z) <= 2, z
        assert abs(np.mean(z)) < 3 / np.sqrt(len(z)), z


def test_same_seed_same_genome(genome):
    again, elements, _ = planted_genome(genome["cfg"], [genome["source"]])
    assert again == genome["seq"] and elements.equals(genome["elements"])


def _counts(scores: np.ndarray, concepts: np.ndarray, scale: np.ndarray) -> ThresholdCounts:
    import torch

    counts = ThresholdCounts(scale, concepts.shape[1], 32)
    counts.add(torch.from_numpy(scores), concepts)
    return counts


def test_match_table_finds_planted_features_and_counts_the_share():
    """A synthetic activation matrix: feature 3 fires on type A (plus a little noise), feature 7 on
    type B but also on as many random tokens, type C has no feature. Thresholds come from the
    validation half; the table reports the test half."""
    rng = np.random.default_rng(0)
    n, F = 40_000, 12
    concepts = np.zeros((n, 3), dtype=bool)
    for j, rate in enumerate((0.03, 0.02, 0.02)):
        starts = rng.choice(n - 20, size=int(rate * n / 15), replace=False)
        for s in starts:
            concepts[s:s + 15, j] = True
    scores = np.where(rng.random((n, F)) < 0.05, rng.random((n, F)), 0.0)
    scores[:, 3] = np.where(concepts[:, 0], 2 + rng.random(n), np.where(rng.random(n) < 0.002, 1.5, 0.0))
    scores[:, 7] = np.where(concepts[:, 1] | (rng.random(n) < 0.02), 2 + rng.random(n), 0.0)
    val, test = slice(0, n // 2), slice(n // 2, n)
    scale = scores[val].max(axis=0)
    long = label_units(_counts(scores[val], concepts[val], scale), _counts(scores[test], concepts[test], scale),
                       ["A", "B", "C"], LabelConfig(), "sae")
    targets = PlantedTargets()
    match = match_table(long, targets)
    assert match["concept"].to_list() == ["A", "B", "C"]
    a, b, c = match.iter_rows(named=True)
    assert a["feature"] == 3 and a["f1"] > 0.9 and a["lift"] > 20 and a["matched"]
    assert b["feature"] == 7 and 0.4 < b["precision"] < 0.6 and not b["matched"]  # half its firing is noise
    assert not c["matched"] and c["f1"] < 0.2
    verdict = match_verdict(match, targets)
    assert verdict["n_matched"] == 1 and verdict["n_types"] == 3 and not verdict["pass"]
    assert match_verdict(match.filter(pl.col("concept") == "A"), targets)["pass"]
    # the choice of feature is made on validation: a feature that is best on test only is not picked
    assert (long.filter((pl.col("concept") == "A") & (pl.col("unit") == 3))["validation_f1"]
            == long.filter(pl.col("concept") == "A")["validation_f1"].max()).all()


def test_baseline_columns_carry_the_sae_stage_probe_and_neuron_per_type():
    """The match table's baselines come from the SAE stage's concept analysis, renamed, one row per type; a
    metrics file without concept labels gives an empty table of the same schema (left-joined as nulls)."""
    from interp.sae.planted import baseline_columns

    metrics = {"labels": {"concepts": [
        {"concept": "motif_A", "probe_f1": 0.85, "probe_lift": 14.0, "best_neuron_f1": 0.4, "best_neuron_unit": 7,
         "direction_f1": 0.3, "subspace8_f1": 0.5, "subspace32_f1": 0.82, "subspace_dim": 32},
        {"concept": "repeat", "probe_f1": None, "best_neuron_f1": 0.9, "best_neuron_unit": 3}]}}
    table = baseline_columns(metrics)
    assert table.columns == ["concept", "probe_f1", "probe_lift", "neuron_f1", "neuron", "direction_f1",
                             "subspace8_f1", "subspace32_f1", "subspace_dim"]
    assert table.row(0, named=True) == {"concept": "motif_A", "probe_f1": 0.85, "probe_lift": 14.0,
                                        "neuron_f1": 0.4, "neuron": 7, "direction_f1": 0.3, "subspace8_f1": 0.5,
                                        "subspace32_f1": 0.82, "subspace_dim": 32}
    assert table.row(1, named=True)["subspace_dim"] is None
    assert table.row(1, named=True)["probe_f1"] is None and table.row(1, named=True)["neuron"] == 3
    empty = baseline_columns({})
    assert empty.height == 0 and empty.columns == table.columns
    match = pl.DataFrame({"concept": ["motif_A", "motif_B"], "f1": [0.3, 0.2]})
    joined = match.join(table, on="concept", how="left")
    assert joined["probe_f1"].to_list() == [0.85, None]


def test_steering_raises_the_motif_bases_beyond_the_random_control():
    from tests.test_sae_concepts import _toy_lm_and_sae

    lm, sae = _toy_lm_and_sae()
    # feature 0 writes the head's "A" direction: clamping it raises p(A) at the planted "motif" (A-runs)
    seq = "CGTACGTCAAAAAAAAAAGTCGATCGTCAGTAAAAAAAAAACGT" * 2
    windows = pl.DataFrame({"contig": ["c"], "start": [0], "end": [len(seq)], "sequence": [seq]})
    elements = pl.DataFrame({"contig": ["c"] * 4, "start": [8, 31, 52, 75], "end": [18, 41, 62, 85],
                             "name": ["motif_A"] * 4, "strand": ["+"] * 4})
    seqs, marks = windows_with(windows, elements, "motif_A")
    assert len(seqs) == 1 and marks[0].sum() == 40 and set(seq[i] for i in np.flatnonzero(marks[0])) == {"A"}
    match = pl.DataFrame({"concept": ["motif_A", "motif_B", "gc_island"], "feature": [0, 5, 0],
                          "matched": [True, False, True]})
    features = pl.DataFrame({"feature": list(range(32)), "mean_activation": [5.0] * 32})
    table = steering_table(lm, "block2", sae, match, features, windows, elements, strength_multiplier=4.0,
                           n_random=19)
    assert table["concept"].to_list() == ["motif_A"]  # matched motif types only
    row = table.row(0, named=True)
    assert row["n_motif_bases"] == 40 and row["strength"] == 20.0
    assert row["dp_motif"] > 0.1 and row["dp_motif"] > row["control_dp_motif_q95"] and row["raises_motif"]
    # the check clamps where the feature fires; the clamp at every position is reported beside
    assert 0 < row["n_clamped"] <= len(seq) and row["raises_motif_everywhere"]
    assert row["dp_motif_everywhere"] > row["control_dp_motif_q95_everywhere"]
    # the same feature clamped at 0 (no push along "A") does not beat the control
    weak = steering_table(lm, "block2", sae, match, features.with_columns(mean_activation=pl.lit(0.0)), windows,
                          elements, n_random=19)
    assert not weak["raises_motif"][0]
    # an unmatched type's best per-base feature is steered beside (rule per_base_best), outside the check
    unmatched = match.with_columns(matched=pl.lit(False))
    beside = steering_table(lm, "block2", sae, unmatched, features, windows, elements, n_random=19, best_unmatched=True)
    assert beside["rule"].to_list() == ["per_base_best"] and beside["raises_motif"][0]  # motif_B has no windows
    assert check_rows(beside).height == 0
    assert steering_table(lm, "block2", sae, unmatched, features, windows, elements, n_random=19).height == 0


@pytest.fixture(scope="module")
def planted_run():
    """`snakemake planted` end to end on the default planted settings (about 20 minutes on 2 cores: the d_model
    256 LM trains on one thread), run once."""
    run = f"planted_test_{os.getpid()}_{time.time_ns()}"  # a fresh run: never up to date from an earlier session
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "planted", "-c2", "--directory", str(ROOT), "--configfile",
           str(ROOT / "configs" / "demo.yaml"), "--config", f"run={run}"]
    try:
        subprocess.run(cmd, check=True, cwd=ROOT, env=env)
        yield json.loads((ROOT / "results" / run / "planted" / "calibration.json").read_text())
    finally:
        shutil.rmtree(ROOT / "results" / run, ignore_errors=True)


@pytest.mark.slow
def test_planted_lm_beats_order3_markov(planted_run):
    # measured: held-out 1.0703 nats vs order-3 1.3171 and order-0 1.3743 on the corrected background (2026-12-07,
    # thirty-third session); before it 1.0796 (2026-12-05) and 1.0812 (2026-12-04, -06) vs order-3 1.3214
    lm = planted_run["lm"]
    assert lm["heldout_ce"] < lm["baseline_order3_ce"] < lm["baseline_order0_ce"], lm
    assert planted_run["lm_beats_order3"]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured 2026-12-04 (d_model 256 LM, TopK 1,024 with the T-SAE temporal "
                   "loss on 20%): 2 of 7 planted types matched per base (gc_island F1 0.80, repeat 0.93); motifs F1 "
                   "0.26-0.55 (0.17-0.33 without the temporal loss) against PWM-oracle F1 0.85-0.99 and a linear probe "
                   "on the same activations of 0.67-0.90; rerun 2026-12-04 (ninth session): islands 0.88, repeat 0.89, "
                   "motifs 0.23-0.47 vs probe 0.65-0.90, the motifs' shared shift 0.20-0.44; fifteenth session "
                   "(2026-12-05, straddling windows left out): islands 0.86, repeat 0.86, motifs 0.26-0.52 vs probe "
                   "0.63-0.89; twenty-fifth session (TopK's encoder product shared with AuxK, this machine's LM, 1.0812 nats): "
                   "1 of 7 (islands 0.88, repeat 0.70), motifs 0.26-0.54 vs probe 0.63-0.88; over 7 SAE seeds on that LM "
                   "1-2 of 7; twenty-eighth session (active-feature decode, same LM): 1 of 7 (islands 0.88, repeat 0.71), "
                   "motifs 0.26-0.56; twenty-ninth session (fused Adam): the same to 6-7 digits, over 7 SAE seeds "
                   "0-2 of 7; thirty-third session (the background corrected, a new LM): 2 of 7 (islands 0.87, "
                   "repeat 0.90), motifs 0.25-0.52 vs probe 0.65-0.89 (README, Planted-motif calibration)")
def test_planted_types_matched_by_sae_features(planted_run):
    assert planted_run["match_share_matched"] >= 0.8, planted_run["match"]


@pytest.mark.slow
def test_planted_types_matched_per_instance(planted_run):
    """InterPLM's reading (per-base precision, recall per instance), reported beside the per-base target:
    measured 2026-12-04 (d_model 256 LM, TopK 1,024 + temporal 20%), 7 of 7 types (instance F1 0.83-1.00, lift 13-77);
    the ninth session's rerun 6 of 7 (CTCF 0.799); the fifteenth session's 7 of 7 (CTCF 0.861); the twenty-fifth
    session's 7 of 7 (CTCF 0.818); the twenty-eighth session's 7 of 7 (CTCF 0.823), the twenty-ninth the same; the
    thirty-third session's, on the corrected background, 7 of 7 (CTCF 0.829, the repeat 0.889)."""
    assert planted_run["match_instance_share_matched"] >= 0.8, planted_run["match"]
    for row in planted_run["match"]:
        assert row["matched_instance"] == (row["instance_f1"] >= 0.8 and row["instance_lift"] >= 5.0)
        if row["concept"].startswith("motif_"):  # the ceiling: the PWM oracle on the same test bases
            assert row["oracle_f1"] > 0.8 and row["f1"] < row["oracle_f1"]
        assert 0.0 <= row["probe_f1"] <= 1.0 and 0.0 <= row["neuron_f1"] <= 1.0  # the baselines beside
        assert 0.0 <= row["direction_f1"] <= 1.0 and 0.0 <= row["subspace32_f1"] <= 1.0  # the geometry beside


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured 2026-12-04 (d_model 256 LM, TopK 1,024 + temporal 20%): no motif "
                   "type is matched per base, so `pass` stays false; of the five motif features matched per instance, "
                   "clamped where they fire, four raise their motif's bases above the random control (dp +0.0003 to "
                   "+0.0071 vs control q95 -0.0000 to +0.0021) and TP53's does not (+0.0007 vs +0.0010); rerun "
                   "(ninth session): 2 of the 4 instance-matched motif features (NRF1, TP53); fifteenth session, "
                   "with 19 controls: 4 of 5 above all of them (TP53's not, p 0.35); twenty-fifth session: 3 of 5 (TP53's and "
                   "ZNF143's not, p 0.3 each); twenty-eighth and twenty-ninth sessions: 3 of 5 (the same three); "
                   "thirty-third session (corrected background): 3 of 5 (CTCF, REST, TP53)")
def test_planted_steering_beats_the_random_control(planted_run):
    assert planted_run["steering_pass"], planted_run["steering"]
    assert planted_run["pass"]


@pytest.mark.slow
def test_planted_steering_rows_report_both_clamps(planted_run):
    """Each steered motif feature: the check's clamp where it fires (n_clamped > 0 positions) and the clamp at
    every position beside it; the verdict follows the stated rule (dp above 0 and Monte Carlo p <= 0.05 against
    the 19 random controls: above all of them; until the eleventh session "above their 95th percentile", which
    this test still asserted: the fifteenth session's ZNF143 per-base row, dp above q95 at p 0.10, broke it)."""
    from interp.sae.steer import CONTROL_ALPHA

    assert planted_run["steering"], "no motif feature was steered"
    for row in planted_run["steering"]:
        assert row["n_clamped"] > 0 and row["n_motif_bases"] > 0
        for suffix in ("", "_everywhere"):
            assert row[f"raises_motif{suffix}"] == (
                row[f"dp_motif{suffix}"] > 0.0 and row[f"control_p_motif{suffix}"] <= CONTROL_ALPHA)


# ---------------------------------------------------------------- the oracle and the instance-level match
def _split_codes(windows: pl.DataFrame, block: int = 1000):
    from interp.sae.planted import base_split
    from interp.sae.splits import block_split

    split = block_split(windows, block, 0.3, 0.3, 7)
    return split, base_split(windows, split, windows["contig"][0], int(windows["end"].max()))


def test_oracle_scanner_knows_the_motifs_and_the_background(genome):
    """The PWM oracle: the background log-probabilities are the chain's, both strands are scanned, and on
    the planted genome it calls the motif bases with high per-base F1 (the ceiling of the match table)."""
    from interp.lm.markov import encode_acgt
    from interp.sae.planted_oracle import background_logprob, covered, motif_llr, oracle_table

    cfg, seq, elements = genome["cfg"], genome["seq"], genome["elements"]
    transition = np.asarray(genome["stats"]["background_transition"])
    codes = encode_acgt(seq[:500])
    lp = background_logprob(codes, transition)
    i = 100
    ctx = int(codes[i - 3]) * 16 + int(codes[i - 2]) * 4 + int(codes[i - 1])
    assert lp[i] == pytest.approx(np.log(transition[ctx, codes[i]]))
    freqs = motif_frequencies(["CTCF", "REST"])
    f = freqs["CTCF"]
    consensus = "".join("ACGT"[j] for j in f.argmax(axis=0))
    minus = consensus.translate(str.maketrans("ACGT", "TGCA"))[::-1]
    for planted in (consensus, minus):  # the consensus scores the same on either strand
        s = "A" * 50 + planted + "C" * 50
        c = encode_acgt(s)
        llr = motif_llr(c, f, np.zeros(c.size))
        assert int(llr.argmax()) == 50
        assert llr[50] == pytest.approx(np.log(f.max(axis=0)).sum())
    assert covered(np.array([False, True, False, False, True]), 3, 8).tolist() == [
        False, True, True, True, True, True, True, False]
    width = 500
    starts = np.arange(0, cfg.length, width)
    windows = pl.DataFrame({"window_index": np.arange(starts.size), "contig": [cfg.contig] * starts.size,
                            "start": starts, "end": starts + width})
    _, code = _split_codes(windows)
    table = oracle_table(seq, elements, transition, freqs, code)
    assert table["concept"].to_list() == ["motif_CTCF", "motif_REST"]
    for r in table.iter_rows(named=True):
        assert r["oracle_f1"] > 0.8 and r["oracle_instance_recall"] > 0.85, r


def test_oracle_threshold_ignores_the_test_blocks():
    """The oracle's threshold grid and choice come from the validation blocks: the highest-scoring motif
    hit written into a test block (so the contig's maximum LLR rises) leaves the threshold unchanged."""
    from interp.sae.planted_oracle import background_logprob, motif_llr, oracle_table
    from interp.sae.splits import TEST, TRAIN, VALIDATION

    rng = np.random.default_rng(0)
    n, w = 9000, 8
    freq = np.full((4, w), 0.1)
    consensus = rng.integers(0, 4, w)
    freq[consensus, np.arange(w)] = 0.7
    uniform = np.full((1, 4), 0.25)  # order-0 background
    codes = rng.integers(0, 4, n)
    split = np.full(n, TRAIN, dtype=np.int8)
    split[:3000], split[6000:] = VALIDATION, TEST
    rows = []
    for start in range(100, n - 20, 150):
        while True:  # sampled instances, never the exact consensus
            inst = np.array([rng.choice(4, p=freq[:, j]) for j in range(w)])
            if not (inst == consensus).all():
                break
        codes[start:start + w] = inst
        rows.append(("c", start, start + w, "motif_M"))
    elements = pl.DataFrame(rows, schema=["contig", "start", "end", "name"], orient="row")

    def table(c):
        return oracle_table("".join("ACGT"[i] for i in c), elements, uniform, {"M": freq}, split).row(0, named=True)

    top = np.log(0.7 / 0.25) * w
    while True:  # break any exact consensus hit (either strand) that the background drew by chance
        hits = np.flatnonzero(motif_llr(codes, freq, background_logprob(codes, uniform)) > top - 1e-6)
        if not hits.size:
            break
        codes[hits[0] + 1] = (codes[hits[0] + 1] + 1) % 4
    before = table(codes)
    edited = codes.copy()
    first_test = next(r[1] for r in rows if split[r[1]] == TEST)
    edited[first_test:first_test + w] = consensus
    assert motif_llr(edited, freq, background_logprob(edited, uniform)).max() == pytest.approx(top)
    after = table(edited)
    assert after["oracle_threshold"] == before["oracle_threshold"]
    assert after["oracle_validation_f1"] == before["oracle_validation_f1"]


def _identity_sae_over(path, x: np.ndarray, width: int):
    """A token store at `path` of activations x [n, d] in windows of `width` tokens, and a TopK SAE (k = d) whose
    features are the d input dimensions."""
    import torch

    from interp.embed.store import TokenStoreWriter
    from interp.sae.topk import TopKSAE

    n, d = x.shape
    writer = TokenStoreWriter(path, d, [], "m", "l")
    writer.append(x, np.repeat(np.arange(n // width), width), np.tile(np.arange(width), n // width), {})
    writer.close()
    sae = TopKSAE(d, d, d)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.eye(d))
    return sae


def test_instance_recall_is_interplm_recall_per_domain(tmp_path):
    """A feature that fires on the first base of every instance (and nowhere else) has per-base precision 1,
    per-base recall 1/15 and instance recall 1: instance F1 1.0 (per-base F1 would be 0.125). It beats a
    feature firing on every base of the instances and on as many background bases (precision 0.5)."""

    from interp.sae.planted import instance_scores
    from interp.sae.splits import TEST

    rng = np.random.default_rng(3)
    n, width = 30_000, 100
    rows = []
    pos = 50
    while pos < n - 40:
        rows.append(("c", pos, pos + 15, "motif_A", "+"))
        pos += int(rng.integers(60, 140))
    elements = pl.DataFrame(rows, schema=["contig", "start", "end", "name", "strand"], orient="row")
    inside = np.zeros(n, dtype=bool)
    first = np.zeros(n, dtype=bool)
    for _, s, e, _, _ in rows:
        inside[s:e] = True
        first[s] = True
    background = np.flatnonzero(~inside)
    noisy = inside.copy()
    noisy[rng.choice(background, size=int(inside.sum()), replace=False)] = True
    x = np.stack([first.astype(np.float32), noisy.astype(np.float32), np.zeros(n, np.float32)], axis=1)
    windows = pl.DataFrame({"window_index": np.arange(n // width), "contig": ["c"] * (n // width),
                            "start": np.arange(0, n, width), "end": np.arange(width, n + 1, width)})
    sae = _identity_sae_over(tmp_path / "t.zarr", x, width)
    split, code = _split_codes(windows)
    table = instance_scores(sae, tmp_path / "t.zarr", windows, split, elements)
    row = table.row(0, named=True)
    assert row["concept"] == "motif_A" and row["instance_feature"] == 0
    assert row["instance_precision"] == 1.0 and row["instance_recall"] == 1.0 and row["instance_f1"] == 1.0
    test = code == TEST
    assert row["n_test_instances"] > 50 and row["instance_lift"] == pytest.approx(1 / inside[test].mean())


def _absent_concept_units():
    """SAE units on two concepts: "A" (feature 0 fires on it, validation and test) and "C", present on
    the validation half only (absent from the test blocks); feature 1 never fires on the test half."""
    rng = np.random.default_rng(5)
    n = 4000
    concepts = np.zeros((2 * n, 2), dtype=bool)
    concepts[rng.choice(2 * n, 400, replace=False), 0] = True
    concepts[rng.choice(n, 200, replace=False), 1] = True       # "C": validation half only
    scores = np.zeros((2 * n, 3))
    scores[:, 0] = np.where(concepts[:, 0], 1.0, 0.0)
    scores[:n, 1] = np.where(concepts[:n, 1], 1.0, 0.0)         # feature 1: silent on the test half
    scores[:, 2] = np.where(rng.random(2 * n) < 0.1, rng.random(2 * n), 0.0)
    val, test = slice(0, n), slice(n, 2 * n)
    scale = scores[val].max(axis=0)
    return label_units(_counts(scores[val], concepts[val], scale), _counts(scores[test], concepts[test], scale),
                       ["A", "C"], LabelConfig(min_true_positives=1), "sae")


def test_undefined_concept_statistics_are_nan_not_zero():
    """A concept absent from the test blocks has no test recall, F1, lift or AUPRC (0/0): NaN, never 0 (which
    reads as "measured, and the feature missed it"); a unit that never fires on test has no precision and no
    lift. F1 stays defined (0) when the concept is there and the unit is silent. No label on NaN."""
    long = _absent_concept_units()
    c = long.filter(pl.col("concept") == "C")
    for key in ("recall", "f1", "lift", "auprc"):
        assert c[key].is_nan().all(), key
    assert (c["prevalence"] == 0).all() and not c["passes"].any()
    silent = long.filter((pl.col("unit") == 1) & (pl.col("concept") == "A")).row(0, named=True)
    assert np.isnan(silent["precision"]) and np.isnan(silent["lift"]) and silent["f1"] == 0.0
    assert silent["recall"] == 0.0
    a = long.filter((pl.col("unit") == 0) & (pl.col("concept") == "A")).row(0, named=True)
    assert a["f1"] == 1.0 and a["passes"]


def test_undefined_statistics_never_match_and_never_win_a_choice():
    """The match table of a type absent from the test blocks: NaN F1 and lift, not matched (polars orders NaN
    above every number, so `NaN >= 0.8` would be true), and a NaN validation F1 never outranks a number."""
    from interp.sae.concepts import unit_labels

    long = _absent_concept_units()
    targets = PlantedTargets(min_f1=0.5, min_lift=1.0)
    match = match_table(long, targets)
    c = match.filter(pl.col("concept") == "C").row(0, named=True)
    assert np.isnan(c["f1"]) and np.isnan(c["lift"]) and c["matched"] is False
    a = match.filter(pl.col("concept") == "A").row(0, named=True)
    assert a["feature"] == 0 and a["matched"]
    verdict = match_verdict(match, targets)
    assert verdict["n_matched"] == 1 and verdict["n_types"] == 2
    # a concept absent from validation: NaN validation F1 ranks below every unit with a number
    flipped = long.with_columns(pl.when((pl.col("concept") == "A") & (pl.col("unit") == 2))
                                .then(float("nan")).otherwise(pl.col("validation_f1")).alias("validation_f1"),
                                pl.when(pl.col("unit") == 2).then(float("nan")).otherwise(pl.col("validation_lift"))
                                .alias("validation_lift"))
    assert match_table(flipped, targets).filter(pl.col("concept") == "A")["feature"].item() == 0
    labels = unit_labels(flipped, 2.0)
    assert labels.filter(pl.col("unit") == 0)["concept"].item() == "A"
    assert match_verdict(match.head(0), targets)["share_matched"] is None


def test_oracle_statistics_of_a_motif_absent_from_the_test_blocks_are_nan():
    from interp.sae.planted_oracle import oracle_table
    from interp.sae.splits import TEST, TRAIN, VALIDATION

    rng = np.random.default_rng(1)
    n, w = 3000, 6
    freq = np.full((4, w), 0.05)
    consensus = rng.integers(0, 4, w)
    freq[consensus, np.arange(w)] = 0.85
    codes = rng.integers(0, 4, n)
    split = np.full(n, TRAIN, dtype=np.int8)
    split[:1000], split[2000:] = VALIDATION, TEST
    rows = []
    for start in range(50, 1900, 100):  # instances in the validation and training blocks only
        codes[start:start + w] = consensus
        rows.append(("c", start, start + w, "motif_M"))
    elements = pl.DataFrame(rows, schema=["contig", "start", "end", "name"], orient="row")
    seq = "".join("ACGT"[i] for i in codes)
    r = oracle_table(seq, elements, np.full((1, 4), 0.25), {"M": freq}, split).row(0, named=True)
    assert r["oracle_validation_f1"] > 0.5
    for key in ("oracle_recall", "oracle_f1", "oracle_instance_recall", "oracle_instance_f1"):
        assert np.isnan(r[key]), key


def test_instance_statistics_without_test_instances_are_nan_and_unmatched(tmp_path):
    """Instances only outside the test blocks: no test instance recall (0/0), so instance recall, F1 and the
    matched_instance flag are NaN / NaN / false, not 0 (or, with polars' NaN >= level, true); the summary
    written to JSON carries them as null."""

    from interp.sae.concepts import at_least
    from interp.sae.planted import instance_scores, json_nulls
    from interp.sae.splits import TEST

    n, width = 20_000, 100
    windows = pl.DataFrame({"window_index": np.arange(n // width), "contig": ["c"] * (n // width),
                            "start": np.arange(0, n, width), "end": np.arange(width, n + 1, width)})
    split, code = _split_codes(windows)
    rows = [("c", s, s + 10, "motif_A", "+") for s in range(20, n - 20, 97)
            if code[s] >= 0 and code[s] != TEST and (code[s:s + 10] == code[s]).all()]
    elements = pl.DataFrame(rows, schema=["contig", "start", "end", "name", "strand"], orient="row")
    first = np.zeros(n, dtype=np.float32)
    first[[r[1] for r in rows]] = 1.0
    x = np.stack([first, np.zeros(n, np.float32)], axis=1)
    sae = _identity_sae_over(tmp_path / "t.zarr", x, width)
    row = instance_scores(sae, tmp_path / "t.zarr", windows, split, elements).row(0, named=True)
    assert row["n_test_instances"] == 0 and row["instance_validation_f1"] == 1.0 and row["instance_feature"] == 0
    for key in ("instance_precision", "instance_recall", "instance_f1", "instance_lift"):
        assert np.isnan(row[key]), key
    table = pl.DataFrame([row]).with_columns(
        (at_least("instance_f1", 0.8) & at_least("instance_lift", 5.0)).alias("matched_instance"))
    assert table["matched_instance"].to_list() == [False]
    clean = json_nulls({"match": table.to_dicts(), "share": float("nan"), "n": 3, "ok": True})
    assert clean["match"][0]["instance_f1"] is None and clean["share"] is None and clean["n"] == 3
    text = json.dumps(clean, allow_nan=False)  # strict JSON: no bare NaN token
    assert json.loads(text)["match"][0]["instance_recall"] is None
