"""Tests of the embedders (built-in tiny LM, local Hugging Face BERT) and the embedding runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import polars as pl
import pytest
import torch
from Bio import SeqIO

from interp.embed.hf import HFEmbedder, spans_by_matching
from interp.embed.registry import load_card, make_embedder
from interp.embed.run import embed_sequences, embed_windows
from interp.embed.store import TokenStore
from interp.embed.tiny import TinyEmbedder
from interp.errors import InputError
from interp.lm.model import TinyDNALM, TinyLMConfig
from interp.lm.pretrain import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DEMO_FASTA = ROOT / "resources/demo/hg19_chr17_1-40000.fa"
LABELS = ("exon", "intron", "repeat", "cpg")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = TinyDNALM(TinyLMConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=64, dropout=0.0))
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    save_checkpoint(model, path)
    return path


@pytest.fixture(scope="module")
def demo() -> str:
    return str(next(SeqIO.parse(str(DEMO_FASTA), "fasta")).seq)


def make_tables(genome: str, n_windows: int = 7, width: int = 100, first: int = 5000):
    """Windows over the soft-masked demo genome and a per-base table with planted labels."""
    end = first + n_windows * width
    pos = np.arange(first - 50, end + 50)
    upper = genome.upper()
    bases = pl.DataFrame({
        "contig": ["chr17"] * len(pos),
        "pos": pos,
        "base": [upper[p] for p in pos],
        "repeat": [genome[p].islower() for p in pos],
        "exon": (pos % 37) < 5,
        "intron": (pos % 37) >= 30,
        "cpg": [upper[p:p + 2] == "CG" or upper[p - 1:p + 1] == "CG" for p in pos],
    })
    starts = np.arange(first, end, width)
    windows = pl.DataFrame({
        "window_index": np.arange(n_windows)[::-1].copy(),  # deliberately unsorted
        "window_id": [f"chr17:{s}-{s + width}" for s in starts],
        "region": ["demo"] * n_windows,
        "contig": ["chr17"] * n_windows,
        "start": starts,
        "end": starts + width,
        "sequence": [genome[s:s + width] for s in starts],  # soft-masked: embedder must upper-case
        "gc": np.linspace(0.3, 0.6, n_windows),
    })
    return windows, bases


# --- tiny embedder -----------------------------------------------------------------------------

def test_tiny_upper_case_copy_is_bitwise_identical(tiny_checkpoint, demo):
    emb = TinyEmbedder(tiny_checkpoint)
    seq = demo[5000:5120]
    assert any(c.islower() for c in seq)
    a = emb.embed([seq], ["block2"])["block2"]
    b = emb.embed([seq.upper()], ["block2"])["block2"]
    assert np.array_equal(a.values, b.values)
    assert np.array_equal(a.base_span, np.stack([np.arange(120), np.arange(1, 121)], axis=1))


def test_tiny_long_sequences_are_split_and_rejoined(tiny_checkpoint, demo):
    emb = TinyEmbedder(tiny_checkpoint)
    long, short = demo[100:250].upper(), demo[400:430].upper()
    acts = emb.embed([long, short], ["embed", "block1"])
    assert acts["block1"].offsets.tolist() == [0, 150, 180]
    assert acts["block1"].values.shape == (180, 16)
    # the second 64-base piece of `long` is run on its own
    alone = emb.embed([long[64:128]], ["block1"])["block1"].values
    assert np.allclose(acts["block1"].values[64:128], alone, atol=1e-5)
    assert acts["block1"].base_span[149].tolist() == [149, 150]
    with pytest.raises(InputError):
        emb.embed([short], ["block7"])
    with pytest.raises(InputError, match=r"'-' x1"):
        emb.embed([short, short[:10] + "-" + short[11:]], ["block1"])
    # IUPAC codes (GRCh38 has a few) are read as N and counted, never silently mapped
    iupac = emb.embed([short[:10] + "Y" + short[11:]], ["block1"])["block1"].values
    as_n = emb.embed([short[:10] + "N" + short[11:]], ["block1"])["block1"].values
    assert np.array_equal(iupac, as_n) and emb.input_counts["iupac_as_N"] == 1 and emb.input_counts["N"] == 1


def test_bad_checkpoint_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.safetensors"):
        TinyEmbedder(bad)
    with pytest.raises(InputError, match="not found"):
        TinyEmbedder(tmp_path / "missing.safetensors")


def test_diverged_checkpoint_is_refused_with_model_and_layer(tmp_path):
    """A checkpoint whose weights hold NaN (a diverged training) stops at embedding with a clean error naming
    model and layer, instead of writing NaN into the stores that probes and SAEs read."""
    torch.manual_seed(0)
    model = TinyDNALM(TinyLMConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=64, dropout=0.0))
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "blocks.1" in n).fill_(float("nan"))
    path = tmp_path / "diverged.safetensors"
    save_checkpoint(model, path)
    emb = TinyEmbedder(path)
    assert np.isfinite(emb.embed(["ACGTACGT"], ["block1"])["block1"].values).all()
    with pytest.raises(InputError, match="model tiny-dnalm, layer block2: .* non-finite activation"):
        emb.embed(["ACGTACGT"], ["block2"])


# --- embed_windows / embed_sequences -----------------------------------------------------------

def run_windows(emb, windows, bases, out: Path):
    return embed_windows(emb, windows, bases, layers=["embed", "block2"], token_layers=["block2"],
                         batch_size=3, pooled_out={"embed": out / "embed.h5ad", "block2": out / "block2.h5ad"},
                         token_out={"block2": out / "block2.zarr"}, label_names=LABELS)


def test_embed_windows_outputs(tiny_checkpoint, demo, tmp_path):
    emb = TinyEmbedder(tiny_checkpoint, name="tiny-test")
    windows, bases = make_tables(demo)
    stats = run_windows(emb, windows, bases, tmp_path)
    assert stats["n_windows"] == 7 and stats["n_tokens"] == 700
    adata = ad.read_h5ad(tmp_path / "block2.h5ad")
    assert adata.X.dtype == np.float32 and adata.shape == (7, 16)
    ordered = windows.sort("window_index")
    assert list(adata.obs_names) == ordered["window_id"].to_list()
    assert "sequence" not in adata.obs.columns and "gc" in adata.obs.columns
    assert adata.uns["model"] == "tiny-test" and adata.uns["layer"] == "block2" and adata.uns["pooling"] == "mean"

    store = TokenStore(tmp_path / "block2.zarr")
    acts = store.activations[:]
    widx = store.window_index[:]
    assert store.n_tokens == 700 and store.label_names == list(LABELS)
    for row, w in enumerate(ordered["window_index"].to_list()):
        assert np.allclose(adata.X[row], acts[widx == w].mean(axis=0), atol=1e-6)

    # labels: each character token carries exactly its base's flags
    flags = {name: dict(zip(bases["pos"].to_list(), bases[name].to_list(), strict=True)) for name in LABELS}
    start_of = dict(zip(ordered["window_index"].to_list(), ordered["start"].to_list(), strict=True))
    genome_pos = np.array([start_of[w] for w in widx]) + store.base_start[:]
    for name in LABELS:
        expected = np.array([flags[name][p] for p in genome_pos], dtype=np.uint8)
        assert np.array_equal(store.labels(name), expected), name
        assert 0 < expected.sum() < len(expected), name  # planted labels are neither empty nor full
    assert not list(tmp_path.glob("*.partial*")) and not list(tmp_path.glob("*.tmp*"))  # temp names gone


def test_token_labels_cost_the_bases_studied_not_their_coordinates(tiny_checkpoint, demo, tmp_path):
    # The same windows 5 Mb further along the contig get the same token labels, and the label lookup holds
    # memory for the table's bases only: until the thirty-third session it held 5 int64 arrays over positions
    # 0..max(pos) (a gene at the end of chr1: about 10 GB; 200 MB here).
    from interp.embed.run import label_prefix_sums

    emb = TinyEmbedder(tiny_checkpoint)
    windows, bases = make_tables(demo)
    shift = 5_000_000
    far_windows = windows.with_columns(pl.col("start") + shift, pl.col("end") + shift)
    far_bases = bases.with_columns(pl.col("pos") + shift)
    sums = label_prefix_sums(far_bases, LABELS)
    held = sum(a.nbytes for per in sums.values() for a in per.values())
    assert held <= 8 * (len(LABELS) + 1) * (bases.height + 1), held
    run_windows(emb, windows, bases, tmp_path / "near")
    run_windows(emb, far_windows, far_bases, tmp_path / "far")
    near, far = TokenStore(tmp_path / "near/block2.zarr"), TokenStore(tmp_path / "far/block2.zarr")
    for name in LABELS:
        assert np.array_equal(near.labels(name), far.labels(name)), name
    # a position listed twice (overlapping windows' bases) counts once, labelled if either row is
    doubled = pl.concat([bases, bases.filter(pl.col("pos") == 5150).with_columns(exon=pl.lit(True))])
    run_windows(emb, windows, doubled, tmp_path / "doubled")
    store = TokenStore(tmp_path / "doubled/block2.zarr")
    start_of = dict(zip(windows["window_index"].to_list(), windows["start"].to_list(), strict=True))
    genome_pos = np.array([start_of[w] for w in store.window_index[:]]) + store.base_start[:]
    assert store.labels("exon")[genome_pos == 5150].all()
    assert np.array_equal(store.labels("exon")[genome_pos != 5150], near.labels("exon")[genome_pos != 5150])


def test_embed_windows_is_deterministic(tiny_checkpoint, demo, tmp_path):
    emb = TinyEmbedder(tiny_checkpoint)
    windows, bases = make_tables(demo)
    run_windows(emb, windows, bases, tmp_path / "a")
    run_windows(emb, windows, bases, tmp_path / "b")
    assert np.array_equal(ad.read_h5ad(tmp_path / "a/embed.h5ad").X, ad.read_h5ad(tmp_path / "b/embed.h5ad").X)
    sa, sb = TokenStore(tmp_path / "a/block2.zarr"), TokenStore(tmp_path / "b/block2.zarr")
    assert np.array_equal(sa.activations[:], sb.activations[:])


def test_embed_windows_bad_inputs(tiny_checkpoint, demo, tmp_path):
    emb = TinyEmbedder(tiny_checkpoint)
    windows, bases = make_tables(demo)
    with pytest.raises(InputError, match="cpg"):
        run_windows(emb, windows, bases.drop("cpg"), tmp_path)
    with pytest.raises(InputError, match="lacks some positions"):
        run_windows(emb, windows, bases.filter(pl.col("pos") != 5150), tmp_path)
    short = windows.with_columns(pl.col("sequence").str.slice(0, 50))
    with pytest.raises(InputError, match="end - start"):
        run_windows(emb, short, bases, tmp_path)
    # no windows: not 0 x 0 pooled tables and no token store, written without an error
    with pytest.raises(InputError, match="windows table: no windows"):
        run_windows(emb, windows.head(0), bases, tmp_path)
    assert not (tmp_path / "embed.h5ad").exists()


def test_embed_sequences_with_token_transform(tiny_checkpoint, demo):
    emb = TinyEmbedder(tiny_checkpoint)
    seqs = [demo[1000:1090], demo[2000:2030].lower(), demo[3000:3200]]
    w = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
    out = embed_sequences(emb, seqs, ["block1"], batch_size=2,
                          token_transforms={"feat": ("block2", lambda x: np.maximum(x @ w, 0))})
    assert out["block1"].shape == (3, 16) and out["feat"].shape == (3, 5)
    for i, s in enumerate(seqs):
        acts = emb.embed([s.upper()], ["block1", "block2"])
        assert np.allclose(out["block1"][i], acts["block1"].values.mean(axis=0), atol=1e-6)
        assert np.allclose(out["feat"][i], np.maximum(acts["block2"].values @ w, 0).mean(axis=0), atol=1e-5)



def test_a_layer_named_twice_is_pooled_and_stored_once(tiny_checkpoint, demo, tmp_path):
    """embed.layers / token_layers listing a layer twice: each batch's pooled rows were appended twice (the
    cohort path then took other sequences' vectors for later rows) and every token was stored twice."""
    emb = TinyEmbedder(tiny_checkpoint)
    seqs = [demo[1000 + 100 * i:1040 + 100 * i] for i in range(5)]
    once = embed_sequences(emb, seqs, ["block1"], batch_size=2)["block1"]
    twice = embed_sequences(emb, seqs, ["block1", "block1"], batch_size=2)["block1"]
    assert twice.shape == once.shape == (5, 16)
    np.testing.assert_array_equal(twice, once)
    windows, bases = make_tables(demo)
    stats = embed_windows(emb, windows, bases, layers=["embed", "embed"], token_layers=["block2", "block2"],
                          batch_size=3, pooled_out={"embed": tmp_path / "embed.h5ad"},
                          token_out={"block2": tmp_path / "block2.zarr"}, label_names=LABELS)
    assert stats["n_tokens"] == 700 and TokenStore(tmp_path / "block2.zarr").n_tokens == 700
    assert ad.read_h5ad(tmp_path / "embed.h5ad").shape == (7, 16)

