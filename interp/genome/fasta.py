"""Reference FASTA access through its index, and contig-name resolution.

`open_reference` opens a FASTA (plain or bgzipped; plain gzip gets a bgzipped copy once) through
`pysam.FastaFile`. A missing `.fai` (and `.gzi`) is built once, next to the file or, when that folder
is read-only, under a cache folder. Sequences are fetched per region, never the whole genome.

Sequences keep their case: lowercase marks soft-masked repeats and is used as a label, never shown to
a model (windows upper-case their sequences). IUPAC ambiguity codes (R Y M K S W B D H V, as in
GRCh37/38) become N (n when soft-masked) and are counted; any other character is refused with the
file, line and column where it sits.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import os
import re
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import pysam

from interp.errors import InputError, where
from interp.io import atomic_path, compression

if TYPE_CHECKING:
    from interp.genome.regions import Region

IUPAC_AMBIGUITY = "RYMKSWBDHV"
_IUPAC_TO_N = str.maketrans(IUPAC_AMBIGUITY + IUPAC_AMBIGUITY.lower(), "N" * 10 + "n" * 10)
_NOT_NUCLEOTIDE = re.compile(f"[^ACGTN{IUPAC_AMBIGUITY}acgtn{IUPAC_AMBIGUITY.lower()}]")
_AMBIGUOUS = re.compile(f"[{IUPAC_AMBIGUITY}{IUPAC_AMBIGUITY.lower()}]")
_BLOCK = 1 << 16  # bases fetched (and cached) at a time by ContigSequence


def _open_binary(path: Path):
    return gzip.open(path, "rb") if compression(path) != "plain" else open(path, "rb")


def _one_line(error: Exception) -> str:
    """An exception's message on one line (htslib messages may span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def default_cache_dir() -> Path:
    """Where indexes of read-only FASTAs go when no cache folder is given ($INTERP_CACHE or the temp dir)."""
    return Path(os.environ.get("INTERP_CACHE") or Path(tempfile.gettempdir()) / "interp-cache")


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _fingerprint(path: Path) -> str:
    """Short key of a file's absolute path, size and mtime, so a cached index never serves another file."""
    stat = path.stat()
    key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _check_line_width(shown: Path, name: str, line_no: int, line: bytes, width: int,
                      short_line: tuple[int, bool] | None) -> None:
    """faidx's rule for a sequence line of record `name`: every line of a record but its last holds as many bytes
    as its first (`width`, line end included; 0 before it). InputError naming the line where it breaks: bases
    after a shorter or blank line (`short_line`: its number, and whether it held the first line's bases with a
    shorter line end; None if none), or a line longer than the first."""
    if not line.strip():
        return
    bases = len(line.rstrip(b"\r\n"))
    if short_line:
        what = ("ends with \\n where the record's first line ends with \\r\\n" if short_line[1] else
                "is shorter than the record's first line, or blank")
        raise InputError(f"{where(shown, line=line_no)}: FASTA record '{name}' has more bases after line "
                         f"{short_line[0]}, which {what}; every line of a record but its last must hold the same "
                         "number of bases, with the same line end (reformat it, e.g. seqkit seq -w 60)")
    if width and len(line) > width:
        what = ("ends its line with \\r\\n where the record's first line ends with \\n" if bases <= width - 1
                else f"holds {bases} bases, more than the record's first line")
        raise InputError(f"{where(shown, line=line_no)}: FASTA record '{name}' {what}; every line of a record but "
                         "its last must hold the same number of bases, with the same line end")


