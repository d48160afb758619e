"""Zero-shot variant effect scores: masked-LM LLR (built-in model, ESM with 6-mers) and causal delta."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from interp.embed.tiny import load_tiny_checkpoint
from interp.embed.variant_effect import hf_causal_delta, hf_masked_llr, sequence_loglik, tiny_masked_llr
from interp.errors import InputError
from interp.lm.model import BASES, MASK_ID, TinyDNALM, TinyLMConfig, encode
from interp.lm.pretrain import pretrain_tiny_dnalm, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MOTIF = "ACGTTGCAGGATCCAT"  # 16-base period: every base is predictable from its neighbours


def _other(base: str, k: int) -> str:
    return [b for b in BASES if b != base][k % 3]


@pytest.fixture(scope="module")
def random_tiny(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ve") / "tiny.safetensors"
    save_checkpoint(TinyDNALM(TinyLMConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=64, dropout=0.0)),
                    path)
    return load_tiny_checkpoint(path)


def test_tiny_llr_is_the_masked_log_ratio_and_antisymmetric(random_tiny):
    rng = np.random.default_rng(0)
    windows = ["".join(rng.choice(list("ACGT"), 40)) for _ in range(6)]
    pos = [int(p) for p in rng.integers(0, 40, 6)]
    refs = [w[p] for w, p in zip(windows, pos, strict=True)]
    alts = [_other(r, k) for k, r in enumerate(refs)]
    llr = tiny_masked_llr(random_tiny, windows, pos, refs, alts, batch_size=4)
    for i in (0, 5):  # by hand
        tokens = encode(windows[i])[None].clone()
        tokens[0, pos[i]] = MASK_ID
        with torch.no_grad():
            lp = torch.log_softmax(random_tiny(tokens)[0, pos[i]].double(), -1)
        assert llr[i] == pytest.approx(float(lp[BASES.index(alts[i])] - lp[BASES.index(refs[i])]), abs=1e-9)
    alt_windows = [w[:p] + a + w[p + 1:] for w, p, a in zip(windows, pos, alts, strict=True)]
    back = tiny_masked_llr(random_tiny, alt_windows, pos, alts, refs)
    np.testing.assert_allclose(back, -llr, atol=1e-9)  # the variant base is masked: same context
    assert np.all(tiny_masked_llr(random_tiny, windows, pos, refs, refs) == 0)
    with pytest.raises(InputError, match="REF . does not match"):
        tiny_masked_llr(random_tiny, windows[:1], pos[:1], alts[:1], refs[:1])
    with pytest.raises(InputError, match="only SNVs"):
        tiny_masked_llr(random_tiny, windows[:1], pos[:1], refs[:1], ["AC"])


def test_trained_tiny_model_scores_motif_breaking_variants_as_damaging(tmp_path):
    """Planted truth: a model trained on a periodic motif finds every substitution unlikely."""
    rng = np.random.default_rng(3)
    genome = MOTIF * 120
    card = {"architecture": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "dropout": 0.0, "max_len": 64},
            "training": {"seq_len": 64, "batch_size": 16, "max_steps": 150, "lr": 0.003, "weight_decay": 0.0,
                         "warmup_steps": 10, "min_lr_ratio": 0.1, "mask_prob": 0.15, "n_mask_groups": 7,
                         "eval_batch_size": 32}}
    ckpt = tmp_path / "motif.safetensors"
    pretrain_tiny_dnalm([genome], [MOTIF * 8], card, {}, seed=1, checkpoint_out=ckpt, threads=1)
    model = load_tiny_checkpoint(ckpt)
    starts = rng.integers(0, len(genome) - 64, 60)
    windows = [genome[s:s + 64] for s in starts]
    pos = [int(p) for p in rng.integers(8, 56, 60)]
    refs = [w[p] for w, p in zip(windows, pos, strict=True)]
    llr = tiny_masked_llr(model, windows, pos, refs, [_other(r, k) for k, r in enumerate(refs)])
    # 150 steps learn the period: nearly every substitution is scored as less likely than REF
    assert (llr < 0).mean() >= 0.95 and np.median(llr) < -0.3, llr


@pytest.fixture(scope="module")
def esm_6mer(tmp_path_factory):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, EsmConfig, EsmForMaskedLM, EsmTokenizer

    path = tmp_path_factory.mktemp("esm6")
    vocab = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
    vocab += ["".join(p) for p in itertools.product("ATCG", repeat=6)] + list("ATCGN")
    (path / "vocab.txt").write_text("\n".join(vocab))
    EsmTokenizer(str(path / "vocab.txt"), unk_token="<unk>", cls_token="<cls>", pad_token="<pad>",
                 mask_token="<mask>", eos_token="<eos>").save_pretrained(path)
    torch.manual_seed(0)
    EsmForMaskedLM(EsmConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=64, position_embedding_type="rotary",
                             pad_token_id=1, mask_token_id=2, token_dropout=False)).save_pretrained(path)
    return AutoModelForMaskedLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_masked_llr_over_six_mer_tokens(esm_6mer):
    model, tok = esm_6mer
    window = "ACGTAC" "GGATCC" "TTAGCA" "CATGCA"
    llr = hf_masked_llr(model, tok, [window], [8], ["A"], ["T"])[0]
    ids = tok(window)["input_ids"]
    ids[2] = tok.mask_token_id  # token 2 (after <cls>) is the 6-mer GGATCC holding base 8
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, 2].double(), -1)
    vocab = tok.get_vocab()
    assert llr == pytest.approx(float(lp[vocab["GGTTCC"]] - lp[vocab["GGATCC"]]), abs=1e-9)
    # next to an N, NT falls back to single-base tokens: the variant's own base is masked and compared
    short = "ACGTACGGNA"
    llr1 = hf_masked_llr(model, tok, [short], [9], ["A"], ["C"])[0]
    ids = tok(short)["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[5] == "A"
    ids[5] = tok.mask_token_id
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, 5].double(), -1)
    assert llr1 == pytest.approx(float(lp[vocab["C"]] - lp[vocab["A"]]), abs=1e-9)


def test_masked_llr_keeps_the_word_piece_marker_of_the_variant_token(tmp_path):
    """A WordPiece tokenizer writes the second piece of ACGA as '##GA', a different token from a word-initial
    'GA': the LLR compares '##TA' with '##GA' (it compared 'TA' with 'GA', both in the vocabulary: a wrong
    score with no error)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    words = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", *"ACGTN", *(f"##{b}" for b in "ACGTN"),
             "AC", "GA", "TA", "##GA", "##TA"]
    wp = Tokenizer(models.WordPiece({t: i for i, t in enumerate(words)}, unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.Whitespace()
    wp.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1),
                                                                                             ("[SEP]", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=wp, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                  pad_token="[PAD]", mask_token="[MASK]")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32, pad_token_id=3)).eval()
    ids = tok("ACGA")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "AC", "##GA", "[SEP]"]
    llr = hf_masked_llr(model, tok, ["ACGA"], [2], ["G"], ["T"])[0]
    ids[2] = tok.mask_token_id
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, 2].double(), -1)
    vocab = tok.get_vocab()
    assert llr == pytest.approx(float(lp[vocab["##TA"]] - lp[vocab["##GA"]]), abs=1e-9)
    assert llr != pytest.approx(float(lp[vocab["TA"]] - lp[vocab["GA"]]), abs=1e-6)


