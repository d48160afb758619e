"""interp.embed.cache: a sequence embedded once is read back, never run through the model again; another
checkpoint, layer or SAE misses; vectors are bit-identical with and without the cache."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from interp.embed.base import TokenActivations
from interp.embed.cache import (
    EmbeddingCache,
    cached_vectors,
    model_identity,
    model_key,
    sae_key,
    sequence_hash,
)
from interp.embed.cohort import embed_distinct_windows
from interp.lm.model import TinyDNALM, TinyLMConfig
from interp.lm.pretrain import save_checkpoint
from interp.sae.config import SAEConfig
from interp.sae.train import build_sae, save_sae

CARD = {"name": "tiny-dnalm", "family": "tiny", "layers": ["embed", "block1", "block2"], "context": 64,
        "license": "MIT", "card_path": "models/tiny-dnalm.yaml", "pooling": "mean"}


class CountingEmbedder:
    """A stand-in model: one token per base, activation (base code, position); counts calls and sequences."""

    name, layers, context, device, pooling = "stub", ["b1", "b2"], 1000, "cpu", "mean"

    def __init__(self) -> None:
        self.calls = 0
        self.seqs = 0

    def embed(self, seqs: list[str], layers: list[str]) -> dict[str, TokenActivations]:
        self.calls += 1
        self.seqs += len(seqs)
        lengths = [len(s) for s in seqs]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        pos = np.concatenate([np.arange(n) for n in lengths]).astype(np.int32)
        code = np.array(["ACGTN".index(b) for s in seqs for b in s], dtype=np.float32)
        out = {}
        for i, layer in enumerate(layers):
            values = np.stack([code * (i + 1), pos.astype(np.float32)], axis=1)
            out[layer] = TokenActivations(values=values, offsets=offsets, base_span=np.stack([pos, pos + 1], 1))
        return out


class IdentitySae(torch.nn.Module):
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


SEQS = ["ACGTAC", "GGGTTTAA", "ACGTAC", "TTTT", "CAGN"]


def _identity(checkpoint: Path) -> dict:
    return model_identity(CARD, checkpoint)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A random-init tiny-dnalm checkpoint, a second one with other weights, and a random SAE on block2."""
    folder = tmp_path_factory.mktemp("tiny")
    paths = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = TinyDNALM(TinyLMConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=64, dropout=0.0))
        paths[seed] = folder / f"tiny{seed}.safetensors"
        save_checkpoint(model, paths[seed])
    torch.manual_seed(2)
    sae = build_sae(SAEConfig(n_features=32, k=4, architecture="topk"), 16)
    save_sae(sae, folder / "sae.safetensors")
    return {"ckpt": paths[0], "other": paths[1], "sae": folder / "sae.safetensors"}


def test_sequence_hash_is_the_haplotypes_seq_hash() -> None:
    import hashlib

    assert sequence_hash("acgt") == hashlib.sha1(b"ACGT").hexdigest() == sequence_hash("ACGT")


def test_a_second_embedding_of_the_same_sequences_runs_the_model_zero_times(tmp_path: Path, tiny: dict) -> None:
    cache = EmbeddingCache(tmp_path, _identity(tiny["ckpt"]))
    emb = CountingEmbedder()
    first = embed_distinct_windows(emb, SEQS, ["b1"], 2, IdentitySae(), "b2", cache=cache, sae_cache_key="sae-x@b2")
    assert emb.calls == 3 and (cache.hits, cache.misses) == (0, 5)
    # a rerun, a new phenotype, another job: a fresh cache object on the same folder
    again = EmbeddingCache(tmp_path, _identity(tiny["ckpt"]))
    emb2 = CountingEmbedder()
    second = embed_distinct_windows(emb2, SEQS, ["b1"], 2, IdentitySae(), "b2", cache=again,
                                    sae_cache_key="sae-x@b2")
    assert emb2.calls == 0 and (again.hits, again.misses) == (5, 0)
    assert list(second) == list(first) == ["b1", "sae"]
    for name in first:
        assert first[name].dtype == second[name].dtype == np.float32
        assert np.array_equal(first[name], second[name])
    # sharded by the hash's first two hex digits, one file per (layer, sequence)
    path = again.path("b1", sequence_hash("TTTT"))
    assert path.parent.name == sequence_hash("TTTT")[:2] and path.is_file()
    assert (again.dir / "identity.json").is_file() and again.dir.name.startswith("tiny-dnalm-")


