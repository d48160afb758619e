# Stage 7b: zero-shot variant effect (interp.embed.variant_effect): each model scores every cohort variant on
# the reference window around it (masked LLR or causal delta); rank sums the scores into one burden family
# per model (`variant_effect:<model>`) when rank.variant_effect is true.

if COHORT:

    rule variant_effect:
        input:
            unpack(lambda wc: checkpoint_input(wc.model)),
            card="models/{model}.yaml",
            genotypes=f"{R}/cohort/genotypes.h5ad",
            fasta=config["reference"]["fasta"],
        output:
            parquet=f"{R}/cohort/variant_effect/{{model}}.parquet",
            stats=f"{R}/cohort/variant_effect/{{model}}.stats.json",
        params:
            **rule_params({"width": config["variant_effect"]["width"],
                     "batch_size": config["embed"]["batch_size"],
                     "device": config["embed"]["device"],
                     "dtype": config["embed"]["dtype"],
                     "hf_cache": config["embed"]["hf_cache"]}, CACHE_LOCATIONS),
        log:
            log_path("variant_effect", "model"),
        benchmark:
            bench_path("variant_effect", "model")
        wildcard_constraints:
            model="[^/]+",
        threads: THREADS
        resources:
            **scaled("variant_effect"),
            gpu=GPU,
        conda:
            ENV
        shell:
            stage_shell("variant_effect")