# --- model cards and registry -------------------------------------------------------------------

def test_card_pooling_last_reaches_the_built_in_model_and_the_h5ad(tiny_checkpoint, demo, tmp_path):
    """A card's `pooling: last` was ignored by the built-in model (always mean) and every h5ad said mean."""
    card = load_card(ROOT / "models/tiny-dnalm.yaml")
    card["pooling"] = "last"
    emb = make_embedder(card, tiny_checkpoint)
    windows, bases = make_tables(demo)
    embed_windows(emb, windows, bases, layers=["block2"], token_layers=["block2"], batch_size=3,
                  pooled_out={"block2": tmp_path / "block2.h5ad"}, token_out={"block2": tmp_path / "block2.zarr"},
                  label_names=LABELS)
    adata = ad.read_h5ad(tmp_path / "block2.h5ad")
    assert adata.uns["pooling"] == "last"
    store = TokenStore(tmp_path / "block2.zarr")
    acts, widx = store.activations[:], store.window_index[:]
    for row, w in enumerate(windows.sort("window_index")["window_index"].to_list()):
        np.testing.assert_array_equal(adata.X[row], acts[widx == w][-1])

def test_all_shipped_cards_load():
    cards = {p.stem: load_card(p) for p in sorted((ROOT / "models").glob("*.yaml"))}
    assert {"tiny-dnalm", "nucleotide-transformer-v2-50m", "dnabert-2-117m", "hyenadna-tiny-1k", "caduceus-ph-131k",
            "evo2-7b"} <= set(cards)
    for card in cards.values():
        assert card["description"] and card["license"]
    assert cards["tiny-dnalm"]["trust_remote_code"] is False
    assert cards["dnabert-2-117m"]["hf_id"] == "zhihan1996/DNABERT-2-117M"


