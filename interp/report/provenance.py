"""What a reviewer needs to reproduce a run: config, input checksums, versions, seeds, models."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

import yaml

#: every dependency pinned in pyproject.toml (the evo2 extra included), and the unpinned ones that change numbers:
#: h5py (the h5ad files), tokenizers and huggingface-hub (what a hub model is fed and which snapshot it loads)
PACKAGES = (
    "interp", "torch", "pytorch-lightning", "snakemake", "snakemake-executor-plugin-slurm", "anndata", "scanpy",
    "umap-learn", "igraph", "polars", "pyarrow", "numpy", "scipy", "pandas", "biopython", "pysam", "msprime",
    "tskit", "stdpopsim", "pyjaspar", "logomaker", "zarr", "h5py", "safetensors", "transformers", "tokenizers",
    "huggingface-hub", "evo2", "statsmodels", "fairlearn", "scikit-learn", "jinja2", "matplotlib", "pyyaml",
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, or of every file under a folder (sorted by relative path)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


#: files at least this large have their digest cached (`sha256_cached`)
CACHE_DIGEST_BYTES = 64 << 20


def sha256_cached(path: str | Path, cache_dir: str | Path | None) -> str:
    """`sha256_file` of a file, kept in `cache_dir` for files of CACHE_DIGEST_BYTES or more, keyed on the
    file's real path, size and modification time: a whole-genome FASTA or a chromosome VCF is read once per
    version of the file, not by every report. Folders, small files and cache_dir None: computed each time."""
    path = Path(path)
    if cache_dir is None or not path.is_file() or path.stat().st_size < CACHE_DIGEST_BYTES:
        return sha256_file(path)
    real = path.resolve()
    stat = real.stat()
    key = {"path": str(real), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    entry = Path(cache_dir) / f"{hashlib.sha256(str(real).encode()).hexdigest()[:32]}.json"
    try:
        cached = json.loads(entry.read_text())
        if {k: cached.get(k) for k in key} == key:
            return cached["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_file(real)
    try:
        from interp.io import write_text_atomic

        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(entry, json.dumps({**key, "sha256": digest}) + "\n")
    except OSError:  # a read-only cache only costs the next report another read
        pass
    return digest


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(repo: str | Path = ".") -> str | None:
    """HEAD of the repository holding the workflow, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


#: folders whose untracked (not ignored) files are code that may have run: a module or rule file never committed
#: is not in `git_commit`. Not configs/ or models/: the resolved config and every card used are in the report
#: whole (with sha256), and a user's own config or card there is normally untracked
CODE_FOLDERS = ("interp", "workflow")


def git_dirty(repo: str | Path = ".") -> bool | None:
    """Whether the checkout holding the workflow has uncommitted changes to tracked files, or untracked files
    (not ignored) under `CODE_FOLDERS`: then `git_commit` alone does not say which code ran. None outside a git
    checkout. Other untracked files (results, scratch, a user's config or model card) do not count."""
    try:
        runs = [subprocess.run(["git", "-C", str(repo), "status", "--porcelain", *args],
                               capture_output=True, text=True, timeout=30, check=False)
                for args in (["--untracked-files=no"], ["--untracked-files=all", "--", *CODE_FOLDERS])]
    except (OSError, subprocess.SubprocessError):
        return None
    if any(out.returncode != 0 for out in runs):
        return None
    return any(out.stdout.strip() for out in runs)


def local_weights_sha256(hf_id: str | None, cache_dir: str | Path | None) -> str | None:
    """sha256 of a card's local weights: an hf_id naming a local folder (every file under it, by relative path;
    not `.git/` or `.cache/`) or a local file (an evo2 .pt), each large file's digest cached as by
    `sha256_cached`. None for a hub id (its snapshot commit identifies it) or a hub-cache snapshot folder."""
    from interp.embed.hub import snapshot_commit

    path = Path(str(hf_id or "")).expanduser()
    if not hf_id or not path.exists() or (path.is_dir() and snapshot_commit(path)):
        return None
    if path.is_file():
        return sha256_cached(path, cache_dir)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path)
        if rel.parts[0] in (".git", ".cache"):
            continue
        h.update(f"{rel}\0{sha256_cached(f, cache_dir)}\n".encode())
    return h.hexdigest()


def model_entries(cards: list[str], checkpoints: list[str], cache_dir: str | Path | None = None) -> list[dict]:
    """[{name, card, card_sha256, checkpoint_sha256, weights_sha256}] for every model of the run;
    weights_sha256: `local_weights_sha256` of the card's hf_id (a model loaded from a local folder or file has
    no snapshot commit, and its files may be replaced in place), else None."""
    by_name = {Path(c).stem: c for c in checkpoints}
    entries = []
    for card_path in cards:
        with open(card_path) as fh:
            card = yaml.safe_load(fh)
        ckpt = by_name.get(card["name"])
        entries.append({
            "name": card["name"],
            "card": card,
            "card_sha256": sha256_file(card_path),
            "checkpoint_sha256": sha256_file(ckpt) if ckpt else None,
            "checkpoint": ckpt or card.get("hf_id"),
            "weights_sha256": None if ckpt else local_weights_sha256(card.get("hf_id"), cache_dir),
        })
    return entries


def rule_timings(benchmark_dir: str | Path) -> list[dict]:
    """[{rule, seconds}] from Snakemake benchmark TSVs (one per rule or per rule+wildcards)."""
    root = Path(benchmark_dir)
    if not root.exists():
        return []
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        with open(path) as fh:
            records = list(csv.DictReader(fh, delimiter="\t"))
        if not records:
            continue
        name = str(path.relative_to(root).with_suffix(""))
        rows.append({"rule": name, "seconds": round(float(records[-1]["s"]), 2)})
    return rows
