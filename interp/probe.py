"""Linear probes: many L2-penalised logistic regressions fitted in one Lightning run.

A probe asks "is property T linearly readable from these activations?". Probes are fitted thousands of
times (folds x targets x shuffled-label controls x permutations), so `fit_logistic` fits P independent
probes at once: one LightningModule holds W [P, d] and b [P], the loss is the sum of the P independent
objectives, and full-batch L-BFGS minimises it. The objectives do not share parameters, so the joint
minimum is the set of individual minima.

Each probe's objective equals scikit-learn's ``LogisticRegression(C=C)`` on standardised features,
divided by ``C * n_train``::

    mean_i logloss(y_i, x_i.w + b) + ||w||^2 / (2 * C * n_train)      (intercept unpenalised)

Features are standardised per probe with that probe's training-row mean and sd (ddof=0, as
``StandardScaler``); ``coef`` is reported in standardised units.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytorch_lightning as pl_light
import torch
from scipy.stats import rankdata
from torch.utils.data import DataLoader

from interp.errors import InputError

for _name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.ERROR)

KMER_FEATURES = "kmer3"
KMER_LAYER = "3-mer frequencies"


@dataclass
class ProbeConfig:
    """Settings shared by every probe of one fit.

    C: inverse L2 strength, as scikit-learn's ``LogisticRegression(C=...)``.
    max_iter: L-BFGS iterations of one round (one full-batch step of ``torch.optim.LBFGS``).
    gtol: a probe has converged when every entry of its own objective's gradient is below this.
    max_rounds: rounds of `max_iter` iterations at most; after the first, only the probes not yet
        converged are refitted, from where they stopped, together while a round still halves their largest
        gradient, then each alone (one L-BFGS over the sum of P objectives shares its line search and
        curvature memory, so a probe batched beside others can stop short of its own minimum where it alone
        would not: its result then depended on how many shuffled-label controls were fitted beside it).
    seed: seeds Lightning and every label shuffle.
    accelerator: "cpu" or "cuda" (or anything Lightning accepts).
    num_threads: CPU threads during the fit; None picks 1 for small problems, torch's default otherwise.
    """

    C: float = 1.0
    max_iter: int = 200
    gtol: float = 1e-5
    max_rounds: int = 10
    seed: int = 0
    accelerator: str = "cpu"
    num_threads: int | None = None


@dataclass
class LogisticProbes:
    """P fitted probes.

    coef [P, d] in standardised units; intercept [P]; mean, scale [P, d] the per-probe training-row
    standardisation (scale of a constant feature is 1); n_train [P] training rows per probe; grad_max [P]
    the largest absolute entry of each probe's gradient at the end (converged: below `ProbeConfig.gtol`).
    """

    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    n_train: np.ndarray
    grad_max: np.ndarray | None = None

    @property
    def n_probes(self) -> int:
        return int(self.coef.shape[0])


class _ProbeModule(pl_light.LightningModule):
    """P logistic regressions on one shared X [n, d] or per-probe X [P, n, d], full batch."""

    def __init__(self, X, y, train_mask, mean, scale, C, max_iter: int, W=None, b=None):
        super().__init__()
        self.automatic_optimization = True
        n_probes, d = mean.shape
        self.register_buffer("X", X)
        self.register_buffer("y", y)
        self.register_buffer("weight_rows", train_mask / train_mask.sum(dim=1, keepdim=True))
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)
        self.register_buffer("l2", 1.0 / (2.0 * C * train_mask.sum(dim=1)))  # C: scalar or [P]
        self.W = torch.nn.Parameter(torch.zeros(n_probes, d, dtype=X.dtype) if W is None else W.clone())
        self.b = torch.nn.Parameter(torch.zeros(n_probes, dtype=X.dtype) if b is None else b.clone())
        self.max_iter = max_iter

    def logits(self) -> torch.Tensor:
        """[P, n] logits; standardisation is folded into the weights so X is never copied P times."""
        w_raw = self.W / self.scale
        offset = (w_raw * self.mean).sum(dim=1)
        if self.X.ndim == 2:
            z = w_raw @ self.X.T
        else:
            z = torch.einsum("pnd,pd->pn", self.X, w_raw)
        return z - offset[:, None] + self.b[:, None]

    def objective(self) -> torch.Tensor:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(self.logits(), self.y, reduction="none")
        per_probe = (bce * self.weight_rows).sum(dim=1) + self.l2 * (self.W**2).sum(dim=1)
        return per_probe.sum()

    def training_step(self, batch, batch_idx):
        return self.objective()

    def grad_max(self) -> torch.Tensor:
        """[P] the largest absolute entry of each probe's gradient (the objectives are independent, so the
        joint gradient's block for probe p is its own)."""
        with torch.enable_grad():
            gW, gb = torch.autograd.grad(self.objective(), [self.W, self.b])
        return torch.maximum(gW.abs().amax(dim=1), gb.abs()).detach()

    def configure_optimizers(self):
        return torch.optim.LBFGS(
            self.parameters(),
            lr=1.0,
            max_iter=self.max_iter,
            history_size=20,
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )


