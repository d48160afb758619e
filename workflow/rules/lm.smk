# Stage 2: pretrain the built-in tiny DNA LM (interp.lm). Other model families skip this.


rule pretrain_tiny_dnalm:
    input:
        fasta=config["reference"]["fasta"],
        card="models/{model}.yaml",
    output:
        checkpoint=f"{R}/lm/{{model}}.safetensors",
        metrics=f"{R}/lm/{{model}}.metrics.json",
    params:
        **rule_params({"reference": config["reference"], "regions": config["regions"],
                 "heldout_fraction": config["windows"]["heldout_fraction"],
                 "overrides": config["lm"]["overrides"], "seed": config["seed"],
                 "accelerator": "gpu" if GPU else "cpu"}),
    log:
        log_path("pretrain_tiny_dnalm", "model"),
    benchmark:
        bench_path("pretrain_tiny_dnalm", "model")
    threads: 1  # single-threaded training is bitwise reproducible
    resources:
        **fixed(mem_mb=4000, runtime=30),
        gpu=GPU,
    conda:
        ENV
    shell:
        stage_shell("pretrain_tiny_dnalm")
