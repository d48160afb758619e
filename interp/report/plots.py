"""Figures of the report, each returned as a base64 PNG so the HTML stays one self-contained file."""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]


def plain_text(plot: Callable[..., str]) -> Callable[..., str]:
    """A figure function whose text is drawn as written: population labels, phenotype, gene and variant names
    are the user's, and matplotlib read text between two '$' as mathtext ('A$_$B' stopped the report build with
    a ParseException; 'AFR$1$2' lost its '$')."""
    @functools.wraps(plot)
    def drawn(*args, **kwargs) -> str:
        with plt.rc_context({"text.parse_math": False}):
            return plot(*args, **kwargs)
    return drawn


def legend_label(text: str) -> str:
    """`text` as a legend entry: matplotlib leaves out labels that start with '_' (a population '_admixed'),
    so such a label gets a zero-width space in front."""
    return "\u200b" + text if text.startswith("_") else text


def to_png(fig) -> str:
    """base64 PNG of a figure (fixed dpi and metadata so bytes do not vary run to run)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


@plain_text
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


@plain_text
def feature_density_histogram(histogram: dict | None, n_features: int, density: np.ndarray | None = None) -> str:
    """Histogram of log10 feature activation density on the test blocks: the SAE stage's `density_histogram`
    {`log10_edges`, `counts`, `n_zero`} (features firing on no test token counted apart). Without one (metrics
    from before it was written), the features table's `density` [n_features] over every token of the store."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if histogram:
        edges, counts = np.asarray(histogram["log10_edges"], float), np.asarray(histogram["counts"], float)
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#7570b3", edgecolor="white")
        ax.set_xlabel("log10 activation density (fraction of test tokens)")
        title = f"SAE feature density, test blocks ({int(histogram['n_zero'])} of {n_features} never fire there)"
    else:
        density = np.asarray(density, dtype=float)
        alive = density[density > 0]
        if alive.size:
            ax.hist(np.log10(alive), bins=40, color="#7570b3")
        ax.set_xlabel("log10 activation density (fraction of all tokens)")
        title = f"SAE feature density ({int((density == 0).sum())} of {density.size} never fire)"
    ax.set_ylabel("features")
    ax.set_title(title, fontsize=9)
    return to_png(fig)


@plain_text
def ancestry_pca(pcs: np.ndarray, population: np.ndarray, variance_ratio: np.ndarray, min_group: int = 5,
                 sizes: dict[str, int | str] | None = None) -> str:
    """Genotype PC1/PC2 of the cohort without individual points (reports carry no individual-level data):
    the density of samples in hexagonal cells holding at least `min_group` of them, and per population of at
    least `min_group` samples its centre and 1- and 2-SD covariance ellipses. Smaller populations are counted
    in the title, never drawn or named. sizes: the population sizes as the report shows them (a size masked
    there, `interp.audit.suppressed_sizes`, is not written in the legend either); default the counts."""
    from matplotlib.patches import Ellipse

    fig, ax = plt.subplots(figsize=(5, 4))
    xy = np.asarray(pcs, dtype=np.float64)[:, :2]
    if xy.shape[0] >= min_group:
        # cells coarse enough that a cell holds several samples on average
        cells = int(np.clip(np.sqrt(xy.shape[0] / (2 * min_group)), 5, 40))
        ax.hexbin(xy[:, 0], xy[:, 1], gridsize=cells, mincnt=min_group, cmap="Greys", alpha=0.5, linewidths=0)
    pops, counts = np.unique(population.astype(str), return_counts=True)
    hidden = 0
    for i, (pop, n) in enumerate(zip(pops, counts, strict=True)):
        if n < min_group:
            hidden += 1
            continue
        color = PALETTE[i % len(PALETTE)]
        group = xy[population.astype(str) == pop]
        centre, cov = group.mean(axis=0), np.cov(group.T)
        vals, vecs = np.linalg.eigh(cov)
        angle = float(np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1])))
        for k, style in ((1, "-"), (2, ":")):
            w, h = 2 * k * np.sqrt(np.maximum(vals[::-1], 0))
            ax.add_patch(Ellipse(centre, w, h, angle=angle, fill=False, color=color, linestyle=style))
        shown_n = (sizes or {}).get(str(pop), n)
        ax.plot(*centre, "o", color=color, label=legend_label(f"{pop} (n = {shown_n})" if shown_n != "masked" else str(pop)))
    ax.autoscale_view()
    ax.set_xlabel(f"genotype PC1 ({variance_ratio[0]:.0%})")
    ax.set_ylabel(f"genotype PC2 ({variance_ratio[1]:.0%})")
    ax.legend(fontsize=8)
    note = f"; {hidden} group(s) under {min_group} not shown" if hidden else ""
    ax.set_title(f"Cohort ancestry (genotype PCA): centres, 1/2-SD ellipses{note}", fontsize=9)
    return to_png(fig)