def _character_gpt2(seed: int):
    """A character tokenizer (tests/families) and a small random GPT-2 over its vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    spec = importlib.util.spec_from_file_location("tokchar", ROOT / "tests/families/tokenization_character.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=12, n_embd=16, n_layer=2, n_head=2, n_positions=128)).eval()
    return module.CharacterTokenizer(), model


def test_causal_delta_is_a_difference_of_sequence_logliks():
    tok, model = _character_gpt2(seed=0)
    ref = "ACGTTGCAGGATCCATACGT"
    delta = hf_causal_delta(model, tok, [ref], [5], ["G"], ["A"])[0]
    alt = ref[:5] + "A" + ref[6:]
    assert delta == pytest.approx(sequence_loglik(model, tok, alt) - sequence_loglik(model, tok, ref), abs=1e-9)
    assert hf_causal_delta(model, tok, [alt], [5], ["A"], ["G"])[0] == pytest.approx(-delta, abs=1e-9)
    assert delta != 0



def _evo2_stand_in(tok, model):
    """The evo2 package's interface (tokenizer.tokenize, model(ids) -> ((logits,), None)) around a transformers
    causal LM."""

    class StandIn:
        class tokenizer:  # noqa: N801 - the evo2 package's attribute name
            @staticmethod
            def tokenize(seq):
                return tok(seq)["input_ids"]

        def __call__(self, ids):
            return (model(input_ids=ids.long()).logits,), None

    return StandIn()


def test_causal_delta_refuses_a_variant_in_the_unpredicted_first_token():
    """The character tokenizer (as HyenaDNA's) puts no start token before base 0, so base 0 is never
    predicted: its delta held only how the base conditions the rest, not p(ALT) vs p(REF). Refused (HF and
    the evo2 interface alike); base 1 is predicted and scored."""
    from interp.embed.variant_effect import evo2_causal_delta

    tok, model = _character_gpt2(seed=0)
    ref = "ACGTTGCAGGATCCATACGT"
    with pytest.raises(InputError, match="first token"):
        hf_causal_delta(model, tok, [ref], [0], ["A"], ["C"])
    assert hf_causal_delta(model, tok, [ref], [1], ["C"], ["A"])[0] != 0

    with pytest.raises(InputError, match="first token"):
        evo2_causal_delta(_evo2_stand_in(tok, model), [ref], [0], ["A"], ["C"], device="cpu")


def test_alt_equal_to_ref_is_not_an_snv(random_tiny):
    """A record with ALT = REF (the VCF reader keeps it: both are letters) is no variant: the cohort scorer
    keeps it null as "not an SNV" rather than scoring it 0 and counting it as scored."""
    import polars as pl

    from interp.embed.variant_effect import VariantScorer, score_cohort_variants

    window = "ACGTTGCAGGATCCATACGT"
    scorer = VariantScorer("tiny", "masked_llr", 64, lambda w, p, r, a: tiny_masked_llr(random_tiny, w, p, r, a))
    variants = pl.DataFrame({"variant_id": ["same", "snv"], "contig": ["c1", "c1"], "pos": [5, 5],
                             "ref": ["T", "T"], "alt": ["T", "G"]})
    table, stats = score_cohort_variants(variants, {"c1": window}, scorer)
    assert table["skipped"].to_list() == ["not an SNV", ""]
    assert table["score"][0] is None and table["score"][1] is not None
    assert stats["n_scored"] == 1 and stats["n_not_snv"] == 1


def test_snv_padded_by_shared_bases_is_scored_as_its_substituted_base(random_tiny):
    """`bcftools norm -m-` without the reference splits AT>CT,A into AT>CT (an SNV A>C kept with T after it) and
    AT>A: the padded record is the SNV at its one differing base (it was left null as "not an SNV"); its
    padding must match the reference; a two-base substitution stays unscored."""
    import polars as pl

    from interp.embed.variant_effect import VariantScorer, score_cohort_variants, snv_of

    assert snv_of(10, "AT", "CT") == (10, "A", "C") and snv_of(10, "GA", "GC") == (11, "A", "C")
    assert snv_of(10, "AT", "A") is None and snv_of(10, "AC", "GT") is None and snv_of(10, "A", "A") is None
    chrom = "".join(np.random.default_rng(5).choice(list("ACGT"), 200))
    scorer = VariantScorer("tiny", "masked_llr", 64, lambda w, p, r, a: tiny_masked_llr(random_tiny, w, p, r, a))
    b = chrom[99]  # 1-based 100
    variants = pl.DataFrame({
        "variant_id": ["plain", "suffix", "prefix", "bad_pad", "mnv"], "contig": ["c1"] * 5,
        "pos": [100, 100, 99, 100, 100],
        "ref": [b, chrom[99:101], chrom[98:100], b + _other(chrom[100], 0), chrom[99:101]],
        "alt": [_other(b, 1), _other(b, 1) + chrom[100], chrom[98] + _other(b, 1), _other(b, 1) + _other(chrom[100], 0),
                _other(b, 1) + _other(chrom[100], 0)]})
    table, stats = score_cohort_variants(variants, {"c1": chrom}, scorer, width=40)
    assert table["skipped"].to_list() == ["", "", "", "REF does not match the reference", "not an SNV"]
    assert table["score"][1] == table["score"][0] and table["score"][2] == table["score"][0]
    assert table["score"][0] is not None and stats["n_scored"] == 3
    assert table["window_start"].to_list()[:3] == [79, 79, 79] and table["pos"].to_list()[2] == 99


# ---------------------------------------------------------------- cohort variants and the stage
def test_variant_window_centres_the_variant_and_stays_inside_the_contig():
    from interp.embed.variant_effect import variant_window

    assert variant_window(1000, 500, 64) == (468, 532)  # the variant at offset 32
    assert variant_window(1000, 5, 64) == (0, 64)
    assert variant_window(1000, 999, 64) == (936, 1000)
    assert variant_window(40, 10, 64) == (0, 40)  # a contig shorter than the window: all of it
    assert variant_window(1000, 500, 65) == (468, 533)


def test_score_cohort_variants_scores_snvs_and_counts_the_rest(random_tiny):
    import polars as pl

    from interp.embed.variant_effect import VariantScorer, score_cohort_variants

    rng = np.random.default_rng(4)
    chrom = "".join(rng.choice(list("ACGT"), 300))
    fasta = {"c1": chrom.lower(), "c2": "ACGT" * 5}
    pos = [150, 3, 299, 100, 120, 10, 7]  # 1-based
    ref = [chrom[149], chrom[2], chrom[298], chrom[99:101], _other(chrom[119], 0), "A", "G"]
    alt = [_other(chrom[149], 1), _other(chrom[2], 2), _other(chrom[298], 0), chrom[99], chrom[119], "C", "<DEL>"]
    variants = pl.DataFrame({"variant_id": [f"v{i}" for i in range(7)], "contig": ["c1"] * 5 + ["c9", "c2"],
                             "pos": pos, "ref": ref, "alt": alt})
    scorer = VariantScorer("tiny", "masked_llr", 64,
                           lambda w, p, r, a: tiny_masked_llr(random_tiny, w, p, r, a, batch_size=2))
    table, stats = score_cohort_variants(variants, fasta, scorer, width=40, chunk=2)
    assert table["variant_id"].to_list() == [f"v{i}" for i in range(7)]
    assert table["skipped"].to_list() == ["", "", "", "not an SNV", "REF does not match the reference",
                                          "outside the reference contig", "not an SNV"]
    assert table["window_start"].to_list()[:3] == [129, 0, 260] and table["window_end"].to_list()[:3] == [169, 40, 300]
    for i, (start, off) in enumerate(((129, 20), (0, 2), (260, 38))):  # centred; shifted at both ends
        by_hand = tiny_masked_llr(random_tiny, [chrom[start:start + 40]], [off], [ref[i]], [alt[i]])[0]
        assert table["score"][i] == pytest.approx(by_hand, abs=1e-9)
    assert table["score"].null_count() == 4 and table["score"][:3].null_count() == 0
    assert set(table["method"]) == {"masked_llr"} and set(table["model"]) == {"tiny"}
    assert stats == {"model": "tiny", "method": "masked_llr", "context": 64, "width": 40, "n_variants": 7,
                     "n_scored": 3, "n_not_snv": 2,
                     "skipped": {"REF does not match the reference": 1, "not an SNV": 2,
                                 "outside the reference contig": 1}}
    wide, wide_stats = score_cohort_variants(variants.head(1), fasta, scorer, width=500)
    assert wide_stats["width"] == 64 and wide["window_end"][0] - wide["window_start"][0] == 64  # capped at context

    # a scorer that refuses one variant (e.g. an ALT token outside a BPE vocabulary): only that one stays null
    def picky(w, p, r, a):
        if "T" in a:
            raise InputError("variant 0: token 'GGT' is not in the model's vocabulary")
        return np.arange(len(w), dtype=float) + 1

    snvs = pl.DataFrame({"variant_id": ["a", "b", "c"], "contig": ["c2"] * 3, "pos": [1, 2, 3],
                         "ref": ["A", "C", "G"], "alt": ["G", "T", "A"]})
    out, st = score_cohort_variants(snvs, fasta, VariantScorer("m", "masked_llr", 8, picky))
    assert out["score"].to_list() == [1.0, None, 1.0]
    assert out["skipped"][1] == "token 'GGT' is not in the model's vocabulary" and st["n_scored"] == 2


def test_load_scorer_hf_masked_matches_the_library_llr(esm_6mer, tmp_path):
    from interp.embed.variant_effect import load_scorer

    model, tok = esm_6mer
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    card = {"name": "esm6", "family": "hf", "hf_id": str(tmp_path), "context": 48, "causal": False,
            "trust_remote_code": False, "layers": ["hidden_states.1"]}
    scorer = load_scorer(card, device="cpu", dtype="float32")
    assert (scorer.method, scorer.context) == ("masked_llr", 48)
    window = "ACGTAC" "GGATCC" "TTAGCA" "CATGCA"
    got = scorer.score([window], [8], ["A"], ["T"])[0]  # needs the LM head: AutoModel has no logits
    assert got == pytest.approx(hf_masked_llr(model, tok, [window], [8], ["A"], ["T"])[0], abs=1e-6)


def test_a_masked_lm_whose_tokenizer_has_no_mask_token_is_refused_at_load(tmp_path):
    """The refusal was raised while scoring, caught per variant and counted as every variant's skip reason:
    the job succeeded with nothing scored and rank's burden family for the model silently dropped out."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    from interp.embed.variant_effect import load_scorer

    vocab = {t: i for i, t in enumerate(["[UNK]", "[PAD]", "[CLS]", "[SEP]", "A", "C", "G", "T", "N"])}
    inner = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    inner.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    inner.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                         special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=inner, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(tmp_path)
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=128)).save_pretrained(tmp_path)
    card = {"name": "nomask", "family": "hf", "hf_id": str(tmp_path), "context": 64, "causal": False,
            "trust_remote_code": False, "layers": ["hidden_states.1"]}
    with pytest.raises(InputError, match="model card nomask: variant effect: the tokenizer has no mask token"):
        load_scorer(card, device="cpu", dtype="float32")


