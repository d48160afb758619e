"""Where Hugging Face models come from: local folders, the hub cache, offline mode, prefetching.

HPC pattern: download on a login node (`interp prefetch`), then run offline on compute nodes
with `HF_HUB_OFFLINE=1`; both read and write the same cache (`embed.hf_cache`, else
`HF_HUB_CACHE` / `HF_HOME`, else ~/.cache/huggingface/hub).

Provenance records what was actually loaded: for a hub id, the commit of the cache snapshot
(`.../models--org--name/snapshots/<commit>/`), whatever revision (branch, tag) the card named.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from pathlib import Path

from interp.errors import InputError

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# files a transformers model needs; pickle weights are never fetched (safetensors only) unless an evo2
# card opts in with trust_pickle_weights (its package can only read its .pt checkpoint)
PREFETCH_PATTERNS = ["*.json", "*.safetensors", "*.py", "*.txt", "*.model", "tokenizer*", "*.md"]
#: files that hold pickled weights (torch.save): what a card's prefetch patterns may not fetch unless it sets
#: trust_pickle_weights (`PICKLE_WEIGHT_NAMES`: names they are tried against, shards and Evo 2's parts included)
PICKLE_WEIGHT_PATTERNS = ("*.bin", "*.bin.*", "*.pt", "*.pt.*", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
PICKLE_WEIGHT_NAMES = ("pytorch_model.bin", "pytorch_model-00001-of-00002.bin", "model.pt", "evo2_7b.pt.part0",
                       "weights.pth", "last.ckpt", "model.pkl", "state.pickle", "training_args.bin")


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for no network access."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def hub_cache_location(cache_dir: str | None) -> str:
    """The Hugging Face cache folder a load with `cache_dir` reads, and where that came from, for messages:
    embed.hf_cache when given, else huggingface_hub's own (HF_HUB_CACHE, else HF_HOME/hub, else
    $XDG_CACHE_HOME or ~/.cache, then huggingface/hub, as `huggingface_hub.constants.HF_HUB_CACHE` resolved it)."""
    if cache_dir:
        return f"{cache_dir} (embed.hf_cache)"
    from huggingface_hub import constants

    how = next((f"from {var}" for var in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")
                if os.environ.get(var)), "the default")
    return f"{constants.HF_HUB_CACHE} ({how})"


def prefetch_hint(cache_dir: str | None) -> str:
    """How to fill the cache a load reads (the end of the errors for a model not there)."""
    return (f"download it first, on a machine with network access, into the Hugging Face cache "
            f"{hub_cache_location(cache_dir)}: python -m interp.cli prefetch --configfile <your config> "
            "(or snakemake prefetch)")


def is_local_source(card: dict) -> bool:
    """A card's hf_id names an existing local folder (then no hub and no revision are involved)."""
    return Path(str(card.get("hf_id") or "")).expanduser().is_dir()


def is_commit(revision: object) -> bool:
    """A 40-hex commit id, which cannot move (a branch or tag can)."""
    return bool(_COMMIT.match(str(revision or "")))


def snapshot_commit(snapshot_dir: str | Path) -> str | None:
    """The 40-hex commit of a hub-cache snapshot folder (`.../snapshots/<commit>`), else None."""
    name = Path(snapshot_dir).name
    return name if is_commit(name) and Path(snapshot_dir).parent.name == "snapshots" else None