def _check_structure(path: Path, name_as: Path | None = None) -> None:
    """One pass over the headers before indexing: faidx silently drops empty and duplicate records.

    Raises InputError for an empty file, a byte-order mark, text before the first '>', an empty record name, a
    duplicate name, a record without bases, or lines of a record whose widths faidx cannot index
    (`_check_line_width`: its own message names no line).
    """
    shown = name_as or path
    seen: dict[str, int] = {}
    name, name_line, n_bases = None, 0, 0
    # the record's first line, in bytes with its line end; a shorter (or blank) line (`_check_line_width`)
    width, short_line = 0, None
    try:
        with _open_binary(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
                    raise InputError(f"{where(shown, line=1)}: the FASTA starts with a UTF-8 byte-order mark (as some "
                                     "Windows editors save text); remove it (sed -i '1s/^\\xEF\\xBB\\xBF//' FILE)")
                if line.startswith(b">"):
                    width, short_line = 0, None
                    if name is not None and n_bases == 0:
                        raise InputError(f"{where(shown, line=name_line)}: FASTA record '{name}' has zero bases")
                    fields = line[1:].split(None, 1)
                    if not fields:
                        raise InputError(f"{where(shown, line=line_no)}: a FASTA record has an empty name after '>'")
                    name = fields[0].decode("utf-8", "replace")
                    if name in seen:
                        raise InputError(f"{where(shown, line=line_no)}: duplicate FASTA record name '{name}' "
                                         f"(first on line {seen[name]}); record names must be unique")
                    seen[name], name_line, n_bases = line_no, line_no, 0
                elif name is None:
                    if line.strip():
                        raise InputError(f"{where(shown, line=line_no)}: FASTA file has no '>' records: text comes "
                                         "before the first '>' header")
                else:
                    n_bases += len(line.strip())
                    if len(line) != width or short_line:  # (not a full line of the record's width: checked)
                        _check_line_width(shown, name, line_no, line, width, short_line)
                        if not short_line and (not line.strip() or (width and len(line) < width)):
                            # the record's last line, unless more bases follow
                            short_line = (line_no, bool(line.strip()) and len(line.rstrip(b"\r\n")) == width - 2
                                          and line.endswith(b"\n"))
                        width = width or (len(line) if line.strip() else 0)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise InputError(f"{shown}: truncated or corrupt compressed FASTA ({_one_line(err)})") from err
    if name is None:
        raise InputError(f"{shown}: FASTA file is empty or has no '>' records; expected at least one sequence")
    if n_bases == 0:
        raise InputError(f"{where(shown, line=name_line)}: FASTA record '{name}' has zero bases")


def _index_paths(path: Path, cache_dir: Path | None) -> tuple[Path, Path, Path]:
    """(FASTA to open, its .fai, its .gzi): existing indexes next to the file, else where we may write."""
    fasta = path
    if compression(path) == "gzip":  # htslib cannot seek plain gzip: a bgzipped copy, made once
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        fasta = folder / f"{path.name.removesuffix('.gz')}.{_fingerprint(path)}.bgz"
        if not fasta.exists():
            folder.mkdir(parents=True, exist_ok=True)
            _check_structure(path)
            try:
                with (atomic_path(fasta) as tmp, gzip.open(path, "rb") as src,
                      pysam.BGZFile(str(tmp), "wb") as dst):
                    shutil.copyfileobj(src, dst, 1 << 22)
            except (OSError, EOFError) as err:
                raise InputError(f"{path}: truncated or corrupt gzip FASTA ({_one_line(err)})") from err
        return fasta, Path(f"{fasta}.fai"), Path(f"{fasta}.gzi")
    beside = Path(f"{path}.fai"), Path(f"{path}.gzi")
    needs_gzi = compression(path) == "bgzf"
    fresh = beside[0].exists() and beside[0].stat().st_mtime >= path.stat().st_mtime
    if fresh and (not needs_gzi or beside[1].exists()):
        return path, beside[0], beside[1]
    if _writable(path.parent):
        return path, beside[0], beside[1]
    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir())
    stem = f"{path.name}.{_fingerprint(path)}"
    return path, folder / f"{stem}.fai", folder / f"{stem}.gzi"


def _build_index(user_path: Path, fasta: Path, fai: Path, gzi: Path) -> None:
    """Write `fai` (and `gzi` for bgzip) atomically with htslib, after the structure check."""
    if fai.exists() and fai.stat().st_mtime >= fasta.stat().st_mtime and (
            compression(fasta) != "bgzf" or gzi.exists()):
        return
    _check_structure(fasta, name_as=user_path)
    bgzf = compression(fasta) == "bgzf"
    # the .fai (the index whose freshness is checked) is the outer block, so it is renamed in last
    with atomic_path(fai) as tmp_fai, (atomic_path(gzi) if bgzf else nullcontext()) as tmp_gzi:
        args = [str(fasta), "--fai-idx", str(tmp_fai)]
        if bgzf:
            args += ["--gzi-idx", str(tmp_gzi)]
        try:
            pysam.faidx(*args)
        except pysam.utils.SamtoolsError as err:
            detail = " ".join(str(err).split())[-300:]
            raise InputError(
                f"{user_path}: cannot be indexed as FASTA ({detail}); every line of a record but its last must "
                "hold the same number of bases, and a compressed FASTA must be complete (bgzip or gzip)"
            ) from err