def test_only_the_missing_sequences_are_embedded(tmp_path: Path, tiny: dict) -> None:
    cache = EmbeddingCache(tmp_path, _identity(tiny["ckpt"]))
    emb = CountingEmbedder()
    embed_distinct_windows(emb, SEQS[:2], ["b1"], 8, IdentitySae(), "b2", cache=cache, sae_cache_key="s")
    emb = CountingEmbedder()
    out = embed_distinct_windows(emb, SEQS, ["b1"], 8, IdentitySae(), "b2", cache=cache, sae_cache_key="s")
    assert emb.seqs == 2  # TTTT and CAGN; ACGTAC twice and GGGTTTAA were cached
    plain = embed_distinct_windows(CountingEmbedder(), SEQS, ["b1"], 8, IdentitySae(), "b2")
    for name in plain:
        assert np.array_equal(out[name], plain[name])


def test_another_checkpoint_layer_or_sae_misses(tmp_path: Path, tiny: dict) -> None:
    ident = _identity(tiny["ckpt"])
    other = _identity(tiny["other"])
    assert ident["checkpoint_sha256"] != other["checkpoint_sha256"]
    assert model_key(ident) != model_key(other)
    cache = EmbeddingCache(tmp_path, ident)
    embed_distinct_windows(CountingEmbedder(), SEQS, ["b1"], 8, IdentitySae(), "b2", cache=cache,
                           sae_cache_key="sae-a@b2")
    for layers, key, identity in ((["b1"], "sae-a@b2", other),  # other checkpoint
                                  (["b2"], "sae-a@b2", ident),  # other layer
                                  (["b1"], "sae-b@b2", ident)):  # other SAE
        c = EmbeddingCache(tmp_path, identity)
        emb = CountingEmbedder()
        embed_distinct_windows(emb, SEQS, layers, 8, IdentitySae(), "b2", cache=c, sae_cache_key=key)
        assert emb.seqs == 5 and c.misses == 5 and c.hits == 0
    # numerics settings are part of the identity too
    assert model_key(model_identity(CARD, tiny["ckpt"], dtype="bfloat16")) != model_key(ident)


def test_sae_key_names_the_weights(tiny: dict, tmp_path: Path) -> None:
    key = sae_key(tiny["sae"], "block2")
    assert key.startswith("sae-") and key.endswith("@block2")
    torch.manual_seed(3)
    save_sae(build_sae(SAEConfig(n_features=32, k=4, architecture="topk"), 16), tmp_path / "other.safetensors")
    assert sae_key(tmp_path / "other.safetensors", "block2") != key


def test_tiny_model_vectors_are_bit_identical_with_and_without_the_cache(tmp_path: Path, tiny: dict) -> None:
    from interp.embed.tiny import TinyEmbedder
    from interp.sae.train import load_sae

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), size=int(n))) for n in rng.integers(60, 140, size=23)]
    emb = TinyEmbedder(tiny["ckpt"])
    sae = load_sae(tiny["sae"])
    key = sae_key(tiny["sae"], "block2")
    plain = embed_distinct_windows(emb, seqs, ["block1", "block2"], 4, sae, "block2")
    cache = EmbeddingCache(tmp_path, _identity(tiny["ckpt"]))
    # half first (other batches than the plain run), then all: partly cached, partly computed
    embed_distinct_windows(emb, seqs[::2], ["block1", "block2"], 4, sae, "block2", cache=cache, sae_cache_key=key)
    mixed = embed_distinct_windows(emb, seqs, ["block1", "block2"], 4, sae, "block2", cache=cache,
                                   sae_cache_key=key)
    cached = embed_distinct_windows(emb, seqs, ["block1", "block2"], 4, sae, "block2", cache=cache,
                                    sae_cache_key=key)
    assert cache.hits == 12 + 23 and cache.misses == 12 + 11
    for name in plain:
        assert np.array_equal(plain[name], mixed[name]), name
        assert np.array_equal(plain[name], cached[name]), name


@pytest.mark.parametrize("content", [b"not a numpy file", b""], ids=["foreign", "empty"])
def test_unreadable_file_is_a_miss_and_is_rewritten(tmp_path: Path, tiny: dict, content: bytes) -> None:
    """A foreign file, or an empty one (a rename that reached the disk before the data, then a crash)."""
    cache = EmbeddingCache(tmp_path, _identity(tiny["ckpt"]))
    cached_vectors(["ACGT"], {"x": "x"}, lambda s: {"x": np.ones((len(s), 3), np.float32)}, cache)
    path = cache.path("x", sequence_hash("ACGT"))
    path.write_bytes(content)
    calls = []

    def compute(s):
        calls.append(list(s))
        return {"x": np.full((len(s), 3), 2, np.float32)}

    out = cached_vectors(["ACGT"], {"x": "x"}, compute, cache)
    assert calls == [["ACGT"]] and out["x"].tolist() == [[2.0, 2.0, 2.0]]
    assert np.load(path).tolist() == [2.0, 2.0, 2.0]


