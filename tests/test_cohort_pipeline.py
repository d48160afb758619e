"""The cohort stages end to end on simulated cohorts (msprime cohort -> haplotypes -> genotype PCs ->
tiny-LM embeddings of every distinct haplotype window -> audit -> rank) at the demo's size (n = 300), on
three seeds: an integration test with gross checks of the planted answers (truth.json). The error rates
of the verdicts and of rank are measured over replicates by the calibration suite (tests/test_calibration.py,
reports/calibration/), not here.

Gross checks: the ancestry-only phenotype (prevalence 0.6 / 0.1 / 0.3) is never PASSed and its signal is
seen (FAIL or INCONCLUSIVE: at n = 300 the data often cannot exclude a within-ancestry effect of the FAIL
margin); `causal` / `null` are never FAILed; the planted causal variant tops the variant ranking and the
top model-derived feature lies in its window in at least 2 of 3 seeds; for `null`, no feature passes
q < 0.05 in at least 2 of 3 seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from interp import stages
from interp.config import check_config
from tests.conftest import DEMO_FASTA, DEMO_GENES, REPO, train_small_reference_model

SEEDS = (11, 12, 13)
LAYER = "block2"


def _config(seed: int) -> dict:
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg.update({"seed": seed, "run": f"calib{seed}"})
    cfg["reference"].update({"fasta": str(DEMO_FASTA), "annotation": str(DEMO_GENES)})
    cfg["audit"].update({"max_null_replicates": 499, "bootstrap": 20})
    cfg["rank"].update({"resamples": 10})
    return check_config(cfg, base_dir=REPO)


def _job(inputs: dict, outputs: dict, params: dict) -> stages.Job:
    return stages.Job(input={k: str(v) if isinstance(v, Path) else v for k, v in inputs.items()},
                      output={k: str(v) for k, v in outputs.items()}, params=params, threads=1)


@pytest.fixture(scope="module")
def reference_model(tmp_path_factory) -> dict:
    """A small tiny-dnalm and a TopK SAE on its block2 tokens, trained once for all seeds."""
    return train_small_reference_model(tmp_path_factory.mktemp("reference"), _config(7), LAYER)


def _run_cohort(seed: int, reference_model: dict, out: Path) -> dict:
    cfg = _config(seed)
    c = out / "cohort"
    ref = {"fasta": DEMO_FASTA, "annotation": DEMO_GENES}
    params = {"reference": cfg["reference"], "cohort": cfg["cohort"], "n_folds": cfg["audit"]["n_folds"],
              "seed": seed}
    stages.simulate_cohort(_job(ref, {"vcf": c / "in.vcf.gz", "tbi": c / "in.vcf.gz.tbi",
                                      "samples": c / "samples.tsv", "truth": c / "truth.json",
                                      "panel": c / "panel.vcf.gz", "panel_tbi": c / "panel.vcf.gz.tbi"}, params))
    stages.place_cohort(_job({**ref, "vcf": c / "in.vcf.gz"}, {"vcf": c / "cohort.vcf.gz",
                                                               "tbi": c / "cohort.vcf.gz.tbi",
                                                               "regions": c / "regions.parquet"}, params))
    # as the workflow runs them: the regions from place_cohort's regions.parquet, no annotation
    io = {"fasta": DEMO_FASTA, "regions": c / "regions.parquet", "vcf": c / "cohort.vcf.gz",
          "samples": c / "samples.tsv", "panel": c / "panel.vcf.gz"}
    stages.check_cohort(_job(io, {"summary": c / "validation.json"}, {**params, "user_vcf": str(c / "in.vcf.gz")}))
    stages.haplotypes(_job(io, {"assignments": c / "hap.parquet", "sequences": c / "seq.parquet",
                                "stats": c / "hap.json"}, params))
    stages.ancestry(_job(io, {"genotypes": c / "geno.h5ad"}, params))
    emb = c / "emb" / "tiny-dnalm"
    stages.embed_cohort(_job({"card": reference_model["card"], "checkpoint": reference_model["checkpoint"],
                              "sequences": c / "seq.parquet", "assignments": c / "hap.parquet",
                              "genotypes": c / "geno.h5ad", "sae": reference_model["sae"]},
                             {"out_dir": emb, "stats": c / "emb.json"},
                             {"layers": [LAYER], "sae_layer": LAYER, "batch_size": 64, "device": "cpu",
                              "cache": None, "keep_haplotypes": False}))
    cohort_cfg = {"phenotypes": cfg["cohort"]["phenotypes"], "covariates": cfg["cohort"]["covariates"],
                  "seed": seed}
    stages.audit(_job({"emb_dirs": [str(emb)]}, {"parquet": c / "audit.parquet", "tsv": c / "audit.tsv",
                                                 "details": c / "audit.json"},
                      {"audit": cfg["audit"], **cohort_cfg, "population_column": "population", "sae_layer": LAYER}))
    stages.rank(_job({"emb_dirs": [str(emb)], "genotypes": c / "geno.h5ad", **ref},
                     {"parquet": c / "bio.parquet", "tsv": c / "bio.tsv"},
                     {"rank": cfg["rank"], **cohort_cfg, "reference": cfg["reference"]}))
    from interp.report.build import truth_recovery

    audit = pl.read_parquet(c / "audit.parquet")
    bio = pl.read_parquet(c / "bio.parquet")
    truth = json.loads((c / "truth.json").read_text())
    hap = json.loads((c / "hap.json").read_text())
    return {"audit": audit, "bio": bio, "recovery": truth_recovery(truth, audit, bio), "hap": hap}


@pytest.fixture(scope="module")
def cohorts(reference_model, tmp_path_factory) -> dict[int, dict]:
    return {seed: _run_cohort(seed, reference_model, tmp_path_factory.mktemp(f"seed{seed}")) for seed in SEEDS}


def _verdict(result: dict, phenotype: str) -> str:
    return result["audit"].filter(pl.col("phenotype") == phenotype)["verdict"][0]


def test_confounded_is_never_passed_and_its_signal_is_seen(cohorts) -> None:
    # the demo's ancestry-only phenotype (prevalence 0.6 / 0.1 / 0.3 at n = 300): a signal that ancestry
    # carries, so FAIL or INCONCLUSIVE; its rates over replicates are measured by the calibration suite
    verdicts = {s: _verdict(r, "confounded") for s, r in cohorts.items()}
    assert all(v in {"FAIL", "INCONCLUSIVE"} for v in verdicts.values()), verdicts
    for result in cohorts.values():
        marks = [v for k, v in result["recovery"]["verdicts"].items() if k.startswith("confounded|")]
        assert marks and all(v["as_expected"] is True and v["expected"] == "not PASS" for v in marks), marks


def test_causal_and_null_never_fail(cohorts) -> None:
    for seed, result in cohorts.items():
        for phenotype in ("causal", "null"):
            assert _verdict(result, phenotype) != "FAIL", (seed, phenotype, result["audit"])


def test_causal_variant_tops_variants_and_top_model_feature_sits_in_its_window(cohorts) -> None:
    hits = [r["recovery"]["causal_variant_rank"] == 1 and r["recovery"]["top_model_feature_in_causal_window"]
            for r in cohorts.values()]
    assert sum(hits) >= 2, {s: r["recovery"] for s, r in cohorts.items()}


def test_null_phenotype_has_no_discovery(cohorts) -> None:
    clean = [r["bio"].filter((pl.col("phenotype") == "null") & (pl.col("q") < 0.05)).is_empty()
             for r in cohorts.values()]
    assert sum(clean) >= 2, clean


def test_each_distinct_haplotype_window_is_embedded_once(cohorts) -> None:
    for result in cohorts.values():
        hap = result["hap"]
        assert hap["n_distinct"] < hap["n_haplotype_windows"]
        assert hap["dedup_ratio"] == pytest.approx(hap["n_haplotype_windows"] / hap["n_distinct"])


def _simulated(tmp_path: Path, per_population: int | None = None) -> tuple[dict, Path, dict, dict]:
    """A small simulated cohort under tmp_path/cohort (in.vcf.gz, samples.tsv, panel.vcf.gz) through the
    simulate_cohort stage: (config, its folder, reference inputs, stage params)."""
    cfg = _config(11)
    cohort = cfg["cohort"] if per_population is None else {
        **cfg["cohort"], "populations": {"YRI": per_population, "CEU": per_population, "CHB": per_population}}
    c = tmp_path / "cohort"
    ref = {"fasta": DEMO_FASTA, "annotation": DEMO_GENES}
    params = {"reference": cfg["reference"], "cohort": cohort, "n_folds": cfg["audit"]["n_folds"], "seed": 11}
    stages.simulate_cohort(_job(ref, {"vcf": c / "in.vcf.gz", "tbi": c / "in.vcf.gz.tbi",
                                      "samples": c / "samples.tsv", "truth": c / "truth.json",
                                      "panel": c / "panel.vcf.gz", "panel_tbi": c / "panel.vcf.gz.tbi"}, params))
    return cfg, c, ref, params


def _place_and_check(ref: dict, vcf: Path, samples: Path, c: Path, params: dict, **extra) -> dict:
    """place_cohort then check_cohort, as the workflow runs them; returns their outputs' paths."""
    out = {"vcf": c / "cohort.vcf.gz", "tbi": c / "cohort.vcf.gz.tbi", "regions": c / "regions.parquet",
           "summary": c / "validation.json"}
    stages.place_cohort(_job({**ref, "vcf": vcf}, {k: out[k] for k in ("vcf", "tbi", "regions")}, params))
    stages.check_cohort(_job({"fasta": ref["fasta"], "regions": out["regions"], "vcf": out["vcf"], "tbi": out["tbi"],
                              "samples": samples, **extra}, {"summary": out["summary"]},
                             {**params, "user_vcf": str(vcf)}))
    return out