def _per_probe_C(C: float | np.ndarray, n_probes: int) -> torch.Tensor:
    """C as a float64 tensor [P] (one value broadcast to every probe)."""
    C = np.broadcast_to(np.asarray(C, dtype=np.float64), (n_probes,))
    if not np.all(np.isfinite(C) & (C > 0)):
        raise InputError(f"probe C must be positive and finite; got {np.unique(C).tolist()}")
    return torch.from_numpy(np.array(C))


def _check_inputs(X: np.ndarray, y: np.ndarray, train_mask: np.ndarray):
    X = np.ascontiguousarray(X, dtype=np.float64)
    if not X.flags.writeable:  # torch refuses read-only arrays (e.g. np.broadcast_to views)
        X = X.copy()
    train_mask = np.asarray(train_mask, dtype=bool)
    if train_mask.ndim == 1:
        train_mask = train_mask[None, :]
    n_probes, n = train_mask.shape
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = np.broadcast_to(y, (n_probes, y.shape[0]))
    if X.ndim not in (2, 3) or X.shape[-2] != n or y.shape != (n_probes, n):
        raise InputError(
            f"probe inputs: expected X [n, d] or [P, n, d], y [n] or [P, n], train_mask [P, n]; got "
            f"X {X.shape}, y {y.shape}, train_mask {train_mask.shape}"
        )
    if X.ndim == 3 and X.shape[0] != n_probes:
        raise InputError(f"probe inputs: X has {X.shape[0]} probe slices but train_mask has {n_probes} rows")
    if not np.all(np.isfinite(X)):
        raise InputError("probe inputs: X contains NaN or infinite values; expected finite activations")
    if not np.all((y == 0) | (y == 1)):
        raise InputError("probe inputs: labels must be 0/1")
    if np.any(train_mask.sum(axis=1) == 0):
        raise InputError("probe inputs: a probe has no training rows")
    return X, np.array(y, dtype=np.float64, copy=True), train_mask


