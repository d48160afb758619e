# Config validation (before any rule runs) and the small helpers every rule file uses.
import json
import os
import sys

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from interp.cohort.config import cohort_rule_settings
from interp.cohort.shards import count_cohort_regions, shard_index, shard_names, shard_slice
from interp.config import check_config, model_layer_names, replace_data_mappings
from interp.errors import InputError
from interp.resources import count_lines, job_resources, region_kb
from interp.stages import job_json
from interp.sae.config import NOT_TRAINING as SAE_NOT_TRAINING

try:
    # One short message naming the key or path, instead of a schema dump.
    # named by the user's --configfile(s), merged over configs/demo.yaml, so a user knows where to look
    _files = [str(path) for path in workflow.config_settings.configfiles] or ["configs/demo.yaml"]
    _overrides = dict(workflow.config_settings.config or {})
    # Snakemake merges the files key by key: population mappings are replaced whole (interp.config)
    config = replace_data_mappings(config, [*workflow.config_settings.configfiles, _overrides])
    _named = ", ".join(_files) + (f"; --config {', '.join(sorted(_overrides))}" if _overrides else "")
    config = check_config(config, base_dir=workflow.basedir, source=f"config ({_named})")
except InputError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None
validate(config, "../schemas/config.schema.yaml")

RUN = config["run"]
R = f"results/{RUN}"
ENV = "../../environment.yml"
THREADS = config["threads"]
MODELS = config["models"]
COHORT = config["cohort"]["enabled"]
GPU = 1 if config["embed"]["device"] == "cuda" else 0


# ---- the tail shared by every rule: `log: log_path("x")`, `benchmark: bench_path("x")`, `shell: stage_shell("x")`
def _per_job(folder, rule, wildcards, suffix):
    return os.path.join(R, folder, rule, *(f"{{{w}}}" for w in wildcards)) + suffix


def log_path(rule, *wildcards):
    """results/<run>/logs/<rule>.log, or logs/<rule>/{w1}/{w2}.log for a rule with wildcards w1, w2."""
    return _per_job("logs", rule, wildcards, ".log")


def bench_path(rule, *wildcards):
    """results/<run>/benchmarks/<rule>.tsv, or benchmarks/<rule>/{w1}.tsv (read by `interp summary`)."""
    return _per_job("benchmarks", rule, wildcards, ".tsv")


def stage_shell(stage):
    """The one shell line of a rule: its stage of interp.stages, the rule's JSON job, output to its log."""
    return f"python -m interp.cli stage {stage} {{params.job:q}} > {{log:q}} 2>&1"


def fixed(mem_mb, runtime):
    """resources mem_mb and runtime where the cost does not follow the inputs: these on the first attempt,
    times the attempt number on a retry (the SLURM profile's `retries: 1`), as `scaled` does, so a job killed
    for memory or time does not ask for the same again."""
    return {"mem_mb": lambda wildcards, attempt: mem_mb * attempt,
            "runtime": lambda wildcards, attempt: runtime * attempt}


def scaled(rule, units=None):
    """resources mem_mb and runtime of `rule` (a key of interp.resources.SCALING) as functions of its inputs' size
    (interp.resources.job_resources); units(wildcards, input) -> a count (samples x regions) where size alone
    says too little."""

    from interp.resources import SIZE_OF, SIZED_BY, inputs_size_mb

    def size(input):
        # only the inputs whose size tells the cost (interp.resources.SIZED_BY): not a genome read by region
        # SIZE_OF: a cost its own function measures (place_cohort: the VCF copy, when one is needed)
        measure = SIZE_OF.get(rule)
        return measure(input) if measure else (
            inputs_size_mb(input, SIZED_BY[rule]) if rule in SIZED_BY else input.size_mb)

    def mem_mb(wildcards, input, attempt):
        return job_resources(rule, size(input), units(wildcards, input) if units else 0, attempt)["mem_mb"]

    def runtime(wildcards, input, attempt):
        return job_resources(rule, size(input), units(wildcards, input) if units else 0, attempt)["runtime"]

    return {"mem_mb": mem_mb, "runtime": runtime}


# ---- cohort shards: cohort.shard_genes regions per haplotypes / embedding job (interp.cohort.shards)
def cohort_n_regions():
    c = config["cohort"]
    return count_cohort_regions(c["genes"], c.get("bed"))


def cohort_shards():
    return shard_names(cohort_n_regions(), config["cohort"]["shard_genes"])


def shard_set():
    """The folder of this shard size: `per<n>` regions, or `all` (cohort.shard_genes: 0)."""
    n = config["cohort"]["shard_genes"]
    return f"per{n}" if n else "all"


def shard_regions(name):
    """How many regions shard `name` holds."""
    sl = shard_slice(cohort_n_regions(), config["cohort"]["shard_genes"], shard_index(name))
    return sl.stop - sl.start


