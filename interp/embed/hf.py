"""`HFEmbedder`: per-token activations of Hugging Face transformers DNA models.

Covers Nucleotide Transformer (v1 native ESM, v2 remote code), DNABERT-2, GENA-LM, HyenaDNA,
Caduceus and any local model folder, loaded with `from_pretrained` exactly as their authors
intend. Safety: `trust_remote_code` comes only from the card (default False), weights load only
from safetensors (pickle checkpoints are refused), the revision is pinned by the card and the
snapshot commit actually loaded is recorded in `provenance`.

Layers: "hidden_states.<i>" (0 = embeddings, via output_hidden_states) or a module path such as
"encoder.layer.5" (via a forward hook; models that unpad tokens inside the encoder, like DNABERT-2,
give [n_real_tokens, d] there, which is scattered back to [batch, T, d]).

Speed: pieces are bucketed by token length and batched by a token budget (rows x longest),
run under torch.inference_mode, in bf16 + SDPA on CUDA; each batch's activations go to the CPU once.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import torch

from interp.embed.base import TokenActivations
from interp.embed.hub import prefetch_hint, resolve_source
from interp.embed.pieces import (
    Piece,
    check_finite,
    clean_sequences,
    plan_pieces,
    rc_average,
    stitch,
    token_budget_batches,
)
from interp.errors import InputError

_STRIP_PREFIXES = ("##", "\u2581", "\u0120")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_local_model_dir(path: Path, trust_remote_code: bool, card_name: str) -> None:
    """Refuse a local model directory that needs remote code without opt-in, or only has pickle weights."""
    def read_json(file: Path) -> dict:
        try:
            return json.loads(file.read_text())
        except (ValueError, UnicodeDecodeError) as err:  # a hand-edited file: say which and where
            raise InputError(f"model card {card_name}, field hf_id: {file} is not valid JSON ({err})") from None

    config_file = path / "config.json"
    if config_file.is_file():
        config = read_json(config_file)
        if config.get("auto_map") and not trust_remote_code:
            raise InputError(f"model card {card_name}, field trust_remote_code: {path} needs custom model code "
                             "(config.json has auto_map); set trust_remote_code: true in the card to allow it")
        check_code_source(config.get("auto_map"), card_name, str(path))
    tokenizer_file = path / "tokenizer_config.json"  # AutoTokenizer follows its own auto_map too
    if tokenizer_file.is_file():
        check_code_source(read_json(tokenizer_file).get("auto_map"), card_name, str(tokenizer_file))
    has_safetensors = any(path.glob("*.safetensors"))
    has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.ckpt"))
    if has_pickle and not has_safetensors:
        raise InputError(f"model card {card_name}, field hf_id: {path} only has pickle weights (.bin/.pt); "
                         "refusing to load them, convert the checkpoint to safetensors")


def check_code_source(auto_map: object, card_name: str, where_text: str) -> None:
    """Refuse custom code fetched from another repository (`auto_map` "other/repo--module.Class"): it comes
    from that repository's latest files whatever revision the card pins."""
    values = auto_map.values() if isinstance(auto_map, dict) else []
    for value in values:
        for ref in value if isinstance(value, list | tuple) else [value]:
            if isinstance(ref, str) and "--" in ref:
                raise InputError(f"model card {card_name}: {where_text} takes custom code from another repository "
                                 f"({ref!r}), which no revision of this card pins; refusing it")


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


def spans_from_offsets(ids: list[int], offsets: list, tokens: list[str], special_ids: list[int]) -> np.ndarray:
    """int32 [n_tokens, 2]: base spans from a fast tokenizer's character offsets.

    Special tokens, empty offsets and tokens that are only a word-piece marker get (-1, -1): a bare U+2581
    (a SentencePiece-style Metaspace pre-tokenizer's word start) has offsets claiming the base it precedes,
    which the next token covers too.
    """
    spans = np.asarray(offsets, dtype=np.int32).reshape(-1, 2)
    spans[spans[:, 1] <= spans[:, 0]] = -1
    spans[np.isin(ids, special_ids)] = -1
    marker_only = [k for k, tok in enumerate(tokens) if tok and not tok.lstrip("".join(_STRIP_PREFIXES))]
    spans[marker_only] = -1
    return spans


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """auto: bfloat16 on CUDA, float32 elsewhere (CPU bf16 matmuls are slower and less exact)."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise InputError(f"embed.dtype: expected auto, float32, bfloat16 or float16, got {dtype!r}")
    return _DTYPES[dtype]


def beyond_positions(model, n_tokens: int) -> int | None:
    """The model's position count (config max_position_embeddings) when n_tokens may exceed it, else None: what a
    RuntimeError / IndexError of its forward pass on that many tokens means (ESM and RoBERTa count positions from
    padding_idx + 1, so 2 fewer fit)."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(positions) if positions and n_tokens > int(positions) - 2 else None


