"""Model cards (YAML) and the factory that turns a card into an `Embedder`.

A card says where a model comes from and how to run it. Fields (checked by `check_card`):

    name              card name (= file stem by convention)
    family            back-end: tiny (built-in), hf (transformers), evo2 (the evo2 package)
    model_family      what the model is: tiny, nucleotide-transformer, dnabert-2, gena-lm, hyenadna,
                      caduceus, evo2, bert (any other transformers DNA model)
    hf_id, revision   Hugging Face id + branch/tag/commit, or a local folder (hf, evo2)
    tokenizer         character | kmer | bpe | byte
    context           longest piece in bases run in one pass (longer sequences are chunked)
    max_tokens        (hf, optional) most tokens, special tokens included, the model takes in one pass;
                      a sequence whose piece tokenizes to more is cut into shorter pieces
    hidden_size       width of the hookable layers
    layers            hookable layer names: "hidden_states.<i>" (0 = embeddings) or module paths
    pooling           mean (over base-covering tokens; CLS/EOS/pads excluded) | last
    causal            true for left-to-right models (HyenaDNA, Evo 2)
    rc_average        average per-token outputs with the reverse-complement strand's, flipped back
    license           the weights' licence
    trust_remote_code run the model folder's own Python (off unless the card opts in)
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import yaml

from interp.embed.base import Embedder
from interp.errors import InputError, where, yaml_problem
from interp.io import load_yaml_unique

FAMILIES = ("tiny", "hf", "evo2")
MODEL_FAMILIES = ("tiny", "nucleotide-transformer", "dnabert-2", "gena-lm", "hyenadna", "caduceus", "evo2", "bert")
TOKENIZERS = ("character", "kmer", "bpe", "byte")
POOLINGS = ("mean", "last")
HF_CLASSES = ("model", "masked_lm", "causal_lm")
REQUIRED_KEYS = ("name", "family", "layers", "context", "license")
_LAYER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# every key a card may have; anything else is a typo and is refused (the dtype is the run's embed.dtype, not a
# card's: a card key for it would be silently ignored)
KNOWN_KEYS = {
    "name": str, "family": str, "model_family": str, "description": str, "license": str, "hf_id": str,
    "revision": str, "tokenizer": str, "context": int, "hidden_size": int, "layers": list, "pooling": str,
    "causal": bool, "rc_average": bool, "trust_remote_code": bool, "hf_class": str,
    "padding_side": str, "chunk_overlap": int, "prefetch_patterns": list, "architecture": dict, "training": dict,
    "notes": str, "requires": str, "trust_pickle_weights": bool, "max_tokens": int,
}



#: card keys a family's back-end never reads (False, the default of a flag, is allowed)
NOT_FOR_FAMILY = {
    "tiny": {"hf_id", "revision", "hf_class", "padding_side", "prefetch_patterns", "trust_remote_code"},
    "hf": {"architecture", "training"},
    "evo2": {"hf_class", "padding_side", "architecture", "training"},
}


def check_card(card: object, path: str | Path) -> dict:
    """Validate a parsed card and fill defaults; InputError naming file and field otherwise."""
    if not isinstance(card, dict):
        raise InputError(f"{path}: expected a YAML mapping of card fields")
    for key in REQUIRED_KEYS:
        if key not in card:
            raise InputError(f"{where(path, field=key)}: required key missing")
    for key, value in card.items():
        if key not in KNOWN_KEYS:
            raise InputError(f"{where(path, field=key)}: unknown card key; expected one of {sorted(KNOWN_KEYS)}")
        kind = KNOWN_KEYS[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise InputError(f"{where(path, field=key)}: expected {kind.__name__}, got {value!r}")
    if card["family"] not in FAMILIES:
        raise InputError(f"{where(path, field='family')}: expected one of {list(FAMILIES)}, got {card['family']!r}")
    enums = {"model_family": MODEL_FAMILIES, "tokenizer": TOKENIZERS, "pooling": POOLINGS, "hf_class": HF_CLASSES,
             "padding_side": ("left", "right")}
    for key, allowed in enums.items():
        if key in card and card[key] not in allowed:
            raise InputError(f"{where(path, field=key)}: expected one of {list(allowed)}, got {card[key]!r}")
    if not card["layers"] or not all(isinstance(x, str) and x for x in card["layers"]):
        raise InputError(f"{where(path, field='layers')}: expected a non-empty list of layer names")
    if len(set(card["layers"])) != len(card["layers"]):
        raise InputError(f"{where(path, field='layers')}: layer names repeat")
    for layer in card["layers"]:
        # a layer name is a file and folder name of the run (<layer>.h5ad, sae/<model>/<layer>/): no '/' or
        # leading '.', which would write outside results/<run>/
        if not _LAYER_NAME.match(layer):
            raise InputError(f"{where(path, field='layers')}: layer name {layer!r}: expected letters, digits, _ . - "
                             "starting with a letter, digit or _ (a module path such as encoder.layer.5, or "
                             "hidden_states.<i>); it names the run's files and folders")
        if layer.startswith("hidden_states.") and not layer.removeprefix("hidden_states.").isdigit():
            raise InputError(f"{where(path, field='layers')}: layer name {layer!r}: expected hidden_states.<i> "
                             "with <i> a whole number (0 = the embeddings)")
    for key in ("context", "hidden_size", "max_tokens"):
        if key in card and card[key] <= 0:
            raise InputError(f"{where(path, field=key)}: expected a positive integer")
    if "chunk_overlap" in card and not 0 <= card["chunk_overlap"] < card["context"]:
        raise InputError(f"{where(path, field='chunk_overlap')}: expected 0 <= overlap < context ({card['context']})")
    if card["family"] in ("hf", "evo2") and not card.get("hf_id"):
        raise InputError(f"{where(path, field='hf_id')}: required for family {card['family']} "
                         "(a Hugging Face id or a local folder)")
    if card["family"] == "evo2" and card.get("trust_remote_code"):
        raise InputError(f"{where(path, field='trust_remote_code')}: evo2 cards load through the evo2 package, "
                         "not transformers remote code; set it to false")
    if card["family"] == "evo2" and card.get("revision", "main") != "main":
        raise InputError(f"{where(path, field='revision')}: the evo2 package downloads the repository's latest "
                         f"files itself, so revision {card['revision']!r} cannot be honoured; use main")
    if "max_tokens" in card and card["family"] != "hf":
        raise InputError(f"{where(path, field='max_tokens')}: only transformers (family hf) models have a token "
                         "limit apart from context; remove it")
    if "prefetch_patterns" in card and not all(isinstance(x, str) and x for x in card["prefetch_patterns"]):
        raise InputError(f"{where(path, field='prefetch_patterns')}: expected a list of file-name patterns (text), "
                         f"got {card['prefetch_patterns']!r}")
    if card["family"] == "tiny":  # the built-in embedder tiles without overlap and reads one strand
        for key, given in (("rc_average", card.get("rc_average")), ("chunk_overlap", "chunk_overlap" in card)):
            if given:
                raise InputError(f"{where(path, field=key)}: the built-in model (family tiny) does not apply it; "
                                 "remove it (it would be recorded as applied while ignored)")
    # fields another back-end reads: accepted here they were ignored, yet recorded and part of the cache key
    for key in sorted(set(card) & NOT_FOR_FAMILY.get(card["family"], set())):
        if card[key] is not False:
            raise InputError(f"{where(path, field=key)}: family {card['family']} does not read it (it is for "
                             f"{', '.join(f for f, keys in NOT_FOR_FAMILY.items() if key not in keys)} cards); "
                             "remove it")
    if card["family"] == "tiny" and card.get("causal"):
        raise InputError(f"{where(path, field='causal')}: the built-in model (family tiny) is a masked LM; remove it")
    if card["family"] != "evo2" and card.get("trust_pickle_weights"):
        raise InputError(f"{where(path, field='trust_pickle_weights')}: only evo2 cards may opt in to pickle "
                         "weights; transformers models load from safetensors")
    card.setdefault("trust_remote_code", False)
    card.setdefault("revision", "main")
    card.setdefault("pooling", "mean")
    card.setdefault("causal", card["family"] == "evo2")
    card.setdefault("rc_average", False)
    card.setdefault("model_family", {"tiny": "tiny", "evo2": "evo2"}.get(card["family"], "bert"))
    card.setdefault("chunk_overlap", card["context"] // 8)
    card["card_path"] = str(path)
    return card


def load_card(path: str | Path) -> dict:
    """Read and validate a model card (see `check_card`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model card not found")
    try:
        card = load_yaml_unique(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err})") from err
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {yaml_problem(err)}") from err
    return check_card(card, path)


