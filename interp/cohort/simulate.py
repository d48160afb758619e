"""Simulated cohorts with a known answer: three human populations, one planted causal SNV.

Demography: the three-population out-of-Africa model of Gutenkunst et al. (2009), "Inferring the
joint demographic history of multiple populations from multidimensional SNP frequency data",
PLoS Genetics 5(10): e1000695, as in stdpopsim's HomSap "OutOfAfrica_3G09" (generation time 25 y,
mutation rate 2.35e-8 and recombination rate 1e-8 per bp per generation).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import msprime
import numpy as np
import polars as pl
import pysam
import tskit

from interp.errors import InputError
from interp.genome.fasta import resolve_contig
from interp.io import write_text_atomic

if TYPE_CHECKING:
    from interp.genome.regions import Region

DEMOGRAPHY_NAME = "OutOfAfrica_3G09"
CITATION = "Gutenkunst et al. 2009, PLoS Genetics 5(10): e1000695 (stdpopsim HomSap OutOfAfrica_3G09)"
_BASES = "ACGT"
MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class OutOfAfrica3G09:
    """Parameters of the model (sizes in diploid individuals, times in generations, rates per gen)."""

    N_A: float = 7300
    N_AF: float = 12300
    N_B: float = 2100
    N_EU0: float = 1000
    N_AS0: float = 510
    r_EU: float = 0.004
    r_AS: float = 0.0055
    generation_time: float = 25
    T_AF: float = 220e3 / 25
    T_B: float = 140e3 / 25
    T_EU_AS: float = 21.2e3 / 25
    m_AF_B: float = 25e-5
    m_AF_EU: float = 3e-5
    m_AF_AS: float = 1.9e-5
    m_EU_AS: float = 9.6e-5
    mutation_rate: float = 2.35e-8
    recombination_rate: float = 1e-8


OUT_OF_AFRICA_3G09 = OutOfAfrica3G09()
POPULATIONS = ("YRI", "CEU", "CHB")


def out_of_africa_demography(p: OutOfAfrica3G09 = OUT_OF_AFRICA_3G09) -> msprime.Demography:
    """msprime.Demography of the model, sampled populations YRI, CEU, CHB.

    Going back in time: CEU and CHB grow exponentially from N_EU0 / N_AS0 (sizes at T_EU_AS) and
    merge at T_EU_AS into the out-of-Africa bottleneck OOA (N_B), which exchanges migrants with
    YRI at m_AF_B and merges with YRI at T_B into AMH (N_AF); before T_AF the ancestral size is N_A.
    """
    n_eu = p.N_EU0 * math.exp(p.r_EU * p.T_EU_AS)
    n_as = p.N_AS0 * math.exp(p.r_AS * p.T_EU_AS)
    demography = msprime.Demography()
    demography.add_population(name="YRI", description="Yoruba in Ibadan, Nigeria", initial_size=p.N_AF)
    demography.add_population(name="CEU", description="Utah residents of European ancestry",
                              initial_size=n_eu, growth_rate=p.r_EU)
    demography.add_population(name="CHB", description="Han Chinese in Beijing", initial_size=n_as,
                              growth_rate=p.r_AS)
    demography.add_population(name="OOA", description="Out-of-Africa bottleneck", initial_size=p.N_B)
    demography.add_population(name="AMH", description="Anatomically modern humans", initial_size=p.N_AF)
    demography.add_population(name="ANC", description="Ancestral equilibrium population", initial_size=p.N_A)
    demography.set_symmetric_migration_rate(["YRI", "CEU"], p.m_AF_EU)
    demography.set_symmetric_migration_rate(["YRI", "CHB"], p.m_AF_AS)
    demography.set_symmetric_migration_rate(["CEU", "CHB"], p.m_EU_AS)
    demography.add_population_split(time=p.T_EU_AS, derived=["CEU", "CHB"], ancestral="OOA")
    demography.add_symmetric_migration_rate_change(time=p.T_EU_AS, populations=["YRI", "OOA"], rate=p.m_AF_B)
    demography.add_population_split(time=p.T_B, derived=["YRI", "OOA"], ancestral="AMH")
    demography.add_population_split(time=p.T_AF, derived=["AMH"], ancestral="ANC")
    demography.sort_events()
    return demography


# ---------------------------------------------------------------- configuration


_DEFAULT_PHENOTYPES = {
    "causal": {"effect": 1.5, "freq_range": [0.2, 0.5], "gene": "DOC2B", "max_r2": 0.8},
    "confounded": {"prevalence": {"YRI": 0.75, "CEU": 0.25, "CHB": 0.5}},
    "null": {"prevalence": 0.5},
}


def _phenotype_config(phenotypes: dict | None, populations: dict[str, int]) -> dict:
    config = {name: dict(values) for name, values in _DEFAULT_PHENOTYPES.items()}
    for name, values in (phenotypes or {}).items():
        if name not in config:
            raise InputError(f"simulation.phenotypes: unknown phenotype '{name}' (expected causal, confounded, "
                             "null)")
        config[name].update(values or {})
    low, high = (float(x) for x in config["causal"]["freq_range"])
    if not 0 < low < high < 1:
        raise InputError(f"simulation.phenotypes.causal.freq_range {[low, high]}: expected 0 < low < high < 1")
    prevalence = config["confounded"]["prevalence"]
    for population in populations:
        if population not in prevalence:
            raise InputError(f"simulation.phenotypes.confounded.prevalence has no entry for '{population}'")
        if not 0 <= float(prevalence[population]) <= 1:
            raise InputError(f"simulation.phenotypes.confounded.prevalence.{population}: expected 0..1")
    return config


def _check_populations(populations: dict[str, int]) -> None:
    for name, size in populations.items():
        if name not in POPULATIONS:
            raise InputError(f"simulation.populations: '{name}' is not in {DEMOGRAPHY_NAME} "
                             f"({', '.join(POPULATIONS)})")
        if int(size) < 2:
            raise InputError(f"simulation.populations.{name}: need at least 2 individuals, got {size}")


def _seeds(seed: int | list[int], n: int) -> list[int]:
    """n independent seeds in msprime's accepted range, derived from one user seed."""
    state = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)
    return [int(s % (2**31 - 2)) + 1 for s in state]