def test_place_cohort_links_an_indexed_vcf_and_check_cohort_names_user_files_and_checks_covariates_first(
        tmp_path) -> None:
    """place_cohort: an indexed bgzipped VCF is linked, not copied, a plain VCF copied once (bgzip + tabix);
    check_cohort's errors name the user's file, never the placed copy or its staging folder, and write no
    validation.json; covariates (missing values) are refused before any genotype work, naming the samples
    file."""
    import gzip
    import os

    from interp.errors import InputError

    _, c, ref, params = _simulated(tmp_path)
    out = _place_and_check(ref, c / "in.vcf.gz", c / "samples.tsv", c, params)
    assert os.path.islink(out["vcf"]) and Path(out["vcf"]).resolve() == (c / "in.vcf.gz").resolve()
    assert os.path.islink(out["tbi"]) and out["summary"].exists()
    for p in out.values():
        p.unlink()

    plain = c / "user.vcf"
    plain.write_bytes(gzip.decompress((c / "in.vcf.gz").read_bytes()))
    table = pl.read_csv(c / "samples.tsv", separator="\t")
    table.slice(1).write_csv(c / "fewer.tsv", separator="\t")  # the VCF's first sample is not in the sheet
    with pytest.raises(InputError) as err:
        _place_and_check(ref, plain, c / "fewer.tsv", c, params)
    assert str(err.value).startswith(f"{plain}: the VCF and the samples table list different samples")
    assert "cohort.vcf.gz" not in str(err.value) and not (c / ".staging").exists()
    assert out["vcf"].exists() and not os.path.islink(out["vcf"])  # the indexed copy, kept for the rerun
    assert not out["summary"].exists()

    ages = [None if i == 3 else 40.0 + i % 20 for i in range(table.height)]
    table.with_columns(pl.Series("age", ages)).write_csv(c / "aged.tsv", separator="\t", null_value="NA")
    with_age = {**params, "cohort": {**params["cohort"], "covariates": ["age"]}}
    with pytest.raises(InputError, match=rf"{c / 'aged.tsv'}: covariate 'age' has 1 missing value"):
        _place_and_check(ref, plain, c / "aged.tsv", c, with_age)
    assert not (c / ".staging").exists() and not out["summary"].exists()

    # an unphased VCF: under unphased: ref every heterozygous call would become REF, so it is refused;
    # unphased: N masks them knowingly and is recorded
    text = plain.read_text().split("\n")
    unphased = c / "unphased.vcf"
    unphased.write_text("\n".join(line if line.startswith("#") else line.replace("|", "/") for line in text))
    with pytest.raises(InputError, match=r"^\S*unphased.vcf: 100% of the \d+ heterozygous calls .* are unphased"):
        _place_and_check(ref, unphased, c / "samples.tsv", c, params)
    masked = {**params, "cohort": {**params["cohort"], "unphased": "N"}}
    _place_and_check(ref, unphased, c / "samples.tsv", c, masked)
    assert json.loads(out["summary"].read_text())["unphased_het_rate"] == 1.0


