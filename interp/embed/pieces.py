"""Model-independent plumbing of the embedders: input alphabet, chunks of long sequences and their
stitching, reverse-complement averaging, and token-budget batches.

Coordinates are bases of the caller's sequence (0-based, half-open); a token's base span says
which bases it covers, so characters, k-mers and BPE tokens line up with per-base labels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from interp.errors import InputError

DNA = frozenset("ACGTN")
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


class NonFiniteActivations(InputError):
    """A model produced NaN or infinite activations (e.g. BERT + SDPA in bf16 with padding, or a diverged
    checkpoint): the user's model or dtype setting, so a clean error rather than a traceback."""


IUPAC_AMBIGUOUS = frozenset("RYKMSWBDHV")


def clean_sequences(seqs: list[str], model: str, counts: dict | None = None) -> tuple[list[str], int]:
    """Upper-case DNA; IUPAC ambiguity codes become N and are counted; anything else is refused.

    Never silently UNK: letters outside A, C, G, T, N and the IUPAC codes (gaps, digits, '*', ...)
    are an InputError naming the first offending sequence and the characters found. GRCh38 itself
    holds a few IUPAC codes, hence N rather than refusal for those. `counts` (optional) accumulates
    {"N": bases that are N in the input, "iupac_as_N": ambiguity codes turned into N}.
    Returns (cleaned sequences, number of N bases after cleaning).
    """
    out, n_count = [], 0
    for i, seq in enumerate(seqs):
        up = seq.upper()
        bad = set(up) - DNA
        if bad:
            refused = bad - IUPAC_AMBIGUOUS
            if refused:
                found = Counter(c for c in up if c in refused)
                shown = ", ".join(f"{c!r} x{k}" for c, k in sorted(found.items()))
                raise InputError(f"model {model}: sequence {i} has characters other than A, C, G, T, N and IUPAC "
                                 f"codes ({shown}); fix the input sequence before embedding")
            n_iupac = sum(up.count(c) for c in bad)
            if counts is not None:
                counts["iupac_as_N"] = counts.get("iupac_as_N", 0) + n_iupac
            up = up.translate(str.maketrans({c: "N" for c in bad}))
        if counts is not None:
            counts["N"] = counts.get("N", 0) + seq.upper().count("N")
        n_count += up.count("N")
        out.append(up)
    return out, n_count


def reverse_complement(seq: str) -> str:
    """Reverse complement of an upper-case A/C/G/T/N string."""
    return seq.translate(_COMPLEMENT)[::-1]


def chunk_starts(length: int, context: int, overlap: int) -> list[int]:
    """Start (in bases) of each chunk of at most `context` bases; neighbours overlap by >= `overlap`.

    With overlap > 0 the last chunk ends at `length` (full context for the last bases); with
    overlap 0 the chunks tile the sequence and the last one may be short.
    """
    if length <= context:
        return [0]
    if overlap == 0:
        return list(range(0, length, context))
    step = context - overlap
    starts = list(range(0, length - context, step)) + [length - context]
    return sorted(set(starts))


@dataclass
class Piece:
    """One model input: bases [start, start + len(text)) of sequence `seq` (reverse strand if `rc`)."""

    seq: int
    start: int
    text: str
    rc: bool = False


def plan_pieces(seqs: list[str], context: int | list[int], overlap: int | list[int], rc_average: bool,
                ) -> list[Piece]:
    """All pieces to run: each sequence (and, with rc_average, its reverse complement) in chunks.

    context, overlap: in bases, one value for all sequences or one per sequence.
    """
    contexts = context if isinstance(context, list) else [context] * len(seqs)
    overlaps = overlap if isinstance(overlap, list) else [overlap] * len(seqs)
    pieces = []
    for i, seq in enumerate(seqs):
        strands = [(seq, False)] + ([(reverse_complement(seq), True)] if rc_average else [])
        for text, rc in strands:
            for a in chunk_starts(len(text), contexts[i], overlaps[i]):
                pieces.append(Piece(i, a, text[a:a + contexts[i]], rc))
    return pieces


