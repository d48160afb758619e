"""The workflow as a user meets it: bad configs refused at the start with one line, interrupted jobs, rule
directives (the rest: test_workflow.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from interp.errors import InputError
from interp.genome.fasta import read_fasta
from tests.conftest import run_snakemake


def _check_config(tmp_path: Path, patch: dict, capsys) -> tuple[int, str]:
    """`interp check-config <patch>` (merged over configs/demo.yaml): exit status and stderr."""
    from interp.cli import main

    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(patch))
    rc = main(["check-config", str(path)])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"sae": {"layer": "block9"}}, "sae.layer: model tiny-dnalm has no layer 'block9'; its layers are embed, "
                                       "block1, block2, block3, block4, block5"),
        ({"embed": {"layers": ["embed", "blok1"]}}, "embed.layers: model tiny-dnalm has no layer 'blok1'"),
        ({"embed": {"token_layers": ["block7"]}}, "embed.token_layers: model tiny-dnalm has no layer 'block7'"),
        # the built-in model's depth follows lm.overrides.n_layers; demo's sae.layer is block2
        ({"lm": {"overrides": {"n_layers": 1}}}, "embed.token_layers: model tiny-dnalm has no layer 'block2'; its "
                                                 "layers are embed, block1 (lm.overrides.n_layers sets its depth)"),
        ({"lm": {"overrides": {"n_layers": "2"}}}, "lm.overrides: tiny-dnalm, override n_layers: expected an integer >= 1, got '2'"),
        ({"lm": {"overrides": {"lr": "1e-3"}}}, "lm.overrides: tiny-dnalm, override lr: expected a number > 0"),
    ],
)
def test_layer_a_model_lacks_is_refused_by_check_config(tmp_path: Path, capsys, patch: dict, expected: str) -> None:
    """Once such a config passed the check and failed only in the embed rule, after the LM had been trained."""
    rc, err = _check_config(tmp_path, patch, capsys)
    assert rc == 2, err
    assert expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_layers_the_model_has_pass(tmp_path: Path, capsys) -> None:
    rc, err = _check_config(tmp_path, {"lm": {"overrides": {"n_layers": 3}}, "sae": {"layer": "block3"},
                                       "embed": {"layers": ["embed", "block3"], "token_layers": ["block1"]}}, capsys)
    assert rc == 0, err


def test_a_tiny_card_listing_layers_its_architecture_does_not_build_is_refused() -> None:
    """A copied built-in card with a block6 in `layers` (or its architecture.n_layers lowered, layers left)
    passed check-config, and the embed rule stopped on it after the LM had been trained."""
    import yaml

    from interp.config import ROOT, _check_layers, model_layer_names

    card = yaml.safe_load((ROOT / "models" / "tiny-dnalm.yaml").read_text())
    assert model_layer_names(card, {}) == card["layers"]
    deeper = {**card, "name": "my-dnalm", "layers": [*card["layers"], "block6"]}
    with pytest.raises(InputError, match=r"model card my-dnalm, field layers: 'block6' are not layers of the "
                                         r"built-in model, which has embed and block1..block5 \(architecture"):
        model_layer_names(deeper, {})
    shallower = {**card, "architecture": {**card["architecture"], "n_layers": 3}}
    with pytest.raises(InputError, match="'block4', 'block5' are not layers"):
        _check_layers({"embed": {"layers": "all", "token_layers": []}, "sae": {"layer": "block2"},
                       "lm": {"overrides": {}}}, {"tiny-dnalm": shallower}, "user.yaml")
    # with lm.overrides.n_layers the layers follow the override, not the card
    assert model_layer_names(deeper, {"n_layers": 2}) == ["embed", "block1", "block2"]


def _failed_dry_run(workflow_copy: Path, config: dict) -> str:
    """`snakemake -n` with `config` as the user's config file: it must fail; returns its stdout + stderr."""
    path = workflow_copy / "configs" / "user.yaml"
    path.write_text(yaml.safe_dump(config))
    res = run_snakemake(workflow_copy, "-n", "--configfile", str(path))
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    return out


def test_snakemake_refuses_a_layer_the_model_lacks_before_any_job(workflow_copy: Path) -> None:
    out = _failed_dry_run(workflow_copy, {"sae": {"layer": "block9"}})
    assert "sae.layer: model tiny-dnalm has no layer 'block9'" in out, out
    assert "Traceback" not in out, out



