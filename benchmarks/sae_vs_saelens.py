"""Our TopK SAE vs SAELens's TopK SAE on the same synthetic activations with known features.

Needs `sae-lens` (and its dependencies), which is NOT a dependency of this project: install it in a
separate virtual environment, never the project's, reusing the project's CPU torch, e.g.
    python -m venv /tmp/saelens && echo "$PWD/.venv/lib/python3.11/site-packages" \\
        > /tmp/saelens/lib/python3.11/site-packages/project.pth
    /tmp/saelens/bin/pip install sae-lens==6.54.12 torch==2.13.0
    PYTHONPATH=$PWD /tmp/saelens/bin/python benchmarks/sae_vs_saelens.py [n_samples]

Data: SAELens's `FeatureDictionary` (512 true features in d_in 128) and `ActivationGenerator`
(firing probability 0.02, magnitude 1). The activations are drawn once and written to a token store
(n_samples / 0.7 tokens, so that after the blocks held out for validation/test about n_samples remain for
training); both SAEs train on exactly the same cached training tokens, one pass each: ours reads them from
the store (its own shuffle), SAELens gets them in a seeded random order through its own `train_toy_sae`
(its synthetic iterator replaced by one over the cached tokens). Both: 512 latents, k 16, batch 512, lr 3e-4
for SAELens (its synthetic default) and our default schedule for ours, CPU, 2 threads. Both are evaluated
with the same code on 100,000 fresh samples: MCC (SAELens's `mean_correlation_coefficient` between decoder
rows and true features), dead latents and their fraction (never firing on them), explained variance
(1 - FVU), L0, and training tokens per second. Prints both and the ratios; nothing is asserted.

Throughput, three ways for ours, each against SAELens's training loop on its cached tokens: `tokens_per_s`,
ours's training loop (Lightning's, from the first batch in hand to the end of the last: the training tokens
then in memory, as SAELens's are); `tokens_per_s_fit`, Lightning's whole fit (its setup too; the training
tokens, which fit the memory budget here, were read into memory in the statistics pass, so the fit reads
nothing); `tokens_per_s_whole_call`, the whole `train_sae` call (adding that statistics pass, which reads the
store once with two reader threads and keeps the validation and test tokens too, since all fit the budget, and
the geometric median before training, and the held-out evaluation of the test and validation tokens after, the
SAE run on 209,000 tokens). Each pair of trainings runs
`repeats` times (second argument, default 3), alternating, from the same seeds: the median time is reported.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

D_IN, N_TRUE, N_LATENTS, K, BATCH, P_FIRE = 128, 512, 512, 16, 512, 0.02
PER_WINDOW = 500


def evaluate(encode, decode, decoder_rows: torch.Tensor, true_features: torch.Tensor, x: torch.Tensor) -> dict:
    from sae_lens.synthetic.evals import mean_correlation_coefficient

    with torch.no_grad():
        codes = encode(x)
        recon = decode(codes)
    fvu = float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    return {"mcc": mean_correlation_coefficient(decoder_rows.detach(), true_features.detach()),
            "dead_latents": int(((codes > 0).sum(0) == 0).sum()),
            "dead_fraction": float(((codes > 0).sum(0) == 0).float().mean()), "explained_variance": 1 - fvu, "fvu": fvu,
            "l0": float((codes > 0).sum(1).float().mean())}


class CachedBatches:
    """Batches of `batch_size` rows of x [n, d] in a seeded random order (in place of SAELens's
    `SyntheticActivationIterator`, which draws fresh samples for every batch)."""

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int = 0) -> None:
        self.x, self.batch_size, self.at = x, batch_size, 0
        self.order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))

    def __iter__(self) -> CachedBatches:
        return self

    def __next__(self) -> torch.Tensor:
        if self.at >= self.order.numel():
            raise StopIteration
        rows = self.order[self.at:self.at + self.batch_size]
        self.at += rows.numel()
        return self.x[rows]


def main() -> None:
    try:
        from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
        from sae_lens.synthetic import ActivationGenerator, FeatureDictionary
        from sae_lens.synthetic import training as lens_training
    except ImportError as err:
        raise SystemExit(f"sae_vs_saelens.py needs sae-lens ({err}); it is not a project dependency: install it "
                         "in a separate venv as the docstring of benchmarks/sae_vs_saelens.py says") from None
    from unittest import mock

    import pytorch_lightning as pl_lightning

    from interp.embed.store import TokenStoreWriter
    from interp.sae import SAEConfig, train_sae
    from interp.sae.splits import TRAIN, block_split
    from interp.sae.train import iter_split_chunks, open_store

    class FitClock(pl_lightning.Callback):
        """Wall time of Lightning's fit (`seconds`: from its setup, so with the first batch's fetch: a read of the
        training tokens from the store where they were not kept from the statistics pass) and of its training loop (`loop_seconds`: from on_train_start,
        which Lightning calls with the first batch already fetched, the tokens then in memory as SAELens's are),
        both to the end of the last batch."""

        def setup(self, trainer, module, stage) -> None:
            self.start = time.perf_counter()

        def on_train_start(self, trainer, module) -> None:
            self.loop_start = time.perf_counter()

        def on_train_end(self, trainer, module) -> None:
            end = time.perf_counter()
            self.seconds, self.loop_seconds = end - self.start, end - self.loop_start

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.set_num_threads(2)
    torch.manual_seed(0)
    features = FeatureDictionary(N_TRUE, D_IN, seed=0)
    generator = ActivationGenerator(N_TRUE, firing_probabilities=P_FIRE)
    with torch.no_grad():
        eval_x = features(generator(100_000))

    # the activations, drawn once into a token store; 30% extra for our validation/test blocks
    cfg = SAEConfig(n_features=N_LATENTS, k=K, batch_size=BATCH, epochs=1, split_block_bases=10 * PER_WINDOW,
                    dead_after_tokens=BATCH * 1000)  # SAELens's dead window: 1000 batches
    total = int(n / (1 - cfg.validation_fraction - cfg.test_fraction))
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "synthetic.zarr"
        writer = TokenStoreWriter(store, D_IN, [], model="synthetic", layer="synthetic", chunk_rows=16384)
        with torch.no_grad():
            for start in range(0, total, 65536):
                m = min(65536, total - start)
                writer.append(features(generator(m)).numpy(), np.arange(start, start + m) // PER_WINDOW,
                              np.arange(start, start + m) % PER_WINDOW, {})
        writer.close()
        n_windows = -(-total // PER_WINDOW)
        windows = pl.DataFrame({"window_index": np.arange(n_windows), "contig": ["s"] * n_windows,
                                "start": np.arange(n_windows) * PER_WINDOW,
                                "end": np.arange(n_windows) * PER_WINDOW + PER_WINDOW})
        # the training tokens ours will see (same split as train_sae), for SAELens
        split = block_split(windows, cfg.split_block_bases, cfg.validation_fraction, cfg.test_fraction, cfg.seed)
        train_x = torch.from_numpy(np.concatenate(list(iter_split_chunks(open_store(store), split, TRAIN, 16384))))
        n_train = train_x.shape[0]

        t_lens, t_ours, t_fit, t_loop = [], [], [], []
        for _ in range(repeats):
            # SAELens: its own synthetic training loop, on the cached training tokens (one pass)
            torch.manual_seed(0)
            sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=N_LATENTS, k=K, device="cpu"))
            t0 = time.perf_counter()
            with mock.patch.object(lens_training, "SyntheticActivationIterator",
                                   lambda batch_size, **_: CachedBatches(train_x, batch_size)):
                lens_training.train_toy_sae(sae, features, generator, training_samples=n_train,
                                            batch_size=BATCH, lr=3e-4)
            t_lens.append(time.perf_counter() - t0)

            # ours: from the store
            clock = FitClock()
            t0 = time.perf_counter()
            model, metrics = train_sae(store, cfg, windows, threads=2, callbacks=[clock])
            t_ours.append(time.perf_counter() - t0)
            t_fit.append(clock.seconds)
            t_loop.append(clock.loop_seconds)
    assert metrics["n_train_tokens"] == n_train
    lens = evaluate(sae.encode, sae.decode, sae.W_dec, features.feature_vectors, eval_x)
    lens["tokens_per_s"] = lens["tokens_per_s_fit"] = lens["tokens_per_s_whole_call"] = n_train / statistics.median(t_lens)
    ours = evaluate(model.encode, model.decode, model.W_dec, features.feature_vectors, eval_x)
    ours["tokens_per_s"] = n_train / statistics.median(t_loop)
    ours["tokens_per_s_fit"] = n_train / statistics.median(t_fit)
    ours["tokens_per_s_whole_call"] = n_train / statistics.median(t_ours)

    print(f"synthetic: {N_TRUE} true features in d_in {D_IN}, firing probability {P_FIRE}; "
          f"{N_LATENTS} latents, k {K}, batch {BATCH}, CPU, 2 threads; both trained on the same "
          f"{n_train} cached tokens (one pass); throughput: median of {repeats} alternating runs")
    print(f"{'metric':<24}{'ours':>12}{'SAELens':>12}{'ours/SAELens':>14}")
    for key in ("mcc", "dead_latents", "dead_fraction", "explained_variance", "fvu", "l0", "tokens_per_s",
                "tokens_per_s_fit", "tokens_per_s_whole_call"):
        a, b = ours[key], lens[key]
        ratio = a / b if b else float("nan")
        print(f"{key:<24}{a:>12.4g}{b:>12.4g}{ratio:>14.3f}")
    print("(tokens_per_s: the training loops on tokens in memory; ours: _fit adds Lightning's setup, _whole_call "
          "the statistics pass (the one read of the store), the geometric median and the held-out evaluation "
          f"too; SAELens's is its loop in all three. Seconds per run, SAELens: {', '.join(f'{t:.2f}' for t in t_lens)}"
          f"; ours, loop: {', '.join(f'{t:.2f}' for t in t_loop)}; fit: {', '.join(f'{t:.2f}' for t in t_fit)}; "
          f"whole call: {', '.join(f'{t:.2f}' for t in t_ours)})")


if __name__ == "__main__":
    main()
