# Planted-motif calibration of the SAE features (interp.sae.planted), the SAE counterpart of the cohort
# calibration. Only built when asked for: `snakemake planted -c2` (or `make planted`). A synthetic genome
# (order-3 Markov background fitted on the run's regions, planted JASPAR motifs, a periodic repeat,
# GC-rich islands) goes through the ordinary stages (windows, pretrain_tiny_dnalm, embed, sae, each
# called with the planted genome's paths and `planted.*` settings); planted_calibration then writes the
# match table, the LM vs order-3 Markov comparison and the steering check.

PL = config["planted"]
P = f"{R}/planted"
PL_MODEL = "tiny-dnalm"
PL_LAYER = PL["layer"]
PL_REFERENCE = {"fasta": f"{P}/genome/planted.fa", "annotation": None, "annotation_format": "auto",
                "contig_aliases": {}}
PL_REGIONS = [{"name": "planted", "contig": PL["genome"]["contig"], "start": 0, "end": PL["genome"]["length"]}]
PL_WINDOWS = {**config["windows"], **PL["windows"]}
PL_SAE = {**sae_base_params(), **PL["sae"]}


rule planted:
    input:
        f"{P}/calibration.json",


rule planted_genome:
    input:
        fasta=config["reference"]["fasta"],
    output:
        fasta=f"{P}/genome/planted.fa",
        fai=f"{P}/genome/planted.fa.fai",
        bed=f"{P}/genome/planted.bed",
        stats=f"{P}/genome/planted.json",
    params:
        **rule_params({"reference": config["reference"], "regions": config["regions"], "genome": PL["genome"]}),
    log:
        f"{P}/logs/planted_genome.log",
    benchmark:
        f"{P}/benchmarks/planted_genome.tsv"
    threads: 1
    resources:
        **fixed(mem_mb=1000, runtime=10),
    conda:
        ENV
    shell:
        stage_shell("planted_genome")


rule planted_windows:
    input:
        fasta=f"{P}/genome/planted.fa",
        fai=f"{P}/genome/planted.fa.fai",
    output:
        parquet=f"{P}/windows/windows.parquet",
        tsv=f"{P}/windows/windows.tsv",
        fasta=f"{P}/windows/windows.fa",
        bases=f"{P}/windows/bases.parquet",
    params:
        **rule_params({"reference": PL_REFERENCE, "regions": PL_REGIONS, "windows": PL_WINDOWS}),
    log:
        f"{P}/logs/planted_windows.log",
    benchmark:
        f"{P}/benchmarks/planted_windows.tsv"
    threads: 1
    resources:
        **fixed(mem_mb=2000, runtime=10),
    conda:
        ENV
    shell:
        stage_shell("windows")


rule planted_lm:
    input:
        fasta=f"{P}/genome/planted.fa",
        fai=f"{P}/genome/planted.fa.fai",
        card=card_path(PL_MODEL),
    output:
        checkpoint=f"{P}/lm/{PL_MODEL}.safetensors",
        metrics=f"{P}/lm/{PL_MODEL}.metrics.json",
    params:
        **rule_params({"reference": PL_REFERENCE, "regions": PL_REGIONS,
                 "heldout_fraction": PL_WINDOWS["heldout_fraction"], "overrides": PL["lm_overrides"],
                 "seed": config["seed"], "accelerator": "gpu" if GPU else "cpu"}),
    log:
        f"{P}/logs/planted_lm.log",
    benchmark:
        f"{P}/benchmarks/planted_lm.tsv"
    threads: 1  # single-threaded training is bitwise reproducible
    resources:
        **fixed(mem_mb=4000, runtime=30),
        gpu=GPU,
    conda:
        ENV
    shell:
        stage_shell("pretrain_tiny_dnalm")


