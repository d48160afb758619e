"""Per-base biological concepts that SAE features and neurons are matched against.

Concepts (bool per base of `bases.parquet`): exon, intron, repeat (soft-masked), cpg (the base
is part of a CpG dinucleotide), gc_rich (G+C share of the A/C/G/T bases >= `gc_rich_threshold` in the
centred window of `gc_rich_window` bases; N bases count neither way and are never gc_rich),
splice_donor (the last 3 exonic and first 6 intronic bases at the 5' end of an intron of some
transcript, in its direction), splice_acceptor (the last 12 intronic and first 2 exonic bases at an
intron's 3' end); both come from the bases table (`interp.genome.base_labels`, per transcript), and
motif_<NAME> for each JASPAR motif: bases covered by
a hit of its log-odds PSSM (pseudocount 0.5, uniform background) on either strand whose score's
false-positive rate per strand under the background is about `motif_pvalue` (Biopython's score-grid
approximation: 0.92-1.03 x motif_pvalue for the default motifs), so a base position starts a hit on
one strand or the other at about twice that rate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from interp.errors import InputError


@dataclass
class ConceptConfig:
    """Which concepts, and how they are defined."""

    motifs: list[str] = field(default_factory=lambda: ["CTCF", "SP1", "YY1", "NRF1", "ELK1"])
    """JASPAR (2024, CORE vertebrates) motif names; of several vertebrate matrices of a name, the lowest ID."""
    motif_pvalue: float = 0.0001
    """per-position, per-strand false-positive rate of a motif hit under a uniform background (either
    strand: about twice this)."""
    gc_rich_window: int = 50
    """bases in the centred window of the gc_rich concept."""
    gc_rich_threshold: float = 0.6
    """G+C share at or above which a base is gc_rich."""


@dataclass
class ConceptTracks:
    """Concept tracks over the rows of a bases table sorted by (contig, pos).

    keys: int64 [n] sorted (contig id << 40 | pos); values: bool [n, C]; names: C concept names.
    """

    contigs: list[str]
    keys: np.ndarray
    values: np.ndarray
    names: list[str]

    def rows_of(self, contig_ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Row index [m] of each (contig id, base position); InputError if a position is not in the table."""
        key = (np.asarray(contig_ids, dtype=np.int64) << 40) | np.asarray(positions, dtype=np.int64)
        rows = np.clip(np.searchsorted(self.keys, key), 0, max(self.keys.size - 1, 0))
        if key.size and (self.keys.size == 0 or (self.keys[rows] != key).any()):
            bad = key[self.keys[rows] != key][0]
            raise InputError(f"bases table: no row for {self.contigs[int(bad >> 40)]}:{int(bad & (2**40 - 1))} "
                             f"(a token of the store lies outside the labelled bases)")
        return rows


