"""Each DNA model family proven on its own architecture, with small random-weight models built here.

Every model folder is created in a temporary directory and loaded through the same
`make_embedder(card)` -> `from_pretrained(local_dir)` path a user's card takes:
  - Nucleotide Transformer: transformers' EsmConfig/EsmForMaskedLM with a 6-mer EsmTokenizer;
  - BPE models: a BPE tokenizer trained (tokenizers library) on the demo genome, with transformers'
    BertModel (native) and with DNABERT-2-style and GENA-LM-style remote code;
  - HyenaDNA and Caduceus: remote code (modelling + character tokenizer) from tests/families/,
    loaded with trust_remote_code exactly as hub code is.
Tests needing published weights are marked real_weights and skipped unless INTERP_REAL_MODELS names
a Hugging Face cache holding them (see README, "Testing with real weights").
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from Bio import SeqIO

from interp.embed.hub import prefetch_models, resolve_source
from interp.embed.pieces import NonFiniteActivations, reverse_complement
from interp.embed.registry import check_card, load_card, make_embedder
from interp.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ROOT / "tests/families"
DEMO_FASTA = ROOT / "resources/demo/hg19_chr17_1-40000.fa"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"families_{name}", FAMILIES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _remote_folder(path: Path, model, code: list[str], auto_map: dict, tokenizer_files: Path | None = None) -> Path:
    """Save a model, copy its modelling files and point config.json's auto_map at them (as on the hub)."""
    model.save_pretrained(path)
    for name in code:
        shutil.copy(FAMILIES / name, path / name)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = auto_map
    (path / "config.json").write_text(json.dumps(config))
    if tokenizer_files is not None:
        for f in tokenizer_files.iterdir():
            shutil.copy(f, path / f.name)
    return path


def card_for(path: Path, **fields) -> dict:
    card = {"name": f"test-{path.name}", "family": "hf", "hf_id": str(path), "license": "test", "context": 400,
            "layers": ["hidden_states.0", "hidden_states.1", "hidden_states.2"], **fields}
    return check_card(card, f"{path.name}.yaml")


@pytest.fixture(scope="session")
def genome() -> str:
    return str(next(SeqIO.parse(str(DEMO_FASTA), "fasta")).seq).upper()