def test_concurrent_writers_leave_whole_vectors(tmp_path: Path, tiny: dict) -> None:
    cache = EmbeddingCache(tmp_path, _identity(tiny["ckpt"]))
    vec = np.arange(4096, dtype=np.float32)
    errors = []

    def writer() -> None:
        try:
            for _ in range(20):
                cache.put("layer", "ab" * 20, vec)
                got = cache.get("layer", "ab" * 20)
                assert got is None or np.array_equal(got, vec)
        except Exception as err:  # noqa: BLE001 - collected for the assertion below
            errors.append(err)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [p.name for p in cache.path("layer", "ab" * 20).parent.iterdir()] == ["ab" * 20 + ".npy"]


def test_hub_model_on_a_moving_revision_is_not_cached() -> None:
    card = {"name": "nt", "family": "hf", "hf_id": "x/y", "revision": "main", "layers": ["a"], "context": 10}
    assert model_identity(card, None) is None
    assert model_identity(card, None, commit="a" * 40)["commit"] == "a" * 40
    assert model_identity({**card, "revision": "b" * 40}, None)["commit"] == "b" * 40


def test_local_model_folder_is_not_cached_under_the_cards_revision(tmp_path: Path) -> None:
    """A local folder is loaded as it is (its files may be replaced in place); a commit-looking revision in the
    card does not describe it, so it gives no identity; a hub-cache snapshot folder's commit does."""
    card = {"name": "nt", "family": "hf", "hf_id": str(tmp_path), "revision": "b" * 40, "layers": ["a"],
            "context": 10}
    assert model_identity(card, None) is None
    assert model_identity(card, None, commit="c" * 40)["commit"] == "c" * 40


def test_a_cache_that_cannot_be_written_is_read_and_the_job_goes_on(tmp_path: Path, tiny: dict, monkeypatch,
                                                                    caplog) -> None:
    """Hits are served from a read-only cache, misses computed and returned, no write attempted after the first
    failure; a cache folder that cannot even be created is all misses."""
    import contextlib

    import interp.embed.cache as cache_module

    ident = _identity(tiny["ckpt"])
    filled = EmbeddingCache(tmp_path / "c", ident)
    cached_vectors(["ACGT"], {"x": "x"}, lambda s: {"x": np.ones((len(s), 3), np.float32)}, filled)
    (filled.dir / "identity.json").unlink()  # a new cache opened on it would write it again
    attempts = []

    @contextlib.contextmanager
    def read_only(path, unique=False):
        attempts.append(path)
        raise PermissionError(30, "Read-only file system", str(path))
        yield

    monkeypatch.setattr(cache_module, "atomic_path", read_only)
    cache = EmbeddingCache(tmp_path / "c", ident)
    out = cached_vectors(["ACGT", "GGCC", "TTAA"], {"x": "x"},
                         lambda s: {"x": np.full((len(s), 3), 2, np.float32)}, cache)
    assert out["x"].tolist() == [[1.0] * 3, [2.0] * 3, [2.0] * 3]
    assert (cache.hits, cache.misses, cache.writable, len(attempts)) == (1, 2, False, 1)
    assert "cannot be written" in caplog.text
    (tmp_path / "file").write_text("")
    nowhere = EmbeddingCache(tmp_path / "file" / "cache", ident)
    out = cached_vectors(["ACGT"], {"x": "x"}, lambda s: {"x": np.full((len(s), 3), 2, np.float32)}, nowhere)
    assert out["x"].tolist() == [[2.0] * 3] and not nowhere.writable


def test_adding_a_layer_to_the_card_keeps_the_cached_vectors(tmp_path: Path, tiny: dict) -> None:
    """The card's list of layers, its stated width and family name do not change a layer's vectors: a card
    extended by a layer (or given hidden_size) embeds nothing again for the layers already cached."""
    cache = EmbeddingCache(tmp_path, model_identity(CARD, tiny["ckpt"]))
    embed_distinct_windows(CountingEmbedder(), SEQS, ["b1"], 8, IdentitySae(), "b2", cache=cache, sae_cache_key="s")
    wider = {**CARD, "layers": [*CARD["layers"], "block3"], "hidden_size": 16, "model_family": "tiny"}
    again = EmbeddingCache(tmp_path, model_identity(wider, tiny["ckpt"]))
    emb = CountingEmbedder()
    embed_distinct_windows(emb, SEQS, ["b1"], 8, IdentitySae(), "b2", cache=again, sae_cache_key="s")
    assert again.dir == cache.dir and emb.seqs == 0 and (again.hits, again.misses) == (5, 0)


@pytest.mark.parametrize("field, value", [("context", 32), ("pooling", "last"), ("rc_average", True),
                                          ("chunk_overlap", 4), ("max_tokens", 40), ("family", "hf"),
                                          ("architecture", {"d_model": 16})])
def test_a_card_field_that_changes_the_vectors_changes_the_key(tiny: dict, field: str, value) -> None:
    assert model_key(model_identity({**CARD, field: value}, tiny["ckpt"])) != model_key(_identity(tiny["ckpt"]))
