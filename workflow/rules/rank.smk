# Stage 8: candidate biomarkers, adjusted for ancestry PCs and covariates (interp.rank).

if COHORT:

    rule rank:
        input:
            emb_dirs=expand(f"{R}/cohort/emb/{{model}}", model=MODELS),
            genotypes=f"{R}/cohort/genotypes.h5ad",
            # the checked cohort: under --keep-going a failed check_cohort must not leave a ranking written
            validation=f"{R}/cohort/validation.json",
            **({"annotation": config["reference"]["annotation"]} if config["reference"]["annotation"] else {}),
            fasta=config["reference"]["fasta"],
            **({"variant_effect": expand(f"{R}/cohort/variant_effect/{{model}}.parquet", model=MODELS)}
               if config["rank"]["variant_effect"] else {}),
        output:
            parquet=f"{R}/rank/biomarkers.parquet",
            tsv=f"{R}/rank/biomarkers.tsv",
            summary=f"{R}/rank/summary.json",
        params:
            # rank.report_top is the report's (how many rows it shows): a change to it must not rerun rank
            **rule_params({"rank": {k: v for k, v in config["rank"].items() if k != "report_top"},
                     "phenotypes": config["cohort"]["phenotypes"],
                     "covariates": config["cohort"]["covariates"],
                     "covariate_missing": config["cohort"].get("covariate_missing", "refuse"),
                     "categorical_covariates": config["cohort"]["categorical_covariates"],
                     "reference": config["reference"], "seed": config["seed"]}),
        log:
            log_path("rank"),
        benchmark:
            bench_path("rank")
        threads: THREADS
        resources:
            **scaled("rank"),
        conda:
            ENV
        shell:
            stage_shell("rank")
