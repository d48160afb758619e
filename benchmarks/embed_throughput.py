"""Embedding throughput: our HF embedder vs a plain per-sequence loop vs a naive padded batch loop.

One randomly initialised NT-v2-50M-sized ESM (12 layers, width 512, 16 heads, FFN 2048, rotary,
6-mer vocabulary of 4,107 tokens), loaded through the same card -> from_pretrained(local_dir) path
as a user's model, and two sets of mixed-length sequences cut from the demo genome:
  A: 1,024 sequences of 100-200 bases;  B: 192 sequences of 200-1,200 bases.
Printed per set and method: tokens/s (model tokens incl. CLS/EOS, padding not counted), the ratio to
the plain loop, and the share of this machine's fp32 matmul peak (measured here, same threads) reached
at 2 x non-embedding parameters FLOPs per token. Outputs (last layer, per token) must agree with the
plain loop within 1e-4 (asserted). Then peak memory (RSS) of embed_windows with a per-token store at
two input sizes 4x apart, each in a fresh process (default 1,024 and 4,096 windows of 200 bases, 70 and
280 MiB of activations: both past the store's first zarr chunks of 16,384 tokens, 32 MiB each at width
512; at 256 vs 1,024 windows the peak still grew by about the activations written).

Run: `python benchmarks/embed_throughput.py [--quick] [--device cuda] [--dtype bfloat16]`.
Speed figures are measured, never asserted; on a shared machine other load lowers them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interp.embed.registry import check_card, make_embedder  # noqa: E402

DEMO = ROOT / "resources/demo/hg19_chr17_1-40000.fa"
LAYER = "hidden_states.12"


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM, MiB). Not ru_maxrss: Linux carries a process's ru_maxrss across exec, so
    a child started by subprocess would report the parent's peak whenever it is larger than its own."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def genome() -> str:
    from Bio import SeqIO

    return str(next(SeqIO.parse(str(DEMO), "fasta")).seq).upper()


def build_model(path: Path, layers: int = 12) -> Path:
    """Random NT-v2-50M-sized ESM with NT's 6-mer vocabulary, saved as a local model folder."""
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    vocab = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
    vocab += ["".join(p) for p in itertools.product("ATCG", repeat=6)] + list("ATCGN")
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab))
    EsmTokenizer(str(path / "vocab.txt"), unk_token="<unk>", cls_token="<cls>", pad_token="<pad>",
                 mask_token="<mask>", eos_token="<eos>").save_pretrained(path)
    torch.manual_seed(0)
    cfg = EsmConfig(vocab_size=len(vocab), hidden_size=512, num_hidden_layers=layers, num_attention_heads=16,
                    intermediate_size=2048, max_position_embeddings=2050, position_embedding_type="rotary",
                    pad_token_id=1, mask_token_id=2, token_dropout=False, emb_layer_norm_before=False)
    EsmModel(cfg).save_pretrained(path)  # with its (unused) pooler, as AutoModel builds it
    return path


def card(path: Path) -> dict:
    return check_card({"name": "nt-v2-50m-random", "family": "hf", "model_family": "nucleotide-transformer",
                       "hf_id": str(path), "license": "test", "tokenizer": "kmer", "context": 12000,
                       "hidden_size": 512, "layers": [LAYER]}, "benchmark card")