def test_a_window_with_unknown_tokens_is_not_scored(esm_6mer, tmp_path):
    """A tokenizer without N maps an N run to the unknown token: the embedder refused such a window, the scorer
    scored it (-0.16 with five [UNK] tokens in the window). Now its variant is skipped with the reason, for the
    masked and the causal score alike; a window whose N run lies beyond max_tokens' cut is still scored."""
    from transformers import EsmTokenizer

    model, _ = esm_6mer
    vocab = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
    vocab += ["".join(p) for p in itertools.product("ATCG", repeat=6)] + list("ATCG")  # no N
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    tok = EsmTokenizer(str(tmp_path / "vocab.txt"), unk_token="<unk>", cls_token="<cls>", pad_token="<pad>",
                       mask_token="<mask>", eos_token="<eos>")
    window = "ACGTAC" "GGATCC" "NNNNNN" "CATGCA"
    with pytest.raises(InputError, match="variant 0: its window holds bases the tokenizer maps to the unknown token"):
        hf_masked_llr(model, tok, [window], [8], ["A"], ["T"])
    with pytest.raises(InputError, match="variant 0: its window holds bases the tokenizer maps to the unknown token"):
        hf_causal_delta(model, tok, [window], [8], ["A"], ["T"])
    clean = hf_masked_llr(model, tok, [window[:12]], [8], ["A"], ["T"])
    cut = hf_masked_llr(model, tok, ["ACGTAC" "GGATCC" + "ACGTAC" * 6 + "NNNN"], [8], ["A"], ["T"], max_tokens=4)
    assert np.isfinite(clean).all() and np.isfinite(cut).all()


