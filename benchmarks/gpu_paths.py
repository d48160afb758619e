"""The GPU paths of the built-in model, checked and timed against the CPU in one process: masked-LM pretraining
(`interp.lm.pretrain.pretrain_tiny_dnalm`, accelerator "gpu"), embedding (the `embed` stage with
`embed.device: cuda`) and the main SAE (the `sae` stage with accelerator "gpu", as the rule passes when
`embed.device` is cuda).

Run: `python benchmarks/gpu_paths.py <out_dir> [--quick]`, in the repository root, after `make demo` has written
`results/demo/windows/` (the only pipeline output it reads). Each step runs on the CPU (one thread, as the stages
do) and, where CUDA is available, on the GPU, twice there (is a GPU rerun bitwise identical?). Embedding and the
SAE start from the same inputs on both devices (the CPU-pretrained checkpoint, the CPU-embedded tokens), so a
difference is the device's alone. Prints and writes `<out_dir>/gpu_paths.json`: seconds per step and device,
the GPU/CPU time ratio, the held-out cross-entropy of each pretraining, the largest pooled-activation difference
between devices (absolute, and relative to the activations' SD), the SAE metrics side by side, and any error a
step raised (the other steps still run). Nothing is asserted. `--quick` (20 LM steps, 1 SAE epoch) checks that
the script runs.

The pretraining here splits the demo reference at 80% (train / held-out), not through `interp.genome` (which
needs pysam): the numbers are a device comparison, not the pipeline's LM metrics.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FASTA = ROOT / "resources" / "demo" / "hg19_chr17_1-40000.fa"
WINDOWS = ROOT / "results" / "demo" / "windows"
CARD = ROOT / "models" / "tiny-dnalm.yaml"
LAYERS = ["embed", "block1", "block2", "block3", "block4", "block5"]


def read_fasta_sequence(path: Path) -> str:
    """The first record's sequence, as written (soft-masking kept; pretraining upper-cases it)."""
    lines = path.read_text().splitlines()
    seq = []
    for line in lines[1:]:
        if line.startswith(">"):
            break
        seq.append(line.strip())
    return "".join(seq)


def timed(results: dict, key: str, fn, *args, **kwargs):
    """Run fn, keeping its seconds (or its error) under results[key]; returns its value or None."""
    t0 = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:  # a device check reports every failure and goes on
        results[key] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        print(f"[{key}] FAILED: {type(exc).__name__}: {exc}", flush=True)
        return None
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    results[key] = {"seconds": round(time.perf_counter() - t0, 2)}
    print(f"[{key}] {results[key]['seconds']} s", flush=True)
    return value


def pretrain(out: Path, accelerator: str, quick: bool) -> dict:
    from interp.embed.registry import load_card
    from interp.lm.pretrain import pretrain_tiny_dnalm

    seq = read_fasta_sequence(FASTA)
    cut = int(len(seq) * 0.8)
    overrides = {"max_steps": 20} if quick else {}
    return pretrain_tiny_dnalm([seq[:cut]], [seq[cut:]], load_card(CARD), overrides, 7,
                               out / "lm.safetensors", threads=1, accelerator=accelerator)


def embed(run_dir: Path, checkpoint: Path, device: str) -> None:
    from interp import stages

    stages.embed(stages.Job(
        input={"bases": str(WINDOWS / "bases.parquet"), "card": str(CARD), "checkpoint": str(checkpoint),
               "windows": str(WINDOWS / "windows.parquet")},
        output={"pooled_dir": str(run_dir / "emb"), "stats": str(run_dir / "emb.stats.json"),
                "tokens_dir": str(run_dir / "tokens")},
        params={"batch_size": 64, "device": device, "dtype": "auto", "hf_cache": None, "layers": LAYERS,
                "token_budget": None, "token_layers": ["block2"]}, threads=1))


def sae(run_dir: Path, tokens_dir: Path, checkpoint: Path, accelerator: str, quick: bool) -> dict:
    from interp import stages
    from interp.config import load_workflow_config

    # the demo's settings as the sae rule passes them (its job keys added, the sweep/atlas/steer sections not)
    section = load_workflow_config([ROOT / "configs" / "demo.yaml"])["sae"]
    params = {k: v for k, v in section.items() if k not in ("atlas", "steer", "sweep")}
    params.update({"accelerator": accelerator, "log_dir": None, "model": "tiny-dnalm", "seed": 7,
                   "epochs": 1 if quick else section["epochs"],
                   # no JASPAR motifs: labelling is CPU work, and pyjaspar's database (57 MB) would not travel
                   # to a device machine; GC-rich and annotation concepts remain
                   "concepts": {**section["concepts"], "motifs": []}})
    out = run_dir / "sae"
    stages.sae(stages.Job(
        input={"bases": str(WINDOWS / "bases.parquet"), "checkpoint": str(checkpoint),
               "tokens_dir": str(tokens_dir), "windows": str(WINDOWS / "windows.parquet")},
        output={"features": str(out / "features.parquet"), "metrics": str(out / "metrics.json"),
                "units": str(out / "units.parquet"), "weights": str(out / "weights.safetensors")},
        params=params, threads=1))
    return json.loads((out / "metrics.json").read_text())


