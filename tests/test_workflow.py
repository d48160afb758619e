"""The workflow as a user runs it: config validation, lint, SLURM profile (end to end: test_end_to_end.py)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import run_snakemake


def _write_config(workdir: Path, cfg: dict) -> Path:
    path = workdir / "configs" / "user.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_dry_run_of_demo_config_plans_every_stage(workflow_copy: Path) -> None:
    res = run_snakemake(workflow_copy, "-n", "--quiet", "rules")
    assert res.returncode == 0, res.stderr
    for rule in ("windows", "pretrain_tiny_dnalm", "embed", "probe", "probe_sae", "sae", "simulate_cohort",
                 "check_cohort", "haplotypes", "ancestry", "embed_cohort", "audit", "rank", "report"):
        assert rule in res.stdout, f"rule {rule} missing from the demo plan:\n{res.stdout}"


def test_dry_run_plans_one_job_per_shard_and_sizes_resources(workflow_copy: Path) -> None:
    """cohort.shard_genes: 1 over a BED of 3 regions plans 3 haplotype and 3 embedding shard jobs, gathered once."""
    import re

    (workflow_copy / "configs" / "three.bed").write_text(
        "chr17\t6010\t14000\tpartA\nchr17\t14000\t22000\tpartB\nchr17\t22000\t31427\tpartC\n")
    path = _write_config(workflow_copy, {"run": "shards",
                                         "cohort": {"genes": [], "bed": "configs/three.bed", "shard_genes": 1}})
    res = run_snakemake(workflow_copy, "-n", "--configfile", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    for rule, count in (("haplotypes_shard", 3), ("embed_cohort_shard", 3), ("haplotypes", 1), ("embed_cohort", 1)):
        assert re.search(rf"^{rule}\s+{count}$", out, flags=re.M), f"{rule} x {count} not planned:\n{out}"
    for shard in ("s0000", "s0001", "s0002"):
        assert f"results/shards/cohort/shards/per1/{shard}/emb/tiny-dnalm.npz" in out


def test_audit_takes_the_embedding_tables_not_the_sequences(workflow_copy: Path) -> None:
    """interp.stages.audit reads only the embedding folders: the audit job does not stage the cohort's
    sequences table (gigabytes of window sequences at scale), and still runs after embed_cohort."""
    res = run_snakemake(workflow_copy, "-n", "results/demo/audit/audit.parquet")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    block = out[out.index("rule audit:"):]
    inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
    assert "results/demo/cohort/emb/tiny-dnalm" in inputs and "sequences.parquet" not in inputs, inputs
    assert re.search(r"^embed_cohort\s+1$", out, flags=re.M), out


def test_audit_and_rank_wait_for_the_cohort_check(workflow_copy: Path) -> None:
    """audit and rank read validation.json: with --keep-going, a check_cohort that fails (a bad samples.tsv)
    used to leave the other branches running, and the audit and rank wrote verdicts and a ranking from the
    unchecked sheet. Now neither job can start before the check has passed."""
    res = run_snakemake(workflow_copy, "-n", "results/demo/audit/audit.parquet", "results/demo/rank/biomarkers.parquet")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    for rule in ("audit", "rank"):
        block = out[out.index(f"rule {rule}:"):]
        inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
        assert "results/demo/cohort/validation.json" in inputs, (rule, inputs)


def test_workflow_passes_the_cohort_bed_to_the_report(workflow_copy: Path) -> None:
    """The report rule's inputs carry cohort.bed, so its digest reaches provenance.inputs."""
    (workflow_copy / "configs" / "two.bed").write_text("chr17\t6010\t14000\tpartA\nchr17\t14000\t22000\tpartB\n")
    path = _write_config(workflow_copy, {"run": "bed", "cohort": {"genes": [], "bed": "configs/two.bed"}})
    res = run_snakemake(workflow_copy, "reports/bed/report.json", "-n", "-p", "--configfile", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    job = next(line for line in (res.stdout + res.stderr).splitlines() if "interp.cli stage report" in line)
    assert '"cohort_bed": "configs/two.bed"' in job, job


def test_lint_reports_nothing(workflow_copy: Path) -> None:
    res = run_snakemake(workflow_copy, "--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_slurm_profile_parses(workflow_copy: Path) -> None:
    res = run_snakemake(workflow_copy, "-n", "--profile", "configs/profiles/slurm")
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"windwos": {"width": 100}}, "unknown key 'windwos'"),
        ({"windows": {"width": "wide"}}, "windows.width: expected integer"),
        ({"reference": {"fasta": "resources/demo/missing.fa"}}, "reference.fasta = 'resources/demo/missing.fa': file not found"),
        ({"models": ["no-such-model"]}, "no model card models/no-such-model.yaml"),
        ({"sae": {"sweep": [{"name": "k8", "kk": 8}]}}, "sae.sweep[0] (k8): unknown key 'kk' for SAEConfig"),
    ],
)
def test_bad_config_gets_one_clear_message(workflow_copy: Path, patch: dict, expected: str) -> None:
    path = _write_config(workflow_copy, patch)
    res = run_snakemake(workflow_copy, "-n", "--configfile", str(path))
    out = res.stdout + res.stderr  # snakemake prints its errors on either stream
    assert res.returncode != 0
    assert expected in out, out
    assert "Traceback" not in out, out