def test_a_checkpoint_without_the_lm_head_is_refused_by_the_scorer(esm_6mer, tmp_path):
    """An encoder-only checkpoint (no masked-LM head) loaded for scoring had its head started at random values
    by transformers, with no error: the scores meant nothing and changed with the torch seed. Refused now,
    naming the head's weights; the same checkpoint still embeds (its hidden states are all there)."""
    from interp.embed.hf import HFEmbedder
    from interp.embed.variant_effect import load_scorer

    model, tok = esm_6mer
    model.esm.save_pretrained(tmp_path)  # the base model only
    tok.save_pretrained(tmp_path)
    card = {"name": "esm6", "family": "hf", "hf_id": str(tmp_path), "context": 48, "causal": False,
            "trust_remote_code": False, "layers": ["hidden_states.1"]}
    with pytest.raises(InputError, match=r"model card esm6: the checkpoint .* has no weights for its EsmForMaskedLM "
                                         r"head \(lm_head\..*transformers would start them at random values"):
        load_scorer(card, device="cpu", dtype="float32")
    HFEmbedder(card, device="cpu", dtype="float32")
    # a head weight listed missing but tied to a loaded one (remote code tying it in its own tie_weights, which
    # transformers still lists) shares the loaded tensor: not random, not refused; an untied one is
    model.save_pretrained(tmp_path)
    loaded = HFEmbedder({**card, "hf_class": "masked_lm"}, device="cpu", dtype="float32")
    assert loaded.missing_weights == []
    loaded.missing_weights = ["lm_head.decoder.weight"]  # ESM ties it to the word embeddings
    loaded.check_head()
    loaded.missing_weights = ["lm_head.dense.weight"]
    with pytest.raises(InputError, match=r"head \(lm_head.dense.weight\)"):
        loaded.check_head()