def test_card_errors_name_file_and_key(tmp_path):
    card = tmp_path / "broken.yaml"
    good = "name: x\nfamily: hf\nhf_id: org/x\nlayers: [hidden_states.1]\ncontext: 10\nlicense: MIT\n"
    cases = {
        "name: x\nfamily: hf\nlayers: [hidden_states.1]\nlicense: MIT\n": "field context: required",
        good.replace("family: hf", "family: jax"): "field family: expected one of",
        good + "trust_remote_cod: true\n": "field trust_remote_cod: unknown card key",
        # the dtype is embed.dtype's: a card key for it was accepted and silently ignored
        good + "torch_dtype: bfloat16\n": "field torch_dtype: unknown card key",
        good + "trust_remote_code: yes please\n": "field trust_remote_code: expected bool",
        good.replace("context: 10", "context: -3"): "field context: expected a positive integer",
        good + "tokenizer: 6mer\n": "field tokenizer: expected one of",
        good + "pooling: max\n": "field pooling: expected one of",
        good.replace("hf_id: org/x\n", ""): "field hf_id: required for family hf",
        good.replace("[hidden_states.1]", "[a, a]"): "field layers: layer names repeat",
        # layer names become file and folder names of the run: a path in one would write outside results/
        good.replace("[hidden_states.1]", "['../../../outside']"): "field layers: layer name '../../../outside'",
        good.replace("[hidden_states.1]", "[encoder/layer]"): "field layers: layer name 'encoder/layer'",
        good.replace("[hidden_states.1]", "[.hidden]"): "field layers: layer name '.hidden'",
        good.replace("[hidden_states.1]", "[hidden_states.last]"): "expected hidden_states.<i> with <i> a whole",
        good + "chunk_overlap: 10\n": "field chunk_overlap",
        # the built-in embedder reads one strand and tiles without overlap: these were accepted and ignored
        good.replace("family: hf", "family: tiny") + "rc_average: true\n": "field rc_average: the built-in model",
        good.replace("family: hf", "family: tiny") + "chunk_overlap: 2\n": "field chunk_overlap: the built-in",
        "- just\n- a list\n": "expected a YAML mapping",
    }
    for text, message in cases.items():
        card.write_text(text)
        with pytest.raises(InputError, match=message):
            load_card(card)
    card.write_text(good)
    loaded = load_card(card)
    assert loaded["trust_remote_code"] is False and loaded["revision"] == "main" and loaded["pooling"] == "mean"
    assert loaded["chunk_overlap"] == 1 and loaded["rc_average"] is False