@pytest.fixture(scope="session")
def folders(tmp_path_factory, genome) -> dict[str, Path]:
    """All family model folders, built once (a few seconds)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (
        BertConfig,
        BertModel,
        EsmConfig,
        EsmForMaskedLM,
        EsmTokenizer,
        PreTrainedTokenizerFast,
    )

    base = tmp_path_factory.mktemp("families")
    out = {}
    torch.manual_seed(0)

    # Nucleotide Transformer: ESM + 6-mer vocabulary (specials, 4096 6-mers, single bases), as NT's vocab
    nt = base / "nt"
    nt.mkdir()
    vocab = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
    vocab += ["".join(p) for p in itertools.product("ATCG", repeat=6)] + list("ATCGN")
    (nt / "vocab.txt").write_text("\n".join(vocab))
    EsmTokenizer(str(nt / "vocab.txt"), unk_token="<unk>", cls_token="<cls>", pad_token="<pad>",
                 mask_token="<mask>", eos_token="<eos>").save_pretrained(nt)
    EsmForMaskedLM(EsmConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=130, position_embedding_type="rotary",
                             pad_token_id=1, mask_token_id=2, token_dropout=False,
                             emb_layer_norm_before=False)).save_pretrained(nt)
    out["nt"] = nt

    # BPE trained on the demo genome (DNABERT-2 / GENA-LM style: whole-sequence BPE, [CLS] x [SEP])
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    bpe.decoder = decoders.BPEDecoder()
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    trainer = trainers.BpeTrainer(vocab_size=256, special_tokens=specials, initial_alphabet=list("ACGTN"),
                                  show_progress=False)
    bpe.train_from_iterator([genome[i:i + 500] for i in range(0, len(genome), 500)], trainer=trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", bpe.token_to_id("[CLS]")),
                                                 ("[SEP]", bpe.token_to_id("[SEP]"))])
    tok_dir = base / "bpe_tokenizer"
    PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                            pad_token="[PAD]", mask_token="[MASK]").save_pretrained(tok_dir)
    out["bpe_tokenizer"] = tok_dir
    pad = bpe.token_to_id("[PAD]")

    bert = base / "bert_bpe"
    BertModel(BertConfig(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=256, pad_token_id=pad)).save_pretrained(bert)
    for f in tok_dir.iterdir():
        shutil.copy(f, bert / f.name)
    out["bert_bpe"] = bert

    dnabert = _module("bert_layers")
    out["dnabert2"] = _remote_folder(
        base / "dnabert2", dnabert.BertModel(dnabert.BertConfig(pad_token_id=pad)), ["bert_layers.py"],
        {"AutoConfig": "bert_layers.BertConfig", "AutoModel": "bert_layers.BertModel"}, tok_dir)
    gena = _module("modeling_gena")
    out["gena"] = _remote_folder(
        base / "gena", gena.BertForMaskedLM(gena.GenaConfig(pad_token_id=pad, max_position_embeddings=256)),
        ["modeling_gena.py"], {"AutoConfig": "modeling_gena.GenaConfig", "AutoModel": "modeling_gena.BertForMaskedLM"},
        tok_dir)

    # character tokenizer (remote code) shared by HyenaDNA and Caduceus folders
    char = _module("tokenization_character")
    char_dir = base / "char_tokenizer"
    char.CharacterTokenizer(model_max_length=512).save_pretrained(char_dir)
    shutil.copy(FAMILIES / "tokenization_character.py", char_dir / "tokenization_character.py")
    tcfg = json.loads((char_dir / "tokenizer_config.json").read_text())
    tcfg["auto_map"] = {"AutoTokenizer": ["tokenization_character.CharacterTokenizer", None]}
    (char_dir / "tokenizer_config.json").write_text(json.dumps(tcfg))

    hyena = _module("modeling_hyena")
    out["hyena"] = _remote_folder(
        base / "hyena", hyena.HyenaDNAModel(hyena.HyenaConfig(max_seq_len=514)), ["modeling_hyena.py"],
        {"AutoConfig": "modeling_hyena.HyenaConfig", "AutoModel": "modeling_hyena.HyenaDNAModel"}, char_dir)
    cad = _module("modeling_caduceus")
    for kind, rcps in (("caduceus_ph", False), ("caduceus_ps", True)):
        out[kind] = _remote_folder(
            base / kind, cad.CaduceusForMaskedLM(cad.CaduceusConfig(rcps=rcps)), ["modeling_caduceus.py"],
            {"AutoConfig": "modeling_caduceus.CaduceusConfig",
             "AutoModelForMaskedLM": "modeling_caduceus.CaduceusForMaskedLM"}, char_dir)
    return out


CARDS = {
    "nt": dict(model_family="nucleotide-transformer", tokenizer="kmer", hf_class="masked_lm", hidden_size=32),
    "bert_bpe": dict(model_family="bert", tokenizer="bpe", hidden_size=32),
    "dnabert2": dict(model_family="dnabert-2", tokenizer="bpe", hidden_size=32, trust_remote_code=True,
                     layers=["embeddings", "encoder.layer.0", "encoder.layer.1"]),
    "gena": dict(model_family="gena-lm", tokenizer="bpe", hidden_size=32, trust_remote_code=True),
    "hyena": dict(model_family="hyenadna", tokenizer="character", hidden_size=16, trust_remote_code=True,
                  causal=True),
    "caduceus_ph": dict(model_family="caduceus", tokenizer="character", hidden_size=16, trust_remote_code=True,
                        hf_class="masked_lm", rc_average=True),
    "caduceus_ps": dict(model_family="caduceus", tokenizer="character", hidden_size=32, trust_remote_code=True,
                        hf_class="masked_lm"),
}


@pytest.fixture(scope="session")
def embedders(folders) -> dict:
    return {kind: make_embedder(card_for(folders[kind], **fields), None) for kind, fields in CARDS.items()}


@pytest.mark.parametrize("kind", list(CARDS))
def test_family_loads_and_lines_tokens_up_with_bases(kind, embedders, genome):
    emb = embedders[kind]
    layer = emb.layers[-1]
    seqs = [genome[5000:5300], genome[7000:7137], genome[9000:9211].lower()]
    together = emb.embed(seqs, [layer])[layer]
    assert together.values.shape[1] == CARDS[kind]["hidden_size"]
    assert emb.provenance["trust_remote_code"] is CARDS[kind].get("trust_remote_code", False)
    for i, seq in enumerate(seqs):
        spans = together.base_span[together.offsets[i]:together.offsets[i + 1]]
        # one piece each (context 400): tokens tile the sequence exactly, CLS/SEP/pads left out
        assert spans[0, 0] == 0 and spans[-1, 1] == len(seq)
        assert np.array_equal(spans[1:, 0], spans[:-1, 1])
        # batched with other lengths (padding, bucketing) == the sequence alone, upper-cased
        alone = emb.embed([seq.upper()], [layer])[layer]
        assert np.array_equal(alone.base_span, spans)
        np.testing.assert_allclose(together.values[together.offsets[i]:together.offsets[i + 1]], alone.values,
                                   atol=2e-5, rtol=1e-4)
    widths = np.diff(together.base_span, axis=1)[:, 0]
    expected = {"kmer": 6, "character": 1}.get(CARDS[kind]["tokenizer"])
    if expected is not None:
        assert np.bincount(widths).argmax() == expected
    else:  # BPE learned multi-base tokens from the genome
        assert widths.mean() > 2


def test_nt_six_mers_match_a_direct_esm_run(folders, embedders, genome):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    emb = embedders["nt"]
    seq = genome[12000:12100] + "N" + genome[12100:12160]
    acts = emb.embed([seq], ["hidden_states.2"])["hidden_states.2"]
    widths = np.diff(acts.base_span, axis=1)[:, 0]
    assert acts.base_span[widths == 1].tolist()[:1] == [[96, 97]]  # 6-mers up to the N, then single bases
    assert acts.base_span[16].tolist() == [96, 97] and seq[100] == "N"
    tok, model = AutoTokenizer.from_pretrained(folders["nt"]), AutoModelForMaskedLM.from_pretrained(folders["nt"])
    with torch.inference_mode():
        hidden = model(**tok([seq], return_tensors="pt"), output_hidden_states=True).hidden_states[2][0]
    np.testing.assert_allclose(acts.values, hidden[1:-1].numpy(), atol=1e-5)  # without <cls>, <eos>


def test_hyena_is_causal_and_right_padded(embedders, genome):
    emb = embedders["hyena"]
    assert emb.padding_side == "right" and not emb.accepts_mask
    seq = genome[3000:3200]
    mutated = seq[:120] + ("A" if seq[120] != "A" else "C") + seq[121:]
    a, b = (emb.embed([s], ["hidden_states.2"])["hidden_states.2"].values for s in (seq, mutated))
    # earlier bases never see a later change (up to FFT round-off); the changed base and later ones do
    np.testing.assert_allclose(a[:120], b[:120], atol=1e-5)
    assert np.abs(a[120:124] - b[120:124]).max(axis=1).min() > 1e-3


def test_caduceus_rc_parameter_sharing_is_equivariant(embedders, genome):
    emb = embedders["caduceus_ps"]
    assert emb.pad_free  # bidirectional without a mask: only equal lengths share a batch
    seq = genome[15000:15150]
    fwd = emb.embed([seq], ["hidden_states.2"])["hidden_states.2"].values
    rev = emb.embed([reverse_complement(seq)], ["hidden_states.2"])["hidden_states.2"].values
    swapped = np.concatenate([fwd[:, 16:], fwd[:, :16]], axis=1)[::-1]
    # equal away from the ends, where the tokenizer's trailing [SEP] breaks the symmetry
    np.testing.assert_allclose(rev[8:-8], swapped[8:-8], atol=1e-5)
    direct = emb.model(torch.tensor([[7, 8, 9, 10, 7, 7, 9]]), output_hidden_states=True).hidden_states[2][0]
    comp = {7: 10, 8: 9, 9: 8, 10: 7}
    rc_ids = torch.tensor([[comp[t] for t in [7, 8, 9, 10, 7, 7, 9][::-1]]])
    direct_rc = emb.model(rc_ids, output_hidden_states=True).hidden_states[2][0]
    torch.testing.assert_close(direct_rc, torch.cat([direct[:, 16:], direct[:, :16]], 1).flip(0))


def test_rc_average_flips_the_reverse_strand_back(embedders, genome):
    emb = embedders["caduceus_ph"]
    seq = genome[20000:20170]
    a = emb.embed([seq], ["hidden_states.1"])["hidden_states.1"].values
    b = emb.embed([reverse_complement(seq)], ["hidden_states.1"])["hidden_states.1"].values
    np.testing.assert_allclose(a, b[::-1], atol=1e-5)  # strand-symmetric after averaging
    emb.rc_average = False
    try:
        single = emb.embed([seq], ["hidden_states.1"])["hidden_states.1"].values
    finally:
        emb.rc_average = True
    assert not np.allclose(single, a)


def test_dnabert2_layers_come_from_hooks_on_unpadded_encoder(embedders, genome):
    emb = embedders["dnabert2"]
    seqs = [genome[100:400], genome[600:700]]
    acts = emb.embed(seqs, ["encoder.layer.1", "embeddings"])
    short_alone = emb.embed([seqs[1]], ["encoder.layer.1"])["encoder.layer.1"]
    o = acts["encoder.layer.1"].offsets
    np.testing.assert_allclose(acts["encoder.layer.1"].values[o[1]:o[2]], short_alone.values, atol=1e-5)
    emb.layers.append("hidden_states.1")
    try:
        with pytest.raises(InputError, match="no hidden_states"):
            emb.embed(seqs, ["hidden_states.1"])
    finally:
        emb.layers.pop()
    with pytest.raises(InputError, match="unknown layer"):
        emb.embed(seqs, ["encoder.layer.7"])


def test_left_padding_the_model_cannot_take_exactly_is_refused(folders, embedders, genome):
    """A card's padding_side: left on a causal model without an attention mask (HyenaDNA) let the pads before a
    shorter sequence flow into its activations, which then depended on the batch."""
    assert embedders["hyena"].padding_side == "right"
    with pytest.raises(InputError, match="padding_side: left padding needs .* no attention_mask"):
        make_embedder(card_for(folders["hyena"], **{**CARDS["hyena"], "padding_side": "left"}), None)
    # a bidirectional model: left padding's position ids from 0 are not what every such model numbers from (ESM
    # and RoBERTa start after padding_idx: a lone sequence of an ESM model came out wrong), so refused
    with pytest.raises(InputError, match="padding_side: left padding is for causal models"):
        make_embedder(card_for(folders["bert_bpe"], **{**CARDS["bert_bpe"], "padding_side": "left"}), None)
    with pytest.raises(InputError, match="padding_side: left padding is for causal models"):
        make_embedder(card_for(folders["nt"], **{**CARDS["nt"], "padding_side": "left"}), None)


def test_a_broken_model_folder_is_an_input_error_naming_it(folders, tmp_path):
    """A hand-edited config.json or tokenizer_config.json that is not JSON, and remote code importing a package
    the environment lacks (the Caduceus card without mamba-ssm), ended in tracebacks."""
    for name in ("config.json", "tokenizer_config.json"):
        broken = tmp_path / f"bert_{name.split('.')[0]}"
        shutil.copytree(folders["bert_bpe"], broken)
        (broken / name).write_text((broken / name).read_text().rstrip().rstrip("}") + ",}")  # a trailing comma
        with pytest.raises(InputError, match=rf"field hf_id: .*{name} is not valid JSON"):
            make_embedder(card_for(broken, **CARDS["bert_bpe"]), None)
    needs = tmp_path / "caduceus_needs"
    shutil.copytree(folders["caduceus_ph"], needs)
    code = needs / "modeling_caduceus.py"
    code.write_text("import mamba_ssm_not_installed  # as the hub's file imports mamba_ssm\n" + code.read_text())
    with pytest.raises(InputError, match=r"needs a package that is not installed .*mamba_ssm_not_installed.*requires"):
        make_embedder(card_for(needs, **CARDS["caduceus_ph"]), None)


def test_out_of_memory_on_a_long_piece_is_not_called_a_position_overflow(folders, tmp_path, genome):
    """Any RuntimeError on a piece past max_position_embeddings - 2 was reported as not fitting the positions,
    with advice to lower max_tokens: a GPU out-of-memory error too, on an ALiBi model (DNABERT-2's config says
    512 positions; it runs longer pieces)."""
    import json

    import torch

    alibi = tmp_path / "dnabert2_512"
    shutil.copytree(folders["dnabert2"], alibi)
    config = json.loads((alibi / "config.json").read_text())
    (alibi / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 64}))
    emb = make_embedder(card_for(alibi, **{**CARDS["dnabert2"], "context": 2500}), None)
    piece = genome[1000:1600]
    assert len(emb.tokenize([piece])[0][0]) > 64  # runs past the config's count
    emb.embed([piece], ["encoder.layer.1"])

    def oom(*_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    emb.modules["encoder.layer.0"].register_forward_hook(oom)
    with pytest.raises(torch.OutOfMemoryError):
        emb.embed([piece], ["encoder.layer.1"])


def test_long_sequences_are_chunked_with_overlap_and_stitched(folders, genome):
    hyena = make_embedder(card_for(folders["hyena"], **{**CARDS["hyena"], "context": 64, "chunk_overlap": 16}),
                          None)
    seq = genome[25000:25200]
    acts = hyena.embed([seq], ["hidden_states.2"])["hidden_states.2"]
    assert acts.base_span.tolist() == [[i, i + 1] for i in range(200)]  # every base exactly once
    starts = [0, 48, 96, 136]  # chunks of 64 with >= 16 overlap, the last one ending at 200
    for k, start in enumerate(starts):
        chunk = hyena.embed([seq[start:start + 64]], ["hidden_states.2"])["hidden_states.2"].values
        lo = 0 if k == 0 else (start + starts[k - 1] + 64) // 2
        hi = 200 if k == len(starts) - 1 else (starts[k + 1] + start + 64) // 2
        np.testing.assert_allclose(acts.values[lo:hi], chunk[lo - start:hi - start], atol=1e-5)
    nt = make_embedder(card_for(folders["nt"], **{**CARDS["nt"], "context": 100, "chunk_overlap": 30}), None)
    spans = nt.embed([seq], ["hidden_states.1"])["hidden_states.1"].base_span
    covered = np.zeros(200, int)
    for a, b in spans:
        covered[a:b] += 1
    assert covered.min() == 1 and spans[0, 0] == 0 and spans[-1, 1] == 200
    assert np.all(spans[1:, 0] >= spans[:-1, 0]) and covered.max() <= 2


def test_bad_characters_unknown_tokens_and_non_finite_fail_loudly(folders, embedders, genome):
    emb = embedders["hyena"]
    with pytest.raises(InputError, match=r"sequence 1 .*'\*' x1, '1' x2"):
        emb.embed(["ACGT", "AC1GT1*"], ["hidden_states.1"])
    acgt_only = folders["hyena"].parent / "hyena_acgt"
    shutil.copytree(folders["hyena"], acgt_only)
    cfg = json.loads((acgt_only / "tokenizer_config.json").read_text())
    cfg["characters"] = list("ACGT")
    (acgt_only / "tokenizer_config.json").write_text(json.dumps(cfg))
    no_n = make_embedder(card_for(acgt_only, **CARDS["hyena"]), None)
    with pytest.raises(InputError, match="unknown token"):
        no_n.embed([genome[100:150] + "N" + genome[150:200]], ["hidden_states.1"])
    broken = make_embedder(card_for(folders["gena"], **CARDS["gena"]), None)
    with torch.no_grad():
        broken.model.layers[1].mlp[0].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteActivations, match=r"model test-gena, layer hidden_states.2: .*sequence 0 \(bases 0-120\)"):
        broken.embed([genome[0:120], genome[200:290]], ["hidden_states.1", "hidden_states.2"])


def test_remote_code_needs_the_card_to_opt_in(folders):
    for kind in ("hyena", "caduceus_ps", "dnabert2", "gena"):
        with pytest.raises(InputError, match="trust_remote_code"):
            make_embedder(card_for(folders[kind], **{**CARDS[kind], "trust_remote_code": False}), None)


def _fake_cache(cache: Path, repo: str, folder: Path, commit: str) -> None:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/...}."""
    root = cache / ("models--" + repo.replace("/", "--"))
    shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)


