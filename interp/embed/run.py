"""Run an embedder over genome windows (pooled AnnData + per-token zarr stores) or free sequences."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import anndata as ad
import numpy as np
import polars as pl

from interp.embed.base import Embedder, TokenActivations
from interp.embed.store import TokenStoreWriter
from interp.errors import InputError
from interp.io import atomic_path

WINDOW_COLUMNS = ("window_index", "window_id", "contig", "start", "end", "sequence")


def label_prefix_sums(bases: pl.DataFrame, label_names: tuple[str, ...] | list[str]) -> dict[str, dict]:
    """Per contig: {"pos": int64 [n] its sorted distinct positions, label: int64 [n + 1] prefix sums}.

    Sums run over the positions the table has, not over the contig's coordinates, so memory follows the bases
    studied, not how far along the chromosome they lie (a gene at the end of chr1 costs what one at its start
    does). With i, j = searchsorted(pos, [s, e)), j - i counts the table's bases of [s, e) and
    `prefix[j] - prefix[i] > 0` says some base of the span carries the label.
    """
    missing = [c for c in ("contig", "pos", *label_names) if c not in bases.columns]
    if missing:
        raise InputError(f"bases table, field {missing[0]}: column missing (expected contig, pos and "
                         f"{list(label_names)})")
    sums: dict[str, dict] = {}
    for (contig,), part in bases.group_by("contig", maintain_order=True):
        # a position listed twice (overlapping windows' bases) counts once and carries a label if any row does
        part = part.group_by("pos").agg(pl.col(name).cast(pl.Int64).max() for name in label_names).sort("pos")
        per = {"pos": part["pos"].to_numpy().astype(np.int64)}
        for name in label_names:
            per[name] = np.concatenate([[0], np.cumsum(part[name].to_numpy().astype(np.int64) > 0)])
        sums[str(contig)] = per
    return sums


def span_indices(positions: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 [m] twice: the range [i, j) of sorted `positions` that falls in each span [start, end)."""
    return np.searchsorted(positions, starts, side="left"), np.searchsorted(positions, ends, side="left")


def check_windows(windows: pl.DataFrame) -> pl.DataFrame:
    """Validate the windows table; return it sorted by window_index."""
    missing = [c for c in WINDOW_COLUMNS if c not in windows.columns]
    if missing:
        raise InputError(f"windows table, field {missing[0]}: column missing (expected {list(WINDOW_COLUMNS)})")
    if windows.height == 0:  # else every pooled table would be 0 x 0 and no token store written, with no error
        raise InputError("windows table: no windows (expected the rows the windows stage writes)")
    windows = windows.sort("window_index")
    bad = windows.filter(pl.col("sequence").str.len_chars() != (pl.col("end") - pl.col("start")))
    if bad.height:
        raise InputError(f"windows table, field sequence: window {bad['window_id'][0]} has a sequence whose "
                         "length differs from end - start")
    if windows["window_id"].n_unique() != windows.height:
        raise InputError("windows table, field window_id: ids are not unique")
    return windows


def write_pooled(path: Path, pooled: np.ndarray, windows: pl.DataFrame, model: str, layer: str,
                 pooling: str = "mean") -> None:
    """AnnData .h5ad: X float32 [n_windows, d], obs = windows without sequence; temp name then rename."""
    obs = windows.drop("sequence").to_pandas()
    obs.index = windows["window_id"].cast(pl.String).to_list()
    adata = ad.AnnData(X=pooled.astype(np.float32), obs=obs,
                       uns={"model": model, "layer": layer, "pooling": pooling})
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def embed_windows(embedder: Embedder, windows: pl.DataFrame, bases: pl.DataFrame, layers: list[str],
                  token_layers: list[str], batch_size: int, pooled_out: dict[str, Path],
                  token_out: dict[str, Path], label_names: tuple[str, ...] = ("exon", "intron", "repeat", "cpg"),
                  ) -> dict:
    """Embed every window; write a pooled .h5ad per layer and a token store per token layer.

    Token labels: a token carries a label if any base it covers (window start + base_span, in
    genome coordinates of the window's contig) has it in `bases`. Per-token activations are
    streamed batch by batch to the stores, never all held at once.
    Returns {"n_windows", "n_tokens", "seconds", "d": {layer: width}}.
    """
    started = time.perf_counter()
    # a layer named twice (embed.layers: [block2, block2]) would pool and store every token twice
    layers, token_layers = list(dict.fromkeys(layers)), list(dict.fromkeys(token_layers))
    for layer in layers:
        if layer not in pooled_out:
            raise InputError(f"no pooled output path given for layer {layer}")
    for layer in token_layers:
        if layer not in token_out:
            raise InputError(f"no token-store path given for layer {layer}")
    windows = check_windows(windows)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    sums = label_prefix_sums(bases, label_names)
    wanted = list(dict.fromkeys([*layers, *token_layers]))
    pooling = getattr(embedder, "pooling", "mean")
    pooled: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    writers: dict[str, TokenStoreWriter] = {}
    n_tokens = 0

    def store(acts: dict[str, TokenActivations], batch: pl.DataFrame) -> int:
        """Label and append one batch's tokens to the stores (runs on the writer thread)."""
        rows = token_rows(acts[token_layers[0]], batch, sums, label_names)
        for layer in token_layers:
            a = acts[layer]
            if layer not in writers:
                writers[layer] = TokenStoreWriter(token_out[layer], a.values.shape[1], list(label_names),
                                                  embedder.name, layer)
            writers[layer].append(a.values[a.real_token_mask()], rows["window_index"], rows["base_start"],
                                  rows["labels"])
        return len(rows["window_index"])

    # one background writer: batch k is written while batch k+1 runs through the model; at most one
    # batch waits, so memory stays bounded by two batches whatever the number of windows
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future | None = None
        for first in range(0, windows.height, batch_size):
            batch = windows.slice(first, batch_size)
            acts = embedder.embed([s.upper() for s in batch["sequence"].to_list()], wanted)
            for layer in layers:
                pooled[layer].append(pool_tokens(acts[layer], pooling))
            if not token_layers:
                continue
            if pending is not None:
                n_tokens += pending.result()
            pending = pool.submit(store, acts, batch)
        if pending is not None:
            n_tokens += pending.result()
    widths = {}
    for layer in layers:
        matrix = np.concatenate(pooled[layer]) if pooled[layer] else np.zeros((0, 0), np.float32)
        widths[layer] = int(matrix.shape[1])
        write_pooled(pooled_out[layer], matrix, windows, embedder.name, layer, pooling)
    for layer, writer in writers.items():
        widths[layer] = writer.d
        writer.close()
    return {"n_windows": windows.height, "n_tokens": n_tokens, "seconds": round(time.perf_counter() - started, 3),
            "d": widths}


