"""Train / validation / test token sets from non-overlapping genome blocks.

Windows overlap (the demo's by 50%), so splitting by window would put the same bases on both
sides. Instead the genome is cut into blocks of `block_bases` bases per contig, every block that
some window touches is assigned whole to one split (a seeded permutation, so the shares are exact
up to rounding), and each token goes to the split of the block holding its first base. A base
position therefore belongs to exactly one split, whichever window it was embedded in.

A token's activation also depends on its window's other bases (the model's context). A window that
straddles blocks of two splits would give a test token the context of training bases, and its
activation would be nearly a copy of its training neighbours' (with labels shared across the edge):
a supervised read-out fitted on training tokens would score it too well. So the tokens of such a
window are in no split (UNUSED): every token of a split comes from a window lying wholly in that
split's blocks, a guard band of about one window length at each edge between splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from interp.errors import InputError

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VALIDATION: "validation", TEST: "test"}
UNUSED = -1  #: code of a block no window touches, or of a token whose window straddles splits (in no split)


@dataclass
class BlockSplit:
    """Lookup from (window_index, base offset in window) to split code (TRAIN / VALIDATION / TEST).

    window_contig / window_start: int64 [max window_index + 1] (-1 contig = unknown window);
    block_offset: int64 [n contigs] first global block id of each contig; block_keys: int64 [n touched
    blocks] the sorted global ids of the blocks some window touches, block_split: int8 [n touched blocks]
    their splits (only touched blocks are held: a block no window touches, e.g. before the first region of a
    contig, is UNUSED, and memory follows the regions, not how far along the contig they lie);
    window_split: int8 [max window_index + 1] the split of a window whose bases all lie in blocks of
    that one split, UNUSED for a window that straddles splits (or an unknown window).
    """

    block_bases: int
    contigs: list[str]
    window_contig: np.ndarray
    window_start: np.ndarray
    block_offset: np.ndarray
    block_keys: np.ndarray
    block_split: np.ndarray
    window_split: np.ndarray

    def global_block(self, window_index: np.ndarray, base_start: np.ndarray) -> np.ndarray:
        """int64 [m] global block id of each token's first base."""
        w = np.asarray(window_index, dtype=np.int64)
        if w.size and (w.max() >= self.window_contig.size or (self.window_contig[w] < 0).any()):
            bad = w[(w >= self.window_contig.size) | (self.window_contig[np.minimum(w, self.window_contig.size - 1)] < 0)]
            raise InputError(f"windows table: no row for window_index {sorted(set(bad.tolist()))[:5]} "
                             f"found in the token store")
        position = self.window_start[w] + np.asarray(base_start, dtype=np.int64)
        return self.block_offset[self.window_contig[w]] + position // self.block_bases

    def split_of_blocks(self, keys: np.ndarray) -> np.ndarray:
        """int8 [m] split code of each global block id (UNUSED for a block no window touches)."""
        keys = np.asarray(keys, dtype=np.int64)
        if not self.block_keys.size:
            return np.full(keys.shape, UNUSED, dtype=np.int8)
        at = np.minimum(np.searchsorted(self.block_keys, keys), self.block_keys.size - 1)
        return np.where(self.block_keys[at] == keys, self.block_split[at], UNUSED).astype(np.int8)

    def of_tokens(self, window_index: np.ndarray, base_start: np.ndarray) -> np.ndarray:
        """int8 [m] split code of each token: its block's, or UNUSED when its window straddles splits."""
        code = self.split_of_blocks(self.global_block(window_index, base_start))
        return np.where(code == self.window_split[np.asarray(window_index, dtype=np.int64)], code,
                        np.int8(UNUSED)).astype(np.int8)

    def of_bases(self, window_index: np.ndarray, base_start: np.ndarray) -> np.ndarray:
        """int8 [m] split code of the block holding each base, whatever its window (for scores that use
        no model context, such as a motif scanner on the sequence itself)."""
        return self.split_of_blocks(self.global_block(window_index, base_start))

    def counts(self) -> dict[str, int]:
        """Number of blocks (touched by some window) per split."""
        return {SPLIT_NAMES[c]: int((self.block_split == c).sum()) for c in SPLIT_NAMES}

    def window_counts(self) -> dict[str, int]:
        """Number of windows per split, and of windows straddling splits (`straddling`: their tokens
        are in no split)."""
        known = self.window_contig >= 0
        out = {SPLIT_NAMES[c]: int(((self.window_split == c) & known).sum()) for c in SPLIT_NAMES}
        out["straddling"] = int(((self.window_split == UNUSED) & known).sum())
        return out