def test_a_bad_samples_tsv_stops_the_run_before_the_lm_is_trained(workflow_copy: Path) -> None:
    """check_cohort runs first: a quantitative phenotype in samples.tsv was refused only after the reference
    LM had been trained and the windows embedded (README: "refused by check_cohort before any work")."""
    data = workflow_copy / "data"
    data.mkdir()
    ids = [f"S{i}" for i in range(1, 9)]
    ref = read_fasta(workflow_copy / "resources" / "demo" / "hg19_chr17_1-40000.fa")["chr17"][6999].upper()
    alt = "G" if ref != "G" else "T"
    (data / "cohort.vcf").write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=chr17,length=40000>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(ids) + "\n"
        f"chr17\t7000\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t" + "\t".join(["0|1", "0|0"] * 4) + "\n")
    (data / "samples.tsv").write_text("sample_id\theight\n" + "".join(f"{s}\t1.{i}5\n" for i, s in enumerate(ids)))
    path = workflow_copy / "configs" / "user.yaml"
    path.write_text(yaml.safe_dump({"run": "bad", "sae": {"sweep": []}, "cohort": {
        "source": "vcf", "vcf": "data/cohort.vcf", "samples": "data/samples.tsv", "phenotypes": ["height"],
        "covariates": [], "population_column": None, "genes": ["DOC2B"]}}))
    res = run_snakemake(workflow_copy, "--configfile", str(path), "--show-failed-logs")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "field height" in out and "binary phenotypes only" in out, out
    assert "rule pretrain_tiny_dnalm:" not in out and not (workflow_copy / "results" / "bad" / "lm").exists(), out


@pytest.mark.parametrize(("sheet", "expected"), [
    ("sample_id\theight\n" + "".join(f"S{i}\t1.{i}5\n" for i in range(8)),
     "line 2, field height: value 1.05 (the phenotype has values 1.05, 1.15, 1.25, 1.35, 1.45 ...); the confound "
     "audit takes binary phenotypes only"),
    ("sample_id\theight\tage\n" + "".join(f"S{i}\t{i % 2}\t{'' if i == 3 else 40 + i}\n" for i in range(12)),
     "covariate 'age' has 1 missing value(s) (samples S3)"),
])
def test_check_config_reads_the_samples_sheet(tmp_path: Path, capsys, sheet: str, expected: str) -> None:
    """samples.tsv problems (a quantitative phenotype, a missing covariate) were found only by the check_cohort
    job; on several cores the LM training started beside it and was waited for. check-config now reads the
    sheet (not the VCF) and stops the run before any job."""
    (tmp_path / "cohort.vcf").write_text("placeholder\n")
    (tmp_path / "samples.tsv").write_text(sheet)
    covariates = ["age"] if "age" in sheet else []
    rc, err = _check_config(tmp_path, {"cohort": {
        "source": "vcf", "vcf": str(tmp_path / "cohort.vcf"), "samples": str(tmp_path / "samples.tsv"),
        "phenotypes": ["height"], "covariates": covariates, "population_column": None}}, capsys)
    assert rc == 2 and expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("threads", [1, 4])
def test_slurm_profile_asks_for_each_rule_threads(threads: int) -> None:
    """The SLURM plugin's --cpus-per-task is the rule's threads unless a cpus_per_task resource is set; the profile
    once set cpus_per_task: 2 for every rule, so threads: 8 ran 8 threads on 2 CPUs (and 1-thread rules held 2)."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting

    from interp.config import ROOT

    profile = yaml.safe_load((ROOT / "configs" / "profiles" / "slurm" / "config.yaml").read_text())

    class Resources(dict):
        __getattr__ = dict.__getitem__

    job = SimpleNamespace(threads=threads, resources=Resources(profile.get("default-resources", {})))
    for gpu in (False, True):
        assert get_cpu_setting(job, gpu) == f"--cpus-per-task={threads}"


def test_cohort_window_stride_past_the_width_is_refused(tmp_path: Path, capsys) -> None:
    """Haplotype windows every `stride` bases, `width` long: a larger stride once silently left the variants
    between windows out of every window (and so out of the audit and rank)."""
    rc, err = _check_config(tmp_path, {"cohort": {"window": {"width": 100, "stride": 500}}}, capsys)
    assert rc == 2, err
    assert "cohort.window.stride (500) is larger than cohort.window.width (100)" in err, err
    rc, err = _check_config(tmp_path, {"cohort": {"window": {"width": 500, "stride": 250}}}, capsys)
    assert rc == 0, err


_RULE_DIRECTIVES = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(snakefile=Path("Snakefile"), resource_settings=ResourceSettings(),
                      config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]), workdir=Path("."))
    print(json.dumps({r.name: {"output": bool(r.output), "log": bool(r.log), "benchmark": bool(r.benchmark),
                               "resources": sorted(r.resources)} for r in wf._workflow.rules}))
"""


