"""Planted-dictionary tests for interp.sae: training, recovery, concepts, streaming, persistence."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support

from interp.embed.store import TokenStore, TokenStoreWriter
from interp.errors import InputError
from interp.sae import SAEConfig, TopKSAE, feature_table, load_sae, read_sae_metadata, save_sae, train_sae
from interp.sae.train import TrainingTokens, iter_split_chunks, split_windows

D_IN, N_ATOMS, N_TOKENS, TOKENS_PER_WINDOW, CHUNK = 32, 64, 20_000, 100, 4096
FAST = dict(n_features=128, k=3, epochs=10, batch_size=256, lr=2e-3, seed=0, dead_after_tokens=20_000)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Tokens that are exact sparse positive combinations (3 of 64 unit atoms) plus an offset.

    Label "atom0" marks exactly the tokens that use atom 0; "shuffled" is that label permuted.
    """
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(N_ATOMS, D_IN))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    active = np.stack([rng.choice(N_ATOMS, 3, replace=False) for _ in range(N_TOKENS)])
    coef = rng.uniform(1.0, 2.0, size=(N_TOKENS, 3))
    x = np.einsum("nk,nkd->nd", coef, atoms[active]) + 0.3
    window = np.arange(N_TOKENS) // TOKENS_PER_WINDOW
    atom0 = (active == 0).any(axis=1).astype(np.uint8)
    labels = {"atom0": atom0, "shuffled": rng.permutation(atom0)}
    path = tmp_path_factory.mktemp("sae") / "tokens.zarr"
    writer = TokenStoreWriter(path, D_IN, list(labels), "synthetic", "layer0", chunk_rows=CHUNK)
    for s in range(0, N_TOKENS, 5000):
        part = slice(s, s + 5000)
        writer.append(x[part], window[part], np.arange(5000) % TOKENS_PER_WINDOW,
                      {k: v[part] for k, v in labels.items()})
    writer.close()
    windows = pl.DataFrame({"window_index": np.arange(N_TOKENS // TOKENS_PER_WINDOW),
                            "window_id": [f"chr1:{i * 1000}-{i * 1000 + 1000}"
                                          for i in range(N_TOKENS // TOKENS_PER_WINDOW)]})
    coef_atom0 = np.where(active == 0, coef, 0.0).sum(axis=1)
    return {"path": path, "atoms": atoms, "x": x, "window": window, "labels": labels, "windows": windows,
            "coef_atom0": coef_atom0}


@pytest.fixture(scope="module")
def trained(planted):
    return train_sae(planted["path"], SAEConfig(**FAST), threads=1)


def test_recovers_planted_dictionary(planted, trained):
    model, metrics = trained
    assert metrics["fvu"] < 0.2
    assert 0 < metrics["l0"] <= 3
    assert metrics["n_train_tokens"] + metrics["n_heldout_tokens"] == N_TOKENS
    assert metrics["n_heldout_tokens"] > 0 and 0 <= metrics["dead_fraction"] < 1
    cosine = planted["atoms"] @ model.W_dec.detach().numpy().T
    assert (cosine.max(axis=1) > 0.9).mean() > 0.75
    np.testing.assert_allclose(model.W_dec.detach().norm(dim=1).numpy(), 1.0, atol=1e-5)
    # Recomputing FVU on the held-out tokens directly gives the reported value.
    store = TokenStore(planted["path"])
    _, heldout = split_windows(store, 0.1, 0)
    mask = np.isin(planted["window"], heldout)
    x = torch.from_numpy(planted["x"][mask].astype(np.float32))
    with torch.no_grad():
        recon, _ = model(x)
    fvu = ((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert float(fvu) == pytest.approx(metrics["fvu"], rel=1e-4)


def test_untrained_model_is_much_worse(planted, trained):
    torch.manual_seed(0)
    model = TopKSAE(D_IN, 128, 3)
    x = torch.from_numpy(planted["x"][:2000].astype(np.float32))
    with torch.no_grad():
        recon, _ = model(x)
    fvu = float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert fvu > 3 * trained[1]["fvu"]


def test_feature_table_finds_planted_label(planted, trained):
    model, _ = trained
    # rows=3000 does not align with windows, so windows span chunks (exercises the top-n merge).
    table = feature_table(model, planted["path"], planted["windows"], top_n=3, rows=3000)
    assert table.height == 128 and table["feature"].to_list() == list(range(128))
    best = table.sort("f1_atom0", descending=True).row(0, named=True)
    assert best["best_label"] == "atom0" and best["f1_atom0"] > 0.9
    assert table["f1_shuffled"].max() < 0.3

    # Oracle: the same counts computed densely, precision/recall/F1 via scikit-learn.
    with torch.no_grad():
        acts = model.encode(torch.from_numpy(planted["x"].astype(np.float32))).numpy()
    f = best["feature"]
    fires = acts[:, f] > 0
    p, r, f1, _ = precision_recall_fscore_support(planted["labels"]["atom0"], fires, average="binary")
    assert (best["precision_atom0"], best["recall_atom0"], best["f1_atom0"]) == pytest.approx((p, r, f1))
    np.testing.assert_allclose(table["density"].to_numpy(), (acts > 0).mean(axis=0), atol=1e-12)
    assert best["mean_activation"] == pytest.approx(acts[fires, f].mean(), rel=1e-5)
    per_window = pl.DataFrame({"w": planted["window"], "a": acts[:, f]}).group_by("w").agg(pl.col("a").max())
    top = per_window.sort(["a", "w"], descending=[True, False])["w"][:3].to_list()
    ids = dict(zip(planted["windows"]["window_index"], planted["windows"]["window_id"], strict=True))
    assert best["top_windows"] == ",".join(ids[w] for w in top)


def test_feature_table_dead_feature_and_bad_windows(planted, trained):
    model, _ = trained
    dead = TopKSAE(D_IN, 128, 3)
    dead.load_state_dict(model.state_dict())
    with torch.no_grad():
        dead.encoder.bias[5] = -1e6
    table = feature_table(dead, planted["path"], planted["windows"], top_n=2)
    row = table.row(5, named=True)
    assert row["density"] == 0 and row["best_f1"] == 0 and row["best_label"] == "none"
    assert row["top_windows"] == "" and row["mean_activation"] == 0
    with pytest.raises(InputError, match="window_id"):
        feature_table(model, planted["path"], planted["windows"].drop("window_id"))
    with pytest.raises(InputError, match="no window_id"):
        feature_table(model, planted["path"], planted["windows"].head(10))


def test_heldout_windows_disjoint_from_training(planted):
    store = TokenStore(planted["path"])
    train, heldout = split_windows(store, 0.2, seed=3)
    assert np.intersect1d(train, heldout).size == 0
    assert np.union1d(train, heldout).tolist() == list(range(N_TOKENS // TOKENS_PER_WINDOW))
    assert 0.1 < heldout.size / (train.size + heldout.size) < 0.3
    assert not np.array_equal(heldout, split_windows(store, 0.2, seed=4)[1])
    np.testing.assert_array_equal(heldout, split_windows(store, 0.2, seed=3)[1])
    seen_train = np.concatenate(list(iter_split_chunks(store, heldout, False, 3000)))
    seen_heldout = np.concatenate(list(iter_split_chunks(store, heldout, True, 3000)))
    heldout_rows = np.isin(planted["window"], heldout)
    np.testing.assert_array_equal(seen_train, planted["x"][~heldout_rows].astype(np.float32))
    np.testing.assert_array_equal(seen_heldout, planted["x"][heldout_rows].astype(np.float32))


def test_training_is_deterministic(planted):
    cfg = SAEConfig(**{**FAST, "epochs": 2, "seed": 7})
    a, metrics_a = train_sae(planted["path"], cfg, threads=1)
    b, metrics_b = train_sae(planted["path"], cfg, threads=1)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert metrics_a == metrics_b
    c, _ = train_sae(planted["path"], SAEConfig(**{**FAST, "epochs": 2, "seed": 8}), threads=1)
    assert not torch.equal(a.W_dec, c.W_dec)


def test_streams_when_store_exceeds_memory_budget(planted):
    store = TokenStore(planted["path"])
    _, heldout = split_windows(store, 0.1, 0)
    n_train = int((~np.isin(planted["window"], heldout)).sum())
    budget = 64 * 1024  # bytes: 512 tokens of width 32, far below the 20k-token store
    data = TrainingTokens(store, heldout, n_train, batch_size=100, seed=0, budget_bytes=budget,
                          read_rows=CHUNK)
    assert not data.cache_allowed and data.buffer_rows == 512
    epoch1 = [batch.numpy() for batch in data]
    epoch2 = [batch.numpy() for batch in data]
    assert data.chunk_reads == 2 * data.n_chunks and data.cache is None
    assert max(len(b) for b in epoch1) == 100
    expected = np.sort(planted["x"][~np.isin(planted["window"], heldout)].astype(np.float32), axis=0)
    for epoch in (epoch1, epoch2):  # every training token exactly once per epoch
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch), axis=0), expected)
    assert not np.array_equal(epoch1[0], epoch2[0])  # reshuffled between epochs

    cfg = SAEConfig(**{**FAST, "epochs": 3, "memory_budget_mb": budget / 2**20})
    model, metrics = train_sae(planted["path"], cfg, threads=1)
    assert metrics["chunk_reads"] == 3 * data.n_chunks
    assert metrics["fvu"] < 0.5


def test_cached_training_reads_store_once(trained):
    assert trained[1]["chunk_reads"] == -(-N_TOKENS // CHUNK)


def test_save_load_round_trip(tmp_path, trained):
    model, metrics = trained
    path = tmp_path / "sae.safetensors"
    save_sae(model, path, extra_metadata={"metrics": metrics})
    assert not (tmp_path / "sae.safetensors.partial").exists()
    loaded = load_sae(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert float(loaded.input_scale) == pytest.approx(metrics["input_scale"])
    header, extra = read_sae_metadata(path)
    assert header["k"] == 3 and extra["metrics"]["fvu"] == metrics["fvu"]
    x = torch.randn(10, D_IN)
    assert torch.equal(model.encode(x), loaded.encode(x))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="junk.safetensors"):
        load_sae(tmp_path / "junk.safetensors")
    with pytest.raises(InputError, match="not found"):
        load_sae(tmp_path / "missing.safetensors")


def test_bad_config_and_store_raise_input_error(tmp_path, planted):
    with pytest.raises(InputError, match="field k"):
        train_sae(planted["path"], SAEConfig(n_features=4, k=8))
    with pytest.raises(InputError, match="heldout_fraction"):
        train_sae(planted["path"], SAEConfig(heldout_fraction=0.0))
    with pytest.raises(InputError, match="token store not found"):
        train_sae(tmp_path / "nope.zarr", SAEConfig())


def test_topk_model_shapes_and_sparsity():
    torch.manual_seed(0)
    model = TopKSAE(8, 20, 4)
    x = torch.randn(50, 8)
    recon, features = model(x)
    assert recon.shape == (50, 8) and features.shape == (50, 20)
    assert ((features > 0).sum(dim=1) <= 4).all() and (features >= 0).all()
    torch.testing.assert_close(model.W_dec.detach(), model.encoder.weight.detach()
                               / model.encoder.weight.detach().norm(dim=1, keepdim=True))
    loss = (model(x)[0] - x).pow(2).sum()
    loss.backward()
    model.remove_gradient_parallel_to_decoder()
    parallel = (model.W_dec.grad * model.W_dec.detach()).sum(dim=1)
    assert parallel.abs().max() < 1e-5
