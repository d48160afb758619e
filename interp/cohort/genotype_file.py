"""Dosage columns of the ancestry stage's `genotypes.h5ad`, read from disk a block at a time.

The audit's variant scan needs, per embedding table, the dosages of the studied region's variants for the
table's samples. Loading the file whole holds n x V float32 twice (X standardised and layers["dosage"]);
for thousands of samples and hundreds of genes that is gigabytes beside the embeddings, and a region's
audit needs only its own columns. `GenotypeFile` opens the file read-only and keeps obs and var;
`DosageColumns` is a lazy [rows, columns] view whose blocks `interp.variant_scan.variant_directions` reads
VARIANT_CHUNK columns at a time, so memory follows n x chunk, not n x V. `read_genotypes` reads the file
without its standardised X: the stages that need only the samples' ancestry (embed_cohort, report) read no
matrix at all, rank reads the dosages once instead of twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from interp.errors import InputError

if TYPE_CHECKING:
    import anndata as ad
    import pandas as pd

#: a block of columns is read as one contiguous slab when the slab is at most this many times wider than
#: the columns wanted (a region's variants are adjacent in the file); otherwise column by column
SLAB_WIDTH_FACTOR = 4


class DosageColumns:
    """Lazy view [len(rows), len(cols)] of a 2-D source (an h5py dataset, or an in-memory array).

    rows [n] and cols [V]: integer positions into the source (rows in any order; cols increasing).
    `view[mask]` with a boolean mask [n] is the view of those rows; `view[:, lo:hi]` reads that block of
    columns as float32 [n, hi - lo] (NaN stays NaN). Nothing is read before a block is asked for.
    """

    ndim = 2

    def __init__(self, source, rows: np.ndarray, cols: np.ndarray):
        self.source, self.rows, self.cols = source, np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows.size, self.cols.size)

    def __getitem__(self, key):
        if isinstance(key, np.ndarray) and key.dtype == bool:
            if key.shape != (self.rows.size,):
                raise IndexError(f"row mask of shape {key.shape} for a view of {self.rows.size} rows")
            return DosageColumns(self.source, self.rows[key], self.cols)
        if isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None) and isinstance(key[1], slice):
            return self._read(self.cols[key[1]])
        raise TypeError("DosageColumns supports view[bool_mask] and view[:, lo:hi]")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        block = self._read(self.cols)
        return block if dtype is None else block.astype(dtype)

    def _read(self, cols: np.ndarray) -> np.ndarray:
        if cols.size == 0:
            return np.zeros((self.rows.size, 0), dtype=np.float32)
        lo, hi = int(cols[0]), int(cols[-1]) + 1
        if hi - lo <= SLAB_WIDTH_FACTOR * cols.size:
            block = np.asarray(self.source[:, lo:hi], dtype=np.float32)[:, cols - lo]
        else:  # scattered columns: h5py takes an increasing index list along one axis
            block = np.asarray(self.source[:, cols], dtype=np.float32)
        return block[self.rows]


class GenotypeFile:
    """genotypes.h5ad opened read-only for column reads: obs_names [n] (sample IDs), var (contig, 1-based
    pos; index the variant IDs) and the dosage matrix (layers["dosage"], else X) left on disk.
    Use as a context manager, or call close()."""

    def __init__(self, path: str | Path):
        from anndata.io import read_elem

        self.path = Path(path)
        self._file = f = _open(self.path)
        self.obs_names = read_elem(f["obs"]).index.astype(str)
        self.var: pd.DataFrame = read_elem(f["var"])
        try:
            node = _dosage_node(f)
        except InputError:
            self.close()
            raise
        # a sparse matrix (not what the ancestry stage writes) is read whole: its columns are not slabs
        self.matrix = node if hasattr(node, "shape") and not hasattr(node, "keys") else _dense(read_elem(node))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> GenotypeFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InMemoryGenotypes:
    """The same interface over an AnnData already in memory (a notebook's genotypes)."""

    def __init__(self, adata: ad.AnnData):
        self.obs_names = adata.obs_names.astype(str)
        self.var = adata.var
        self.matrix = _dense(adata.layers["dosage"] if "dosage" in adata.layers else adata.X)


def _open(path: Path):
    """The file opened read-only, checked to have obs and var; an InputError naming it otherwise."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"{path}: not a readable genotypes.h5ad (HDF5) file: {e}") from None
    missing = [k for k in ("obs", "var") if k not in f]
    if missing:
        f.close()
        raise InputError(f"{path}: no {missing[0]!r} in this AnnData file; expected the ancestry stage's genotypes.h5ad")
    return f


def _dosage_node(f):
    if "layers" in f and "dosage" in f["layers"]:
        return f["layers/dosage"]
    if "X" not in f:
        raise InputError(f"{f.filename}: neither layers['dosage'] nor X in this AnnData file: no genotypes to read; "
                         "expected the ancestry stage's genotypes.h5ad")
    return f["X"]


def read_genotypes(path: str | Path, dosage: bool = True) -> ad.AnnData:
    """genotypes.h5ad without its standardised X: obs, var, obsm and uns, and with `dosage` the ALT dosages
    [n, V] (float32, NaN missing) as layers["dosage"] (the file's X when it has no such layer); X is None."""
    import anndata as ad
    from anndata.io import read_elem

    with _open(Path(path)) as f:
        parts = {k: read_elem(f[k]) for k in ("obs", "var", "obsm", "uns") if k in f}
        layers = {"dosage": read_elem(_dosage_node(f))} if dosage else {}
    return ad.AnnData(**parts, layers=layers)


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix)


def dosage_columns(genotypes: GenotypeFile | InMemoryGenotypes | ad.AnnData, sample_ids: list[str],
                   region_span: list | None = None) -> tuple[DosageColumns, list[str]]:
    """Lazy dosages [n, V] of `sample_ids` in that order and the variant IDs [V]: every variant, or those whose
    1-based pos lies in region_span [contig, start, end) (0-based, half-open). A sample missing from the
    genotypes is an InputError."""
    if not isinstance(genotypes, GenotypeFile | InMemoryGenotypes):
        genotypes = InMemoryGenotypes(genotypes)
    position = {s: i for i, s in enumerate(genotypes.obs_names)}
    absent = [s for s in sample_ids if s not in position]
    if absent:
        raise InputError(f"audit: the genotypes (genotypes.h5ad) lack sample {absent[0]!r} of the embedding table "
                         f"({len(absent)} missing): rerun the ancestry stage on the same samples")
    cols = np.ones(len(genotypes.var), dtype=bool)
    if region_span is not None:
        contig, start, end = str(region_span[0]), int(region_span[1]), int(region_span[2])
        pos0 = genotypes.var["pos"].to_numpy().astype(np.int64) - 1
        cols = (genotypes.var["contig"].astype(str).to_numpy() == contig) & (pos0 >= start) & (pos0 < end)
    rows = np.array([position[s] for s in sample_ids], dtype=np.int64)
    view = DosageColumns(genotypes.matrix, rows, np.flatnonzero(cols))
    return view, genotypes.var.index[cols].astype(str).tolist()
