"""Gene annotations (UCSC genePred-like tables, GTF, GFF3) as one tidy polars table.

Every format is normalised to 0-based, end-exclusive intervals with one ``transcript`` row per
transcript and one ``exon`` row per exon:

    gene, transcript, contig, strand ("+"/"-"), feature ("transcript"|"exon"),
    start (int64, 0-based), end (int64, exclusive), source_line (1-based line in the input)
"""

from __future__ import annotations

import bisect
import gzip
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

import polars as pl

from interp.errors import InputError, where
from interp.genome.fasta import check_alias_not_masking, resolve_contig
from interp.io import compression

FORMATS = ("ucsc", "gtf", "gff3")
SCHEMA = {
    "gene": pl.String,
    "transcript": pl.String,
    "contig": pl.String,
    "strand": pl.String,
    "feature": pl.String,
    "start": pl.Int64,
    "end": pl.Int64,
    "source_line": pl.Int64,
}
# GFF3 feature types that carry exons; anything else that is an exon's Parent is accepted too.
_GFF_TRANSCRIPT_TYPES = {"mRNA", "transcript", "ncRNA", "lnc_RNA", "lncRNA", "miRNA", "rRNA", "tRNA",
                         "snRNA", "snoRNA", "pseudogenic_transcript", "primary_transcript"}


@dataclass
class _Transcript:
    """Accumulates one transcript while a file is parsed (0-based half-open coordinates)."""

    gene: str
    contig: str
    strand: str
    line: int
    span: tuple[int, int] | None = None
    exons: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, line)
    exon_span: tuple[int, int] | None = None  # of the exons read but not held (GTF with `keep`)
    unheld: int = 0  # exons read but not held: collected by a second pass if the transcript is kept


def _lines(path: Path) -> Iterator[str]:
    """The file's lines without their line ends, streamed (a 1.5 GB GENCODE GTF is never held whole)."""
    if not path.is_file():
        raise InputError(f"{path}: annotation file not found")
    # by the file's first bytes, as the FASTA reader does: a bgzipped .bgz, or a gzipped file named .gtf, was
    # read as text and refused as undecodable
    opener = gzip.open if compression(path) != "plain" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as handle:  # (a BOM is no text)
            for line in handle:
                yield line.rstrip("\r\n")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read annotation file ({err})") from err


