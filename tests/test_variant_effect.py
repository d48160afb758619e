"""Zero-shot variant effect scores: masked-LM LLR (built-in model, ESM with 6-mers) and causal delta."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
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


def test_causal_delta_is_a_difference_of_sequence_logliks():
    from transformers import GPT2Config, GPT2LMHeadModel

    spec = importlib.util.spec_from_file_location("tokchar", ROOT / "tests/families/tokenization_character.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tok = module.CharacterTokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=12, n_embd=16, n_layer=2, n_head=2, n_positions=128)).eval()
    ref = "ACGTTGCAGGATCCATACGT"
    delta = hf_causal_delta(model, tok, [ref], [5], ["G"], ["A"])[0]
    alt = ref[:5] + "A" + ref[6:]
    assert delta == pytest.approx(sequence_loglik(model, tok, alt) - sequence_loglik(model, tok, ref), abs=1e-9)
    assert hf_causal_delta(model, tok, [alt], [5], ["A"], ["G"])[0] == pytest.approx(-delta, abs=1e-9)
    assert delta != 0