def make_embedder(card: dict, checkpoint: Path | None, device: str = "cpu", hf_cache: str | None = None,
                  dtype: str = "auto", token_budget: int | None = None) -> Embedder:
    """Build the back-end named by card["family"]; `checkpoint` is needed only for family tiny.

    hf_cache: Hugging Face cache folder (None: the HF default); dtype: auto (bf16 on CUDA, fp32 on
    CPU), float32, bfloat16 or float16; token_budget: padded tokens per forward pass (None: 2048 on CPU,
    16384 on CUDA).
    """
    family = card["family"]
    if family == "tiny":
        from interp.embed.tiny import TinyEmbedder

        if checkpoint is None:
            raise InputError(f"model card {card['name']}: family tiny needs a checkpoint (run the pretrain step)")
        return TinyEmbedder(Path(checkpoint), name=card["name"], device=device, context=card["context"],
                            pooling=card.get("pooling", "mean"))
    if family == "hf":
        from interp.embed.hf import HFEmbedder

        return HFEmbedder(card, device=device, cache_dir=hf_cache, dtype=dtype, token_budget=token_budget)
    if family == "evo2":
        return Evo2Embedder(card, device=device, hf_cache=hf_cache)
    raise InputError(f"model card {card.get('name')}, field family: unknown family {family!r}")