def _int(text: str, path: Path, line: int, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{where(path, line=line, field=name)}: expected an integer coordinate, got {text!r}") \
            from None


def _strand(text: str, path: Path, line: int, name: str = "strand") -> str:
    if text not in ("+", "-"):
        raise InputError(f"{where(path, line=line, field=name)}: unknown strand {text!r}; expected '+' or '-'")
    return text


def _interval(start: int, end: int, path: Path, line: int, what: str) -> None:
    """Check a 0-based half-open interval."""
    if start < 0:
        raise InputError(f"{where(path, line=line)}: {what} start {start} is negative")
    if end < start:
        raise InputError(f"{where(path, line=line)}: {what} end {end} is before its start {start}")


#: keep(gene, contig, start, end) -> bool: which transcripts `read_annotation` returns (contig as in the file,
#: 0-based half-open transcript span)
Keep = Callable[[str, str, int, int], bool]


def _to_frame(transcripts: dict[str, _Transcript], path: Path, keep: Keep | None = None) -> pl.DataFrame:
    if not transcripts:
        raise InputError(f"{path}: annotation file has no transcripts or exons")
    rows: dict[str, list] = {name: [] for name in SCHEMA}

    def add(gene, transcript, tx, feature, start, end, line):
        for key, value in zip(SCHEMA, (gene, transcript, tx.contig, tx.strand, feature, start, end, line),
                              strict=True):
            rows[key].append(value)

    for name, tx in transcripts.items():
        if not tx.exons and tx.span is None:
            continue
        exons = sorted(tx.exons)
        span = tx.span or (exons[0][0], max(e[1] for e in exons))
        if keep is not None and not keep(tx.gene, tx.contig, span[0], span[1]):
            continue
        add(tx.gene, name, tx, "transcript", span[0], span[1], tx.line)
        for start, end, line in exons:
            add(tx.gene, name, tx, "exon", start, end, line)
    return pl.DataFrame(rows, schema=SCHEMA)


# ---------------------------------------------------------------- UCSC genePred-like tables

# Header spellings (lower-case, no underscores) for the columns we use.
_UCSC_HEADER = {
    "name": "transcript", "transcript": "transcript", "name2": "gene", "gene": "gene", "genename": "gene",
    "chrom": "contig", "contig": "contig", "strand": "strand", "txstart": "tx_start", "txend": "tx_end",
    "exonstart": "exon_starts", "exonstarts": "exon_starts", "exonend": "exon_ends", "exonends": "exon_ends",
    "exoncount": "exon_count",
}
# Headerless layouts by column count: field -> column index (their names: _UCSC_LAYOUT_NAMES).
_UCSC_LAYOUTS = {
    7: {"transcript": 0, "contig": 1, "strand": 2, "tx_start": 3, "tx_end": 4, "exon_starts": 5, "exon_ends": 6},
    10: {"transcript": 0, "contig": 1, "strand": 2, "tx_start": 3, "tx_end": 4, "exon_count": 7,
         "exon_starts": 8, "exon_ends": 9},
    11: {"gene": 0, "transcript": 1, "contig": 2, "strand": 3, "tx_start": 4, "tx_end": 5, "exon_count": 8,
         "exon_starts": 9, "exon_ends": 10},
    12: {"transcript": 0, "contig": 1, "strand": 2, "tx_start": 3, "tx_end": 4, "exon_count": 7,
         "exon_starts": 8, "exon_ends": 9},
    15: {"transcript": 0, "contig": 1, "strand": 2, "tx_start": 3, "tx_end": 4, "exon_count": 7,
         "exon_starts": 8, "exon_ends": 9, "gene": 11},
    16: {"transcript": 1, "contig": 2, "strand": 3, "tx_start": 4, "tx_end": 5, "exon_count": 8,
         "exon_starts": 9, "exon_ends": 10, "gene": 12},  # refGene with bin column
}
_UCSC_LAYOUT_NAMES = {7: "name, chrom, strand, txStart, txEnd, exonStarts, exonEnds", 10: "genePred",
                      11: "refFlat (geneName + genePred)", 12: "knownGene (genePred + proteinID, alignID)",
                      15: "genePredExt", 16: "refGene (bin + genePredExt)"}


def _ucsc_columns(header: list[str], path: Path, line: int) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        key = _UCSC_HEADER.get(name.strip().lower().replace("_", ""))
        if key and key not in columns:
            columns[key] = index
    missing = {"transcript", "contig", "strand", "tx_start", "tx_end", "exon_starts", "exon_ends"} - set(columns)
    if missing:
        raise InputError(f"{where(path, line=line)}: gene table header lacks column(s) {sorted(missing)}; "
                         "expected NAME, CHROM, STRAND, TX_START, TX_END, EXON_START, EXON_END")
    return columns


def _check_layout_guess(fields: list[str], columns: dict[str, int], path: Path, line: int) -> None:
    """A headerless table's layout is guessed from its first row's column count: InputError (naming the
    layout) unless the row reads as that layout, i.e. its strand is + or - and a gene name column does not hold
    a bare number (an 11-column genePred with a leading bin column reads like refFlat, a BED12 has 12 columns
    like knownGene)."""
    layout = _UCSC_LAYOUT_NAMES[len(fields)]
    strand = fields[columns["strand"]].strip()
    gene = fields[columns["gene"]].strip() if "gene" in columns else ""
    if strand not in ("+", "-") or gene.isdigit():
        raise InputError(f"{where(path, line=line)}: a gene table of {len(fields)} columns without a header is read "
                         f"as {layout}, but this row does not fit it (strand {strand!r}"
                         + (f", gene name {gene!r}" if gene else "") + "); give a '#' header naming the columns "
                         "(name, chrom, strand, txStart, txEnd, exonStarts, exonEnds, and name2 or geneName)")


def _coordinate_list(text: str, path: Path, line: int, name: str) -> list[int]:
    return [_int(part, path, line, name) for part in text.strip().rstrip(",").split(",") if part.strip()]


def _read_ucsc(path: Path, lines: Iterable[str], keep: Keep | None = None) -> pl.DataFrame:
    columns: dict[str, int] | None = None
    header_names: list[str] = []
    transcripts: dict[str, _Transcript] = {}
    # every row's transcript name, kept or not (for the _dupN names): each row is a whole transcript, so one
    # `keep` refuses is dropped as it is read, not held to the end of a genome-wide table
    names_seen: set[str] = set()
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if raw.startswith("#"):
            if columns is None and not names_seen:
                header_names = raw.lstrip("#").split("\t")
                columns = _ucsc_columns(header_names, path, line_no)
            continue
        fields = raw.split("\t")
        if columns is None:
            if len(fields) not in _UCSC_LAYOUTS:
                raise InputError(f"{where(path, line=line_no)}: gene table row has {len(fields)} columns; "
                                 f"expected one of {sorted(_UCSC_LAYOUTS)} (or a '#' header naming them)")
            columns = _UCSC_LAYOUTS[len(fields)]
            header_names = [f"column {i + 1}" for i in range(len(fields))]
            _check_layout_guess(fields, columns, path, line_no)
        width = len(header_names) if header_names else max(columns.values()) + 1
        if len(fields) != width:
            raise InputError(f"{where(path, line=line_no)}: gene table row has {len(fields)} columns; "
                             f"expected {width}")
        names = {key: header_names[i] if i < len(header_names) else key for key, i in columns.items()}
        transcript = fields[columns["transcript"]].strip()
        gene = fields[columns["gene"]].strip() if "gene" in columns else transcript
        contig = fields[columns["contig"]].strip()
        strand = _strand(fields[columns["strand"]].strip(), path, line_no, names["strand"])
        tx_start = _int(fields[columns["tx_start"]], path, line_no, names["tx_start"])
        tx_end = _int(fields[columns["tx_end"]], path, line_no, names["tx_end"])
        _interval(tx_start, tx_end, path, line_no, "transcript")
        starts = _coordinate_list(fields[columns["exon_starts"]], path, line_no, names["exon_starts"])
        ends = _coordinate_list(fields[columns["exon_ends"]], path, line_no, names["exon_ends"])
        if len(starts) != len(ends):
            raise InputError(f"{where(path, line=line_no)}: {len(starts)} exon starts but {len(ends)} exon ends")
        if "exon_count" in columns:
            count = _int(fields[columns["exon_count"]], path, line_no, names["exon_count"])
            if count != len(starts):
                raise InputError(f"{where(path, line=line_no, field=names['exon_count'])}: exon count {count} "
                                 f"but {len(starts)} exon starts are listed")
        if not starts:
            raise InputError(f"{where(path, line=line_no)}: transcript {transcript} lists no exons")
        exons = []
        for start, end in zip(starts, ends, strict=True):
            _interval(start, end, path, line_no, "exon")
            if start < tx_start or end > tx_end:
                raise InputError(f"{where(path, line=line_no)}: exon {start}-{end} lies outside transcript "
                                 f"{tx_start}-{tx_end}")
            exons.append((start, end, line_no))
        if transcript in names_seen:
            # one row per placement: refGene, ncbiRefSeq and knownGene map some transcripts to several loci
            # (PAR genes on chrX and chrY, alternate haplotypes); named as genePredToGtf names them
            placement = 1
            while f"{transcript}_dup{placement}" in names_seen:
                placement += 1
            transcript = f"{transcript}_dup{placement}"
        names_seen.add(transcript)
        if keep is not None and not keep(gene, contig, tx_start, tx_end):
            continue
        transcripts[transcript] = _Transcript(gene, contig, strand, line_no, (tx_start, tx_end), exons)
    if names_seen and not transcripts:  # rows, none of them kept: an empty table, as before
        return pl.DataFrame(schema=SCHEMA)
    return _to_frame(transcripts, path, keep)


# ---------------------------------------------------------------- GTF / GFF3 (9 columns, 1-based closed)

def _nine_columns(path: Path, lines: Iterable[str]):
    """Yield (line_no, fields) for the data lines of a GTF/GFF file, with checked coordinates."""
    for line_no, raw in enumerate(lines, start=1):
        if raw.startswith(("##FASTA", ">")):  # GFF3: the features end where an embedded FASTA section begins
            return
        if not raw.strip() or raw.startswith("#"):
            continue
        fields = raw.rstrip("\r").split("\t")
        if len(fields) != 9:
            raise InputError(f"{where(path, line=line_no)}: expected 9 tab-separated columns, got {len(fields)}")
        start = _int(fields[3], path, line_no, "start")
        end = _int(fields[4], path, line_no, "end")
        if start < 1:
            raise InputError(f"{where(path, line=line_no, field='start')}: start {start} must be >= 1 (1-based)")
        if end < start:
            raise InputError(f"{where(path, line=line_no)}: end {end} is before start {start}")
        fields[3], fields[4] = start - 1, end  # 1-based closed -> 0-based half-open
        yield line_no, fields


def _gtf_attributes(text: str) -> dict[str, str]:
    attributes = {}
    for part in text.strip().split(";"):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition(" ")
        attributes.setdefault(key, value.strip().strip('"'))
    return attributes


def _read_gtf(path: Path, lines: Iterable[str], keep: Keep | None = None) -> pl.DataFrame:
    """GTF reader. With `keep`, a transcript is decided at its `transcript` line (GENCODE and Ensembl give one
    before the exons): refused ones are dropped there and later exons are not held; exons of a transcript
    whose `transcript` line has not come (exon-only GTFs, or exons first) are not held either, only their
    span, and the transcripts `keep` accepts at the end of the file get their exons from a second pass.
    Memory follows the studied transcripts' exons plus one small record per transcript of the file."""
    transcripts: dict[str, _Transcript] = {}
    # transcripts `keep` refused at their `transcript` line: a small record stays, so that their later lines
    # get the same checks whatever is studied
    dropped: dict[str, _Transcript] = {}
    seen = False
    for line_no, fields in _nine_columns(path, lines):
        feature = fields[2]
        if feature not in ("exon", "transcript"):
            continue
        seen = True
        attributes = _gtf_attributes(fields[8])
        if "transcript_id" not in attributes:
            raise InputError(f"{where(path, line=line_no, field='attributes')}: {feature} has no transcript_id")
        transcript = attributes["transcript_id"]
        gene = attributes.get("gene_name") or attributes.get("gene_id") or transcript
        strand = _strand(fields[6], path, line_no)
        tx = transcripts.get(transcript) or dropped.get(transcript)
        if tx is None:
            tx = transcripts[transcript] = _Transcript(gene, fields[0], strand, line_no)
        elif (tx.contig, tx.strand) != (fields[0], strand):
            raise InputError(f"{where(path, line=line_no)}: transcript {transcript} changes contig or strand "
                             f"(first seen on line {tx.line})")
        if feature == "transcript":
            if tx.span is not None:  # its span, and whether it is studied, must be one
                raise InputError(f"{where(path, line=line_no)}: transcript {transcript} has a second "
                                 f"'transcript' line (the first on line {tx.line})")
            tx.span, tx.line = (fields[3], fields[4]), line_no
            if keep is not None and not keep(tx.gene, tx.contig, *tx.span):
                dropped[transcript] = transcripts.pop(transcript)
                tx.exons.clear()
        elif transcript not in transcripts:
            continue
        elif keep is None or tx.span is not None:
            tx.exons.append((fields[3], fields[4], line_no))
        else:  # not yet decided: only its span grows
            lo, hi = tx.exon_span or (fields[3], fields[4])
            tx.exon_span, tx.unheld = (min(lo, fields[3]), max(hi, fields[4])), tx.unheld + 1
    if keep is not None:
        _collect_unheld_exons(path, transcripts, keep, _gtf_transcript_of)
    if not transcripts and seen:  # transcripts there were, none studied
        return pl.DataFrame(schema=SCHEMA)
    return _to_frame(transcripts, path, keep)


def _collect_unheld_exons(path: Path, transcripts: dict[str, _Transcript], keep: Keep,
                          parents_of: Callable[[str], Iterable[str]]) -> None:
    """At the end of a GTF / GFF3 read with `keep`: drop the transcripts with unheld exons that `keep` refuses
    on their whole span, and read the exons of those it accepts from a second pass over the file.

    parents_of: an exon line's attribute text -> the transcripts it belongs to (GTF: its transcript_id; GFF3:
    its Parent= list)."""
    wanted: set[str] = set()
    for name in [n for n, tx in transcripts.items() if tx.unheld]:
        tx = transcripts[name]
        span = tx.span or tx.exon_span  # no span of its own: all its exons are unheld
        if keep(tx.gene, tx.contig, *span):
            wanted.add(name)
            tx.exons.clear()  # all of them again, in file order, from the second pass
        else:
            del transcripts[name]
    if not wanted:
        return
    for line_no, fields in _nine_columns(path, _lines(path)):
        if fields[2] == "exon":
            for name in set(parents_of(fields[8])) & wanted:
                transcripts[name].exons.append((fields[3], fields[4], line_no))


def _gtf_transcript_of(attributes: str) -> list[str]:
    """The transcript_id of a GTF line's attributes, as a list (none: empty)."""
    name = _gtf_attributes(attributes).get("transcript_id")
    return [name] if name is not None else []


def _gff_attributes(text: str) -> dict[str, str]:
    attributes = {}
    for part in text.strip().split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            attributes[key] = value
    return attributes


#: GFF3 feature types that are never a parent in Ensembl / GENCODE / RefSeq files: not kept as features (a
#: GENCODE GFF3 gives every exon, CDS and UTR row an ID; 3 million of them would dominate memory)
_GFF_LEAF_TYPES = {"exon", "CDS", "five_prime_UTR", "three_prime_UTR", "UTR", "start_codon", "stop_codon",
                   "stop_codon_redefined_as_selenocysteine", "intron"}


class _GffFeature(NamedTuple):
    """What a GFF3 feature with an ID contributes to its children: line, type, contig, span, name, parent."""

    line: int
    type: str
    contig: str
    start: int
    end: int
    name: str | None  # Name= (else gene_name=), unquoted
    parent: str  # the first Parent=, unquoted ("" when none)


@dataclass
class _PendingExons:
    """Exons whose parent has not come (yet): held (`exons`) only without `keep`; with it, their span, count
    and the first line of each (contig, strand) they name, enough for the checks and a second pass."""

    keys: dict[tuple[str, str], int] = field(default_factory=dict)  # (contig, strand) -> first line
    exons: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, line), without keep only
    span: tuple[int, int] | None = None
    count: int = 0

    def add(self, line_no: int, contig: str, strand: str, start: int, end: int, hold: bool) -> None:
        self.keys.setdefault((contig, strand), line_no)
        lo, hi = self.span or (start, end)
        self.span, self.count = (min(lo, start), max(hi, end)), self.count + 1
        if hold:
            self.exons.append((start, end, line_no))