def pooled(run_dir: Path) -> dict[str, np.ndarray]:
    import anndata as ad

    return {layer: np.asarray(ad.read_h5ad(run_dir / "emb" / f"{layer}.h5ad").X, dtype=np.float64)
            for layer in LAYERS}


def same_bits(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    import anndata as ad
    import pandas as pd

    if int(pd.__version__.split(".")[0]) >= 3:  # pandas 3 stores text as string arrays; the pins have pandas 2
        ad.settings.allow_write_nullable_strings = True
    cuda = torch.cuda.is_available()
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    res: dict = {"torch": torch.__version__, "cuda": cuda,
                 "gpu": torch.cuda.get_device_name(0) if cuda else None, "quick": args.quick, "steps": {}}
    steps = res["steps"]

    lm = {}
    for dev in devices + (["cuda"] if cuda else []):  # the GPU twice: is a rerun identical?
        tag = f"pretrain_{dev}" + ("_again" if f"pretrain_{dev}" in steps else "")
        (out / tag).mkdir(exist_ok=True)
        m = timed(steps, tag, pretrain, out / tag, "gpu" if dev == "cuda" else "cpu", args.quick)
        if m is not None:
            lm[tag] = m
            steps[tag].update({k: m[k] for k in ("heldout_ce", "baseline_order3_ce", "steps", "train_seconds")})
    if "pretrain_cuda" in lm and "pretrain_cuda_again" in lm:
        res["pretrain_gpu_rerun_identical"] = same_bits(out / "pretrain_cuda" / "lm.safetensors",
                                                        out / "pretrain_cuda_again" / "lm.safetensors")

    checkpoint = out / "pretrain_cpu" / "lm.safetensors"
    if checkpoint.exists():
        for dev in devices + (["cuda"] if cuda else []):
            tag = f"embed_{dev}" + ("_again" if f"embed_{dev}" in steps else "")
            timed(steps, tag, embed, out / tag, checkpoint, dev)
        acts = {tag: pooled(out / tag) for tag in steps if tag.startswith("embed_") and "error" not in steps[tag]}
        if "embed_cpu" in acts and "embed_cuda" in acts:
            res["embed_max_abs_difference"] = {
                layer: float(np.abs(acts["embed_cpu"][layer] - acts["embed_cuda"][layer]).max()) for layer in LAYERS}
            res["embed_max_difference_over_sd"] = {
                layer: float(np.abs(acts["embed_cpu"][layer] - acts["embed_cuda"][layer]).max()
                             / acts["embed_cpu"][layer].std()) for layer in LAYERS}
        if "embed_cuda" in acts and "embed_cuda_again" in acts:
            res["embed_gpu_rerun_identical"] = all(
                np.array_equal(acts["embed_cuda"][layer], acts["embed_cuda_again"][layer]) for layer in LAYERS)

        tokens = out / "embed_cpu" / "tokens"
        if tokens.exists():
            keep = ("fvu", "l0", "dead_fraction", "loss_recovered", "steps", "n_concepts")
            for dev in devices + (["cuda"] if cuda else []):
                tag = f"sae_{dev}" + ("_again" if f"sae_{dev}" in steps else "")
                m = timed(steps, tag, sae, out / tag, tokens, checkpoint, "gpu" if dev == "cuda" else "cpu",
                          args.quick)
                if m is not None:
                    steps[tag]["metrics"] = {k: v for k, v in m.items()
                                             if isinstance(v, (int, float)) and any(s in k for s in keep)}
            if all(f"sae_{t}" in steps and "error" not in steps[f"sae_{t}"] for t in ("cuda", "cuda_again")):
                res["sae_gpu_rerun_identical"] = same_bits(out / "sae_cuda" / "sae" / "weights.safetensors",
                                                           out / "sae_cuda_again" / "sae" / "weights.safetensors")
    for step in ("pretrain", "embed", "sae"):
        c, g = steps.get(f"{step}_cpu", {}), steps.get(f"{step}_cuda", {})
        if "seconds" in c and "seconds" in g:
            res[f"{step}_gpu_over_cpu_seconds"] = round(g["seconds"] / c["seconds"], 3)
    (out / "gpu_paths.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "steps"}, indent=2, sort_keys=True))
    for tag, s in steps.items():
        print(tag, {k: v for k, v in s.items() if k != "traceback"})


if __name__ == "__main__":
    main()
