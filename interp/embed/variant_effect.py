"""Zero-shot variant effect scores from DNA language models (as the NT and Evo 2 papers score ClinVar).

- Masked models: log-likelihood ratio at the variant with the variant masked,
      LLR = log p(ALT | context, variant masked) - log p(REF | context, variant masked);
  for k-mer / BPE tokenizers the whole token holding the variant is masked and the token strings
  with REF and with ALT at that base are compared (both must be in the vocabulary).
- Causal models: log p(ALT sequence) - log p(REF sequence), summed over every predicted token. A
  variant in the window's first token is refused when the tokenizer puts no start token before it
  (HyenaDNA's character tokenizer, Evo 2's bytes): that token is never predicted, so the score would not
  hold p(ALT) vs p(REF) at all (`score_cohort_variants` meets this only at a contig's first base).
Negative scores: the model finds ALT less likely than REF. Only SNVs are scored (an indel changes
the token frame, so masked LLRs are not comparable). Sequences are windows around the variant;
`pos` is the variant's 0-based position in its window, whose base there must equal REF.

`score_cohort_variants` scores every variant of a cohort on the reference window around it (the
`variant_effect` stage writes `cohort/variant_effect/<model>.parquet`); `load_scorer` picks the scorer of a
model card's family. The rank stage turns the scores into the `variant_effect:<model>` feature family
(`interp.rank_inputs.variant_effect_family`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from interp.embed.pieces import clean_sequences
from interp.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


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
        tokens = tokens.to(next(model.parameters()).device)
        logp = torch.log_softmax(model(tokens).double(), dim=-1).cpu()  # [b, L, 4] over A, C, G, T
        for row, i in enumerate(idx):
            lp = logp[row, positions[i]]
            out[i] = float(lp[BASES.index(alts[i].upper())] - lp[BASES.index(refs[i].upper())])
    return out


def fit_window(tokenizer, w: str, p: int, max_tokens: int | None, i: int = 0) -> tuple[str, int]:
    """(window, position) cut around base `p` of window `w` until it tokenizes to at most `max_tokens` ids
    (special tokens included; the card's position limit, as the embedder reads it): an N run is one token per
    base to a k-mer tokenizer, so a window of `context` bases can exceed the model's positions (an IndexError
    deep in the model, or positions it never trained on). Unchanged without `max_tokens` or when it fits."""
    from interp.embed.hf import fitting_width

    if not max_tokens:
        return w, p
    while True:
        ids, spans = _ids_and_spans(tokenizer, w)
        if len(ids) <= max_tokens:
            return w, p
        width = fitting_width(len(ids), spans, max_tokens, len(w))
        if width is None:
            raise InputError(f"variant {i}: its window is {len(ids)} tokens, more than max_tokens {max_tokens} "
                             f"even at {len(w)} base(s)")
        start = min(max(p - width // 2, 0), len(w) - width)
        w, p = w[start:start + width], p - start


@torch.inference_mode()
def hf_masked_llr(model, tokenizer, windows: list[str], positions: list[int], refs: list[str],
                  alts: list[str], max_tokens: int | None = None) -> np.ndarray:
    """float64 [n]: LLR of ALT vs REF at the masked token holding the variant (transformers masked LM); each
    window cut around its variant to `max_tokens` tokens where it is longer (`fit_window`)."""
    windows = check_snvs(windows, positions, refs, alts)
    if tokenizer.mask_token_id is None:
        raise InputError("variant effect: the tokenizer has no mask token; use a masked language model")
    vocab = tokenizer.get_vocab()
    out = np.zeros(len(windows))
    for i, (w, p, alt) in enumerate(zip(windows, positions, alts, strict=True)):
        w, p = fit_window(tokenizer, w, p, max_tokens, i)
        ids, spans = _ids_and_spans(tokenizer, w, i)
        k, ref_token, alt_token = _variant_tokens(tokenizer, ids, spans, w, p, alt, i)
        missing = [t for t in (ref_token, alt_token) if t not in vocab]
        if missing:
            raise InputError(f"variant {i}: token {missing[0]!r} is not in the model's vocabulary; "
                             "masked LLRs need REF and ALT tokens the model can predict")
        masked = list(ids)
        masked[k] = tokenizer.mask_token_id
        with _fits_positions(model, len(masked), i):
            logits = model(input_ids=torch.tensor([masked], device=model.device)).logits[0, k].double()
        logp = torch.log_softmax(logits, dim=-1)
        out[i] = float(logp[vocab[alt_token]] - logp[vocab[ref_token]])
    return out


def _variant_tokens(tokenizer, ids: list[int], spans: np.ndarray, w: str, p: int, alt: str,
                    i: int) -> tuple[int, str, str]:
    """(k, REF token, ALT token): the index in `ids` of the token holding base `p` of window `w`, that token's
    vocabulary string, and the same string with ALT at base p. A word-piece marker the token string carries
    (WordPiece '##', SentencePiece U+2581, byte-level U+0120) is kept in both: 'GA' and '##GA' are different
    tokens, and the model predicts the one that stands in the sequence."""
    holding = np.flatnonzero((spans[:, 0] <= p) & (spans[:, 1] > p))
    if holding.size == 0:
        raise InputError(f"variant {i}: no token of the tokenized window covers its base {p}")
    k = int(holding[0])
    start, end = int(spans[k, 0]), int(spans[k, 1])
    ref_token = tokenizer.convert_ids_to_tokens(ids[k])
    marker = len(ref_token) - (end - start)
    if marker < 0 or ref_token[marker:].upper() != w[start:end]:
        raise InputError(f"variant {i}: token {ref_token!r} does not spell its bases {w[start:end]!r}; "
                         "cannot form the ALT token")
    cut = marker + p - start
    alt_token = ref_token[:cut] + (alt.upper() if ref_token[cut].isupper() else alt.lower()) + ref_token[cut + 1:]
    return k, ref_token, alt_token


@torch.inference_mode()
def hf_causal_delta(model, tokenizer, windows: list[str], positions: list[int], refs: list[str],
                    alts: list[str], max_tokens: int | None = None) -> np.ndarray:
    """float64 [n]: log p(ALT window) - log p(REF window) under a causal LM (sum over predicted tokens); each
    window cut around its variant to `max_tokens` tokens where it is longer (`fit_window`)."""
    windows = check_snvs(windows, positions, refs, alts)
    out = np.zeros(len(windows))
    for i, (w, p, alt) in enumerate(zip(windows, positions, alts, strict=True)):
        w, p = fit_window(tokenizer, w, p, max_tokens, i)
        _, spans = _ids_and_spans(tokenizer, w, i)
        holding = np.flatnonzero((spans[:, 0] <= p) & (spans[:, 1] > p))
        if holding.size == 0:
            raise InputError(f"variant {i}: no token of the tokenized window covers its base {p}")
        if int(holding[0]) == 0:
            raise InputError(unpredicted_first_token(i))
        alt_w = w[:p] + alt.upper() + w[p + 1:]
        with _fits_positions(model, len(spans), i):
            out[i] = sequence_loglik(model, tokenizer, alt_w) - sequence_loglik(model, tokenizer, w)
    return out


def unpredicted_first_token(i: int) -> str:
    """The refusal of a causal score for variant `i` sitting in the window's first token."""
    return (f"variant {i}: in the window's first token, which a causal model without a start token never "
            "predicts (the score would leave out p(ALT) vs p(REF) itself); give it left context")


