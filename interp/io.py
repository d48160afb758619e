"""Small file helpers every stage shares: atomic writes and safetensors metadata.

Outputs (files and whole folders) are written to a temporary sibling and renamed into place, so a
failed step never leaves one that looks complete; checkpoints are read as safetensors only (no pickle).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from interp.errors import InputError

if TYPE_CHECKING:
    import polars as pl

#: text that means "no value" in samples.tsv and in the audit's inputs (phenotypes, labels, covariates); "None",
#: "nan" and "<NA>" are also what str() makes of Python's None, a float NaN and pandas' NA
MISSING_TEXT = frozenset({"", "NA", "na", "N/A", "NaN", "nan", ".", "None", "<NA>"})


def is_missing(value: object) -> bool:
    """True for None, a float NaN and the `MISSING_TEXT` strings (surrounding spaces ignored)."""
    if value is None or (isinstance(value, float) and value != value):
        return True
    return str(value).strip() in MISSING_TEXT


_GZIP_MAGIC = b"\x1f\x8b"
#: a BGZF block's gzip header (htslib's check_header): deflate with the FEXTRA flag, whose one extra subfield
#: (XLEN 6) is 'BC' of length 2; a gzip file with another extra field (dictzip's 'RA') is plain gzip
_GZIP_DEFLATE, _FEXTRA, _BGZF_EXTRA = b"\x1f\x8b\x08", 0x04, b"\x06\x00BC\x02\x00"


def compression(path: str | Path) -> str:
    """'bgzf', 'gzip' or 'plain', from the file's first bytes (htslib can index only bgzf)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:3] == _GZIP_DEFLATE and len(head) == 16 and head[3] & _FEXTRA and head[10:] == _BGZF_EXTRA:
        return "bgzf"
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    return "plain"


@contextmanager
def atomic_path(path: str | Path, unique: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds.

    unique: the temporary name also carries the host name and a random token (not only the process id),
    for files that jobs on several machines may write at once into a shared folder (the embedding cache):
    each writes its own temporary file and the last rename wins, never a mixed file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.{socket.gethostname()}.{secrets.token_hex(4)}" if unique else f"{os.getpid()}"
    tmp = path.with_name(f".{path.name}.tmp{tag}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary sibling folder; it replaces the folder `path` only if the block succeeds.

    The temporary name has no process id, so a folder left by a killed run is cleared by the next one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)  # the folder appears only once complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet_parts(path: str | Path, parts: Iterable[pl.DataFrame], schema: Mapping[str, pl.DataType]) -> int:
    """Frames written to `path` as one parquet file (zstd), each as row groups as it comes, so only the frame at
    hand is held (a gathered table written one shard at a time); through a temporary sibling renamed into place
    only once every frame is written (`atomic_path`: a failure leaves no file, and an older one untouched).
    schema: the file's columns and types, in order (every frame must match it, else pyarrow's ValueError; no
    frames write an empty table). Returns the rows written. The same frames give the same bytes."""
    import polars as pl
    import pyarrow.parquet as pq

    n = 0
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, pl.DataFrame(schema=dict(schema)).to_arrow().schema,
                              compression="zstd") as writer:
            for part in parts:
                writer.write_table(part.to_arrow())
                n += part.height
    return n


def read_safetensors_metadata(path: str | Path, what: str) -> dict[str, str]:
    """The string metadata of a safetensors file; InputError naming `what` if absent or unreadable."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise InputError(f"{path}: {what} is not a readable safetensors file ({err})") from err


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (a section or setting written twice would
    otherwise silently keep the last: `trust_remote_code: true` then `false`, or two `sae:` sections)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_unique(text: str) -> Any:
    """YAML text read safely, a key given twice in one mapping refused (yaml.YAMLError)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)