class ContigSequence:
    """One contig of a `Reference`: `len()`, `seq[i]` and `seq[a:b]` (str) fetched on demand.

    Bases are fetched and cached in blocks of 64 kb, so repeated slices of one region cost one fetch.
    IUPAC codes read as N (n when soft-masked); a slice covering any other character raises InputError.
    """

    def __init__(self, reference: Reference, name: str, length: int) -> None:
        self.reference, self.name, self.length = reference, name, length
        self._blocks: dict[int, tuple[str, list[tuple[int, str]]]] = {}

    def __len__(self) -> int:
        return self.length

    def _block(self, index: int, lo: int, hi: int) -> str:
        """Block `index`, after checking its bases lo:hi (block coordinates) hold no bad character."""
        block = self._blocks.get(index)
        if block is None:
            start = index * _BLOCK
            block = self.reference.checked(self.name, start, min(start + _BLOCK, self.length))
            self._blocks[index] = block
        text, bad = block
        for offset, char in bad:
            if lo <= offset < hi:
                self.reference.refuse(self.name, index * _BLOCK + offset, char)
        return text

    def __getitem__(self, key: int | slice) -> str:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.length)
            if step != 1:
                return self[start:stop][::step] if start < stop else ""
            if start >= stop:
                return ""
            first, last = start // _BLOCK, (stop - 1) // _BLOCK
            lo, hi = start - first * _BLOCK, stop - last * _BLOCK
            if first == last:
                return self._block(first, lo, hi)[lo:hi]
            pieces = [self._block(first, lo, _BLOCK)[lo:]]
            pieces += [self._block(i, 0, _BLOCK) for i in range(first + 1, last)]
            pieces.append(self._block(last, 0, hi)[:hi])
            return "".join(pieces)
        index = int(key)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"position {key} outside contig {self.name} (length {self.length})")
        return self[index:index + 1]

    def __str__(self) -> str:
        return self[0:self.length]

    def __repr__(self) -> str:
        return f"ContigSequence({self.name!r}, length={self.length})"


