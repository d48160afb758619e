"""Reference FASTA reading and contig-name resolution.

Sequences keep their case: lowercase marks soft-masked repeats and is used as a label,
never shown to a model (windows upper-case their sequences).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from pathlib import Path

from Bio.SeqIO.FastaIO import SimpleFastaParser

from interp.errors import InputError, where

_BAD_BASE = re.compile(r"[^ACGTNacgtn]")
_BAD_BASE_IN_LINE = re.compile(r"[^ACGTNacgtn\s]")  # whitespace inside sequence lines is tolerated


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt")
    return open(path)


def _locate_bad_base(path: Path, record: str) -> tuple[int, int, str]:
    """Find (1-based line, 1-based column, char) of the first bad base of `record` in the file."""
    in_record = False
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if line.startswith(">"):
                in_record = line[1:].split(None, 1)[0] == record if line[1:].strip() else False
                continue
            if not in_record:
                continue
            match = _BAD_BASE_IN_LINE.search(line)
            if match:
                return line_no, match.start() + 1, match.group()
    raise AssertionError(f"bad base of record {record} not found on rescan of {path}")


def read_fasta(path: str | Path) -> dict[str, str]:
    """Read a (optionally gzipped) FASTA file into ``{contig: sequence}``.

    Case is preserved (soft-masking kept). Only ``ACGTNacgtn`` are accepted; IUPAC
    ambiguity codes are rejected too, because downstream labels assume one base per position.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: FASTA file not found")
    sequences: dict[str, str] = {}
    with _open_text(path) as handle:
        try:
            records = list(SimpleFastaParser(handle))
        except (ValueError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: not a readable FASTA file ({err})") from err
    if not records:
        raise InputError(f"{path}: FASTA file is empty or has no '>' records; expected at least one sequence")
    for title, sequence in records:
        name = title.split(None, 1)[0] if title.strip() else ""
        if not name:
            raise InputError(f"{path}: a FASTA record has an empty name after '>'")
        if name in sequences:
            raise InputError(f"{path}: duplicate FASTA record name '{name}'; record names must be unique")
        sequence = "".join(sequence.split())
        if not sequence:
            raise InputError(f"{path}: FASTA record '{name}' has zero bases")
        if _BAD_BASE.search(sequence):
            line, column, char = _locate_bad_base(path, name)
            raise InputError(
                f"{where(path, line=line)}, column {column}: record '{name}' has character {char!r}; "
                "expected only A, C, G, T, N (upper or lower case; IUPAC codes are not accepted)"
            )
        sequences[name] = sequence
    return sequences


def _chr_variants(name: str) -> list[str]:
    """Alternative spellings of a contig under the chr-prefix convention (incl. MT <-> chrM)."""
    variants = []
    if name in ("MT", "M"):
        variants += ["chrM", "chrMT"]
    elif name in ("chrM", "chrMT"):
        variants += ["MT", "M"]
    if name.startswith("chr"):
        variants.append(name[3:])
    else:
        variants.append("chr" + name)
    return variants


def _contig_list(available: list[str], limit: int = 25) -> str:
    """Comma-separated contig names, shortened for genomes with thousands of scaffolds."""
    if len(available) <= limit:
        return ", ".join(available)
    return ", ".join(available[:limit]) + f", ... ({len(available)} in all)"


def resolve_contig(
    name: str,
    available: Iterable[str],
    aliases: dict[str, str] | None = None,
    source: str = "annotation",
) -> str:
    """Map a contig name from an annotation/VCF/config onto the FASTA's contig name.

    Order: the explicit alias map, then an exact match, then the chr-prefix rule
    (add or strip a leading ``chr``; ``MT`` <-> ``chrM``).
    """
    available = list(available)
    available_set = set(available)
    name = str(name)
    if aliases and name in aliases:
        target = str(aliases[name])
        if target in available_set:
            return target
        raise InputError(
            f"contig alias '{name}' -> '{target}' (from reference.contig_aliases) names a contig that is not "
            f"in the FASTA (contigs: {_contig_list(available)})"
        )
    if name in available_set:
        return name
    for variant in _chr_variants(name):
        if variant in available_set:
            return variant
    raise InputError(
        f"contig '{name}' (from {source}) is not in the FASTA (contigs: {_contig_list(available)}); "
        "add it to reference.contig_aliases if it has another name"
    )
