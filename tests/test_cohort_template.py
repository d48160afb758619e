"""configs/cohort_template.yaml is a valid config once its placeholder files exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from interp.config import check_config, load_config_files
from interp.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _filled(tmp_path):
    template = yaml.safe_load((REPO / "configs" / "cohort_template.yaml").read_text())
    for key in ("fasta", "annotation"):
        (tmp_path / Path(template["reference"][key]).name).write_text("placeholder\n")
        template["reference"][key] = str(tmp_path / Path(template["reference"][key]).name)
    for key in ("vcf", "samples", "ancestry_vcf"):
        (tmp_path / Path(template["cohort"][key]).name).write_text("placeholder\n")
        template["cohort"][key] = str(tmp_path / Path(template["cohort"][key]).name)
    # check_config reads the samples sheet itself (phenotypes, covariates): one the template describes
    rows = [f"S{i}\t{'EUR' if i % 2 else 'AFR'}\t{i % 3 % 2}\t{i % 2 + 1}\t{30 + i}" for i in range(24)]
    Path(template["cohort"]["samples"]).write_text("sample_id\tsuperpopulation\tcase\tsex\tage\n" + "\n".join(rows) + "\n")
    filled = tmp_path / "my_cohort.yaml"
    filled.write_text(yaml.safe_dump(template))
    return load_config_files([REPO / "configs" / "demo.yaml", filled])  # as snakemake --configfile merges


def test_template_passes_the_schema_with_files_in_place(tmp_path):
    cfg = check_config(_filled(tmp_path), base_dir=REPO, source="cohort_template.yaml")
    assert cfg["cohort"]["source"] == "vcf" and cfg["cohort"]["ancestry_vcf"].endswith("ancestry_markers.vcf.gz")
    assert cfg["cohort"]["categorical_covariates"] == []


def test_categorical_covariate_must_be_listed_as_a_covariate(tmp_path):
    merged = _filled(tmp_path)
    merged["cohort"]["categorical_covariates"] = ["batch"]  # the template's covariates are sex and age
    with pytest.raises(InputError, match=r"cohort.categorical_covariates \['batch'\] must also be listed"):
        check_config(merged, base_dir=REPO, source="my_cohort.yaml")
    merged["cohort"]["categorical_covariates"] = ["sex"]
    assert check_config(merged, base_dir=REPO)["cohort"]["categorical_covariates"] == ["sex"]


@pytest.mark.parametrize("change, message", [
    ({"covariates": ["sex", "case"]}, "'case' is listed both as phenotype and as covariate"),
    ({"covariates": ["superpopulation"]}, "'superpopulation' is listed both as covariate and as population column"),
    ({"phenotypes": ["case", "case"]}, r"cohort.phenotypes: \['case', 'case'\] has non-unique elements"),
    ({"genes": ["BRCA1", "BRCA1"]}, r"cohort.genes: \['BRCA1', 'BRCA1'\] has non-unique elements"),
])
def test_a_samples_column_has_one_role(tmp_path, change, message):
    """A phenotype adjusted for itself (or the labels as a covariate) would explain every test away."""
    merged = _filled(tmp_path)
    merged["cohort"].update(change)
    with pytest.raises(InputError, match=message):
        check_config(merged, base_dir=REPO, source="my_cohort.yaml")


def test_command_line_tools_merge_over_the_default_config_like_the_snakefile():
    """configs/test.yaml leaves `models` and more to configs/demo.yaml: check-config and summary accept it."""
    from interp.cli import main

    assert main(["check-config", str(REPO / "configs" / "test.yaml")]) == 0