def _standardisation(X: np.ndarray, train_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-probe training-row mean and sd, both [P, d]; a constant feature gets sd 1.

    For shared X [n, d] the variance is E[x^2] - mean^2 (one product for all probes); where that
    difference cancels (sd below 1e-3 |mean|, constant features included) it is recomputed as the mean
    squared deviation, else rounding noise (sd ~1e-9) would stand in for a constant feature's sd and
    blow up its test values. Constant is scikit-learn's rule (`StandardScaler`): var within rounding.
    """
    n_train = train_mask.sum(axis=1, keepdims=True)
    w = train_mask / n_train
    if X.ndim == 2:
        mean = w @ X
        var = w @ (X**2) - mean**2
        probe, feature = np.nonzero(var <= 1e-6 * mean**2)
        step = max(1, 2**22 // max(X.shape[0], 1))  # bounded memory: [n, step] deviations at a time
        for lo in range(0, probe.size, step):
            p, j = probe[lo:lo + step], feature[lo:lo + step]
            var[p, j] = np.einsum("nk,kn->k", (X[:, j] - mean[p, j]) ** 2, w[p])
    else:
        mean = np.einsum("pn,pnd->pd", w, X)
        var = np.einsum("pn,pnd->pd", w, (X - mean[:, None, :]) ** 2)
    var = np.clip(var, 0.0, None)
    constant = var <= (n_train * np.finfo(np.float64).eps * mean) ** 2  # zero up to summation rounding
    scale = np.sqrt(var)
    scale[constant | (scale < 1e-12)] = 1.0
    return mean, scale


def _threads_for(cfg: ProbeConfig, work: int) -> int | None:
    """CPU threads for a fit of about `work` multiply-adds per evaluation (None: leave torch's setting).

    L-BFGS on small probes is thousands of tiny vector ops; there, thread start-up costs more than the
    arithmetic (and on a busy machine, 100x more), so small CPU fits run single-threaded.
    """
    if cfg.num_threads is not None:
        return cfg.num_threads
    return 1 if cfg.accelerator == "cpu" and work < 20_000_000 else None


@contextmanager
def _cpu_threads(n: int | None):
    """Temporarily set torch's intra-op CPU threads to n."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_logistic(X: np.ndarray, y: np.ndarray, train_mask: np.ndarray, cfg: ProbeConfig,
                 C: float | np.ndarray | None = None) -> LogisticProbes:
    """Fit P independent L2 logistic probes in one Lightning fit (full batch, L-BFGS).

    X: float [n, d] shared by all probes, or [P, n, d]; y: {0,1} [n] or [P, n];
    train_mask: bool [P, n], the rows each probe is trained on. Each probe should see both classes in
    its training rows (otherwise its intercept runs off towards +-infinity).
    C: inverse L2 strength, one value or one per probe [P] (None: cfg.C).
    """
    X, y, train_mask = _check_inputs(X, y, train_mask)
    n_probes = train_mask.shape[0]
    mean, scale = _standardisation(X, train_mask)
    if cfg.accelerator == "cuda":
        # cuBLAS needs this for deterministic matmuls under Trainer(deterministic=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    pl_light.seed_everything(cfg.seed, workers=True, verbose=False)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    mask_t = torch.from_numpy(train_mask.astype(np.float64))
    mean_t, scale_t = torch.from_numpy(mean), torch.from_numpy(scale)
    C_t = _per_probe_C(cfg.C if C is None else C, n_probes)
    W = torch.zeros(n_probes, X.shape[-1], dtype=X_t.dtype)
    b = torch.zeros(n_probes, dtype=X_t.dtype)
    grad = torch.full((n_probes,), np.inf, dtype=X_t.dtype)

    def fit_round(rows: torch.Tensor | slice) -> None:
        module = _ProbeModule(
            X_t if X.ndim == 2 else X_t[rows], y_t[rows], mask_t[rows], mean_t[rows], scale_t[rows],
            C=C_t[rows], max_iter=cfg.max_iter, W=W[rows], b=b[rows],
        )
        # the data lives in the module's buffers; the loader only ticks once per epoch
        _probe_trainer(cfg).fit(module, train_dataloaders=DataLoader([0], batch_size=1))
        W[rows], b[rows] = module.W.detach().cpu(), module.b.detach().cpu()
        grad[rows] = module.grad_max().cpu()

    def unconverged() -> torch.Tensor:
        return torch.nonzero(~(grad < cfg.gtol)).flatten()

    with warnings.catch_warnings(), _cpu_threads(_threads_for(cfg, X.size * (n_probes if X.ndim == 2 else 1))):
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        fit_round(slice(None))
        rounds, todo = 1, unconverged()
        while todo.numel() and rounds < cfg.max_rounds:  # together, while that still halves the gradient
            before = float(grad[todo].max())
            fit_round(todo)
            rounds, todo = rounds + 1, unconverged()
            if todo.numel() and float(grad[todo].max()) > before / 2:
                break
        for probe in todo.tolist():  # then each alone, in the rounds left
            for _ in range(rounds, cfg.max_rounds):
                fit_round(torch.tensor([probe]))
                if grad[probe] < cfg.gtol:
                    break
        todo = unconverged()
    if todo.numel():
        warnings.warn(f"fit_logistic: {todo.numel()} of {n_probes} probes did not converge in {cfg.max_rounds} rounds "
                      f"of {cfg.max_iter} L-BFGS iterations (largest gradient entry {float(grad.max()):.2g}, "
                      f"gtol {cfg.gtol:g})", RuntimeWarning, stacklevel=2)
    return LogisticProbes(
        coef=W.numpy().copy(),
        intercept=b.numpy().copy(),
        mean=mean,
        scale=scale,
        n_train=train_mask.sum(axis=1),
        grad_max=grad.numpy().copy(),
    )


def _probe_trainer(cfg: ProbeConfig) -> pl_light.Trainer:
    """One Lightning epoch of one full-batch L-BFGS step, deterministic, silent."""
    return pl_light.Trainer(
        max_epochs=1,
        accelerator=cfg.accelerator,
        devices=1,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def decision_function(probes: LogisticProbes, X: np.ndarray) -> np.ndarray:
    """Logits [P, n] of every probe on X [n, d] (shared) or [P, n, d]."""
    X = np.asarray(X, dtype=np.float64)
    w_raw = probes.coef / probes.scale
    offset = (w_raw * probes.mean).sum(axis=1)
    z = w_raw @ X.T if X.ndim == 2 else np.einsum("pnd,pd->pn", X, w_raw)
    return z - offset[:, None] + probes.intercept[:, None]


def predict_proba(probes: LogisticProbes, X: np.ndarray) -> np.ndarray:
    """P(y=1) [P, n] of every probe on X [n, d] (shared) or [P, n, d]."""
    z = decision_function(probes, X)
    return 1.0 / (1.0 + np.exp(-z))


def auroc(y_true: np.ndarray, score: np.ndarray) -> np.ndarray | float:
    """Area under the ROC curve via the Mann-Whitney U statistic, ties counted as 1/2.

    y_true, score: [n] or [P, n] (rows are independent problems). NaN where a row lacks a class.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    squeeze = s.ndim == 1
    y, s = np.atleast_2d(y), np.atleast_2d(s)
    y = np.broadcast_to(y, s.shape)
    ranks = rankdata(s, axis=1)  # average ranks give ties half credit
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    u = (ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    return float(out[0]) if squeeze else out


def classification_metrics(y_true: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUROC, balanced accuracy and Matthews correlation of probabilities ``score`` [n] for y_true [n].

    Predictions are ``score >= 0.5``. Metrics that need both classes are NaN without them.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    pred = s >= 0.5
    tp = float(np.sum(pred & y))
    tn = float(np.sum(~pred & ~y))
    fp = float(np.sum(pred & ~y))
    fn = float(np.sum(~pred & y))
    pos, neg = tp + fn, tn + fp
    bacc = 0.5 * (tp / pos + tn / neg) if pos > 0 and neg > 0 else float("nan")
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    if pos > 0 and neg > 0:
        mcc = (tp * tn - fp * fn) / denom if denom > 0 else 0.0
    else:
        mcc = float("nan")
    return {"auroc": float(auroc(y, s)), "balanced_accuracy": float(bacc), "mcc": float(mcc)}


#: windows on each side of a test block left out of its training rows (`block_folds`; config probe.block_gap)
BLOCK_GAP = 10


def contiguous_folds(
    block: np.ndarray, contig: np.ndarray, start: np.ndarray, end: np.ndarray, gap: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped CV over contiguous genome blocks, as (train_index, test_index) integer arrays.

    block: int [n] block id per window; contig [n]; start, end [n] half-open 0-based coordinates.
    Fold f tests the windows of the f-th block (in sorted block order) and trains on every other window
    except those that overlap a test window on the same contig (overlapping windows share sequence and would
    leak the test labels) or lie within `gap` bases of one: next to a block edge, labels that come in runs
    (an exon, a repeat, a GC-rich stretch) and autocorrelated activations are shared across the edge, and a
    probe of a label unrelated to the activations scored above chance (mean fold AUROC 0.537, CI 0.520-0.553,
    on AR(1) activations with rho 0.8 and labels in runs of 10 windows; 0.511, 0.495-0.527, with a 10-window
    gap: tests/test_probe.py).
    """
    block = np.asarray(block)
    contig = np.asarray(contig).astype(str)
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    folds = []
    for b in np.unique(block):
        is_test = block == b
        leaks = np.zeros(block.shape[0], dtype=bool)
        for c in np.unique(contig[is_test]):
            sel = is_test & (contig == c)
            m_start, m_end = _merge_intervals(start[sel] - gap, end[sel] + gap)
            cand = np.flatnonzero(~is_test & (contig == c))
            # the last merged test interval starting before this window ends is the only one that can hit it
            j = np.searchsorted(m_start, end[cand], side="left") - 1
            hit = (j >= 0) & (m_end[np.clip(j, 0, None)] > start[cand])
            leaks[cand[hit]] = True
        train = np.flatnonzero(~is_test & ~leaks)
        folds.append((train, np.flatnonzero(is_test)))
    return folds


def block_folds(windows: pl.DataFrame, block_gap: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`contiguous_folds` of a windows table (block, contig, start, end; rows in its order) with a gap of
    `block_gap` windows around each test block: that many times the tiling's step (the median distance between
    consecutive window starts on a contig; the median width where no contig has two windows), in bases."""
    if not windows.height:
        return []
    steps = (windows.select("contig", "start").unique().sort("contig", "start")
             .select(pl.col("start").diff().over("contig").alias("step")).drop_nulls().filter(pl.col("step") > 0))
    step = float(steps["step"].median()) if steps.height else float((windows["end"] - windows["start"]).median())
    return contiguous_folds(windows["block"].to_numpy(), windows["contig"].to_numpy(), windows["start"].to_numpy(),
                            windows["end"].to_numpy(), gap=int(round(block_gap * step)))


def _merge_intervals(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of half-open intervals as sorted disjoint (start, end) arrays."""
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    run_end = np.maximum.accumulate(e)
    new = np.ones(s.shape[0], dtype=bool)
    new[1:] = s[1:] >= run_end[:-1]
    group = np.cumsum(new) - 1
    m_end = np.zeros(group[-1] + 1, dtype=np.int64)
    np.maximum.at(m_end, group, e)
    return s[new], m_end


def kmer_frequencies(seqs: list[str], k: int = 3) -> np.ndarray:
    """Normalised k-mer counts [n, 4**k] (columns in lexicographic ACGT order), case-insensitive.

    k-mers containing anything but A/C/G/T are skipped; a sequence with none gets a zero row.
    """
    lookup = np.full(256, 4, dtype=np.int64)
    for i, base in enumerate("ACGT"):
        lookup[ord(base)] = i
        lookup[ord(base.lower())] = i
    out = np.zeros((len(seqs), 4**k), dtype=np.float64)
    powers = 4 ** np.arange(k - 1, -1, -1)
    for row, seq in enumerate(seqs):
        codes = lookup[np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)]
        if codes.shape[0] < k:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(codes, k)
        valid = (windows < 4).all(axis=1)
        counts = np.bincount(windows[valid] @ powers, minlength=4**k)
        total = counts.sum()
        if total:
            out[row] = counts / total
    return out


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.any() and not y.all())