def test_place_cohort_refusing_a_vcf_names_it_and_places_nothing(tmp_path) -> None:
    """A file that is no VCF: place_cohort's error names the user's file, and it leaves no cohort.vcf.gz, index
    or staging folder that could look complete."""
    from interp.errors import InputError

    cfg = _config(11)
    c = tmp_path / "cohort"
    c.mkdir()
    bad = tmp_path / "user.vcf"
    bad.write_text("this is not a VCF\n")
    out = {"vcf": c / "cohort.vcf.gz", "tbi": c / "cohort.vcf.gz.tbi", "regions": c / "regions.parquet"}
    params = {"reference": cfg["reference"], "cohort": cfg["cohort"], "seed": 11}
    with pytest.raises(InputError) as err:
        stages.place_cohort(_job({"fasta": DEMO_FASTA, "annotation": DEMO_GENES, "vcf": bad}, out, params))
    assert str(bad) in str(err.value) and ".staging" not in str(err.value), err.value
    assert sorted(p.name for p in c.iterdir()) == []


def test_a_cohort_rule_reading_a_key_its_settings_leave_out_is_an_error() -> None:
    """The haplotype shards' settings carry only the cohort keys they read (READ_BY), so that a new phenotype
    does not rebuild them; a stage reading another key would silently see its default, so it raises."""
    from interp.cohort.config import READ_BY, cohort_rule_settings

    section = _config(11)["cohort"]
    for rules, keys in READ_BY.items():
        job = _job({}, {}, {"cohort": cohort_rule_settings(section, rules), "cohort_rules": rules})
        c = stages._cohort_settings(job)
        for key in keys:
            assert getattr(c, key) == section.get(key, getattr(stages.CohortConfig(), key))
        with pytest.raises(AttributeError, match=r"cohort.phenotypes is not among the settings"):
            _ = c.phenotypes
    full = stages._cohort_settings(_job({}, {}, {"cohort": section}))
    assert full.phenotypes == section["phenotypes"]