def _read_gff3(path: Path, lines: Iterable[str], keep: Keep | None = None) -> pl.DataFrame:
    """Streamed: each ID'd feature is kept as a small `_GffFeature`, exons go to their transcript as they come,
    and with `keep` a transcript refused at its own line (its gene already read, as in Ensembl and GENCODE
    files) is dropped there with its exons, so memory follows the studied transcripts. Exons whose parent
    is not (yet) a transcript wait in `pending` until it comes or the file ends. With `keep`, exons that
    cannot be placed in a studied transcript when read (their parent or its gene not read yet, in unsorted
    files) are not held: the transcripts `keep` accepts at the end get them from a second pass."""
    features: dict[str, _GffFeature] = {}
    transcripts: dict[str, _Transcript] = {}
    pending: dict[str, _PendingExons] = {}
    dropped: dict[str, _Transcript] = {}  # transcripts keep refused at their own line (exons checked, not held)
    undecided: set[str] = set()  # with keep: transcripts read before their gene (held without exons)

    def display_name(feature_id: str) -> str:
        return features[feature_id].name or feature_id

    def gene_of(feature_id: str, parent: str) -> str:
        return display_name(parent) if parent in features else (parent or display_name(feature_id))

    def check(tx: _Transcript, parent: str, line_no: int, contig: str, strand: str) -> None:
        if (tx.contig, tx.strand) != (contig, strand):
            mismatch(tx, parent, line_no)

    def mismatch(tx: _Transcript, parent: str, line_no: int) -> None:
        raise InputError(f"{where(path, line=line_no)}: exon's contig/strand differ from its parent "
                         f"{parent} (line {tx.line})")

    def adopt(tx: _Transcript, parent: str, waiting: _PendingExons | None, hold: bool) -> None:
        """The pending exons of `parent` go to tx: checked (the first that differs raises), then held or
        counted for the second pass."""
        if waiting is None:
            return
        wrong = [line for key, line in waiting.keys.items() if key != (tx.contig, tx.strand)]
        if wrong:  # the first of them in the file, as if each had been checked when read
            mismatch(tx, parent, min(wrong))
        if hold and keep is None:
            tx.exons.extend(waiting.exons)
        elif hold:
            tx.unheld += waiting.count
            lo, hi = tx.exon_span or waiting.span
            tx.exon_span = (min(lo, waiting.span[0]), max(hi, waiting.span[1]))

    for line_no, fields in _nine_columns(path, lines):
        attributes = _gff_attributes(fields[8])
        parent = unquote(attributes.get("Parent", "").split(",")[0])
        if "ID" in attributes and fields[2] not in _GFF_LEAF_TYPES:
            feature_id = unquote(attributes["ID"])
            if feature_id not in features:
                name = attributes.get("Name") or attributes.get("gene_name")
                features[feature_id] = _GffFeature(line_no, fields[2], fields[0], fields[3], fields[4],
                                                   unquote(name) if name else None, parent)
                if fields[2] in _GFF_TRANSCRIPT_TYPES:
                    strand = _strand(fields[6], path, line_no)
                    tx = _Transcript(gene_of(feature_id, parent), fields[0], strand, line_no, (fields[3], fields[4]))
                    decided = keep is not None and (parent in features or not parent)  # its gene name is final
                    if decided and not keep(tx.gene, tx.contig, *tx.span):
                        dropped[feature_id] = tx  # no exons: kept for the contig/strand check of its exons
                        adopt(tx, feature_id, pending.pop(feature_id, None), hold=False)
                    else:
                        transcripts[feature_id] = tx
                        if keep is not None and not decided:
                            undecided.add(feature_id)
                        adopt(tx, feature_id, pending.pop(feature_id, None), hold=True)
        if fields[2] == "exon":
            if "Parent" not in attributes:
                raise InputError(f"{where(path, line=line_no, field='attributes')}: exon has no Parent=")
            strand = _strand(fields[6], path, line_no)
            # each parent once: "Parent=T,T" is one exon of T
            for exon_parent in dict.fromkeys(unquote(p) for p in attributes["Parent"].split(",")):
                if exon_parent in dropped:
                    check(dropped[exon_parent], exon_parent, line_no, fields[0], strand)
                elif exon_parent in transcripts:
                    tx = transcripts[exon_parent]
                    check(tx, exon_parent, line_no, fields[0], strand)
                    if exon_parent in undecided:
                        tx.unheld += 1
                    else:
                        tx.exons.append((fields[3], fields[4], line_no))
                else:
                    pending.setdefault(exon_parent, _PendingExons()).add(
                        line_no, fields[0], strand, fields[3], fields[4], hold=keep is None)
    # exons whose parent never came as a transcript-type feature
    for parent, waiting in pending.items():
        (contig, strand), first_line = next(iter(waiting.keys.items()))
        if parent in features:  # exon hangs off a feature of an unlisted type: treat it as a transcript
            feature = features[parent]
            grand = feature.parent
            gene = display_name(grand) if grand in features else display_name(parent)
            tx = _Transcript(gene, contig, strand, feature.line, (feature.start, feature.end))
        else:
            tx = _Transcript(parent, contig, strand, first_line, None)
        transcripts[parent] = tx
        adopt(tx, parent, waiting, hold=True)
    # gene names resolved now that every feature is read (a gene line after its transcript's, in unsorted files)
    for feature_id, tx in transcripts.items():
        feature = features.get(feature_id)
        if feature is not None and feature.type in _GFF_TRANSCRIPT_TYPES:
            tx.gene = gene_of(feature_id, feature.parent)
    had_any = bool(transcripts or dropped)
    if keep is not None:
        _collect_unheld_exons(path, transcripts, keep, lambda text: (
            unquote(p) for p in _gff_attributes(text).get("Parent", "").split(",")))
    if not transcripts and had_any:  # transcripts there were, none studied
        return pl.DataFrame(schema=SCHEMA)
    return _to_frame({k: v for k, v in transcripts.items() if v.exons or v.span}, path, keep)


