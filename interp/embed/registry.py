"""Model cards (YAML) and the factory that turns a card into an `Embedder`."""

from __future__ import annotations

from pathlib import Path

import yaml

from interp.embed.base import Embedder
from interp.errors import InputError, where

FAMILIES = ("tiny", "hf", "evo2")
REQUIRED_KEYS = ("name", "family", "layers", "context")


def load_card(path: str | Path) -> dict:
    """Read and validate a model card; fills trust_remote_code (False) and revision ("main") defaults."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model card not found")
    try:
        card = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(card, dict):
        raise InputError(f"{path}: expected a YAML mapping of card fields")
    for key in REQUIRED_KEYS:
        if key not in card:
            raise InputError(f"{where(path, field=key)}: required key missing")
    if card["family"] not in FAMILIES:
        raise InputError(f"{where(path, field='family')}: expected one of {list(FAMILIES)}, got {card['family']!r}")
    if not isinstance(card["layers"], list) or not card["layers"] or \
            not all(isinstance(x, str) for x in card["layers"]):
        raise InputError(f"{where(path, field='layers')}: expected a non-empty list of layer names")
    if not isinstance(card["context"], int) or isinstance(card["context"], bool) or card["context"] <= 0:
        raise InputError(f"{where(path, field='context')}: expected a positive integer (bases)")
    card.setdefault("trust_remote_code", False)
    if not isinstance(card["trust_remote_code"], bool):
        raise InputError(f"{where(path, field='trust_remote_code')}: expected true or false")
    card.setdefault("revision", "main")
    if card["family"] in ("hf", "evo2") and not card.get("hf_id"):
        raise InputError(f"{where(path, field='hf_id')}: required for family {card['family']}")
    card["card_path"] = str(path)
    return card


def make_embedder(card: dict, checkpoint: Path | None, device: str = "cpu") -> Embedder:
    """Build the back-end named by card["family"]; `checkpoint` is needed only for family tiny."""
    family = card["family"]
    if family == "tiny":
        from interp.embed.tiny import TinyEmbedder

        if checkpoint is None:
            raise InputError(f"model card {card['name']}: family tiny needs a checkpoint (run the pretrain step)")
        return TinyEmbedder(Path(checkpoint), name=card["name"], device=device, context=card["context"])
    if family == "hf":
        from interp.embed.hf import HFEmbedder

        return HFEmbedder(card, device=device)
    if family == "evo2":
        return Evo2Embedder(card, device=device)
    raise InputError(f"model card {card.get('name')}, field family: unknown family {family!r}")


class Evo2Embedder:
    """Evo 2 via the `evo2` package (StripedHyena 2; needs a CUDA GPU). Byte-level tokens: span [i, i+1)."""

    def __init__(self, card: dict, device: str = "cpu") -> None:
        try:
            from evo2 import Evo2
        except ImportError as err:
            raise InputError(f"model card {card['name']}: family evo2 needs the `evo2` package "
                             "(pip install evo2, with its CUDA/Transformer Engine dependencies) and a CUDA GPU; "
                             "it is not installed here") from err
        import torch

        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise InputError(f"model card {card['name']}: Evo 2 runs only on a CUDA GPU (device={device!r})")
        self.name, self.device, self.context = card["name"], device, int(card["context"])
        self.layers = list(card["layers"])
        self.model = Evo2(str(card["hf_id"]).split("/")[-1])

    def embed(self, seqs: list[str], layers: list[str]):
        import numpy as np
        import torch

        from interp.embed.base import TokenActivations

        values: dict[str, list[np.ndarray]] = {name: [] for name in layers}
        with torch.inference_mode():
            for seq in seqs:
                for a in range(0, len(seq), self.context):
                    ids = torch.tensor(self.model.tokenizer.tokenize(seq[a:a + self.context].upper()),
                                       dtype=torch.int).unsqueeze(0).to(self.device)
                    _, emb = self.model(ids, return_embeddings=True, layer_names=layers)
                    for name in layers:
                        values[name].append(emb[name][0].float().cpu().numpy())
        lengths = np.array([len(s) for s in seqs])
        pos = np.concatenate([np.arange(n) for n in lengths]).astype(np.int32)
        return {name: TokenActivations(values=np.concatenate(values[name]).astype(np.float32),
                                       offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                                       base_span=np.stack([pos, pos + 1], axis=1)) for name in layers}
