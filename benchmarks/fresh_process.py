"""Shared by the *_genotype_memory.py benchmarks: one measurement per fresh process, and the 4x / 1x ratios.

A script's child mode (`script --child <path> <mode>`) prints one JSON line with at least `peak_rss_mb` and
`seconds`; `run_child` runs it and reads that line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def run_child(script: str | Path, path: Path, mode: str) -> dict:
    """The last stdout line of `script --child path mode`, run by this interpreter, as a dict."""
    out = subprocess.run([sys.executable, str(script), "--child", str(path), mode], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_runs(runs: dict[tuple[str, int], dict], small: int, ratio_modes: tuple[str, ...]) -> None:
    """One line per (mode, size) run (peak RSS, seconds, `n_tested` when given), then the peak RSS ratio of the
    4x size to the 1x one for each of `ratio_modes`."""
    for (mode, v), r in runs.items():
        tested = f", {r['n_tested']} variants tested" if "n_tested" in r else ""
        print(f"{mode:>6} V = {v:>6}: peak RSS {r['peak_rss_mb']:.0f} MB, {r['seconds']:.1f} s{tested}")
    for mode in ratio_modes:
        ratio = runs[(mode, 4 * small)]["peak_rss_mb"] / runs[(mode, small)]["peak_rss_mb"]
        print(f"{mode}: peak RSS ratio (4x variants / 1x) {ratio:.3f}")


def measure_sizes(script: str | Path, write: Callable[[Path, int, int], None], n: int, n_variants: int,
                  about_x: str) -> None:
    """Write genotypes.h5ad files of n samples and n_variants and 4 x n_variants variants (`write(path, n, v)`), run
    `script`'s child in modes open, lazy and loaded on each, and print the runs and the lazy and loaded ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = {v: Path(tmp) / f"genotypes.{v}.h5ad" for v in (n_variants, 4 * n_variants)}
        for v, path in paths.items():
            write(path, n, v)
        runs = {(mode, v): run_child(script, path, mode) for v, path in paths.items()
                for mode in ("open", "lazy", "loaded")}
    print(f"n = {n} samples; dosages {n * n_variants * 4 / 2**20:.0f} MB vs {n * 4 * n_variants * 4 / 2**20:.0f} MB "
          f"(4x) float32, {about_x}")
    print_runs(runs, n_variants, ("lazy", "loaded"))