def _cv_many(
    X: np.ndarray, Y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], cfg: ProbeConfig, n_shuffles: int
) -> list[dict]:
    """Cross-validate T targets Y [T, n] on one X [n, d] with one `fit_logistic` call.

    Shuffle s of target t uses one seeded permutation of that target's labels over all rows, applied to
    training and test labels alike (a control task with the same label balance and no relation to X).
    """
    Y = np.asarray(Y).astype(bool)
    n_targets, n = Y.shape
    rng = np.random.default_rng(cfg.seed)
    labels, masks, jobs = [], [], []  # jobs: (target, kind, shuffle, fold, test_idx)
    # n_shuffled_skipped: fold x shuffle fits skipped (those of the skipped folds, and shuffles lacking a class)
    results = [{"real": [], "shuffled": [], "n_folds_skipped": 0, "n_shuffled_skipped": 0} for _ in range(n_targets)]
    for t in range(n_targets):
        shuffled = [Y[t][rng.permutation(n)] for _ in range(n_shuffles)]
        for f, (train, test) in enumerate(folds):
            if not (_both_classes(Y[t][train]) and _both_classes(Y[t][test])):
                results[t]["n_folds_skipped"] += 1
                results[t]["n_shuffled_skipped"] += n_shuffles
                continue
            mask = np.zeros(n, dtype=bool)
            mask[train] = True
            for kind, s, y_row in [("real", -1, Y[t])] + [("shuffled", s, ys) for s, ys in enumerate(shuffled)]:
                if kind == "shuffled" and not (_both_classes(y_row[train]) and _both_classes(y_row[test])):
                    results[t]["n_shuffled_skipped"] += 1
                    continue
                labels.append(y_row)
                masks.append(mask)
                jobs.append((t, kind, s, f, test))
    if not jobs:
        return results
    probes = fit_logistic(X, np.stack(labels), np.stack(masks), cfg)
    proba = predict_proba(probes, X)
    for p, (t, kind, s, f, test) in enumerate(jobs):
        row = classification_metrics(labels[p][test], proba[p, test])
        row.update(fold=f, shuffle=s, n_train=int(probes.n_train[p]), n_test=int(test.shape[0]))
        results[t][kind].append(row)
    return results


