"""Reference genome inputs: FASTA, gene annotations, regions, and labelled windows."""

from interp.genome.annotation import read_annotation, to_contigs
from interp.genome.fasta import ContigSequence, Reference, open_reference, read_fasta, resolve_contig
from interp.genome.regions import Region, gene_regions, read_bed, regions_from_config
from interp.genome.windows import (
    base_labels,
    build_windows,
    heldout_start,
    tile,
    window_label_tracks,
    write_windows,
)

__all__ = [
    "ContigSequence",
    "Reference",
    "open_reference",
    "Region",
    "base_labels",
    "build_windows",
    "gene_regions",
    "heldout_start",
    "read_annotation",
    "read_bed",
    "read_fasta",
    "regions_from_config",
    "resolve_contig",
    "tile",
    "to_contigs",
    "window_label_tracks",
    "write_windows",
]