# ---------------------------------------------------------------- entry points

def _sniff(path: Path, lines: Iterable[str]) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".bgz"):
        name = name.removesuffix(suffix)
    if name.endswith(".gtf"):
        return "gtf"
    if name.endswith((".gff", ".gff3")):
        return "gff3"
    for raw in lines:
        if raw.startswith("##gff-version"):
            return "gff3" if raw.split()[-1].startswith("3") else "gtf"
        if not raw.strip() or raw.startswith("#"):
            continue
        fields = raw.split("\t")
        if len(fields) == 9 and fields[2] and fields[3].isdigit():
            return "gtf" if 'gene_id "' in fields[8] or 'transcript_id "' in fields[8] else "gff3"
        return "ucsc"
    return "ucsc"


def read_annotation(path: str | Path, fmt: str = "auto", keep: Keep | None = None) -> pl.DataFrame:
    """Read a gene annotation into the tidy table described in the module docstring.

    `fmt` is "ucsc", "gtf", "gff3" or "auto" (by file extension, else by sniffing the content).
    Rows come out per transcript in file order: the transcript row, then its exons by start.
    keep: when given, only the transcripts (and their exons) for which ``keep(gene, contig, start, end)``
    is true (the contig as the file names it, the transcript's 0-based half-open span): the file is
    streamed line by line, so memory follows the parsed transcripts, never the file's text, and the
    table the genes studied.
    """
    path = Path(path)
    if not any(line.strip() for line in _lines(path)):
        raise InputError(f"{path}: annotation file is empty")
    fmt = fmt.lower()
    if fmt == "gff":
        fmt = "gff3"
    if fmt == "auto":
        fmt = _sniff(path, _lines(path))
    readers = {"ucsc": _read_ucsc, "gtf": _read_gtf, "gff3": _read_gff3}
    if fmt not in readers:
        raise InputError(f"annotation format {fmt!r} for {path} is unknown; expected auto, {', '.join(FORMATS)}")
    return readers[fmt](path, _lines(path), keep)