def test_every_rule_has_log_benchmark_threads_and_resources(workflow_copy: Path) -> None:
    """Snakemake-workflows style: every rule that makes files has log, benchmark, threads and mem_mb / runtime
    (prefetch once lacked benchmark, threads and resources; calibration its benchmark)."""
    import json
    import re
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _RULE_DIRECTIVES, "configs/calibration.yaml"], cwd=workflow_copy,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    rules = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"windows", "report", "prefetch", "calibration", "planted_sae"} <= set(rules)
    text = "\n".join(p.read_text() for p in sorted((workflow_copy / "workflow" / "rules").glob("*.smk")))
    bad = []
    for name, rule in rules.items():
        if not rule["output"]:  # target rules: all, planted
            continue
        missing = [key for key in ("log", "benchmark") if not rule[key]]
        missing += [key for key in ("mem_mb", "runtime") if key not in rule["resources"]]
        block = re.search(rf"^\s*rule {name}:\n(.*?)(?=^\s*rule \w+:|\Z)", text, flags=re.M | re.S)
        if block is None or not re.search(r"^\s+threads:", block.group(1), flags=re.M):
            missing.append("threads")
        if missing:
            bad.append(f"{name}: {missing}")
    assert not bad, bad


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["stage", "windows", "not json"], "error: stage job: not valid JSON"),
        (["stage", "windows", "[]"], "error: stage job: expected a JSON object with input, output"),
        (["stage", "windows", '{"input": {}, "output": {}, "threads": "x"}'],
         "error: stage job: threads must be an integer >= 1"),
        (["stage", "windows", '{"input": [], "output": {}}'], "error: stage job: input must be objects"),
        (["stage", "windows", '{"input": {}, "output": {}}'], "error: stage job: no input 'fasta' (the job has none)"),
        (["stage", "no_such_stage", "{}"], "error: unknown stage 'no_such_stage'; stages: windows,"),
    ],
)
def test_stage_verb_refuses_a_bad_job_in_one_line(capsys, args: list[str], expected: str) -> None:
    """`interp stage` typed by hand: a job that is not the rules' JSON once ended in a JSONDecodeError or
    AttributeError traceback."""
    from interp.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_stage_stopped_by_a_signal_removes_its_temporary_files_and_says_so(tmp_path: Path, signame: str) -> None:
    """A job killed by SIGTERM (Snakemake cancelling its jobs, a `timeout`, SLURM at the time limit) or SIGINT
    once left its temporary output beside the outputs (`.<name>.tmp<pid>`: Python's default SIGTERM exit skips
    the `finally` of interp.io.atomic_path, and no later run removes another process's file) and an empty
    log, or a KeyboardInterrupt traceback. Now: no file left, one line in the log naming the stage and the
    signal, a non-zero exit."""
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    script = (
        "import sys, time\n"
        "from interp import cli, stages\n"
        "from interp.io import atomic_path\n"
        "def slow(job):\n"
        "    with atomic_path(job.output['out']) as tmp:\n"
        "        tmp.write_text('half')\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(60)\n"
        "stages.windows = slow\n"
        "sys.exit(cli.main(['stage', 'windows', sys.argv[1]]))\n")
    out = tmp_path / "out" / "table.tsv"
    job = json.dumps({"input": {}, "output": {"out": str(out)}, "params": {}, "threads": 1})
    proc = subprocess.Popen([sys.executable, "-c", script, job], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + getattr(signal, signame), (proc.returncode, err)
    assert list(out.parent.iterdir()) == [], list(out.parent.iterdir())
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "stage windows" in lines[0] and signame in lines[0], err


@pytest.mark.parametrize("run", ["..", ".", ".hidden", "-x", "a/b", "a b"])
def test_run_name_that_is_not_a_plain_folder_name_is_refused(tmp_path: Path, capsys, run: str) -> None:
    """run '..' once passed the schema: results/../ and reports/../index.html wrote into the repository itself
    (its benchmarks/ folder among them), and run '.' wrote reports/index.html beside every run's folder."""
    rc, err = _check_config(tmp_path, {"run": run}, capsys)
    assert rc == 2, err
    assert f"run: {run!r} is not allowed; expected a name for results/<run>/" in err, err


@pytest.mark.parametrize("run", ["demo", "7", "my_cohort-v2.1"])
def test_plain_run_names_pass(tmp_path: Path, capsys, run: str) -> None:
    rc, err = _check_config(tmp_path, {"run": run}, capsys)
    assert rc == 0, err


def test_sweep_name_dotdot_is_refused(tmp_path: Path, capsys) -> None:
    """sae.sweep name '..' once passed: rule sae_sweep's outputs sae/<model>/<layer>/sweep/../weights.safetensors
    and metrics.json were the main SAE's own files, so the sweep entry's SAE could silently replace the main SAE
    used by the cohort embedding, audit and rank."""
    rc, err = _check_config(tmp_path, {"sae": {"sweep": [{"name": "..", "k": 4}]}}, capsys)
    assert rc == 2, err
    assert "sae.sweep.0.name: '..' is not allowed; expected a name for sae/<model>/<layer>/sweep/<name>/" in err, err
    rc, err = _check_config(tmp_path, {"models": ["../configs/test"]}, capsys)
    assert rc == 2 and "models.0: '../configs/test' is not allowed; expected a model card name" in err, err


def test_unknown_calibration_cell_is_one_config_error(tmp_path: Path, capsys, workflow_copy: Path) -> None:
    """calibration.cells naming no cell once passed check-config, and every snakemake run (whatever its target)
    ended in a ValueError with traceback lines from calibration.smk."""
    rc, err = _check_config(tmp_path, {"calibration": {"cells": ["base", "nosuchcell"]}}, capsys)
    assert rc == 2, err
    assert "calibration.cells: unknown calibration cell(s) ['nosuchcell']; cells: base," in err, err
    out = _failed_dry_run(workflow_copy, {"calibration": {"cells": ["nosuchcell"]}})
    user = workflow_copy / "configs" / "user.yaml"  # the user's config file is named, not just "config"
    assert f"invalid configuration: config ({user}): calibration.cells: unknown calibration cell(s)" in out, out
    assert "ValueError" not in out and "select_cells" not in out, out


def test_model_listed_twice_is_refused(tmp_path: Path, capsys) -> None:
    """models: [tiny-dnalm, tiny-dnalm] once passed: every rule got each embedding folder twice, and the audit
    (audit_summary.audit_run) tested each (phenotype, layer) twice, doubling the Holm family of every verdict."""
    rc, err = _check_config(tmp_path, {"models": ["tiny-dnalm", "tiny-dnalm"]}, capsys)
    assert rc == 2, err
    assert "models: ['tiny-dnalm', 'tiny-dnalm'] has non-unique elements" in err, err


def test_calibration_model_without_a_card_is_one_config_error(tmp_path: Path, capsys, workflow_copy: Path) -> None:
    """calibration.model naming no card once passed check-config, and `snakemake calibration` stopped with an
    InputFunctionException: a FileNotFoundError traceback through common.smk's load_card."""
    rc, err = _check_config(tmp_path, {"calibration": {"model": "nosuchmodel"}}, capsys)
    assert rc == 2, err
    assert "calibration.model: no model card models/nosuchmodel.yaml (known cards: " in err, err
    path = workflow_copy / "configs" / "user.yaml"
    path.write_text(yaml.safe_dump({"calibration": {"model": "nosuchmodel", "cells": ["base"], "replicates": 1}}))
    res = run_snakemake(workflow_copy, "calibration", "-n", "--configfile", "configs/calibration.yaml", str(path))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert (f"invalid configuration: config ({workflow_copy / 'configs' / 'calibration.yaml'}, {path}): "
            "calibration.model: no model card models/nosuchmodel.yaml") in out, out
    assert "FileNotFoundError" not in out and "Traceback" not in out, out


def test_bed_that_is_a_folder_or_gzipped_is_one_config_error(tmp_path: Path, capsys, workflow_copy: Path) -> None:
    """cohort.bed is read when the Snakefile is parsed (to plan shards): a folder or a gzipped BED once passed
    check-config and stopped snakemake with an IsADirectoryError / UnicodeDecodeError traceback."""
    import gzip

    from interp.genome.regions import read_bed

    gz = tmp_path / "regions.bed.gz"
    gz.write_bytes(gzip.compress(b"chr17\t6010\t14000\tpartA\n"))
    for bed, expected in ((str(tmp_path), "is a folder; expected a file"),
                          (str(gz), "not a plain-text BED file (gzipped? give it uncompressed)")):
        rc, err = _check_config(tmp_path, {"cohort": {"genes": [], "bed": bed}}, capsys)
        assert rc == 2, err
        assert f"cohort.bed = {bed!r}: {expected}" in err, err
    with pytest.raises(InputError, match="not a plain-text BED file"):
        read_bed(gz, {"chr17": "A" * 20000})
    (workflow_copy / "configs" / "regions.bed.gz").write_bytes(gz.read_bytes())
    out = _failed_dry_run(workflow_copy, {"cohort": {"genes": [], "bed": "configs/regions.bed.gz"}})
    assert "cohort.bed = 'configs/regions.bed.gz': not a plain-text BED file" in out, out
    assert "UnicodeDecodeError" not in out, out


def test_empty_bed_without_genes_is_one_config_error(tmp_path: Path, capsys, workflow_copy: Path) -> None:
    """An empty cohort.bed (or one of comments only) with no cohort.genes once passed check-config, and snakemake
    stopped with 'InputError in file common.smk ... cohort: no regions to shard' and traceback lines, naming
    neither the BED nor the key."""
    bed = tmp_path / "regions.bed"
    for text in ("", "# no regions yet\ntrack name=x\n\n"):
        bed.write_text(text)
        rc, err = _check_config(tmp_path, {"cohort": {"genes": [], "bed": str(bed)}}, capsys)
        assert rc == 2, err
        assert f"cohort.bed = {str(bed)!r}: no records" in err and "the cohort has no regions" in err, err
    rc, err = _check_config(tmp_path, {"cohort": {"bed": str(bed)}}, capsys)  # demo's gene DOC2B is a region
    assert rc == 0, err
    (workflow_copy / "configs" / "regions.bed").write_text("")
    out = _failed_dry_run(workflow_copy, {"cohort": {"genes": [], "bed": "configs/regions.bed"}})
    user = workflow_copy / "configs" / "user.yaml"
    assert f"invalid configuration: config ({user}): cohort.bed = 'configs/regions.bed': no records" in out, out
    assert "no regions to shard" not in out, out


def test_config_file_that_is_a_folder_or_not_text_is_one_line(tmp_path: Path, capsys) -> None:
    """`interp check-config` (and summary, prefetch) once answered a folder or a binary file given as the config
    with an IsADirectoryError / UnicodeDecodeError traceback."""
    from interp.cli import main

    binary = tmp_path / "user.yaml"
    binary.write_bytes(b"run: \xff\xfe\n")
    for path, expected in ((tmp_path, f"config file {tmp_path} is a folder; expected a YAML file"),
                           (binary, f"{binary}: not a UTF-8 text file")):
        rc = main(["check-config", str(path)])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.startswith(f"error: {expected}") and len(err.strip().splitlines()) == 1, err


def test_fasta_that_is_a_folder_is_one_config_error(tmp_path: Path, capsys) -> None:
    rc, err = _check_config(tmp_path, {"reference": {"fasta": str(tmp_path)}}, capsys)
    assert rc == 2 and f"reference.fasta = {str(tmp_path)!r}: is a folder; expected a file" in err, err


def test_summary_of_a_run_without_a_report_says_so(tmp_path: Path, capsys, monkeypatch) -> None:
    """`interp summary` once printed 'Report: reports/<run>/index.html' for a run that had written none."""
    from interp.cli import main
    from interp.config import ROOT, load_workflow_config

    reference = load_workflow_config([])["reference"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user.yaml").write_text(yaml.safe_dump({"run": "never_run", "reference": {
        "fasta": str(ROOT / reference["fasta"]), "annotation": str(ROOT / reference["annotation"])}}))
    assert main(["summary", "--configfile", "user.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: reports/never_run/index.html: no report for run 'never_run' yet"), err
    (tmp_path / "reports" / "never_run").mkdir(parents=True)
    (tmp_path / "reports" / "never_run" / "index.html").write_text("<html></html>")
    assert main(["summary", "--configfile", "user.yaml"]) == 0
    assert "Report: reports/never_run/index.html" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"planted": {"windows": {"widht": 64}}}, "unknown key 'widht' in planted.windows; allowed keys: "
                                                  "gc_high_quantile, heldout_fraction, n_blocks, stride, width"),
        ({"planted": {"windows": {"stride": 0}}}, "planted.windows.stride: 0 is less than the minimum of 1"),
        ({"planted": {"sae": {"n_featurs": 64}}}, "planted.sae: unknown key 'n_featurs' for SAEConfig"),
        ({"planted": {"sae": {"k": 5000}}}, "planted.sae, field k: expected at most n_features (1024), got 5000"),
    ],
)
def test_planted_overrides_are_checked_like_their_sections(tmp_path: Path, capsys, patch: dict,
                                                           expected: str) -> None:
    """planted.windows and planted.sae (merged over `windows` / `sae` for the `planted` target) once took any key:
    a misspelt windows key was silently ignored, and a bad SAE key stopped planted_sae only after the planted
    LM had trained (about 17 minutes)."""
    rc, err = _check_config(tmp_path, patch, capsys)
    assert rc == 2, err
    assert expected in err, err


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"planted": {"layer": "block9"}}, "planted.layer: model tiny-dnalm has no layer 'block9' at "
                                          "planted.lm_overrides' depth; its layers are embed, block1, block2, block3"),
        ({"planted": {"lm_overrides": {"n_layers": 1}}}, "planted.layer: model tiny-dnalm has no layer 'block2'"),
    ],
)
def test_planted_layer_the_planted_model_lacks_is_refused(tmp_path: Path, capsys, patch: dict, expected: str) -> None:
    """planted.layer was never checked: a layer the planted LM lacks (at planted.lm_overrides' n_layers) failed
    only in rule planted_embed, after the planted LM had been trained."""
    rc, err = _check_config(tmp_path, patch, capsys)
    assert rc == 2, err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    rc, err = _check_config(tmp_path, {"planted": {"layer": "block1", "lm_overrides": {"n_layers": 1}}}, capsys)
    assert rc == 0, err


