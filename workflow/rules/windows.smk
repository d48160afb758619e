# Stage 1: reference windows with per-base labels (interp.genome).


rule windows:
    input:
        fasta=config["reference"]["fasta"],
        **({"annotation": config["reference"]["annotation"]} if config["reference"]["annotation"] else {}),
    output:
        parquet=f"{R}/windows/windows.parquet",
        tsv=f"{R}/windows/windows.tsv",
        fasta=f"{R}/windows/windows.fa",
        bases=f"{R}/windows/bases.parquet",
        reference=f"{R}/windows/reference.json",
    params:
        **rule_params({"reference": config["reference"], "regions": config["regions"],
                 "windows": config["windows"]}),
    log:
        log_path("windows"),
    benchmark:
        bench_path("windows")
    threads: 1
    resources:
        **fixed(mem_mb=2000, runtime=10),
    conda:
        ENV
    shell:
        stage_shell("windows")
