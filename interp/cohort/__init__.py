"""Cohorts: VCF + samples validation, haplotype sequences, genotype PCA, simulated cohorts.

Modules: `vcf` (reading and checks), `haplotypes` (bcftools-consensus-compatible haplotypes and
reference-coordinate windows), `ancestry` (plink2-style genotype PCA, UMAP, Leiden), `simulate`
(out-of-Africa cohorts with a planted causal variant).
"""