def _limits(lows: list[float], highs: list[float], floor: float = 0.0, ceil: float = 1.0,
            pad_frac: float = 0.08, min_pad: float = 0.01) -> tuple[float, float]:
    """Axis limits around the data (not from 0), clipped to [floor, ceil], so differences show."""
    vals = [v for v in lows + highs if v is not None and np.isfinite(v)]
    if not vals:
        return floor, ceil
    lo, hi = min(vals), max(vals)
    pad = max((hi - lo) * pad_frac, min_pad)
    return max(floor, lo - pad), min(ceil, hi + pad)


@plain_text
def lm_fit(rows: list[dict]) -> str:
    """Held-out cross-entropy (nats/base) of each built-in LM beside its order-0 and order-3 Markov
    baselines, as dots on an axis fitted to the values (differences of 0.01 nats are visible)."""
    labels, values, colors = [], [], []
    for row in rows:
        for name, key, color in (("order-0 (base frequencies)", "baseline_order0_ce", "#999999"),
                                 ("order-3 Markov", "baseline_order3_ce", "#d95f02"),
                                 (f"{row['model']} (held-out)", "heldout_ce", "#1b9e77")):
            labels.append(name if len(rows) == 1 else f"{row['model']}: {name}")
            values.append(float(row[key]))
            colors.append(color)
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(values) + 1.2))
    y = np.arange(len(values))[::-1]
    ax.hlines(y, 0, values, color="#eeeeee", lw=1, zorder=0)
    ax.scatter(values, y, s=60, c=colors, zorder=3)
    for v, yy in zip(values, y, strict=True):
        ax.annotate(f"{v:.4f}", (v, yy), textcoords="offset points", xytext=(7, -3), fontsize=8)
    lo, hi = _limits(values, values, floor=0.0, ceil=10.0, pad_frac=0.35, min_pad=0.004)
    ax.set_xlim(lo, hi)
    if lo < np.log(4) < hi:
        ax.axvline(np.log(4), color="grey", lw=0.8, ls="--")
        ax.annotate("ln 4 (uniform guess)", (np.log(4), y.max() + 0.4), fontsize=7, color="grey", ha="center")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.6, len(values) - 0.2)
    ax.set_xlabel("held-out cross-entropy (nats/base; lower is better)")
    ax.set_title("Language-model fit on held-out bases", fontsize=10)
    return to_png(fig)