def test_evo2_without_package_and_tiny_without_checkpoint():
    with pytest.raises(InputError, match="evo2"):
        make_embedder(load_card(ROOT / "models/evo2-7b.yaml"), None)
    with pytest.raises(InputError, match="checkpoint"):
        make_embedder(load_card(ROOT / "models/tiny-dnalm.yaml"), None)


def test_make_embedder_tiny(tiny_checkpoint):
    card = load_card(ROOT / "models/tiny-dnalm.yaml")
    emb = make_embedder(card, tiny_checkpoint)
    assert emb.name == "tiny-dnalm" and emb.layers == ["embed", "block1", "block2"] and emb.context == 64


# --- Hugging Face path, with a tiny local BERT --------------------------------------------------

def build_local_bert(path: Path, kmer: int) -> Path:
    """A random 2-layer BERT with a WordPiece tokenizer over single bases (kmer=1) or 3-mers (+ single bases)."""
    import itertools

    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ["".join(p) for p in itertools.product("ACGTN", repeat=kmer)] + list("ACGTN") * (kmer > 1)
    words = list(dict.fromkeys(words))
    vocab = {tok: i for i, tok in enumerate(specials + words + ["##" + w for w in words])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100_000))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=128))
    fast.save_pretrained(path)
    model.save_pretrained(path)
    return path


def hf_card(path: Path, **extra) -> dict:
    return {"name": "local-bert", "family": "hf", "hf_id": str(path), "revision": "main", "context": 50,
            "layers": ["hidden_states.0", "hidden_states.1", "hidden_states.2"], "trust_remote_code": False,
            **extra}