def cross_validate(
    X: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], cfg: ProbeConfig, n_shuffles: int = 1
) -> dict:
    """Probe y [n] from X [n, d] over `folds`, with `n_shuffles` shuffled-label controls per fold.

    Returns {"real": [per-fold metrics], "shuffled": [per fold x shuffle metrics], "n_folds_used",
    "n_folds_skipped", "n_shuffled_skipped"}; each metrics dict has auroc, balanced_accuracy, mcc, fold,
    shuffle, n_train, n_test. Folds whose training or test rows lack a class are skipped and counted, and so
    are fold x shuffle fits (n_shuffled_skipped: those of skipped folds, and shuffles whose labels lack a class
    there).
    """
    out = _cv_many(X, np.asarray(y)[None, :], folds, cfg, n_shuffles)[0]
    out["n_folds_used"] = len(out["real"])
    return out


def fold_interval(differences: np.ndarray, n_train, n_test, confidence: float = 0.95) -> tuple[float, float]:
    """Paired interval (low, high) of the mean of the per-fold differences [K] (e.g. SAE - raw AUROC).

    A t interval with K - 1 degrees of freedom whose variance is the sample variance of the differences
    times (1/K + n_test/n_train) (mean fold sizes), Nadeau & Bengio's (2003) correction for the
    correlation the folds' overlapping training rows induce: the plain paired t (variance / K) called a
    winner on 13-19% of null labels at 95%, the corrected one on 5-8%. (NaN, NaN) for fewer than 2 folds.
    """
    from scipy.stats import t as student_t

    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return float("nan"), float("nan")
    half = student_t.ppf(0.5 + confidence / 2, d.size - 1) * _fold_se(d, n_train, n_test)
    return float(d.mean() - half), float(d.mean() + half)


