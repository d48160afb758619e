# Stage 7: the confound audit, per phenotype x model x layer (interp.audit).

if COHORT:

    rule audit:
        input:
            emb_dirs=expand(f"{R}/cohort/emb/{{model}}", model=MODELS),
            genotypes=f"{R}/cohort/genotypes.h5ad",
            assignments=f"{R}/cohort/haplotypes.parquet",
            sequences=f"{R}/cohort/sequences.parquet",
        output:
            parquet=f"{R}/audit/audit.parquet",
            tsv=f"{R}/audit/audit.tsv",
            details=f"{R}/audit/audit.json",
        params:
            job=job({**config["audit"], "phenotypes": config["cohort"]["phenotypes"],
                     "covariates": config["cohort"]["covariates"],
                     "covariate_missing": config["cohort"]["covariate_missing"],
                     "population_column": config["cohort"]["population_column"],
                     "sae_layer": config["sae"]["layer"],
                     "seed": config["seed"]}),
        log:
            f"{R}/logs/audit.log",
        benchmark:
            f"{R}/benchmarks/audit.tsv"
        threads: THREADS
        resources:
            mem_mb=8000,
            runtime=60,
        conda:
            ENV
        shell:
            "python -m interp.cli stage audit {params.job:q} > {log:q} 2>&1"