# ---------------------------------------------------------------- causal site


def _exon_intervals(annotation: pl.DataFrame, gene: str, region: Region) -> list[tuple[int, int, str]]:
    """Exons of `gene` clipped to `region`, as (start, end, transcript) 0-based region-relative, merged."""
    rows = annotation.filter((pl.col("gene") == gene) & (pl.col("feature") == "exon"))
    exons = []
    for row in rows.iter_rows(named=True):
        try:
            contig = resolve_contig(row["contig"], [region.contig], source="annotation")
        except InputError:
            continue
        start, end = max(row["start"], region.start), min(row["end"], region.end)
        if contig == region.contig and start < end:
            exons.append((start - region.start, end - region.start, row["transcript"]))
    if not exons:
        raise InputError(f"simulation: gene '{gene}' has no exon inside region {region.name} "
                         f"({region.contig}:{region.start}-{region.end})")
    return sorted(set(exons))


def _population_counts(tree: tskit.Tree, sample_pop: np.ndarray, n_pops: int) -> np.ndarray:
    """[num_nodes, n_pops] number of sample haplotypes of each population below each node."""
    counts = np.zeros((tree.tree_sequence.num_nodes, n_pops), dtype=np.int64)
    for node in tree.nodes(order="postorder"):
        if sample_pop[node] >= 0:
            counts[node, sample_pop[node]] += 1
        for child in tree.children(node):
            counts[node] += counts[child]
    return counts


def _dosage_from_haplotypes(haplotypes: np.ndarray, individual_nodes: np.ndarray) -> np.ndarray:
    """[..., n_individuals] dosage from [..., n_sample_nodes] 0/1 haplotypes (node order = ts.samples())."""
    return haplotypes[..., individual_nodes[:, 0]] + haplotypes[..., individual_nodes[:, 1]]


