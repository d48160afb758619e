# Stage 5: a TopK sparse autoencoder on one layer's per-token activations, and its concept table.


rule sae:
    input:
        tokens_dir=f"{R}/tokens/{{model}}",
        windows=f"{R}/windows/windows.parquet",
    output:
        weights=f"{R}/sae/{{model}}/{{layer}}/weights.safetensors",
        metrics=f"{R}/sae/{{model}}/{{layer}}/metrics.json",
        features=f"{R}/sae/{{model}}/{{layer}}/features.parquet",
    params:
        job=job(lambda wc: {**{k: v for k, v in config["sae"].items() if k != "layer"},
                            "model": wc.model, "layer": wc.layer, "seed": config["seed"]}),
    log:
        f"{R}/logs/sae/{{model}}/{{layer}}.log",
    benchmark:
        f"{R}/benchmarks/sae/{{model}}/{{layer}}.tsv"
    threads: 1  # single-threaded training is bitwise reproducible
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=GPU,
    conda:
        ENV
    shell:
        "python -m interp.cli stage sae {params.job:q} > {log:q} 2>&1"