def test_region_on_absent_contig_fails_in_windows_rule(workflow_copy: Path) -> None:
    path = _write_config(workflow_copy, {"regions": [{"name": "x", "contig": "chr5", "start": 0, "end": 1000}],
                                         "cohort": {"enabled": False}})
    res = run_snakemake(workflow_copy, "results/demo/windows/windows.parquet", "--configfile", str(path))
    assert res.returncode != 0
    log = (workflow_copy / "results" / "demo" / "logs" / "windows.log").read_text()
    assert "chr5" in log and "not in the FASTA" in log, log
    assert "Traceback" not in log
    assert not (workflow_copy / "results" / "demo" / "windows" / "windows.parquet").exists()



def test_changed_setting_reruns_the_rule_and_unchanged_does_not(workflow_copy: Path) -> None:
    """Every rule's settings are a plain param, so Snakemake's params trigger reruns a rule when the config
    changes it (the JSON `job` param reads input/output, which Snakemake counts as derived and ignores)."""
    target = "results/demo/windows/windows.parquet"
    done = run_snakemake(workflow_copy, target)
    assert done.returncode == 0, done.stdout + done.stderr
    same = run_snakemake(workflow_copy, "-n", target)
    assert same.returncode == 0 and "Nothing to be done" in same.stdout + same.stderr, same.stdout + same.stderr
    width = yaml.safe_load((workflow_copy / "configs" / "demo.yaml").read_text())["windows"]["width"]
    path = _write_config(workflow_copy, {"windows": {"width": width // 2}})
    changed = run_snakemake(workflow_copy, "-n", target, "--configfile", "configs/demo.yaml", str(path))
    out = changed.stdout + changed.stderr
    assert changed.returncode == 0, out
    assert "rule windows:" in out and "Params have changed" in out, out



def test_an_ancestry_setting_reruns_ancestry_not_the_cohort_simulation_haplotypes_or_shard_embeddings(
        workflow_copy: Path) -> None:
    """cohort.n_pcs, maf and ancestry_exclude_flank are read by the ancestry rule only, keep_haplotypes by
    embed_cohort only; they were in the settings of simulate_cohort, check_cohort and haplotypes_shard too, so
    changing the number of PCs re-simulated the cohort, re-checked and re-copied the VCF, rebuilt every haplotype
    shard and re-embedded every shard (hours on a GPU at scale). Now those rules stay done and ancestry reruns."""
    targets = ("results/test/cohort/haplotypes.parquet", "results/test/cohort/genotypes.h5ad",
               "results/test/cohort/validation.json")
    done = run_snakemake(workflow_copy, "--configfile", "configs/test.yaml", "--", *targets)
    assert done.returncode == 0, done.stdout + done.stderr
    for patch, reruns in (({"cohort": {"n_pcs": 4}}, ["ancestry"]), ({"cohort": {"maf": 0.1}}, ["ancestry"]),
                          ({"cohort": {"ancestry_exclude_flank": 1000}}, ["ancestry"]),
                          ({"cohort": {"keep_haplotypes": True}}, []),
                          # read by check_cohort (and the audit), not by the simulation or the haplotype shards
                          # (n_folds and covariates: the user-VCF test below)
                          ({"cohort": {"phenotypes": ["causal", "null"]}}, ["check_cohort", "ancestry"]),
                          # read by the shards
                          ({"cohort": {"unphased": "N"}}, ["check_cohort", "ancestry", "haplotypes_shard",
                                                           "haplotypes"])):
        path = _write_config(workflow_copy, patch)
        res = run_snakemake(workflow_copy, "-n", "--configfile", "configs/test.yaml", str(path), "--", *targets)
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        planned = set(re.findall(r"^\s*(?:local)?rule (\w+):", out, flags=re.M))
        assert planned == set(reruns), (patch, planned)


def _planned(workflow_copy: Path, configs: tuple[str, ...], targets: tuple[str, ...]) -> set[str]:
    """The rules a dry run with these config files plans for `targets`."""
    res = run_snakemake(workflow_copy, "-n", "--configfile", *configs, "--", *targets)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return set(re.findall(r"^\s*(?:local)?rule (\w+):", out, flags=re.M))


def test_a_new_phenotype_or_covariate_in_the_users_sheet_does_not_rebuild_the_haplotype_shards(
        workflow_copy: Path) -> None:
    """A user's samples.tsv was an input of every haplotype shard (and check_cohort, which re-placed the VCF the
    shards read, was too): adding a covariate column, a phenotype or changing audit.n_folds rebuilt and
    re-embedded every shard of the cohort. Now the sheet is re-checked and the ancestry table remade; the VCF
    is placed by place_cohort, which reads no sheet, and the shards rerun when their sample IDs, the VCF or
    their own settings change, and only then."""
    import shutil

    sim = run_snakemake(workflow_copy, "--configfile", "configs/test.yaml", "--",
                        "results/test/cohort/input/cohort.vcf.gz")
    assert sim.returncode == 0, sim.stdout + sim.stderr
    data = workflow_copy / "data"
    data.mkdir()
    for name in ("cohort.vcf.gz", "cohort.vcf.gz.tbi", "samples.tsv"):
        shutil.copy(workflow_copy / "results" / "test" / "cohort" / "input" / name, data / name)
    user = {"run": "user", "cohort": {"source": "vcf", "vcf": "data/cohort.vcf.gz", "samples": "data/samples.tsv",
                                      "phenotypes": ["causal", "null"], "covariates": ["sex"]}}
    config = _write_config(workflow_copy, user)
    targets = ("results/user/cohort/haplotypes.parquet", "results/user/cohort/genotypes.h5ad",
               "results/user/cohort/validation.json")
    done = run_snakemake(workflow_copy, "--configfile", "configs/test.yaml", str(config), "--", *targets)
    assert done.returncode == 0, done.stdout + done.stderr

    def planned(patch: dict) -> set[str]:
        merged = {**user, "cohort": {**user["cohort"], **patch.get("cohort", {})},
                  **{k: v for k, v in patch.items() if k != "cohort"}}
        return _planned(workflow_copy, ("configs/test.yaml", str(_write_config(workflow_copy, merged))), targets)

    sheet = pl.read_csv(data / "samples.tsv", separator="\t", infer_schema=False)
    sheet.with_columns(age=pl.Series([str(30 + i % 40) for i in range(sheet.height)])).write_csv(
        data / "samples.tsv", separator="\t")
    # the edited sheet is re-checked, and the ancestry table (its obs) remade; nothing else
    for patch in ({}, {"cohort": {"covariates": ["sex", "age"]}},
                  {"cohort": {"phenotypes": ["causal", "confounded", "null"]}}, {"audit": {"n_folds": 4}}):
        assert planned(patch) == {"check_cohort", "ancestry"}, patch
    # the sample set changes: the shards rebuild
    sheet.head(sheet.height - 1).write_csv(data / "samples.tsv", separator="\t")
    assert {"haplotypes_shard", "haplotypes", "check_cohort"} <= planned({})
    sheet.write_csv(data / "samples.tsv", separator="\t")  # back to the sample set the shards were built with
    assert "haplotypes_shard" not in planned({})
    # a new VCF in its place (one more header line): placed again, shards rebuilt
    import pysam

    with pysam.VariantFile(str(data / "cohort.vcf.gz")) as vcf:
        header = vcf.header.copy()
        header.add_line("##note=reannotated")
        records = [str(r) for r in vcf]
    (data / "cohort.vcf").write_text(str(header) + "".join(records))
    (data / "cohort.vcf.gz").unlink()
    pysam.tabix_compress(str(data / "cohort.vcf"), str(data / "cohort.vcf.gz"))
    pysam.tabix_index(str(data / "cohort.vcf.gz"), preset="vcf", force=True)
    assert {"place_cohort", "haplotypes_shard", "check_cohort"} <= planned({})


def test_prefetch_is_a_local_rule_under_the_slurm_profile(workflow_copy: Path) -> None:
    # prefetch downloads models: on a cluster it must run where snakemake runs (the login node, with network),
    # never be submitted to a compute node without network. A dry run does not say which jobs are local, so it
    # runs (the demo's built-in model needs no download; with embed.hf_cache null, no --cache); a job submitted
    # to SLURM instead would fail here, where there is no sbatch
    res = run_snakemake(workflow_copy, "prefetch", "--profile", "configs/profiles/slurm",
                        "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(r"^localrule prefetch:", out, re.M), out
    log = (workflow_copy / "results/demo/logs/prefetch.log").read_text()
    assert '"skipped": "built-in model' in log, log


@pytest.mark.parametrize(("device", "accelerator"), [("cpu", "cpu"), ("cuda", "gpu")])
def test_sae_rules_train_where_they_ask_for_a_gpu(workflow_copy: Path, device: str, accelerator: str) -> None:
    """The SAE rules ask SLURM for a GPU when embed.device is cuda; their jobs now tell the training to use it
    (the accelerator reached train_sae nowhere: it trained on the CPU beside an idle GPU)."""
    path = _write_config(workflow_copy, {"embed": {"device": device}, "sae": {"sweep": [{"name": "k8", "k": 8}]}})
    res = run_snakemake(workflow_copy, "-n", "-p", "--forceall", "--configfile", "configs/demo.yaml", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    for stage in ("sae", "sae_sweep"):
        line = next(x for x in out.splitlines() if f"interp.cli stage {stage} " in x)
        job = json.loads(shlex.split(line.split(f"interp.cli stage {stage} ", 1)[1])[0])
        params = job["params"] if stage == "sae" else job["params"]["base"]
        assert params["accelerator"] == accelerator, (stage, params)


def test_rules_are_not_given_the_settings_only_other_rules_read(workflow_copy: Path) -> None:
    """A changed param reruns its rule (--rerun-triggers params): probe was given the whole probe section, so
    probe.sae_bootstrap reran it; rank was given rank.report_top (the report's); every embed_cohort_shard (GPU)
    job was given cohort.keep_haplotypes (embed_cohort's). Each now gets what its stage reads, and the rule
    that does read the key still gets it."""
    res = run_snakemake(workflow_copy, "-n", "-p", "--forceall")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out

    def params(stage: str) -> dict:
        line = next(x for x in out.splitlines() if f"interp.cli stage {stage} " in x)
        return json.loads(shlex.split(line.split(f"interp.cli stage {stage} ", 1)[1])[0])["params"]

    assert not [k for k in params("probe")["probe"] if k.startswith("sae_")]
    assert "block_gap" in params("probe")["probe"] and "sae_bootstrap" in params("probe_sae")["probe"]
    assert "n_shuffles" in params("probe")["probe"] and "n_shuffles" not in params("probe_sae")["probe"]
    assert "report_top" not in params("rank")["rank"] and "min_carriers" in params("rank")["rank"]
    assert "keep_haplotypes" not in params("embed_cohort_shard") and "keep_haplotypes" in params("embed_cohort")


def test_workflow_passes_the_variant_effect_stats_to_the_report(workflow_copy: Path) -> None:
    """The report rule reads each model's variant_effect stats (the width it scored on, for Methods) when rank
    adds the variant-effect families."""
    res = run_snakemake(workflow_copy, "reports/demo/report.json", "-n", "-p")
    assert res.returncode == 0, res.stdout + res.stderr
    job = next(line for line in (res.stdout + res.stderr).splitlines() if "interp.cli stage report" in line)
    assert '"variant_effect_stats": ["results/demo/cohort/variant_effect/tiny-dnalm.stats.json"]' in job, job