class Reference(Mapping[str, ContigSequence]):
    """An indexed FASTA as a read-only mapping contig name -> `ContigSequence`, in file order.

    Use `open_reference`. `fetch(contig, start, end)` returns validated bases (0-based, end exclusive);
    `ambiguity_counts(regions)` counts the IUPAC codes replaced inside regions.
    """

    def __init__(self, path: Path, fasta: Path, fai: Path, gzi: Path) -> None:
        self.path, self._fasta, self._fai_path, self._gzi = path, fasta, fai, gzi
        self._verified: set[str] = set()
        self._gzi_blocks: tuple[list[int], list[int]] | None = None
        try:
            self._handle = pysam.FastaFile(str(fasta), filepath_index=str(fai),
                                           filepath_index_compressed=str(gzi) if gzi.exists() else None)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: cannot open FASTA through its index {fai} ({_one_line(err)}); delete the index "
                             "to have it rebuilt") from err
        self._fai = _read_fai(fai)
        self._contigs = {name: ContigSequence(self, name, int(row[0])) for name, row in self._fai.items()}
        if not self._contigs:
            raise InputError(f"{path}: FASTA file is empty or has no '>' records; expected at least one sequence")
        self._verify_tail()

    def __getitem__(self, name: str) -> ContigSequence:
        return self._contigs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._contigs)

    def __len__(self) -> int:
        return len(self._contigs)

    def lengths(self) -> dict[str, int]:
        """{contig: length in bases}, from the index."""
        return {name: seq.length for name, seq in self._contigs.items()}

    def raw(self, contig: str, start: int, end: int) -> str:
        """Bases exactly as in the file (0-based, end exclusive), unvalidated; InputError if unreadable."""
        if contig not in self._verified and contig in self._fai:
            self._verify_record(contig)
        try:
            return self._handle.fetch(contig, start, end)
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"{self.path}: cannot read {contig}:{start}-{end} ({_one_line(err)}); the file may be "
                             "truncated or corrupt, or changed since its index was built") from err

    def checked(self, contig: str, start: int, end: int) -> tuple[str, list[tuple[int, str]]]:
        """contig[start:end] with IUPAC codes -> N/n (case kept), and the (offset, char) of bad characters."""
        sequence = self.raw(contig, start, end)
        if len(sequence) != end - start:
            raise InputError(f"{self.path}: {contig}:{start}-{end} returned {len(sequence)} bases instead of "
                             f"{end - start}; the file may be truncated or its index stale")
        bad = [(m.start(), m.group()) for m in _NOT_NUCLEOTIDE.finditer(sequence)]
        return (sequence.translate(_IUPAC_TO_N) if _AMBIGUOUS.search(sequence) else sequence), bad

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Validated bases of contig[start:end]: case kept, IUPAC codes -> N/n, anything else refused."""
        sequence, bad = self.checked(contig, start, end)
        if bad:
            self.refuse(contig, start + bad[0][0], bad[0][1])
        return sequence

    def ambiguity_counts(self, regions: Iterable[Region]) -> dict[str, int]:
        """{IUPAC code (upper case): count} inside the union of `regions`; each base counted once."""
        spans: dict[str, list[list[int]]] = {}
        for region in sorted(regions, key=lambda r: (r.contig, r.start)):
            merged = spans.setdefault(region.contig, [])
            if merged and region.start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], region.end)
            else:
                merged.append([region.start, region.end])
        counts: Counter[str] = Counter()
        for contig, merged in spans.items():
            for start, end in merged:
                counts.update(m.upper() for m in _AMBIGUOUS.findall(self.raw(contig, start, end)))
        return {code: counts[code] for code in sorted(counts)}

    def _bytes_at(self, start: int, size: int) -> bytes:
        """`size` uncompressed bytes of the FASTA from byte `start` (plain, or bgzip through its .gzi)."""
        if compression(self._fasta) != "bgzf":
            with open(self._fasta, "rb") as handle:
                handle.seek(start)
                return handle.read(size)
        from Bio import bgzf

        if self._gzi_blocks is None:  # .gzi: uint64 n, then n (compressed, uncompressed) block offsets
            data = self._gzi.read_bytes()
            pairs = [(0, 0)] + [struct.unpack_from("<QQ", data, 8 + 16 * i)
                                for i in range(struct.unpack_from("<Q", data)[0])]
            self._gzi_blocks = [c for c, _ in pairs], [u for _, u in pairs]
        compressed, uncompressed = self._gzi_blocks
        block = bisect.bisect_right(uncompressed, start) - 1
        with bgzf.BgzfReader(str(self._fasta), "rb") as handle:
            handle.seek(bgzf.make_virtual_offset(compressed[block], start - uncompressed[block]))
            return handle.read(size)

    def _record_end(self, contig: str) -> int:
        """Byte offset just past the last base of `contig`, by its index entry."""
        length, offset, line_bases, line_width = self._fai[contig]
        return offset + (length - 1) // line_bases * line_width + (length - 1) % line_bases + 1 if length else offset

    def _verify_tail(self) -> None:
        """InputError when the file goes on after the last record its index knows (a record added to a FASTA
        replaced keeping an older mtime: the index looked fresh and the new contigs were silently missing).
        One read of at most 4 kB."""
        last = max(self._fai, key=lambda name: self._fai[name][1])
        try:
            tail = self._bytes_at(self._record_end(last), 4096)
        except (OSError, ValueError, EOFError, struct.error):
            tail = b""
        if tail.strip(b"\r\n\t "):
            raise InputError(
                f"{self.path}: its index {self._fai_path} does not match the file (the file goes on after record "
                f"'{last}', the last the index knows); the index was built for another version of the file: delete "
                "it (and its .gzi) to have it rebuilt"
            )

    def _verify_record(self, contig: str) -> None:
        """InputError unless the index's layout of `contig` matches the file: its bases start right after a
        '>contig' header line and end at a line end followed by the next '>' header (or the file's end).

        A .fai newer than its FASTA passes the freshness check even when it was built for another version of
        the file (a FASTA replaced with `cp -p` or `rsync -a`); its offsets then point at the wrong bytes.
        """
        length, offset = self._fai[contig][:2]
        last = self._record_end(contig)
        try:
            before = self._bytes_at(max(0, offset - 1024), min(offset, 1024))
            after = self._bytes_at(last, 8)
        except (OSError, ValueError, EOFError, struct.error):
            before, after = b"", b"x"
        header = before[:-1].rsplit(b"\n", 1)
        complete = len(header) == 2 or offset <= 1024  # the whole header line was read
        fields = header[-1].rstrip(b"\r")[1:].split(None, 1)
        name_ok = not complete or (header[-1].startswith(b">") and fields[:1] == [contig.encode()])
        tail = after.lstrip(b"\r\n")
        if not (before.endswith(b"\n") and name_ok and (tail == b"" or tail.startswith(b">"))
                and (length == 0 or after[:1] in (b"\n", b"\r", b""))):
            raise InputError(
                f"{self.path}: its index {self._fai_path} does not match the file (record '{contig}' is not where "
                "the index puts it); the index was built for another version of the file: delete it (and its "
                ".gzi) to have it rebuilt"
            )
        self._verified.add(contig)

    def refuse(self, contig: str, offset: int, char: str) -> None:
        """InputError at the file line and column of base `offset` of `contig` (from the .fai layout)."""
        _, record_offset, line_bases, line_width = self._fai[contig]
        del line_width  # line and column follow from bases per line; bytes per line only skip line ends
        line = _count_lines(self.path, record_offset) + 1 + offset // line_bases
        location = f"{where(self.path, line=line)}, column {offset % line_bases + 1}"
        raise InputError(
            f"{location}: record '{contig}' has character {char!r} at base {offset + 1}; expected A, C, G, T, N "
            f"or an IUPAC ambiguity code ({', '.join(IUPAC_AMBIGUITY)}), upper or lower case"
        )

    def close(self) -> None:
        self._handle.close()


def _read_fai(fai: Path) -> dict[str, tuple[int, int, int, int]]:
    """{name: (length, byte offset of the first base, bases per line, bytes per line)} from a .fai."""
    rows = {}
    for line in fai.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 5:
            rows[fields[0]] = (int(fields[1]), int(fields[2]), int(fields[3]), int(fields[4]))
    return rows


def _count_lines(path: Path, offset: int) -> int:
    """Newlines among the first `offset` uncompressed bytes of `path` (error path only)."""
    count, remaining = 0, offset
    with _open_binary(path) as handle:
        while remaining > 0:
            chunk = handle.read(min(remaining, 1 << 22))
            if not chunk:
                break
            count += chunk.count(b"\n")
            remaining -= len(chunk)
    return count


def open_reference(path: str | Path, cache_dir: str | Path | None = None) -> Reference:
    """Open a FASTA (plain, bgzip or gzip) through its index, building a missing index once.

    cache_dir: where an index (or a bgzipped copy of a plain-gzip FASTA) goes when the FASTA's folder
    is read-only; default `default_cache_dir()`. The workflow passes `results/<run>/reference/`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: FASTA file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: FASTA file is empty or has no '>' records; expected at least one sequence")
    fasta, fai, gzi = _index_paths(path, Path(cache_dir) if cache_dir is not None else None)
    _build_index(path, fasta, fai, gzi)
    return Reference(path, fasta, fai, gzi)


def read_fasta(path: str | Path, cache_dir: str | Path | None = None) -> dict[str, str]:
    """Every contig of a FASTA as ``{contig: sequence}`` (validated as `Reference.fetch`).

    For small genomes and tests; workflows use `open_reference`, which fetches only the regions in use.
    """
    reference = open_reference(path, cache_dir)
    try:
        return {name: str(seq) for name, seq in reference.items()}
    finally:
        reference.close()


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


def check_alias_not_masking(name: str, available: Iterable[str], aliases: dict[str, str] | None) -> None:
    """InputError when `aliases` maps `name` to a contig the FASTA lacks while `name` itself matches one of its
    contigs (exactly or by the chr-prefix rule): a mistyped alias target. Callers that drop contigs the FASTA
    lacks (a genome-wide annotation with a FASTA of a few chromosomes) call this first, so such an alias is
    refused rather than silently dropping every row of a studied contig."""
    if not aliases or str(name) not in aliases or str(aliases[str(name)]) in set(available):
        return
    try:
        matched = resolve_contig(name, available, None)
    except InputError:
        return  # the name is not in the FASTA either: an alias for a contig this FASTA does not hold
    raise InputError(
        f"contig alias '{name}' -> '{aliases[str(name)]}' (from reference.contig_aliases) names a contig that is "
        f"not in the FASTA, while '{name}' itself matches its contig '{matched}'; correct the alias or remove it"
    )


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