def stitch(chunks: list[tuple[int, np.ndarray, dict[str, np.ndarray]]], length: int, context: int,
           ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Join overlapping chunks of one sequence into one token list.

    chunks: (start, spans int [n, 2] within the chunk, {layer: float32 [n, d]}), in start order.
    Each chunk hands over at the middle of its overlap with the next; a chunk's token is kept
    when it ends after the bases already covered and starts before the hand-over point, so
    every base is covered and a token overlaps the previous chunk's last token by less than
    its own width (no overlap at all for character tokens).
    Returns (spans int32 [m, 2] in sequence coordinates, {layer: [m, d]}).
    """
    keep_spans, keep_vals = [], {name: [] for name in chunks[0][2]} if chunks else {}
    covered = 0
    for k, (start, spans, values) in enumerate(chunks):
        spans = spans + start
        if k + 1 < len(chunks):
            nxt = chunks[k + 1][0]
            handover = (nxt + min(start + context, length)) // 2
        else:
            handover = length
        # chunk k starts at or before the previous hand-over, so its first kept token starts at or
        # before `covered`: no base is left out
        keep = (spans[:, 1] > covered) & (spans[:, 0] < handover)
        if not np.any(keep):
            continue
        keep_spans.append(spans[keep])
        for name in values:
            keep_vals[name].append(values[name][keep])
        covered = int(spans[keep][-1, 1])
    span_all = np.concatenate(keep_spans).astype(np.int32) if keep_spans else np.zeros((0, 2), np.int32)
    # no token kept (an empty sequence: only special tokens): [0, d] values, as for any other sequence
    return span_all, {name: np.concatenate(v) if v else chunks[0][2][name][:0] for name, v in keep_vals.items()}


def per_base(spans: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
    """float32 [length, d]: each base gets the mean of the tokens covering it."""
    d = values.shape[1]
    sums = np.zeros((length, d), dtype=np.float64)
    counts = np.zeros(length, dtype=np.float64)
    widths = spans[:, 1] - spans[:, 0]
    rows = np.repeat(np.arange(len(spans)), widths)
    bases = np.concatenate([np.arange(a, b) for a, b in spans]) if len(spans) else np.zeros(0, np.int64)
    np.add.at(sums, bases, values[rows].astype(np.float64))
    np.add.at(counts, bases, 1.0)
    if np.any(counts == 0):
        raise ValueError("some bases are covered by no token")
    return (sums / counts[:, None]).astype(np.float32)


def rc_average(fwd_spans: np.ndarray, fwd_values: np.ndarray, rc_spans: np.ndarray, rc_values: np.ndarray,
               length: int) -> np.ndarray:
    """float32 [n_fwd_tokens, d]: forward tokens averaged with the reverse strand, flipped back.

    The reverse strand's per-token outputs are spread to its bases, flipped (reverse base j is
    forward base length-1-j), then averaged over the bases each forward token covers.
    """
    rc_bases = per_base(rc_spans, rc_values, length)[::-1]
    prefix = np.concatenate([np.zeros((1, rc_bases.shape[1])), np.cumsum(rc_bases, axis=0, dtype=np.float64)])
    widths = (fwd_spans[:, 1] - fwd_spans[:, 0]).astype(np.float64)
    rc_on_fwd = (prefix[fwd_spans[:, 1]] - prefix[fwd_spans[:, 0]]) / widths[:, None]
    return (0.5 * (fwd_values.astype(np.float64) + rc_on_fwd)).astype(np.float32)


def token_budget_batches(lengths: list[int], budget: int, max_rows: int = 512,
                         same_length: bool = False) -> list[list[int]]:
    """Group items into batches of similar length: rows x longest <= budget tokens.

    Items are sorted longest first (length bucketing), so padding is small; an item longer than
    the budget gets a batch of its own. same_length: only equal lengths share a batch (no padding
    at all; for bidirectional models that take no attention mask). Returns lists of item indices;
    deterministic.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        full = (len(current) + 1) * longest > budget or len(current) >= max_rows
        if current and (full or (same_length and lengths[i] != longest)):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def check_finite(values: np.ndarray, model: str, layer: str, where_text: str) -> None:
    """Raise NonFiniteActivations naming model, layer and window when values hold NaN/inf."""
    if not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise NonFiniteActivations(f"model {model}, layer {layer}: {bad} non-finite activation values in "
                                   f"{where_text}; in bf16/fp16 with padding this is a known attention overflow "
                                   "(try embed.dtype: float32); in float32 the checkpoint itself has likely "
                                   "diverged")
