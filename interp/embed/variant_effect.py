"""Zero-shot variant effect scores from DNA language models (as the NT and Evo 2 papers score ClinVar).

- Masked models: log-likelihood ratio at the variant with the variant masked,
      LLR = log p(ALT | context, variant masked) - log p(REF | context, variant masked);
  for k-mer / BPE tokenizers the whole token holding the variant is masked and the token strings
  with REF and with ALT at that base are compared (both must be in the vocabulary).
- Causal models: log p(ALT sequence) - log p(REF sequence), summed over every predicted token.
Negative scores: the model finds ALT less likely than REF. Only SNVs are scored (an indel changes
the token frame, so masked LLRs are not comparable). Sequences are windows around the variant;
`pos` is the variant's 0-based position in its window, whose base there must equal REF.

Library functions only: wiring the scores into rank and the report as a feature family is later work.
"""

from __future__ import annotations

import numpy as np
import torch

from interp.embed.pieces import clean_sequences
from interp.errors import InputError


def check_snvs(windows: list[str], positions: list[int], refs: list[str], alts: list[str]) -> list[str]:
    """Upper-cased windows; InputError for a non-SNV, a position outside its window or REF not matching."""
    if not len(windows) == len(positions) == len(refs) == len(alts):
        raise InputError("variant effect: windows, positions, refs and alts differ in length")
    windows, _ = clean_sequences(windows, "variant effect")
    for i, (w, p, r, a) in enumerate(zip(windows, positions, refs, alts, strict=True)):
        if len(r) != 1 or len(a) != 1 or r.upper() not in "ACGT" or a.upper() not in "ACGT":
            raise InputError(f"variant {i}: only SNVs (one of A, C, G, T each) are scored, got {r}>{a}")
        if not 0 <= p < len(w):
            raise InputError(f"variant {i}: position {p} outside its window of {len(w)} bases")
        if w[p] != r.upper():
            raise InputError(f"variant {i}: REF {r} does not match the window base {w[p]} at position {p}")
    return windows


@torch.inference_mode()
def tiny_masked_llr(model, windows: list[str], positions: list[int], refs: list[str], alts: list[str],
                    batch_size: int = 64) -> np.ndarray:
    """float64 [n]: masked-LM LLR of ALT vs REF for the built-in character model (TinyDNALM)."""
    from interp.lm.model import BASES, MASK_ID, PAD_ID, encode

    windows = check_snvs(windows, positions, refs, alts)
    out = np.zeros(len(windows))
    model.eval()
    for first in range(0, len(windows), batch_size):
        idx = range(first, min(first + batch_size, len(windows)))
        longest = max(len(windows[i]) for i in idx)
        tokens = torch.full((len(idx), longest), PAD_ID, dtype=torch.long)
        for row, i in enumerate(idx):
            tokens[row, :len(windows[i])] = encode(windows[i])
            tokens[row, positions[i]] = MASK_ID
        logp = torch.log_softmax(model(tokens).double(), dim=-1)  # [b, L, 4] over A, C, G, T
        for row, i in enumerate(idx):
            lp = logp[row, positions[i]]
            out[i] = float(lp[BASES.index(alts[i].upper())] - lp[BASES.index(refs[i].upper())])
    return out


@torch.inference_mode()
def hf_masked_llr(model, tokenizer, windows: list[str], positions: list[int], refs: list[str],
                  alts: list[str]) -> np.ndarray:
    """float64 [n]: LLR of ALT vs REF at the masked token holding the variant (transformers masked LM)."""
    windows = check_snvs(windows, positions, refs, alts)
    if tokenizer.mask_token_id is None:
        raise InputError("variant effect: the tokenizer has no mask token; use a masked language model")
    vocab = tokenizer.get_vocab()
    out = np.zeros(len(windows))
    for i, (w, p, alt) in enumerate(zip(windows, positions, alts, strict=True)):
        ids, spans = _ids_and_spans(tokenizer, w)
        k = int(np.flatnonzero((spans[:, 0] <= p) & (spans[:, 1] > p))[0])
        ref_text = w[spans[k, 0]:spans[k, 1]]
        alt_text = ref_text[:p - spans[k, 0]] + alt.upper() + ref_text[p - spans[k, 0] + 1:]
        missing = [t for t in (ref_text, alt_text) if t not in vocab]
        if missing:
            raise InputError(f"variant {i}: token {missing[0]!r} is not in the model's vocabulary; "
                             "masked LLRs need REF and ALT tokens the model can predict")
        masked = list(ids)
        masked[k] = tokenizer.mask_token_id
        logits = model(input_ids=torch.tensor([masked], device=model.device)).logits[0, k].double()
        logp = torch.log_softmax(logits, dim=-1)
        out[i] = float(logp[vocab[alt_text]] - logp[vocab[ref_text]])
    return out


@torch.inference_mode()
def hf_causal_delta(model, tokenizer, windows: list[str], positions: list[int], refs: list[str],
                    alts: list[str]) -> np.ndarray:
    """float64 [n]: log p(ALT window) - log p(REF window) under a causal LM (sum over predicted tokens)."""
    windows = check_snvs(windows, positions, refs, alts)
    out = np.zeros(len(windows))
    for i, (w, p, alt) in enumerate(zip(windows, positions, alts, strict=True)):
        alt_w = w[:p] + alt.upper() + w[p + 1:]
        out[i] = sequence_loglik(model, tokenizer, alt_w) - sequence_loglik(model, tokenizer, w)
    return out


@torch.inference_mode()
def sequence_loglik(model, tokenizer, seq: str) -> float:
    """Sum over tokens 1..n-1 of log p(token | earlier tokens) under a causal LM."""
    ids = torch.tensor([tokenizer(seq)["input_ids"]], device=model.device)
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    return float(logp.gather(1, ids[0, 1:, None]).sum())


def _ids_and_spans(tokenizer, seq: str) -> tuple[list[int], np.ndarray]:
    from interp.embed.hf import spans_by_matching

    if tokenizer.is_fast:
        enc = tokenizer(seq, return_offsets_mapping=True)
        spans = np.asarray(enc["offset_mapping"], dtype=np.int32).reshape(-1, 2)
        spans[np.isin(enc["input_ids"], tokenizer.all_special_ids)] = -1
        return list(enc["input_ids"]), spans
    ids = tokenizer(seq)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return list(ids), spans_by_matching(tokens, set(tokenizer.all_special_tokens), seq)