def token_rows(acts: TokenActivations, batch: pl.DataFrame, sums: dict[str, dict],
               label_names: tuple[str, ...] | list[str]) -> dict:
    """For the real tokens of a batch: window_index int32 [m], base_start int32 [m], labels {name: uint8 [m]}."""
    real = acts.real_token_mask()
    seq_of_token = np.repeat(np.arange(acts.n_seqs), np.diff(acts.offsets))[real]
    span = acts.base_span[real].astype(np.int64)
    starts = batch["start"].to_numpy().astype(np.int64)[seq_of_token]
    contigs = np.asarray(batch["contig"].cast(pl.String).to_list())[seq_of_token]
    g_start, g_end = starts + span[:, 0], starts + span[:, 1]
    labels = {name: np.zeros(len(span), dtype=np.uint8) for name in label_names}
    for contig in np.unique(contigs):
        if contig not in sums:
            raise InputError(f"bases table, field contig: no bases for contig {contig} used by the windows")
        sel = contigs == contig
        first, last = span_indices(sums[contig]["pos"], g_start[sel], g_end[sel])
        if np.any(last - first != g_end[sel] - g_start[sel]):
            raise InputError(f"bases table: contig {contig} lacks some positions covered by the windows")
        for name in label_names:
            prefix = sums[contig][name]
            labels[name][sel] = (prefix[last] - prefix[first] > 0).astype(np.uint8)
    return {"window_index": batch["window_index"].to_numpy().astype(np.int32)[seq_of_token],
            "base_start": span[:, 0].astype(np.int32), "labels": labels}


def pool_tokens(acts: TokenActivations, pooling: str = "mean") -> np.ndarray:
    """float32 [n_seqs, d]: mean over each sequence's base-covering tokens, or its last one (causal models).

    CLS/EOS/pad tokens never cover a base, so they are never pooled.
    """
    if pooling == "mean":
        return acts.mean_pool()
    if pooling == "last":
        real = acts.real_token_mask()
        last = np.full(acts.n_seqs, -1, dtype=np.int64)
        seq_of_token = np.repeat(np.arange(acts.n_seqs), np.diff(acts.offsets))
        idx = np.flatnonzero(real)
        # the largest real token index per sequence (np.maximum.at: a repeated-index assignment has no defined order)
        np.maximum.at(last, seq_of_token[idx], idx)
        if np.any(last < 0):
            raise ValueError("a sequence has no base-covering token; cannot pool it")
        return acts.values[last].astype(np.float32)
    raise ValueError(f"unknown pooling {pooling!r}; expected mean or last")


def embed_sequences(embedder: Embedder, seqs: list[str], layers: list[str], batch_size: int,
                    token_transforms: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] | None = None,
                    ) -> dict[str, np.ndarray]:
    """Mean-pooled activations of free sequences.

    Returns {layer: float32 [n_seqs, d]} for `layers`, plus for each transform name (layer, fn)
    the mean over each sequence's real tokens of fn(per-token activations [m, d]) -> [m, k].
    """
    token_transforms = token_transforms or {}
    layers = list(dict.fromkeys(layers))  # a layer named twice would give each batch's rows twice
    pooling = getattr(embedder, "pooling", "mean")
    wanted = list(dict.fromkeys([*layers, *(layer for layer, _ in token_transforms.values())]))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in [*layers, *token_transforms]}
    for first in range(0, len(seqs), batch_size):
        acts = embedder.embed([s.upper() for s in seqs[first:first + batch_size]], wanted)
        for layer in layers:
            parts[layer].append(pool_tokens(acts[layer], pooling))
        for name, (layer, fn) in token_transforms.items():
            a = acts[layer]
            real = a.real_token_mask()
            transformed = np.asarray(fn(a.values[real]), dtype=np.float32)
            parts[name].append(TokenActivations(values=transformed, offsets=real_offsets(a),
                                                base_span=a.base_span[real]).mean_pool())
    return {name: np.concatenate(p).astype(np.float32) for name, p in parts.items()}


def real_offsets(acts: TokenActivations) -> np.ndarray:
    """int64 [n_seqs + 1]: offsets after dropping non-base tokens."""
    real = acts.real_token_mask()
    seq_of_token = np.repeat(np.arange(acts.n_seqs), np.diff(acts.offsets))
    counts = np.bincount(seq_of_token[real], minlength=acts.n_seqs)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
