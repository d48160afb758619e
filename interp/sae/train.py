"""Train a sparse autoencoder on a per-token activation store with pytorch-lightning, streaming.

Flow: (1) split tokens into train / validation / test by genome block (`interp.sae.splits`);
(2) one streaming pass over the training tokens for their mean and mean squared norm (input scale,
loss denominator) plus a bounded sample for the decoder-bias initialisation (geometric median), which keeps
the training tokens if they fit in `memory_budget_mb` (and the validation and test tokens if all fit);
(3) Lightning epochs over an `IterableDataset` over those cached training tokens, else re-reading the store
chunk by chunk through a shuffle buffer of that size, with a resumable safetensors training state every
`checkpoint_every_steps` steps and metrics in a CSV log; (4) FVU, L0 and density of the validation and test
tokens, kept or read in one more pass. Store reads go through `threads` reader threads (`_split_chunks`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
import pytorch_lightning as pl_lightning
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, IterableDataset

from interp.embed.store import TokenStore, read_ahead
from interp.errors import InputError
from interp.io import atomic_path, read_safetensors_metadata
from interp.sae.batchtopk import BatchTopKSAE
from interp.sae.config import SAEConfig
from interp.sae.jumprelu import JumpReLUSAE
from interp.sae.matryoshka import MatryoshkaSAE
from interp.sae.model import SparseAutoencoder
from interp.sae.relu import ReLUSAE
from interp.sae.splits import TEST, TRAIN, VALIDATION, BlockSplit, block_split
from interp.sae.temporal import adjacent_pair_starts, temporal_contrastive_loss
from interp.sae.topk import TopKSAE

METADATA_KEY = "interp_sae"
STATE_KEY = "interp_sae_state"
ARCHITECTURE_CLASSES: dict[str, type[SparseAutoencoder]] = {
    cls.architecture: cls for cls in (TopKSAE, ReLUSAE, BatchTopKSAE, JumpReLUSAE, MatryoshkaSAE)}
DENSITY_BINS = np.arange(-6.0, 0.01, 0.5)  # log10 edges of the feature-density histogram


def open_store(path: str | Path) -> TokenStore:
    """TokenStore at `path`, or InputError if it is missing or was never completed."""
    if not Path(path).exists():
        raise InputError(f"{path}: token store not found (expected a zarr directory written by embed)")
    try:
        return TokenStore(path)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise InputError(f"{path}: not a complete token store ({err})") from err


def build_sae(cfg: SAEConfig, d_in: int) -> SparseAutoencoder:
    """Untrained SAE of `cfg.architecture`."""
    extra = {"relu": {"l1_coefficient": cfg.l1_coefficient},
             "batchtopk": {"threshold_momentum": cfg.threshold_momentum},
             "matryoshka": {"threshold_momentum": cfg.threshold_momentum,
                            "prefixes": tuple(cfg.matryoshka_prefixes)},
             "jumprelu": {"l0_coefficient": cfg.l0_coefficient, "bandwidth": cfg.jumprelu_bandwidth,
                          "init_threshold": cfg.jumprelu_init_threshold}}.get(cfg.architecture, {})
    return ARCHITECTURE_CLASSES[cfg.architecture](d_in, cfg.n_features, cfg.k, **extra)


def iter_split_chunks(store: TokenStore, split: BlockSplit, want: int | tuple[int, ...], read_rows: int,
                      order: np.ndarray | None = None, with_rows: bool = False, workers: int = 1):
    """Yield float32 [m, d] activations of the tokens in split(s) `want`, one store chunk at a time
    (with `with_rows`: (row slice, keep mask [rows], activations)); `workers`: reader threads (`_split_chunks`)."""
    for sl, keep, _, x in _split_chunks(store, split, want, read_rows, order, workers):
        yield (sl, keep, x) if with_rows else x


def _split_chunks(store: TokenStore, split: BlockSplit, want: int | tuple[int, ...], read_rows: int,
                  order: np.ndarray | None = None, workers: int = 1):
    """Yield (row slice, keep mask [rows], split codes int8 [m], activations float32 [m, d]) of the tokens in
    split(s) `want`, one store chunk at a time, in order; a chunk holding none of them is not read. With
    `workers` >= 2 that many threads read chunks ahead (`interp.embed.store.read_ahead`: up to `workers` chunks
    more in memory); the same rows either way."""
    want = (want,) if isinstance(want, int) else tuple(want)

    def load(sl: slice):
        code = split.of_tokens(store.window_index[sl], store.base_start[sl])
        keep = np.isin(code, want)
        return sl, keep, code[keep], (np.asarray(store.activations[sl])[keep] if keep.any() else None)

    for sl, keep, code, x in read_ahead(load, _chunk_slices(store, read_rows, order), workers):
        if x is not None:
            yield sl, keep, code, x


def _chunk_slices(store: TokenStore, read_rows: int, order: np.ndarray | None = None):
    """Row slices of `read_rows` over the store, in `order` of chunks if given."""
    starts = np.arange(0, store.n_tokens, read_rows)
    for s in (starts if order is None else starts[order]):
        yield slice(int(s), min(int(s) + read_rows, store.n_tokens))


def iter_split_pairs(store: TokenStore, split: BlockSplit, want: int, read_rows: int,
                     order: np.ndarray | None = None, gap: int = 1, workers: int = 1):
    """Yield float32 [p, 2, d] non-overlapping pairs of tokens `gap` apart in one window, both in split
    `want` (`interp.sae.temporal.adjacent_pair_starts`), one store chunk at a time (`iter_split_chunks`).
    A pair that would straddle two store chunks is skipped."""
    for sl, keep, x in iter_split_chunks(store, split, want, read_rows, order, with_rows=True, workers=workers):
        first = adjacent_pair_starts(np.asarray(store.window_index[sl]), keep, gap)
        if first.size:
            kept_row = np.cumsum(keep) - 1  # row of the chunk -> row of x (the kept rows)
            yield np.stack([x[kept_row[first]], x[kept_row[first + gap]]], axis=1)


def count_split_pairs(store: TokenStore, split: BlockSplit, want: int, read_rows: int, gap: int = 1) -> int:
    """Number of pairs `iter_split_pairs` yields (reads only the token index arrays)."""
    n = 0
    for sl in _chunk_slices(store, read_rows):
        window_index = np.asarray(store.window_index[sl])
        n += adjacent_pair_starts(window_index, split.of_tokens(window_index, store.base_start[sl]) == want,
                                  gap).size
    return n


class TrainingTokens(IterableDataset):
    """Shuffled float32 batches [batch_size, d] of the training tokens, reshuffled every epoch; with
    `pairs`, batches [batch_size, 2, d] of adjacent-token pairs (`iter_split_pairs`; n_train counts pairs).

    If n_train rows (d or 2d float32 each) fit in `budget_bytes` they are read once and kept; otherwise each
    epoch visits store chunks in a seeded random order, copying them into one buffer of `budget_bytes` plus a
    chunk that is shuffled and emptied batch by batch (each batch a copy, so the buffer is the peak). The order
    depends only on (seed, epoch), so a resumed run sets `epoch` and `skip_batches` and sees the same batches.
    `chunk_reads` counts store reads; `workers` reader threads read chunks ahead (the same batches).
    """

    def __init__(self, store: TokenStore, split: BlockSplit, n_train: int, batch_size: int,
                 seed: int, budget_bytes: float, read_rows: int, pairs: bool = False, gap: int = 1,
                 workers: int = 1) -> None:
        self.store, self.split, self.pairs, self.gap, self.workers = store, split, pairs, gap, workers
        self.batch_size, self.seed, self.read_rows = batch_size, seed, read_rows
        self.n_chunks = -(-store.n_tokens // read_rows)
        row_bytes = 4 * store.d * (2 if pairs else 1)
        self.buffer_rows = max(batch_size, int(budget_bytes // row_bytes))
        self.n_train = n_train
        self.cache_allowed = n_train * row_bytes <= budget_bytes
        self.cache: np.ndarray | None = None
        self.buffer: np.ndarray | None = None  # the shuffle buffer where the tokens are streamed
        self.epoch = 0
        self.skip_batches = 0
        self.chunk_reads = 0

    def _chunks(self, order: np.ndarray | None = None):
        chunks = (iter_split_pairs(self.store, self.split, TRAIN, self.read_rows, order, self.gap, self.workers)
                  if self.pairs else
                  iter_split_chunks(self.store, self.split, TRAIN, self.read_rows, order, workers=self.workers))
        for rows in chunks:
            self.chunk_reads += 1
            yield rows

    def _read_all(self) -> np.ndarray:
        """Every training row, in store order, read into one array allocated once (no list of chunks and no
        concatenated copy: the peak is the cache itself)."""
        cache, at = None, 0
        for rows in self._chunks():
            if cache is None:
                cache = np.empty((self.n_train, *rows.shape[1:]), dtype=np.float32)
            if at + rows.shape[0] > self.n_train:
                raise RuntimeError(f"token store changed while training: more than the {self.n_train} training rows "
                                   "counted before")
            cache[at:at + rows.shape[0]] = rows
            at += rows.shape[0]
        if at != self.n_train:
            raise RuntimeError(f"token store changed while training: {at} training rows, {self.n_train} counted before")
        return cache

    def _batches(self, size: int, rng: np.random.Generator, final: bool):
        """Yield shuffled batches (copies) of the first `size` rows of the shuffle buffer; unless final, move the
        unused remainder (fewer than batch_size rows, in its shuffled order) to the buffer's start and return its
        size. The same batches as shuffling a concatenated pool, without its copies: the buffer is the peak."""
        order = rng.permutation(size)
        stop = size if final else size - size % self.batch_size
        for start in range(0, stop, self.batch_size):
            yield torch.from_numpy(self.buffer[order[start:min(start + self.batch_size, stop)]])
        rest = self.buffer[order[stop:]]
        self.buffer[:rest.shape[0]] = rest
        return rest.shape[0]

    def _epoch_batches(self, rng: np.random.Generator):
        if self.cache_allowed:
            if self.cache is None:
                self.cache = self._read_all()
            order = rng.permutation(self.cache.shape[0])
            for start in range(0, order.size, self.batch_size):
                # Sorted indices read memory in order; order within a batch does not matter.
                yield torch.from_numpy(self.cache[np.sort(order[start:start + self.batch_size])])
            return
        size = 0
        for rows in self._chunks(rng.permutation(self.n_chunks)):
            # one buffer of buffer_rows plus a chunk, kept across epochs: chunks are copied in, batches out
            if self.buffer is None or size + rows.shape[0] > self.buffer.shape[0]:
                grown = np.empty((max(self.buffer_rows + self.read_rows, size + rows.shape[0]), *rows.shape[1:]),
                                 dtype=np.float32)
                if self.buffer is not None:
                    grown[:size] = self.buffer[:size]
                self.buffer = grown
            self.buffer[size:size + rows.shape[0]] = rows
            size += rows.shape[0]
            if size >= self.buffer_rows:
                size = yield from self._batches(size, rng, final=False)
        if size:
            yield from self._batches(size, rng, final=True)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        skip, self.skip_batches = self.skip_batches, 0
        for i, batch in enumerate(self._epoch_batches(rng)):
            if i >= skip:
                yield batch


def split_token_counts(store: TokenStore, split: BlockSplit, read_rows: int) -> np.ndarray:
    """int64 [3]: number of tokens in TRAIN, VALIDATION and TEST (reads only the token index arrays)."""
    counts = np.zeros(3, dtype=np.int64)
    for sl in _chunk_slices(store, read_rows):
        code = split.of_tokens(np.asarray(store.window_index[sl]), store.base_start[sl])
        counts += np.bincount(code[code >= 0], minlength=3)[:3]
    return counts


def input_statistics(store: TokenStore, split: BlockSplit, read_rows: int, sample_tokens: int, seed: int,
                     keep: np.ndarray | None = None,
                     keep_heldout: list | None = None, workers: int = 1) -> tuple[np.ndarray, float, int, np.ndarray]:
    """Streaming (mean [d] float64, mean squared norm, count) of the training tokens, and a uniform
    random sample float64 [<= sample_tokens, d] of them (bounded memory: per-chunk subsamples; never empty: where
    the draw keeps no row, as a tiny sample_tokens can, the first chunk's first rows). keep: where
    given, an array [count, d] filled with the training tokens in store order as they are read (the training
    cache of `TrainingTokens`, so that the tokens are read once for both). keep_heldout: where given, a list
    that gets one (split codes int8 [m], activations [m, d]) per store chunk holding validation or test tokens,
    in store order (what `evaluate_splits` reads instead of the store: the store is then read once in all).
    workers: reader threads (`_split_chunks`). Non-finite activations (training or kept held-out tokens) are an
    InputError."""
    total = np.zeros(store.d)
    sq = 0.0
    n = 0
    rng = np.random.default_rng([seed, 31])
    sample: list[np.ndarray] = []
    want = (TRAIN,) if keep_heldout is None else (TRAIN, VALIDATION, TEST)
    rows64 = np.empty((0, store.d))  # one float64 buffer for every chunk: fresh memory is not free to touch
    for _, _, code, rows in _split_chunks(store, split, want, read_rows, workers=workers):
        if keep_heldout is not None:
            heldout = code != TRAIN
            if heldout.any():
                held = rows[heldout]
                if not np.isfinite(held).all():
                    raise non_finite_error(store.path, "validation or test")
                keep_heldout.append((code[heldout], held))
                rows = rows[~heldout]
            if not rows.shape[0]:
                continue
        m = rows.shape[0]
        if keep is not None:
            if n + m > keep.shape[0]:
                raise RuntimeError(f"{store.path}: more training tokens than the {keep.shape[0]} counted before")
            keep[n:n + m] = rows
        if rows64.shape[0] < m:
            rows64 = np.empty((max(m, read_rows), store.d))
        chunk = rows64[:m]
        chunk[...] = rows
        total += chunk.sum(axis=0)
        sq += float(np.einsum("ij,ij->", chunk, chunk))
        n += m
        # keep each row with a fixed probability bound; the merged sample is thinned at the end
        take = rng.random(m) < min(1.0, 4 * sample_tokens / max(store.n_tokens, 1))
        sample.append(chunk[take])
        if n == m:
            first_rows = chunk[:sample_tokens].copy()
    if n == 0:
        raise InputError(f"{store.path}: no training tokens after the block split")
    if keep is not None and n != keep.shape[0]:
        raise RuntimeError(f"{store.path}: {n} training tokens, {keep.shape[0]} counted before")
    if not (np.all(np.isfinite(total)) and np.isfinite(sq)):
        raise non_finite_error(store.path, "training")
    pooled = np.concatenate(sample)
    if pooled.shape[0] == 0:
        pooled = first_rows
    if pooled.shape[0] > sample_tokens:
        pooled = pooled[np.sort(rng.choice(pooled.shape[0], sample_tokens, replace=False))]
    return total / n, sq / n, n, pooled


def non_finite_error(path: str | Path, which: str) -> InputError:
    """The error for NaN or infinite activations among the `which` tokens of the store at `path`."""
    return InputError(f"{path}: the {which} tokens hold NaN or infinite activations; re-embed (the model or its "
                      "dtype produced them) before training an SAE")


def training_data_fingerprint(store: TokenStore, mean: np.ndarray, mean_sq_norm: float) -> dict:
    """What a resumable training state must have been trained on: the store's model, layer, width and
    token count, and the training tokens' mean [d] (sha256 of its float64 bytes) and mean squared norm
    (`input_statistics`), so a state from another store of the same size (another layer, a re-embedding)
    is not resumed."""
    return {"model": str(store.model), "layer": str(store.layer), "d": int(store.d), "n_tokens": int(store.n_tokens),
            "mean_sha256": hashlib.sha256(np.ascontiguousarray(mean, dtype=np.float64).tobytes()).hexdigest(),
            "mean_sq_norm": float(mean_sq_norm)}


def geometric_median(points: np.ndarray, max_iter: int = 200, tol: float = 1e-7) -> np.ndarray:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to points [n, d]."""
    y = points.mean(axis=0)
    for _ in range(max_iter):
        dist = np.linalg.norm(points - y, axis=1)
        w = 1.0 / np.maximum(dist, 1e-12)
        new = (w[:, None] * points).sum(axis=0) / w.sum()
        if np.linalg.norm(new - y) <= tol * max(np.linalg.norm(y), 1.0):
            return new
        y = new
    return y


def lr_factor(step: int, total_steps: int, warmup_fraction: float, decay_fraction: float) -> float:
    """Learning-rate multiplier: linear warm-up from 0, constant 1, linear decay to 0 at the end."""
    warmup = int(warmup_fraction * total_steps)
    decay = int(decay_fraction * total_steps)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if decay and step >= total_steps - decay:
        return max(0.0, (total_steps - step) / decay)
    return 1.0


#: training metrics are logged (a row of the CSV log) every this many steps, on the run's steps 9, 19, ...:
#: logging every step through `self.log` took a third of a small SAE's training time
LOG_EVERY_N_STEPS = 10


class SAETraining(pl_lightning.LightningModule):
    """Lightning wrapper: the architecture's reconstruction + sparsity loss, plus AuxK on dead features.

    `step` counts optimiser steps over the whole run (resumed runs included) and drives the schedule.
    """

    def __init__(self, sae: SparseAutoencoder, cfg: SAEConfig, token_variance: float, total_steps: int,
                 state_path: Path | None = None, state_extra: dict | None = None,
                 resume_tensors: dict | None = None) -> None:
        super().__init__()
        self.sae, self.cfg, self.total_steps = sae, cfg, total_steps
        self.state_path, self.state_extra, self.resume_tensors = state_path, state_extra or {}, resume_tensors
        self.token_variance = max(token_variance, 1e-12)  # mean ||x - mean||^2, normalised scale
        self.register_buffer("tokens_since_fired", torch.zeros(sae.n_features, dtype=torch.long))
        self.register_buffer("fired_this_epoch", torch.zeros(sae.n_features, dtype=torch.bool))
        self.n_temporal = round(cfg.temporal_fraction * sae.n_features)
        self.step = 0
        self.epochs_done = 0
        self.batch_in_epoch = 0
        self.resumed_mid_epoch = False

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        factor = lr_factor(self.step, self.total_steps, self.cfg.lr_warmup_fraction, self.cfg.lr_decay_fraction)
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"] = self.cfg.lr * factor

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        # a batch of adjacent-token pairs [B, 2, d] is encoded as 2B tokens (pair members interleaved)
        x = batch.reshape(-1, batch.shape[-1]) * self.sae.input_scale
        code = self.sae.train_encode(x)
        sparsity = code.penalty
        recon_loss, error = self.sae.reconstruction_loss(x, code, self.token_variance)
        loss = recon_loss + sparsity
        temporal_loss = torch.zeros(())
        if batch.ndim == 3:
            high = code.features[:, :self.n_temporal].reshape(batch.shape[0], 2, self.n_temporal)
            temporal_loss = temporal_contrastive_loss(high[:, 0], high[:, 1], self.cfg.temporal_temperature)
            loss = loss + self.cfg.temporal_coefficient * temporal_loss
        with torch.no_grad():
            fired = code.fired()
            self.tokens_since_fired.add_(x.shape[0]).masked_fill_(fired, 0)  # in place: no Module.__setattr__
            self.fired_this_epoch.logical_or_(fired)
        dead = self.tokens_since_fired > self.cfg.dead_after_tokens
        n_dead = int(dead.sum())
        aux_loss = torch.zeros(())
        if self.cfg.auxk_alpha > 0 and n_dead > 0:
            # AuxK: the top dead features must explain what the live ones missed, so they get gradient.
            k_aux = min(self.sae.d_in // 2, n_dead) or 1
            acts = torch.relu(code.pre)
            aux = self.sae.top_k_rows(torch.where(dead, acts, torch.zeros_like(acts)), k_aux)
            target = error.detach()
            aux_error = self.sae.decode_active_normalized(*aux) - target
            denom = (target - target.mean(dim=0)).pow(2).sum().clamp_min(1e-12)
            scale = min(n_dead / (self.sae.d_in // 2 or 1), 1.0)
            aux_loss = self.cfg.auxk_alpha * scale * aux_error.pow(2).sum() / denom
            loss = loss + aux_loss
        if self.logger is not None and (self.step + 1) % LOG_EVERY_N_STEPS == 0:
            # straight to the CSV logger: `self.log` costs about 5 ms per call through Lightning's result
            # collection. The row's step and epoch are the run's, not Lightning's (which restart at 0 in a
            # resumed attempt)
            self.logger.log_metrics({
                "train_recon_loss": recon_loss.item(), "train_sparsity_loss": sparsity.item(),
                "train_auxk_loss": aux_loss.item(), "train_temporal_loss": temporal_loss.item(),
                "train_l0": code.mean_l0(), "dead_features": float(n_dead),
                "lr": self.trainer.optimizers[0].param_groups[0]["lr"], "epoch": float(self.epochs_done)},
                step=self.step)
        return loss

    def on_train_epoch_start(self) -> None:
        if self.resumed_mid_epoch:
            self.resumed_mid_epoch = False
            return
        self.batch_in_epoch = 0
        self.fired_this_epoch = torch.zeros_like(self.fired_this_epoch)

    def on_train_epoch_end(self) -> None:
        self.epochs_done += 1

    def on_before_optimizer_step(self, optimizer) -> None:
        self.sae.remove_gradient_parallel_to_decoder()

    def on_train_start(self) -> None:
        if self.resume_tensors is not None:
            restore_optimizer(self.trainer.optimizers[0], self.resume_tensors)
            self.resume_tensors = None

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.sae.set_decoder_norm_to_unit()
        self.step += 1
        self.batch_in_epoch += 1
        if self.state_path is not None and self.step % self.cfg.checkpoint_every_steps == 0:
            save_training_state(self, self.trainer.optimizers[0], self.state_path, self.state_extra)

    def configure_optimizers(self):
        # fused: one kernel for all parameters (0.09 ms a step against 0.30 for the per-parameter loop at 512 x 128)
        return torch.optim.Adam(self.sae.parameters(), lr=self.cfg.lr, fused=True)


# ---------------------------------------------------------------- resumable training state
def save_training_state(module: SAETraining, optimizer: torch.optim.Optimizer, path: str | Path,
                        extra: dict) -> None:
    """Model, AuxK bookkeeping, Adam moments and counters in one safetensors file (atomic)."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in module.sae.state_dict().items()}
    tensors["train.tokens_since_fired"] = module.tokens_since_fired.cpu().contiguous()
    tensors["train.fired_this_epoch"] = module.fired_this_epoch.cpu().to(torch.uint8).contiguous()
    for i, p in enumerate(optimizer.param_groups[0]["params"]):
        for key, value in optimizer.state.get(p, {}).items():
            tensors[f"optim.{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    counters = {"step": module.step, "epochs_done": module.epochs_done, "batch_in_epoch": module.batch_in_epoch,
                **extra}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_KEY: json.dumps(counters, sort_keys=True)})


def read_training_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    metadata = read_safetensors_metadata(path, "SAE training state")
    if STATE_KEY not in metadata:
        raise InputError(f"{path}: not an SAE training state (no '{STATE_KEY}' header)")
    return load_file(str(path)), json.loads(metadata[STATE_KEY])


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Put the Adam moments saved by `save_training_state` back on the optimizer's parameters."""
    for i, p in enumerate(optimizer.param_groups[0]["params"]):
        state = {key.split(".", 2)[2]: value for key, value in tensors.items() if key.startswith(f"optim.{i}.")}
        if state:
            optimizer.state[p] = {k: v.to(p.device) for k, v in state.items()}


# ---------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_splits(sae: SparseAutoencoder, chunks: Iterable[tuple[np.ndarray, np.ndarray]], which: tuple[int, ...],
                    batch_size: int, device: torch.device) -> dict[int, dict]:
    """Per split code in `which`: FVU (original scale), mean L0, token count, per-feature firing counts [F] and
    the sum of squared activations (`sq`: not finite where a token is not).

    chunks: (split codes int8 [m], activations float32 [m, d]) one store chunk at a time, in store order: from
    `_split_chunks` (one pass over the store for all splits) or the list `input_statistics` kept. Each split's
    tokens of a chunk are run in batches of `batch_size`, so the two sources give the same numbers bit for bit.
    """
    sae = sae.to(device).eval()
    acc = {w: {"err": 0.0, "total": np.zeros(sae.d_in), "sq": 0.0, "l0": 0, "n": 0,
               "fire_count": torch.zeros(sae.n_features, dtype=torch.float64, device=device)} for w in which}
    for code, chunk in chunks:
        for w in which:
            rows, a = chunk[code == w], acc[w]
            for start in range(0, rows.shape[0], batch_size):
                x = torch.from_numpy(np.ascontiguousarray(rows[start:start + batch_size])).to(device)
                entries = sae.encode_active_normalized(x * sae.input_scale)
                if entries is None:
                    recon, features = sae(x)
                    active = features > 0
                    a["fire_count"] += active.sum(dim=0).double()
                else:  # the k decoder rows per token, as in training; counts from the entries above 0
                    values, indices, offsets = entries
                    recon = (sae.decode_active_normalized(values, indices, offsets) + sae.b_dec) / sae.input_scale
                    active = values > 0
                    a["fire_count"] += torch.bincount(indices[active], minlength=sae.n_features).double()
                x64 = x.double().flatten()  # one float64 copy; the dot products below make no others
                error = x64 - recon.double().flatten()
                a["err"] += float(torch.dot(error, error))
                a["total"] += x64.view_as(x).sum(dim=0).cpu().numpy()
                a["sq"] += float(torch.dot(x64, x64))
                a["l0"] += int(active.sum())
                a["n"] += x.shape[0]
    out = {}
    for w, a in acc.items():
        n = a["n"]
        variance = a["sq"] - float(a["total"] @ a["total"]) / max(n, 1)
        out[w] = {"fvu": a["err"] / variance if variance > 0 and n else float("nan"), "l0": a["l0"] / max(n, 1),
                  "n_tokens": n, "fire_count": a["fire_count"].cpu().numpy(), "sq": a["sq"]}
    return out


def calibrate_inference_threshold(sae: BatchTopKSAE, dataset: TrainingTokens, cfg: SAEConfig,
                                  device: torch.device) -> dict:
    """Re-estimate a BatchTopK SAE's inference threshold with its final weights (`BatchTopKSAE.calibrate_threshold`)
    on full shuffled batches of `cfg.batch_size` training tokens from `dataset` (single tokens, not pairs; the
    training's own when it had them, so tokens it cached are not read again), at most
    `cfg.threshold_calibration_tokens` rounded down to whole batches, at least one. Streams like training;
    returns the calibration record."""
    dataset.epoch, dataset.skip_batches = cfg.epochs, 0  # an order no training epoch used
    limit = max(1, cfg.threshold_calibration_tokens // cfg.batch_size)
    n_tokens = 0

    def batches():
        nonlocal n_tokens
        for i, batch in enumerate(dataset):
            if i >= limit or (batch.shape[0] < cfg.batch_size and i > 0):  # a short last batch keeps fewer
                return
            n_tokens += batch.shape[0]
            yield batch.to(device) * sae.input_scale

    sae.to(device).eval()
    return {**sae.calibrate_threshold(batches()), "n_tokens": n_tokens}


def density_histogram(density: np.ndarray) -> dict:
    """Counts of features per log10(density) bin (edges DENSITY_BINS) and of never-firing features."""
    alive = density[density > 0]
    counts, _ = np.histogram(np.clip(np.log10(alive), DENSITY_BINS[0], DENSITY_BINS[-1]), bins=DENSITY_BINS)
    return {"log10_edges": DENSITY_BINS.tolist(), "counts": counts.tolist(), "n_zero": int((density == 0).sum())}


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _device(accelerator: str) -> torch.device:
    return torch.device("cuda" if accelerator in ("cuda", "gpu") else "cpu")


def train_sae(store_path: str | Path, cfg: SAEConfig, windows: pl.DataFrame, threads: int = 1,
              accelerator: str = "cpu", read_rows: int | None = None, state_path: str | Path | None = None,
              log_dir: str | Path | None = None, callbacks: list | None = None, progress_bar: bool = False,
              keep_state: bool = False) -> tuple[SparseAutoencoder, dict]:
    """Train an SAE of `cfg.architecture` on the tokens in `store_path`; return (model on CPU, metrics).

    windows: the windows table (window_index, contig, start, end) that locates each token's bases.
    state_path: resumable training state (safetensors); if it exists and was written for the same
    config and training data (`training_data_fingerprint`), training resumes from it, else (another
    config or store, or an unreadable file) it starts over with a warning; it is removed once training
    completes, unless `keep_state`: then it is written complete (every epoch done), so a caller whose later
    steps fail reruns with no training, and the caller removes it once its outputs are written. log_dir: Lightning
    CSV metrics (per step losses, L0, dead features, lr; the step and epoch columns are the run's, so a
    resumed attempt's rows continue the interrupted one's, which stay in metrics.until_step<N>.csv, or
    metrics.until_step<N>.<attempt>.csv for a later attempt interrupted after the same state).
    read_rows: store read size (default: the store's chunk length).

    Metrics: architecture, n_features, k, d_in, fvu / l0 on test tokens (validation_fvu too),
    dead_fraction (features firing on no test and no last-epoch training token: the window is the
    n_test_tokens plus one epoch of training tokens), dead_fraction_test (features firing on no test
    token: held-out only, the window is n_test_tokens), dense_fraction (test density > 0.1),
    density_histogram, n_{train,validation,test}_tokens, n_blocks per split,
    epochs, steps, seed, input_scale, chunk_reads (store chunks the training data read itself),
    evaluation_reads (store chunks the held-out evaluation read: 0 when the statistics pass kept the validation
    and test tokens, i.e. all splits fit `memory_budget_mb`), resumed_from_step, n_train_pairs (adjacent-token
    pairs per epoch with temporal_fraction > 0, else 0), inference_threshold (batchtopk / matryoshka with
    threshold_calibration_tokens > 0: `calibrate_inference_threshold`'s record; else None).
    """
    cfg.validate()
    store = open_store(store_path)
    read_rows = read_rows or int(store.activations.chunks[0])
    split = block_split(windows, cfg.split_block_bases, cfg.validation_fraction, cfg.test_fraction, cfg.seed)
    temporal = cfg.temporal_fraction > 0
    budget_bytes = cfg.memory_budget_mb * 2**20
    # Tokens that fit the budget are kept as the statistics pass reads them: the training tokens (the training
    # cache) and, when all splits fit, the validation and test tokens too, so the store is read once in all.
    # A temporal run's pair cache is at most its training tokens (the pairs do not overlap).
    counts = split_token_counts(store, split, read_rows)
    row_bytes = 4 * store.d
    cache = None
    if not temporal and 0 < counts[TRAIN] * row_bytes <= budget_bytes:
        cache = np.empty((int(counts[TRAIN]), store.d), dtype=np.float32)
    heldout = [] if 0 < counts.sum() * row_bytes <= budget_bytes else None
    mean, mean_sq_norm, n_train, sample = input_statistics(store, split, read_rows, cfg.init_sample_tokens,
                                                           cfg.seed, keep=cache, keep_heldout=heldout,
                                                           workers=threads)
    scale = float(np.sqrt(store.d / mean_sq_norm)) if cfg.normalize_inputs and mean_sq_norm > 0 else 1.0
    token_variance = (mean_sq_norm - float(mean @ mean)) * scale**2
    # temporal: batches of batch_size // 2 adjacent-token pairs, so a step still sees batch_size tokens
    n_rows = count_split_pairs(store, split, TRAIN, read_rows, cfg.temporal_gap) if temporal else n_train
    rows_per_batch = cfg.batch_size // 2 if temporal else cfg.batch_size
    if n_rows == 0:
        raise InputError(f"{store_path}: no adjacent training-token pairs for temporal_fraction > 0")
    steps_per_epoch = -(-n_rows // rows_per_batch)
    total_steps = cfg.epochs * steps_per_epoch

    data = training_data_fingerprint(store, mean, mean_sq_norm)
    resume = None
    if state_path is not None and Path(state_path).exists():
        try:
            tensors, counters = read_training_state(state_path)
        except InputError as err:  # a damaged state is a lost cache, not a reason to stop: start over
            warnings.warn(f"not resuming: {err}; training starts from step 0", stacklevel=2)
        else:
            if (counters.get("config") == cfg.to_dict() and counters.get("n_train") == n_rows
                    and counters.get("data") == data and counters.get("read_rows") == read_rows):
                resume = (tensors, counters)
            else:
                warnings.warn(f"{state_path}: training state was written for another config or token store (or "
                              "read_rows, which orders the streamed batches); training starts from step 0 (the "
                              "state is overwritten)", stacklevel=2)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    _quiet_lightning()
    try:
        pl_lightning.seed_everything(cfg.seed, workers=True, verbose=False)
        sae = build_sae(cfg, store.d)
        sae.input_scale.fill_(scale)
        if cfg.b_dec_init == "geometric_median":
            sae.b_dec.data = torch.as_tensor(geometric_median(sample * scale), dtype=torch.float32)
        elif cfg.b_dec_init == "mean":
            sae.b_dec.data = torch.as_tensor(mean * scale, dtype=torch.float32)
        sae.init_from_sample(torch.as_tensor(sample * scale, dtype=torch.float32))
        module = SAETraining(sae, cfg, token_variance, total_steps,
                             Path(state_path) if state_path is not None else None,
                             {"config": cfg.to_dict(), "n_train": n_rows, "data": data, "read_rows": read_rows},
                             resume[0] if resume is not None else None)
        dataset = TrainingTokens(store, split, n_rows, rows_per_batch, cfg.seed, budget_bytes, read_rows,
                                 pairs=temporal, gap=cfg.temporal_gap, workers=threads)
        if cache is not None and dataset.cache_allowed:
            dataset.cache = cache  # read in the statistics pass
        epochs_left = cfg.epochs
        if resume is not None:
            tensors, counters = resume
            sae.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            module.tokens_since_fired = tensors["train.tokens_since_fired"].clone()
            module.fired_this_epoch = tensors["train.fired_this_epoch"].bool().clone()
            module.step, module.epochs_done = counters["step"], counters["epochs_done"]
            module.batch_in_epoch = counters["batch_in_epoch"]
            if module.batch_in_epoch >= steps_per_epoch:  # saved on an epoch's last batch
                module.epochs_done += 1
                module.batch_in_epoch = 0
            dataset.epoch = module.epochs_done
            dataset.skip_batches = module.batch_in_epoch
            module.resumed_mid_epoch = module.batch_in_epoch > 0
            epochs_left = cfg.epochs - module.epochs_done
        if resume is not None and epochs_left > 0 and log_dir and (Path(log_dir) / "metrics.csv").exists():
            # the logger rewrites metrics.csv: the interrupted attempt's rows stay, under the step they reach (a
            # second attempt killed after the same state gets its own name: rename would replace the first's)
            kept, attempt = Path(log_dir) / f"metrics.until_step{module.step}.csv", 1
            while kept.exists():
                attempt += 1
                kept = Path(log_dir) / f"metrics.until_step{module.step}.{attempt}.csv"
            (Path(log_dir) / "metrics.csv").rename(kept)
        logger = pl_lightning.loggers.CSVLogger(str(log_dir), name="", version="") if log_dir else False
        if epochs_left > 0:
            trainer = pl_lightning.Trainer(
                max_epochs=epochs_left, accelerator=accelerator, devices=1, deterministic=True,
                logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                enable_progress_bar=progress_bar, enable_model_summary=False, num_sanity_val_steps=0,
                callbacks=list(callbacks or []))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*does not have many workers.*")
                warnings.filterwarnings("ignore", message=".*IterableDataset.*")
                warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
                trainer.fit(module, DataLoader(dataset, batch_size=None, num_workers=0))
            if keep_state and state_path is not None:
                module.batch_in_epoch = 0  # every epoch done: a resume trains nothing
                save_training_state(module, trainer.optimizers[0], state_path, module.state_extra)
        fired_last_epoch = module.fired_this_epoch.cpu()
        device = _device(accelerator)
        threshold, training_reads = None, dataset.chunk_reads
        if isinstance(sae, BatchTopKSAE) and cfg.threshold_calibration_tokens > 0:
            if temporal:  # trained on pairs: single tokens from a dataset of their own, the pairs' cache freed
                dataset.cache = None
                tokens = TrainingTokens(store, split, n_train, cfg.batch_size, cfg.seed,
                                        budget_bytes, read_rows, workers=threads)
            else:
                tokens = dataset
            threshold = calibrate_inference_threshold(sae, tokens, cfg, device)
        dataset.cache = cache = None  # the training tokens are no longer needed
        evaluation_reads = 0

        def read_heldout():
            nonlocal evaluation_reads
            for _, _, code, x in _split_chunks(store, split, (VALIDATION, TEST), read_rows, workers=threads):
                evaluation_reads += 1
                yield code, x

        scores = evaluate_splits(sae, heldout if heldout is not None else read_heldout(), (TEST, VALIDATION),
                                 max(cfg.batch_size, 1024), device)
        test, validation = scores[TEST], scores[VALIDATION]
        heldout = None
        if not (np.isfinite(test["sq"]) and np.isfinite(validation["sq"])):  # read from the store after training
            raise non_finite_error(store_path, "validation or test")
    finally:
        torch.set_num_threads(previous_threads)
    sae = sae.cpu().eval()
    density = test["fire_count"] / max(test["n_tokens"], 1)
    fired = torch.from_numpy(test["fire_count"] > 0) | fired_last_epoch
    blocks = split.counts()
    metrics = {
        "architecture": cfg.architecture, "n_features": cfg.n_features, "k": cfg.k, "d_in": store.d,
        "fvu": test["fvu"], "l0": test["l0"], "validation_fvu": validation["fvu"],
        "dead_fraction": float(1.0 - fired.float().mean()),
        "dead_fraction_test": float((test["fire_count"] == 0).mean()),
        "dense_fraction": float((density > 0.1).mean()),
        "density_histogram": density_histogram(density),
        "n_train_tokens": n_train, "n_train_pairs": n_rows if temporal else 0,
        "n_validation_tokens": validation["n_tokens"], "n_test_tokens": test["n_tokens"],
        "n_heldout_tokens": test["n_tokens"],
        "n_train_blocks": blocks["train"], "n_validation_blocks": blocks["validation"],
        "n_test_blocks": blocks["test"], "split_block_bases": cfg.split_block_bases,
        "n_windows_straddling_splits": split.window_counts()["straddling"],
        "epochs": cfg.epochs, "steps": module.step, "seed": cfg.seed, "input_scale": scale,
        "chunk_reads": training_reads, "evaluation_reads": evaluation_reads,
        "resumed_from_step": int(resume[1]["step"]) if resume is not None else None,
        "inference_threshold": threshold,
        "config": cfg.to_dict(),
    }
    if state_path is not None and not keep_state and Path(state_path).exists():
        Path(state_path).unlink()
    return sae, metrics


# ---------------------------------------------------------------- persistence
def save_sae(model: SparseAutoencoder, path: str | Path, extra_metadata: dict | None = None) -> None:
    """Write weights to `path` (safetensors) with architecture, sizes, input scale, architecture
    hyper-parameters and any JSON-serialisable `extra_metadata` (e.g. config) in the header; atomic."""
    path = Path(path)
    header = {"architecture": model.architecture, "d_in": model.d_in, "n_features": model.n_features,
              "k": model.k, "input_scale": float(model.input_scale), "hparams": model.hparams()}
    # one metadata key (see interp.lm.pretrain.save_checkpoint): several would make the bytes vary
    metadata = {METADATA_KEY: json.dumps({**header, "extra": extra_metadata or {}}, sort_keys=True)}
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_sae_metadata(path: str | Path) -> tuple[dict, dict]:
    """(architecture header, extra metadata) stored by `save_sae`."""
    metadata = read_safetensors_metadata(path, "SAE weights")
    if METADATA_KEY not in metadata:
        raise InputError(f"{path}: safetensors file lacks the '{METADATA_KEY}' header written by save_sae")
    header = json.loads(metadata[METADATA_KEY])
    return header, header.pop("extra", {})


def load_sae(path: str | Path) -> SparseAutoencoder:
    """SAE of the stored architecture (CPU, eval mode) from a file written by `save_sae`."""
    header, _ = read_sae_metadata(path)
    cls = ARCHITECTURE_CLASSES.get(header.get("architecture"))
    if cls is None:
        raise InputError(f"{path}: unsupported SAE architecture {header.get('architecture')!r}; "
                         f"expected one of {sorted(ARCHITECTURE_CLASSES)}")
    hparams = header.get("hparams", {})
    if "prefixes" in hparams:
        hparams = {**hparams, "prefixes": tuple(hparams["prefixes"])}
    model = cls(int(header["d_in"]), int(header["n_features"]), int(header["k"]), **hparams)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as err:
        raise InputError(f"{path}: weights do not match the header ({err})") from err
    return model.eval()


def fvu_on(model: SparseAutoencoder, x: np.ndarray) -> float:
    """FVU of model on a dense float array x [n, d] (original scale), for tests and small data."""
    with torch.no_grad():
        t = torch.from_numpy(np.asarray(x, dtype=np.float32))
        recon, _ = model(t)
    return float(((t.double() - recon.double()) ** 2).sum() / ((t.double() - t.double().mean(0)) ** 2).sum())

