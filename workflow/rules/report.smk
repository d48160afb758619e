# Stage 9: the audit report, HTML + JSON with full provenance (interp.report).


def report_inputs(wildcards):
    sae_layer = config["sae"]["layer"]
    inputs = {
        "windows": f"{R}/windows/windows.parquet",
        "probes": f"{R}/probe/probes.parquet",
        "emb_dirs": expand(f"{R}/emb/{{model}}", model=MODELS),
        "sae_metrics": expand(f"{R}/sae/{{model}}/{sae_layer}/metrics.json", model=MODELS),
        "sae_features": expand(f"{R}/sae/{{model}}/{sae_layer}/features.parquet", model=MODELS),
        "sae_weights": expand(f"{R}/sae/{{model}}/{sae_layer}/weights.safetensors", model=MODELS),
        "cards": [card_path(m) for m in MODELS],
        "lm_metrics": [f"{R}/lm/{m}.metrics.json" for m in MODELS if load_card(m).get("family") == "tiny"],
        "checkpoints": [f"{R}/lm/{m}.safetensors" for m in MODELS if load_card(m).get("family") == "tiny"],
        "fasta": config["reference"]["fasta"],
    }
    if config["reference"]["annotation"]:
        inputs["annotation"] = config["reference"]["annotation"]
    if COHORT:
        inputs.update({
            "audit": f"{R}/audit/audit.parquet",
            "audit_details": f"{R}/audit/audit.json",
            "biomarkers": f"{R}/rank/biomarkers.parquet",
            "genotypes": f"{R}/cohort/genotypes.h5ad",
            "validation": f"{R}/cohort/validation.json",
            "haplotype_stats": f"{R}/cohort/haplotypes.stats.json",
            "cohort_emb_stats": expand(f"{R}/cohort/emb/{{model}}.stats.json", model=MODELS),
            "cohort_vcf": COHORT_VCF,
            "cohort_samples": COHORT_SAMPLES,
        })
        if config["cohort"]["source"] == "simulate":
            inputs["truth"] = f"{R}/cohort/input/truth.json"
    return inputs


rule report:
    input:
        unpack(report_inputs),
    output:
        html=f"reports/{RUN}/index.html",
        json=f"reports/{RUN}/report.json",
    params:
        job=job({"config": config, "benchmarks": f"{R}/benchmarks", "run": RUN}),
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    shell:
        "{STAGE} report {params.job:q} > {log:q} 2>&1"
