# Stage 4: linear probes per (model, layer, target), grouped CV, shuffled and 3-mer controls.


rule probe:
    input:
        windows=f"{R}/windows/windows.parquet",
        emb_dirs=expand(f"{R}/emb/{{model}}", model=MODELS),
    output:
        parquet=f"{R}/probe/probes.parquet",
        tsv=f"{R}/probe/probes.tsv",
    params:
        # the sae_* keys are probe_sae's: a change to them must not rerun this rule
        **rule_params({"probe": {k: v for k, v in config["probe"].items() if not k.startswith("sae_")},
                       "seed": config["seed"]}),
    log:
        log_path("probe"),
    benchmark:
        bench_path("probe")
    threads: THREADS
    resources:
        **fixed(mem_mb=4000, runtime=30),
    conda:
        ENV
    shell:
        stage_shell("probe")


# Probes on the main SAE's top-k features vs on raw activations, same folds: every probe target per
# window and, with a cohort, every phenotype per sample (interp.sae.probe_compare).


rule probe_sae:
    input:
        unpack(probe_sae_inputs),
    output:
        parquet=f"{R}/probe/sae_vs_raw.parquet",
        tsv=f"{R}/probe/sae_vs_raw.tsv",
        folds=f"{R}/probe/sae_vs_raw.folds.parquet",
    params:
        # n_shuffles is the probe rule's (its shuffled-label controls); compare_run never reads it
        **rule_params({"probe": {k: v for k, v in config["probe"].items() if k != "n_shuffles"},
                       "sae_layer": config["sae"]["layer"], "seed": config["seed"],
                 "phenotypes": config["cohort"]["phenotypes"] if COHORT else []}),
    log:
        log_path("probe_sae"),
    benchmark:
        bench_path("probe_sae")
    threads: THREADS
    resources:
        **fixed(mem_mb=4000, runtime=30),
    conda:
        ENV
    shell:
        stage_shell("probe_sae")
