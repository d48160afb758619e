"""Describe SAE features by what they fire on: density, label precision/recall/F1, top windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from interp.errors import InputError
from interp.sae.model import TopKSAE
from interp.sae.train import open_store


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


@torch.no_grad()
def feature_table(model: TopKSAE, store_path: str | Path, windows: pl.DataFrame, top_n: int = 5,
                  rows: int = 16384) -> pl.DataFrame:
    """One row per SAE feature, streamed over the store `rows` tokens at a time.

    Columns: feature (id), density (share of tokens where it fires), mean_activation (mean value
    when firing, input-store units of the SAE code), for every store label L: precision_L, recall_L,
    f1_L of "feature fires" against "token has label L"; best_label (label of highest F1, "none" if
    that F1 is 0) and best_f1; top_windows (comma-joined window_id of the top_n windows by maximum
    activation, highest first; only windows where it fires). Sorted by feature.
    """
    store = open_store(store_path)
    if store.d != model.d_in:
        raise InputError(f"{store_path}: activations have width {store.d} but the SAE expects {model.d_in}")
    ids = _window_ids(windows)
    model = model.cpu().eval()
    n_features, labels = model.n_features, store.label_names
    n_fire = np.zeros(n_features)
    activation_sum = np.zeros(n_features)
    true_pos = np.zeros((n_features, len(labels)))
    label_count = np.zeros(len(labels))
    best_values = np.zeros((n_features, top_n), dtype=np.float32)
    best_windows = np.full((n_features, top_n), -1, dtype=np.int64)
    for sl, x in store.iter_chunks(rows):
        features = model.encode(torch.from_numpy(np.asarray(x, dtype=np.float32)))
        fires = (features > 0).to(torch.float64)
        n_fire += fires.sum(dim=0).numpy()
        activation_sum += features.sum(dim=0).double().numpy()
        if labels:
            y = np.column_stack([store.labels(name, sl) for name in labels]).astype(np.float64)
            true_pos += (fires.T @ torch.from_numpy(y)).numpy()
            label_count += y.sum(axis=0)
        block_windows, block = window_max(features, np.asarray(store.window_index[sl]))
        best_values, best_windows = merge_top(best_values, best_windows, block, block_windows.astype(np.int64))

    unknown = sorted({int(w) for w in np.unique(best_windows) if w >= 0} - ids.keys())
    if unknown:
        raise InputError(f"windows table: no window_id for window_index {unknown[:5]} found in {store_path}")
    n_tokens = max(store.n_tokens, 1)
    table = {
        "feature": np.arange(n_features, dtype=np.int64),
        "density": n_fire / n_tokens,
        "mean_activation": np.divide(activation_sum, n_fire, out=np.zeros(n_features), where=n_fire > 0),
    }
    f1_all = np.zeros((n_features, len(labels)))
    for j, name in enumerate(labels):
        tp = true_pos[:, j]
        precision = np.divide(tp, n_fire, out=np.zeros(n_features), where=n_fire > 0)
        recall = np.divide(tp, label_count[j], out=np.zeros(n_features), where=label_count[j] > 0)
        denom = precision + recall
        f1_all[:, j] = np.divide(2 * precision * recall, denom, out=np.zeros(n_features), where=denom > 0)
        table[f"precision_{name}"] = precision
        table[f"recall_{name}"] = recall
        table[f"f1_{name}"] = f1_all[:, j]
    if labels:
        best = f1_all.argmax(axis=1)
        best_f1 = f1_all[np.arange(n_features), best]
        best_label = [labels[b] if f > 0 else "none" for b, f in zip(best, best_f1, strict=True)]
    else:
        best_f1, best_label = np.zeros(n_features), ["none"] * n_features
    table["best_label"] = best_label
    table["best_f1"] = best_f1
    table["top_windows"] = [",".join(ids[int(w)] for w in row if w >= 0) for row in best_windows]
    return pl.DataFrame(table)
