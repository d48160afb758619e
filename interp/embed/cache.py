"""Content-addressed cache of pooled embeddings: a sequence seen once by a model is never embedded again.

A cached vector is keyed by (model identity, layer, sequence hash):
  model identity  the card's fields that decide what the model computes (family, hf_id, revision, context,
                  pooling, rc_average, chunk_overlap, max_tokens, architecture, ...; not the list of layers), the sha256 of the
                  checkpoint file (built-in model) or the hub snapshot commit actually loaded (hub models),
                  and the numerics settings (device, dtype); see `model_identity`.
  layer           a layer name, or a derived per-token quantity such as an SAE's codes, whose key names the
                  SAE's weights by their sha256 (`sae_key`).
  sequence hash   sha1 of the upper-case sequence (`sequence_hash`, the `seq_hash` of the haplotypes stage).

Layout: `<root>/<model name>-<16 hex of the identity's sha256>/<layer key>/<2 hex>/<sequence hash>.npy`, one
float32 vector per file, with `identity.json` beside the layer folders. Every file is written to a temporary
sibling and renamed (`interp.io.atomic_path(unique=True)`), so jobs on several machines may fill the same
cache at once: a reader sees a whole vector or none, and two writers of one key write the same bytes.
A file that cannot be read as a one-dimensional float32 vector is treated as absent and rewritten; cached vectors
of one layer with different widths (a cache written over by hand) stop the job with the cache folder named.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interp.embed.hub import is_commit, is_local_source
from interp.io import atomic_path

log = logging.getLogger(__name__)

#: the embedding code's version in every cache key: bump it whenever a change to interp/embed changes what is
#: computed for the same model and sequence (the key cannot see code). 2: a SentencePiece word marker no longer
#: counts as a base-covering token (2026-12-04), which changed pooled vectors of Metaspace BPE tokenizers.
#: 3: a tiny card's `pooling: last` is honoured (its vectors were mean-pooled, cached under a key naming last), and
#: a layer listed twice no longer mixes other sequences' vectors into the cached rows. 4 (thirty-fourth session):
#: `max_tokens` cuts a piece from its own width (5036cdd, after 3), which moved the pieces of N-rich windows under
#: k-mer tokenizers (15 of 40 such windows, pooled vectors by up to 0.04) under unchanged keys.
CACHE_VERSION = 4
#: card fields that describe a model without changing what it computes: `layers` lists the layers a run may ask
#: for (a layer's vectors do not depend on which others are listed, so adding one to a card must not make every
#: cached vector a miss), `hidden_size` is only checked against the output, `model_family` only names the model,
#: `tokenizer` only describes it (the model's own tokenizer files decide), `trust_pickle_weights` only allows loading
_NOT_IDENTITY = {"card_path", "description", "notes", "license", "prefetch_patterns", "requires", "name",
                 "layers", "hidden_size", "model_family", "tokenizer", "trust_pickle_weights"}


def sequence_hash(seq: str) -> str:
    """sha1 hex of the upper-case sequence (equal to the haplotypes stage's `seq_hash`)."""
    return hashlib.sha1(seq.upper().encode()).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_identity(card: dict, checkpoint: str | Path | None = None, device: str = "cpu", dtype: str = "auto",
                   commit: str | None = None) -> dict | None:
    """What decides a model's activations, as a JSON-able dict; None when it cannot be pinned down.

    checkpoint: the weights file (the built-in model; hashed). commit: the hub snapshot commit actually
    loaded (`HFEmbedder.provenance["commit"]`). A hub model known only by a moving revision (a branch such
    as `main`, no commit) has no identity: its weights may change under the same name, so it is not cached.
    Neither has a local model folder that is not a hub-cache snapshot (`.../snapshots/<commit>`, whose commit
    comes as `commit`): its files may be replaced in place, and the card's `revision` does not describe them
    (a local folder is loaded as it is, whatever revision the card names).
    """
    weights: dict[str, Any] = {}
    if checkpoint is not None:
        weights["checkpoint_sha256"] = file_sha256(checkpoint)
    elif commit:
        weights["commit"] = commit
    elif is_commit(card.get("revision")) and not is_local_source(card):
        weights["commit"] = card["revision"]
    else:
        return None
    fields = {k: v for k, v in sorted(card.items()) if k not in _NOT_IDENTITY}
    return {"version": CACHE_VERSION, "model": card["name"], "card": fields, **weights,
            "device": device.split(":")[0], "dtype": dtype}


def model_key(identity: dict) -> str:
    """`<model name>-<16 hex>`: the folder of one model identity."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(identity["model"]))
    return f"{name}-{digest}"


def sae_key(sae_weights: str | Path, layer: str) -> str:
    """Cache layer key of an SAE's mean codes: `sae-<16 hex of the weights' sha256>@<layer>`."""
    return f"sae-{file_sha256(sae_weights)[:16]}@{layer}"


class EmbeddingCache:
    """One model identity's cached vectors under `root`; counts hits and misses.

    A cache that cannot be written (a read-only or full file system, a shared folder of another user) is
    still read: its hits are served, the misses are computed and returned, and writing stops after one
    warning (`writable` turns False), so the job does not fail for its cache.
    """

    def __init__(self, root: str | Path, identity: dict) -> None:
        self.dir = Path(root) / model_key(identity)
        self.identity = identity
        self.hits = 0
        self.misses = 0
        self.writable = True
        meta = self.dir / "identity.json"
        if not meta.exists():
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                with atomic_path(meta, unique=True) as tmp:
                    tmp.write_text(json.dumps(identity, indent=2, sort_keys=True, default=str) + "\n")
            except OSError as err:
                self._stop_writing(err)

    def _stop_writing(self, err: OSError) -> None:
        """Warn once that the cache cannot be written, and write no more."""
        log.warning("embedding cache %s cannot be written (%s); reading it only, new vectors are not stored",
                    self.dir, err)
        self.writable = False

    def path(self, layer: str, seq_hash: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._@-]", "_", layer)
        return self.dir / safe / seq_hash[:2] / f"{seq_hash}.npy"

    def get(self, layer: str, seq_hash: str) -> np.ndarray | None:
        """The cached float32 vector, or None (absent or unreadable)."""
        path = self.path(layer, seq_hash)
        try:
            vec = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as err:  # empty, truncated, foreign file: recompute and overwrite
            log.warning("embedding cache: ignoring unreadable %s (%s)", path, err)
            return None
        if vec.ndim != 1 or vec.dtype != np.float32:
            return None
        return vec

    def put(self, layer: str, seq_hash: str, vec: np.ndarray) -> None:
        """Store a float32 vector (atomically); nothing, after one warning, when the cache cannot be written."""
        if not self.writable:
            return
        try:
            with atomic_path(self.path(layer, seq_hash), unique=True) as tmp:
                np.save(tmp, np.ascontiguousarray(vec, dtype=np.float32), allow_pickle=False)
        except OSError as err:
            self._stop_writing(err)

    def stats(self) -> dict:
        return {"dir": str(self.dir), "hits": self.hits, "misses": self.misses}


def cached_vectors(seqs: Sequence[str], keys: dict[str, str],
                   compute: Callable[[list[str]], dict[str, np.ndarray]],
                   cache: EmbeddingCache | None) -> dict[str, np.ndarray]:
    """{name: float32 [n_seqs, d]} for every name of `keys` ({output name: cache layer key}), computing only
    the sequences that miss some name.

    compute(sequences) -> {name: float32 [m, d]} runs the model on a list of sequences (in the given order).
    Without a cache every sequence is computed in one call, exactly as before. With one, the sequences with
    every name cached are read back, the rest are computed (one call, in their original order) and stored;
    the returned rows are in the order of `seqs`. The hit/miss counters count sequences.
    """
    if cache is None:
        return compute(list(seqs))
    hashes = [sequence_hash(s) for s in seqs]
    found: dict[str, list[np.ndarray | None]] = {name: [] for name in keys}
    missing: list[int] = []
    for i, h in enumerate(hashes):
        got = {name: cache.get(key, h) for name, key in keys.items()}
        if any(v is None for v in got.values()):
            missing.append(i)
        for name in keys:
            found[name].append(got[name])
    cache.hits += len(seqs) - len(missing)
    cache.misses += len(missing)
    if missing:
        fresh = compute([seqs[i] for i in missing])
        for name, key in keys.items():
            for row, i in enumerate(missing):
                vec = np.asarray(fresh[name][row], dtype=np.float32)
                found[name][i] = vec
                cache.put(key, hashes[i], vec)
    out = {}
    for name in keys:
        widths = {v.shape[0] for v in found[name]}
        if len(widths) > 1:
            raise ValueError(f"embedding cache {cache.dir}: vectors of {name} have several widths {sorted(widths)}")
        d = widths.pop() if widths else 0
        out[name] = np.stack(found[name]).astype(np.float32) if found[name] else np.zeros((0, d), np.float32)
    return out