def test_gene_on_a_contig_the_fasta_lacks_is_named_with_its_contig(tmp_path) -> None:
    """A genome-wide annotation with a one-chromosome FASTA keeps only the FASTA's contigs; a studied gene on
    another contig gets an error naming that contig, not 'not in the annotation'."""
    from interp.cohort.config import CohortConfig
    from interp.errors import InputError

    genes = tmp_path / "genes.tsv"
    genes.write_text(DEMO_GENES.read_text() + "TP53\t2\t-\t7565097\t7590856\t7565097,\t7590856,\n")
    cfg = _config(11)
    job = _job({"fasta": DEMO_FASTA, "annotation": genes}, {}, {"reference": cfg["reference"]})
    fasta, annotation = stages._reference(job)
    with pytest.raises(InputError, match=r"genes.tsv: gene\(s\) TP53 on '2' lie on contigs the FASTA does not "
                                         r"have \(it has 'chr17'\)"):
        stages._cohort_regions(job, CohortConfig(genes=["DOC2B", "TP53"]), fasta, annotation)
    # named by the setting and the annotation file (it named neither)
    with pytest.raises(InputError, match=rf"^cohort.genes: gene 'BRCA9' is not in the annotation \(known genes: "
                                         rf".*\) \(annotation: {genes}\)$"):
        stages._cohort_regions(job, CohortConfig(genes=["BRCA9"]), fasta, annotation)


