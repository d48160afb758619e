"""A static, browsable HTML atlas of SAE features.

index.html: one row per feature (id, label, candidate concept, test F1, lift, density), sortable by
clicking a column header, each linking to its section. page_<k>.html: the sections of features
k*per_page .. (k+1)*per_page - 1: density, label, the feature's best concepts (test statistics from
the units table), its top-activating windows with every base shaded by the activation of the token
covering it, and a sequence logo (logomaker) of the bases around its strongest activations. Logos are
PNG files rendered once into logos/ (only for the `max_logos` features listed first: labelled, then
densest), so a 32k-feature atlas stays quick to build and to open.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import polars as pl
import torch

from interp.embed.store import CHUNK_BYTES
from interp.errors import InputError
from interp.io import atomic_path, write_text_atomic
from interp.sae.model import SparseAutoencoder
from interp.sae.train import open_store

BASES = "ACGT"


def window_token_rows(store, wanted: set[int], read_rows: int = 1 << 20) -> dict[int, np.ndarray]:
    """Store rows [k] of the tokens of each wanted window, streamed over window_index."""
    found: dict[int, list[np.ndarray]] = {}
    wanted_arr = np.array(sorted(wanted), dtype=np.int64)
    for start in range(0, store.n_tokens, read_rows):
        w = np.asarray(store.window_index[start:start + read_rows], dtype=np.int64)
        hit = np.flatnonzero(np.isin(w, wanted_arr))
        if hit.size == 0:  # a read holding none of them (np.split of nothing still gives one piece)
            continue
        # one stable sort groups the rows by window, in store order (a scan per window cost windows x rows)
        hit = hit[np.argsort(w[hit], kind="stable")]
        values, first = np.unique(w[hit], return_index=True)
        for value, rows in zip(values, np.split(start + hit, first[1:]), strict=True):
            found.setdefault(int(value), []).append(rows)
    return {k: np.concatenate(v) for k, v in found.items()}


def window_codes(model: SparseAutoencoder, store, needs: dict[int, list[int]], token_rows: dict[int, np.ndarray],
                 batch_tokens: int = 1024, read_rows: int | None = None
                 ) -> tuple[dict[tuple[int, int], tuple[np.ndarray, np.ndarray]], dict[int, np.ndarray]]:
    """Encode the tokens of each wanted window once and keep only the features that list it.

    needs: window_index -> features whose top windows include it; token_rows: `window_token_rows`.
    Windows are read in groups of about `read_rows` tokens (default: `interp.embed.store.CHUNK_BYTES` of
    float32 activations, 65,536 tokens at d 128, 8,192 at d 1,024; it was 65,536 at every width, 1 GiB at d
    4,096, gathered twice) and encoded in batches of about `batch_tokens` tokens (one dense code block
    [batch, F] at a time, so memory is bounded by batch_tokens x F, never features x tokens). The batches
    follow the windows alone, so the codes do not depend on read_rows. Returns ({(feature, window): (positions int32 [m] into the window's token rows,
    activations float32 [m]) of the tokens where the feature is non-zero}, {window: base_start int32
    [tokens of the window]}).
    """
    if read_rows is None:
        read_rows = max(int(batch_tokens), CHUNK_BYTES // (4 * max(int(store.d), 1)))
    codes: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    starts: dict[int, np.ndarray] = {}
    windows = sorted((w for w in needs if w in token_rows), key=lambda w: int(token_rows[w][0]))
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        block = model.encode(torch.from_numpy(np.concatenate([x for _, x in pending])))
        offset = 0
        for w, x in pending:
            cols = block[offset:offset + x.shape[0]][:, needs[w]].numpy()  # [tokens of w, features needing w]
            for j, f in enumerate(needs[w]):
                nz = np.flatnonzero(cols[:, j] > 0)
                codes[(f, w)] = (nz.astype(np.int32), cols[nz, j].astype(np.float32))
            offset += x.shape[0]
        pending.clear()

    group: list[int] = []
    for i, w in enumerate(windows):
        group.append(w)
        if i + 1 < len(windows) and sum(token_rows[g].size for g in group) < read_rows:
            continue
        rows = np.concatenate([token_rows[g] for g in group])
        unique, inverse = np.unique(rows, return_inverse=True)
        x_all = np.asarray(store.activations.get_orthogonal_selection((unique, slice(None))))[inverse]
        base_all = np.asarray(store.base_start.get_orthogonal_selection(unique))[inverse]
        offset = 0
        for g in group:
            n = token_rows[g].size
            starts[g] = base_all[offset:offset + n].astype(np.int32)
            if sum(x.shape[0] for _, x in pending) + n > batch_tokens:
                flush()
            pending.append((g, x_all[offset:offset + n]))
            offset += n
        group = []
    flush()
    return codes, starts


def base_activations(codes: np.ndarray, base_start: np.ndarray, length: int) -> np.ndarray:
    """float [length]: each base gets the activation of the token starting at or before it."""
    out = np.zeros(length)
    order = np.argsort(base_start, kind="stable")
    starts, values = base_start[order], codes[order]
    idx = np.searchsorted(starts, np.arange(length), side="right") - 1
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def _logo_png(counts: np.ndarray, path: Path, title: str) -> None:
    import logomaker
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = logomaker.transform_matrix(
        __import__("pandas").DataFrame(counts + 0.01, columns=list(BASES)), from_type="counts", to_type="information")
    fig, ax = plt.subplots(figsize=(max(3, counts.shape[0] * 0.3), 1.6), dpi=80)
    logomaker.Logo(frame, ax=ax)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, metadata={"Software": None})
    plt.close(fig)


def _shaded(sequence: str, acts: np.ndarray) -> str:
    top = acts.max() if acts.size and acts.max() > 0 else 1.0
    spans = []
    for base, a in zip(sequence, acts, strict=True):
        alpha = round(float(a / top), 2)
        spans.append(f'<span style="background:rgba(220,60,40,{alpha})">{html.escape(base)}</span>' if alpha > 0
                     else html.escape(base))
    return "".join(spans)


def _number(value: float | None, spec: str) -> tuple[str, str]:
    """(sort key, shown text) of a statistic; an undefined one (None or NaN: the feature never fires on the test
    blocks, or the concept is absent from them) gets an empty key, which the index sorts last, and shows n/a."""
    if value is None or not np.isfinite(value):
        return "", "n/a"
    return repr(float(value)), format(value, spec)


def _concept_row(unit: dict) -> str:
    """One row of a feature's concept table (a row of the units table)."""
    stats = "".join(f"<td>{_number(unit[key], spec)[1]}</td>" for key, spec in (
        ("f1", ".3f"), ("precision", ".3f"), ("recall", ".3f"), ("lift", ".2f"), ("auprc", ".3f"),
        ("prevalence", ".3f")))
    return f"<tr><td>{html.escape(unit['concept'])}</td>{stats}<td>{unit['passes']}</td></tr>"


