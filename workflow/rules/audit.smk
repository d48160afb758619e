# Stage 7: the confound audit, per phenotype x model x layer (interp.audit).

if COHORT:

    rule audit:
        input:
            emb_dirs=expand(f"{R}/cohort/emb/{{model}}", model=MODELS),
            genotypes=f"{R}/cohort/genotypes.h5ad",
            assignments=f"{R}/cohort/haplotypes.parquet",
            # the checked cohort: under --keep-going a failed check_cohort must not leave a verdict written
            validation=f"{R}/cohort/validation.json",
        output:
            parquet=f"{R}/audit/audit.parquet",
            tsv=f"{R}/audit/audit.tsv",
            details=f"{R}/audit/audit.json",
        params:
            **rule_params({"audit": config["audit"], "phenotypes": config["cohort"]["phenotypes"],
                     "covariates": config["cohort"]["covariates"],
                     "covariate_missing": config["cohort"]["covariate_missing"],
                     "categorical_covariates": config["cohort"]["categorical_covariates"],
                     "population_column": config["cohort"]["population_column"],
                     "sae_layer": config["sae"]["layer"],
                     "seed": config["seed"]}),
        log:
            log_path("audit"),
        benchmark:
            bench_path("audit")
        threads: THREADS
        resources:
            **scaled("audit_by_region" if config["audit"]["by_region"] else "audit"),
        conda:
            ENV
        shell:
            stage_shell("audit")