def test_a_window_longer_than_max_tokens_is_cut_around_its_variant(esm_6mer, tmp_path):
    """The scorer ran the card's whole context whatever it tokenized to: next to an N run a 6-mer tokenizer
    gives one token per base, and a model with 24 learned positions stopped the variant_effect job with an
    IndexError (an NT-v1 window with over about 40 N, GENA-LM's 512 positions). The window is now cut around the
    variant to the card's max_tokens, as the embedder cuts its pieces, and scored on what fits."""
    from transformers import EsmConfig, EsmForMaskedLM

    from interp.embed.variant_effect import fit_window, load_scorer, score_cohort_variants

    _, tok = esm_6mer
    torch.manual_seed(0)
    EsmForMaskedLM(EsmConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=26, position_embedding_type="absolute",
                             pad_token_id=1, mask_token_id=2, token_dropout=False)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    card = {"name": "nt-like", "family": "hf", "hf_id": str(tmp_path), "context": 96, "max_tokens": 24,
            "causal": False, "hf_class": "masked_lm", "trust_remote_code": False, "layers": ["hidden_states.1"]}
    rng = np.random.default_rng(0)
    contig = "".join(rng.choice(list("ACGT"), 300))
    contig = contig[:100] + "N" * 40 + contig[140:]
    window = contig[111:207]  # the variant (1-based 160) is base 48; bases 0-28 are N: single-base tokens
    assert len(tok(window)["input_ids"]) > 24
    cut, p = fit_window(tok, window, 48, 24)
    assert len(tok(cut)["input_ids"]) <= 24 and cut[p] == window[48] and len(cut) < len(window)
    assert fit_window(tok, window, 48, None) == (window, 48)
    scorer = load_scorer(card, device="cpu", dtype="float32")
    alt = "A" if contig[159] != "A" else "C"
    variants = pl.DataFrame({"variant_id": ["v"], "contig": ["c"], "pos": [160], "ref": [contig[159]], "alt": [alt]})
    table, _ = score_cohort_variants(variants, {"c": contig}, scorer)
    assert np.isfinite(table["score"][0])
    assert table["score"][0] == pytest.approx(scorer.score([cut], [p], [contig[159]], [alt])[0], abs=1e-9)