@contextlib.contextmanager
def hub_cache(hf_cache: str | None):
    """Within the block, huggingface_hub's default cache is `hf_cache` (None: left as it is), for a package
    that downloads through it without a cache_dir (the evo2 package). huggingface_hub reads HF_HUB_CACHE into
    `constants.HF_HUB_CACHE` once, when first imported, and its downloads read that constant at call time:
    setting the environment variable alone, after the import, changed nothing."""
    if not hf_cache:
        yield
        return
    from huggingface_hub import constants

    saved_env, saved = os.environ.get("HF_HUB_CACHE"), constants.HF_HUB_CACHE
    os.environ["HF_HUB_CACHE"] = constants.HF_HUB_CACHE = str(hf_cache)
    try:
        yield
    finally:
        constants.HF_HUB_CACHE = saved
        if saved_env is None:
            os.environ.pop("HF_HUB_CACHE", None)
        else:
            os.environ["HF_HUB_CACHE"] = saved_env


def evo2_source(card: dict) -> tuple[str, str | None]:
    """(model name, local checkpoint or None) to give `evo2.Evo2` for the card's hf_id. The package loads a hub
    model by name from its own repository (`evo2.utils.HF_MODEL_NAME_MAP`, arcinstitute/<name>), so a hub id must
    be that repository: another one (a lab's fine-tune) would be replaced by it while provenance named the card's.
    A local .pt file, or a folder holding one `<name>.pt`, is passed as `local_path`, its name (the file's stem)
    choosing the package's config."""
    hf_id = str(card["hf_id"])
    path = Path(hf_id).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.pt"))
        if len(found) != 1:
            raise InputError(f"model card {card['name']}, field hf_id: the folder {hf_id} holds {len(found)} .pt "
                             "checkpoints; the evo2 package loads one, named <model>.pt (e.g. evo2_7b.pt)")
        path = found[0]
    if path.is_file():
        return path.stem, str(path)
    name = hf_id.split("/")[-1]
    try:
        from evo2.utils import HF_MODEL_NAME_MAP
    except ImportError:  # a stand-in or an older package: its map cannot be read
        return name, None
    if HF_MODEL_NAME_MAP.get(name) != hf_id:
        raise InputError(f"model card {card['name']}, field hf_id: the evo2 package loads {name!r} from its own "
                         f"repository ({HF_MODEL_NAME_MAP.get(name, 'none for that name')}), not {hf_id}; use one of "
                         f"{sorted(HF_MODEL_NAME_MAP.values())}, or a local <model>.pt checkpoint")
    return name, None