@pytest.fixture(scope="module")
def char_bert(tmp_path_factory) -> Path:
    return build_local_bert(tmp_path_factory.mktemp("charbert"), kmer=1)


@pytest.fixture(scope="module")
def kmer_bert(tmp_path_factory) -> Path:
    return build_local_bert(tmp_path_factory.mktemp("kmerbert"), kmer=3)


def test_hf_character_tokens_exclude_specials(char_bert, demo):
    from transformers import AutoModel, AutoTokenizer

    emb = make_embedder(hf_card(char_bert), None)
    seq = demo[7000:7040]
    acts = emb.embed([seq.lower(), seq], ["hidden_states.2"])["hidden_states.2"]
    assert acts.offsets.tolist() == [0, 40, 80]
    assert np.array_equal(acts.base_span[:40], np.stack([np.arange(40), np.arange(1, 41)], axis=1))
    assert np.array_equal(acts.values[:40], acts.values[40:])
    # direct run: the embedder's rows are the hidden states without [CLS] and [SEP]
    tok, model = AutoTokenizer.from_pretrained(char_bert), AutoModel.from_pretrained(char_bert)
    with torch.inference_mode():
        hidden = model(**tok([seq], return_tensors="pt"), output_hidden_states=True).hidden_states[2][0]
    assert hidden.shape[0] == 42
    assert np.allclose(acts.values[:40], hidden[1:-1].numpy(), atol=1e-5)


def test_hf_kmer_spans_cover_several_bases_and_long_sequences_split(kmer_bert, demo):
    emb = HFEmbedder(hf_card(kmer_bert, chunk_overlap=0))
    seq = demo[9000:9110].upper()  # 110 bases -> pieces of 50, 50, 10 (no overlap)
    acts = emb.embed([seq, seq[:10]], ["hidden_states.1"])["hidden_states.1"]
    span = acts.base_span
    widths = span[:, 1] - span[:, 0]
    first = span[acts.offsets[0]:acts.offsets[1]]
    assert widths.max() == 3 and (widths == 3).mean() > 0.8
    # spans of the long sequence tile it exactly, in its own coordinates, across piece boundaries
    assert first[0, 0] == 0 and first[-1, 1] == 110 and np.array_equal(first[1:, 0], first[:-1, 1])
    # piece 1 = 16 3-mers + 2 single bases; piece 2 starts a fresh 3-mer at base 50
    assert first[15:19].tolist() == [[45, 48], [48, 49], [49, 50], [50, 53]]
    assert acts.offsets[2] - acts.offsets[1] == 4  # 10 bases -> 3 + 3 + 3 + 1
    pooled = embed_sequences(emb, [seq], ["hidden_states.1"], batch_size=1)["hidden_states.1"]
    assert np.allclose(pooled[0], acts.values[:acts.offsets[1]].mean(axis=0), atol=1e-5)


def test_hf_empty_sequence_has_no_tokens(char_bert):
    """An empty sequence tokenizes to special tokens only: it gets no rows (as with the built-in LM), on both
    strands, instead of a bare numpy error from stitching; pooling it says why it cannot."""
    for rc in (False, True):
        emb = HFEmbedder(hf_card(char_bert, rc_average=rc))
        acts = emb.embed(["ACGT", "", "AC"], ["hidden_states.1"])["hidden_states.1"]
        assert acts.offsets.tolist() == [0, 4, 4, 6] and acts.values.shape == (6, 32)
        assert acts.base_span.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4], [0, 1], [1, 2]]
        with pytest.raises(ValueError, match="no base-covering token"):
            embed_sequences(emb, ["ACGT", ""], ["hidden_states.1"], batch_size=2)


def test_spans_by_matching_for_slow_tokenizers():
    spans = spans_by_matching(["[CLS]", "ACG", "##TT", "N", "\u2581ac", "[SEP]"], {"[CLS]", "[SEP]"}, "ACGTTNAC")
    assert spans.tolist() == [[-1, -1], [0, 3], [3, 5], [5, 6], [6, 8], [-1, -1]]


