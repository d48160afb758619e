"""Masked-LM pretraining of `tiny-dnalm` and its held-out evaluation against Markov baselines.

Training draws random crops of `seq_len` bases from the training sequences; crop i is a pure
function of (seed, i), so the data stream, and with Lightning's deterministic mode the
weights, are identical for identical inputs and seed. Masking is BERT-style: 15% of ACGT
positions are selected; of those 80% become [MASK], 10% a random base, 10% stay.

Held-out cross-entropy scores every ACGT base exactly once: each context-sized window is run
`n_mask_groups` times, pass r masking the positions with pos % n_mask_groups == r, and the
model's probability of the true base at the masked positions is read off.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from interp.errors import InputError
from interp.io import atomic_path
from interp.lm.config import resolve_settings
from interp.lm.markov import block_mean_interval, markov_base_losses
from interp.lm.model import MASK_ID, PAD_ID, TinyDNALM, TinyLMConfig, encode, n_parameters

_RC_TOKEN = np.array([3, 2, 1, 0, 4, 5, 6], dtype=np.int64)  # A<->T, C<->G; N, [MASK], [PAD] unchanged


#: bases per block of the held-out LM-vs-baseline interval (`block_mean_interval`): much longer than the
#: correlation of neighbouring bases' losses (motifs, short repeats), short enough for several blocks
EVAL_BLOCK_BASES = 500


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def mask_tokens(tokens: np.ndarray, rng: np.random.Generator, mask_prob: float,
                span: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking of one crop. tokens int64 [L] -> (input ids [L], labels [L] with -100 = unscored).

    span > 1: the picked bases come in runs of `span` contiguous positions (about mask_prob of the ACGT
    bases in all; runs may overlap or reach past N / padding, which are never picked)."""
    inputs = tokens.copy()
    labels = np.full_like(tokens, -100)
    candidates = np.flatnonzero(tokens < 4)
    if len(candidates) == 0:
        return inputs, labels
    if span > 1:
        n_spans = max(1, int(round(mask_prob * len(candidates) / span)))
        starts = rng.choice(candidates, size=min(n_spans, len(candidates)), replace=False)
        covered = np.zeros(len(tokens), dtype=bool)
        for start in starts:
            covered[start:start + span] = True
        picked = np.flatnonzero(covered & (tokens < 4))
        n_pick = len(picked)
    else:
        n_pick = max(1, int(round(mask_prob * len(candidates))))
        picked = rng.choice(candidates, size=n_pick, replace=False)
    labels[picked] = tokens[picked]
    action = rng.random(n_pick)
    inputs[picked[action < 0.8]] = MASK_ID
    randomised = picked[(action >= 0.8) & (action < 0.9)]
    inputs[randomised] = rng.integers(0, 4, size=len(randomised))
    return inputs, labels


class CropDataset(Dataset):
    """Item i: a random crop (padded to seq_len if its sequence is shorter), masked; a function of (seed, i)."""

    def __init__(self, seqs: list[str], seq_len: int, n_items: int, seed: int, mask_prob: float,
                 reverse_complement: float = 0.0, mask_span: int = 1) -> None:
        self.tokens = [encode(s).numpy() for s in seqs if len(s) > 0]
        lengths = np.array([len(t) for t in self.tokens], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.seq_len, self.n_items, self.seed, self.mask_prob = seq_len, n_items, seed, mask_prob
        self.reverse_complement, self.mask_span = reverse_complement, int(mask_span)

    def __len__(self) -> int:
        return self.n_items

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, i])
        seq = self.tokens[rng.choice(len(self.tokens), p=self.weights)]
        start = int(rng.integers(0, max(1, len(seq) - self.seq_len + 1)))
        crop = np.full(self.seq_len, PAD_ID, dtype=np.int64)
        piece = seq[start:start + self.seq_len]
        if self.reverse_complement > 0 and rng.random() < self.reverse_complement:
            piece = _RC_TOKEN[piece[::-1]]
        crop[:len(piece)] = piece
        inputs, labels = mask_tokens(crop, rng, self.mask_prob, self.mask_span)
        return torch.from_numpy(inputs), torch.from_numpy(labels)