def cohort_embed_params(wildcards):
    """Settings of the cohort embedding rules (embed_cohort_shard, embed_cohort) for one model."""
    e = config["embed"]
    return {"layers": model_layers(wildcards.model), "sae_layer": config["sae"]["layer"],
            "batch_size": e["batch_size"], "device": e["device"], "dtype": e["dtype"],
            "token_budget": e["token_budget"], "hf_cache": e["hf_cache"], "cache": e["cache"],
            "keep_haplotypes": config["cohort"]["keep_haplotypes"]}


def cohort_shard_params(wildcards):
    """`cohort_embed_params` less keep_haplotypes, which only embed_cohort reads: a change to it must not rerun
    every shard's embedding (GPU jobs)."""
    return {k: v for k, v in cohort_embed_params(wildcards).items() if k != "keep_haplotypes"}


def card_path(model):
    return f"models/{model}.yaml"


def load_card(model):
    with open(card_path(model)) as fh:
        return yaml.safe_load(fh)


def model_layers(model):
    """Layers to pool for one model: the config's list, or all of the card's."""
    layers = config["embed"]["layers"]
    if layers != "all":
        return list(layers)
    # the built-in model's depth can be overridden; its layers follow
    return model_layer_names(load_card(model), config["lm"]["overrides"])


def checkpoint_input(model):
    """The built-in model trains itself; other families load their published weights."""
    if load_card(model).get("family") == "tiny":
        return {"checkpoint": f"{R}/lm/{model}.safetensors"}
    return {}


def job(stage_params):
    """A params function that packs a rule's io, settings and threads as one JSON job."""

    def pack(wildcards, input, output, threads):
        params = stage_params(wildcards) if callable(stage_params) else stage_params
        if "fasta" in dict(input.items()) and isinstance(params, dict):
            # where a missing .fai goes when the FASTA's folder is read-only
            params = {**params, "reference_cache": f"{R}/reference"}
        return job_json(dict(input.items()), dict(output.items()), params, threads)

    return pack


def settings(stage_params, locations=()):
    """The rule's settings as a plain JSON string (a params function of the wildcards only, or a string): the
    one param Snakemake's params rerun trigger sees, since `job` reads input/output and so counts as derived
    from them. Changing a setting in the config then reruns the rules it reaches. `locations`: keys that say
    where something is kept (a cache folder), not what is computed: left out, so that moving a cache reruns
    nothing."""

    def text(params):
        kept = {k: v for k, v in params.items() if k not in locations} if isinstance(params, dict) else params
        return json.dumps(kept, sort_keys=True, default=str)

    if callable(stage_params):
        return lambda wildcards: text(stage_params(wildcards))
    return text(stage_params)


#: settings of the embedding rules that only say where models and vectors are cached (`settings`' locations):
#: the same vectors come out wherever they are (HF_HOME and embed.hf_cache are one thing; a cached vector is the
#: computed one bit for bit)
CACHE_LOCATIONS = ("hf_cache", "cache")


def rule_params(stage_params, locations=()):
    """params of a stage rule: `job` (the JSON job the stage reads) and `settings` (what the rerun trigger
    compares: the job's settings less `locations`)."""
    return {"job": job(stage_params), "settings": settings(stage_params, locations)}




# SAE settings: the keys of config["sae"] that configure training (SAEConfig: all but SAE_NOT_TRAINING), and
# the sweep by name.
SAE_SWEEP = {entry["name"]: {k: v for k, v in entry.items() if k != "name"} for entry in config["sae"]["sweep"]}


def sae_base_params():
    """The main SAE's training settings, the run seed and where it trains (the GPU the rule asks for, if any)."""
    return {**{k: v for k, v in config["sae"].items() if k not in SAE_NOT_TRAINING}, "seed": config["seed"],
            "accelerator": "gpu" if GPU else "cpu"}


def probe_sae_inputs(wildcards):
    """Rule probe_sae: windows, each model's token store and main SAE, and the cohort embeddings if any."""
    layer = config["sae"]["layer"]
    inputs = {
        "windows": f"{R}/windows/windows.parquet",
        "tokens_dirs": expand(f"{R}/tokens/{{model}}", model=MODELS),
        "sae_weights": expand(f"{R}/sae/{{model}}/{layer}/weights.safetensors", model=MODELS),
    }
    if COHORT:
        inputs["cohort_emb_dirs"] = expand(f"{R}/cohort/emb/{{model}}", model=MODELS)
    return inputs