def test_evo2_causal_delta_matches_the_transformers_causal_delta():
    """Through the evo2 package's interface (tokenizer.tokenize, model(ids) -> ((logits,), None)), with a
    stand-in wrapping a small GPT-2: the same sum of log-probabilities as `hf_causal_delta`."""
    from interp.embed.variant_effect import evo2_causal_delta

    tok, gpt = _character_gpt2(seed=1)

    ref = "ACGTTGCAGGATCCATACGT"
    got = evo2_causal_delta(_evo2_stand_in(tok, gpt), [ref, ref], [5, 9], ["G", "G"], ["A", "C"], device="cpu")
    want = hf_causal_delta(gpt, tok, [ref, ref], [5, 9], ["G", "G"], ["A", "C"])
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert np.all(got != 0)


def test_variant_effect_stage_on_the_demo_reference(random_tiny, tmp_path):
    """The stage with the built-in model (a small random checkpoint): every SNV of genotypes.h5ad scored on
    its centred reference window, a deletion and a wrong REF kept with a null score and counted."""
    import json

    import anndata as ad
    import pandas as pd
    import polars as pl

    from interp import stages
    from interp.genome.fasta import open_reference
    from tests.conftest import DEMO_FASTA

    chrom = open_reference(DEMO_FASTA)["chr17"]
    rows = [(20001, chrom[20000], _other(chrom[20000].upper(), 0)), (6, chrom[5], _other(chrom[5].upper(), 1)),
            (39995, chrom[39994], _other(chrom[39994].upper(), 2)), (30000, chrom[29999:30001], chrom[29999]),
            (25001, _other(chrom[25000].upper(), 0), chrom[25000])]
    ids = [f"chr17:{p}:{r.upper()}:{a.upper()}" for p, r, a in rows]
    var = pd.DataFrame({"contig": ["chr17"] * 5, "pos": [r[0] for r in rows], "ref": [r[1].upper() for r in rows],
                        "alt": [r[2].upper() for r in rows]}, index=ids)
    ad.AnnData(X=np.zeros((3, 5), dtype=np.float32), var=var).write_h5ad(tmp_path / "genotypes.h5ad")
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(random_tiny, ckpt)
    job = stages.Job(input={"card": str(ROOT / "models" / "tiny-dnalm.yaml"), "checkpoint": str(ckpt),
                            "genotypes": str(tmp_path / "genotypes.h5ad"), "fasta": str(DEMO_FASTA)},
                     output={"parquet": str(tmp_path / "ve" / "tiny-dnalm.parquet"),
                             "stats": str(tmp_path / "ve" / "tiny-dnalm.stats.json")},
                     params={"width": None, "batch_size": 8, "device": "cpu", "dtype": "auto", "hf_cache": None,
                             "reference_cache": str(tmp_path / "ref")})
    stages.variant_effect(job)
    table = pl.read_parquet(job.output["parquet"])
    stats = json.loads(Path(job.output["stats"]).read_text())
    assert table.columns[:7] == ["variant_id", "contig", "pos", "ref", "alt", "score", "method"]
    assert table["variant_id"].to_list() == ids
    # width null: the card's context (256) capped at the checkpoint's max_len (64)
    assert (stats["width"], stats["n_variants"], stats["n_scored"], stats["n_not_snv"]) == (64, 5, 3, 1)
    assert stats["skipped"] == {"REF does not match the reference": 1, "not an SNV": 1}
    assert table["score"][3] is None and table["score"][4] is None
    for i, (start, off) in enumerate(((19968, 32), (0, 5), (39936, 58))):
        assert (table["window_start"][i], table["window_end"][i]) == (start, start + 64)
        window = chrom[start:start + 64].upper()
        by_hand = tiny_masked_llr(random_tiny, [window], [off], [rows[i][1].upper()], [rows[i][2]])[0]
        assert table["score"][i] == pytest.approx(by_hand, abs=1e-9) and table["score"][i] != 0
    assert set(table["method"]) == {"masked_llr"} and set(table["model"]) == {"tiny-dnalm"}


def test_the_transformers_scorer_takes_auto_precision_as_float32():
    """A score is a difference of log-probabilities: under `embed.dtype: auto` the embedder runs bf16 on CUDA,
    whose logits of size 8-16 lie 0.0625 apart; the scorer runs float32 unless a precision is named."""
    from interp.embed.variant_effect import scorer_dtype

    assert scorer_dtype("auto") == "float32"
    assert [scorer_dtype(d) for d in ("float32", "bfloat16", "float16")] == ["float32", "bfloat16", "float16"]
    spacing = float(torch.tensor(12.0, dtype=torch.bfloat16).nextafter(torch.tensor(13.0, dtype=torch.bfloat16)) - 12)
    assert spacing == 0.0625
