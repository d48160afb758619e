# Stage 3: embed every window with each model: pooled h5ad per layer + per-token zarr stores.


rule embed:
    input:
        unpack(lambda wc: checkpoint_input(wc.model)),
        card="models/{model}.yaml",
        windows=f"{R}/windows/windows.parquet",
        bases=f"{R}/windows/bases.parquet",
    output:
        pooled_dir=directory(f"{R}/emb/{{model}}"),
        tokens_dir=directory(f"{R}/tokens/{{model}}"),
        stats=f"{R}/emb/{{model}}.stats.json",
    params:
        **rule_params(lambda wc: {"layers": model_layers(wc.model),
                            "token_layers": config["embed"]["token_layers"],
                            "batch_size": config["embed"]["batch_size"],
                            "device": config["embed"]["device"],
                            "dtype": config["embed"]["dtype"],
                            "token_budget": config["embed"]["token_budget"],
                            "hf_cache": config["embed"]["hf_cache"]}, CACHE_LOCATIONS),
    log:
        log_path("embed", "model"),
    benchmark:
        bench_path("embed", "model")
    threads: THREADS
    resources:
        **scaled("embed"),
        gpu=GPU,
    conda:
        ENV
    shell:
        stage_shell("embed")


# `snakemake prefetch -c1` (on a login node with network): download every hub model the config names into
# embed.hf_cache, at each card's revision. Compute nodes then run with HF_HUB_OFFLINE=1.
# A local rule: under the SLURM profile it runs where snakemake runs (the login node, with network), never on a
# compute node without network.
localrules:
    prefetch,


rule prefetch:
    output:
        touch(f"{R}/prefetch.done"),
    params:
        cards=[card_path(m) for m in MODELS],
        # no --cache when embed.hf_cache is null (an empty `{params.cache:q}` vanishes from the command line)
        cache=["--cache", config["embed"]["hf_cache"]] if config["embed"]["hf_cache"] else [],
    log:
        log_path("prefetch"),
    benchmark:
        bench_path("prefetch")
    threads: 1
    resources:
        **fixed(mem_mb=2000, runtime=120),  # downloads: the largest cards are several GB
    conda:
        ENV
    shell:
        "python -m interp.cli prefetch {params.cards:q} {params.cache:q} > {log:q} 2>&1"