def _max_r2(vector: np.ndarray, dosages: np.ndarray) -> float:
    """Largest squared Pearson correlation of `vector` [n] with any row of `dosages` [m, n]."""
    if dosages.shape[0] == 0:
        return 0.0
    x = vector - vector.mean()
    y = dosages - dosages.mean(axis=1, keepdims=True)
    denominator = np.sqrt((x**2).sum() * (y**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (y @ x) / denominator
    return float(np.nanmax(r**2)) if np.isfinite(r).any() else 0.0


def _plant_causal(ts: tskit.TreeSequence, ref_seq: str, exons, freq_range, max_r2: float,
                  sample_pop: np.ndarray, pop_sizes: np.ndarray, individual_nodes: np.ndarray,
                  rng: np.random.Generator):
    """(position, node, frequencies, r2, node time, parent time) for the causal mutation, or None.

    Trees overlapping an exon are visited in random order; in each, branches whose derived
    frequency is in freq_range in every population are tried in random order, and the first whose
    dosage has r^2 < max_r2 with every existing variant wins; its position is a random free,
    non-N exon base under that tree.
    """
    low, high = freq_range
    taken = {int(s.position) for s in ts.sites()}
    exon_positions = np.array(sorted({p for start, end, _ in exons for p in range(start, end)
                                      if p not in taken and ref_seq[p].upper() in _BASES}), dtype=np.int64)
    other = _dosage_from_haplotypes(ts.genotype_matrix().astype(np.float64), individual_nodes)
    sample_nodes = ts.samples()
    candidates = []
    for tree in ts.trees():
        inside = exon_positions[(exon_positions >= tree.interval.left) & (exon_positions < tree.interval.right)]
        if inside.size:
            candidates.append((tree.index, inside))
    tree = ts.first()
    for k in rng.permutation(len(candidates)):
        tree_index, inside = candidates[k]
        tree.seek_index(tree_index)
        counts = _population_counts(tree, sample_pop, len(pop_sizes))
        freqs = counts / (2 * pop_sizes)
        ok = [int(u) for u in np.flatnonzero(((freqs >= low) & (freqs <= high)).all(axis=1))
              if tree.parent(int(u)) != tskit.NULL]
        for node in (rng.permutation(ok) if ok else []):
            haplotypes = np.zeros(ts.num_samples, dtype=np.float64)
            below = np.fromiter(tree.samples(int(node)), dtype=np.int64)
            haplotypes[np.searchsorted(sample_nodes, below)] = 1
            r2 = _max_r2(_dosage_from_haplotypes(haplotypes, individual_nodes), other)
            if r2 < max_r2:
                position = int(inside[rng.integers(len(inside))])
                return (position, int(node), freqs[node], r2, tree.time(int(node)),
                        tree.time(tree.parent(int(node))))
    return None


def _add_mutation(ts: tskit.TreeSequence, position: int, node: int, time: float) -> tskit.TreeSequence:
    tables = ts.dump_tables()
    site = tables.sites.add_row(position=position, ancestral_state="0")
    tables.mutations.add_row(site=site, node=node, derived_state="1", time=time)
    tables.sort()
    tables.build_index()
    tables.compute_mutation_parents()
    return tables.tree_sequence()


# ---------------------------------------------------------------- writing


def _write_vcf(path: Path, contig: str, contig_length: int, sample_ids: list[str], positions: list[int],
               refs: list[str], alts: list[str], haplotypes: np.ndarray, individual_nodes: np.ndarray,
               seed: int) -> None:
    """bgzipped + tabix-indexed VCFv4.2 with phased GTs; haplotypes [n_sites, n_sample_nodes] 0/1."""
    header = pysam.VariantHeader()
    header.add_line(f"##source=interp.cohort.simulate {DEMOGRAPHY_NAME} seed={seed}")
    header.add_line(f"##contig=<ID={contig},length={contig_length}>")
    header.add_line('##FORMAT=<ID=GT,Number=1,Type=String,Description="Phased genotype">')
    for sample in sample_ids:
        header.add_sample(sample)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.vcf.gz")
    tmp_index = Path(str(tmp) + ".tbi")
    try:
        with pysam.VariantFile(str(tmp), "wz", header=header) as out:
            for k, pos in enumerate(positions):
                record = out.new_record(contig=contig, start=pos - 1, alleles=(refs[k], alts[k]))
                for i, sample in enumerate(sample_ids):
                    a, b = individual_nodes[i]
                    record.samples[sample]["GT"] = (int(haplotypes[k, a]), int(haplotypes[k, b]))
                    record.samples[sample].phased = True
                out.write(record)
        pysam.tabix_index(str(tmp), preset="vcf", force=True, index=str(tmp_index))
        os.replace(tmp, path)
        os.replace(tmp_index, str(path) + ".tbi")
    finally:
        tmp.unlink(missing_ok=True)
        tmp_index.unlink(missing_ok=True)


def _simulate_region(populations: dict[str, int], length: int, ref_seq: str, params: OutOfAfrica3G09,
                     entropy: list[int]) -> tskit.TreeSequence:
    """Ancestry + mutations over `length` bp; keeps sites with one mutation on a non-N base."""
    ancestry_seed, mutation_seed = _seeds(entropy, 2)
    ts = msprime.sim_ancestry(
        samples={name: int(n) for name, n in populations.items()}, demography=out_of_africa_demography(params),
        sequence_length=length, recombination_rate=params.recombination_rate, random_seed=ancestry_seed,
        ploidy=2,
    )
    ts = msprime.sim_mutations(ts, rate=params.mutation_rate, random_seed=mutation_seed)
    drop = [s.id for s in ts.sites() if len(s.mutations) != 1 or ref_seq[int(s.position)].upper() not in _BASES]
    return ts.delete_sites(drop)


def _sample_layout(ts: tskit.TreeSequence, populations: dict[str, int]):
    """Individuals in population order named like YRI_0001.

    Returns sample_ids [n], their populations [n], individual_nodes [n, 2] (columns of
    ts.genotype_matrix()), and sample_pop [num_nodes] (population index of sample nodes, else -1).
    """
    pop_names = [ts.population(i).metadata["name"] for i in range(ts.num_populations)]
    order = list(populations)
    individuals = sorted(ts.individuals(),
                         key=lambda ind: (order.index(pop_names[ts.node(ind.nodes[0]).population]), ind.id))
    column = {int(u): k for k, u in enumerate(ts.samples())}
    individual_nodes = np.array([[column[int(u)] for u in ind.nodes] for ind in individuals])
    sample_ids, sample_population, counters = [], [], dict.fromkeys(populations, 0)
    for ind in individuals:
        name = pop_names[ts.node(ind.nodes[0]).population]
        counters[name] += 1
        sample_population.append(name)
        sample_ids.append(f"{name}_{counters[name]:04d}")
    sample_pop = np.full(ts.num_nodes, -1, dtype=np.int64)
    for u in ts.samples():
        sample_pop[u] = order.index(pop_names[ts.node(u).population])
    return sample_ids, sample_population, individual_nodes, sample_pop


# ---------------------------------------------------------------- main entry


def simulate_cohort(
    fasta: dict[str, str],
    annotation: pl.DataFrame,
    region: Region,
    populations: dict[str, int],
    seed: int,
    phenotypes: dict | None,
    out_vcf: str | Path,
    out_samples: str | Path,
    out_truth: str | Path,
) -> dict:
    """Simulate a phased cohort over `region` and write VCF (+ .tbi), samples.tsv and truth.json.

    populations: diploid individuals per population, e.g. {"YRI": 60, "CEU": 60, "CHB": 60}.
    phenotypes: overrides of {"causal": {effect, freq_range, gene, max_r2}, "confounded":
        {prevalence: {pop: p}}, "null": {prevalence}}; None uses the defaults.
    REF is the reference base (upper case) at each site, ALT a different base drawn with the seed;
    sites at N and sites hit by more than one mutation are dropped. One causal SNV is planted in an
    exon of the causal gene on a branch whose derived frequency lies in freq_range in every
    population and whose dosage has r^2 < max_r2 with every other variant.
    Returns the truth dict (also written to `out_truth`). Same inputs + seed => identical outputs.
    """
    _check_populations(populations)
    config = _phenotype_config(phenotypes, populations)
    if region.contig not in fasta:
        raise InputError(f"simulation region {region.name}: contig '{region.contig}' is not in the FASTA")
    ref_seq = fasta[region.contig][region.start:region.end]
    exons = _exon_intervals(annotation, config["causal"]["gene"], region)
    rng = np.random.default_rng(_seeds(seed, 1)[0])
    params = OUT_OF_AFRICA_3G09
    causal_cfg = config["causal"]
    pop_sizes = np.array([int(n) for n in populations.values()], dtype=np.float64)
    planted = None
    for attempt in range(MAX_ATTEMPTS):
        # a short region has few genealogies; when none has a qualifying branch, simulate again
        ts = _simulate_region(populations, region.end - region.start, ref_seq, params, [seed, attempt])
        sample_ids, sample_population, individual_nodes, sample_pop = _sample_layout(ts, populations)
        planted = _plant_causal(ts, ref_seq, exons, [float(x) for x in causal_cfg["freq_range"]],
                                float(causal_cfg["max_r2"]), sample_pop, pop_sizes, individual_nodes, rng)
        if planted is not None:
            break
    if planted is None:
        raise InputError(
            f"simulation: in {MAX_ATTEMPTS} simulations no branch gave a causal variant with frequency in "
            f"{list(causal_cfg['freq_range'])} in every population and r^2 < {causal_cfg['max_r2']} with all "
            "other variants; try another seed, a wider freq_range or more individuals"
        )
    position, node, freqs, r2, t_node, t_parent = planted
    pop_index = {name: k for k, name in enumerate(populations)}
    ts = _add_mutation(ts, position, node, (t_node + t_parent) / 2)

    haplotypes = ts.genotype_matrix()  # [n_sites, n_sample_nodes], 0 ancestral (REF), 1 derived (ALT)
    positions = [region.start + int(s.position) + 1 for s in ts.sites()]
    refs = [ref_seq[int(s.position)].upper() for s in ts.sites()]
    alts = [str(rng.choice([b for b in _BASES if b != r])) for r in refs]
    causal_index = int(np.flatnonzero(np.array([int(s.position) for s in ts.sites()]) == position)[0])

    # phenotypes and covariates
    n = len(sample_ids)
    dosage = _dosage_from_haplotypes(haplotypes[causal_index].astype(np.float64), individual_nodes)
    standardised = (dosage - dosage.mean()) / dosage.std()
    liability = float(causal_cfg["effect"]) * standardised + rng.normal(size=n)
    causal = (liability > np.median(liability)).astype(np.int64)
    prevalence = {p: float(config["confounded"]["prevalence"][p]) for p in populations}
    confounded = (rng.random(n) < np.array([prevalence[p] for p in sample_population])).astype(np.int64)
    null = (rng.random(n) < float(config["null"]["prevalence"])).astype(np.int64)
    sex = rng.integers(0, 2, size=n)
    batch = rng.integers(0, 2, size=n)
    samples = pl.DataFrame({"sample_id": sample_ids, "population": sample_population, "causal": causal,
                            "confounded": confounded, "null": null, "sex": sex, "batch": batch})

    exon_start, exon_end, transcript = next((s, e, t) for s, e, t in exons if s <= position < e)
    truth = {
        "seed": int(seed),
        "simulation_attempt": attempt,
        "demography": {"name": DEMOGRAPHY_NAME, "citation": CITATION, "parameters": asdict(params)},
        "region": {"name": region.name, "contig": region.contig, "start": region.start, "end": region.end},
        "populations": {p: int(k) for p, k in populations.items()},
        "causal_variant": {
            "contig": region.contig, "pos": positions[causal_index], "ref": refs[causal_index],
            "alt": alts[causal_index],
            "exon": {"gene": causal_cfg["gene"], "transcript": transcript, "start": region.start + exon_start,
                     "end": region.start + exon_end},
            "freq": {p: float(freqs[k]) for p, k in pop_index.items()},
            "max_r2_with_other_variants": r2,
        },
        "effects": {"causal": float(causal_cfg["effect"])},
        "freq_range": [float(x) for x in causal_cfg["freq_range"]],
        "prevalences": {"confounded": prevalence, "null": float(config["null"]["prevalence"])},
        "n_variants": len(positions),
        "n_samples": n,
    }

    out_vcf, out_samples, out_truth = Path(out_vcf), Path(out_samples), Path(out_truth)
    for path in (out_vcf, out_samples, out_truth):
        path.parent.mkdir(parents=True, exist_ok=True)
    _write_vcf(out_vcf, region.contig, len(fasta[region.contig]), sample_ids, positions, refs, alts,
               haplotypes, individual_nodes, seed)
    tmp = out_samples.with_name(f".{out_samples.name}.{os.getpid()}.tmp")
    samples.write_csv(tmp, separator="\t")
    os.replace(tmp, out_samples)
    write_text_atomic(out_truth, json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return truth


# ---------------------------------------------------------------- ancestry panel

PANEL_CONTIG = "ancestry_panel"


def simulate_ancestry_panel(populations: dict[str, int], seed: int, n_loci: int, locus_length: int,
                            out_vcf: str | Path, params: OutOfAfrica3G09 = OUT_OF_AFRICA_3G09) -> dict:
    """Unlinked neutral loci of the same individuals, for genome-wide-like ancestry PCs.

    Ancestry PCs computed from the one region under study would absorb the region's own
    (possibly causal) variation; real studies take PCs from genome-wide markers. This simulates
    `n_loci` independent loci of `locus_length` bp (recombination rate 0.5 between loci) under the
    same demography and sample layout (IDs like YRI_0001 in population order, as `simulate_cohort`
    names them), and writes their biallelic SNVs to a bgzipped, indexed VCF on a synthetic contig
    `ancestry_panel` (alleles drawn by msprime's JC69 model; no reference FASTA is involved).
    Returns {n_loci, locus_length, n_variants}.
    """
    _check_populations(populations)
    ancestry_seed, mutation_seed = _seeds([int(seed), 0xA9CE], 2)
    # independent replicates are independent loci; far cheaper than one simulation with free
    # recombination between loci
    replicates = msprime.sim_ancestry(samples={name: int(n) for name, n in populations.items()},
                                      demography=out_of_africa_demography(params), sequence_length=locus_length,
                                      recombination_rate=params.recombination_rate, random_seed=ancestry_seed,
                                      ploidy=2, num_replicates=n_loci)
    sample_ids, individual_nodes = None, None
    positions, refs, alts, blocks = [], [], [], []
    for i, ts in enumerate(replicates):
        ts = msprime.sim_mutations(ts, rate=params.mutation_rate, random_seed=mutation_seed + i)
        ts = ts.delete_sites([s.id for s in ts.sites() if len(s.mutations) != 1])
        if sample_ids is None:
            sample_ids, _, individual_nodes, _ = _sample_layout(ts, populations)
        for v in ts.variants():
            positions.append(i * locus_length + int(v.site.position) + 1)
            refs.append(v.alleles[0])
            alts.append(v.alleles[1])
        if ts.num_sites:
            blocks.append(ts.genotype_matrix())
    haplotypes = np.concatenate(blocks) if blocks else np.zeros((0, 2 * len(sample_ids)), dtype=np.int8)
    _write_vcf_text(Path(out_vcf), PANEL_CONTIG, n_loci * locus_length, sample_ids, positions, refs, alts,
                    haplotypes, individual_nodes, seed)
    return {"n_loci": n_loci, "locus_length": locus_length, "n_variants": len(positions)}


def _write_vcf_text(path: Path, contig: str, contig_length: int, sample_ids: list[str], positions: list[int],
                    refs: list[str], alts: list[str], haplotypes: np.ndarray, individual_nodes: np.ndarray,
                    seed: int) -> None:
    """Like `_write_vcf`, built as text (thousands of sites x hundreds of samples), then bgzip + tabix."""
    lines = ["##fileformat=VCFv4.2", f"##source=interp.cohort.simulate ancestry panel seed={seed}",
             f"##contig=<ID={contig},length={contig_length}>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Phased genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *sample_ids])]
    a = haplotypes[:, individual_nodes[:, 0]].astype(str)
    b = haplotypes[:, individual_nodes[:, 1]].astype(str)
    gts = np.char.add(np.char.add(a, "|"), b)
    for k, pos in enumerate(positions):
        lines.append("\t".join([contig, str(pos), ".", refs[k], alts[k], ".", "PASS", ".", "GT", *gts[k]]))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.vcf")
    gz = Path(str(tmp) + ".gz")
    try:
        tmp.write_text("\n".join(lines) + "\n")
        pysam.tabix_compress(str(tmp), str(gz), force=True)
        pysam.tabix_index(str(gz), preset="vcf", force=True)
        os.replace(gz, path)
        os.replace(str(gz) + ".tbi", str(path) + ".tbi")
    finally:
        for f in (tmp, gz, Path(str(gz) + ".tbi")):
            f.unlink(missing_ok=True)