def gc_rich(bases: np.ndarray, window: int, threshold: float) -> np.ndarray:
    """bool [n]: G+C share of the A/C/G/T bases in the centred `window` (truncated at the ends) >= threshold.

    bases: uint8 [n] upper-case ASCII. N bases (assembly gaps, IUPAC codes) count neither way, as in the
    windows' `gc`, so a GC-rich stretch next to a gap stays GC-rich; an N base itself is never gc_rich.
    """
    gc = np.isin(bases, [ord("G"), ord("C")]).astype(np.float64)
    known = bases != ord("N")
    cs = np.concatenate([[0.0], np.cumsum(gc)])
    cs_known = np.concatenate([[0], np.cumsum(known, dtype=np.int64)])
    idx = np.arange(bases.size)
    lo = np.clip(idx - window // 2, 0, bases.size)
    hi = np.clip(idx - window // 2 + window, 0, bases.size)
    return known & ((cs[hi] - cs[lo]) / np.maximum(cs_known[hi] - cs_known[lo], 1) >= threshold)


def load_jaspar_motifs(names: list[str], key: str = "sae.concepts.motifs"):
    """Bio.motifs Motif objects for JASPAR 2024 CORE vertebrate names (pyjaspar's bundled database; of several
    matrices of a name, the lowest ID); an unknown name, or one JASPAR has for other taxa only, is an InputError
    naming the config `key` that listed it."""
    from pyjaspar import jaspardb

    db = jaspardb(release="JASPAR2024")
    motifs = []
    for name in names:
        with warnings.catch_warnings():  # pyjaspar warns of an unknown name; the error below says it better
            warnings.simplefilter("ignore")
            found = db.fetch_motifs_by_name(name)
        if not found:
            raise InputError(f"{key}: no JASPAR 2024 motif named {name!r}")
        # the name may be a yeast or fly matrix too, with a lower ID (HSF1, RFX1, GSC, VSX2, XBP1)
        vertebrate = [m for m in found if m.collection == "CORE" and m.tax_group == "vertebrates"]
        if not vertebrate:
            groups = sorted({str(m.tax_group) for m in found})
            raise InputError(f"{key}: JASPAR 2024 has {name!r} only for {', '.join(groups)}, not among its CORE "
                             "vertebrate motifs")
        motifs.append(sorted(vertebrate, key=lambda m: m.matrix_id)[0])
    # JASPAR's names match whatever their case: CTCF and ctcf are one matrix, twice the type (the planted genome
    # planted it at twice motif_rate, as two indistinguishable types)
    seen: dict[str, str] = {}
    for name, motif in zip(names, motifs, strict=True):
        if motif.matrix_id in seen:
            raise InputError(f"{key}: {seen[motif.matrix_id]!r} and {name!r} are the same JASPAR motif "
                             f"({motif.matrix_id}); list it once")
        seen[motif.matrix_id] = name
    return motifs


def motif_scanner(motif, pvalue: float) -> tuple:
    """(log-odds PSSM, score threshold) of a JASPAR motif: pseudocount 0.5, uniform background,
    threshold = the highest score whose upper tail under the background reaches `pvalue`, on Biopython's
    score grid (1000 points per motif position; the exact one-strand rate there is within a few % of it)."""
    pssm = motif.counts.normalize(pseudocounts=0.5).log_odds()
    return pssm, pssm.distribution(precision=10**3).threshold_fpr(pvalue)


def motif_hits(sequence: str, pssm, threshold: float) -> np.ndarray:
    """bool [len(sequence)]: bases covered by a hit of `pssm` (either strand) scoring >= threshold."""
    from Bio.Seq import Seq

    covered = np.zeros(len(sequence), dtype=bool)
    # Bio's calculate scores both strands; N gives nan and never passes
    length = pssm.length
    if len(sequence) < length:
        return covered
    forward = np.asarray(pssm.calculate(Seq(sequence)), dtype=np.float64)
    reverse = np.asarray(pssm.reverse_complement().calculate(Seq(sequence)), dtype=np.float64)
    starts = np.flatnonzero((np.nan_to_num(forward, nan=-np.inf) >= threshold)
                            | (np.nan_to_num(reverse, nan=-np.inf) >= threshold))
    diff = np.zeros(len(sequence) + 1, dtype=np.int64)
    np.add.at(diff, starts, 1)
    np.add.at(diff, starts + length, -1)
    return np.cumsum(diff[:-1]) > 0


def concept_tracks(bases: pl.DataFrame, cfg: ConceptConfig) -> ConceptTracks:
    """Concept tracks of a bases table (columns contig, pos, base, exon, intron, splice_donor,
    splice_acceptor, repeat, cpg, as `interp.genome.base_labels` writes them).

    Consecutive positions of one contig form a segment; GC windows and motif hits are computed within
    segments (never across a gap). A base listed more than once (regions that overlap: `base_labels`
    gives each region its rows) is kept once; its labels come from the contig, so the copies agree.
    """
    need = {"contig", "pos", "base", "exon", "intron", "splice_donor", "splice_acceptor", "repeat", "cpg"}
    if need - set(bases.columns):
        raise InputError(f"bases table: missing columns {sorted(need - set(bases.columns))} (a bases.parquet "
                         "written before splice sites were labelled per transcript: rerun the windows stage)")
    bases = bases.unique(subset=["contig", "pos"], keep="first", maintain_order=True).sort(["contig", "pos"])
    contigs = sorted(bases["contig"].unique().to_list())
    cid = {c: i for i, c in enumerate(contigs)}
    contig_ids = np.array([cid[c] for c in bases["contig"].to_list()], dtype=np.int64)
    pos = bases["pos"].to_numpy().astype(np.int64)
    seq = np.frombuffer("".join(bases["base"].to_list()).upper().encode("ascii"), dtype=np.uint8)
    scanners = [motif_scanner(m, cfg.motif_pvalue) for m in load_jaspar_motifs(cfg.motifs)] if cfg.motifs else []
    names = (["exon", "intron", "splice_donor", "splice_acceptor", "repeat", "cpg", "gc_rich"]
             + [f"motif_{m}" for m in cfg.motifs])
    values = np.zeros((pos.size, len(names)), dtype=bool)
    for j, name in enumerate(names[:6]):  # exon, intron, splice_donor, splice_acceptor, repeat, cpg
        values[:, j] = bases[name].to_numpy().astype(bool)
    breaks = np.flatnonzero((np.diff(pos) != 1) | (np.diff(contig_ids) != 0)) + 1
    for lo, hi in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [pos.size]]), strict=True):
        seg = slice(int(lo), int(hi))
        values[seg, 6] = gc_rich(seq[seg], cfg.gc_rich_window, cfg.gc_rich_threshold)
        text = seq[seg].tobytes().decode("ascii")
        for j, (pssm, threshold) in enumerate(scanners):
            values[seg, 7 + j] = motif_hits(text, pssm, threshold)
    return ConceptTracks(contigs, (contig_ids << 40) | pos, values, names)
