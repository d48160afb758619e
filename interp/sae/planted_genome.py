"""A synthetic genome with planted elements at known positions: the ground truth of the SAE calibration.

Background: an order-3 Markov chain fitted on a real sequence (the demo genome's own k-mer
statistics; `interp.lm.markov.count_contexts`). Planted on it, non-overlapping and at stated rates
(instances per kb of genome):

- motif_<NAME>: instances of JASPAR motifs, each base drawn from the motif's position frequency
  matrix (pseudocount 0.5, as the scanners of `interp.sae.concept_tracks`), on a random strand;
- repeat: a periodic repeat, `repeat_copies` tandem copies of `repeat_unit`;
- gc_island: GC-rich islands, bases drawn independently with G+C share `island_gc`.

Everything is a pure function of the config and the seed. `planted_tracks` turns the planted
intervals into per-base concept tracks over a bases table, the labels the SAE features are matched
against (`interp.sae.planted`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from interp.errors import InputError
from interp.io import atomic_path
from interp.lm.markov import count_contexts, encode_acgt
from interp.sae.concept_tracks import ConceptTracks

BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
COMPLEMENT = str.maketrans("ACGT", "TGCA")
ELEMENT_COLUMNS = ["contig", "start", "end", "name", "strand"]


@dataclass
class PlantedConfig:
    """What is planted where. Rates are instances per kb of genome."""

    length: int = 200_000
    """bases of the synthetic contig."""
    contig: str = "planted"
    order: int = 3
    """order of the background Markov chain."""
    motifs: list[str] = field(default_factory=lambda: ["CTCF", "REST", "TP53", "ZNF143", "NRF1"])
    """JASPAR 2024 CORE names (pyjaspar's bundled database)."""
    motif_rate: float = 4.0
    repeat_unit: str = "GGAAT"
    repeat_copies: list[int] = field(default_factory=lambda: [8, 16])
    """copies of the unit per repeat instance (inclusive range)."""
    repeat_rate: float = 0.25
    island_length: list[int] = field(default_factory=lambda: [300, 600])
    island_gc: float = 0.75
    island_rate: float = 0.08
    min_gap: int = 20
    """background bases at least between two planted elements."""
    seed: int = 7

    @classmethod
    def from_params(cls, params: dict) -> PlantedConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise InputError(f"planted.genome: unknown keys {unknown}; expected some of {sorted(known)}")
        cfg = cls(**params)
        repeated = sorted({m for m in cfg.motifs if list(cfg.motifs).count(m) > 1})
        if repeated:  # each name is one type; listed twice it was planted at twice motif_rate
            raise InputError(f"planted.genome.motifs: {repeated} listed more than once; each motif is one type, "
                             "planted at motif_rate")
        for name in ("repeat_copies", "island_length"):
            low, high = getattr(cfg, name)
            if low > high:
                raise InputError(f"planted.genome.{name}: expected [low, high] with low <= high (an inclusive "
                                 f"range), got {[low, high]}")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- background
def fit_background(seqs: list[str], order: int = 3, pseudocount: float = 1.0) -> np.ndarray:
    """float64 [4**order, 4]: P(next base | previous `order` bases), A/C/G/T coded 0..3 (base-4 context)."""
    counts = count_contexts([s.upper() for s in seqs], order)[order]
    if counts.sum() == 0:
        raise InputError("planted genome: no A/C/G/T bases to fit the background on")
    return (counts + pseudocount) / (counts.sum(axis=1, keepdims=True) + 4 * pseudocount)


def sample_background(transition: np.ndarray, length: int, rng: np.random.Generator,
                      fixed: np.ndarray | None = None) -> np.ndarray:
    """uint8 [length] of ASCII bases drawn left to right from the order-k chain (the first k from its base
    frequencies).

    fixed: optional int [length], a base code 0..3 where the base is given (a planted element) and -1 where
    it is drawn. Given bases are kept and are the context of the bases drawn after them, so every drawn base
    follows the chain given its real preceding bases (writing elements over a drawn sequence would leave the
    bases after each element drawn given bases that are no longer there). The random draws do not depend on
    `fixed`.
    """
    order = int(round(np.log(transition.shape[0]) / np.log(4)))
    cumulative = np.cumsum(transition, axis=1)
    cumulative[:, -1] = 1.0
    marginal = transition.mean(axis=0) / transition.mean(axis=0).sum()
    if fixed is None:
        fixed = np.full(length, -1, dtype=np.int64)
    elif fixed.shape != (length,):
        raise ValueError(f"fixed must have shape ({length},), got {fixed.shape}")
    codes = np.empty(length, dtype=np.int64)
    codes[:order] = rng.choice(4, size=min(order, length), p=marginal)
    u = rng.random(length)
    mask = 4**order - 1
    ctx = 0
    rows = cumulative.tolist()
    fixed_list = fixed.tolist()
    for i in range(length):
        b = fixed_list[i]
        if b < 0:
            if i < order:
                b = int(codes[i])
            else:
                row = rows[ctx]
                x = u[i]
                b = 0 if x < row[0] else 1 if x < row[1] else 2 if x < row[2] else 3
        codes[i] = b
        ctx = (ctx * 4 + b) & mask
    return BASES[codes]


# ---------------------------------------------------------------- planted elements
def motif_frequencies(names: list[str]) -> dict[str, np.ndarray]:
    """name -> float64 [4, width] base frequencies (A, C, G, T rows) of each JASPAR motif."""
    from interp.sae.concept_tracks import load_jaspar_motifs

    out = {}
    for name, motif in zip(names, load_jaspar_motifs(names, "planted.genome.motifs"), strict=True):
        freq = motif.counts.normalize(pseudocounts=0.5)
        out[name] = np.array([freq[b] for b in "ACGT"], dtype=np.float64)
    return out


def sample_motif(freq: np.ndarray, rng: np.random.Generator) -> tuple[str, str]:
    """(sequence, strand) of one instance: base j drawn from column j; '-' = reverse complement."""
    cumulative = np.cumsum(freq, axis=0)
    codes = (rng.random(freq.shape[1])[None, :] > cumulative).sum(axis=0).clip(0, 3)
    seq = BASES[codes].tobytes().decode("ascii")
    if rng.random() < 0.5:
        return seq.translate(COMPLEMENT)[::-1], "-"
    return seq, "+"


def _elements(cfg: PlantedConfig, freqs: dict[str, np.ndarray], rng: np.random.Generator) -> list[tuple]:
    """(name, sequence, strand) of every element to plant, in random order."""
    kb = cfg.length / 1000.0
    items = []
    for name in cfg.motifs:
        for _ in range(int(round(cfg.motif_rate * kb))):
            seq, strand = sample_motif(freqs[name], rng)
            items.append((f"motif_{name}", seq, strand))
    lo, hi = cfg.repeat_copies
    for _ in range(int(round(cfg.repeat_rate * kb))):
        items.append(("repeat", cfg.repeat_unit.upper() * int(rng.integers(lo, hi + 1)), "+"))
    lo, hi = cfg.island_length
    gc = cfg.island_gc / 2
    for _ in range(int(round(cfg.island_rate * kb))):
        n = int(rng.integers(lo, hi + 1))
        codes = rng.choice(4, size=n, p=[0.5 - gc, gc, gc, 0.5 - gc])
        items.append(("gc_island", BASES[codes].tobytes().decode("ascii"), "+"))
    order = rng.permutation(len(items))
    return [items[i] for i in order]


def planted_genome(cfg: PlantedConfig, source_seqs: list[str]) -> tuple[str, pl.DataFrame, dict]:
    """(sequence, elements, stats) of the synthetic contig.

    elements: contig, start, end (0-based, half-open), name (element type), strand. Elements are
    separated by at least `min_gap` background bases; the gaps are a random partition of the free bases.
    stats: the background chain's fit, counts and planted bases per type.
    """
    rng = np.random.default_rng([cfg.seed, 4242])
    transition = fit_background(source_seqs, cfg.order)
    freqs = motif_frequencies(cfg.motifs) if cfg.motifs else {}
    items = _elements(cfg, freqs, rng)
    planted = sum(len(s) for _, s, _ in items)
    free = cfg.length - planted - cfg.min_gap * (len(items) + 1)
    if free < 0:
        raise InputError(f"planted genome: {planted} planted bases and gaps do not fit in {cfg.length} bases; "
                         f"lower the rates or raise planted.genome.length")
    cuts = np.sort(rng.integers(0, free + 1, size=len(items)))
    gaps = np.diff(np.concatenate([[0], cuts])) + cfg.min_gap
    # the elements are placed first and the background drawn around them, each base given the real bases
    # before it, elements' included
    fixed = np.full(cfg.length, -1, dtype=np.int64)
    rows = []
    pos = 0
    for (name, element, strand), gap in zip(items, gaps, strict=True):
        pos += int(gap)
        element_codes = encode_acgt(element)
        assert (element_codes >= 0).all(), f"planted {name} element has a base other than A/C/G/T"
        fixed[pos:pos + len(element)] = element_codes
        rows.append((cfg.contig, pos, pos + len(element), name, strand))
        pos += len(element)
    seq = sample_background(transition, cfg.length, rng, fixed=fixed)
    elements = pl.DataFrame(rows, schema={"contig": pl.String, "start": pl.Int64, "end": pl.Int64,
                                          "name": pl.String, "strand": pl.String}, orient="row").sort("start")
    per_type = elements.group_by("name").agg(pl.len().alias("n"), (pl.col("end") - pl.col("start")).sum()
                                             .alias("bases")).sort("name")
    stats = {"config": cfg.to_dict(), "length": cfg.length, "n_source_bases": int(sum(len(s) for s in source_seqs)),
             "planted_bases": planted, "planted_fraction": planted / cfg.length,
             "types": {r["name"]: {"n": r["n"], "bases": r["bases"]} for r in per_type.iter_rows(named=True)},
             "background_transition": transition.tolist()}
    return seq.tobytes().decode("ascii"), elements, stats


def write_planted(sequence: str, elements: pl.DataFrame, contig: str, fasta_out: str | Path,
                  bed_out: str | Path) -> None:
    """FASTA (60 bases a line) with its .fai (pysam), and the elements as BED6 (name = element type)."""
    import pysam

    fasta_out = Path(fasta_out)
    with atomic_path(fasta_out) as tmp:
        with open(tmp, "w") as fh:
            fh.write(f">{contig}\n")
            for i in range(0, len(sequence), 60):
                fh.write(sequence[i:i + 60] + "\n")
    fai = Path(str(fasta_out) + ".fai")
    fai.unlink(missing_ok=True)
    pysam.faidx(str(fasta_out))
    with atomic_path(bed_out) as tmp:
        elements.select("contig", "start", "end", "name", pl.lit(0).alias("score"), "strand").write_csv(
            tmp, separator="\t", include_header=False)


def read_planted_bed(path: str | Path) -> pl.DataFrame:
    """The elements of `write_planted`'s BED."""
    return pl.read_csv(path, separator="\t", has_header=False, new_columns=[*ELEMENT_COLUMNS[:4], "score", "strand"],
                       schema_overrides={"contig": pl.String, "start": pl.Int64, "end": pl.Int64,
                                         "name": pl.String, "score": pl.Int64, "strand": pl.String}
                       ).select(ELEMENT_COLUMNS)


def planted_tracks(bases: pl.DataFrame, elements: pl.DataFrame) -> ConceptTracks:
    """Concept tracks (one per element type, sorted names) over a bases table (columns contig, pos):
    the base lies inside a planted element of that type. A base listed more than once (overlapping
    regions) is kept once."""
    if {"contig", "pos"} - set(bases.columns):
        raise InputError("bases table: expected columns contig and pos")
    bases = bases.select("contig", "pos").unique(maintain_order=True).sort(["contig", "pos"])
    contigs = sorted(bases["contig"].unique().to_list())
    cid = {c: i for i, c in enumerate(contigs)}
    contig_ids = np.array([cid[c] for c in bases["contig"].to_list()], dtype=np.int64)
    pos = bases["pos"].to_numpy().astype(np.int64)
    keys = (contig_ids << 40) | pos
    names = sorted(elements["name"].unique().to_list())
    values = np.zeros((pos.size, len(names)), dtype=bool)
    for j, name in enumerate(names):
        sub = elements.filter((pl.col("name") == name) & pl.col("contig").is_in(contigs))
        diff = np.zeros(pos.size + 1, dtype=np.int64)
        for contig, start, end in sub.select("contig", "start", "end").iter_rows():
            lo = np.searchsorted(keys, (cid[contig] << 40) | start)
            hi = np.searchsorted(keys, (cid[contig] << 40) | end)
            diff[lo] += 1
            diff[hi] -= 1
        values[:, j] = np.cumsum(diff[:-1]) > 0
    return ConceptTracks(contigs, keys, values, names)


def kmer_frequencies(seq: str, k: int) -> np.ndarray:
    """float64 [4**k]: frequencies of the k-mers of A/C/G/T (windows holding another letter are skipped)."""
    codes = encode_acgt(seq)
    if codes.size < k:
        return np.zeros(4**k)
    index = np.zeros(codes.size - k + 1, dtype=np.int64)
    ok = np.ones(codes.size - k + 1, dtype=bool)
    for j in range(k):
        part = codes[j:codes.size - k + 1 + j]
        index = index * 4 + np.maximum(part, 0)
        ok &= part >= 0
    counts = np.bincount(index[ok], minlength=4**k).astype(np.float64)
    return counts / max(counts.sum(), 1.0)
