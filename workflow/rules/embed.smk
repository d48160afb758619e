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
        job=job(lambda wc: {"layers": model_layers(wc.model),
                            "token_layers": config["embed"]["token_layers"],
                            "batch_size": config["embed"]["batch_size"],
                            "device": config["embed"]["device"]}),
    log:
        f"{R}/logs/embed/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/embed/{{model}}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPU,
    conda:
        ENV
    shell:
        "python -m interp.cli stage embed {params.job:q} > {log:q} 2>&1"