rule planted_embed:
    input:
        checkpoint=f"{P}/lm/{PL_MODEL}.safetensors",
        card=card_path(PL_MODEL),
        windows=f"{P}/windows/windows.parquet",
        bases=f"{P}/windows/bases.parquet",
    output:
        pooled_dir=directory(f"{P}/emb/{PL_MODEL}"),
        tokens_dir=directory(f"{P}/tokens/{PL_MODEL}"),
        stats=f"{P}/emb/{PL_MODEL}.stats.json",
    params:
        **rule_params({"layers": [PL_LAYER], "token_layers": [PL_LAYER], "batch_size": config["embed"]["batch_size"],
                 "device": config["embed"]["device"], "dtype": config["embed"]["dtype"],
                 "token_budget": config["embed"]["token_budget"], "hf_cache": None}),
    log:
        f"{P}/logs/planted_embed.log",
    benchmark:
        f"{P}/benchmarks/planted_embed.tsv"
    threads: THREADS
    resources:
        **fixed(mem_mb=4000, runtime=30),
        gpu=GPU,
    conda:
        ENV
    shell:
        stage_shell("embed")


rule planted_sae:
    input:
        checkpoint=f"{P}/lm/{PL_MODEL}.safetensors",
        tokens_dir=f"{P}/tokens/{PL_MODEL}",
        windows=f"{P}/windows/windows.parquet",
        bases=f"{P}/windows/bases.parquet",
        planted_bed=f"{P}/genome/planted.bed",
    output:
        weights=f"{P}/sae/{PL_MODEL}/{PL_LAYER}/weights.safetensors",
        metrics=f"{P}/sae/{PL_MODEL}/{PL_LAYER}/metrics.json",
        features=f"{P}/sae/{PL_MODEL}/{PL_LAYER}/features.parquet",
        units=f"{P}/sae/{PL_MODEL}/{PL_LAYER}/units.parquet",
    params:
        **rule_params({**PL_SAE, "concepts": config["sae"]["concepts"], "labels": config["sae"]["labels"],
                 "top_windows": config["sae"]["top_windows"], "model": PL_MODEL, "layer": PL_LAYER,
                 "log_dir": f"{P}/logs/sae/{PL_MODEL}/{PL_LAYER}/main_csv"}),
    log:
        f"{P}/logs/planted_sae.log",
    benchmark:
        f"{P}/benchmarks/planted_sae.tsv"
    threads: 1
    resources:
        **fixed(mem_mb=4000, runtime=30),
        gpu=GPU,
    conda:
        ENV
    shell:
        stage_shell("sae")


rule planted_calibration:
    input:
        fasta=f"{P}/genome/planted.fa",
        bed=f"{P}/genome/planted.bed",
        stats=f"{P}/genome/planted.json",
        tokens_dir=f"{P}/tokens/{PL_MODEL}",
        windows=f"{P}/windows/windows.parquet",
        checkpoint=f"{P}/lm/{PL_MODEL}.safetensors",
        lm_metrics=f"{P}/lm/{PL_MODEL}.metrics.json",
        weights=f"{P}/sae/{PL_MODEL}/{PL_LAYER}/weights.safetensors",
        features=f"{P}/sae/{PL_MODEL}/{PL_LAYER}/features.parquet",
        units=f"{P}/sae/{PL_MODEL}/{PL_LAYER}/units.parquet",
        sae_metrics=f"{P}/sae/{PL_MODEL}/{PL_LAYER}/metrics.json",
    output:
        json=f"{P}/calibration.json",
        match=f"{P}/match.tsv",
        steer=f"{P}/steer.tsv",
    params:
        **rule_params({"targets": PL["targets"], "steer": PL["steer"], "sae": PL_SAE, "layer": PL_LAYER}),
    log:
        f"{P}/logs/planted_calibration.log",
    benchmark:
        f"{P}/benchmarks/planted_calibration.tsv"
    threads: 1
    resources:
        **fixed(mem_mb=2000, runtime=20),
    conda:
        ENV
    shell:
        stage_shell("planted_calibration")
