"""Sparse autoencoders on per-token activations: config, architectures, training, splits, labels.

The public names are imported on first use (PEP 562), so that `interp.sae.config`, which the Snakefile
reads while it parses, does not pull in torch and Lightning (about 4 s per snakemake start).
"""

from __future__ import annotations

import importlib

_WHERE = {
    "BatchTopKSAE": "interp.sae.batchtopk",
    "JumpReLUSAE": "interp.sae.jumprelu",
    "MatryoshkaSAE": "interp.sae.matryoshka",
    "ReLUSAE": "interp.sae.relu",
    "SAEConfig": "interp.sae.config",
    "SparseAutoencoder": "interp.sae.model",
    "TopKSAE": "interp.sae.topk",
    "load_sae": "interp.sae.train",
    "read_sae_metadata": "interp.sae.train",
    "save_sae": "interp.sae.train",
    "train_sae": "interp.sae.train",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'interp.sae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