def test_cohort_regions_are_resolved_once_and_read_back_unchanged(tmp_path) -> None:
    """check_cohort writes the regions it resolved (regions.parquet); the shard and ancestry jobs read them from
    it without the annotation (a missing annotation path is never opened) and get the same regions, whatever
    the names hold; a region name given by both cohort.genes and the BED is refused."""
    from interp.cohort.config import CohortConfig
    from interp.errors import InputError
    from interp.genome.regions import Region, write_regions

    cfg = _config(11)
    bed = tmp_path / "extra.bed"
    bed.write_text("chr17\t100\t900\tlocusA\nchr17\t2000\t2600\tlocusB\n")
    c = CohortConfig(genes=["DOC2B"], flank=50)
    job = _job({"fasta": DEMO_FASTA, "annotation": DEMO_GENES, "bed": bed}, {}, {"reference": cfg["reference"]})
    fasta, expected = stages._studied_regions(job, c)
    assert [r.name for r in expected] == ["DOC2B", "locusA", "locusB"]
    odd = [Region(" track #1\t.", "chr17", 5, 10), Region(".", "chr17", 0, 3)]  # what a BED line could not carry
    write_regions(expected + odd, tmp_path / "regions.parquet")
    again = _job({"fasta": DEMO_FASTA, "regions": tmp_path / "regions.parquet", "annotation": tmp_path / "absent.gtf"},
                 {}, {"reference": cfg["reference"]})
    _, read_back = stages._studied_regions(again, c)
    assert read_back == expected + odd
    assert not list(tmp_path.glob("*.tmp"))
    write_regions([Region("x", "chr9", 0, 10)], tmp_path / "other.parquet")
    with pytest.raises(InputError, match=r"other.parquet, row 1: contig 'chr9' is not in the FASTA"):
        stages._studied_regions(_job({"fasta": DEMO_FASTA, "regions": tmp_path / "other.parquet"}, {},
                                     {"reference": cfg["reference"]}), c)
    bed.write_text("chr17\t100\t900\tDOC2B\n")
    with pytest.raises(InputError, match=r"region name 'DOC2B' comes twice"):
        stages._studied_regions(job, c)


def test_check_cohort_refusing_the_ancestry_panel_writes_no_validation(tmp_path) -> None:
    """An ancestry panel lacking a sample of samples.tsv is refused by check_cohort, which then writes no
    validation.json that looks complete (the VCF placed before it stays: it does not depend on the panel)."""
    import gzip

    import pysam

    from interp.errors import InputError

    _, c, ref, params = _simulated(tmp_path, per_population=20)
    lines = gzip.decompress((c / "panel.vcf.gz").read_bytes()).decode().splitlines()
    short = c / "short_panel.vcf"  # the last sample's column dropped
    short.write_text("\n".join(line if line.startswith("##") else line.rsplit("\t", 1)[0] for line in lines) + "\n")
    pysam.tabix_compress(str(short), f"{short}.gz")
    pysam.tabix_index(f"{short}.gz", preset="vcf")
    with pytest.raises(InputError, match=r"short_panel.vcf.gz: 1 sample\(s\) of samples.tsv are not in the ancestry "
                                         r"VCF: CHB_0020"):
        _place_and_check(ref, c / "in.vcf.gz", c / "samples.tsv", c, params, panel=f"{short}.gz")
    assert not (c / "validation.json").exists()
    out = _place_and_check(ref, c / "in.vcf.gz", c / "samples.tsv", c, params, panel=c / "panel.vcf.gz")
    assert json.loads(out["summary"].read_text())["ancestry_panel"]["n_samples"] == 60
    assert out["vcf"].is_symlink() and out["tbi"].is_symlink()


