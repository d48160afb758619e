"""Cohort embeddings: each distinct haplotype window is embedded once (`embed_distinct_windows`), then the
per-sequence vectors are pooled per sample (`pool_cohort`).

Shapes: n_seqs distinct window sequences, n_samples samples, n_windows cohort windows (the `window_index`
of `interp.cohort.haplotypes.window_numbering`, 0 .. n_windows - 1), d dimensions of a layer (or SAE
features), 2 haplotypes per sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import anndata as ad
    import pandas as pd

    from interp.embed.base import Embedder
    from interp.embed.cache import EmbeddingCache


def embed_distinct_windows(embedder: Embedder, sequences: list[str], layers: list[str], batch_size: int,
                           sae_model: Any, sae_layer: str, cache: EmbeddingCache | None = None,
                           sae_cache_key: str | None = None) -> dict[str, np.ndarray]:
    """Mean-pooled activations of each distinct window sequence, and of its SAE features.

    sae_model: an SAE (`interp.sae.train.load_sae`) whose `encode` maps torch float32 [m, d] activations
    of `sae_layer` to [m, n_features] codes.
    cache: an `interp.embed.cache.EmbeddingCache` of this model; sequences whose vectors it holds are not
    run through the model (`interp.embed.cache.cached_vectors`); sae_cache_key (`interp.embed.cache.sae_key`)
    names the SAE's codes in it, and is required with a cache.
    Returns {layer: float32 [n_seqs, d]} for `layers`, plus "sae": float32 [n_seqs, n_features], the mean
    over each sequence's real tokens of the SAE codes (`interp.embed.run.embed_sequences`).
    """
    import torch

    from interp.embed.cache import cached_vectors
    from interp.embed.run import embed_sequences

    if cache is not None and not sae_cache_key:
        raise ValueError("embed_distinct_windows: a cache needs sae_cache_key (the SAE's weights identify its codes)")

    sae_model = sae_model.eval()

    def sae_encode(acts: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return sae_model.encode(torch.from_numpy(np.ascontiguousarray(acts))).numpy()

    def compute(seqs: list[str]) -> dict[str, np.ndarray]:
        return embed_sequences(embedder, seqs, layers, batch_size, token_transforms={"sae": (sae_layer, sae_encode)})

    keys = {**{layer: layer for layer in layers}, "sae": sae_cache_key or "sae"}
    return cached_vectors(sequences, keys, compute, cache)


#: rows of the haplotype-window assignments mapped to codes and placed at a time by `sequence_index`
INDEX_BATCH_ROWS = 1 << 18
#: the assignments' columns `sequence_index` reads: the rows' (placed a batch at a time), then the windows'
_INDEX_COLUMNS = ("sample", "hap", "window_index", "seq_hash")
_WINDOW_COLUMNS = ("window_index", "window_id", "region", "contig", "start", "end")


def _assignment_batches(assignments: pl.DataFrame | Path, columns: tuple[str, ...]) -> Iterator[pl.DataFrame]:
    """The rows' `columns`, `INDEX_BATCH_ROWS` rows at most at a time: a DataFrame in slices; a parquet file
    row group by row group, each in batches of rows (pyarrow; one iterator a row group, as one over the whole
    file keeps memory for each row group it has read, and polars' streaming scan reads ahead up to 128 row
    groups)."""
    if isinstance(assignments, pl.DataFrame):
        yield from assignments.select(columns).iter_slices(INDEX_BATCH_ROWS)
        return
    import pyarrow.parquet as pq

    with pq.ParquetFile(assignments) as parquet:
        for group in range(parquet.num_row_groups):
            for batch in parquet.iter_batches(INDEX_BATCH_ROWS, row_groups=[group], columns=list(columns)):
                yield pl.from_arrow(batch)  # type: ignore[misc]


def _distinct_windows(source: pl.DataFrame | Path) -> pl.DataFrame:
    """The distinct (window_index, window_id, region, contig, start, end) of the rows, sorted by window_index,
    a batch at a time (memory: the windows and one batch)."""
    windows: pl.DataFrame | None = None
    for batch in _assignment_batches(source, _WINDOW_COLUMNS):
        batch = batch.unique()
        windows = batch if windows is None else pl.concat([windows, batch]).unique()
    if windows is None:
        return pl.DataFrame(schema=source.select(_WINDOW_COLUMNS).schema if isinstance(source, pl.DataFrame)
                            else pl.scan_parquet(source).select(_WINDOW_COLUMNS).collect_schema())
    return windows.sort("window_index", *_WINDOW_COLUMNS[1:])


def sequence_index(assignments: pl.DataFrame | str | Path, samples: list[str], seq_hashes: list[str],
                   ) -> tuple[np.ndarray, pl.DataFrame]:
    """Where each (sample, window, haplotype) finds its sequence.

    assignments: sample, hap (1 | 2), window_index (0 .. n_windows - 1), window_id, region, contig, start,
    end, seq_hash (`interp.cohort.haplotypes.merge_region_windows`, or a sharded run's gather), rows in any order
    (each is placed by its sample, window and haplotype), in memory or the path of its parquet (then only the
    columns used are read, a batch of rows at a time); rows of samples not in `samples` are ignored. A
    (sample, window, haplotype) given more than once with the same sequence is placed once; with different
    sequences it raises ValueError (naming it). seq_hashes: the hash of row i of the distinct-sequence matrix
    (distinct).
    Returns (seq_index int32 [n_samples, n_windows, 2] (int64 beyond 2^31 - 1 sequences), the row of the
    distinct-sequence matrix for sample s, window w, haplotype h + 1; windows: window_index, window_id,
    region, contig, start, end, one row per window, sorted by window_index). Raises ValueError when a column is
    missing or has missing values, when a hash is not in `seq_hashes` (naming one), a hap is not 1 or 2, the
    windows are not numbered 0 .. n_windows - 1 once each, and when some (sample, window, haplotype) has no row.

    Memory: the index, the windows table, `seq_hashes` (as a `pl.Enum`) and one batch (`INDEX_BATCH_ROWS` rows:
    a parquet is read row group by row group, each in batches of rows, twice: the windows' columns, then the
    rows'), each batch reduced to its distinct windows, or mapped to codes (sample and hash as `pl.Enum`
    codes) and placed in the index, before the next is read. At 3,000 samples, 1.8 M / 7.2 M rows (300 / 1,200
    windows) peaked at 169 / 187 MiB over the step's start (x1.11), against 205 / 375 MiB (x1.83) with every
    row's codes collected at once as before; CPU 0.7 / 2.7 s against 0.3 / 1.6 s (two passes)
    (`benchmarks/cohort_side_memory.py --index`, 2026-12-05, shared 2-core machine).
    """
    if not isinstance(assignments, (pl.DataFrame, str, Path)):
        raise TypeError(f"sequence_index: assignments must be a DataFrame or a parquet path, not "
                        f"{type(assignments).__name__}")
    source = assignments if isinstance(assignments, pl.DataFrame) else Path(assignments)
    lazy = source.lazy() if isinstance(source, pl.DataFrame) else pl.scan_parquet(source)
    missing = sorted({*_INDEX_COLUMNS, *_WINDOW_COLUMNS} - set(lazy.collect_schema().names()))
    if missing:
        raise ValueError(f"the haplotype windows table has no column(s) {missing}")
    windows = _distinct_windows(source)
    n_s, n_w = len(samples), windows.height
    if n_w and not windows["window_index"].equals(pl.Series("window_index", range(n_w)), check_dtypes=False):
        raise ValueError(f"the haplotype windows table's {n_w} windows are not numbered 0 .. {n_w - 1} once "
                         "each (window_index)")
    dtype = np.int32 if len(seq_hashes) < np.iinfo(np.int32).max else np.int64
    seq_index = np.full((n_s, n_w, 2), -1, dtype=dtype)
    flat = seq_index.reshape(-1)
    s_pos = {s: i for i, s in enumerate(samples)}
    sample_cats = list(s_pos)  # distinct, in first-seen order; code k is sample_cats[k]
    position_of_code = np.array([s_pos[s] for s in sample_cats], dtype=np.int64)
    sample_enum, hash_enum = pl.Enum(sample_cats), pl.Enum(seq_hashes)
    for batch in _assignment_batches(source, _INDEX_COLUMNS):
        nulls = [c for c in _INDEX_COLUMNS if batch[c].null_count()]
        if nulls:
            raise ValueError(f"the haplotype windows table has missing values in {nulls}")
        codes = (batch.select(pl.col("sample").cast(sample_enum, strict=False).to_physical().alias("s"),
                              pl.col("window_index").cast(pl.Int64).alias("w"),
                              (pl.col("hap").cast(pl.Int64) - 1).alias("h"),
                              pl.col("seq_hash").cast(hash_enum, strict=False).to_physical().alias("q"))
                 .filter(pl.col("s").is_not_null()))
        del batch
        if codes["q"].null_count():
            unknown = (lazy.filter(pl.col("sample").is_in(sample_cats) & ~pl.col("seq_hash").is_in(seq_hashes))
                       .select(pl.col("seq_hash").unique()).collect(engine="streaming")["seq_hash"])
            raise ValueError(f"{unknown.len()} sequence hash(es) of the haplotype windows are not in the sequences "
                             f"table, e.g. {unknown[0]} (tables of different haplotypes runs?)")
        w, h, q = codes["w"].to_numpy(), codes["h"].to_numpy(), codes["q"].to_numpy()
        if ((h != 0) & (h != 1)).any():
            raise ValueError(f"the haplotype windows table has hap {int(h[(h != 0) & (h != 1)][0]) + 1}: "
                             "haplotypes are 1 and 2")
        at = (position_of_code[codes["s"].to_numpy()] * n_w + w) * 2 + h
        del codes, w, h
        before = flat[at]
        flat[at] = q
        # a place given twice: an earlier batch's different sequence, or a different one within this batch
        clash = ((before >= 0) & (before != q)) | (flat[at] != q)
        if clash.any():
            s, w0, h0 = np.unravel_index(int(at[np.argmax(clash)]), seq_index.shape)
            raise ValueError(f"sample {samples[s]!r} window {windows['window_id'][int(w0)]} haplotype {h0 + 1} is "
                             "given more than once with different sequences (rows of two runs in one table?)")
    if (seq_index < 0).any():
        absent = [s for s in samples if (seq_index[s_pos[s]] < 0).all()]
        if absent:
            raise ValueError(f"{len(absent)} sample(s) have no haplotype windows, e.g. {absent[0]!r}: the "
                             "haplotypes and genotypes tables come from different sample sets")
        s, w, h = (int(x) for x in np.argwhere(seq_index < 0)[0])
        raise ValueError(f"sample {samples[s]!r} has no sequence for window {windows['window_id'][w]} haplotype "
                         f"{h + 1}: some (sample, window, haplotype) has no sequence")
    return seq_index, windows


#: bytes of float32 [n_samples, windows, 2, d] gathered at a time when pooling (bounds the pooling's memory)
POOL_CHUNK_BYTES = 1 << 27
#: rows of the windows table's HDF5 chunks (`WindowTable.write_h5ad`): sample blocks are cut at multiples of it
H5_CHUNK_ROWS = 256


def _window_chunks(n_s: int, n_w: int, d: int) -> Iterator[tuple[slice, slice]]:
    """(samples, windows) slices whose gathered [samples, windows, 2, d] float32 block stays within
    `POOL_CHUNK_BYTES`: blocks of windows over all samples, and where one window of all samples is larger
    (3,000 samples x 32,768 SAE features: 786 MB), one window over blocks of samples (multiples of
    `H5_CHUNK_ROWS` where possible, so each HDF5 chunk of the windows table is written once). One
    sample-window (2 x d) is the smallest block. Window blocks are as before samples were split (one window
    when one window is over the budget) and every (sample, window) entry is pooled on its own, so the tables
    are the same bits as with whole-sample blocks."""
    per_window = max(1, n_s * 2 * d * 4)
    step = max(1, POOL_CHUNK_BYTES // per_window)
    if n_s and per_window > POOL_CHUNK_BYTES:
        rows = max(1, POOL_CHUNK_BYTES // max(1, 2 * d * 4))
        rows = rows // H5_CHUNK_ROWS * H5_CHUNK_ROWS or rows
        for lo in range(0, n_w):
            for r in range(0, n_s, rows):
                yield slice(r, min(r + rows, n_s)), slice(lo, lo + 1)
        return
    for lo in range(0, n_w, step):
        yield slice(0, n_s), slice(lo, min(lo + step, n_w))


class WindowTable:
    """A `<layer>.windows.h5ad` table, written window block by window block (`write_h5ad`), so that pooling
    never holds [n_samples, n_windows, 2, d] at once: its memory follows the block (`POOL_CHUNK_BYTES`),
    not the number of windows. The file is an ordinary AnnData h5ad (dense float32 X [n_samples,
    n_windows * d], window-major, HDF5-chunked so that column blocks read quickly; lzf-compressed for SAE
    codes, which are mostly zeros).
    """

    def __init__(self, mat: np.ndarray, seq_index: np.ndarray, obs: pd.DataFrame, var: pd.DataFrame,
                 pcs: np.ndarray, uns: dict[str, str]) -> None:
        self.mat, self.seq_index, self.obs, self.var, self.pcs, self.uns = mat, seq_index, obs, var, pcs, uns

    @property
    def shape(self) -> tuple[int, int]:
        return self.seq_index.shape[0], self.var.shape[0]

    def write_h5ad(self, path: str | Path) -> None:
        import anndata as ad
        import h5py

        n_s, n_w = self.seq_index.shape[:2]
        d = self.mat.shape[1]
        shell = ad.AnnData(obs=self.obs, var=self.var)
        shell.obsm["X_pca"] = self.pcs
        shell.uns.update(self.uns)
        shell.write_h5ad(path)
        with h5py.File(path, "a") as f:
            n_cols = n_w * d
            chunks = (max(1, min(n_s, 256)), max(1, min(n_cols, 1024))) if n_s and n_cols else None
            # SAE codes are mostly zeros (78% in the demo's pooled windows): lzf stores them in a fraction
            x = f.create_dataset("X", shape=(n_s, n_cols), dtype="float32", chunks=chunks,
                                 compression="lzf" if self.uns.get("kind") == "sae" and chunks else None)
            x.attrs["encoding-type"], x.attrs["encoding-version"] = "array", "0.2.0"
            for rows, sl in _window_chunks(n_s, n_w, d):
                block = self.mat[self.seq_index[rows, sl]].mean(axis=2)  # [rows, k, d], mean of the 2 haplotypes
                x[rows, sl.start * d:sl.stop * d] = block.reshape(block.shape[0], -1).astype(np.float32, copy=False)


def _sample_means(mat: np.ndarray, seq_index: np.ndarray, keep_haplotypes: bool,
                  ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Per sample: X float32 [n_samples, d], the mean over windows of h (the mean of the two haplotypes'
    vectors), and with keep_haplotypes (hap1, hap2) [n_samples, d] (mat's dtype), each haplotype's mean over
    windows. Only these outputs are held whole: the float64 sums run over blocks of samples whose [samples, 2,
    d] float64 total stays within `POOL_CHUNK_BYTES` (3,000 samples x 32,768 SAE features held 1.5 GB for the
    total, 1.5 GB for its mean and 786 MB for the haplotypes' mean at once), each block summing the windows in
    the window blocks of `_window_chunks` in the same order, so every entry is the same bits as with the
    whole-cohort total."""
    n_s, n_w = seq_index.shape[:2]
    d = mat.shape[-1]
    x = np.empty((n_s, d), dtype=np.float32)
    haps = (np.empty((n_s, d), dtype=mat.dtype), np.empty((n_s, d), dtype=mat.dtype)) if keep_haplotypes else None
    # the window blocks of the whole-cohort pooling, in order (one window each where samples were split there)
    window_blocks = list(dict.fromkeys((sl.start, sl.stop) for _, sl in _window_chunks(n_s, n_w, d)))
    rows = max(1, POOL_CHUNK_BYTES // max(1, 2 * d * 8))
    for lo in range(0, n_s, rows):
        block = slice(lo, min(lo + rows, n_s))
        total = np.zeros((block.stop - block.start, 2, d), dtype=np.float64)  # per haplotype, summed over windows
        for start, stop in window_blocks:
            total += mat[seq_index[block, start:stop]].sum(axis=1, dtype=np.float64)
        total /= max(n_w, 1)
        x[block] = total.mean(axis=1).astype(np.float32)
        if haps is not None:
            haps[0][block] = total[:, 0].astype(mat.dtype)
            haps[1][block] = total[:, 1].astype(mat.dtype)
    return x, haps


def cohort_tables(pooled: dict[str, np.ndarray], seq_index: np.ndarray, obs: pd.DataFrame, pcs: np.ndarray,
                  windows: pl.DataFrame, model: str, sae_layer: str, keep_haplotypes: bool = False,
                  ) -> Iterator[tuple[str, ad.AnnData | WindowTable]]:
    """The cohort's embedding tables, one pair per entry of `pooled`, yielded one at a time as (file name,
    table).

    pooled: {layer or "sae": float32 [n_seqs, d]} (`embed_distinct_windows`); seq_index, windows as from
    `sequence_index`; obs: per-sample table [n_samples] (copied into each table); pcs: ancestry PCs
    [n_samples, n_pcs] (obsm["X_pca"] of each table). For each entry, with h the mean of a sample's two
    haplotypes' vectors in a window:
      `<layer>.samples.h5ad` (`sae.features.h5ad` for "sae"), an AnnData: X float32 [n_samples, d], the mean
          of h over windows; with keep_haplotypes, obsm hap1 / hap2 [n_samples, d], each haplotype's mean
          over windows;
      `<layer>.windows.h5ad`, a `WindowTable` (write it with its `write_h5ad`): X float32 [n_samples,
          n_windows * d], h window-major (column w * d + j is dimension j of window w); var: the window's
          columns, `dim` j, index "<model>/<layer>/<window_id>/dim<j>" ("f<j>" for SAE features;
          "<window_id>@<region>" where overlapping regions share a window_id).
    Both carry uns model, layer (sae_layer for "sae") and kind ("embedding" or "sae"). Pooling runs over
    blocks of windows and of samples (`POOL_CHUNK_BYTES`, `_sample_means`), so memory follows the output
    (n_samples x d float32), not the number of windows.
    """
    import anndata as ad

    n_s, n_w = seq_index.shape[:2]
    var_w = windows.to_pandas()
    # overlapping regions can share a window's bases (one window_id, two regions): named by region there
    shared = var_w["window_id"].duplicated(keep=False).to_numpy()
    labels = np.where(shared, var_w["window_id"].astype(str) + "@" + var_w["region"].astype(str),
                      var_w["window_id"].astype(str))
    for name, mat in pooled.items():
        d = mat.shape[-1]
        x, haps = _sample_means(mat, seq_index, keep_haplotypes)
        sample_level = ad.AnnData(X=x, obs=obs.copy())
        sample_level.obsm["X_pca"] = pcs
        if keep_haplotypes:
            sample_level.obsm["hap1"], sample_level.obsm["hap2"] = haps
        del x, haps
        layer = sae_layer if name == "sae" else name
        kind = "sae" if name == "sae" else "embedding"
        uns = {"model": model, "layer": layer, "kind": kind}
        sample_level.uns.update(uns)
        # sample-level SAE features feed the per-feature leakage audit, not a probe of their own
        yield (f"{name}.samples.h5ad" if kind == "embedding" else "sae.features.h5ad"), sample_level
        del sample_level  # not held here while the windows table is written
        var = var_w.iloc[np.repeat(np.arange(n_w), d)].reset_index(drop=True)  # by position: ids may repeat
        var["dim"] = np.tile(np.arange(d), n_w)
        prefix = "f" if kind == "sae" else "dim"
        var.index = [f"{model}/{layer}/{w}/{prefix}{j}" for w, j in zip(np.repeat(labels, d), var["dim"], strict=True)]
        yield f"{name}.windows.h5ad", WindowTable(mat, seq_index, obs.copy(), var, pcs, uns)


def window_regions(path: str | Path) -> list[str]:
    """The regions of a `<layer>.windows.h5ad` table (var column `region`), in the order of their first
    window."""
    import anndata as ad

    meta = ad.read_h5ad(path, backed="r")
    try:
        return list(dict.fromkeys(meta.var["region"].astype(str).tolist()))
    finally:
        meta.file.close()


def _region_spans(var) -> dict[str, list]:
    """{region: [contig, first window start, last window end]} of a windows table's var (0-based, half-open);
    regions whose windows lie on more than one contig are left out."""
    if not {"contig", "start", "end"} <= set(var.columns):
        return {}
    frame = pl.DataFrame({"region": var["region"].astype(str).to_numpy(), "contig": var["contig"].astype(str).to_numpy(),
                          "start": var["start"].to_numpy().astype(np.int64), "end": var["end"].to_numpy().astype(np.int64)})
    spans = frame.group_by("region").agg(pl.col("contig").n_unique().alias("n"), pl.col("contig").first(),
                                         pl.col("start").min(), pl.col("end").max())
    return {r["region"]: [r["contig"], int(r["start"]), int(r["end"])] for r in spans.iter_rows(named=True) if r["n"] == 1}


def region_sample_tables(samples: ad.AnnData, windows_path: str | Path) -> Iterator[ad.AnnData]:
    """Per-region sample-level tables from a `<layer>.windows.h5ad` (`cohort_tables`), one region at a time.

    samples: the layer's `<layer>.samples.h5ad` AnnData (obs, obsm, uns are copied; its rows set the sample
    order). For each region (`window_regions` order) yields an AnnData like `samples` whose X float32
    [n_samples, d] is the mean over the region's windows of h (the mean of a sample's two haplotypes'
    vectors), i.e. the sample table of a cohort of that region alone, with uns["region"] set (and uns["region_span"], [contig, start, end) of its windows). X of the
    windows table stays on disk and is read a block of windows at a time (`interp.rank.Columns`), so memory
    follows n_samples x d, not the region's windows.
    """
    import anndata as ad
    import h5py

    from interp.errors import InputError
    from interp.rank import COLUMN_CHUNK, Columns

    meta = ad.read_h5ad(windows_path, backed="r")
    try:
        position = {s: i for i, s in enumerate(meta.obs_names.astype(str))}
        region = meta.var["region"].astype(str).to_numpy()
        dim = meta.var["dim"].to_numpy().astype(np.int64)
        spans = _region_spans(meta.var[dim == 0])  # one row per window, not per window x dimension
    finally:
        meta.file.close()
    missing = [s for s in samples.obs_names.astype(str) if s not in position]
    if missing:
        raise InputError(f"{windows_path}: lacks sample {missing[0]!r} of the sample table ({len(missing)} missing)")
    d = int(dim.max()) + 1 if dim.size else 0
    if d != samples.n_vars:
        raise InputError(f"{windows_path}: {d} dimensions per window, the sample table has {samples.n_vars}")
    rows = np.array([position[s] for s in samples.obs_names.astype(str)], dtype=np.int64)
    window_of_col = np.arange(region.size) // max(d, 1)
    step = max(1, COLUMN_CHUNK // max(d, 1))  # windows read at a time
    with h5py.File(windows_path, "r") as f:
        cols = Columns(f["X"], rows)
        for name in dict.fromkeys(region.tolist()):
            windows = np.unique(window_of_col[region == name])
            total = np.zeros((rows.size, d))
            for lo in range(0, windows.size, step):
                idx = (windows[lo:lo + step, None] * d + np.arange(d)).ravel()
                total += cols.read(idx).reshape(rows.size, -1, d).sum(axis=1)
            table = ad.AnnData(X=(total / windows.size).astype(np.float32), obs=samples.obs.copy())
            for key, value in samples.obsm.items():
                table.obsm[key] = np.asarray(value)
            table.uns.update({**samples.uns, "region": name, "n_region_windows": int(windows.size)})
            if name in spans:
                table.uns["region_span"] = spans[name]
            yield table


def pool_cohort(pooled: dict[str, np.ndarray], sequences: pl.DataFrame, assignments: pl.DataFrame | str | Path,
                genotypes: ad.AnnData, model: str, sae_layer: str, keep_haplotypes: bool = False,
                ) -> Iterator[tuple[str, ad.AnnData]]:
    """Per-sample cohort embedding tables from the distinct sequences' vectors.

    pooled: {layer or "sae": [n_seqs, d]}, row i the vector of `sequences` row i; sequences: at least seq_hash
    and gc (the sequence's GC fraction, `interp.cohort.haplotypes.gc_fraction`, written by the haplotypes
    stage; the sequence itself is not needed here); assignments: the haplotypes stage's table (or the path of
    its parquet, read a batch of rows at a time, `sequence_index`); genotypes: the ancestry stage's AnnData (its obs, in its sample order, and
    obsm["X_pca"]). The samples' obs gain `gc`, the mean GC fraction of their 2 x n_windows window sequences.
    A table without gc raises ValueError. The index is checked now (ValueError when some sample, window or
    haplotype has no sequence); the tables are then yielded one at a time by `cohort_tables`.
    """
    if "gc" not in sequences.columns:
        raise ValueError("pool_cohort: the sequences table has no gc column (a table of an older haplotypes run?)")
    seq_index, windows = sequence_index(assignments, genotypes.obs_names.tolist(), sequences["seq_hash"].to_list())
    gc = sequences["gc"].cast(pl.Float64).to_numpy()
    obs = genotypes.obs.copy()
    n_s, n_w = seq_index.shape[:2]
    gc_sum = np.zeros(n_s)
    for rows, sl in _window_chunks(n_s, n_w, 1):
        gc_sum[rows] += gc[seq_index[rows, sl]].sum(axis=(1, 2))
    obs["gc"] = gc_sum / max(2 * n_w, 1)
    return cohort_tables(pooled, seq_index, obs, np.asarray(genotypes.obsm["X_pca"]), windows, model, sae_layer,
                         keep_haplotypes)


def embed_cohort_tables(embedder: Embedder | None, sequences: pl.DataFrame,
                        assignments: pl.DataFrame | str | Path,
                        genotypes: ad.AnnData, model: str, layers: list[str], batch_size: int, sae_model: Any,
                        sae_layer: str, keep_haplotypes: bool = False, cache: EmbeddingCache | None = None,
                        sae_cache_key: str | None = None, pooled: dict[str, np.ndarray] | None = None,
                        ) -> tuple[Iterator[tuple[str, ad.AnnData]], dict[str, Any]]:
    """Embed each distinct window sequence once (`embed_distinct_windows`, through `cache` when given), then
    the per-sample tables (`pool_cohort`, a lazy iterator so tables are written one at a time) and the run's
    counts {model, layers, n_haplotype_windows, n_distinct_sequences, dedup_ratio}.

    pooled: the distinct sequences' vectors already computed (gathered from shards,
    `interp.cohort.shards.gather_vectors`), rows in the order of `sequences` sorted by seq_hash; then nothing
    is embedded here (embedder, batch_size, sae_model may be None); ValueError when they are not `layers` and
    "sae", one row per sequence (vectors of another run's layers or sequences)."""
    sequences = sequences.sort("seq_hash")
    if pooled is not None:
        if sorted(pooled) != sorted({*layers, "sae"}):
            raise ValueError(f"embed_cohort_tables: the given vectors hold {sorted(pooled)}, the run asks for "
                             f"{sorted({*layers, 'sae'})}")
        wrong = {name: len(m) for name, m in pooled.items() if len(m) != sequences.height}
        if wrong:
            raise ValueError(f"embed_cohort_tables: {sequences.height} distinct sequences but vectors with "
                             f"{wrong} rows")
    if pooled is None:
        pooled = embed_distinct_windows(embedder, sequences["sequence"].to_list(), layers, batch_size, sae_model,
                                        sae_layer, cache=cache, sae_cache_key=sae_cache_key)
    tables = pool_cohort(pooled, sequences, assignments, genotypes, model, sae_layer,
                         keep_haplotypes=keep_haplotypes)
    n_hw = int(assignments.height if isinstance(assignments, pl.DataFrame)
               else pl.scan_parquet(assignments).select(pl.len()).collect().item())
    n_seq = int(sequences.height)
    stats = {"model": model, "layers": list(layers), "n_haplotype_windows": n_hw, "n_distinct_sequences": n_seq,
             "dedup_ratio": n_hw / max(n_seq, 1)}
    return tables, stats
