"""Cost of the SAE feature atlas at user width (32,768 features).

Run: `python benchmarks/atlas_scale.py [n_features] [n_windows] [--pages P] [--out DIR]` (default 32768
features, 1000 windows of 200 tokens, d 128, TopK k 32, 5 top windows per feature, 10% dead features,
per_page 256, max_logos 64). Builds a random SAE of that width, a token store, the windows table
(with sequences), a feature table and a units table (4 concepts per feature; some labels carry HTML
metacharacters), then builds the atlas in a fresh process and prints wall time, peak RSS (VmHWM),
number and total size of files, and seconds per feature. With `--pages P` only the first P pages' features
are in the feature table (the index then lists only them), to time an older, slow build on a sample and
extrapolate per feature. `--rerun` builds twice into the same folder and prints the second build's time
(logos are rendered again: nothing is kept between builds). `--baseline` also times, in the same process, the
encoding of every feature's top windows the former way (each window once per feature listing it; timed on
256 pairs and scaled) against `window_codes` (each wanted window once) and prints the ratio. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

PER_WINDOW, D, K, TOP_N, PER_PAGE = 200, 128, 32, 5, 256


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM, MiB). Not ru_maxrss: Linux carries a process's ru_maxrss across exec, so
    a child started by subprocess would report the parent's peak whenever it is larger than its own."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def make_inputs(folder: Path, n_features: int, n_windows: int) -> None:
    """SAE weights, token store, windows / features / units parquet files under folder."""
    import torch

    from interp.embed.store import TokenStoreWriter
    from interp.sae.topk import TopKSAE
    from interp.sae.train import save_sae

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    save_sae(TopKSAE(D, n_features, K), folder / "sae.safetensors")
    n_tokens = n_windows * PER_WINDOW
    writer = TokenStoreWriter(folder / "tokens.zarr", D, [], "bench", "bench", chunk_rows=16384)
    for start in range(0, n_tokens, 16384):
        m = min(16384, n_tokens - start)
        rows = np.arange(start, start + m)
        writer.append(rng.standard_normal((m, D)).astype(np.float32), rows // PER_WINDOW, rows % PER_WINDOW, {})
    writer.close()
    ids = [f"chr1:{i * PER_WINDOW}-{(i + 1) * PER_WINDOW}" for i in range(n_windows)]
    pl.DataFrame({"window_index": np.arange(n_windows), "window_id": ids,
                  "sequence": ["".join(rng.choice(list("ACGT"), PER_WINDOW)) for _ in range(n_windows)]}
                 ).write_parquet(folder / "windows.parquet")
    dead = rng.random(n_features) < 0.1
    labelled = (rng.random(n_features) < 0.05) & ~dead
    concepts = ["exon", "CpG", "motif:<CTCF>&co", "repeat"]
    top = [",".join(rng.choice(ids, TOP_N, replace=False)) if not d else "" for d in dead]
    f1 = np.where(dead, np.nan, rng.random(n_features))
    pl.DataFrame({"feature": np.arange(n_features), "density": np.where(dead, 0.0, rng.random(n_features) * 0.01),
                  "mean_activation": np.where(dead, 0.0, rng.random(n_features)), "top_windows": top,
                  "concept": [concepts[i % 4] for i in range(n_features)],
                  "label": [concepts[i % 4] if lab else "unlabelled" for i, lab in enumerate(labelled)],
                  "f1": f1, "lift": np.where(dead, np.nan, rng.random(n_features) * 30)}
                 ).write_parquet(folder / "features.parquet")
    unit = np.repeat(np.arange(n_features), 4)
    pl.DataFrame({"kind": "sae", "unit": unit, "concept": [concepts[i % 4] for i in range(unit.size)],
                  **{c: rng.random(unit.size) for c in ("f1", "precision", "recall", "lift", "auprc", "prevalence")},
                  "passes": rng.random(unit.size) < 0.01}).write_parquet(folder / "units.parquet")


def baseline_ratio(model, store_path: Path, windows: pl.DataFrame, features: pl.DataFrame, sample: int = 256
                   ) -> dict:
    """Encoding seconds for all features' top windows: the former way (once per (feature, window) pair;
    timed on `sample` pairs and scaled to all pairs) vs `window_codes` (each wanted window once), timed."""
    import torch

    from interp.sae.atlas import window_codes, window_token_rows
    from interp.sae.train import open_store

    store = open_store(store_path)
    by_id = dict(zip(windows["window_id"].to_list(), windows["window_index"].to_list(), strict=True))
    pairs = [(f, by_id[w]) for f, ws in zip(features["feature"].to_list(), features["top_windows"].to_list(),
                                            strict=True) for w in ws.split(",") if w]
    needs: dict[int, list[int]] = {}
    for f, w in pairs:
        needs.setdefault(w, []).append(f)
    rows = window_token_rows(store, set(needs))
    t0 = time.perf_counter()
    with torch.no_grad():
        for f, w in pairs[:sample]:
            x = np.asarray(store.activations.get_orthogonal_selection((rows[w], slice(None))))
            model.encode(torch.from_numpy(x))[:, f]
    former = (time.perf_counter() - t0) * len(pairs) / min(sample, len(pairs))
    t0 = time.perf_counter()
    with torch.no_grad():
        window_codes(model, store, needs, rows)
    now = time.perf_counter() - t0
    return {"encode_pairs": len(pairs), "encode_windows": len(needs), "encode_former_s_scaled": former,
            "encode_now_s": now, "encode_ratio": former / now}


def child(folder: str, out: str, pages: int, rerun: bool, baseline: bool) -> None:
    from interp.sae.atlas import build_atlas
    from interp.sae.train import load_sae

    folder_path = Path(folder)
    features = pl.read_parquet(folder_path / "features.parquet")
    if pages:
        features = features.head(pages * PER_PAGE)
    args = (load_sae(folder_path / "sae.safetensors"), folder_path / "tokens.zarr",
            pl.read_parquet(folder_path / "windows.parquet"), features, pl.read_parquet(folder_path / "units.parquet"),
            out)
    t0 = time.perf_counter()
    info = build_atlas(*args, per_page=PER_PAGE, max_logos=64)
    seconds = time.perf_counter() - t0
    second = None
    if rerun:
        t0 = time.perf_counter()
        build_atlas(*args, per_page=PER_PAGE, max_logos=64)
        second = time.perf_counter() - t0
    ratio = baseline_ratio(args[0], args[1], args[2], features) if baseline else {}
    files = [p for p in Path(out).rglob("*") if p.is_file()]
    print(json.dumps({"seconds": seconds, "rerun_seconds": second, "n_features": features.height,
                      "peak_rss_mb": peak_rss_mib(),
                      "n_files": len(files), "mb": sum(p.stat().st_size for p in files) / 2**20,
                      "largest_file_mb": max(p.stat().st_size for p in files) / 2**20, **info, **ratio}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n_features", type=int, nargs="?", default=32768)
    ap.add_argument("n_windows", type=int, nargs="?", default=1000)
    ap.add_argument("--pages", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/out/atlas")
    ap.add_argument("--rerun", action="store_true")
    ap.add_argument("--baseline", action="store_true")
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.pages, args.rerun, args.baseline)
        return
    folder = Path(args.out) / f"inputs_{args.n_features}_{args.n_windows}"
    if not (folder / "units.parquet").exists():
        make_inputs(folder, args.n_features, args.n_windows)
    atlas = Path(args.out) / f"atlas_{args.n_features}_{args.pages}"
    cmd = [sys.executable, __file__, "--child", str(folder), str(atlas), "--pages", str(args.pages)]
    cmd += ["--rerun"] if args.rerun else []
    result = subprocess.run(cmd + (["--baseline"] if args.baseline else []), check=True, capture_output=True,
                            text=True)
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    stats["seconds_per_feature"] = stats["seconds"] / stats["n_features"]
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