# A column sorts by number when every defined key is one; undefined keys ('') go last in either direction.
INDEX_JS = """<script>
function sortBy(c){const t=document.getElementById('idx');const rows=[...t.tBodies[0].rows];
const key=r=>r.cells[c].dataset.v;const num=rows.every(r=>key(r)===''||!isNaN(Number(key(r))));
const asc=t.dataset.col==c&&t.dataset.dir=='d';
rows.sort((a,b)=>{const x=key(a),y=key(b);if(x===''||y==='')return (x==='')-(y==='');
const r=num?Number(x)-Number(y):x.localeCompare(y);return asc?r:-r;});
t.dataset.col=c;t.dataset.dir=asc?'a':'d';rows.forEach(r=>t.tBodies[0].appendChild(r));}
</script>"""
STYLE = ("<style>body{font-family:sans-serif;font-size:13px;margin:1em 2em}td,th{padding:2px 8px}"
         "th{cursor:pointer;background:#eee}.seq{font-family:monospace;word-break:break-all}</style>")


@torch.no_grad()
def build_atlas(model: SparseAutoencoder, store_path: str | Path, windows: pl.DataFrame, features: pl.DataFrame,
                units: pl.DataFrame, out_dir: str | Path, per_page: int = 256, max_logos: int = 64,
                flank: int = 5) -> dict:
    """Write the atlas under out_dir; returns {n_features, n_pages, n_logos}.

    features: `interp.sae.concepts.feature_table`'s table; units: its long (unit, concept) table;
    windows: windows.parquet (window_index, window_id, sequence).
    """
    out = Path(out_dir)
    (out / "logos").mkdir(parents=True, exist_ok=True)
    store = open_store(store_path)
    if store.d != model.d_in:
        raise InputError(f"{store_path}: token store width {store.d} does not match the SAE's d_in {model.d_in} "
                         "(a store of another model or layer?)")
    model = model.cpu().eval()
    features = features.sort("feature")
    n = features.height
    n_pages = max(1, -(-n // per_page))
    page_of = {f: i // per_page for i, f in enumerate(features["feature"].to_list())}
    # ties keep feature order (polars' sort is not stable by default), so the logo set is the same every run
    ordered = pl.concat([
        features.filter(pl.col("label") != "unlabelled").sort(pl.col("f1").fill_nan(None), descending=True,
                                                              nulls_last=True, maintain_order=True),
        features.filter(pl.col("label") == "unlabelled").sort("density", descending=True, maintain_order=True)])
    logo_set = set(ordered.filter(pl.col("density") > 0)["feature"].head(max_logos).to_list())
    best_units: dict[int, list[dict]] = {}
    # an undefined F1 (NaN, the concept absent from the test blocks) sorts last (polars orders NaN first)
    sae_units = units.filter(pl.col("kind") == "sae").sort(["unit", "passes", pl.col("f1").fill_nan(None), "concept"],
                                                           descending=[False, True, True, False], nulls_last=True)
    for b in sae_units.group_by("unit", maintain_order=True).head(5).iter_rows(named=True):
        best_units.setdefault(b["unit"], []).append(b)
    by_id = dict(zip(windows["window_id"].to_list(), windows["window_index"].to_list(), strict=True))
    sequences = dict(zip(windows["window_index"].to_list(), windows["sequence"].to_list(), strict=True))

    rows = ["<tr>" + "".join(f'<td data-v="{html.escape(str(v))}">{cell}</td>' for v, cell in (
        (r["feature"], f'<a href="page_{page_of[r["feature"]]}.html#f{r["feature"]}">{r["feature"]}</a>'),
        (r["label"], html.escape(r["label"])), (r["concept"], html.escape(str(r["concept"]))),
        _number(r["f1"], ".3f"), _number(r["lift"], ".2f"), _number(r["density"], ".4f"))) + "</tr>"
            for r in features.iter_rows(named=True)]
    head = "".join(f'<th onclick="sortBy({i})">{h}</th>'
                   for i, h in enumerate(["feature", "label", "concept", "test F1", "lift", "density"]))
    write_text_atomic(
        out / "index.html",
        f"<!doctype html><html><head><meta charset='utf-8'><title>SAE feature atlas</title>{STYLE}{INDEX_JS}"
        f"</head><body><h1>SAE feature atlas</h1><p>{n} features; click a header to sort. Labels follow the "
        f"honest rule (validation threshold, test statistics, base-rate baselines).</p>"
        f"<table id='idx'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></body></html>\n")

    # every wanted window is read and encoded once for all the features listing it (not once per feature)
    needs: dict[int, list[int]] = {}
    for f, ws in zip(features["feature"].to_list(), features["top_windows"].to_list(), strict=True):
        for wid in dict.fromkeys(w for w in (ws or "").split(",") if w):
            needs.setdefault(by_id[wid], []).append(f)
    codes, base_starts = window_codes(model, store, needs, window_token_rows(store, set(needs)))

    n_logos = 0
    for page in range(n_pages):
        chunk = features.slice(page * per_page, per_page)
        sections = []
        for r in chunk.iter_rows(named=True):
            f = r["feature"]
            parts = [f'<h2 id="f{f}">feature {f}: {html.escape(r["label"])}</h2>',
                     f'<p>density {r["density"]:.4f} (all tokens); mean activation when firing '
                     f'{r["mean_activation"]:.3g}</p>']
            best = best_units.get(f, [])
            if best:
                parts.append("<table><tr><th>concept</th><th>test F1</th><th>precision</th><th>recall</th>"
                             "<th>lift</th><th>AUPRC</th><th>prevalence</th><th>passes</th></tr>"
                             + "".join(_concept_row(b) for b in best) + "</table>")
            counts = np.zeros((2 * flank + 1, 4))
            for wid in dict.fromkeys(w for w in (r["top_windows"] or "").split(",") if w):
                w = by_id[wid]
                if w not in base_starts:
                    continue
                positions, values = codes[(f, w)]
                token_codes = np.zeros(base_starts[w].size)
                token_codes[positions] = values
                seq = sequences[w]
                acts = base_activations(token_codes, base_starts[w], len(seq))
                parts.append(f'<p><b>{html.escape(wid)}</b> (max {acts.max():.3g})<br>'
                             f'<span class="seq">{_shaded(seq, acts)}</span></p>')
                if acts.max() > 0:
                    for centre in np.flatnonzero(acts >= 0.5 * acts.max()):
                        for j, pos in enumerate(range(centre - flank, centre + flank + 1)):
                            if 0 <= pos < len(seq) and seq[pos].upper() in BASES:
                                counts[j, BASES.index(seq[pos].upper())] += 1
            if f in logo_set and counts.sum() > 0:
                _logo_png(counts, out / "logos" / f"f{f}.png", f"feature {f}: bases around strong activations")
                parts.append(f'<img src="logos/f{f}.png" alt="logo of feature {f}">')
                n_logos += 1
            sections.append("".join(parts))
        write_text_atomic(
            out / f"page_{page}.html",
            f"<!doctype html><html><head><meta charset='utf-8'><title>SAE features page {page}</title>{STYLE}"
            f"</head><body><p><a href='index.html'>index</a></p>{''.join(sections)}</body></html>\n")
    return {"n_features": n, "n_pages": n_pages, "n_logos": n_logos}