@plain_text
def probe_panels(probes: pl.DataFrame, layer_order: dict[str, list[str]]) -> str:
    """One panel per probe target: embedding-probe AUROC by layer (mean ± SD over folds), the
    shuffled-label control at each layer, and the 3-mer control as a band (mean ± SD)."""
    targets = list(dict.fromkeys(probes["target"].to_list()))
    ncols = min(3, max(len(targets), 1))
    nrows = int(np.ceil(len(targets) / ncols)) or 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(targets):]:
        ax.axis("off")
    for ax, target in zip(axes.flat, targets, strict=False):
        lows, highs = [], []
        sub_t = probes.filter(pl.col("target") == target)
        kmer = sub_t.filter(pl.col("features") == "kmer3")
        n_models = max(len(layer_order), 1)
        xticks: list[str] = []
        for mi, (model, layers) in enumerate(layer_order.items()):
            offset = (mi - (n_models - 1) / 2) * 0.12
            for feats, color, marker, dx in (("embedding", PALETTE[mi % len(PALETTE)], "o", 0.0),
                                             ("shuffled", "#888888", "x", 0.18)):
                sub = sub_t.filter((pl.col("model") == model) & (pl.col("features") == feats))
                by_layer = {r["layer"]: r for r in sub.iter_rows(named=True)}
                xs = [j for j, la in enumerate(layers) if la in by_layer and by_layer[la]["auroc_mean"] is not None]
                ys = np.array([by_layer[layers[j]]["auroc_mean"] for j in xs], dtype=float)
                sd = np.array([by_layer[layers[j]]["auroc_sd"] or 0.0 for j in xs], dtype=float)
                if not xs:
                    continue
                label = (model if n_models > 1 else "model embedding") if feats == "embedding" else "shuffled labels"
                ax.errorbar(np.array(xs) + offset + dx, ys, yerr=sd, fmt=marker, color=color, capsize=3,
                            ms=6 if feats == "embedding" else 5, label=label if mi == 0 or feats == "embedding" else None,
                            ls="-" if feats == "embedding" else "none", lw=1)
                lows += list(ys - sd)
                highs += list(ys + sd)
            if len(layers) > len(xticks):
                xticks = layers
        if not kmer.is_empty() and kmer["auroc_mean"][0] is not None:
            k, ksd = float(kmer["auroc_mean"][0]), float(kmer["auroc_sd"][0] or 0.0)
            ax.axhspan(k - ksd, k + ksd, color="#e6ab02", alpha=0.18, lw=0)
            ax.axhline(k, color="#a6761d", ls="--", lw=1.2, label="3-mer control")
            lows.append(k - ksd)
            highs.append(k + ksd)
        lo, hi = _limits(lows, highs + [0.5], floor=0.0, ceil=1.0)
        ax.set_ylim(lo, min(1.0, hi) + 0.01)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_xticks(range(len(xticks)), xticks, rotation=30, fontsize=8)
        ax.set_xlim(-0.5, len(xticks) - 0.3)
        ax.set_title(target, fontsize=10)
        ax.set_ylabel("AUROC (grouped CV)", fontsize=8)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Linear probes by layer: bars are ± 1 SD over CV folds; band: 3-mer control ± 1 SD", fontsize=9)
    fig.tight_layout()
    return to_png(fig)


CV_SCHEMES = [("auroc_random_cv", "random CV", "o"), ("auroc_ancestry_stratified_cv", "ancestry-stratified", "s"),
              ("auroc_lopo_cv", "leave-one-pop-out", "D"), ("auroc_residualised", "residualised on PCs", "^"),
              ("within_auroc", "within-population", "P"), ("auroc_ancestry_only", "ancestry only", "v"),
              ("auroc_shuffled", "shuffled", "x")]