class MaskedLMModule(pl.LightningModule):
    """LightningModule wrapping TinyDNALM with AdamW + linear warmup / cosine decay."""

    def __init__(self, cfg: TinyLMConfig, train: dict) -> None:
        super().__init__()
        self.model = TinyDNALM(cfg)
        self.train_settings = train

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        logits = self.model(inputs)
        return F.cross_entropy(logits.reshape(-1, 4), labels.reshape(-1), ignore_index=-100)

    def configure_optimizers(self) -> dict:
        s = self.train_settings
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": s["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=s["lr"])
        warmup, total, floor = s["warmup_steps"], s["max_steps"], s["min_lr_ratio"]

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@torch.inference_mode()
def heldout_base_losses(model: TinyDNALM, seqs: list[str], n_mask_groups: int = 7, batch_size: int = 32,
                        device: str = "cpu") -> tuple[np.ndarray, list[int]]:
    """Per-base cross-entropy (nats) [n] of every ACGT base of `seqs`, each scored once while masked, in sequence
    order then position order (as `interp.lm.markov.markov_base_losses`), and the bases scored per sequence.

    Sequences are cut into non-overlapping windows of the model's context; each window is run
    n_mask_groups times with positions pos % n_mask_groups == r masked in pass r.
    """
    model.eval()
    context = model.cfg.max_len
    windows = [encode(s[i:i + context]) for s in seqs for i in range(0, len(s), context)]
    per_window = [torch.full((len(w),), float("nan"), dtype=torch.float64) for w in windows]
    jobs = [(k, r) for k in range(len(windows)) for r in range(n_mask_groups)]
    with torch.no_grad():
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            length = max(len(windows[k]) for k, _ in chunk)
            inputs = torch.full((len(chunk), length), PAD_ID, dtype=torch.long)
            scored = torch.zeros((len(chunk), length), dtype=torch.bool)
            for row, (k, r) in enumerate(chunk):
                w = windows[k]
                inputs[row, :len(w)] = w
                scored[row, :len(w)] = (torch.arange(len(w)) % n_mask_groups == r) & (w < 4)
            targets = inputs.clone()
            inputs[scored] = MASK_ID
            logp = torch.log_softmax(model(inputs.to(device)).float(), dim=-1).cpu()
            nll = -logp.gather(2, targets.clamp(max=logp.shape[-1] - 1)[..., None])[..., 0].double()
            for row, (k, _) in enumerate(chunk):
                n = len(windows[k])
                per_window[k][scored[row, :n]] = nll[row, :n][scored[row, :n]]
    losses = torch.cat(per_window) if per_window else torch.zeros(0, dtype=torch.float64)
    losses = losses[~torch.isnan(losses)].numpy()
    if losses.size == 0:
        raise ValueError("no A/C/G/T bases in the held-out sequences")
    return losses, [sum(s.count(b) for b in "ACGT") for s in (x.upper() for x in seqs)]


def heldout_cross_entropy(model: TinyDNALM, seqs: list[str], n_mask_groups: int = 7, batch_size: int = 32,
                          device: str = "cpu") -> tuple[float, int]:
    """Mean per-base cross-entropy (nats) over every ACGT base of `seqs`, each scored once while masked
    (`heldout_base_losses`). Returns (cross-entropy, number of bases scored)."""
    losses, _ = heldout_base_losses(model, seqs, n_mask_groups, batch_size, device)
    return float(losses.mean()), int(losses.size)