class HFEmbedder:
    """transformers back-end driven by a model card (see interp.embed.registry for the fields)."""

    def __init__(self, card: dict, device: str = "cpu", cache_dir: str | None = None, dtype: str = "auto",
                 token_budget: int | None = None, max_rows: int = 512) -> None:
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForCausalLM,
            AutoModelForMaskedLM,
            AutoTokenizer,
            PretrainedConfig,
        )
        from transformers.models.auto.tokenization_auto import get_tokenizer_config

        self.name = card["name"]
        self.device = device
        self.context = int(card["context"])
        self.layers = list(card["layers"])
        self.hidden_size = card.get("hidden_size")  # width the card states for its layers (checked when run)
        self.pooling = card.get("pooling", "mean")
        self.causal = bool(card.get("causal", False))
        self.rc_average = bool(card.get("rc_average", False))
        self.overlap = int(card.get("chunk_overlap", self.context // 8))
        # the model's own limit in tokens (special tokens included), e.g. learned absolute positions; None: none
        self.max_tokens = int(card["max_tokens"]) if card.get("max_tokens") else None
        # CPU: ~2k tokens x 512 wide keeps each activation a few MB (cache-sized elementwise ops; measured
        # ~20% less CPU time than 8k); GPU: large batches fill the device
        self.token_budget = int(token_budget or (16384 if device.startswith("cuda") else 2048))
        self.max_rows = int(max_rows)
        if not card.get("hf_id"):
            raise InputError(f"model card {self.name}, field hf_id: missing (a Hugging Face id or a local directory)")
        trust = bool(card.get("trust_remote_code", False))
        self.dtype = resolve_dtype(dtype, device)
        source = resolve_source(card, cache_dir)
        if source["local_dir"]:
            check_local_model_dir(Path(source["local_dir"]), trust, self.name)
            load_from, common = source["local_dir"], {"trust_remote_code": trust}
        else:  # not cached yet: transformers downloads the pinned revision into cache_dir
            load_from = source["hf_id"]
            common = {"trust_remote_code": trust, "revision": source["revision"], "cache_dir": cache_dir}
        classes = {"model": AutoModel, "masked_lm": AutoModelForMaskedLM, "causal_lm": AutoModelForCausalLM}
        cls = classes[card.get("hf_class", "model")]
        try:
            # config.json read as data first, so cross-repository code is refused before any of it runs
            raw, _ = PretrainedConfig.get_config_dict(load_from, **{k: v for k, v in common.items()
                                                                    if k != "trust_remote_code"})
            check_code_source(raw.get("auto_map"), self.name, str(load_from))
            if raw.get("auto_map") and not trust:
                # as for a local folder: over a model_type transformers knows, it would load its own class
                # quietly, with the custom architecture's weights that do not fit it left at random values
                raise InputError(f"model card {self.name}, field trust_remote_code: {load_from} needs custom model "
                                 "code (config.json has auto_map); set trust_remote_code: true in the card to allow "
                                 "it")
            tokenizer_config = get_tokenizer_config(load_from, **{k: v for k, v in common.items()
                                                                 if k != "trust_remote_code"})
            check_code_source(tokenizer_config.get("auto_map"), self.name, f"{load_from} (tokenizer_config.json)")
            config = AutoConfig.from_pretrained(load_from, **common)
            self.tokenizer = AutoTokenizer.from_pretrained(load_from, **common)
            self.model = self._load_model(cls, load_from, config, common)
        except ValueError as err:
            if "trust_remote_code" in str(err):
                raise InputError(f"model card {self.name}, field trust_remote_code: {load_from} needs custom code; "
                                 f"set trust_remote_code: true in the card to allow it ({err})") from err
            raise InputError(f"model card {self.name}: cannot load {load_from}: {err}") from err
        except ImportError as err:  # remote code needing a package this environment lacks (mamba-ssm, ...)
            raise InputError(f"model card {self.name}: the model's code needs a package that is not installed "
                             f"({' '.join(str(err).split())}); install what the card's `requires` field lists "
                             f"({card.get('requires') or 'not given'})") from err
        except OSError as err:
            detail = " ".join(str(err).split())  # one line: transformers' messages span several
            # a hub id not in the cache: the hub unreachable (a compute node without network) or the files missing
            hint = "" if source["local_dir"] else f"; if the hub cannot be reached, {prefetch_hint(cache_dir)}"
            raise InputError(f"model card {self.name}, field hf_id: cannot load {load_from} with safetensors "
                             f"weights (pickle checkpoints are refused): {detail}{hint}") from err
        self.model.to(device).eval()
        if not source["local_dir"]:
            source = resolve_source(card, cache_dir)  # now cached: read the snapshot commit
        self.provenance = {"hf_id": source["hf_id"], "revision_requested": source["revision"],
                           "commit": source["commit"], "loaded_from": str(load_from), "trust_remote_code": trust,
                           "offline": source["offline"], "dtype": str(self.dtype).replace("torch.", ""),
                           "model_class": type(self.model).__name__}
        self.special_tokens = set(self.tokenizer.all_special_tokens)
        self.unk_id = self.tokenizer.unk_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        params = inspect.signature(self.model.forward).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self.accepts_mask = takes_any or "attention_mask" in params
        self.accepts_positions = "position_ids" in params
        # causal models that take a mask get left padding (the causal-LM convention: the last real token
        # sits at the end), with position ids counted from each row's first real token so outputs equal
        # an unpadded run; a causal model without a mask (HyenaDNA) gets right padding, which leaves its
        # real tokens exactly as unpadded because they never see later positions
        default_side = "left" if self.causal and self.accepts_mask and self.accepts_positions else "right"
        self.padding_side = card.get("padding_side", default_side)
        if self.padding_side == "left" and not self.causal:
            # left padding counts position ids from 0 at the first real token, as causal LMs number them; a
            # bidirectional model may not (ESM and RoBERTa start after padding_idx): a lone sequence came out wrong
            raise InputError(f"model card {self.name}, field padding_side: left padding is for causal models (the "
                             "last real token at the end); this card is not causal: use right (or leave "
                             "padding_side out)")
        if self.padding_side == "left" and not (self.accepts_mask and self.accepts_positions):
            # pads before the real tokens: seen by a model without a mask, or shifting the real tokens'
            # positions without position ids, so a sequence's activations would depend on its batch
            raise InputError(f"model card {self.name}, field padding_side: left padding needs a model that takes "
                             f"attention_mask and position_ids, and {type(self.model).__name__} takes "
                             f"{'no attention_mask' if not self.accepts_mask else 'no position_ids'}; use right "
                             "(or leave padding_side out)")
        # a bidirectional model without an attention mask would let pads leak into every token
        self.pad_free = not self.accepts_mask and not self.causal
        self.modules = dict(self.model.named_modules())
        self.input_counts: dict[str, int] = {}  # N and IUPAC-as-N bases seen (see pieces.clean_sequences)
        try:  # token ids the model has embeddings for (None: its code does not say)
            self.n_token_ids = int(self.model.get_input_embeddings().num_embeddings)
        except (AttributeError, NotImplementedError, TypeError):
            self.n_token_ids = None

    def _load_model(self, cls, load_from: str, config, common: dict):
        kwargs = {"config": config, "use_safetensors": True, "dtype": self.dtype, "output_loading_info": True,
                  **common}
        loaded = None
        if self.device.startswith("cuda"):
            try:
                loaded = cls.from_pretrained(load_from, attn_implementation="sdpa", **kwargs)
            except (ValueError, TypeError, ImportError):
                pass  # custom code without SDPA support: its own attention
        model, info = loaded or cls.from_pretrained(load_from, **kwargs)
        # weights the checkpoint lacks, which transformers starts at random values (a pooler, or a whole head)
        self.missing_weights = sorted(info.get("missing_keys", ()))
        return model

    def check_head(self) -> None:
        """InputError when the checkpoint lacks weights of the model's head (the part outside its base model),
        which transformers starts at random values: a masked- or causal-LM head filled so predicts nothing,
        and its scores change with the torch seed (an encoder-only checkpoint under AutoModelForMaskedLM)."""
        prefix = getattr(self.model, "base_model_prefix", "")
        if self.model.base_model is self.model or not prefix:
            return
        # a head tied to a loaded weight (remote code tying lm_head to the embeddings in its own tie_weights) is
        # listed missing, yet shares the loaded tensor: not random
        missing, state = set(self.missing_weights), self.model.state_dict(keep_vars=True)
        loaded = {t.data_ptr() for name, t in state.items() if name not in missing}
        head = [k for k in self.missing_weights if not k.startswith(prefix + ".")
                and not (k in state and state[k].data_ptr() in loaded)]
        if head:
            raise InputError(f"model card {self.name}: the checkpoint {self.provenance['loaded_from']} has no weights "
                             f"for its {type(self.model).__name__} head ({', '.join(head[:3])}"
                             f"{', ...' if len(head) > 3 else ''}): transformers would start them at random values, "
                             "so its base predictions would mean nothing; use a checkpoint that has the head")

    # ---------------------------------------------------------------- tokens
    def tokenize(self, texts: list[str]) -> list[tuple[list[int], np.ndarray]]:
        """Per text: (token ids incl. special tokens, spans int32 [n, 2], (-1, -1) for non-bases)."""
        out = []
        if self.tokenizer.is_fast:
            enc = self.tokenizer(texts, return_offsets_mapping=True)
            for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
                spans = spans_from_offsets(ids, offsets, self.tokenizer.convert_ids_to_tokens(ids),
                                           self.tokenizer.all_special_ids)
                out.append((list(ids), spans))
        else:
            enc = self.tokenizer(texts)
            for ids, text in zip(enc["input_ids"], texts, strict=True):
                tokens = self.tokenizer.convert_ids_to_tokens(ids)
                out.append((list(ids), spans_by_matching(tokens, self.special_tokens, text)))
        if self.n_token_ids is not None:
            largest = max((max(ids) for ids, _ in out if ids), default=-1)
            if largest >= self.n_token_ids:
                raise InputError(f"model card {self.name}: its tokenizer gives token id {largest}, beyond the "
                                 f"model's {self.n_token_ids} token embeddings: tokenizer and model do not belong "
                                 "together (check hf_id, or the folder's tokenizer files)")
        if self.unk_id is not None:
            for (ids, _), text in zip(out, texts, strict=True):
                if self.unk_id in ids:
                    raise InputError(f"model {self.name}: its tokenizer maps part of a sequence to the unknown token "
                                     f"(first 60 bases: {text[:60]}); it has no token for some base "
                                     "(N?), so the sequence cannot be embedded faithfully")
        return out

    # ---------------------------------------------------------------- forward
    def _check_layers(self, layers: list[str]) -> None:
        for name in layers:
            if name not in self.layers:
                raise InputError(f"model card {self.name}, field layers: unknown layer {name!r}; "
                                 f"expected one of {self.layers}")
            if not name.startswith("hidden_states.") and name not in self.modules:
                raise InputError(f"model card {self.name}, field layers: {name!r} is not a module of "
                                 f"{type(self.model).__name__} (e.g. {list(self.modules)[1:6]})")

    def forward(self, ids: list[list[int]], layers: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Run one padded batch. Returns ({layer: float32 [b, T, d]}, row-position of each token [b, T] or -1)."""
        b, longest = len(ids), max(len(x) for x in ids)
        input_ids = torch.full((b, longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b, longest), dtype=torch.long)
        position = np.full((b, longest), -1, dtype=np.int64)
        for row, x in enumerate(ids):
            lo = longest - len(x) if self.padding_side == "left" else 0
            input_ids[row, lo:lo + len(x)] = torch.tensor(x)
            mask[row, lo:lo + len(x)] = 1
            position[row, lo:lo + len(x)] = np.arange(len(x))
        captured: dict[str, torch.Tensor] = {}
        handles = []
        n_real = int(mask.sum())
        for name in layers:
            if name.startswith("hidden_states."):
                continue

            def hook(_module, _inputs, output, name=name):
                captured[name] = output[0] if isinstance(output, (tuple, list)) else output

            handles.append(self.modules[name].register_forward_hook(hook))
        inputs = {"input_ids": input_ids.to(self.device)}
        if self.accepts_mask:
            inputs["attention_mask"] = mask.to(self.device)
        if self.padding_side == "left" and self.accepts_positions:
            inputs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0).to(self.device)
        want_hidden = any(name.startswith("hidden_states.") for name in layers)
        try:
            out = self.model(**inputs, output_hidden_states=True) if want_hidden else self.model(**inputs)
        except (RuntimeError, IndexError) as err:
            # out of memory is not a position overflow (an ALiBi model such as DNABERT-2 runs pieces past its
            # config's max_position_embeddings): it goes up as it is, not as advice to shorten max_tokens
            oom = isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()
            positions = None if oom else beyond_positions(self.model, longest)
            if positions:
                raise InputError(f"model card {self.name}: a piece of {longest} tokens does not fit the model's "
                                 f"{positions} positions (config max_position_embeddings; the model said: "
                                 f"{' '.join(str(err).split())[:160]}); set the card's max_tokens to what the model "
                                 "takes, and pieces are cut to it") from err
            raise
        finally:
            for h in handles:
                h.remove()
        result = {}
        hidden = getattr(out, "hidden_states", None) if want_hidden else None
        for name in layers:
            if name.startswith("hidden_states."):
                if hidden is None:
                    raise InputError(f"model {self.name}: the model returns no hidden_states (its code ignores "
                                     "output_hidden_states); name module paths as layers instead")
                k = int(name.split(".", 1)[1])
                if k >= len(hidden):
                    raise InputError(f"model card {self.name}, field layers: {name} but the model has "
                                     f"{len(hidden)} hidden states")
                t = hidden[k]
            else:
                t = captured[name]
            if not isinstance(t, torch.Tensor):
                raise InputError(f"model card {self.name}, field layers: the module {name!r} outputs "
                                 f"{type(t).__name__}, not activations [batch, tokens, d]; name a module whose output "
                                 "is one (a block, or a hidden_states.<k> layer)")
            t = t.detach()
            if t.dim() == 2 and t.shape[0] == n_real:  # unpadded [n_real, d] (DNABERT-2 style): scatter back
                full = torch.zeros((b, longest, t.shape[1]), dtype=t.dtype, device=t.device)
                full[mask.to(t.device).bool()] = t
                t = full
            if t.dim() != 3 or t.shape[:2] != (b, longest):
                raise InputError(f"model card {self.name}, field layers: the module {name!r} outputs shape "
                                 f"{tuple(t.shape)}, not activations [batch, tokens, d] = [{b}, {longest}, d] (a pooler "
                                 "or a head?); name a module with one vector per token")
            result[name] = t.float().cpu().numpy()
        return result, position

    @torch.inference_mode()
    def embed(self, seqs: list[str], layers: list[str]) -> dict[str, TokenActivations]:
        """DNA strings -> {layer: TokenActivations} over base-covering tokens, in sequence coordinates."""
        self._check_layers(layers)
        seqs, _ = clean_sequences(seqs, self.name, self.input_counts)
        pieces, tokens, contexts = self.plan(seqs)
        piece_out: list[tuple[np.ndarray, dict[str, np.ndarray]] | None] = [None] * len(pieces)
        for batch in token_budget_batches([len(t[0]) for t in tokens], self.token_budget, self.max_rows,
                                          same_length=self.pad_free):
            acts, position = self.forward([tokens[i][0] for i in batch], layers)
            for row, i in enumerate(batch):
                spans = tokens[i][1]
                real = np.flatnonzero(spans[:, 1] > spans[:, 0])
                cols = np.flatnonzero(position[row] >= 0)[real]
                values = {}
                for name in layers:
                    values[name] = acts[name][row, cols]
                    check_finite(values[name], self.name, name, describe(pieces[i]))
                    if self.hidden_size is not None and values[name].shape[1] != self.hidden_size:
                        raise InputError(f"model card {self.name}, field hidden_size: {self.hidden_size}, but layer "
                                         f"{name} is {values[name].shape[1]} wide")
                piece_out[i] = (spans[real], values)
        return assemble(seqs, pieces, piece_out, layers, contexts, self.rc_average)

    def plan(self, seqs: list[str]) -> tuple[list[Piece], list[tuple[list[int], np.ndarray]], list[int]]:
        """Pieces of the (cleaned) sequences, their tokens (see `tokenize`) and each sequence's context in bases.

        Sequences are cut into pieces of `context` bases. With the card's `max_tokens`, a sequence with a piece
        that tokenizes to more tokens than that (special tokens included) is cut again into shorter pieces,
        overlap scaled alike, until every piece fits: k-mer and BPE vocabularies give more tokens per base on
        N runs and other sequence they cover poorly (Nucleotide Transformer: one token per base around N),
        and a model with learned absolute positions fails on a piece longer than its positions.
        """
        contexts = [self.context] * len(seqs)
        while True:
            overlaps = [self.overlap * c // self.context for c in contexts]
            pieces = plan_pieces(seqs, contexts, overlaps, self.rc_average)
            tokens = self.tokenize([p.text for p in pieces])
            if self.max_tokens is None:
                return pieces, tokens, contexts
            shrink: dict[int, int] = {}
            for piece, (ids, spans) in zip(pieces, tokens, strict=True):
                if len(ids) <= self.max_tokens:
                    continue
                # scaled from the piece's own width: a sequence shorter than its context gives a shorter piece,
                # and scaling the context moved it by a base or two a round (800 tokenizations of a 1 kb N window)
                fit = fitting_width(len(ids), spans, self.max_tokens, min(contexts[piece.seq], len(piece.text)))
                if fit is None:
                    raise InputError(f"model card {self.name}, field max_tokens: {describe(piece)} is "
                                     f"{len(ids)} tokens, more than max_tokens {self.max_tokens} even at "
                                     f"{contexts[piece.seq]} base(s) a piece")
                shrink[piece.seq] = min(shrink.get(piece.seq, fit), fit)
            if not shrink:
                return pieces, tokens, contexts
            for i, context in shrink.items():
                contexts[i] = context


def fitting_width(n_ids: int, spans: np.ndarray, max_tokens: int, width: int) -> int | None:
    """The shorter width, in bases, to cut a `width`-base stretch to when it tokenized to `n_ids` ids (spans
    [n_ids, 2]: its tokens' bases, (0, 0) for special tokens) and a model takes `max_tokens` (special tokens
    included): the bases scaled by the room left beside the special tokens, at least one fewer than before;
    None when not even one base fits. Callers retokenize and repeat until the stretch fits (the embedder's
    pieces, `HFEmbedder.plan`; the variant scorer's windows, `interp.embed.variant_effect.fit_window`)."""
    n_real = int(np.count_nonzero(spans[:, 1] > spans[:, 0]))
    room = max_tokens - (n_ids - n_real)  # tokens left for bases beside the special tokens
    if room < 1 or width == 1:
        return None
    return max(1, min(width - 1, width * room // max(n_real, 1)))


def describe(piece: Piece) -> str:
    """Human-readable window of a piece, for error messages."""
    strand = "reverse strand, " if piece.rc else ""
    return f"sequence {piece.seq} ({strand}bases {piece.start}-{piece.start + len(piece.text)})"


def assemble(seqs: list[str], pieces: list[Piece], piece_out: list, layers: list[str], context: int | list[int],
             with_rc: bool) -> dict[str, TokenActivations]:
    """Stitch each sequence's chunks (and average with its reverse strand) into TokenActivations.

    context: the piece length in bases the sequences were cut with, one value or one per sequence.
    """
    contexts = context if isinstance(context, list) else [context] * len(seqs)
    by_key: dict[tuple[int, bool], list] = {}
    for piece, out in zip(pieces, piece_out, strict=True):
        by_key.setdefault((piece.seq, piece.rc), []).append((piece.start, out[0], out[1]))
    spans_all, values_all = [], {name: [] for name in layers}
    counts = []
    for i, seq in enumerate(seqs):
        spans, values = stitch(sorted(by_key[(i, False)], key=lambda c: c[0]), len(seq), contexts[i])
        if with_rc:
            rc_spans, rc_values = stitch(sorted(by_key[(i, True)], key=lambda c: c[0]), len(seq), contexts[i])
            values = {name: rc_average(spans, values[name], rc_spans, rc_values[name], len(seq)) for name in layers}
        spans_all.append(spans)
        counts.append(len(spans))
        for name in layers:
            values_all[name].append(values[name])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    span_all = np.concatenate(spans_all).astype(np.int32) if spans_all else np.zeros((0, 2), np.int32)
    return {name: TokenActivations(values=np.concatenate(values_all[name]).astype(np.float32, copy=False),
                                   offsets=offsets, base_span=span_all) for name in layers}