def sequence_set(dna: str, n: int, lo: int, hi: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(lo, hi + 1, n)
    starts = rng.integers(0, len(dna) - hi, n)
    return [dna[s:s + n_] for s, n_ in zip(starts, lengths, strict=True)]


def matmul_peak(seconds: float = 1.5) -> tuple[float, float]:
    """Best fp32 GFLOP/s of torch.mm over shapes like the model's, with the current threads.

    Returns (per wall-clock second, per CPU second of this process / threads): the second is far less
    sensitive to other processes on a shared machine.
    """
    best_wall = best_cpu = 0.0
    threads = torch.get_num_threads()
    for m, k, n in [(2048, 512, 2048), (2048, 2048, 512), (2048, 512, 1536)]:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        reps, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds / 3:
            torch.mm(a, b)
            reps += 1
        flops = 2 * m * k * n * reps / 1e9
        best_wall = max(best_wall, flops / (time.perf_counter() - t0))
        best_cpu = max(best_cpu, flops / ((time.process_time() - c0) / threads))
    return best_wall, best_cpu


def plain_loop(tok, model, seqs: list[str], device: str) -> list[np.ndarray]:
    """One sequence per forward pass; last layer per token without CLS/EOS."""
    out = []
    with torch.inference_mode():
        for s in seqs:
            enc = tok([s], return_tensors="pt").to(device)
            hidden = model(**enc, output_hidden_states=True).hidden_states[-1][0]
            out.append(hidden[1:-1].float().cpu().numpy())
    return out


def padded_loop(tok, model, seqs: list[str], device: str, batch: int = 8) -> list[np.ndarray]:
    """Batches of 8 in input order, padded to the longest (the embedder before this issue)."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(seqs), batch):
            enc = tok(seqs[i:i + batch], return_tensors="pt", padding=True).to(device)
            hidden = model(**enc, output_hidden_states=True).hidden_states[-1].float().cpu()
            for row, n in enumerate(enc["attention_mask"].sum(1).tolist()):
                out.append(hidden[row, 1:n - 1].numpy())
    return out


def ours(emb, seqs: list[str]) -> list[np.ndarray]:
    acts = emb.embed(seqs, [LAYER])[LAYER]
    return [acts.values[acts.offsets[i]:acts.offsets[i + 1]] for i in range(len(seqs))]


def memory_child(model_dir: str, n_windows: int) -> None:
    """Peak RSS (MiB) of embed_windows over n_windows windows of 200 bases, with a per-token store."""
    import polars as pl

    from interp.embed.run import embed_windows
    from interp.embed.store import TokenStore

    dna = genome()
    emb = make_embedder(card(Path(model_dir)), None)
    starts = (np.arange(n_windows) * 97) % (len(dna) - 400)
    windows = pl.DataFrame({"window_index": np.arange(n_windows), "window_id": [f"w{i}" for i in range(n_windows)],
                            "contig": ["chr17"] * n_windows, "start": starts, "end": starts + 200,
                            "sequence": [dna[s:s + 200] for s in starts]})
    pos = np.arange(len(dna))
    bases = pl.DataFrame({"contig": ["chr17"] * len(dna), "pos": pos, "exon": pos % 7 == 0,
                          "intron": pos % 5 == 0, "repeat": pos % 3 == 0, "cpg": pos % 11 == 0})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        embed_windows(emb, windows, bases, [LAYER], [LAYER], 64, {LAYER: Path(tmp) / "p.h5ad"},
                      {LAYER: Path(tmp) / "t.zarr"})
        seconds = time.perf_counter() - t0
        store = TokenStore(Path(tmp) / "t.zarr")
        store_mib = store.n_tokens * store.d * 4 / 2**20  # what holding the activations whole would add
    print(json.dumps({"n_windows": n_windows, "peak_rss_mib": peak_rss_mib(), "store_mib": store_mib,
                      "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the sequences (smoke run)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--memory-windows", type=int, nargs=2, default=[1024, 4096])
    parser.add_argument("--skip-memory", action="store_true", help="leave out the peak-memory part")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return
    from transformers import AutoModel, AutoTokenizer

    dna = genome()
    scale = 4 if args.quick else 1
    sets = {f"A: {1024 // scale:,} seqs of 100-200 bases": sequence_set(dna, 1024 // scale, 100, 200, 1),
            f"B: {192 // scale:,} seqs of 200-1,200 bases": sequence_set(dna, 192 // scale, 200, 1200, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp) / "nt50m")
        tok = AutoTokenizer.from_pretrained(model_dir)
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
        extra = {"attn_implementation": "sdpa"} if args.device != "cpu" else {}
        model = AutoModel.from_pretrained(model_dir, dtype=dtype, **extra).to(args.device).eval()
        emb = make_embedder(card(model_dir), None, device=args.device, dtype=args.dtype)
        non_embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
        peak, peak_cpu = matmul_peak() if args.device == "cpu" else (float("nan"), float("nan"))
        print(f"threads {args.threads}, device {args.device}, dtype {args.dtype}; model: "
              f"{non_embedding / 1e6:.1f} M non-embedding parameters; fp32 matmul peak {peak:.0f} GFLOP/s "
              f"(per CPU-second x threads: {peak_cpu:.0f}); load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
        ours(emb, sets[next(iter(sets))][:16])  # warm-up (allocator, tokenizer tries)
        print(f"{'set':<34}{'method':<22}{'tokens/s':>10}{'x plain':>9}{'GFLOP/s':>9}{'% peak':>8}"
              f"{'% peak (CPU time)':>19}")
        for label, seqs in sets.items():
            n_tokens = sum(len(x) for x in tok(seqs)["input_ids"])
            results = {}
            methods = {"plain per-sequence": lambda s: plain_loop(tok, model, s, args.device),
                       "padded batches of 8": lambda s: padded_loop(tok, model, s, args.device),
                       "ours": lambda s: ours(emb, s)}
            for name, fn in methods.items():
                t0, c0 = time.perf_counter(), time.process_time()
                out = fn(seqs)
                results[name] = (time.perf_counter() - t0, (time.process_time() - c0) / args.threads, out)
            plain_s = results["plain per-sequence"][0]
            for name, (seconds, cpu_seconds, _) in results.items():
                rate = n_tokens / seconds
                gflops = 2 * non_embedding * rate / 1e9
                gflops_cpu = 2 * non_embedding * n_tokens / cpu_seconds / 1e9
                print(f"{label:<34}{name:<22}{rate:>10.0f}{plain_s / seconds:>9.2f}{gflops:>9.0f}"
                      f"{100 * gflops / peak:>7.0f}%{100 * gflops_cpu / peak_cpu:>18.0f}%")
            if args.dtype == "float32":
                ref = results["plain per-sequence"][2]
                for name in ("padded batches of 8", "ours"):
                    diff = max(float(np.abs(a - b).max()) for a, b in zip(results[name][2], ref, strict=True))
                    assert diff <= 1e-4, f"{name} differs from the plain loop by {diff}"
                print(f"{'':<34}outputs agree with the plain loop within 1e-4 (fp32)")
        if args.device == "cpu" and not args.skip_memory:
            rows = []
            for n in args.memory_windows:
                run = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--memory-child",
                                      str(model_dir), str(n)], capture_output=True, text=True, check=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
                rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
            for row in rows:
                print(f"embed_windows + token store, {row['n_windows']:>5} windows of 200 bases: peak RSS "
                      f"{row['peak_rss_mib']:.0f} MiB ({row['seconds']:.1f} s; activations in the store "
                      f"{row['store_mib']:.1f} MiB)")
            print(f"peak memory ratio at 4x the input: {rows[1]['peak_rss_mib'] / rows[0]['peak_rss_mib']:.3f}")


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # rows appear as they are measured
    main()
