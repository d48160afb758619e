"""`HFEmbedder`: per-token hidden states of Hugging Face transformers DNA models.

Covers Nucleotide Transformer, DNABERT-2, HyenaDNA, Caduceus and any local model directory.
Safety: `trust_remote_code` comes only from the model card (default False), weights load
only from safetensors (pickle checkpoints are refused), and `revision` is pinned by the card.

Layers are named "hidden_states.<i>" (0 = embeddings). base_span comes from the fast
tokenizer's offsets; slow tokenizers get spans by matching token strings left to right.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import torch

from interp.embed.base import TokenActivations
from interp.errors import InputError

_STRIP_PREFIXES = ("##", "\u2581", "\u0120")


def check_local_model_dir(path: Path, trust_remote_code: bool, card_name: str) -> None:
    """Refuse a local model directory that needs remote code without opt-in, or only has pickle weights."""
    config_file = path / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        if config.get("auto_map") and not trust_remote_code:
            raise InputError(f"model card {card_name}, field trust_remote_code: {path} needs custom model code "
                             "(config.json has auto_map); set trust_remote_code: true in the card to allow it")
    has_safetensors = any(path.glob("*.safetensors"))
    has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.ckpt"))
    if has_pickle and not has_safetensors:
        raise InputError(f"model card {card_name}, field hf_id: {path} only has pickle weights (.bin/.pt); "
                         "refusing to load them, convert the checkpoint to safetensors")


def spans_by_matching(tokens: list[str], special: set[str], seq: str) -> np.ndarray:
    """int32 [n_tokens, 2]: base spans found by matching token strings left to right in `seq`.

    Special tokens get (-1, -1). Word-piece prefixes (##, U+2581, U+0120) are stripped first.
    """
    spans = np.full((len(tokens), 2), -1, dtype=np.int32)
    cursor = 0
    upper = seq.upper()
    for k, tok in enumerate(tokens):
        if tok in special:
            continue
        text = tok
        for prefix in _STRIP_PREFIXES:
            if text.startswith(prefix):
                text = text[len(prefix):]
        text = text.upper()
        if not text:
            continue
        found = upper.find(text, cursor)
        if found < 0:
            raise ValueError(f"token {tok!r} not found in the sequence after base {cursor}")
        spans[k] = (found, found + len(text))
        cursor = found + len(text)
    return spans


class HFEmbedder:
    """transformers back-end. `card` keys: name, hf_id, revision, context (bases), layers,
    trust_remote_code, optional hf_class ("model" | "masked_lm"), torch_dtype."""

    def __init__(self, card: dict, device: str = "cpu", batch_pieces: int = 8) -> None:
        from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

        self.name = card["name"]
        self.device = device
        self.context = int(card["context"])
        self.layers = list(card["layers"])
        self.batch_pieces = batch_pieces
        hf_id = str(card.get("hf_id") or "")
        if not hf_id:
            raise InputError(f"model card {self.name}, field hf_id: missing (a Hugging Face id or a local directory)")
        trust = bool(card.get("trust_remote_code", False))
        revision = card.get("revision", "main")
        local = Path(hf_id)
        if local.is_dir():
            check_local_model_dir(local, trust, self.name)
            revision = None
        common = {"revision": revision, "trust_remote_code": trust}
        try:
            config = AutoConfig.from_pretrained(hf_id, **common)
            self.tokenizer = AutoTokenizer.from_pretrained(hf_id, **common)
            cls = AutoModelForMaskedLM if card.get("hf_class", "model") == "masked_lm" else AutoModel
            self.model = cls.from_pretrained(hf_id, config=config, use_safetensors=True, **common)
        except ValueError as err:
            if "trust_remote_code" in str(err):
                raise InputError(f"model card {self.name}, field trust_remote_code: {hf_id} needs custom code; "
                                 f"set trust_remote_code: true in the card to allow it ({err})") from err
            raise InputError(f"model card {self.name}: cannot load {hf_id}: {err}") from err
        except OSError as err:
            raise InputError(f"model card {self.name}, field hf_id: cannot load {hf_id} with safetensors weights "
                             f"(pickle checkpoints are refused; no network?): {err}") from err
        self.model.to(device).eval()
        self.special_tokens = set(self.tokenizer.all_special_tokens)
        params = inspect.signature(self.model.forward).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self.accepted_inputs = {"input_ids", "attention_mask", "token_type_ids"} if takes_any else set(params)

    def _tokenize(self, pieces: list[str]) -> tuple[dict, np.ndarray]:
        """Tokenize pieces; return model inputs and base spans int32 [b, T, 2] ((-1,-1) for non-bases)."""
        if self.tokenizer.is_fast:
            enc = self.tokenizer(pieces, return_offsets_mapping=True, padding=True, return_tensors="pt")
            spans = enc.pop("offset_mapping").numpy().astype(np.int32)
            spans[spans[..., 1] <= spans[..., 0]] = -1
            spans[enc["attention_mask"].numpy() == 0] = -1
        else:
            enc = self.tokenizer(pieces, padding=True, return_tensors="pt")
            spans = np.full((*enc["input_ids"].shape, 2), -1, dtype=np.int32)
            for row, piece in enumerate(pieces):
                keep = enc["attention_mask"][row].numpy() == 1
                idx = np.flatnonzero(keep)
                tokens = self.tokenizer.convert_ids_to_tokens(enc["input_ids"][row, idx].tolist())
                spans[row, idx] = spans_by_matching(tokens, self.special_tokens, piece)
        # some models (HyenaDNA, Caduceus) take input_ids only
        enc = {k: v for k, v in enc.items() if k in self.accepted_inputs}
        return enc, spans

    @torch.inference_mode()
    def embed(self, seqs: list[str], layers: list[str]) -> dict[str, TokenActivations]:
        """Upper-case DNA strings -> {"hidden_states.<i>": TokenActivations} over base-covering tokens."""
        indices = {}
        for name in layers:
            if name not in self.layers or not name.startswith("hidden_states."):
                raise InputError(f"model card {self.name}, field layers: unknown layer {name!r}; "
                                 f"expected one of {self.layers}")
            indices[name] = int(name.split(".", 1)[1])
        pieces = [(i, a, s[a:a + self.context].upper()) for i, s in enumerate(seqs)
                  for a in range(0, len(s), self.context)]
        values: dict[str, list[np.ndarray]] = {name: [] for name in layers}
        spans_out, owner = [], []
        for start in range(0, len(pieces), self.batch_pieces):
            batch = pieces[start:start + self.batch_pieces]
            enc, spans = self._tokenize([p for _, _, p in batch])
            out = self.model(**{k: v.to(self.device) for k, v in enc.items()}, output_hidden_states=True)
            hidden = getattr(out, "hidden_states", None)
            if hidden is None:
                raise RuntimeError(f"{self.name}: the model returned no hidden_states "
                                   "(its remote code ignores output_hidden_states)")
            for row, (seq_i, offset, _) in enumerate(batch):
                real = spans[row, :, 1] > spans[row, :, 0]
                spans_out.append(spans[row, real] + offset)
                owner.append(np.full(int(real.sum()), seq_i, dtype=np.int64))
                for name, k in indices.items():
                    values[name].append(hidden[k][row].float().cpu().numpy()[real])
        owner_all = np.concatenate(owner) if owner else np.zeros(0, np.int64)
        # pieces are generated in sequence order, so tokens are already grouped by sequence
        offsets = np.concatenate([[0], np.cumsum(np.bincount(owner_all, minlength=len(seqs)))]).astype(np.int64)
        span_all = np.concatenate(spans_out).astype(np.int32) if spans_out else np.zeros((0, 2), np.int32)
        return {name: TokenActivations(values=np.concatenate(values[name]).astype(np.float32), offsets=offsets,
                                       base_span=span_all) for name in layers}