@plain_text
def cv_schemes(audit: pl.DataFrame) -> str:
    """Phenotype-probe AUROC of every (phenotype, layer) under each CV scheme and baseline, as dots on an
    axis fitted to the values; the gap between random CV and the ancestry-aware schemes is the shortcut."""
    schemes = [s for s in CV_SCHEMES if s[0] in audit.columns]
    rows = list(audit.iter_rows(named=True))
    fig, ax = plt.subplots(figsize=(7.5, 0.38 * len(rows) + 1.4))
    y = np.arange(len(rows))[::-1]
    vals_all = []
    for j, (col, label, marker) in enumerate(schemes):
        vals = np.array([r.get(col) if r.get(col) is not None else np.nan for r in rows], dtype=float)
        ax.scatter(vals, y, marker=marker, color=PALETTE[j % len(PALETTE)], label=label, s=28, zorder=3)
        vals_all += [v for v in vals if np.isfinite(v)]
    if "within_auroc_ci_low" in audit.columns and "within_auroc_ci_high" in audit.columns:
        for r, yy in zip(rows, y, strict=True):
            lo_, hi_ = r.get("within_auroc_ci_low"), r.get("within_auroc_ci_high")
            if lo_ is not None and hi_ is not None:
                ax.hlines(yy, lo_, hi_, color=PALETTE[schemes.index(
                    next(s for s in schemes if s[0] == "within_auroc")) % len(PALETTE)], lw=2, zorder=2)
                vals_all += [lo_, hi_]
    lo, hi = _limits(vals_all + [0.5], vals_all, floor=0.0, ceil=1.0)
    ax.set_xlim(lo, hi + 0.01)
    ax.axvline(0.5, color="grey", lw=0.6, ls=":")
    many_models = len({r.get("model") for r in rows}) > 1
    ax.set_yticks(y, [f"{r['phenotype']} / {r['model'] + '/' if many_models else ''}{r['layer']}"
                      f"{' / ' + r['region'] if r.get('region') else ''}" for r in rows], fontsize=8)
    for k in range(1, len(rows)):
        if rows[k]["phenotype"] != rows[k - 1]["phenotype"]:
            ax.axhline(y[k] + 0.5, color="#cccccc", lw=0.8)
    ax.set_xlabel("phenotype-probe AUROC")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Cross-validation schemes: the drop from random CV is the ancestry shortcut", fontsize=10)
    return to_png(fig)


