"""Our TopK SAE vs SAELens's TopK SAE on the same synthetic activations with known features.

Needs `sae-lens` (and its dependencies), which is NOT a dependency of this project: install it in a
separate virtual environment, never the project's, reusing the project's CPU torch, e.g.
    python -m venv /tmp/saelens && echo "$PWD/.venv/lib/python3.11/site-packages" \\
        > /tmp/saelens/lib/python3.11/site-packages/project.pth
    /tmp/saelens/bin/pip install sae-lens==6.54.12 torch==2.13.0
    PYTHONPATH=$PWD /tmp/saelens/bin/python benchmarks/sae_vs_saelens.py [n_samples]

Data: SAELens's `FeatureDictionary` (512 true features in d_in 128) and `ActivationGenerator`
(firing probability 0.02, magnitude 1), n_samples (default 500,000) drawn once and cached. Both SAEs:
512 latents, k 16, batch 512, one pass over the same n_samples training activations, lr 3e-4 for
SAELens (its synthetic default) and our default schedule for ours, CPU, 2 threads. Ours reads them
from a token store on disk (train split only; blocks held out for validation/test are drawn on
top so both train on n_samples). Both are evaluated with the same code on 100,000 fresh samples:
MCC (SAELens's `mean_correlation_coefficient` between decoder rows and true features), dead
latents (never firing on them), explained variance (1 - FVU) and L0. Prints both and the ratios;
nothing is asserted.
"""

from __future__ import annotations

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
            "dead_latents": int(((codes > 0).sum(0) == 0).sum()), "explained_variance": 1 - fvu, "fvu": fvu,
            "l0": float((codes > 0).sum(1).float().mean())}


def main() -> None:
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.synthetic import ActivationGenerator, FeatureDictionary
    from sae_lens.synthetic.training import train_toy_sae

    from interp.embed.store import TokenStoreWriter
    from interp.sae import SAEConfig, train_sae

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    torch.set_num_threads(2)
    torch.manual_seed(0)
    features = FeatureDictionary(N_TRUE, D_IN, seed=0)
    generator = ActivationGenerator(N_TRUE, firing_probabilities=P_FIRE)
    with torch.no_grad():
        eval_x = features(generator(100_000))

    # SAELens: its own synthetic training loop (fresh samples each batch, n in total)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=N_LATENTS, k=K, device="cpu"))
    t0 = time.perf_counter()
    train_toy_sae(sae, features, generator, training_samples=n, batch_size=BATCH, lr=3e-4)
    t_lens = time.perf_counter() - t0
    lens = evaluate(sae.encode, sae.decode, sae.W_dec, features.feature_vectors, eval_x)
    lens["samples_per_s"] = n / t_lens

    # Ours: the same generator, written to a token store; 30% extra for the validation/test blocks
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
        t0 = time.perf_counter()
        model, metrics = train_sae(store, cfg, windows, threads=2)
        t_ours = time.perf_counter() - t0
    ours = evaluate(model.encode, model.decode, model.W_dec, features.feature_vectors, eval_x)
    ours["samples_per_s"] = metrics["n_train_tokens"] / t_ours
    ours["n_train_tokens"] = metrics["n_train_tokens"]

    print(f"synthetic: {N_TRUE} true features in d_in {D_IN}, firing probability {P_FIRE}; "
          f"{N_LATENTS} latents, k {K}, batch {BATCH}, {n} training samples, CPU, 2 threads")
    print(f"{'metric':<20}{'ours':>12}{'SAELens':>12}{'ours/SAELens':>14}")
    for key in ("mcc", "dead_latents", "explained_variance", "fvu", "l0", "samples_per_s"):
        a, b = ours[key], lens[key]
        ratio = a / b if b else float("nan")
        print(f"{key:<20}{a:>12.4g}{b:>12.4g}{ratio:>14.3f}")
    print(f"(ours: {ours['n_train_tokens']} training tokens; its time includes the statistics pass, the "
          "geometric median, reading the store and the held-out evaluation)")


if __name__ == "__main__":
    main()