def block_split(windows: pl.DataFrame, block_bases: int, validation_fraction: float, test_fraction: float,
                seed: int) -> BlockSplit:
    """Assign the genome blocks touched by `windows` (columns window_index, contig, start, end) to splits.

    At least one block goes to each split; fewer than 3 touched blocks is an InputError.
    """
    missing = {"window_index", "contig", "start", "end"} - set(windows.columns)
    if missing:
        raise InputError(f"windows table: expected columns window_index, contig, start, end; "
                         f"missing {sorted(missing)}")
    contigs = sorted(windows["contig"].unique().to_list())
    contig_id = {c: i for i, c in enumerate(contigs)}
    w_index = windows["window_index"].to_numpy().astype(np.int64)
    starts = windows["start"].to_numpy().astype(np.int64)
    ends = windows["end"].to_numpy().astype(np.int64)
    cids = np.array([contig_id[c] for c in windows["contig"].to_list()], dtype=np.int64)
    size = int(w_index.max()) + 1 if w_index.size else 0
    window_contig = np.full(size, -1, dtype=np.int64)
    window_start = np.zeros(size, dtype=np.int64)
    window_contig[w_index], window_start[w_index] = cids, starts
    n_per_contig = np.zeros(len(contigs), dtype=np.int64)
    np.maximum.at(n_per_contig, cids, -(-ends // block_bases))
    block_offset = np.concatenate([[0], np.cumsum(n_per_contig)[:-1]]).astype(np.int64)
    first = block_offset[cids] + starts // block_bases
    last = block_offset[cids] + (np.maximum(ends, starts + 1) - 1) // block_bases
    # the touched blocks' global ids, sorted (each window's first..last): as many as the regions have blocks,
    # never an array over every block of the contig up to the last window
    span = last - first + 1
    keys = np.repeat(first - np.concatenate([[0], np.cumsum(span)[:-1]]), span) + np.arange(int(span.sum()))
    used = np.unique(keys)
    if used.size < 3:
        raise InputError(f"sae.split_block_bases = {block_bases}: the windows touch only {used.size} genome "
                         f"block(s); need at least 3 for train/validation/test (use smaller blocks)")
    # the permutation of the sorted ids: the same assignment as the dense array over all blocks gave
    order = np.searchsorted(used, np.random.default_rng([seed, 1729]).permutation(used))
    n_test = min(max(1, round(test_fraction * used.size)), used.size - 2)
    n_val = min(max(1, round(validation_fraction * used.size)), used.size - 1 - n_test)
    split = np.full(used.size, TRAIN, dtype=np.int8)
    split[order[:n_test]] = TEST
    split[order[n_test:n_test + n_val]] = VALIDATION
    first_at, last_at = np.searchsorted(used, first), np.searchsorted(used, last)
    code = split[first_at]
    # a window's blocks are consecutive touched ids, so its pure-ness is one split over first_at..last_at
    pure = np.ones(first.size, dtype=bool)
    for i in range(1, int((last_at - first_at).max(initial=0)) + 1):
        pure &= (first_at + i > last_at) | (split[np.minimum(first_at + i, last_at)] == code)
    window_split = np.full(size, UNUSED, dtype=np.int8)
    window_split[w_index] = np.where(pure, code, UNUSED)
    short = [SPLIT_NAMES[c] for c in SPLIT_NAMES if not (window_split == c).any()]
    if short:
        raise InputError(f"sae.split_block_bases = {block_bases}: no window lies wholly in the {' or '.join(short)} "
                         f"blocks (windows up to {int((ends - starts).max())} bases; {int((~pure).sum())} of "
                         f"{pure.size} straddle splits, and their tokens are left out so that no held-out token "
                         f"has training bases in its context). Use blocks several times the window length")
    return BlockSplit(block_bases, contigs, window_contig, window_start, block_offset, used, split, window_split)


def windows_within(split: BlockSplit, windows: pl.DataFrame, code: int) -> np.ndarray:
    """bool [rows of windows]: every base of the window lies in blocks of split `code`."""
    w = windows["window_index"].to_numpy().astype(np.int64)
    split.global_block(w, np.zeros(w.size, dtype=np.int64))  # refuses windows the split does not know
    return split.window_split[w] == code
