# Stage 6: a cohort: simulated (msprime) or the user's VCF; validation, haplotypes, genotype PCs,
# and embeddings of every distinct haplotype window (interp.cohort, interp.embed).

if COHORT:
    SAE_LAYER = config["sae"]["layer"]

    COHORT_VCF = config_cohort_vcf()
    COHORT_SAMPLES = config_cohort_samples()

    if config["cohort"]["source"] == "simulate":

        rule simulate_cohort:
            input:
                fasta=config["reference"]["fasta"],
                annotation=config["reference"]["annotation"],
            output:
                vcf=COHORT_VCF,
                tbi=f"{COHORT_VCF}.tbi",
                samples=COHORT_SAMPLES,
                truth=f"{R}/cohort/input/truth.json",
                **(
                    {"panel": f"{R}/cohort/input/ancestry_panel.vcf.gz",
                     "panel_tbi": f"{R}/cohort/input/ancestry_panel.vcf.gz.tbi"}
                    if config["cohort"]["simulate"]["ancestry_panel"]["loci"] > 0 else {}
                ),
            params:
                job=job({"reference": config["reference"], "cohort": config["cohort"],
                         "seed": config["seed"]}),
            log:
                f"{R}/logs/simulate_cohort.log",
            benchmark:
                f"{R}/benchmarks/simulate_cohort.tsv"
            threads: 1
            resources:
                mem_mb=2000,
                runtime=10,
            conda:
                ENV
            shell:
                "python -m interp.cli stage simulate_cohort {params.job:q} > {log:q} 2>&1"

    COHORT_REF = {
        "fasta": config["reference"]["fasta"],
        **({"annotation": config["reference"]["annotation"]} if config["reference"]["annotation"] else {}),
        **({"bed": config["cohort"]["bed"]} if config["cohort"].get("bed") else {}),
    }
    COHORT_PARAMS = {"reference": config["reference"], "cohort": config["cohort"],
                     "n_folds": config["audit"]["n_folds"], "seed": config["seed"]}

    rule check_cohort:
        input:
            **COHORT_REF,
            **config_ancestry_vcf(),
            vcf=COHORT_VCF,
            samples=COHORT_SAMPLES,
        output:
            summary=f"{R}/cohort/validation.json",
            vcf=f"{R}/cohort/cohort.vcf.gz",
            tbi=f"{R}/cohort/cohort.vcf.gz.tbi",
        params:
            job=job(COHORT_PARAMS),
        log:
            f"{R}/logs/check_cohort.log",
        benchmark:
            f"{R}/benchmarks/check_cohort.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            ENV
        shell:
            "python -m interp.cli stage check_cohort {params.job:q} > {log:q} 2>&1"

    rule haplotypes:
        input:
            **COHORT_REF,
            vcf=f"{R}/cohort/cohort.vcf.gz",
            samples=COHORT_SAMPLES,
        output:
            assignments=f"{R}/cohort/haplotypes.parquet",
            sequences=f"{R}/cohort/sequences.parquet",
            stats=f"{R}/cohort/haplotypes.stats.json",
        params:
            job=job(COHORT_PARAMS),
        log:
            f"{R}/logs/haplotypes.log",
        benchmark:
            f"{R}/benchmarks/haplotypes.tsv"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=20,
        conda:
            ENV
        shell:
            "python -m interp.cli stage haplotypes {params.job:q} > {log:q} 2>&1"

    rule ancestry:
        input:
            **COHORT_REF,
            **config_ancestry_vcf(),
            vcf=f"{R}/cohort/cohort.vcf.gz",
            samples=COHORT_SAMPLES,
        output:
            genotypes=f"{R}/cohort/genotypes.h5ad",
        params:
            job=job(COHORT_PARAMS),
        log:
            f"{R}/logs/ancestry.log",
        benchmark:
            f"{R}/benchmarks/ancestry.tsv"
        threads: THREADS
        resources:
            mem_mb=4000,
            runtime=20,
        conda:
            ENV
        shell:
            "python -m interp.cli stage ancestry {params.job:q} > {log:q} 2>&1"

    rule embed_cohort:
        input:
            unpack(lambda wc: checkpoint_input(wc.model)),
            card="models/{model}.yaml",
            sequences=f"{R}/cohort/sequences.parquet",
            assignments=f"{R}/cohort/haplotypes.parquet",
            genotypes=f"{R}/cohort/genotypes.h5ad",
            sae=f"{R}/sae/{{model}}/{SAE_LAYER}/weights.safetensors",
        output:
            out_dir=directory(f"{R}/cohort/emb/{{model}}"),
            stats=f"{R}/cohort/emb/{{model}}.stats.json",
        params:
            job=job(lambda wc: {"layers": model_layers(wc.model), "sae_layer": SAE_LAYER,
                                "batch_size": config["embed"]["batch_size"],
                                "device": config["embed"]["device"],
                                "dtype": config["embed"]["dtype"],
                                "token_budget": config["embed"]["token_budget"],
                                "hf_cache": config["embed"]["hf_cache"],
                                "keep_haplotypes": config["cohort"]["keep_haplotypes"]}),
        log:
            f"{R}/logs/embed_cohort/{{model}}.log",
        benchmark:
            f"{R}/benchmarks/embed_cohort/{{model}}.tsv"
        threads: THREADS
        resources:
            mem_mb=8000,
            runtime=60,
            gpu=GPU,
        conda:
            ENV
        shell:
            "python -m interp.cli stage embed_cohort {params.job:q} > {log:q} 2>&1"
