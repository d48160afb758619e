# Stage 5: sparse autoencoders on one layer's per-token activations. `sae` trains the main SAE (used
# downstream) and labels its features; `sae_sweep` trains each `sae.sweep` entry as its own job;
# `sae_frontier` plots the sweep's L0 vs FVU and L0 vs loss recovered; `sae_steer` checks features
# causally in the built-in LM; `sae_atlas` writes the HTML feature atlas.


rule sae:
    wildcard_constraints:
        model="[^/]+",
        layer="[^/]+",
        name="[^/]+",
    input:
        unpack(lambda wc: checkpoint_input(wc.model)),
        tokens_dir=f"{R}/tokens/{{model}}",
        windows=f"{R}/windows/windows.parquet",
        bases=f"{R}/windows/bases.parquet",
    output:
        weights=f"{R}/sae/{{model}}/{{layer}}/weights.safetensors",
        metrics=f"{R}/sae/{{model}}/{{layer}}/metrics.json",
        features=f"{R}/sae/{{model}}/{{layer}}/features.parquet",
        units=f"{R}/sae/{{model}}/{{layer}}/units.parquet",
    params:
        **rule_params(lambda wc: {**sae_base_params(), "concepts": config["sae"]["concepts"],
                            "labels": config["sae"]["labels"], "top_windows": config["sae"]["top_windows"],
                            "model": wc.model, "layer": wc.layer,
                            "log_dir": f"{R}/logs/sae/{wc.model}/{wc.layer}/main_csv"}),
    log:
        log_path("sae", "model", "layer"),
    benchmark:
        bench_path("sae", "model", "layer")
    threads: 1  # single-threaded training is bitwise reproducible
    resources:
        **fixed(mem_mb=6000, runtime=60),
        gpu=GPU,
    conda:
        ENV
    shell:
        stage_shell("sae")


rule sae_sweep:
    wildcard_constraints:
        model="[^/]+",
        layer="[^/]+",
        name="[^/]+",
    input:
        unpack(lambda wc: checkpoint_input(wc.model)),
        tokens_dir=f"{R}/tokens/{{model}}",
        windows=f"{R}/windows/windows.parquet",
    output:
        weights=f"{R}/sae/{{model}}/{{layer}}/sweep/{{name}}/weights.safetensors",
        metrics=f"{R}/sae/{{model}}/{{layer}}/sweep/{{name}}/metrics.json",
    params:
        **rule_params(lambda wc: {"base": sae_base_params(), "overrides": SAE_SWEEP[wc.name], "name": wc.name,
                            "model": wc.model, "layer": wc.layer,
                            "log_dir": f"{R}/logs/sae/{wc.model}/{wc.layer}/sweep_{wc.name}_csv"}),
    log:
        log_path("sae_sweep", "model", "layer", "name"),
    benchmark:
        bench_path("sae_sweep", "model", "layer", "name")
    threads: 1
    resources:
        **fixed(mem_mb=6000, runtime=60),
        gpu=GPU,
    conda:
        ENV
    shell:
        stage_shell("sae_sweep")


rule sae_frontier:
    wildcard_constraints:
        model="[^/]+",
        layer="[^/]+",
        name="[^/]+",
    input:
        metrics=lambda wc: [f"{R}/sae/{wc.model}/{wc.layer}/metrics.json"]
        + [f"{R}/sae/{wc.model}/{wc.layer}/sweep/{name}/metrics.json" for name in SAE_SWEEP],
    output:
        parquet=f"{R}/sae/{{model}}/{{layer}}/frontier.parquet",
        fvu_png=f"{R}/sae/{{model}}/{{layer}}/frontier_l0_fvu.png",
        loss_png=f"{R}/sae/{{model}}/{{layer}}/frontier_l0_loss_recovered.png",
    params:
        **rule_params(lambda wc: {"model": wc.model, "layer": wc.layer}),
    log:
        log_path("sae_frontier", "model", "layer"),
    benchmark:
        bench_path("sae_frontier", "model", "layer")
    threads: 1
    resources:
        **fixed(mem_mb=1000, runtime=10),
    conda:
        ENV
    shell:
        stage_shell("sae_frontier")


rule sae_steer:
    wildcard_constraints:
        model="[^/]+",
        layer="[^/]+",
    input:
        checkpoint=f"{R}/lm/{{model}}.safetensors",  # the built-in LM only
        weights=f"{R}/sae/{{model}}/{{layer}}/weights.safetensors",
        features=f"{R}/sae/{{model}}/{{layer}}/features.parquet",
        windows=f"{R}/windows/windows.parquet",
    output:
        parquet=f"{R}/sae/{{model}}/{{layer}}/steer.parquet",
    params:
        **rule_params(lambda wc: {**sae_base_params(), "steer": config["sae"]["steer"], "model": wc.model,
                            "layer": wc.layer}),
    log:
        log_path("sae_steer", "model", "layer"),
    benchmark:
        bench_path("sae_steer", "model", "layer")
    threads: 1
    resources:
        **fixed(mem_mb=2000, runtime=20),
    conda:
        ENV
    shell:
        stage_shell("sae_steer")


rule sae_atlas:
    wildcard_constraints:
        model="[^/]+",
        layer="[^/]+",
    input:
        tokens_dir=f"{R}/tokens/{{model}}",
        weights=f"{R}/sae/{{model}}/{{layer}}/weights.safetensors",
        features=f"{R}/sae/{{model}}/{{layer}}/features.parquet",
        units=f"{R}/sae/{{model}}/{{layer}}/units.parquet",
        windows=f"{R}/windows/windows.parquet",
    output:
        atlas_dir=directory(f"{R}/sae/{{model}}/{{layer}}/atlas"),
    params:
        **rule_params(lambda wc: {"atlas": config["sae"]["atlas"], "model": wc.model, "layer": wc.layer}),
    log:
        log_path("sae_atlas", "model", "layer"),
    benchmark:
        bench_path("sae_atlas", "model", "layer")
    threads: 1
    resources:
        **fixed(mem_mb=2000, runtime=20),
    conda:
        ENV
    shell:
        stage_shell("sae_atlas")