def report_inputs(wildcards):
    sae_layer = config["sae"]["layer"]
    inputs = {
        "windows": f"{R}/windows/windows.parquet",
        "probes": f"{R}/probe/probes.parquet",
        "probe_sae": f"{R}/probe/sae_vs_raw.parquet",
        "emb_dirs": expand(f"{R}/emb/{{model}}", model=MODELS),
        "sae_metrics": expand(f"{R}/sae/{{model}}/{sae_layer}/metrics.json", model=MODELS),
        "sae_features": expand(f"{R}/sae/{{model}}/{sae_layer}/features.parquet", model=MODELS),
        "sae_weights": expand(f"{R}/sae/{{model}}/{sae_layer}/weights.safetensors", model=MODELS),
        "sae_units": expand(f"{R}/sae/{{model}}/{sae_layer}/units.parquet", model=MODELS),
        "sae_steer": [f"{R}/sae/{m}/{sae_layer}/steer.parquet" for m in MODELS
                      if load_card(m).get("family") == "tiny"],
        "sae_atlas": expand(f"{R}/sae/{{model}}/{sae_layer}/atlas", model=MODELS),
        "sae_frontier": expand(f"{R}/sae/{{model}}/{sae_layer}/frontier.parquet", model=MODELS),
        "sae_frontier_plots": expand(f"{R}/sae/{{model}}/{sae_layer}/frontier_{{plot}}.png", model=MODELS,
                                     plot=["l0_fvu", "l0_loss_recovered"]),
        "cards": [card_path(m) for m in MODELS],
        "lm_metrics": [f"{R}/lm/{m}.metrics.json" for m in MODELS if load_card(m).get("family") == "tiny"],
        "checkpoints": [f"{R}/lm/{m}.safetensors" for m in MODELS if load_card(m).get("family") == "tiny"],
        "fasta": config["reference"]["fasta"],
    }
    if config["reference"]["annotation"]:
        inputs["annotation"] = config["reference"]["annotation"]
    planted = config["report"].get("planted")
    if planted and os.path.exists(planted):  # optional: the report says when it is absent
        inputs["planted"] = planted
    if COHORT:
        inputs.update({
            "audit": f"{R}/audit/audit.parquet",
            "audit_details": f"{R}/audit/audit.json",
            "biomarkers": f"{R}/rank/biomarkers.parquet",
            "rank_summary": f"{R}/rank/summary.json",
            "genotypes": f"{R}/cohort/genotypes.h5ad",
            "validation": f"{R}/cohort/validation.json",
            "haplotype_stats": f"{R}/cohort/haplotypes.stats.json",
            "cohort_emb_stats": expand(f"{R}/cohort/emb/{{model}}.stats.json", model=MODELS),
            "cohort_vcf": config_cohort_vcf(),
            "cohort_samples": config_cohort_samples(),
            # the ancestry markers decide the PCs every verdict conditions on: their digest is provenance too
            **{"ancestry_vcf": path for path in config_ancestry_vcf().values()},
            # the BED names the studied regions: its digest is provenance too
            **({"cohort_bed": config["cohort"]["bed"]} if config["cohort"].get("bed") else {}),
        })
        if config["rank"]["variant_effect"]:  # the width each model scored on (Methods)
            inputs["variant_effect_stats"] = expand(f"{R}/cohort/variant_effect/{{model}}.stats.json", model=MODELS)
        if config["cohort"]["source"] == "simulate":
            inputs["truth"] = f"{R}/cohort/input/truth.json"
        calibration = config["report"].get("calibration")
        if calibration and os.path.exists(calibration):  # optional: the summary says when it is absent
            inputs["calibration"] = calibration
    return inputs


def config_cohort_vcf():
    if config["cohort"]["source"] == "simulate":
        return f"{R}/cohort/input/cohort.vcf.gz"
    return config["cohort"]["vcf"]


def config_cohort_samples():
    if config["cohort"]["source"] == "simulate":
        return f"{R}/cohort/input/samples.tsv"
    return config["cohort"]["samples"]


def cohort_read_by(rules, params):
    """A cohort rule's settings: `params` with the cohort keys `rules` read (interp.cohort.config.READ_BY) and
    the group's name, so that the stage refuses to read any other."""
    return {**params, "cohort": cohort_rule_settings(config["cohort"], rules), "cohort_rules": rules}


def haplotypes_samples_input():
    """samples.tsv for haplotypes_shard, which reads its sample IDs only. The user's sheet is `ancient`, its IDs'
    digest a setting (`haplotypes_samples_params`): a new phenotype or covariate column does not rebuild every
    shard, a changed sample set or order does. A simulated sheet is the simulation's output, rewritten with
    the VCF, so it stays an ordinary input."""
    path = config_cohort_samples()
    return {"samples": path if config["cohort"]["source"] == "simulate" else ancient(path)}


def haplotypes_samples_params():
    """{"sample_ids": digest of the user's sample IDs in order} (nothing for a simulated cohort); a sheet that
    cannot be read gets its error as the digest: check_cohort reports it."""
    if config["cohort"]["source"] == "simulate":
        return {}
    from interp.cohort.vcf import sample_ids_digest

    try:
        return {"sample_ids": sample_ids_digest(config["cohort"]["samples"])}
    except InputError as exc:
        return {"sample_ids": f"unreadable: {exc}"}


def config_ancestry_vcf():
    """Markers for ancestry PCs: the simulated panel, the user's genome-wide VCF, or none (the cohort VCF)."""
    if config["cohort"]["source"] == "simulate":
        if config["cohort"]["simulate"]["ancestry_panel"]["loci"] > 0:
            return {"panel": f"{R}/cohort/input/ancestry_panel.vcf.gz"}
        return {}
    return {"panel": config["cohort"]["ancestry_vcf"]} if config["cohort"].get("ancestry_vcf") else {}