def test_planted_overrides_that_are_settings_pass(tmp_path: Path, capsys) -> None:
    rc, err = _check_config(tmp_path, {"planted": {"windows": {"width": 64, "n_blocks": 4},
                                                   "sae": {"epochs": 2, "k": 8}}}, capsys)
    assert rc == 0, err


def _token_store(path: Path, x: np.ndarray, tokens_per_window: int = 100) -> Path:
    from interp.embed.store import TokenStoreWriter

    n = len(x)
    writer = TokenStoreWriter(path, x.shape[1], ["none"], "synthetic", "layer0", chunk_rows=4096)
    writer.append(x, np.arange(n) // tokens_per_window, np.arange(n) % tokens_per_window,
                  {"none": np.zeros(n, dtype=np.uint8)})
    writer.close()
    return path


def test_sae_state_of_other_tokens_is_not_resumed(tmp_path: Path) -> None:
    """The SAE's training state (sae/<model>/<layer>/train_state.safetensors) resumed whenever the SAE settings and
    the training-token count matched: after a crash, a rerun on new tokens of the same shape (the LM retrained
    under changed lm.overrides, a new checkpoint) went on from weights fitted to the old tokens, and its SAE
    differed from a clean run. The state now also carries a fingerprint of the tokens."""
    import pytorch_lightning as pl_lightning
    import torch

    from interp.sae import SAEConfig, train_sae

    class KillAfter(pl_lightning.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            if module.step >= 12:
                raise RuntimeError("simulated kill")

    rng = np.random.default_rng(0)
    n, d = 6000, 16
    old = _token_store(tmp_path / "old.zarr", rng.normal(size=(n, d)).astype(np.float32))
    new = _token_store(tmp_path / "new.zarr", rng.normal(size=(n, d)).astype(np.float32))
    starts = np.arange(n // 100) * 100
    windows = pl.DataFrame({"window_index": np.arange(n // 100), "contig": ["chr1"] * (n // 100), "start": starts,
                            "end": starts + 100, "window_id": [f"chr1:{s}-{s + 100}" for s in starts]})
    cfg = SAEConfig(n_features=32, k=2, epochs=3, batch_size=256, seed=0, split_block_bases=500,
                    checkpoint_every_steps=5, init_sample_tokens=512)
    state = tmp_path / "train_state.safetensors"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_sae(old, cfg, windows, threads=1, state_path=state, callbacks=[KillAfter()])
    assert state.exists()
    resumed, metrics = train_sae(new, cfg, windows, threads=1, state_path=state)
    clean, _ = train_sae(new, cfg, windows, threads=1)
    assert metrics["resumed_from_step"] is None
    for (name, a), (_, b) in zip(clean.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    # the same tokens still resume
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_sae(new, cfg, windows, threads=1, state_path=state, callbacks=[KillAfter()])
    assert train_sae(new, cfg, windows, threads=1, state_path=state)[1]["resumed_from_step"] == 10


def test_sae_stage_keeps_its_training_state_until_its_outputs_are_written(tmp_path: Path, monkeypatch) -> None:
    """The SAE stages removed the training state as soon as training ended, before loss recovered, labels and
    the weights were written: a failure there (a time limit, a full disk) meant training again from step 0.
    Now the state stays until the outputs are written, and the rerun trains nothing."""
    from interp import stages
    from interp.sae import train

    rng = np.random.default_rng(0)
    n = 6000
    tokens = tmp_path / "tokens"
    _token_store(tokens / "block1.zarr", rng.normal(size=(n, 16)).astype(np.float32))
    starts = np.arange(n // 100) * 100
    pl.DataFrame({"window_index": np.arange(n // 100), "contig": ["chr1"] * (n // 100), "start": starts,
                  "end": starts + 100, "window_id": [f"chr1:{s}-{s + 100}" for s in starts]}
                 ).write_parquet(tmp_path / "w.parquet")
    out = tmp_path / "sae"
    job = stages.Job(input={"tokens_dir": str(tokens), "windows": str(tmp_path / "w.parquet")},
                     output={"weights": str(out / "weights.safetensors"), "metrics": str(out / "metrics.json")},
                     params={"base": {"n_features": 32, "k": 2, "epochs": 2, "batch_size": 256, "seed": 0,
                                      "split_block_bases": 500, "init_sample_tokens": 512},
                             "overrides": {}, "name": "k2", "model": "m", "layer": "block1"})
    save = train.save_sae

    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(train, "save_sae", full_disk)
    with pytest.raises(OSError, match="No space"):
        stages.sae_sweep(job)
    assert (out / "train_state.safetensors").exists() and not (out / "metrics.json").exists()
    monkeypatch.setattr(train, "save_sae", save)
    stages.sae_sweep(job)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == metrics["steps"] > 0  # every step came from the kept state
    assert not (out / "train_state.safetensors").exists()


def _calibration_local():
    """workflow/scripts/calibration_local.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("calibration_local",
                                                  Path(__file__).parent.parent / "workflow/scripts/calibration_local.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_calibration_reaudit_never_leaves_a_half_written_summary(tmp_path: Path, monkeypatch) -> None:
    """calibration_local.py --reaudit rewrote each replicate summary in place with Path.write_text: a run stopped
    mid-write (the script is meant to be stopped and restarted) left a truncated JSON where the earlier summary
    was, which `snakemake calibration` then took as a finished replicate."""
    import json

    import interp.calibration

    script = _calibration_local()
    monkeypatch.setattr(interp.calibration, "reaudit_replicate", lambda folder, config, _: {"verdicts": ["PASS"] * 50})
    target = tmp_path / "replicates" / "base" / "0.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"verdicts": ["earlier"]}))

    def interrupted(self: Path, text: str, *args, **kwargs) -> int:
        with open(self, "w") as fh:
            fh.write(text[: len(text) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        script._reaudit_one((str(tmp_path / "archive" / "base" / "0"), str(target)))
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"verdicts": ["earlier"]}
    assert [p.name for p in target.parent.iterdir()] == ["0.json"]


def test_calibration_local_shows_snakemakes_message_for_a_bad_config(workflow_copy: Path, monkeypatch) -> None:
    """calibration_local.py planned its jobs with `snakemake -n -p` under check=True and captured output: a bad
    --overlay config ended in a CalledProcessError traceback that hid snakemake's message naming the key."""
    import os
    import sys

    script = _calibration_local()
    (workflow_copy / "overlay.yaml").write_text("audit: {alpha: '0.05'}\n")
    monkeypatch.chdir(workflow_copy)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    with pytest.raises(SystemExit) as exc:
        script._jobs(["results/calibration/calibration/replicates/base/0.json"], "calibration",
                     [*script.CONFIGS, "overlay.yaml"])
    assert "audit.alpha: expected number, got string ('0.05')" in str(exc.value), exc.value


def test_calibration_reaudit_covers_every_archived_replicate_by_default(tmp_path: Path, monkeypatch) -> None:
    """--reaudit took --replicates' default of 100 as its range, so replicates 100-199 of the cells run to 200
    (mild confounding, admixed_with_sources) were silently left with their old summaries."""
    import sys

    script = _calibration_local()
    seen: list[range] = []
    monkeypatch.setattr(script, "_reaudit", lambda archive, out, cells, replicates, configs, workers:
                        seen.append(replicates) or 0)
    monkeypatch.setattr(sys, "argv", ["calibration_local.py", "--reaudit", "--archive", "a"])
    script.main()
    assert 0 in seen[-1] and 150 in seen[-1] and 10**6 in seen[-1]
    monkeypatch.setattr(sys, "argv", ["calibration_local.py", "--reaudit", "--archive", "a", "--first", "100",
                                      "--replicates", "50"])
    script.main()
    assert seen[-1] == range(100, 150)


#: Linux's cap on one argument of exec (MAX_ARG_STRLEN): a rule's whole shell command is one (`bash -c '...'`)
MAX_ARG_STRLEN = 128 * 1024


def test_compacted_paths_expand_to_the_same_list() -> None:
    from interp.stages import COMPACT_MIN_PATHS, compact_paths, expand_paths

    cases = [[f"results/r/cohort/shards/per1/s{i:04d}/haplotypes.parquet" for i in range(800)],
             ["aXa", "aa", "a", "aaa", "ba", "", "ab", "a/b"],  # prefix and suffix must not overlap
             [f"results/c/replicates/{cell}/{i}.json" for cell in ("base", "null-big") for i in range(12)],
             ["x.json"] * COMPACT_MIN_PATHS]
    for paths in cases:
        packed = compact_paths(paths)
        assert isinstance(packed, dict) and expand_paths(packed) == paths
    assert compact_paths(["a", "b"]) == ["a", "b"] and expand_paths(["a", "b"]) == ["a", "b"]


def test_many_shards_keep_every_shell_command_under_the_argument_cap(workflow_copy: Path) -> None:
    """800 cohort regions at cohort.shard_genes: 1 (or a calibration suite of 1,000+ replicates) once gave the
    gather rules a 158 KB command line, their whole JSON job with every shard path: exec refuses an argument over
    128 KiB ("Argument list too long"), so `haplotypes` could not start. Long path lists now travel compacted."""
    from interp.stages import Job

    bed = workflow_copy / "many.bed"
    bed.write_text("".join(f"chr17\t{i * 45}\t{i * 45 + 40}\tr{i}\n" for i in range(800)))
    path = workflow_copy / "configs" / "user.yaml"
    path.write_text(yaml.safe_dump({"run": "many", "cohort": {"genes": [], "bed": str(bed), "shard_genes": 1}}))
    res = run_snakemake(workflow_copy, "-n", "-p", "--configfile", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    commands = [line.removeprefix("Shell command: ") for line in res.stdout.splitlines()
                if line.startswith("Shell command: python -m interp.cli stage ")]
    assert len(commands) > 800
    assert max(len(c.encode()) for c in commands) < MAX_ARG_STRLEN / 4
    gather = next(c for c in commands if c.startswith("python -m interp.cli stage haplotypes '"))
    job = Job.from_json(gather.split(" ", 5)[5].split(" > ")[0].strip("'"))
    assert job.input["shard_assignments"] == [f"results/many/cohort/shards/per1/s{i:04d}/haplotypes.parquet"
                                              for i in range(800)]
    assert len(job.input["shard_stats"]) == 800 and job.output["assignments"] == "results/many/cohort/haplotypes.parquet"


def _gene_config(n: int) -> dict:
    """A user config naming n cohort genes (Ensembl-style IDs, 15 characters: about 19 bytes each as JSON)."""
    return {"run": "genes", "cohort": {"enabled": True, "genes": [f"ENSG{i:011d}" for i in range(n)]}}


def test_a_config_too_long_for_the_jobs_is_refused_naming_the_list(tmp_path: Path, capsys) -> None:
    """cohort.genes travels in the JSON job of check_cohort, haplotypes_shard, ancestry, simulate_cohort and (with
    the whole config) report: with 15,000 names each command was 196-202 KB, over Linux's 128 KiB cap on one
    argument, and those jobs died with "Argument list too long" after the run had started. check-config now
    refuses such a config at once, naming the list and pointing to cohort.bed."""
    from interp.cli import main

    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(_gene_config(15_000)))
    rc = main(["check-config", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert err.startswith(f"error: {path}: cohort.genes (15,000 entries, "), err
    assert "Linux caps at 128 KiB" in err and "cohort.bed" in err, err


def test_the_longest_config_accepted_keeps_every_shell_command_under_the_argument_cap(workflow_copy: Path) -> None:
    """The budget check-config enforces (interp.config.MAX_CONFIG_JSON) leaves room for the paths: a config just
    under it runs with every rule's command line below 128 KiB (the report's carries the whole config)."""
    from interp.config import MAX_CONFIG_JSON, check_config, load_workflow_config

    base = len(json.dumps(check_config(load_workflow_config([]), base_dir=workflow_copy), sort_keys=True))
    n = (MAX_CONFIG_JSON - base - 64) // len('"ENSG00000000000", ')
    cfg = _gene_config(n)
    merged = load_workflow_config([])
    merged["cohort"].update(cfg["cohort"])
    size = len(json.dumps(check_config(merged, base_dir=workflow_copy), sort_keys=True))
    assert MAX_CONFIG_JSON - 1024 < size <= MAX_CONFIG_JSON
    path = workflow_copy / "configs" / "user.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = run_snakemake(workflow_copy, "-n", "-p", "--configfile", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    commands = [line.removeprefix("Shell command: ") for line in res.stdout.splitlines()
                if line.startswith("Shell command: python -m interp.cli stage ")]
    longest = max(commands, key=len)
    assert "stage report " in longest and len(longest.encode()) < MAX_ARG_STRLEN, len(longest.encode())


def test_place_cohort_asks_for_time_by_the_vcf_it_must_copy(workflow_copy: Path) -> None:
    """A plain chromosome VCF is copied whole (bgzip + tabix) by place_cohort: the SLURM job asks for time by its
    size (10 GB: about an hour), not the fixed 10 minutes it had; an indexed VCF keeps the base request."""
    import pysam

    data = workflow_copy / "data"
    data.mkdir()
    ids = [f"S{i}" for i in range(1, 11)]
    (data / "cohort.vcf").write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=chr17,length=40000>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(ids) + "\n"
        "chr17\t7000\t.\tA\tG\t.\tPASS\t.\tGT\t" + "\t".join(["0|1", "0|0"] * 5) + "\n")
    pysam.tabix_compress(str(data / "cohort.vcf"), str(data / "indexed.vcf.gz"))
    pysam.tabix_index(str(data / "indexed.vcf.gz"), preset="vcf")
    with open(data / "cohort.vcf", "r+b") as fh:  # 10 GB (sparse); a dry run reads the header only
        fh.truncate(10 << 30)
    (data / "samples.tsv").write_text("sample_id\tcase\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(ids)))
    runtimes = {}
    for vcf in ("cohort.vcf", "indexed.vcf.gz"):
        path = workflow_copy / "configs" / "user.yaml"
        path.write_text(yaml.safe_dump({"run": "user", "sae": {"sweep": []}, "cohort": {
            "source": "vcf", "vcf": f"data/{vcf}", "samples": "data/samples.tsv", "phenotypes": ["case"],
            "covariates": [], "population_column": None, "genes": ["DOC2B"]}}))
        res = run_snakemake(workflow_copy, "results/user/cohort/validation.json", "-n", "--profile",
                            "configs/profiles/slurm", "--configfile", str(path))
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        block = out[out.index("rule place_cohort:"):]
        runtimes[vcf] = int(block[block.index("runtime="):].split("=")[1].split(",")[0].split()[0])
    assert runtimes["indexed.vcf.gz"] == 10, runtimes
    assert runtimes["cohort.vcf"] >= 60, runtimes