def _with_auto_map(model_dir: Path, out: Path, target: str) -> Path:
    """A copy of a local model folder whose config.json asks for custom code `target`."""
    shutil.copytree(model_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["auto_map"] = {"AutoModel": target}
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_hf_refuses_remote_code_without_opt_in(char_bert, tmp_path):
    remote = _with_auto_map(char_bert, tmp_path / "remote", "modeling_custom.CustomModel")
    with pytest.raises(InputError, match="trust_remote_code"):
        HFEmbedder(hf_card(remote))


def test_hf_refuses_remote_code_without_opt_in_before_it_is_cached(char_bert, tmp_path, monkeypatch):
    """Loaded from the hub (not yet in the cache), a config.json with auto_map over a model_type transformers
    knows was loaded with transformers' own class, weights of the custom architecture left random, while the
    cached copy of the same card was refused. Both are refused now."""
    import interp.embed.hf as hf

    remote = _with_auto_map(char_bert, tmp_path / "remote", "modeling_custom.CustomModel")
    real = hf.resolve_source
    monkeypatch.setattr(hf, "resolve_source",
                        lambda card, cache_dir: {**real(card, cache_dir), "local_dir": None, "revision": None})
    with pytest.raises(InputError, match="field trust_remote_code: .* needs custom model code"):
        HFEmbedder(hf_card(remote))


def test_hf_refuses_custom_code_from_another_repository(char_bert, tmp_path):
    """auto_map "other/repo--module.Class" pulls code from another repository's latest files, which the
    card's revision does not pin: refused even with trust_remote_code, before any of it runs."""
    remote = _with_auto_map(char_bert, tmp_path / "cross", "someone/else--modeling_custom.CustomModel")
    with pytest.raises(InputError, match="takes custom code from another repository"):
        HFEmbedder({**hf_card(remote), "trust_remote_code": True})


def test_hf_refuses_tokenizer_code_from_another_repository(char_bert, tmp_path):
    """AutoTokenizer follows tokenizer_config.json's own auto_map: a cross-repository entry there is refused
    as config.json's is (it ran that repository's latest tokenizer code before)."""
    cross = tmp_path / "tokcross"
    shutil.copytree(char_bert, cross)
    tokenizer_config = json.loads((cross / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["someone/else--tok.Tok", None]}
    (cross / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    with pytest.raises(InputError, match=r"tokenizer_config.json takes custom code from another repository"):
        HFEmbedder({**hf_card(cross), "trust_remote_code": True})


def test_pickle_weights_need_an_evo2_card_that_opts_in(tmp_path):
    from interp.embed.hub import prefetch_card
    from interp.embed.registry import Evo2Embedder, check_card

    card = load_card(ROOT / "models" / "evo2-1b.yaml")
    assert card["trust_pickle_weights"] is True
    stub = {k: v for k, v in card.items() if k != "trust_pickle_weights"}
    with pytest.raises(InputError, match="field trust_pickle_weights: the evo2 package loads"):
        Evo2Embedder(stub, device="cuda")
    fetched = []
    row = prefetch_card(card, str(tmp_path), download=lambda **kw: fetched.append(kw) or str(tmp_path))
    assert fetched and "*.pt" in fetched[0]["allow_patterns"] and row["name"] == "evo2-1b"
    with pytest.raises(InputError, match=r"prefetch_patterns: \['\*.bin'\] would fetch pickle weights"):
        prefetch_card({"name": "x", "family": "hf", "hf_id": "a/b", "prefetch_patterns": ["*.bin"]}, None,
                      download=lambda **kw: "never")
    # a pattern that matches pickle files without naming their suffix is refused too, and whatever the patterns,
    # a card without the opt-in leaves pickle weights on the hub
    for wide in (["*"], ["*.b?n"], ["pytorch_model*"]):
        with pytest.raises(InputError, match="would fetch pickle weights"):
            prefetch_card({"name": "x", "family": "hf", "hf_id": "a/b", "prefetch_patterns": wide}, None,
                          download=lambda **kw: "never")
    plain = []
    prefetch_card({"name": "x", "family": "hf", "hf_id": "a/b"}, None,
                  download=lambda **kw: plain.append(kw) or str(tmp_path))
    assert "*.bin" in plain[0]["ignore_patterns"] and fetched[0]["ignore_patterns"] is None
    with pytest.raises(InputError, match="field revision: the evo2 package downloads"):
        check_card({**{k: v for k, v in card.items() if k != "card_path"}, "revision": "a" * 40}, "evo2.yaml")
    with pytest.raises(InputError, match="field trust_pickle_weights: only evo2 cards"):
        check_card({"name": "x", "family": "hf", "hf_id": "a/b", "layers": ["l"], "context": 8, "license": "MIT",
                    "trust_pickle_weights": True}, "x.yaml")


def test_evo2_downloads_into_the_configured_hub_cache(tmp_path, monkeypatch):
    """The evo2 package downloads through huggingface_hub's default cache, which huggingface_hub reads from
    HF_HUB_CACHE once, at its import: setting the variable before `Evo2(...)` left the package on the default
    cache (embed.hf_cache, where prefetch put the weights, was not read). The constant is set while it loads."""
    import sys
    import types

    import huggingface_hub.constants as constants
    import torch

    from interp.embed.registry import Evo2Embedder

    seen = []

    class Evo2:  # reads the cache as the package's loader does, at call time
        def __init__(self, name: str) -> None:
            seen.append((name, constants.HF_HUB_CACHE))

    monkeypatch.setitem(sys.modules, "evo2", types.SimpleNamespace(Evo2=Evo2))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    before = constants.HF_HUB_CACHE
    Evo2Embedder(load_card(ROOT / "models" / "evo2-1b.yaml"), device="cuda", hf_cache=str(tmp_path / "hub"))
    assert seen == [("evo2_1b_base", str(tmp_path / "hub"))]
    assert constants.HF_HUB_CACHE == before  # restored after loading


def test_card_with_a_repeated_key_or_not_utf8_is_refused(tmp_path):
    card = (ROOT / "models" / "hyenadna-tiny-1k.yaml").read_text()
    twice = tmp_path / "twice.yaml"
    twice.write_text(card + "trust_remote_code: false\n")
    with pytest.raises(InputError, match=r"twice.yaml: not valid YAML: .*key 'trust_remote_code' is given twice"):
        load_card(twice)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(card.encode() + "notes: caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="latin.yaml: not UTF-8 text"):
        load_card(latin)


def test_hf_refuses_pickle_checkpoint(char_bert, tmp_path):
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(char_bert, pickled)
    state = load_file(str(pickled / "model.safetensors"))
    (pickled / "model.safetensors").unlink()
    torch.save(state, pickled / "pytorch_model.bin")
    with pytest.raises(InputError, match="pickle"):
        HFEmbedder(hf_card(pickled))


def test_pool_tokens_mean_and_last_skip_special_tokens():
    from interp.embed.base import TokenActivations
    from interp.embed.run import pool_tokens

    values = np.arange(12, dtype=np.float32).reshape(6, 2)
    spans = np.array([[-1, -1], [0, 3], [3, 6], [-1, -1], [0, 1], [-1, -1]], dtype=np.int32)
    acts = TokenActivations(values=values, offsets=np.array([0, 4, 6]), base_span=spans)
    assert pool_tokens(acts, "mean").tolist() == [[3.0, 4.0], [8.0, 9.0]]  # CLS/SEP/pads excluded
    assert pool_tokens(acts, "last").tolist() == [[4.0, 5.0], [8.0, 9.0]]
    with pytest.raises(ValueError):
        pool_tokens(acts, "max")


def test_prefetch_command_line_skips_the_built_in_model(capsys):
    from interp.cli import main

    assert main(["prefetch", "tiny-dnalm"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"].startswith("built-in")
    assert main(["prefetch"]) == 2


def test_token_budget_batches_bucket_lengths_and_respect_the_budget():
    from interp.embed.pieces import chunk_starts, token_budget_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 400, 300).tolist()
    batches = token_budget_batches(lengths, 2048, max_rows=64)
    assert sorted(i for b in batches for i in b) == list(range(300))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(lengths)  # bucketing: under 10% padding
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) * longest <= 2048 or len(b) == 1
        assert len(b) <= 64
    same = token_budget_batches([5, 7, 5, 7, 6], 1000, same_length=True)
    assert all(len({[5, 7, 5, 7, 6][i] for i in b}) == 1 for b in same) and len(same) == 3
    assert token_budget_batches([3000, 10], 2048) == [[0], [1]]
    assert chunk_starts(100, 100, 10) == [0]
    assert chunk_starts(250, 100, 20) == [0, 80, 150]
    assert chunk_starts(250, 100, 0) == [0, 100, 200]


def test_cuda_where_no_gpu_is_visible_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    """embed.device: cuda on a node without a GPU (or a CPU build of torch) stopped the embed rule with torch's
    "Torch not compiled with CUDA enabled" and the pretrain rule with Lightning's MisconfigurationException,
    each a traceback. The stages now say what is wrong and what to set (exit 2)."""
    import torch

    from interp import stages
    from interp.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match=r"embed.device is 'cuda', but this job sees no CUDA GPU"):
        stages._device("cuda")
    assert stages._device("auto") == "cpu" and stages._device("cpu") == "cpu"
    assert stages._accelerator({"accelerator": "cpu"}) == "cpu"
    job = {"input": {"fasta": "resources/demo/hg19_chr17_1-40000.fa", "card": "models/tiny-dnalm.yaml"},
           "output": {"checkpoint": str(tmp_path / "lm.safetensors"), "metrics": str(tmp_path / "lm.json")},
           "params": {"reference": {"fasta": "resources/demo/hg19_chr17_1-40000.fa", "contig_aliases": {}},
                      "regions": [{"name": "r", "contig": "chr17", "start": 0, "end": 40000}],
                      "heldout_fraction": 0.2, "overrides": {"max_steps": 2}, "seed": 7, "accelerator": "gpu"},
           "threads": 1}
    import json

    rc = main(["stage", "pretrain_tiny_dnalm", json.dumps(job)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "sees no CUDA GPU" in err, err
    assert not (tmp_path / "lm.safetensors").exists()


def test_evo2_card_hf_id_is_what_the_package_loads(tmp_path, monkeypatch):
    """The evo2 package loads a hub model by name from its own repository, so a card's hf_id was ignored (a lab's
    `mylab/evo2_1b_base` or a local folder both loaded arcinstitute/evo2_1b_base while provenance named the
    card's); another hub repository is now refused and a local checkpoint is passed as `local_path`. The variant
    scorer loads through the configured hub cache too (it used the default cache, where prefetch put nothing)."""
    import sys
    import types

    import huggingface_hub.constants as constants
    import torch

    from interp.embed.registry import Evo2Embedder
    from interp.embed.variant_effect import load_scorer

    seen = []

    class Evo2:
        def __init__(self, name: str, local_path: str | None = None) -> None:
            seen.append((name, local_path, constants.HF_HUB_CACHE))

    package = types.SimpleNamespace(Evo2=Evo2)
    utils = types.SimpleNamespace(HF_MODEL_NAME_MAP={"evo2_1b_base": "arcinstitute/evo2_1b_base"})
    monkeypatch.setitem(sys.modules, "evo2", package)
    monkeypatch.setitem(sys.modules, "evo2.utils", utils)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    card = load_card(ROOT / "models" / "evo2-1b.yaml")
    with pytest.raises(InputError, match=r"field hf_id: the evo2 package loads 'evo2_1b_base' from its own repository "
                                         r"\(arcinstitute/evo2_1b_base\), not mylab/evo2_1b_base"):
        Evo2Embedder({**card, "hf_id": "mylab/evo2_1b_base"}, device="cuda")
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "evo2_1b_base.pt").write_bytes(b"")
    Evo2Embedder({**card, "hf_id": str(folder)}, device="cuda")
    (folder / "other.pt").write_bytes(b"")
    with pytest.raises(InputError, match="holds 2 .pt checkpoints"):
        Evo2Embedder({**card, "hf_id": str(folder)}, device="cuda")
    load_scorer(card, device="cuda", hf_cache=str(tmp_path / "hub"))
    assert seen == [("evo2_1b_base", str(folder / "evo2_1b_base.pt"), constants.HF_HUB_CACHE),
                    ("evo2_1b_base", None, str(tmp_path / "hub"))]


def test_card_mistakes_that_gave_tracebacks_or_were_ignored_are_named(char_bert, kmer_bert, tmp_path, demo):
    """A layer naming a module whose output is not one vector per token (`encoder`: a ModelOutput; `pooler`: one
    vector per sequence) gave an AttributeError / RuntimeError traceback; a tokenizer whose ids exceed the model's
    embeddings, an IndexError; a prefetch pattern that is not text, a TypeError at prefetch. Keys a family never
    reads (hf_class on a tiny card, architecture on an hf card, ...) were accepted and ignored, yet recorded."""
    import shutil

    from interp.embed.registry import check_card

    emb = make_embedder(hf_card(char_bert, layers=["encoder", "pooler", "hidden_states.1"]), None)
    for layer, what in (("encoder", "outputs BaseModelOutput"), ("pooler", r"outputs shape \(1, 32\)")):
        with pytest.raises(InputError, match=f"model card local-bert, field layers: the module '{layer}' {what}"):
            emb.embed([demo[100:130]], [layer])
    mixed = tmp_path / "mixed"
    shutil.copytree(char_bert, mixed)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (kmer_bert / name).exists():
            shutil.copy(kmer_bert / name, mixed / name)  # the 3-mer tokenizer beside the single-base model
    emb = make_embedder(hf_card(mixed), None)
    with pytest.raises(InputError, match=r"its tokenizer gives token id \d+, beyond the model's \d+ token embeddings"):
        emb.embed([demo[100:160].upper()], ["hidden_states.1"])
    tiny = {"name": "t", "family": "tiny", "layers": ["block1"], "context": 64, "license": "x"}
    with pytest.raises(InputError, match=r"t.yaml, field hf_class: family tiny does not read it"):
        check_card({**tiny, "hf_class": "masked_lm"}, "t.yaml")
    with pytest.raises(InputError, match=r"field causal: the built-in model \(family tiny\) is a masked LM"):
        check_card({**tiny, "causal": True}, "t.yaml")
    check_card({**tiny, "trust_remote_code": False}, "t.yaml")  # a flag at its default is fine
    with pytest.raises(InputError, match=r"h.yaml, field architecture: family hf does not read it"):
        check_card({**hf_card(char_bert), "license": "x", "architecture": {"d_model": 8}}, "h.yaml")
    with pytest.raises(InputError, match=r"field prefetch_patterns: expected a list of file-name patterns"):
        check_card({**hf_card(char_bert), "license": "x", "prefetch_patterns": ["*.json", 2]}, "h.yaml")