def test_haplotype_shard_and_ancestry_errors_name_the_users_vcf_not_the_placed_copy(tmp_path) -> None:
    """The shards and ancestry no longer wait for check_cohort (they need only place_cohort's VCF), so a sheet
    naming a sample the VCF lacks can stop them first, with an error that named the pipeline's placed copy
    (cohort/cohort.vcf.gz: a copy the user never made) instead of the user's file. They now name the user's
    file (params.user_vcf), as place_cohort and check_cohort do."""
    import gzip

    from interp.cohort.config import cohort_rule_settings
    from interp.errors import InputError

    cfg, c, ref, params = _simulated(tmp_path, per_population=10)
    cohort = params["cohort"]
    user = tmp_path / "user.vcf"  # plain: placed as an indexed copy
    user.write_bytes(gzip.decompress((c / "in.vcf.gz").read_bytes()))
    placed = {"vcf": c / "cohort.vcf.gz", "tbi": c / "cohort.vcf.gz.tbi", "regions": c / "regions.parquet"}
    stages.place_cohort(_job({**ref, "vcf": user}, placed, params))
    sheet = pl.read_csv(c / "samples.tsv", separator="\t")
    sheet.vstack(sheet.head(1).with_columns(sample_id=pl.lit("NOT_IN_VCF"))).write_csv(c / "more.tsv", separator="\t")
    io = {"fasta": DEMO_FASTA, "regions": placed["regions"], "vcf": placed["vcf"], "samples": c / "more.tsv"}
    shard = {"reference": cfg["reference"], "cohort": cohort_rule_settings(cohort, "haplotypes"),
             "cohort_rules": "haplotypes", "user_vcf": str(user), "shard": {"index": 0, "size": 0}}
    hap_out = {"assignments": c / "h.parquet", "sequences": c / "s.parquet", "stats": c / "h.json"}
    with pytest.raises(InputError) as err:
        stages.haplotypes_shard(_job(io, hap_out, shard))
    assert str(err.value).startswith(f"{user}: 1 requested samples are not in the VCF header"), err.value
    anc = {"reference": cfg["reference"], "cohort": cohort_rule_settings(cohort, "ancestry"), "seed": 11,
           "user_vcf": str(user)}
    with pytest.raises(InputError) as err:
        stages.ancestry(_job(io, {"genotypes": c / "g.h5ad"}, anc))
    assert str(err.value).startswith(f"{user}: 1 requested samples are not in the VCF header"), err.value
    # a REF that disagrees with the FASTA stops the shard (before check_cohort says so): the message names the
    # user's VCF too (it named no file)
    lines = user.read_text().split("\n")
    first = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    fields = lines[first].split("\t")
    # a first base that is neither the reference's nor the ALT's
    fields[3] = next(b for b in "ACGT" if b not in (fields[3][0], fields[4][0])) + fields[3][1:]
    lines[first] = "\t".join(fields)
    bad = tmp_path / "bad_ref.vcf"
    bad.write_text("\n".join(lines))
    bad_placed = {k: c / "bad" / Path(v).name for k, v in placed.items()}
    stages.place_cohort(_job({**ref, "vcf": bad}, bad_placed, params))
    with pytest.raises(InputError, match=rf"^{bad}: VCF record chr17:\d+ has REF="):
        stages.haplotypes_shard(_job({**io, "vcf": bad_placed["vcf"], "samples": c / "samples.tsv",
                                      "regions": bad_placed["regions"]}, hap_out, {**shard, "user_vcf": str(bad)}))