def resolve_source(card: dict, cache_dir: str | None) -> dict:
    """Where a card's model will be read from, without downloading anything.

    Returns {"hf_id", "revision" (as the card asks), "local_dir" (folder to load) or None,
    "commit" (snapshot commit) or None, "offline"}. A hub id already in the cache resolves to its
    snapshot folder and commit; offline, a hub id not in the cache is an InputError that says how
    to prefetch it.
    """
    hf_id = str(card["hf_id"])
    revision = str(card.get("revision") or "main")
    offline = hub_offline()
    out = {"hf_id": hf_id, "revision": revision, "local_dir": None, "commit": None, "offline": offline}
    local = Path(hf_id).expanduser()
    if local.is_dir():
        out["local_dir"] = str(local)
        out["revision"] = None
        out["commit"] = snapshot_commit(local)
        return out
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(hf_id, "config.json", cache_dir=cache_dir, revision=revision)
    except HFValidationError as err:  # a mistyped local folder is the likely cause: say so, not a traceback
        raise InputError(f"model card {card['name']}, field hf_id: {hf_id!r} is neither an existing folder nor a "
                         f"valid Hugging Face id ({err})") from None
    # a snapshot is the model once its weights are there: a refused or interrupted first load leaves config.json
    # alone, and loading that folder as the model failed on every later run, online too, without a download
    snap = Path(found).parent if isinstance(found, str) else None
    if snap is not None and _has_safetensors(snap):
        out["local_dir"] = str(snap)
        out["commit"] = snapshot_commit(snap)
    elif offline and snap is not None:
        raise InputError(f"model card {card['name']}, field hf_id: the Hugging Face cache holds {hf_id} (revision "
                         f"{revision}) without its safetensors weights ({snap}: an interrupted or refused "
                         f"download) and HF_HUB_OFFLINE is set; {prefetch_hint(cache_dir)}")
    elif offline:
        raise InputError(f"model card {card['name']}, field hf_id: {hf_id} (revision {revision}) is not in the "
                         f"Hugging Face cache and HF_HUB_OFFLINE is set; {prefetch_hint(cache_dir)}")
    return out


def _has_safetensors(folder: Path) -> bool:
    """Whether a model folder holds safetensors weights (one file, or a sharded set's index)."""
    return any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").exists()


def prefetch_card(card: dict, cache_dir: str | None,
                  download: Callable[..., str] | None = None) -> dict:
    """Download one card's model files into the cache (safetensors, configs, tokenizer, remote code).

    `download` defaults to huggingface_hub.snapshot_download (injectable for tests).
    Returns {"name", "hf_id", "revision", "commit", "path"}; local folders and the built-in model
    need nothing and are reported with path = the folder (or None).
    """
    base = {"name": card["name"], "hf_id": card.get("hf_id"), "revision": card.get("revision")}
    if card["family"] == "tiny":
        return {**base, "commit": None, "path": None, "skipped": "built-in model, trained by the workflow"}
    if is_local_source(card):
        return {**base, "commit": snapshot_commit(card["hf_id"]), "path": str(card["hf_id"]),
                "skipped": "local folder"}
    if hub_offline():
        raise InputError("prefetch needs network access but HF_HUB_OFFLINE is set; run it on a login node "
                         "without HF_HUB_OFFLINE")
    if download is None:
        from huggingface_hub import snapshot_download as download
    patterns = list(card.get("prefetch_patterns") or PREFETCH_PATTERNS)
    trusted = bool(card.get("trust_pickle_weights"))
    pickled = [p for p in patterns if any(fnmatch.fnmatch(name, p) for name in PICKLE_WEIGHT_NAMES)]
    if pickled and not trusted:
        raise InputError(f"model card {card['name']}, field prefetch_patterns: {pickled} would fetch pickle "
                         "weights; transformers models load from safetensors (drop them)")
    # and whatever the patterns, pickle weights are left on the hub for a card that does not opt in
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    revision = str(card.get("revision") or "main")
    try:
        path = download(repo_id=str(card["hf_id"]), revision=revision, cache_dir=cache_dir, allow_patterns=patterns,
                        ignore_patterns=None if trusted else list(PICKLE_WEIGHT_PATTERNS))
    except RevisionNotFoundError:
        raise InputError(f"model card {card['name']}, field revision: {revision!r} is not a branch, tag or commit "
                         f"of {card['hf_id']}") from None
    except GatedRepoError:  # a subclass of RepositoryNotFoundError: the model is there, access is not yet
        raise InputError(f"model card {card['name']}, field hf_id: {card['hf_id']} is a gated model; accept its "
                         "terms on its Hugging Face page and log in (huggingface-cli login, or HF_TOKEN) on this "
                         "node") from None
    except (HFValidationError, RepositoryNotFoundError) as err:  # a mistyped id, or a folder that is not there
        raise InputError(f"model card {card['name']}, field hf_id: {card['hf_id']!r} is neither an existing folder "
                         "nor a Hugging Face model you can see (a private one needs a login: huggingface-cli login, "
                         f"or HF_TOKEN) ({' '.join(str(err).split())[:200]})") from None
    return {**base, "commit": snapshot_commit(path), "path": str(path)}


def prefetch_models(cards: list[dict], cache_dir: str | None,
                    download: Callable[..., str] | None = None) -> list[dict]:
    """prefetch_card for every card; one row per model (see prefetch_card)."""
    return [prefetch_card(card, cache_dir, download) for card in cards]