def _fold_se(d: np.ndarray, n_train, n_test) -> float:
    """Nadeau-Bengio corrected standard error of the mean of per-fold differences d [K] (`fold_interval`)."""
    ratio = float(np.mean(n_test)) / float(np.mean(n_train))
    return float(d.std(ddof=1) * np.sqrt(1.0 / d.size + ratio))


def fold_p_greater(differences: np.ndarray, n_train, n_test) -> float:
    """One-sided p [0, 1] of "the mean per-fold difference [K] is > 0" by the corrected t of `fold_interval`
    (NaN for fewer than 2 folds; 0 or 1 when every fold differs by the same amount)."""
    from scipy.stats import t as student_t

    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return float("nan")
    se = _fold_se(d, n_train, n_test)
    if se == 0:
        return 0.0 if d.mean() > 0 else 1.0
    return float(student_t.sf(d.mean() / se, d.size - 1))


def _paired(a: list[dict], b: list[dict]) -> dict[str, float]:
    """a's fold AUROCs minus b's, over the folds both used with a finite AUROC (b: one row per fold, or several
    shuffles per fold, their finite AUROCs averaged): {diff (mean), low, high (95% `fold_interval`),
    p (`fold_p_greater`), n_folds}."""
    by_fold: dict[int, list[float]] = {}
    for r in b:
        if np.isfinite(r["auroc"]):  # a NaN control AUROC is left out like a NaN embedding one
            by_fold.setdefault(int(r["fold"]), []).append(float(r["auroc"]))
    rows = [(float(r["auroc"]) - float(np.mean(by_fold[int(r["fold"])])), r["n_train"], r["n_test"])
            for r in a if int(r["fold"]) in by_fold and np.isfinite(r["auroc"])]
    if not rows:
        return {"diff": float("nan"), "low": float("nan"), "high": float("nan"), "p": float("nan"), "n_folds": 0}
    d, n_train, n_test = (np.array(x, dtype=np.float64) for x in zip(*rows, strict=True))
    low, high = fold_interval(d, n_train, n_test)
    return {"diff": float(d.mean()), "low": low, "high": high, "p": fold_p_greater(d, n_train, n_test),
            "n_folds": int(d.size)}