def test_offline_loading_from_a_cache_records_the_snapshot_commit(folders, tmp_path, monkeypatch, genome):
    commit = "0123456789abcdef0123456789abcdef01234567"
    _fake_cache(tmp_path / "hub", "test-org/tiny-nt", folders["nt"], commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    card = check_card({"name": "tiny-nt", "family": "hf", "hf_id": "test-org/tiny-nt", "revision": "main",
                       "license": "test", "context": 300, "layers": ["hidden_states.1"], **CARDS["nt"]}, "c.yaml")
    emb = make_embedder(card, None, hf_cache=str(tmp_path / "hub"))
    assert emb.provenance["commit"] == commit and emb.provenance["offline"] is True
    assert emb.provenance["loaded_from"].endswith(f"snapshots/{commit}")
    assert emb.embed([genome[:60]], ["hidden_states.1"])["hidden_states.1"].values.shape == (10, 32)
    missing = {**card, "hf_id": "test-org/not-downloaded"}
    with pytest.raises(InputError, match="not in the Hugging Face cache .*prefetch"):
        make_embedder(missing, None, hf_cache=str(tmp_path / "hub"))
    assert resolve_source({**card, "hf_id": str(folders["nt"])}, None)["commit"] is None
    # a snapshot of config.json alone (a first load refused for trust_remote_code, or interrupted) is not the
    # model: it was loaded as a folder, failing on every later run with no download tried
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(folders["nt"] / "config.json", partial / "config.json")
    _fake_cache(tmp_path / "hub", "test-org/partial", partial, commit)
    with pytest.raises(InputError, match="without its safetensors weights .*HF_HUB_OFFLINE is set; .*prefetch"):
        make_embedder({**card, "hf_id": "test-org/partial"}, None, hf_cache=str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    online = resolve_source({**card, "hf_id": "test-org/partial"}, str(tmp_path / "hub"))
    assert online["local_dir"] is None and online["commit"] is None  # loaded by id: transformers fetches the rest
    # a mistyped local folder is neither a folder nor a hub id: an InputError naming the field, not a traceback
    for typo in (str(tmp_path / "no_such" / "model"), "models/typo dir"):
        with pytest.raises(InputError, match=r"field hf_id: .* is neither an existing folder nor a valid Hugging"):
            resolve_source({**card, "hf_id": typo}, None)



@pytest.mark.parametrize("env", [{}, {"HF_HOME": "hf-home"}, {"HF_HUB_CACHE": "hub-cache"}, "config"])
def test_a_model_missing_from_the_cache_names_the_folder_looked_in(tmp_path, env):
    """Offline, a hub model not in the cache named the cache '(default)' when embed.hf_cache was null: the user
    could not tell where the run had looked (HF_HOME on the login node and the compute node may differ). A new
    process per case: huggingface_hub reads the variables when imported."""
    import subprocess
    import sys

    env_vars = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME")}
    env_vars.update({"HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    for var, value in (env if isinstance(env, dict) else {}).items():
        env_vars[var] = str(tmp_path / value)
    folder = {"HF_HOME": tmp_path / "hf-home" / "hub", "HF_HUB_CACHE": tmp_path / "hub-cache"}.get(
        next(iter(env), None) if isinstance(env, dict) else None, tmp_path / "home/.cache/huggingface/hub")
    cache = None
    if env == "config":
        cache = folder = tmp_path / "configured"
    code = ("import sys\nfrom interp.embed.hub import resolve_source\nfrom interp.errors import InputError\n"
            "try:\n    resolve_source({'name': 'tiny-nt', 'hf_id': 'test-org/not-downloaded', 'revision': 'main'}, "
            f"{None if cache is None else str(cache)!r})\nexcept InputError as err:\n    print(err)\n"
            "else:\n    sys.exit('no error')\n")
    res = subprocess.run([sys.executable, "-c", code], env=env_vars, capture_output=True, text=True, timeout=120)
    message = res.stdout.strip()
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Hugging Face cache {folder} (" in message, message
    assert "(default)" not in message and "python -m interp.cli prefetch --configfile" in message, message
    assert len(message.splitlines()) == 1, message


def test_an_unreachable_hub_says_to_prefetch(folders, tmp_path, monkeypatch):
    """Not offline, a hub id not cached is downloaded; on a compute node without network transformers raises an
    OSError of several lines ("We couldn't connect to ..."): the one-line error must say how to get the model."""
    from transformers import PretrainedConfig

    def unreachable(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in "
                      "the cached files.\nCheck your internet connection or see how to run the library in offline "
                      "mode at 'https://huggingface.co/docs/transformers/installation#offline-mode'.")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(PretrainedConfig, "get_config_dict", unreachable)
    card = check_card({"name": "tiny-nt", "family": "hf", "hf_id": "test-org/not-downloaded", "revision": "main",
                       "license": "test", "context": 300, "layers": ["hidden_states.1"], **CARDS["nt"]}, "c.yaml")
    with pytest.raises(InputError) as err:
        make_embedder(card, None, hf_cache=str(tmp_path / "hub"))
    message = str(err.value)
    assert "couldn't connect" in message and f"Hugging Face cache {tmp_path / 'hub'} (embed.hf_cache)" in message
    assert "python -m interp.cli prefetch --configfile" in message and len(message.splitlines()) == 1, message

def test_prefetch_downloads_every_card_at_its_revision(tmp_path, monkeypatch):
    calls = []

    def fake_download(repo_id, revision, cache_dir, allow_patterns, ignore_patterns):
        calls.append((repo_id, revision, cache_dir, tuple(allow_patterns), ignore_patterns))
        path = Path(cache_dir) / "models--x" / "snapshots" / ("ab" * 20)
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    cards = [load_card(ROOT / "models" / f"{n}.yaml") for n in ("tiny-dnalm", "hyenadna-tiny-1k", "evo2-7b")]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    rows = prefetch_models(cards, str(tmp_path), download=fake_download)
    assert rows[0]["skipped"].startswith("built-in")
    assert calls[0][:2] == ("LongSafari/hyenadna-tiny-1k-seqlen-hf", "e8c1effa8673814e257e627d2e1eda9ea5a373f6")
    assert "*.safetensors" in calls[0][3] and "*.bin" not in calls[0][3]
    assert "*.bin" in calls[0][4]  # and left on the hub whatever the patterns match
    assert calls[1][0] == "arcinstitute/evo2_7b" and "*.pt" in calls[1][3] and calls[1][4] is None
    assert rows[1]["commit"] == "ab" * 20
    # a mistyped id (a folder path that is not there, checked by huggingface_hub before any request) or revision
    typo = {**cards[1], "hf_id": "models/typo dir"}
    with pytest.raises(InputError, match=r"field hf_id: 'models/typo dir' is neither an existing folder nor a Hugging"):
        prefetch_models([typo], str(tmp_path))  # the real snapshot_download: a traceback before

    def missing_revision(**_):
        from huggingface_hub.errors import RevisionNotFoundError

        error = RevisionNotFoundError.__new__(RevisionNotFoundError)  # as raised on the hub's 404, less a response
        Exception.__init__(error, "404 Client Error: Revision Not Found")
        raise error

    with pytest.raises(InputError, match=r"field revision: .* is not a branch, tag or commit"):
        prefetch_models(cards[1:2], str(tmp_path), download=missing_revision)

    def gated(**_):  # a RepositoryNotFoundError too: it was reported as a mistyped id
        from huggingface_hub.errors import GatedRepoError

        error = GatedRepoError.__new__(GatedRepoError)
        Exception.__init__(error, "401 Client Error. Cannot access gated repo")
        raise error

    with pytest.raises(InputError, match=r"field hf_id: .* is a gated model; accept its terms"):
        prefetch_models(cards[1:2], str(tmp_path), download=gated)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="login node"):
        prefetch_models(cards[1:2], str(tmp_path), download=fake_download)


REAL = os.environ.get("INTERP_REAL_MODELS")


@pytest.mark.real_weights
@pytest.mark.skipif(not REAL, reason="set INTERP_REAL_MODELS to a Hugging Face cache with the carded models")
@pytest.mark.parametrize("card_name", ["nucleotide-transformer-v2-50m", "nucleotide-transformer-v1-500m",
                                       "nucleotide-transformer-v2-500m", "dnabert-2-117m", "gena-lm-bert-base-t2t",
                                       "hyenadna-tiny-1k", "hyenadna-small-32k", "caduceus-ph-131k"])
def test_real_weights_embed_as_carded(card_name, monkeypatch, genome):
    card = load_card(ROOT / "models" / f"{card_name}.yaml")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        source = resolve_source(card, REAL)
    except InputError:
        pytest.skip(f"{card['hf_id']} is not in {REAL}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    emb = make_embedder(card, None, device=device, hf_cache=REAL, dtype="float32")
    acts = emb.embed([genome[5000:5600], genome[8000:8333]], card["layers"])
    assert emb.provenance["commit"] == source["commit"]
    for layer in card["layers"]:
        assert acts[layer].values.shape[1] == card["hidden_size"]
        assert acts[layer].base_span[acts[layer].offsets[1] - 1, 1] == 600


class FakeEvo2:
    """Stand-in with the evo2 package's interface: byte tokenizer, embeddings by layer name.

    Its 'activations' are causal running sums of the byte codes, so chunking and stitching are checkable.
    """

    class tokenizer:  # noqa: N801 - mirrors evo2.Evo2.tokenizer
        @staticmethod
        def tokenize(text):
            return list(text.encode())

    def __call__(self, ids, return_embeddings, layer_names):
        assert return_embeddings
        x = ids.float().cumsum(1)[..., None]
        return None, {name: torch.cat([x, x * (k + 1)], -1) for k, name in enumerate(layer_names)}


def test_evo2_embedder_chunks_byte_tokens_through_the_embedding_api():
    from interp.embed.registry import Evo2Embedder

    card = load_card(ROOT / "models/evo2-7b.yaml")
    # the card's hidden_size is checked against the layer's width, as for transformers models (it was ignored)
    with pytest.raises(InputError, match="field hidden_size: 4096, but layer blocks.28.mlp.l3 is 2 wide"):
        Evo2Embedder({**card, "context": 50}, model=FakeEvo2()).embed(["ACGT"], ["blocks.28.mlp.l3"])
    emb = Evo2Embedder({**card, "context": 50, "chunk_overlap": 10, "hidden_size": 2}, model=FakeEvo2())
    seq = "ACGT" * 30  # 120 bases: chunks at 0, 40, 70
    acts = emb.embed([seq, "acgtn"], ["blocks.28.mlp.l3"])["blocks.28.mlp.l3"]
    assert acts.offsets.tolist() == [0, 120, 125]
    assert acts.base_span[:120].tolist() == [[i, i + 1] for i in range(120)]
    codes = np.frombuffer(seq.encode(), np.uint8).astype(float)
    # hand-over at the middle of each overlap: bases 0-44 from chunk 0 (overlap 40-50), 45-79 from chunk 40
    # (overlap 70-90), 80-119 from chunk 70; the running sums restart in every chunk
    expected = np.concatenate([np.cumsum(codes[0:50])[:45], np.cumsum(codes[40:90])[5:40],
                               np.cumsum(codes[70:120])[10:]])
    np.testing.assert_allclose(acts.values[:120, 0], expected)
    with pytest.raises(InputError, match="unknown layers"):
        emb.embed([seq], ["blocks.99.mlp.l3"])


def test_causal_model_with_a_mask_is_left_padded_and_exact(tmp_path, genome):
    """A GPT-style causal model (mask + position ids): left padding with shifted positions == unpadded."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[BOS]", "A", "C", "G", "T", "N"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            bos_token="[BOS]").save_pretrained(tmp_path)
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=8, n_embd=16, n_layer=2, n_head=2, n_positions=512)).save_pretrained(tmp_path)
    emb = make_embedder(card_for(tmp_path, model_family="bert", tokenizer="character", hidden_size=16,
                                 causal=True), None)
    assert emb.padding_side == "left"
    seqs = [genome[100:300], genome[500:537]]
    together = emb.embed(seqs, ["hidden_states.2"])["hidden_states.2"]
    assert together.base_span[:200].tolist() == [[i, i + 1] for i in range(200)]
    for i, seq in enumerate(seqs):
        alone = emb.embed([seq], ["hidden_states.2"])["hidden_states.2"].values
        np.testing.assert_allclose(together.values[together.offsets[i]:together.offsets[i + 1]], alone,
                                   atol=2e-5)
    emb.accepts_positions = False  # left padding without shifted positions would change the short sequence
    shifted = emb.embed(seqs, ["hidden_states.2"])["hidden_states.2"]
    assert not np.allclose(shifted.values[200:], together.values[200:], atol=1e-3)


def test_pieces_over_max_tokens_are_cut_shorter(folders, tmp_path, genome):
    """NT-v1-style learned absolute positions: an N run gives one token per base, more tokens than positions."""
    from transformers import EsmConfig, EsmForMaskedLM

    folder = tmp_path / "nt_absolute"
    shutil.copytree(folders["nt"], folder)  # its 6-mer tokenizer; the model is replaced below
    torch.manual_seed(0)
    # positions count from padding_idx + 1 = 2: 102 positions hold 100 tokens (<cls> + <eos> + 98)
    EsmForMaskedLM(EsmConfig(vocab_size=4107, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=102, position_embedding_type="absolute",
                             pad_token_id=1, mask_token_id=2, token_dropout=False)).save_pretrained(folder)
    fields = {**CARDS["nt"], "hidden_size": 16, "context": 540, "layers": ["hidden_states.1"]}
    clean = genome[10000:10540]  # 90 6-mers + <cls> + <eos> = 92 tokens: fits
    gapped = genome[10000:10300] + "N" * 200 + genome[10500:10540]  # 50 + 200 + 6 + 2 tokens: does not
    plain = make_embedder(card_for(folder, **fields), None)
    with pytest.raises(InputError, match=r"a piece of 262 tokens does not fit the model's 102 positions .* set the "
                                         r"card's max_tokens"):  # an IndexError traceback before
        plain.embed([gapped], ["hidden_states.1"])
    emb = make_embedder(card_for(folder, **fields, max_tokens=100), None)
    pieces, tokens, contexts = emb.plan([clean, gapped])
    assert contexts[0] == 540 and contexts[1] < 540
    assert max(len(ids) for ids, _ in tokens) <= 100
    acts = emb.embed([clean, gapped], ["hidden_states.1"])["hidden_states.1"]
    o = acts.offsets
    spans = acts.base_span[o[1]:o[2]]
    covered = np.zeros(len(gapped), int)
    for a, b in spans:
        covered[a:b] += 1
    assert covered.min() == 1 and covered.max() <= 2  # every base, at most one token's overlap at a seam
    # a sequence that fits is embedded exactly as without the limit
    alone = plain.embed([clean], ["hidden_states.1"])["hidden_states.1"].values
    np.testing.assert_allclose(acts.values[o[0]:o[1]], alone, atol=2e-5, rtol=1e-4)
    # a window shorter than the context (NT v1's 5,800 bases) that tokenizes past max_tokens (110 Ns at 100): cut in
    # a few rounds of tokenization (the context was scaled instead of the piece: 36 rounds here)
    wide = make_embedder(card_for(folder, **{**fields, "context": 5800}, max_tokens=100), None)
    rounds = []
    tokenize = wide.tokenize
    wide.tokenize = lambda texts: rounds.append(len(texts)) or tokenize(texts)
    pieces, tokens, contexts = wide.plan(["N" * 110, clean])
    assert max(len(ids) for ids, _ in tokens) <= 100 and contexts[0] < 110 and len(rounds) <= 4, (rounds, contexts)
    with pytest.raises(InputError, match="max_tokens"):
        check_card({"name": "t", "family": "tiny", "license": "x", "context": 10, "layers": ["embed"],
                    "max_tokens": 12}, "t.yaml")


def test_sentencepiece_style_word_marker_covers_no_base(tmp_path, genome):
    """A Metaspace pre-tokenizer (SentencePiece-style BPE) may emit a bare U+2581 first token whose offsets (0, 1)
    claim the first base, which the next token covers too: it must be left out like CLS/SEP."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from interp.embed.variant_effect import _ids_and_spans

    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"],
                                  initial_alphabet=list("ACGTN"), show_progress=False)
    bpe.train_from_iterator([genome[i:i + 500] for i in range(10000, 40000, 500)], trainer=trainer)
    bpe.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1),
                                                                                                 ("[SEP]", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                  pad_token="[PAD]", mask_token="[MASK]")
    tok.save_pretrained(tmp_path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, pad_token_id=3)).save_pretrained(tmp_path)
    seq = genome[20000:20120]
    assert tok.convert_ids_to_tokens(tok(seq)["input_ids"])[1] == "\u2581"  # the case this test is about
    emb = make_embedder(card_for(tmp_path, tokenizer="bpe", hidden_size=16, layers=["hidden_states.1"]), None)
    acts = emb.embed([seq], ["hidden_states.1"])["hidden_states.1"]
    spans = acts.base_span
    assert spans[0, 0] == 0 and spans[-1, 1] == len(seq)
    assert np.array_equal(spans[1:, 0], spans[:-1, 1])  # tokens tile the bases, none counted twice
    ids, ve_spans = _ids_and_spans(tok, seq)
    assert ve_spans[1].tolist() == [-1, -1]  # variant effect: the marker is never the token holding base 0


def test_card_hidden_size_is_checked_against_the_layers(folders, genome):
    wrong = make_embedder(card_for(folders["gena"], **{**CARDS["gena"], "hidden_size": 768}), None)
    with pytest.raises(InputError, match="field hidden_size: 768, but layer hidden_states.1 is 32 wide"):
        wrong.embed([genome[5000:5100]], ["hidden_states.1"])
