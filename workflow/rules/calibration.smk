# Calibration suite (interp.calibration): simulated replicates over a grid of scenarios, each running the
# real cohort stages with the built-in LM and SAE trained once (rules pretrain_tiny_dnalm, embed, sae).
# Only built when asked for: `snakemake calibration --configfile configs/calibration.yaml` (or
# `make calibration`). One job per (cell, replicate), so a cluster runs it wide.

from interp.calibration import NULL_REDRAWS, select_cells

CAL = config["calibration"]
CAL_MODEL = CAL["model"]
CAL_LAYER = config["sae"]["layer"]
CAL_CELLS = [c["cell"] for c in select_cells(CAL["cells"])]
CAL_DIR = f"{R}/calibration"


wildcard_constraints:
    cell=r"[A-Za-z0-9_.=]+",
    replicate=r"\d+",


rule calibration_replicate:
    input:
        fasta=config["reference"]["fasta"],
        annotation=config["reference"]["annotation"],
        card=card_path(CAL_MODEL),
        checkpoint=f"{R}/lm/{CAL_MODEL}.safetensors",
        sae=f"{R}/sae/{CAL_MODEL}/{CAL_LAYER}/weights.safetensors",
    output:
        summary=f"{CAL_DIR}/replicates/{{cell}}/{{replicate}}.json",
    params:
        **rule_params(lambda wc: {"cell": wc.cell, "replicate": int(wc.replicate),
                            "seed": CAL["seed"] + int(wc.replicate), "model": CAL_MODEL,
                            "layers": model_layers(CAL_MODEL),
                            # not the replicate count or cell list: growing the suite must not rerun replicates
                            # rank.variant_effect is left out: replicates never score variants, and a new
                            # key must not change the params of replicates already run
                            # of embed and sae only what a replicate reads (interp.calibration.run_replicate): an
                            # atlas page size or a sweep SAE must not rerun ~1,400 replicates
                            "config": {**{k: config[k] for k in ("reference", "cohort", "audit")},
                                       "embed": {k: config["embed"][k] for k in ("batch_size", "device")},
                                       "sae": {"layer": config["sae"]["layer"]},
                                       "rank": {k: v for k, v in config["rank"].items() if k != "variant_effect"},
                                       "calibration": {**{k: CAL[k] for k in ("alpha", "near_bp", "seed",
                                                                                          "rank_replicates")},
                                                       **({"null_redraws": CAL["null_redraws"]}
                                                          if CAL["null_redraws"] != NULL_REDRAWS else {})}},
                            "workdir": f"{CAL_DIR}/work/{wc.cell}/{wc.replicate}"}),
    log:
        f"{CAL_DIR}/logs/{{cell}}/{{replicate}}.log",
    benchmark:
        f"{CAL_DIR}/benchmarks/{{cell}}/{{replicate}}.tsv"
    threads: 1
    resources:
        **fixed(mem_mb=8000, runtime=60),
    conda:
        ENV
    shell:
        stage_shell("calibration_replicate")


rule calibration:
    input:
        replicates=expand(f"{CAL_DIR}/replicates/{{cell}}/{{replicate}}.json", cell=CAL_CELLS,
                          replicate=range(CAL["replicates"])),
    output:
        tsv=f"{CAL_DIR}/calibration.tsv",
        json=f"{CAL_DIR}/calibration.json",
        report=f"{CAL_DIR}/report/report.md",
    params:
        **rule_params({"near_bp": CAL["near_bp"], "alpha": CAL["alpha"], "cells": CAL_CELLS,
                 "replicates": CAL["replicates"],
                 "command": "snakemake calibration --configfile configs/calibration.yaml"}),
    log:
        f"{CAL_DIR}/logs/calibration.log",
    benchmark:
        f"{CAL_DIR}/benchmarks/calibration.tsv"
    threads: 1
    resources:
        **fixed(mem_mb=2000, runtime=10),
    conda:
        ENV
    shell:
        stage_shell("calibration")