class Evo2Embedder:
    """Evo 2 via the `evo2` package (StripedHyena 2; needs a CUDA GPU). Byte tokens: span [i, i+1).

    Layers are the package's embedding names (e.g. "blocks.28.mlp.l3"), read with its
    `return_embeddings=True, layer_names=[...]` API. Long sequences are chunked and stitched like
    the transformers back-end; pieces run one at a time (Vortex batches poorly with padding).
    """

    def __init__(self, card: dict, device: str = "cpu", model=None, hf_cache: str | None = None) -> None:
        """`model`: an already loaded evo2.Evo2 (or a stand-in with its interface, for tests); hf_cache: the
        Hugging Face cache the package downloads into (HF_HUB_CACHE; None: its default)."""
        if model is None:
            if not card.get("trust_pickle_weights"):
                raise InputError(f"model card {card['name']}, field trust_pickle_weights: the evo2 package loads "
                                 "Evo 2's pickled .pt checkpoint (torch.load inside its Vortex back-end), which "
                                 "can run code; set trust_pickle_weights: true in the card to accept that")
            try:
                from evo2 import Evo2
            except ImportError as err:
                raise InputError(f"model card {card['name']}: family evo2 needs the `evo2` package "
                                 "(pip install 'interp[evo2]', with its CUDA/Transformer Engine dependencies) and "
                                 "a CUDA GPU; it is not installed here") from err
            import torch

            if not device.startswith("cuda") or not torch.cuda.is_available():
                raise InputError(f"model card {card['name']}: Evo 2 runs only on a CUDA GPU (device={device!r})")
            name, local_path = evo2_source(card)
            try:
                with hub_cache(hf_cache):
                    model = Evo2(name) if local_path is None else Evo2(name, local_path=local_path)
            except (OSError, RuntimeError, ValueError) as err:
                raise InputError(f"model card {card['name']}: the evo2 package could not load "
                                 f"{card['hf_id']} (offline without a cached copy, or no GPU memory?): {err}") from err
        self.name, self.device, self.context = card["name"], device, int(card["context"])
        self.layers = list(card["layers"])
        self.hidden_size = card.get("hidden_size")  # width the card states for its layers (checked when run)
        self.pooling = card.get("pooling", "mean")
        self.rc_average = bool(card.get("rc_average", False))
        self.overlap = int(card.get("chunk_overlap", self.context // 8))
        self.model = model
        self.input_counts: dict[str, int] = {}
        self.provenance = {"hf_id": card["hf_id"], "revision_requested": "main (the evo2 package fetches the latest)",
                           "commit": None, "trust_remote_code": False, "trust_pickle_weights": True,
                           "loaded_by": "evo2 package"}

    def embed(self, seqs: list[str], layers: list[str]):
        import numpy as np
        import torch

        from interp.embed.hf import assemble, describe
        from interp.embed.pieces import check_finite, clean_sequences, plan_pieces

        unknown = set(layers) - set(self.layers)
        if unknown:
            raise InputError(f"model card {self.name}, field layers: unknown layers {sorted(unknown)}")
        seqs, _ = clean_sequences(seqs, self.name, self.input_counts)
        pieces = plan_pieces(seqs, self.context, self.overlap, self.rc_average)
        piece_out = []
        with torch.inference_mode():
            for piece in pieces:
                ids = torch.tensor(self.model.tokenizer.tokenize(piece.text), dtype=torch.int).unsqueeze(0)
                _, emb = self.model(ids.to(self.device), return_embeddings=True, layer_names=layers)
                values = {}
                for name in layers:
                    values[name] = emb[name][0].float().cpu().numpy()
                    check_finite(values[name], self.name, name, describe(piece))
                    if self.hidden_size is not None and values[name].shape[1] != self.hidden_size:  # as HF's
                        raise InputError(f"model card {self.name}, field hidden_size: {self.hidden_size}, but "
                                         f"layer {name} is {values[name].shape[1]} wide")
                pos = np.arange(len(piece.text), dtype=np.int32)
                piece_out.append((np.stack([pos, pos + 1], axis=1), values))
        return assemble(seqs, pieces, piece_out, layers, self.context, self.rc_average)
