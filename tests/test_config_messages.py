"""`interp check-config` (the check the Snakefile runs first): a misspelt key anywhere, or a value of the wrong
type, stops with one line that names the key and what was expected, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


def _check_config(tmp_path: Path, text: str, capsys) -> tuple[int, str]:
    """`interp check-config` on a user config (YAML text, merged over configs/demo.yaml): status and stderr."""
    from interp.cli import main

    path = tmp_path / "user.yaml"
    path.write_text(text)
    rc = main(["check-config", str(path)])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(("text", "expected"), [
    ("seeed: 3", "unknown key 'seeed' in (top level); allowed keys: audit, calibration, "),
    ("sae: {n_featurs: 8}", "unknown key 'n_featurs' in sae; allowed keys: "),
    ("sae: {steer: {nrandom: 3}}", "unknown key 'nrandom' in sae.steer; allowed keys: "),
    ("audit: {bootstrapp: 8}", "unknown key 'bootstrapp' in audit; allowed keys: "),
    ("cohort: {n_pc: 3}", "unknown key 'n_pc' in cohort; allowed keys: "),
    ("cohort: {simulate: {causal: {oddsratio: 3}}}", "unknown key 'oddsratio' in cohort.simulate.causal; "),
    ("sae: {n_features: many}", "sae.n_features: expected integer, got string ('many')"),
    ("audit: {alpha: '0.05'}", "audit.alpha: expected number, got string ('0.05')"),
    ("audit: {alpha: 5e-2}", "audit.alpha: expected number, got string ('5e-2') (YAML reads 5e-2, without a dot, "
                             "as text: write 0.05 or 5.0e-2)"),
    ("embed: {token_budget: big}", "embed.token_budget: expected integer or null, got string ('big')"),
    ("embed: {device: gpu}", "embed.device: 'gpu' is not one of ['cpu', 'cuda', 'auto']"),
])
def test_unknown_keys_and_wrong_types_are_named(tmp_path: Path, capsys, text: str, expected: str) -> None:
    rc, err = _check_config(tmp_path, text, capsys)
    assert rc == 2 and err.startswith(f"error: {tmp_path / 'user.yaml'}: {expected}"), err


@pytest.mark.parametrize(("text", "expected"), [
    # an unquoted `null:` key (audit's and cohort.simulate's "null") is YAML's null, not the word; with another
    # unknown key beside it, sorting the keys raised TypeError (a traceback instead of a message)
    ("audit: {null: permute}", "unknown key null (an unquoted null, ~ or empty value is YAML's null: quote \"null\" "
                               "to mean the word) in audit"),
    ("audit: {null: permute, fo: 1}", "unknown key null (an unquoted null"),
    ("cohort: {phenotypes: [causal, null]}", "cohort.phenotypes.1: expected string, got null (None; an unquoted null"),
    ("sae: {n_features: }", "sae.n_features: expected integer, got null (None; an empty value or ~ is YAML's null)"),
    ("sae: {n_features: yes}", "sae.n_features: expected integer, got boolean (True)"),
    ("probe: {sae_top_k: 8}", "probe.sae_top_k: expected non-empty array of integer, got integer (8)"),
    # oneOf: once "3 is not valid under any of the given schemas", without what is valid
    ("embed: {layers: 3}", "embed.layers: expected one of ['all'] or non-empty array of string, got integer (3)"),
])
def test_yaml_nulls_booleans_and_alternatives_are_explained(tmp_path: Path, capsys, text: str,
                                                            expected: str) -> None:
    rc, err = _check_config(tmp_path, text, capsys)
    assert rc == 2 and "Traceback" not in err, err
    assert err.startswith(f"error: {tmp_path / 'user.yaml'}: {expected}"), err


@pytest.mark.parametrize(("text", "expected"), [
    ("lm: {overrides: {d_modl: 64}}", "lm.overrides: tiny-dnalm: unknown override 'd_modl'; expected one of "),
    ("lm: {overrides: {max_len: 128}}", "lm.overrides: tiny-dnalm, field training.seq_len: 256 exceeds "
                                        "architecture.max_len 128"),
    ("planted: {lm_overrides: {max_step: 5000}}", "planted.lm_overrides: tiny-dnalm: unknown override 'max_step'"),
])
def test_lm_overrides_are_checked_before_any_rule(tmp_path: Path, capsys, text: str, expected: str) -> None:
    """The schema leaves lm.overrides and planted.lm_overrides open: a misspelt key once passed check-config and
    stopped only the pretrain rule (for planted.lm_overrides, after the planted genome and windows were built)."""
    rc, err = _check_config(tmp_path, text, capsys)
    assert rc == 2 and err.startswith(f"error: {tmp_path / 'user.yaml'}: {expected}"), err


@pytest.mark.parametrize(("text", "expected"), [
    ("sae: {concepts: {motifs: [CTCF, NOPE]}}", "sae.concepts.motifs: no JASPAR 2024 motif named 'NOPE'"),
    ("planted: {genome: {motifs: [NOTAMOTIF]}}", "planted.genome.motifs: no JASPAR 2024 motif named 'NOTAMOTIF'"),
    ("planted: {genome: {repeat_copies: [16, 8]}}", "planted.genome.repeat_copies: expected [low, high] with low "
                                                    "<= high (an inclusive range), got [16, 8]"),
    ("planted: {genome: {island_length: [600, 300]}}", "planted.genome.island_length: expected [low, high]"),
    # listed twice, CTCF was planted at twice motif_rate under one type
    ("planted: {genome: {motifs: [CTCF, CTCF, REST]}}", "planted.genome.motifs"),
    ("sae: {concepts: {motifs: [CTCF, CTCF]}}", "sae.concepts.motifs"),
    ("planted: {genome: {motifs: [CTCF, ctcf]}}", "planted.genome.motifs: 'CTCF' and 'ctcf' are the same JASPAR"),
    ("sae: {concepts: {motifs: [CTCF, Ctcf]}}", "sae.concepts.motifs: 'CTCF' and 'Ctcf' are the same JASPAR"),
])
def test_motif_names_and_planted_ranges_are_checked_before_any_rule(tmp_path: Path, capsys, text: str,
                                                                    expected: str) -> None:
    """An unknown JASPAR name stopped the SAE stage only after training (the concept tracks), under the key
    sae.concepts.motifs even when planted.genome.motifs listed it; a reversed range stopped rule planted_genome
    with numpy's bare 'low >= high'."""
    rc, err = _check_config(tmp_path, text, capsys)
    assert rc == 2 and err.startswith(f"error: {tmp_path / 'user.yaml'}: {expected}"), err