def _summary(rows: list[dict]) -> dict[str, float]:
    """Mean and sd (ddof=1; NaN for fewer than two) of the per-fold metrics."""
    out = {}
    for key, name in [("auroc", "auroc_mean"), ("balanced_accuracy", "balanced_accuracy"), ("mcc", "mcc")]:
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[name] = float(vals.mean()) if vals.size else float("nan")
        sd_name = "auroc_sd" if key == "auroc" else f"{key}_sd"
        out[sd_name] = float(vals.std(ddof=1)) if vals.size > 1 else float("nan")
    return out


def _check_windows(windows: pl.DataFrame, targets: list[str], n_rows: dict) -> None:
    required = ["window_index", "contig", "start", "end", "sequence", "block", *targets]
    missing = [c for c in required if c not in windows.columns]
    if missing:
        raise InputError(f"windows table: missing column(s) {missing}; expected {required}")
    for t in targets:
        if windows.schema[t] != pl.Boolean:
            raise InputError(f"windows table, field {t}: expected a boolean target column, got {windows.schema[t]}")
        if windows[t].null_count():
            raise InputError(f"windows table, field {t}: contains missing values")
    for key, n in n_rows.items():
        if n != windows.height:
            raise InputError(
                f"pooled activations {key}: {n} rows but the windows table has {windows.height} windows"
            )


