# Stage 6: a cohort: simulated (msprime) or the user's VCF; validation, haplotypes, genotype PCs,
# and embeddings of every distinct haplotype window (interp.cohort, interp.embed).

if COHORT:
    SAE_LAYER = config["sae"]["layer"]

    # each rule's settings leave out the cohort keys it never reads (the shard size only plans jobs): changing
    # one reruns only the rules that read it (interp.cohort.config.NOT_READ_BY, READ_BY)
    COHORT_CHECK = cohort_rule_settings(config["cohort"], "check")
    COHORT_BED = {"bed": config["cohort"]["bed"]} if config["cohort"].get("bed") else {}
    COHORT_VCF = config_cohort_vcf()
    COHORT_SAMPLES = config_cohort_samples()

    if config["cohort"]["source"] == "simulate":

        rule simulate_cohort:
            input:
                **COHORT_BED,
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
                **rule_params(cohort_read_by("simulate", {"reference": config["reference"], "seed": config["seed"]})),
            log:
                log_path("simulate_cohort"),
            benchmark:
                bench_path("simulate_cohort")
            threads: 1
            resources:
                **fixed(mem_mb=2000, runtime=10),
            conda:
                ENV
            shell:
                stage_shell("simulate_cohort")

    COHORT_REF = {
        "fasta": config["reference"]["fasta"],
        **({"annotation": config["reference"]["annotation"]} if config["reference"]["annotation"] else {}),
        **COHORT_BED,
    }
    # user_vcf: the VCF as the user named it, which errors name instead of the placed cohort/cohort.vcf.gz
    COHORT_PARAMS = {"reference": config["reference"], "cohort": cohort_rule_settings(config["cohort"], "ancestry"),
                     "seed": config["seed"], "user_vcf": COHORT_VCF}
    SHARDS = cohort_shards()
    # the shard size is in the path: after a change of cohort.shard_genes no shard of the old size is reused
    SHARD_DIR = f"{R}/cohort/shards/{shard_set()}/{{shard}}"

    wildcard_constraints:
        shard=r"s\d{4}",

    # the VCF where the cohort rules read it, and the regions resolved once; nothing of samples.tsv, so a new
    # phenotype or covariate re-checks the cohort (check_cohort) but never re-places the VCF or reruns the shards
    rule place_cohort:
        input:
            **COHORT_REF,
            vcf=COHORT_VCF,
        output:
            vcf=f"{R}/cohort/cohort.vcf.gz",
            tbi=f"{R}/cohort/cohort.vcf.gz.tbi",
            regions=f"{R}/cohort/regions.parquet",
        params:
            **rule_params(cohort_read_by("place", {"reference": config["reference"]})),
        log:
            log_path("place_cohort"),
        benchmark:
            bench_path("place_cohort")
        # before the LM: check_cohort waits for it
        priority: 100
        threads: 1
        resources:
            **scaled("place_cohort"),  # an unindexed or plain VCF is copied whole: time follows its size
        conda:
            ENV
        shell:
            stage_shell("place_cohort")

    # the regions as place_cohort resolved them: the annotation is parsed once per run, not once per shard
    COHORT_REGIONS = {"fasta": config["reference"]["fasta"], "regions": f"{R}/cohort/regions.parquet"}

    rule check_cohort:
        input:
            **COHORT_REGIONS,
            **config_ancestry_vcf(),
            vcf=f"{R}/cohort/cohort.vcf.gz",
            tbi=f"{R}/cohort/cohort.vcf.gz.tbi",
            samples=COHORT_SAMPLES,
        output:
            summary=f"{R}/cohort/validation.json",
        params:
            **rule_params({**COHORT_PARAMS, "cohort": COHORT_CHECK, "n_folds": config["audit"]["n_folds"]}),
        log:
            log_path("check_cohort"),
        benchmark:
            bench_path("check_cohort")
        # first of all jobs: a bad samples.tsv, VCF or panel stops the run before the LM is trained and embeds
        priority: 100
        threads: 1
        resources:
            **scaled("check_cohort"),
        conda:
            ENV
        shell:
            stage_shell("check_cohort")

    HAPLOTYPES_SAMPLES = haplotypes_samples_params()  # the sheet read once, not once per shard

    # haplotype windows of cohort.shard_genes regions per job; small jobs, grouped for cluster submission

    rule haplotypes_shard:
        input:
            **COHORT_REGIONS,
            **haplotypes_samples_input(),
            # not validation.json: the shards would rerun after every re-check of the sheet, and an ancient()
            # input of a job that reruns hides the shards' own changes from Snakemake in that run (it masks
            # every job downstream of a rerun job and then skips those reached only through ancient inputs)
            vcf=f"{R}/cohort/cohort.vcf.gz",
        output:
            assignments=f"{SHARD_DIR}/haplotypes.parquet",
            sequences=f"{SHARD_DIR}/sequences.parquet",
            stats=f"{SHARD_DIR}/haplotypes.stats.json",
        params:
            **rule_params(lambda wc: cohort_read_by("haplotypes", {
                "reference": config["reference"], **HAPLOTYPES_SAMPLES, "user_vcf": COHORT_VCF,
                "shard": {"index": shard_index(wc.shard), "size": config["cohort"]["shard_genes"]}})),
        log:
            log_path("haplotypes_shard", "shard"),
        benchmark:
            bench_path("haplotypes_shard", "shard")
        group:
            "cohort_shards"
        threads: 1
        resources:
            **scaled("haplotypes_shard", units=lambda wc, input: count_lines(input.samples) * shard_regions(wc.shard)),
        conda:
            ENV
        shell:
            stage_shell("haplotypes_shard")

    # the shards gathered in shard order: the same tables as one job over every region
    rule haplotypes:
        input:
            shard_assignments=expand(f"{SHARD_DIR}/haplotypes.parquet", shard=SHARDS),
            shard_sequences=expand(f"{SHARD_DIR}/sequences.parquet", shard=SHARDS),
            shard_stats=expand(f"{SHARD_DIR}/haplotypes.stats.json", shard=SHARDS),
        output:
            assignments=f"{R}/cohort/haplotypes.parquet",
            sequences=f"{R}/cohort/sequences.parquet",
            stats=f"{R}/cohort/haplotypes.stats.json",
        params:
            **rule_params({}),
        log:
            log_path("haplotypes"),
        benchmark:
            bench_path("haplotypes")
        threads: 1
        resources:
            **scaled("haplotypes"),
        conda:
            ENV
        shell:
            stage_shell("haplotypes")

    rule ancestry:
        input:
            **COHORT_REGIONS,
            **config_ancestry_vcf(),
            vcf=f"{R}/cohort/cohort.vcf.gz",
            samples=COHORT_SAMPLES,
        output:
            genotypes=f"{R}/cohort/genotypes.h5ad",
        params:
            **rule_params(COHORT_PARAMS),
        log:
            log_path("ancestry"),
        benchmark:
            bench_path("ancestry")
        threads: THREADS
        resources:
            # the regions' genotypes are held at once: samples x kb of regions (interp.resources.SCALING)
            **scaled("ancestry", units=lambda wc, input: count_lines(input.samples) * region_kb(input.regions)),
        conda:
            ENV
        shell:
            stage_shell("ancestry")

    # each distinct window sequence of a shard, through the embedding cache (embed.cache)
    rule embed_cohort_shard:
        input:
            unpack(lambda wc: checkpoint_input(wc.model)),
            card="models/{model}.yaml",
            sequences=f"{SHARD_DIR}/sequences.parquet",
            sae=f"{R}/sae/{{model}}/{SAE_LAYER}/weights.safetensors",
        output:
            vectors=f"{SHARD_DIR}/emb/{{model}}.npz",
            stats=f"{SHARD_DIR}/emb/{{model}}.stats.json",
        params:
            **rule_params(cohort_shard_params, CACHE_LOCATIONS),
        log:
            log_path("embed_cohort_shard", "model", "shard"),
        benchmark:
            bench_path("embed_cohort_shard", "model", "shard")
        group:
            "cohort_embed_shards"
        threads: THREADS
        resources:
            **scaled("embed_cohort_shard"),
            gpu=GPU,
        conda:
            ENV
        shell:
            stage_shell("embed_cohort_shard")

    # the shards' vectors gathered, pooled per sample and per (sample, window)
    rule embed_cohort:
        input:
            card="models/{model}.yaml",
            sequences=f"{R}/cohort/sequences.parquet",
            assignments=f"{R}/cohort/haplotypes.parquet",
            genotypes=f"{R}/cohort/genotypes.h5ad",
            shard_vectors=lambda wc: expand(f"{SHARD_DIR}/emb/{wc.model}.npz", shard=SHARDS),
            shard_stats=lambda wc: expand(f"{SHARD_DIR}/emb/{wc.model}.stats.json", shard=SHARDS),
        output:
            out_dir=directory(f"{R}/cohort/emb/{{model}}"),
            stats=f"{R}/cohort/emb/{{model}}.stats.json",
        params:
            **rule_params(cohort_embed_params, CACHE_LOCATIONS),
        log:
            log_path("embed_cohort", "model"),
        benchmark:
            bench_path("embed_cohort", "model")
        threads: 1
        resources:
            **scaled("embed_cohort"),
        conda:
            ENV
        shell:
            stage_shell("embed_cohort")
