"""Figures of the report, each returned as a base64 PNG so the HTML stays one self-contained file."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]


def to_png(fig) -> str:
    """base64 PNG of a figure (fixed dpi and metadata so bytes do not vary run to run)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def probe_auroc_by_layer(probes: pl.DataFrame, layer_order: dict[str, list[str]]) -> str:
    """AUROC (mean +/- sd over folds) of each target by layer; shuffled dashed; 3-mer control as a line."""
    fig, ax = plt.subplots(figsize=(7, 4))
    targets = sorted(probes["target"].unique().to_list())
    for i, target in enumerate(targets):
        color = PALETTE[i % len(PALETTE)]
        for model, layers in layer_order.items():
            for feats, style in (("embedding", "-"), ("shuffled", ":")):
                sub = probes.filter((pl.col("target") == target) & (pl.col("model") == model)
                                    & (pl.col("features") == feats))
                if sub.is_empty():
                    continue
                by_layer = {r["layer"]: r for r in sub.iter_rows(named=True)}
                xs = [j for j, layer in enumerate(layers) if layer in by_layer]
                ys = [by_layer[layers[j]]["auroc_mean"] for j in xs]
                sd = [by_layer[layers[j]]["auroc_sd"] or 0.0 for j in xs]
                label = f"{target} ({model})" if feats == "embedding" else f"{target} shuffled"
                ax.errorbar(xs, ys, yerr=sd, fmt=style, marker="o", color=color, label=label, capsize=3)
        kmer = probes.filter((pl.col("target") == target) & (pl.col("features") == "kmer3"))
        if not kmer.is_empty():
            ax.axhline(kmer["auroc_mean"][0], color=color, ls="--", lw=1, label=f"{target} 3-mer")
    first = next(iter(layer_order.values()), [])
    ax.set_xticks(range(len(first)), first, rotation=30)
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set_ylabel("AUROC (grouped CV)")
    ax.set_ylim(0.3, 1.02)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.set_title("Linear probes by layer")
    return to_png(fig)


def embedding_pca(X: np.ndarray, labels: dict[str, np.ndarray], title: str) -> str:
    """PCA (scanpy) of window embeddings, one panel per boolean label."""
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(X=np.asarray(X, dtype=np.float32))
    sc.pp.pca(adata, n_comps=min(10, X.shape[1] - 1, X.shape[0] - 1), svd_solver="full", random_state=0)
    pcs = adata.obsm["X_pca"]
    var = adata.uns["pca"]["variance_ratio"]
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.6), squeeze=False)
    for ax, (name, values) in zip(axes[0], labels.items(), strict=True):
        values = np.asarray(values, dtype=bool)
        ax.scatter(pcs[~values, 0], pcs[~values, 1], s=6, c="#bbbbbb", label=f"not {name}")
        ax.scatter(pcs[values, 0], pcs[values, 1], s=8, c="#d95f02", label=name)
        ax.set_xlabel(f"PC1 ({var[0]:.0%})")
        ax.set_ylabel(f"PC2 ({var[1]:.0%})")
        ax.set_title(name)
        ax.legend(fontsize=7, markerscale=2)
    fig.suptitle(title)
    return to_png(fig)


def feature_density_histogram(density: np.ndarray) -> str:
    """Histogram of log10 feature activation density (dead features counted apart)."""
    density = np.asarray(density, dtype=float)
    alive = density[density > 0]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if alive.size:
        ax.hist(np.log10(alive), bins=40, color="#7570b3")
    ax.set_xlabel("log10 activation density (fraction of tokens)")
    ax.set_ylabel("features")
    ax.set_title(f"SAE feature density ({int((density == 0).sum())} dead of {density.size})")
    return to_png(fig)


def lm_losses(rows: list[dict]) -> str:
    """Held-out cross-entropy of each built-in LM beside its order-0 and order-3 baselines."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = ["order-0", "order-3 Markov", "model"]
    for i, row in enumerate(rows):
        vals = [row["baseline_order0_ce"], row["baseline_order3_ce"], row["heldout_ce"]]
        ax.bar(np.arange(3) + i * 0.25, vals, width=0.25, label=row["model"], color=PALETTE[i])
    ax.set_xticks(np.arange(3), names)
    ax.axhline(np.log(4), color="grey", lw=0.5, ls="--")
    ax.set_ylabel("held-out cross-entropy (nats/base)")
    ax.legend(fontsize=7)
    return to_png(fig)


def ancestry_pca(pcs: np.ndarray, population: np.ndarray, variance_ratio: np.ndarray) -> str:
    """Genotype PC1/PC2 of the cohort coloured by population."""
    fig, ax = plt.subplots(figsize=(5, 4))
    for i, pop in enumerate(sorted(set(population.tolist()))):
        m = population == pop
        ax.scatter(pcs[m, 0], pcs[m, 1], s=10, color=PALETTE[i % len(PALETTE)], label=f"{pop}")
    ax.set_xlabel(f"genotype PC1 ({variance_ratio[0]:.0%})")
    ax.set_ylabel(f"genotype PC2 ({variance_ratio[1]:.0%})")
    ax.legend(fontsize=8)
    ax.set_title("Cohort ancestry (genotype PCA)")
    return to_png(fig)


def cv_scheme_comparison(audit: pl.DataFrame) -> str:
    """Probe AUROC per phenotype under each CV scheme and baseline (one model/layer per group)."""
    schemes = [("auroc_random_cv", "random CV"), ("auroc_ancestry_stratified_cv", "ancestry-stratified"),
               ("auroc_lopo_cv", "leave-one-pop-out"), ("auroc_residualised", "residualised on PCs"),
               ("auroc_ancestry_only", "ancestry only"), ("auroc_shuffled", "shuffled")]
    schemes = [s for s in schemes if s[0] in audit.columns]
    groups = [f"{r['phenotype']}\n{r['layer']}" for r in audit.iter_rows(named=True)]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups) + 2), 3.8))
    width = 0.8 / len(schemes)
    for j, (col, label) in enumerate(schemes):
        vals = audit[col].fill_null(float("nan")).to_numpy()
        ax.bar(np.arange(len(groups)) + j * width, vals, width=width, label=label, color=PALETTE[j])
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups, fontsize=7)
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("phenotype probe AUROC")
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    ax.set_title("Cross-validation schemes: the drop is the shortcut signal")
    return to_png(fig)