@contextlib.contextmanager
def _fits_positions(model, n_tokens: int, i: int):
    """Turn the model's failure on a window of n_tokens longer than its positions (`beyond_positions`) into variant
    i's InputError, a skip reason naming the fix."""
    try:
        yield
    except (RuntimeError, IndexError) as err:
        from interp.embed.hf import beyond_positions

        positions = beyond_positions(model, n_tokens)
        if positions:
            raise InputError(f"variant {i}: its window does not fit the model's {positions} positions; set the card's "
                             "max_tokens, and windows are cut to it") from err
        raise


@torch.inference_mode()
def sequence_loglik(model, tokenizer, seq: str) -> float:
    """Sum over tokens 1..n-1 of log p(token | earlier tokens) under a causal LM."""
    ids = torch.tensor([tokenizer(seq)["input_ids"]], device=model.device)
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    return float(logp.gather(1, ids[0, 1:, None]).sum())


def _ids_and_spans(tokenizer, seq: str, i: int | None = None) -> tuple[list[int], np.ndarray]:
    """(token ids, spans [n, 2]) of window `seq`; with `i`, InputError for variant i when part of it tokenizes to
    the unknown token (a tokenizer without N, next to an N run): the model would score a window it cannot read, as
    the embedder refuses to embed one."""
    from interp.embed.hf import spans_by_matching, spans_from_offsets

    if tokenizer.is_fast:
        enc = tokenizer(seq, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        spans = spans_from_offsets(ids, enc["offset_mapping"], tokenizer.convert_ids_to_tokens(ids),
                                   tokenizer.all_special_ids)
    else:
        ids = list(tokenizer(seq)["input_ids"])
        spans = spans_by_matching(tokenizer.convert_ids_to_tokens(ids), set(tokenizer.all_special_tokens), seq)
    if i is not None and tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        raise InputError(f"variant {i}: its window holds bases the tokenizer maps to the unknown token (N?)")
    return ids, spans


@torch.inference_mode()
def evo2_causal_delta(model, windows: list[str], positions: list[int], refs: list[str], alts: list[str],
                      device: str = "cuda") -> np.ndarray:
    """float64 [n]: log p(ALT window) - log p(REF window) under Evo 2, through the `evo2` package's interface:
    `model.tokenizer.tokenize(seq)` -> byte token ids, `model(ids)` -> (outputs, embeddings) with outputs[0]
    the logits [batch, L, vocab]. Sums over predicted tokens 1..n-1, as `hf_causal_delta`."""
    windows = check_snvs(windows, positions, refs, alts)

    def loglik(seq: str) -> float:
        ids = torch.tensor(model.tokenizer.tokenize(seq), dtype=torch.int).unsqueeze(0).to(device)
        logits = model(ids)[0][0][0]  # [L, vocab]
        logp = torch.log_softmax(logits[:-1].double(), dim=-1)
        return float(logp.gather(1, ids[0, 1:, None].long()).sum())

    out = np.zeros(len(windows))
    for i, (w, p, alt) in enumerate(zip(windows, positions, alts, strict=True)):
        if p == 0:  # byte tokens, no start token: base 0 is never predicted
            raise InputError(unpredicted_first_token(i))
        out[i] = loglik(w[:p] + alt.upper() + w[p + 1:]) - loglik(w)
    return out


# ---------------------------------------------------------------- cohort variants
@dataclass
class VariantScorer:
    """One model's zero-shot scorer: score(windows, positions, refs, alts) -> float64 [n] (see module doc).

    method: "masked_llr" (masked models) or "causal_delta" (causal models); context: the longest window,
    in bases, the model takes in one pass (windows are never chunked: the score needs one forward pass).
    """

    model: str
    method: str
    context: int
    score: Callable[[list[str], list[int], list[str], list[str]], np.ndarray]


def scorer_dtype(dtype: str) -> str:
    """The precision a transformers scorer runs at: `auto` means float32 here, not the embedder's bfloat16 on CUDA,
    since a score is a difference of log-probabilities and bfloat16 logits of size 8-16 lie 0.0625 apart (8
    significant bits), as large as many variants' scores; an explicit embed.dtype is kept."""
    return "float32" if dtype == "auto" else dtype


def load_scorer(card: dict, checkpoint: str | Path | None = None, device: str = "cpu", hf_cache: str | None = None,
                dtype: str = "auto", batch_size: int = 64) -> VariantScorer:
    """The scorer of a model card's family, loaded by the embedding loaders (`interp.embed`).

    tiny: the built-in model from its checkpoint, masked LLR (`tiny_masked_llr`; context = the card's
    context, at most the checkpoint's max_len). hf: `HFEmbedder` with its language-model head (the card's
    hf_class when it is masked_lm or causal_lm, else causal_lm for a `causal` card, masked_lm otherwise):
    `hf_causal_delta` or `hf_masked_llr`, each window cut around its variant to the card's `max_tokens`
    where it tokenizes longer (as the embedder cuts its pieces). evo2: the evo2 package's model,
    `evo2_causal_delta`.
    """
    name, family = card["name"], card["family"]
    if family == "tiny":
        from interp.embed.tiny import load_tiny_checkpoint

        if checkpoint is None:
            raise InputError(f"model card {name}: family tiny needs a checkpoint (run the pretrain step)")
        tiny = load_tiny_checkpoint(Path(checkpoint)).to(device)
        context = min(int(card["context"]), int(tiny.cfg.max_len))
        return VariantScorer(name, "masked_llr", context,
                             lambda w, p, r, a: tiny_masked_llr(tiny, w, p, r, a, batch_size=batch_size))
    if family == "hf":
        from interp.embed.hf import HFEmbedder

        hf_class = card.get("hf_class")
        if hf_class not in ("masked_lm", "causal_lm"):
            hf_class = "causal_lm" if card.get("causal") else "masked_lm"
        loaded = HFEmbedder({**card, "hf_class": hf_class}, device=device, cache_dir=hf_cache,
                            dtype=scorer_dtype(dtype))
        loaded.check_head()  # a head missing from the checkpoint would score at random
        model, tok, limit = loaded.model, loaded.tokenizer, loaded.max_tokens
        if hf_class == "causal_lm":
            return VariantScorer(name, "causal_delta", int(card["context"]),
                                 lambda w, p, r, a: hf_causal_delta(model, tok, w, p, r, a, max_tokens=limit))
        if tok.mask_token_id is None:  # a model-wide refusal, not one variant's: raised inside scoring it was
            # caught per variant and every variant skipped, and the job succeeded with nothing scored
            raise InputError(f"model card {name}: variant effect: the tokenizer has no mask token, so the masked-LM "
                             "score cannot be computed; use a masked language model, or hf_class: causal_lm for a "
                             "causal one")
        return VariantScorer(name, "masked_llr", int(card["context"]),
                             lambda w, p, r, a: hf_masked_llr(model, tok, w, p, r, a, max_tokens=limit))
    if family == "evo2":
        from interp.embed.registry import Evo2Embedder

        evo = Evo2Embedder(card, device=device, hf_cache=hf_cache)  # the cache prefetch filled, as for embedding
        return VariantScorer(name, "causal_delta", int(card["context"]),
                             lambda w, p, r, a: evo2_causal_delta(evo.model, w, p, r, a, device=device))
    raise InputError(f"model card {name}, field family: no variant-effect scorer for family {family!r}")


def variant_window(length: int, pos0: int, width: int) -> tuple[int, int]:
    """[start, end) of the `width`-base window around 0-based position `pos0` of a contig of `length` bases:
    the variant at offset width // 2, the window shifted to stay inside the contig near its ends (the
    whole contig when it is shorter than width)."""
    width = min(int(width), int(length))
    start = min(max(int(pos0) - width // 2, 0), int(length) - width)
    return start, start + width


def cohort_variants(var: pd.DataFrame) -> pl.DataFrame:
    """variant_id, contig, pos (1-based), ref, alt of a genotype AnnData's var table (the ancestry stage's
    `cohort/genotypes.h5ad`: index variant_id, columns contig, pos, ref, alt)."""
    return pl.DataFrame({"variant_id": var.index.astype(str).tolist(),
                         "contig": var["contig"].astype(str).tolist(),
                         "pos": var["pos"].to_numpy().astype(np.int64),
                         "ref": var["ref"].astype(str).tolist(), "alt": var["alt"].astype(str).tolist()})


def snv_of(pos: int, ref: str, alt: str) -> tuple[int, str, str] | None:
    """(pos, REF base, ALT base) of a record substituting one base, or None. REF and ALT (upper-case A, C, G,
    T) may carry shared bases around the substituted one, as a multi-allelic record split without the
    reference keeps them (`bcftools norm -m-` turns AT>CT,A into AT>CT and AT>A): AT>CT at pos is the SNV A>C
    at pos, GA>GC the SNV A>C at pos + 1. pos: 1-based, of REF's first base."""
    if len(ref) != len(alt) or not ref or set(ref + alt) - set("ACGT"):
        return None
    differ = [k for k in range(len(ref)) if ref[k] != alt[k]]
    if len(differ) != 1:
        return None
    k = differ[0]
    return pos + k, ref[k], alt[k]


NOT_SNV = "not an SNV"
REF_MISMATCH = "REF does not match the reference"
OUTSIDE = "outside the reference contig"


def score_cohort_variants(variants: pl.DataFrame, fasta, scorer: VariantScorer, width: int | None = None,
                          chunk: int = 256) -> tuple[pl.DataFrame, dict]:
    """Score every biallelic SNV of `variants` on the reference window around it (a record with ALT equal
    to REF is no SNV: null score, "not an SNV"; one with REF and ALT padded by shared bases, such as AT>CT,
    is scored as its one substituted base, `snv_of`, whose REF bases must all match the reference).

    variants: variant_id, contig, pos (1-based), ref, alt (`cohort_variants`). fasta: contig -> sequence
    supporting len() and slicing (an `interp.genome.fasta.Reference`, or a dict of strings). Window:
    `variant_window` of width `width` (None: the scorer's context; capped at the context). Variants run
    `chunk` at a time; when the scorer refuses a chunk (InputError, e.g. a BPE model without the ALT
    token), its variants are scored one by one and the refused ones keep a null score with the reason.
    Returns (table, stats). table, in input order: variant_id, contig, pos, ref, alt (the record's), score (Float64; null
    unless scored), method, model, window_start, window_end (0-based half-open; null when no window was
    read), skipped ("" when scored, else the reason: "not an SNV", REF mismatch, ...). stats: model, method,
    context, width, n_variants, n_scored, n_not_snv, skipped {reason: count}.
    """
    from collections import Counter

    used = min(int(width or scorer.context), int(scorer.context))
    n = variants.height
    ids, contigs = variants["variant_id"].to_list(), variants["contig"].cast(pl.String).to_list()
    pos = variants["pos"].cast(pl.Int64).to_list()
    refs = [str(r).upper() for r in variants["ref"].to_list()]
    alts = [str(a).upper() for a in variants["alt"].to_list()]
    score = np.full(n, np.nan)
    start = np.full(n, -1, dtype=np.int64)
    end = np.full(n, -1, dtype=np.int64)
    reason = [""] * n
    snvs, snv = [], {}
    for i in range(n):
        found = snv_of(pos[i], refs[i], alts[i])
        if found is None:
            reason[i] = NOT_SNV
        elif contigs[i] not in fasta or not 1 <= pos[i] <= pos[i] + len(refs[i]) - 1 <= len(fasta[contigs[i]]):
            reason[i] = OUTSIDE
        elif len(refs[i]) > 1 and str(fasta[contigs[i]][pos[i] - 1:pos[i] - 1 + len(refs[i])]).upper() != refs[i]:
            reason[i] = REF_MISMATCH
        else:
            snvs.append(i)
            snv[i] = found
    for first in range(0, len(snvs), chunk):
        rows, windows, offsets = [], [], []
        for i in snvs[first:first + chunk]:
            seq = fasta[contigs[i]]
            at, ref_base, _ = snv[i]
            start[i], end[i] = variant_window(len(seq), at - 1, used)
            window = str(seq[start[i]:end[i]]).upper()
            offset = at - 1 - int(start[i])
            if window[offset] != ref_base:
                reason[i] = REF_MISMATCH
                continue
            rows.append(i)
            windows.append(window)
            offsets.append(offset)
        if not rows:
            continue
        r_refs, r_alts = [snv[i][1] for i in rows], [snv[i][2] for i in rows]
        try:
            score[rows] = scorer.score(windows, offsets, r_refs, r_alts)
        except InputError:
            for k, i in enumerate(rows):
                try:
                    score[i] = scorer.score(windows[k:k + 1], offsets[k:k + 1], r_refs[k:k + 1], r_alts[k:k + 1])[0]
                except InputError as err:
                    reason[i] = str(err).removeprefix("variant 0: ")
    scored = np.array([r == "" for r in reason], dtype=bool)
    table = pl.DataFrame({
        "variant_id": ids, "contig": contigs, "pos": pl.Series(pos, dtype=pl.Int64), "ref": refs, "alt": alts,
        "score": pl.Series(np.where(scored, score, np.nan), dtype=pl.Float64).fill_nan(None),
        "method": [scorer.method] * n, "model": [scorer.model] * n,
        "window_start": pl.Series(start, dtype=pl.Int64).replace(-1, None),
        "window_end": pl.Series(end, dtype=pl.Int64).replace(-1, None),
        "skipped": reason}, schema_overrides={"variant_id": pl.String, "contig": pl.String, "ref": pl.String,
                                              "alt": pl.String, "method": pl.String, "model": pl.String,
                                              "skipped": pl.String})
    counts = Counter(r for r in reason if r)
    stats = {"model": scorer.model, "method": scorer.method, "context": int(scorer.context), "width": used,
             "n_variants": n, "n_scored": int(scored.sum()), "n_not_snv": int(counts.get(NOT_SNV, 0)),
             "skipped": dict(sorted(counts.items()))}
    return table, stats