class KeepStudied:
    """A `keep` for `read_annotation`: the transcripts of `genes` (on any contig), and those overlapping one of
    `spans` [(FASTA contig, start, end)] (0-based half-open) once their contig is mapped onto `available`
    (the FASTA's contigs; `resolve_contig` with `aliases`).

    After the read, `contigs_seen` lists the file's contigs asked about and `contigs_matched` those that map
    onto `available`, so a caller can tell an annotation of another naming (no contig matches) from one
    with nothing in the spans.
    """

    def __init__(self, available: Iterable[str], aliases: dict[str, str] | None = None,
                 genes: Iterable[str] = (), spans: Iterable[tuple[str, int, int]] = ()) -> None:
        self.available, self.aliases, self.genes = list(available), aliases, set(genes)
        self._starts: dict[str, list[int]] = {}
        self._ends: dict[str, list[int]] = {}  # running maximum of the ends, per contig, in start order
        for contig, start, end in sorted(spans):
            starts, ends = self._starts.setdefault(contig, []), self._ends.setdefault(contig, [])
            starts.append(start)
            ends.append(max(end, ends[-1]) if ends else end)
        self._resolved: dict[str, str | None] = {}
        self.contigs_seen: list[str] = []
        self.contigs_matched: list[str] = []

    def _fasta_name(self, contig: str) -> str | None:
        if contig not in self._resolved:
            try:
                self._resolved[contig] = resolve_contig(contig, self.available, self.aliases, source="annotation")
                self.contigs_matched.append(contig)
            except InputError:
                check_alias_not_masking(contig, self.available, self.aliases)
                self._resolved[contig] = None
            self.contigs_seen.append(contig)
        return self._resolved[contig]

    def __call__(self, gene: str, contig: str, start: int, end: int) -> bool:
        name = self._fasta_name(contig)
        if gene in self.genes:
            return True
        if name is None or name not in self._starts:
            return False
        # spans starting before `end`; one of them overlaps iff the largest end among them is past `start`
        k = bisect.bisect_left(self._starts[name], end)
        return k > 0 and self._ends[name][k - 1] > start


def to_contigs(
    annotation: pl.DataFrame,
    available: Iterable[str],
    aliases: dict[str, str] | None = None,
    drop_missing: bool = False,
) -> pl.DataFrame:
    """Rename the ``contig`` column to the FASTA's contig names (see `resolve_contig`).

    With ``drop_missing=True`` rows on contigs the FASTA lacks are dropped instead of raising
    (a genome-wide annotation used with a FASTA of a few chromosomes).
    """
    available = list(available)
    mapping: dict[str, str] = {}
    for contig in annotation["contig"].unique(maintain_order=True).to_list():
        try:
            mapping[contig] = resolve_contig(contig, available, aliases, source="annotation")
        except InputError:
            if not drop_missing:
                raise
            check_alias_not_masking(contig, available, aliases)
    renamed = annotation.filter(pl.col("contig").is_in(list(mapping)))
    return renamed.with_columns(pl.col("contig").replace_strict(mapping, return_dtype=pl.String))