def test_lm_overrides_that_are_settings_pass(tmp_path: Path, capsys) -> None:
    text = yaml.safe_dump({"lm": {"overrides": {"max_steps": 10, "max_len": 128, "seq_len": 128}},
                           "planted": {"lm_overrides": {"max_steps": 10}}})
    rc, err = _check_config(tmp_path, text, capsys)
    assert rc == 0, err


def test_check_config_does_not_import_torch() -> None:
    """The Snakefile runs check_config on every invocation (a dry run too): the override check stays torch-free."""
    import subprocess
    import sys

    from interp.config import ROOT

    code = ("import sys, yaml; from interp.config import check_config, ROOT; "
            "check_config(yaml.safe_load((ROOT / 'configs' / 'demo.yaml').read_text()), base_dir=ROOT); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_yaml_that_does_not_parse_is_one_line_naming_file_line_and_column(tmp_path: Path, capsys) -> None:
    """A config or model card that is not valid YAML was reported with PyYAML's several-line text (a model card's
    as '<unicode string>' with a caret under the source line); it is one line naming the file, line and column."""
    import json

    from interp.cli import main

    rc, err = _check_config(tmp_path, "run: demo\n  bad: [1\n", capsys)
    assert rc == 2
    assert err == f"error: {tmp_path / 'user.yaml'}: not valid YAML: line 2, column 6: mapping values are not " \
                  "allowed here\n"
    card = tmp_path / "card.yaml"
    card.write_text("name: x\nfamily: [tiny\n")
    job = {"input": {"card": str(card)}, "output": {}, "params": {"layers": ["block1"], "token_layers": []}}
    assert main(["stage", "embed", json.dumps(job)]) == 2
    assert capsys.readouterr().err == (f"error: {card}: not valid YAML: line 3, column 1: while parsing a flow "
                                       "sequence, expected ',' or ']', but got '<stream end>'\n")


@pytest.mark.parametrize(("change", "expected"), [
    ({"training": {"max_stpes": 5000}}, "tiny-dnalm, field training: unknown keys ['max_stpes']; expected some of "),
    ({"architecture": {"n_heads": 3}}, "tiny-dnalm, field architecture: d_model 128 is not divisible by n_heads 3"),
])
def test_a_mistake_in_a_model_card_is_named_in_the_card_file(tmp_path: Path, capsys, monkeypatch, change: dict,
                                                              expected: str) -> None:
    """A misspelt key in a card's training section (max_stpes) was ignored, its default in force; a mistake in
    the card (n_heads 3 for d_model 128) was blamed on the user's config and lm.overrides, which it did not set.
    Both now stop check-config naming the card file."""
    import interp.config as config

    models = tmp_path / "models"
    models.mkdir()
    for card in config.MODELS_DIR.glob("*.yaml"):
        (models / card.name).write_text(card.read_text())
    card = yaml.safe_load((models / "tiny-dnalm.yaml").read_text())
    for section, values in change.items():
        card[section] = {**(card.get(section) or {}), **values}
    (models / "tiny-dnalm.yaml").write_text(yaml.safe_dump(card))
    monkeypatch.setattr(config, "MODELS_DIR", models)
    rc, err = _check_config(tmp_path, "seed: 7", capsys)
    assert rc == 2 and err.startswith(f"error: {models / 'tiny-dnalm.yaml'}: {expected}"), err


def test_a_section_given_twice_an_empty_config_and_a_copied_card_are_refused(tmp_path: Path, capsys,
                                                                           monkeypatch) -> None:
    """A config with `sae:` twice kept the second silently (check-config and Snakemake both took it); an empty or
    comment-only config passed check-config (Snakemake then refused it without naming the file); a card copied
    under a new file name but keeping `name: tiny-dnalm` passed, and the report gave both models that name and
    the same checkpoint."""
    import interp.config as config

    rc, err = _check_config(tmp_path, "sae: {n_features: 64, k: 4}\nrun: x\nsae: {layer: block3}\n", capsys)
    assert rc == 2 and err == f"error: {tmp_path / 'user.yaml'}: not valid YAML: line 3, column 1: key 'sae' is " \
                              "given twice\n"
    rc, err = _check_config(tmp_path, "# settings to come\n", capsys)
    assert rc == 2 and "user.yaml: no settings (the file is empty or holds only comments)" in err
    models = tmp_path / "models"
    models.mkdir()
    for card in config.MODELS_DIR.glob("*.yaml"):
        (models / card.name).write_text(card.read_text())
    (models / "my-tiny.yaml").write_text((models / "tiny-dnalm.yaml").read_text())
    monkeypatch.setattr(config, "MODELS_DIR", models)
    rc, err = _check_config(tmp_path, "models: [tiny-dnalm, my-tiny]", capsys)
    assert rc == 2 and err.startswith(f"error: {models / 'my-tiny.yaml'}, field name: 'tiny-dnalm', but the card "
                                      "is listed in models as 'my-tiny'"), err


def test_a_users_populations_replace_the_defaults(tmp_path: Path, capsys) -> None:
    """`cohort.populations` is keyed by population names (data, not settings): merged key by key over the demo's
    {YRI, CEU, CHB}, a user's {ADMIX: 300} for the admixed demography kept all four, and the simulation then
    stopped on a population the user never wrote. The user's mapping now replaces the default's, in
    check-config and in the workflow (the same files read again after Snakemake's merge)."""
    import json

    from interp.config import load_workflow_config, replace_data_mappings

    text = "cohort: {populations: {ADMIX: 300}, simulate: {demography: AmericanAdmixture_4B18}}\n"
    rc, _ = _check_config(tmp_path, text, capsys)
    out = capsys.readouterr()
    assert rc == 0
    user = tmp_path / "user.yaml"
    assert load_workflow_config([user])["cohort"]["populations"] == {"ADMIX": 300}
    # Snakemake's own merge (key by key) put right from the files, and a later --config mapping wins
    merged = {"cohort": {"populations": {"YRI": 100, "CEU": 100, "CHB": 100, "ADMIX": 300}, "maf": 0.05}}
    assert replace_data_mappings(json.loads(json.dumps(merged)), [user])["cohort"] == {
        "populations": {"ADMIX": 300}, "maf": 0.05}
    later = {"cohort": {"populations": {"AFR": 10, "EUR": 10}}}
    assert replace_data_mappings(json.loads(json.dumps(merged)), [user, later])["cohort"]["populations"] == {
        "AFR": 10, "EUR": 10}
    # populations the demography lacks stop check-config (they stopped the simulate job, naming 'simulation')
    rc, err = _check_config(tmp_path, "cohort: {populations: {ADMIX: 300}}\n", capsys)
    assert rc == 2 and "cohort.populations: 'ADMIX' is not a population of cohort.simulate.demography " \
                       "OutOfAfrica_3G09 (YRI, CEU, CHB)" in err, err
    user.write_text(text)
    # a config that leaves populations alone keeps the default's
    other = tmp_path / "other.yaml"
    other.write_text("seed: 3\n")
    assert load_workflow_config([other])["cohort"]["populations"] == {"YRI": 100, "CEU": 100, "CHB": 100}
    assert out.err == ""


def test_calibration_gather_names_the_file_it_cannot_read(tmp_path: Path, capsys) -> None:
    """calibration-gather on a folder of other JSON (KeyError traceback), with an empty replicate (blamed on
    --prior, or on 'None'), with a --prior that is not a calibration table (KeyError / TypeError tracebacks), or
    on a folder that does not exist ("no replicate summaries yet")."""
    from interp.cli import main

    (tmp_path / "reps" / "base").mkdir(parents=True)
    (tmp_path / "reps" / "base" / "3.json").write_text("")
    assert main(["calibration-gather", str(tmp_path / "reps"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'reps' / 'base' / '3.json'}: not a readable JSON replicate summary")
    (tmp_path / "reps" / "base" / "3.json").write_text('{"run": "demo"}')
    assert main(["calibration-gather", str(tmp_path / "reps"), str(tmp_path / "out")]) == 2
    assert "3.json: not a replicate summary (<cell>/<replicate>.json of the calibration suite) (expected a JSON " \
           "object with cell, replicate, verdicts; it lacks cell, replicate, verdicts)" in capsys.readouterr().err
    good = {"cell": "base", "replicate": 0, "verdicts": {}}
    (tmp_path / "reps" / "base" / "3.json").write_text(__import__("json").dumps(good))
    for prior_text, needle in (("[1, 2]", "it is not an object"), ('{"meta": {}}', "it lacks rows")):
        prior = tmp_path / "prior.json"
        prior.write_text(prior_text)
        rc = main(["calibration-gather", str(tmp_path / "reps"), str(tmp_path / "out"), "--prior", str(prior)])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f"error: {prior}: not a calibration table") and needle in err, err
    assert main(["calibration-gather", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