def probe_table(
    pooled: dict[tuple[str, str], np.ndarray],
    windows: pl.DataFrame,
    targets: list[str],
    cfg: ProbeConfig,
    n_shuffles: int = 1,
    block_gap: float = BLOCK_GAP,
) -> pl.DataFrame:
    """One row per (model, layer, target, features) with fold-mean metrics over contiguous-block CV.

    block_gap: training windows within this many windows (tiling steps, `block_folds`) of a test block are left
    out of its fold (`contiguous_folds`' gap), besides those overlapping it.

    pooled: {(model, layer): X [n_windows, d]} in window order (sorted by window_index);
    windows: window_index, contig, start, end, sequence, block and one bool column per target.
    features is "embedding" (the activations), "shuffled" (same activations, shuffled labels; its
    n_folds_used and n_folds_skipped count fold x shuffle fits) or "kmer3" (3-mer frequencies of the sequence, once per
    target, with model "kmer3" and layer "3-mer frequencies"). Each embedding row also compares itself with
    the two controls fold by fold (folds both used; its shuffles averaged per fold): vs_kmer3_* and
    vs_shuffled_* = diff (mean AUROC difference, embedding - control), low / high (95% `fold_interval`) and
    p (`fold_p_greater`: one-sided, "the embedding beats the control"); null on the control rows.
    `beats_controls` reads them.
    """
    _check_windows(windows, targets, {k: np.asarray(v).shape[0] for k, v in pooled.items()})
    windows = windows.sort("window_index")
    folds = block_folds(windows, block_gap)
    Y = np.stack([windows[t].to_numpy() for t in targets]) if targets else np.zeros((0, windows.height), bool)
    counts = {t: (int(Y[i].sum()), int((~Y[i]).sum())) for i, t in enumerate(targets)}
    rows = []

    def add(model: str, layer: str, features: str, t: str, res: dict, kind: str,
            versus: dict[str, list[dict]] | None = None) -> None:
        used = len(res[kind])
        paired = {f"vs_{name}_{k}": v for name, other in (versus or {}).items()
                  for k, v in _paired(res[kind], other).items() if k != "n_folds"}
        rows.append({
            "model": model, "layer": layer, "target": t, "features": features, **_summary(res[kind]),
            "n_folds_used": used,
            "n_folds_skipped": res["n_shuffled_skipped"] if kind == "shuffled" else res["n_folds_skipped"],
            "n_pos": counts[t][0], "n_neg": counts[t][1], **paired,
        })

    # the 3-mer control first: each embedding row is compared with it fold by fold (and with its own shuffles)
    kmer_results = _cv_many(kmer_frequencies(windows["sequence"].to_list(), k=3), Y, folds, cfg, 0) if targets else []
    for (model, layer), X in pooled.items():
        results = _cv_many(np.asarray(X, dtype=np.float64), Y, folds, cfg, n_shuffles)
        for t, res, kmer in zip(targets, results, kmer_results, strict=True):
            add(str(model), str(layer), "embedding", t, res, "real",
                versus={"kmer3": kmer["real"], "shuffled": res["shuffled"]})
            add(str(model), str(layer), "shuffled", t, res, "shuffled")
    for t, res in zip(targets, kmer_results, strict=True):
        add(KMER_FEATURES, KMER_LAYER, KMER_FEATURES, t, res, "real")
    schema = {
        "model": pl.String, "layer": pl.String, "target": pl.String, "features": pl.String,
        "auroc_mean": pl.Float64, "auroc_sd": pl.Float64, "balanced_accuracy": pl.Float64,
        "balanced_accuracy_sd": pl.Float64, "mcc": pl.Float64, "mcc_sd": pl.Float64,
        "n_folds_used": pl.Int64, "n_folds_skipped": pl.Int64, "n_pos": pl.Int64, "n_neg": pl.Int64,
        **{f"vs_{name}_{k}": pl.Float64 for name in ("kmer3", "shuffled") for k in ("diff", "low", "high", "p")},
    }
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


#: family-wise level of `beats_controls`: over one target's embedding rows (models x layers)
CONTROL_ALPHA = 0.05


def beats_controls(rows: list[dict], alpha: float = CONTROL_ALPHA) -> dict[str, dict]:
    """Per target of `probe_table` rows (as dicts): does some embedding row beat each control?

    {target: {"kmer3": bool | None, "shuffled": bool | None, "n_rows": m}}: True when some row's one-sided
    p (vs_<control>_p) is <= alpha / (2 m), i.e. its two-sided 1 - alpha / m interval lies above 0, Bonferroni
    over the target's m embedding rows with a p (models x layers: the best layer is chosen after seeing them,
    so its p alone would claim too often); None when no row has one (fewer than 2 folds compared). A claim
    "the model represents the target beyond the control" then holds at family-wise level alpha per target and
    control (rates: tests/test_probe.py).
    """
    out: dict[str, dict] = {}
    for r in rows:
        if r.get("features") != "embedding":
            continue
        out.setdefault(str(r["target"]), {"kmer3": [], "shuffled": []})
        for control in ("kmer3", "shuffled"):
            p = r.get(f"vs_{control}_p")
            if p is not None and np.isfinite(p):
                out[str(r["target"])][control].append(float(p))
    claims = {}
    for target, ps in out.items():
        claims[target] = {c: (bool(min(v) <= alpha / (2 * len(v))) if v else None) for c, v in ps.items()}
        claims[target]["n_rows"] = max(len(v) for v in ps.values())
    return claims