def save_checkpoint(model: TinyDNALM, path: Path) -> None:
    """safetensors weights with the architecture as JSON metadata; written to a temp name, then renamed."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # one metadata key: safetensors keeps metadata in a hash map, so with several keys their order in
    # the file (and the file's sha256, which the report records) varies from process to process
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"config": json.dumps(model.cfg.to_dict(), sort_keys=True)})


def pretrain_tiny_dnalm(train_seqs: list[str], heldout_seqs: list[str], card: dict, overrides: dict, seed: int,
                        checkpoint_out: Path, threads: int = 1, accelerator: str = "cpu") -> dict:
    """Train tiny-dnalm by masked LM, evaluate on held-out bases against order-0/3 Markov chains.

    train_seqs / heldout_seqs: DNA strings (case is ignored). Returns the metrics dict; the
    weights go to `checkpoint_out` (safetensors).
    """
    quiet_lightning()
    train_seqs = [s.upper() for s in train_seqs]
    heldout_seqs = [s.upper() for s in heldout_seqs]
    if not any(train_seqs) or not any(heldout_seqs):
        raise InputError("pretraining needs non-empty training and held-out sequences")
    n_train_bases = sum(s.count(b) for s in train_seqs for b in "ACGT")
    n_heldout_acgt = sum(s.count(b) for s in heldout_seqs for b in "ACGT")
    if not n_train_bases or not n_heldout_acgt:  # all N (an assembly gap): nothing to learn or score
        raise InputError(f"pretraining needs A/C/G/T bases in the training and held-out sequences; they have "
                         f"{n_train_bases} and {n_heldout_acgt}")
    cfg, train = resolve_settings(card, overrides)
    torch.set_num_threads(threads)
    pl.seed_everything(seed, workers=True)
    module = MaskedLMModule(cfg, train)
    data = CropDataset(train_seqs, train["seq_len"], train["max_steps"] * train["batch_size"], seed,
                       train["mask_prob"], train["reverse_complement"], train["mask_span"])
    loader = DataLoader(data, batch_size=train["batch_size"], shuffle=False, num_workers=0)
    trainer = pl.Trainer(max_steps=train["max_steps"], max_epochs=-1, deterministic=True, accelerator=accelerator,
                         devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, gradient_clip_val=1.0)
    started = time.perf_counter()
    with warnings.catch_warnings():
        # single-process loading is deliberate: crops are cheap and must not depend on worker count
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, loader)
    train_seconds = time.perf_counter() - started

    model = module.model
    device = "cuda" if accelerator in ("cuda", "gpu") else "cpu"
    model.to(device)
    lm_losses, lengths = heldout_base_losses(model, heldout_seqs, train["n_mask_groups"], train["eval_batch_size"],
                                             device)
    baselines = {k: markov_base_losses(train_seqs, heldout_seqs, k) for k in (0, 3)}
    assert all(b.size == lm_losses.size == sum(lengths) for b in baselines.values()), \
        "model and baselines must score the same bases"
    heldout_ce, n_heldout = float(lm_losses.mean()), int(lm_losses.size)
    order0, order3 = (float(baselines[k].mean()) for k in (0, 3))
    # the LM minus each baseline, per base, with a block interval: "beats" is a claim about held-out bases,
    # not a point estimate
    differences = {f"order{k}_difference": block_mean_interval(lm_losses - baselines[k], lengths,
                                                               block=EVAL_BLOCK_BASES) for k in (0, 3)}
    model.cpu()
    name = card.get("name", "tiny-dnalm")
    save_checkpoint(model, checkpoint_out)
    return {
        "model": name,
        "heldout_ce": heldout_ce,
        "baseline_order0_ce": order0,
        "baseline_order3_ce": order3,
        "n_params": n_parameters(model),
        "n_train_bases": int(n_train_bases),
        "n_heldout_bases": n_heldout,
        "steps": int(trainer.global_step),
        "seed": seed,
        "train_seconds": round(train_seconds, 2),
        "beats_order0": bool(heldout_ce < order0),
        "beats_order3": bool(heldout_ce < order3),
        **differences,
    }
