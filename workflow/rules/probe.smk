# Stage 4: linear probes per (model, layer, target), grouped CV, shuffled and 3-mer controls.


rule probe:
    input:
        windows=f"{R}/windows/windows.parquet",
        emb_dirs=expand(f"{R}/emb/{{model}}", model=MODELS),
    output:
        parquet=f"{R}/probe/probes.parquet",
        tsv=f"{R}/probe/probes.tsv",
    params:
        job=job({"targets": config["probe"]["targets"], "C": config["probe"]["C"],
                 "max_iter": config["probe"]["max_iter"], "n_shuffles": config["probe"]["n_shuffles"],
                 "seed": config["seed"]}),
    log:
        f"{R}/logs/probe.log",
    benchmark:
        f"{R}/benchmarks/probe.tsv"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    shell:
        "python -m interp.cli stage probe {params.job:q} > {log:q} 2>&1"
