"""Train a `TopKSAE` on a per-token activation store with pytorch-lightning, streaming from disk.

Flow: (1) split windows into train / held-out by a seeded hash of window_index, so all tokens of a
window land on one side; (2) one streaming pass over the training tokens for their mean and mean
squared norm (input scale, b_dec init, loss denominator); (3) Lightning epochs over an
`IterableDataset` that caches the training tokens if they fit in `memory_budget_mb`, else re-reads
the store chunk by chunk through a shuffle buffer of that size; (4) one streaming pass over the
held-out tokens for FVU, L0 and feature firing.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, IterableDataset

from interp.embed.store import TokenStore
from interp.errors import InputError
from interp.io import read_safetensors_metadata
from interp.sae.config import SAEConfig
from interp.sae.model import TopKSAE

METADATA_KEY = "interp_sae"


def open_store(path: str | Path) -> TokenStore:
    """TokenStore at `path`, or InputError if it is missing or was never completed."""
    if not Path(path).exists():
        raise InputError(f"{path}: token store not found (expected a zarr directory written by embed)")
    try:
        return TokenStore(path)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise InputError(f"{path}: not a complete token store ({err})") from err


def window_uniform(window_index: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-uniform float64 in [0, 1) per window id (splitmix64 of id and seed)."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):  # uint64 wrap-around is the point of the hash
        z = window_index.astype(np.uint64) + np.asarray([seed % 2**32], dtype=np.uint64) * golden + golden
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def split_windows(store: TokenStore, heldout_fraction: float, seed: int,
                  read_rows: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """(train windows, held-out windows): sorted int arrays of window ids present in the store.

    A window is held out when its hash is below `heldout_fraction`; if that leaves one side empty,
    the window with the smallest (resp. largest) hash is moved across so both sides are non-empty.
    """
    windows = np.unique(np.concatenate(
        [np.unique(store.window_index[s:s + read_rows]) for s in range(0, store.n_tokens, read_rows)]
        or [np.zeros(0, dtype=np.int32)]))
    if windows.size < 2:
        raise InputError(f"{store.path}: need tokens from at least 2 windows to hold some out, "
                         f"found {windows.size}")
    u = window_uniform(windows, seed)
    heldout = u < heldout_fraction
    if not heldout.any():
        heldout[np.argmin(u)] = True
    if heldout.all():
        heldout[np.argmax(u)] = False
    return windows[~heldout], windows[heldout]


def iter_split_chunks(store: TokenStore, heldout_windows: np.ndarray, want_heldout: bool,
                      read_rows: int, order: np.ndarray | None = None):
    """Yield float32 [m, d] activations of one side of the split, one store chunk at a time."""
    starts = np.arange(0, store.n_tokens, read_rows)
    for s in (starts if order is None else starts[order]):
        sl = slice(int(s), min(int(s) + read_rows, store.n_tokens))
        is_heldout = np.isin(store.window_index[sl], heldout_windows)
        keep = is_heldout if want_heldout else ~is_heldout
        if keep.any():
            yield np.asarray(store.activations[sl])[keep]


class TrainingTokens(IterableDataset):
    """Shuffled float32 batches [batch_size, d] of the training tokens, reshuffled every epoch.

    If n_train * d * 4 bytes fits in `budget_bytes` the tokens are read once and kept; otherwise each
    epoch visits store chunks in a seeded random order, pooling them in a buffer of about
    `budget_bytes` that is shuffled and emptied batch by batch. `chunk_reads` counts store reads.
    """

    def __init__(self, store: TokenStore, heldout_windows: np.ndarray, n_train: int, batch_size: int,
                 seed: int, budget_bytes: float, read_rows: int) -> None:
        self.store, self.heldout_windows = store, heldout_windows
        self.batch_size, self.seed, self.read_rows = batch_size, seed, read_rows
        self.n_chunks = -(-store.n_tokens // read_rows)
        self.buffer_rows = max(batch_size, int(budget_bytes // (4 * store.d)))
        self.cache_allowed = n_train * store.d * 4 <= budget_bytes
        self.cache: np.ndarray | None = None
        self.epoch = 0
        self.chunk_reads = 0

    def _chunks(self, order: np.ndarray | None = None):
        for rows in iter_split_chunks(self.store, self.heldout_windows, False, self.read_rows, order):
            self.chunk_reads += 1
            yield rows

    def _batches(self, pool: np.ndarray, rng: np.random.Generator, final: bool):
        """Yield shuffled batches from pool; return the unused remainder unless final."""
        pool = pool[rng.permutation(pool.shape[0])]
        stop = pool.shape[0] if final else pool.shape[0] - pool.shape[0] % self.batch_size
        for start in range(0, stop, self.batch_size):
            yield torch.from_numpy(np.ascontiguousarray(pool[start:min(start + self.batch_size, stop)]))
        return pool[stop:]

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        if self.cache_allowed:
            if self.cache is None:
                self.cache = np.concatenate(list(self._chunks()))
            order = rng.permutation(self.cache.shape[0])
            for start in range(0, order.size, self.batch_size):
                # Sorted indices read memory in order; order within a batch does not matter.
                yield torch.from_numpy(self.cache[np.sort(order[start:start + self.batch_size])])
            return
        pool: list[np.ndarray] = []
        size = 0
        for rows in self._chunks(rng.permutation(self.n_chunks)):
            pool.append(rows)
            size += rows.shape[0]
            if size >= self.buffer_rows:
                remainder = yield from self._batches(np.concatenate(pool), rng, final=False)
                pool, size = [remainder], remainder.shape[0]
        if size:
            yield from self._batches(np.concatenate(pool), rng, final=True)


def input_statistics(store: TokenStore, heldout_windows: np.ndarray, read_rows: int
                     ) -> tuple[np.ndarray, float, int]:
    """Streaming (mean [d] float64, mean squared norm, count) of the training tokens."""
    total = np.zeros(store.d)
    sq = 0.0
    n = 0
    for rows in iter_split_chunks(store, heldout_windows, False, read_rows):
        rows = rows.astype(np.float64)
        total += rows.sum(axis=0)
        sq += float(np.einsum("ij,ij->", rows, rows))
        n += rows.shape[0]
    if n == 0:
        raise InputError(f"{store.path}: no training tokens after the held-out split")
    return total / n, sq / n, n


class SAETraining(pl.LightningModule):
    """Lightning wrapper: normalised-MSE loss (in units of the training variance) + optional AuxK."""

    def __init__(self, sae: TopKSAE, cfg: SAEConfig, token_variance: float) -> None:
        super().__init__()
        self.sae, self.cfg = sae, cfg
        self.token_variance = max(token_variance, 1e-12)  # mean ||x - mean||^2, normalised scale
        self.register_buffer("tokens_since_fired", torch.zeros(sae.n_features, dtype=torch.long))
        self.register_buffer("fired_this_epoch", torch.zeros(sae.n_features, dtype=torch.bool))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        x = batch * self.sae.input_scale
        pre = self.sae.pre_activations(x)
        features = self.sae.select_top_k(pre)
        error = x - self.sae.decode_normalized(features)
        loss = error.pow(2).sum() / (x.shape[0] * self.token_variance)
        with torch.no_grad():
            fired = (features > 0).any(dim=0)
            self.tokens_since_fired = torch.where(fired, 0, self.tokens_since_fired + x.shape[0])
            self.fired_this_epoch = self.fired_this_epoch | fired
        dead = self.tokens_since_fired > self.cfg.dead_after_tokens
        n_dead = int(dead.sum())
        if self.cfg.auxk_alpha > 0 and n_dead > 0:
            # AuxK: the top dead features must explain what the live ones missed, so they get gradient.
            k_aux = min(self.sae.d_in // 2, n_dead) or 1
            aux = self.sae.select_top_k(torch.where(dead, pre, torch.zeros_like(pre)), k_aux)
            target = error.detach()
            aux_error = aux @ self.sae.W_dec - target
            denom = (target - target.mean(dim=0)).pow(2).sum().clamp_min(1e-12)
            scale = min(n_dead / (self.sae.d_in // 2 or 1), 1.0)
            loss = loss + self.cfg.auxk_alpha * scale * aux_error.pow(2).sum() / denom
        return loss

    def on_train_epoch_start(self) -> None:
        self.fired_this_epoch = torch.zeros_like(self.fired_this_epoch)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.sae.remove_gradient_parallel_to_decoder()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.sae.set_decoder_norm_to_unit()

    def configure_optimizers(self):
        return torch.optim.Adam(self.sae.parameters(), lr=self.cfg.lr)


@torch.no_grad()
def evaluate_heldout(sae: TopKSAE, store: TokenStore, heldout_windows: np.ndarray, read_rows: int,
                     batch_size: int, device: torch.device) -> dict:
    """FVU (original scale), mean L0, token count and feature-fired mask [F] on held-out tokens."""
    sae = sae.to(device).eval()
    err = 0.0
    total = np.zeros(store.d)
    sq = 0.0
    l0 = 0
    n = 0
    fired = torch.zeros(sae.n_features, dtype=torch.bool, device=device)
    for rows in iter_split_chunks(store, heldout_windows, True, read_rows):
        for start in range(0, rows.shape[0], batch_size):
            x = torch.from_numpy(rows[start:start + batch_size]).to(device)
            recon, features = sae(x)
            active = features > 0
            err += float((x.double() - recon.double()).pow(2).sum())
            total += x.double().sum(dim=0).cpu().numpy()
            sq += float(x.double().pow(2).sum())
            l0 += int(active.sum())
            fired |= active.any(dim=0)
            n += x.shape[0]
    variance = sq - float(total @ total) / max(n, 1)
    return {"fvu": err / variance if variance > 0 else float("nan"), "l0": l0 / max(n, 1),
            "n_heldout_tokens": n, "fired": fired.cpu()}


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _device(accelerator: str) -> torch.device:
    return torch.device("cuda" if accelerator in ("cuda", "gpu") else "cpu")


def train_sae(store_path: str | Path, cfg: SAEConfig, threads: int = 1, accelerator: str = "cpu",
              read_rows: int | None = None) -> tuple[TopKSAE, dict]:
    """Train a TopK SAE on the tokens in `store_path`; return (model on CPU, metrics).

    Metrics: architecture, n_features, k, d_in, fvu and l0 on held-out tokens, dead_fraction
    (features firing on no held-out and no last-epoch training token), n_train_tokens,
    n_heldout_tokens, n_train_windows, n_heldout_windows, epochs, seed, input_scale, chunk_reads.
    `read_rows` is the store read size (default: the store's chunk length).
    """
    cfg.validate()
    store = open_store(store_path)
    read_rows = read_rows or int(store.activations.chunks[0])
    train_windows, heldout_windows = split_windows(store, cfg.heldout_fraction, cfg.seed)
    mean, mean_sq_norm, n_train = input_statistics(store, heldout_windows, read_rows)
    scale = float(np.sqrt(store.d / mean_sq_norm)) if cfg.normalize_inputs and mean_sq_norm > 0 else 1.0
    token_variance = (mean_sq_norm - float(mean @ mean)) * scale**2

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    _quiet_lightning()
    try:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        sae = TopKSAE(store.d, cfg.n_features, cfg.k)
        sae.input_scale.fill_(scale)
        sae.b_dec.data = torch.as_tensor(mean * scale, dtype=torch.float32)
        module = SAETraining(sae, cfg, token_variance)
        dataset = TrainingTokens(store, heldout_windows, n_train, cfg.batch_size, cfg.seed,
                                 cfg.memory_budget_mb * 2**20, read_rows)
        trainer = pl.Trainer(max_epochs=cfg.epochs, accelerator=accelerator, devices=1, deterministic=True,
                             logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*IterableDataset.*")
            trainer.fit(module, DataLoader(dataset, batch_size=None, num_workers=0))
        fired_last_epoch = module.fired_this_epoch.cpu()
        heldout = evaluate_heldout(sae, store, heldout_windows, read_rows, max(cfg.batch_size, 1024),
                                   _device(accelerator))
    finally:
        torch.set_num_threads(previous_threads)
    sae = sae.cpu().eval()
    fired = heldout.pop("fired") | fired_last_epoch
    metrics = {
        "architecture": cfg.architecture, "n_features": cfg.n_features, "k": cfg.k, "d_in": store.d,
        "fvu": heldout["fvu"], "l0": heldout["l0"], "dead_fraction": float(1.0 - fired.float().mean()),
        "n_train_tokens": n_train, "n_heldout_tokens": heldout["n_heldout_tokens"],
        "n_train_windows": int(train_windows.size), "n_heldout_windows": int(heldout_windows.size),
        "epochs": cfg.epochs, "seed": cfg.seed, "input_scale": scale, "chunk_reads": dataset.chunk_reads,
    }
    return sae, metrics


def save_sae(model: TopKSAE, path: str | Path, extra_metadata: dict | None = None) -> None:
    """Write weights to `path` (safetensors) with architecture, sizes, input scale and any
    JSON-serialisable `extra_metadata` (e.g. config, metrics) in the header; atomic rename."""
    path = Path(path)
    header = {"architecture": "topk", "d_in": model.d_in, "n_features": model.n_features, "k": model.k,
              "input_scale": float(model.input_scale)}
    # one metadata key (see interp.lm.pretrain.save_checkpoint): several would make the bytes vary
    metadata = {METADATA_KEY: json.dumps({**header, "extra": extra_metadata or {}}, sort_keys=True)}
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def read_sae_metadata(path: str | Path) -> tuple[dict, dict]:
    """(architecture header, extra metadata) stored by `save_sae`."""
    metadata = read_safetensors_metadata(path, "SAE weights")
    if METADATA_KEY not in metadata:
        raise InputError(f"{path}: safetensors file lacks the '{METADATA_KEY}' header written by save_sae")
    header = json.loads(metadata[METADATA_KEY])
    return header, header.pop("extra", {})


def load_sae(path: str | Path) -> TopKSAE:
    """TopKSAE (CPU, eval mode) from a file written by `save_sae`."""
    from safetensors.torch import load_file

    header, _ = read_sae_metadata(path)
    if header.get("architecture") != "topk":
        raise InputError(f"{path}: unsupported SAE architecture {header.get('architecture')!r}")
    model = TopKSAE(int(header["d_in"]), int(header["n_features"]), int(header["k"]))
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as err:
        raise InputError(f"{path}: weights do not match the header ({err})") from err
    return model.eval()
