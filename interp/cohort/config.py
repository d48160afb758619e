"""Settings of the cohort stages: the `cohort` config section as a dataclass.

The defaults are those of the `cohort` section of `workflow/schemas/config.schema.yaml`
(`tests/test_config_defaults.py` keeps them equal); a key the schema gives no default (vcf, samples, bed,
ancestry_vcf) is optional and None when absent. The stages build it from the whole section with
`interp.config.settings_from_section(CohortConfig, params["cohort"], ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CohortConfig:
    """Where the cohort comes from (simulated or a VCF), which regions and windows, and its ancestry PCs."""

    enabled: bool = False
    """run the cohort part (audit, rank) at all."""
    source: str = "simulate"
    """simulate (msprime, `simulate`) or vcf (the user's `vcf` and `samples`)."""
    vcf: str | None = None
    """bgzipped VCF (source: vcf)."""
    samples: str | None = None
    """samples.tsv: sample_id, phenotypes, covariates, population (source: vcf)."""
    ancestry_vcf: str | None = None
    """genome-wide markers for the ancestry PCs (None: the studied regions' own variants)."""
    ancestry_exclude_flank: int = 500_000
    """markers of ancestry_vcf within this many bases of a studied region are left out of the PCs (the regions'
    own variants and those in LD with them)."""
    genes: list[str] = field(default_factory=list)
    """genes of the gene table (reference.annotation) whose spans are studied."""
    bed: str | None = None
    """BED file of further studied regions."""
    flank: int = 0
    """bases added on each side of every gene."""
    window: dict = field(default_factory=dict)
    """haplotype windows {width, stride}: a dict with its own schema (`cohort.window`), whose defaults
    check_config fills in."""
    populations: dict[str, int] = field(default_factory=lambda: {"YRI": 60, "CEU": 60, "CHB": 60})
    """simulated samples per population."""
    phenotypes: list[str] = field(default_factory=lambda: ["causal", "confounded", "null"])
    """binary phenotype columns of samples.tsv that are audited and ranked."""
    covariates: list[str] = field(default_factory=list)
    """covariate columns of samples.tsv."""
    covariate_missing: str = "refuse"
    """refuse or impute missing covariate values."""
    categorical_covariates: list[str] = field(default_factory=list)
    """covariates one-hot encoded even when every value is a number (category codes: a batch 1/2/3)."""
    population_column: str | None = "population"
    """population label column of samples.tsv (None: no labels; strata from ancestry PCs)."""
    missing: str = "ref"
    """a missing genotype (copy) becomes the reference base (ref) or N; under ref an unphased './1' reads as '0/1'."""
    unphased: str = "ref"
    """an unphased heterozygous genotype, half-missing './1' included, becomes the reference base (ref) or N on both
    haplotypes (`interp.cohort.haplotypes`)."""
    keep_haplotypes: bool = False
    """also keep each haplotype's mean embedding (obsm hap1 / hap2 of the per-sample tables)."""
    shard_genes: int = 0
    """regions (genes, then BED records) per haplotypes / embedding job; 0: one job for all."""
    maf: float = 0.05
    """minor allele frequency below which variants are left out of the ancestry PCs."""
    n_pcs: int = 5
    """genotype principal components."""
    simulate: dict = field(default_factory=dict)
    """settings of the simulated cohort (demography, labels, case_fraction, causal, confounded, null,
    ancestry_panel): a nested dict with its own schema (`cohort.simulate`), whose defaults check_config fills
    in, read by `interp.cohort.simulate`."""



#: cohort keys a cohort rule's settings leave out because its stage never reads them, so that changing one
#: (Snakemake's params trigger) reruns only the rules that do: the shard size only plans jobs; maf, n_pcs and
#: ancestry_exclude_flank are read by ancestry alone, keep_haplotypes by embed_cohort alone (cohort_embed_params).
#: "check": check_cohort (the samples sheet, phenotypes and covariates included); "ancestry": ancestry.
#: the populations each simulated demography has (`cohort.simulate.demography` -> names `cohort.populations` may
#: use); the simulation builds its models with these names (interp.cohort.simulate)
DEMOGRAPHY_POPULATIONS: dict[str, tuple[str, ...]] = {
    "OutOfAfrica_3G09": ("YRI", "CEU", "CHB"),
    "AmericanAdmixture_4B18": ("AFR", "EUR", "ASIA", "ADMIX"),
}

NOT_READ_BY = {
    "check": ("shard_genes", "maf", "n_pcs", "ancestry_exclude_flank", "keep_haplotypes"),
    "ancestry": ("shard_genes", "keep_haplotypes"),
}

#: the only cohort keys these rules read; the rest never reaches their settings, so adding a phenotype or a
#: covariate (or a new samples.tsv column) does not re-simulate the cohort, re-place the VCF or rebuild and
#: re-embed every haplotype shard. "simulate": simulate_cohort (its regions and simulation); "place":
#: place_cohort (the VCF placed, the regions resolved); "haplotypes": haplotypes_shard (regions come from
#: place_cohort's regions.parquet, sample IDs from samples.tsv). The stage reading a key left out is an error
#: (`OnlyRead`), never a silent default.
READ_BY = {
    "simulate": ("genes", "flank", "populations", "simulate"),
    "place": ("genes", "flank"),
    "haplotypes": ("window", "missing", "unphased"),
}


def cohort_rule_settings(section: dict, rules: str) -> dict:
    """The `cohort` section as the `rules` of NOT_READ_BY or READ_BY get it, with only the keys they read:
    changing cohort.n_pcs once re-simulated the cohort, re-checked the VCF and rebuilt and re-embedded every
    haplotype shard; adding a phenotype still did. The stages fill the keys left out with CohortConfig's defaults,
    which they do not read (`OnlyRead` makes sure of it for READ_BY)."""
    if rules in READ_BY:
        return {k: v for k, v in section.items() if k in READ_BY[rules]}
    return {k: v for k, v in section.items() if k not in NOT_READ_BY[rules]}


class OnlyRead:
    """A CohortConfig that lets a stage read only `keys`: reading another field raises (a programming error:
    the rule's settings left that key out, so a change of it would not rerun the rule, and the stage would
    silently see the default)."""

    def __init__(self, cfg: CohortConfig, keys: tuple[str, ...] | list[str], rules: str) -> None:
        self._cfg, self._keys, self._rules = cfg, frozenset(keys), rules

    def __getattr__(self, name: str):
        if name in CohortConfig.__dataclass_fields__ and name not in self._keys:
            raise AttributeError(f"cohort.{name} is not among the settings of the {self._rules!r} cohort rules "
                                 "(interp.cohort.config.READ_BY): add it there so that changing it reruns them")
        return getattr(self._cfg, name)


def causal_gene(simulate: dict, genes: list[str]) -> str | None:
    """The gene in whose exons a simulated cohort's causal SNV is planted: `cohort.simulate.causal.gene`, else the
    first of cohort.genes (the simulation reads the annotation of cohort.genes only); None when both are empty
    (regions from a BED: the first annotated gene with an exon in them). InputError naming the key when it is none
    of cohort.genes."""
    from interp.errors import InputError

    gene = (simulate.get("causal") or {}).get("gene")
    if gene is None:
        return genes[0] if genes else None
    if genes and gene not in genes:
        raise InputError(f"cohort.simulate.causal.gene: {gene!r} is not one of cohort.genes ({', '.join(genes)}); "
                         "the simulation reads those genes' annotation only")
    return gene