@plain_text
def population_auroc(details: list[dict], layer_order: list[str]) -> str:
    """Verdict evidence: per-population out-of-fold AUROC of the phenotype probe with its bootstrap 95%
    interval, one panel per phenotype, one colour per layer (masked small populations are left out)."""
    phenotypes = list(dict.fromkeys(d["phenotype"] for d in details))
    layers = [la for la in layer_order if any(d.get("layer") == la for d in details)] or \
        list(dict.fromkeys(d.get("layer") for d in details))
    pops = sorted({g["population"] for d in details for g in d.get("by_population") or []
                   if isinstance(g.get("auroc"), (int, float))})
    fig, axes = plt.subplots(1, max(len(phenotypes), 1), figsize=(3.6 * max(len(phenotypes), 1) + 0.8,
                                                               0.42 * max(len(pops), 1) * max(len(layers), 1) ** 0.5 + 1.6),
                             squeeze=False, sharey=True, sharex=True)
    all_lows, all_highs = [], []
    for ax, phenotype in zip(axes[0], phenotypes, strict=True):
        lows, highs = all_lows, all_highs
        for li, layer in enumerate(layers):
            d = next((x for x in details if x["phenotype"] == phenotype and x.get("layer") == layer
                      and not x.get("region")), None)  # the whole cohort's row; regions are in the table
            if d is None:
                continue
            off = (li - (len(layers) - 1) / 2) * (0.7 / max(len(layers), 1))
            for g in d.get("by_population") or []:
                a = g.get("auroc")
                if not isinstance(a, (int, float)) or not np.isfinite(a):
                    continue
                yy = pops.index(g["population"]) + off
                lo_, hi_ = g.get("auroc_ci_low"), g.get("auroc_ci_high")
                if isinstance(lo_, (int, float)) and isinstance(hi_, (int, float)) and np.isfinite(lo_):
                    ax.hlines(yy, lo_, hi_, color=PALETTE[li % len(PALETTE)], lw=1.5)
                    lows.append(lo_)
                    highs.append(hi_)
                ax.plot(a, yy, "o", color=PALETTE[li % len(PALETTE)], ms=5,
                        label=layer if g is (d.get("by_population") or [None])[0] else None)
                lows.append(a)
                highs.append(a)
        ax.axvline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_title(phenotype, fontsize=10)
        ax.set_xlabel("AUROC within population", fontsize=8)
    lo, hi = _limits(all_lows + [0.5], all_highs + [0.5], floor=0.0, ceil=1.0)
    axes[0][0].set_xlim(lo, hi)
    axes[0][0].set_yticks(range(len(pops)), pops, fontsize=8)
    axes[0][0].set_ylim(-0.6, len(pops) - 0.4)
    axes[0][-1].legend(title="layer", fontsize=7, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Per-population AUROC of the phenotype probe (bootstrap 95% intervals)", fontsize=9)
    fig.tight_layout()
    return to_png(fig)


@plain_text
def regional_association(
    phenotype: str,
    variants: pl.DataFrame,
    model_top: pl.DataFrame,
    exons: pl.DataFrame,
    lead: dict | None,
    truth_pos: int | None = None,
) -> str:
    """Regional association plot: -log10 p of every variant along the region (1-based positions), the
    windows of the top model features drawn as segments at their -log10 p, the lead variant marked, and
    the genes' exons below. `variants` has pos, p; `model_top` has start, end (0-based), p, family,
    short_name; `exons` has gene, transcript, strand, feature, start, end (0-based)."""
    fig, (ax, gx) = plt.subplots(2, 1, figsize=(9, 4.6), sharex=True, gridspec_kw={"height_ratios": [4, 1.2]})
    if not variants.is_empty():
        pos = variants["pos"].to_numpy()
        lp = -np.log10(np.clip(variants["p"].fill_null(1.0).to_numpy(), 1e-300, 1.0))
        ax.scatter(pos, lp, s=14, color="#4d4d4d", alpha=0.8, label="variants", zorder=3)
    fams = list(dict.fromkeys(model_top["family"].to_list())) if not model_top.is_empty() else []
    top_lp = max([-np.log10(max(p_, 1e-300)) for p_ in model_top["p"].to_list()] + [1.0])
    for k, r in enumerate(model_top.iter_rows(named=True)):
        color = PALETTE[(fams.index(r["family"]) + 1) % len(PALETTE)]
        # bars of families that share a window and a p would hide each other: stack them slightly
        lp_ = -np.log10(max(r["p"], 1e-300)) + k * 0.03 * top_lp
        ax.axvspan(r["start"] + 1, r["end"], color=color, alpha=0.07, lw=0)
        ax.hlines(lp_, r["start"] + 1, r["end"], color=color, lw=3, zorder=4,
                  label=f"{r['family']} top: {r['short_name']}")
    if lead is not None:
        lp_lead = -np.log10(max(lead["p"], 1e-300))
        ax.scatter([lead["pos"]], [lp_lead], marker="D", s=60, color="#e7298a", zorder=5,
                   label=f"lead variant {lead['name']}")
    if truth_pos is not None:
        ax.axvline(truth_pos, color="#e7298a", lw=0.8, ls=":", label="planted causal variant")
    ax.set_ylabel("-log10 p")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"Regional association: {phenotype}", fontsize=10)
    # one pass over the table, not a filter per transcript (quadratic in the transcripts drawn)
    by_transcript = exons.partition_by("transcript", maintain_order=True) if not exons.is_empty() else []
    genes = [part["transcript"][0] for part in by_transcript]
    for gi, sub in enumerate(by_transcript):
        level = gi % 3
        span = sub.filter(pl.col("feature") == "transcript")
        s0 = int(span["start"].min() if not span.is_empty() else sub["start"].min())
        s1 = int(span["end"].max() if not span.is_empty() else sub["end"].max())
        gx.hlines(level, s0 + 1, s1, color="#1f4e79", lw=1)
        for e in sub.filter(pl.col("feature") == "exon").iter_rows(named=True):
            gx.add_patch(plt.Rectangle((e["start"] + 1, level - 0.25), e["end"] - e["start"], 0.5, color="#1f4e79"))
        strand = sub["strand"][0] if "strand" in sub.columns else ""
        gx.annotate(f"{sub['gene'][0]} ({strand})", (s0 + 1, level + 0.32), fontsize=7, color="#1f4e79")
    gx.set_ylim(-0.7, max(len(genes) % 3 if len(genes) < 3 else 3, 1) + 0.1)
    gx.set_yticks([])
    gx.set_xlabel("position (1-based)")
    gx.ticklabel_format(axis="x", style="plain", useOffset=False)
    if not genes:
        gx.annotate("no annotated gene in this region", (0.5, 0.5), xycoords="axes fraction", ha="center", fontsize=8)
    fig.tight_layout()
    return to_png(fig)
