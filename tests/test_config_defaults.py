"""The schema (`workflow/schemas/config.schema.yaml`) is the one place for config defaults.

A key the user leaves out gets the schema's default (`interp.config.check_config` fills it in), so
every settings dataclass built from a config section must have the same default for each field that
is also a key of that section; a test failure names the key and both values. A key the schema gives no
default is optional: its field defaults to None (absent).
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

import pytest

from interp.audit import AuditConfig
from interp.cohort.config import CohortConfig
from interp.config import load_schema
from interp.embed.config import EmbedConfig
from interp.probe import ProbeConfig
from interp.rank import RankConfig
from interp.sae.concept_tracks import ConceptConfig
from interp.sae.concepts import LabelConfig
from interp.sae.config import NOT_TRAINING, SAEConfig
from interp.sae.planted import PlantedTargets
from interp.sae.planted_genome import PlantedConfig
from interp.sae.steer import SteerConfig
from interp.stages import AUDIT_NOT_FIT, PROBE_NOT_FIT, RANK_NOT_FIT
from tests.conftest import check_config_error, demo_config

#: (dataclass, the dotted name of the config section it is built from)
BUILT_FROM_SECTION: list[tuple[type, str]] = [
    (SAEConfig, "sae"),
    (ConceptConfig, "sae.concepts"),
    (LabelConfig, "sae.labels"),
    (SteerConfig, "sae.steer"),
    (ProbeConfig, "probe"),
    (AuditConfig, "audit"),
    (RankConfig, "rank"),
    (PlantedConfig, "planted.genome"),
    (PlantedTargets, "planted.targets"),
    (EmbedConfig, "embed"),
    (CohortConfig, "cohort"),
]

#: sections whose dataclass holds nothing but config keys (the run's `seed` aside)
EVERY_FIELD_A_KEY = ("sae", "sae.concepts", "sae.labels", "sae.steer", "planted.genome", "planted.targets", "embed",
                     "cohort")

#: sections whose every key is a field of their dataclass, but the keys named here (read by other code): the
#: stages build each from the whole section (`settings_from_section`, or `cls(**section)`), so a schema key that
#: is neither would pass check-config and then stop that stage
EVERY_KEY_A_FIELD: list[tuple[type, str, tuple[str, ...]]] = [
    (SAEConfig, "sae", NOT_TRAINING),
    (EmbedConfig, "embed", ()),
    (CohortConfig, "cohort", ()),
    (AuditConfig, "audit", AUDIT_NOT_FIT),
    (RankConfig, "rank", RANK_NOT_FIT),
    (ProbeConfig, "probe", PROBE_NOT_FIT),
    (ConceptConfig, "sae.concepts", ()),
    (LabelConfig, "sae.labels", ()),
    (SteerConfig, "sae.steer", ()),
    (PlantedConfig, "planted.genome", ()),
    (PlantedTargets, "planted.targets", ()),
]

NO_DEFAULT = object()


def section_properties(dotted: str) -> dict[str, dict]:
    """The schema's `properties` of a config section named like 'sae.labels'."""
    node = load_schema()
    for part in dotted.split("."):
        node = node["properties"][part]
    return node["properties"]


def field_default(f: Field) -> Any:
    """A dataclass field's default (its factory called), or NO_DEFAULT."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return NO_DEFAULT


def same_value(a: Any, b: Any) -> bool:
    """Equal as config values: 30 and 30.0 are the same, True and 1 are not."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def disagreements(cls: type, dotted: str) -> list[str]:
    """One line per field of `cls` that is a key of the section and whose default differs from the schema's."""
    props = section_properties(dotted)
    out = []
    for f in fields(cls):
        if f.name not in props:
            continue
        ours = field_default(f)
        schema = props[f.name].get("default", NO_DEFAULT)
        if schema is NO_DEFAULT and ours is None:  # an optional key
            continue
        if ours is NO_DEFAULT or schema is NO_DEFAULT or not same_value(ours, schema):
            shown = ["(none)" if v is NO_DEFAULT else repr(v) for v in (schema, ours)]
            out.append(f"{dotted}.{f.name}: schema default {shown[0]}, {cls.__name__} default {shown[1]}")
    return out


@pytest.mark.parametrize(("cls", "dotted"), BUILT_FROM_SECTION, ids=[d for _, d in BUILT_FROM_SECTION])
def test_dataclass_defaults_are_the_schema_defaults(cls: type, dotted: str) -> None:
    problems = disagreements(cls, dotted)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("cls", "dotted"), [c for c in BUILT_FROM_SECTION if c[1] in EVERY_FIELD_A_KEY],
                         ids=list(EVERY_FIELD_A_KEY))
def test_every_setting_is_a_schema_key(cls: type, dotted: str) -> None:
    props = section_properties(dotted)
    missing = [f.name for f in fields(cls) if f.name != "seed" and f.name not in props]
    assert not missing, f"{cls.__name__} fields {missing} are not keys of the schema's {dotted} section"


@pytest.mark.parametrize(("cls", "dotted", "other"), EVERY_KEY_A_FIELD, ids=[d for _, d, _ in EVERY_KEY_A_FIELD])
def test_every_key_of_the_section_is_a_setting(cls: type, dotted: str, other: tuple[str, ...]) -> None:
    """The dataclass is built from the whole section: a key of it that is not a field would be refused."""
    names = {f.name for f in fields(cls)}
    missing = [k for k in section_properties(dotted) if k not in names and k not in other]
    assert not missing, f"keys {missing} of the schema's {dotted} section are not fields of {cls.__name__}"
    assert not set(other) & names, f"{cls.__name__}: fields {sorted(set(other) & names)} listed as read elsewhere"


def test_a_disagreement_names_the_key_and_both_values() -> None:
    @dataclass
    class Drifted:
        k: int = 8
        epochs: int = 8
        memory_budget_mb: int = 1024  # the schema's 1024.0: the same value
        normalize_inputs: int = 1  # the schema's true: not the same
        not_a_key: str = "x"

    assert disagreements(Drifted, "sae") == [
        "sae.k: schema default 16, Drifted default 8",
        "sae.normalize_inputs: schema default True, Drifted default 1",
    ]


def test_settings_from_whole_sections_of_the_demo_config() -> None:
    """The stages build AuditConfig / RankConfig / ProbeConfig from the whole section the rule passes."""
    import yaml

    from interp.config import ROOT, check_config, settings_from_section
    from interp.stages import AUDIT_NOT_FIT, PROBE_NOT_FIT, RANK_NOT_FIT

    cfg = check_config(yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text()), base_dir=ROOT)
    audit = settings_from_section(AuditConfig, cfg["audit"], ignore=AUDIT_NOT_FIT, seed=5)
    assert audit.seed == 5 and audit.n_folds == cfg["audit"]["n_folds"] and audit.null == cfg["audit"]["null"]
    rank = settings_from_section(RankConfig, cfg["rank"], ignore=RANK_NOT_FIT, seed=1)
    assert rank.resamples == cfg["rank"]["resamples"]
    probe = settings_from_section(ProbeConfig, cfg["probe"], ignore=PROBE_NOT_FIT, seed=1)
    assert probe.C == cfg["probe"]["C"]
    embed = settings_from_section(EmbedConfig, cfg["embed"])
    assert embed.cache == cfg["embed"]["cache"] and embed.token_layers == cfg["embed"]["token_layers"]
    cohort = settings_from_section(CohortConfig, cfg["cohort"])
    assert cohort.window == {"width": 500, "stride": 500} and cohort.simulate["causal"]["odds_ratio"] == 3.0
    assert cohort.vcf is None and cohort.genes == ["DOC2B"]
    from interp.sae.config import sae_settings

    sae = sae_settings(cfg["sae"], seed=3)
    assert (sae.seed, sae.k, sae.architecture) == (3, cfg["sae"]["k"], cfg["sae"]["architecture"])


def test_settings_from_section_rejects_unknown_keys_clearly() -> None:
    from interp.config import settings_from_section
    from interp.errors import InputError

    with pytest.raises(InputError, match=r"rank: unknown key 'resampels' for RankConfig; expected some of .*resamples"):
        settings_from_section(RankConfig, {"resampels": 3}, source="rank")
    with pytest.raises(InputError, match="keys 'a', 'b'"):
        settings_from_section(ProbeConfig, {"a": 1, "b": 2, "C": 1.0})
    assert settings_from_section(ProbeConfig, {"targets": ["exon"], "C": 2.0}, ignore=("targets",)).C == 2.0
    with pytest.raises(TypeError):
        settings_from_section(ProbeConfig, {}, not_a_field=1)
    # the run's seed is not a key of the section, unless the section is a rule's params that carry it
    with pytest.raises(InputError, match="unknown key 'seed' for ProbeConfig"):
        settings_from_section(ProbeConfig, {"seed": 3}, seed=1)
    assert settings_from_section(ProbeConfig, {"seed": 3}, ignore=("seed",), seed=1).seed == 1


@pytest.mark.parametrize(("cls", "section", "key"), [
    (EmbedConfig, "embed", "batch_sise"), (CohortConfig, "cohort", "n_pc"), (SAEConfig, "sae", "n_featurs")])
def test_unknown_key_of_a_whole_section_is_named(cls: type, section: str, key: str) -> None:
    from interp.config import settings_from_section
    from interp.errors import InputError
    from interp.sae.config import sae_settings

    with pytest.raises(InputError, match=rf"^{section}: unknown key '{key}' for {cls.__name__}; expected some of "):
        if cls is SAEConfig:
            sae_settings({"layer": "block2", "k": 8, key: 1})  # NOT_TRAINING keys such as layer are fine
        else:
            settings_from_section(cls, {key: 1}, source=section)


def _run_stage(name: str, params: dict, capsys) -> str:
    """Run stage `name` through the command line with `params` and no real inputs; return stderr."""
    import json

    from interp.cli import main

    rc = main(["stage", name, json.dumps({"input": {"card": "models/tiny-dnalm.yaml"}, "output": {},
                                          "params": params})])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err, err
    return err


def test_stages_refuse_an_unknown_key_with_one_clean_line(capsys) -> None:
    """A stage names the unknown key and the section before it touches any input, and the command line prints
    it without a traceback (exit status 2), like every InputError."""
    err = _run_stage("sae", {"n_featurs": 8, "layer": "block2", "model": "m", "seed": 1}, capsys)
    assert err.startswith("error: sae: unknown key 'n_featurs' for SAEConfig"), err
    err = _run_stage("sae_sweep", {"base": {"k": 8, "seed": 1}, "overrides": {"kk": 4}, "name": "k4",
                                   "layer": "block2", "model": "m"}, capsys)
    assert err.startswith("error: sae.sweep k4: unknown key 'kk' for SAEConfig"), err
    err = _run_stage("embed", {"layers": ["block2"], "token_layers": [], "batch_sise": 8}, capsys)
    assert err.startswith("error: embed: unknown key 'batch_sise' for EmbedConfig"), err
    err = _run_stage("embed_cohort", {"layers": ["block2"], "sae_layer": "block2", "keep_haplotypes": False,
                                      "devise": "cpu"}, capsys)
    assert err.startswith("error: embed: unknown key 'devise' for EmbedConfig"), err
    err = _run_stage("check_cohort", {"cohort": {"enabled": True, "n_pc": 3}, "reference": {}, "seed": 1}, capsys)
    assert err.startswith("error: cohort: unknown key 'n_pc' for CohortConfig"), err


def test_check_config_refuses_unknown_keys_of_sweep_entries_cleanly(tmp_path, capsys) -> None:
    """`interp check-config`: an unknown key of sae.sweep[i] (which the schema leaves open) is named with the entry."""
    cfg = demo_config()
    cfg["sae"]["sweep"] = [{"name": "k8", "k": 8}, {"name": "wide", "n_feature": 1024}]
    path = tmp_path / "bad.yaml"
    err = check_config_error(cfg, path, capsys)
    assert err.startswith(f"error: {path}: sae.sweep[1] (wide): unknown key 'n_feature' for SAEConfig"), err


@pytest.mark.parametrize("change, key", [
    (lambda c: c["sae"].update(split_block_bases=300), "sae.split_block_bases = 300"),
    (lambda c: c["sae"].update(sweep=[{"name": "small_blocks", "split_block_bases": 250}]),
     "sae.sweep[0].split_block_bases = 250"),
    (lambda c: c.update(planted={"windows": {"width": 600, "stride": 600}}), "planted.sae.split_block_bases"),
])
def test_split_blocks_shorter_than_two_windows_are_refused_before_embedding(tmp_path, capsys, change, key) -> None:
    """The tokens of a window straddling two splits are in no split (`interp.sae.splits`): with blocks under two
    window lengths most windows would be left out, and the SAE stage would stop only after the embedding.
    `interp check-config` refuses it by name first (demo: 200-base windows; planted: 128)."""
    import yaml

    from interp.cli import main
    from interp.config import ROOT

    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    change(cfg)
    path = tmp_path / "blocks.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {key}"), err
    assert "less than twice" in err and "Traceback" not in err
    ok = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    ok["sae"]["split_block_bases"] = 400  # exactly twice the demo's 200-base windows
    path.write_text(yaml.safe_dump(ok))
    assert main(["check-config", str(path)]) == 0


def test_partial_override_dicts_keep_the_rest_of_their_default() -> None:
    """planted.lm_overrides / .sae / .windows (x-merge-default): a config that sets one key keeps the default's
    others. (Setting max_steps alone once replaced the whole dict: the planted LM lost d_model 256 and
    conv_kernel 15 and sat at the base-composition loss.) Dicts without the mark are taken as given."""
    import yaml

    from interp.config import ROOT, check_config, load_schema

    planted = load_schema()["properties"]["planted"]["properties"]
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg["planted"] = {"lm_overrides": {"max_steps": 8000}, "sae": {"epochs": 2}, "windows": {"stride": 64}}
    cfg["lm"] = {"overrides": {"d_model": 32}}
    out = check_config(cfg, base_dir=ROOT)
    assert out["planted"]["lm_overrides"] == {**planted["lm_overrides"]["default"], "max_steps": 8000}
    assert out["planted"]["sae"] == {**planted["sae"]["default"], "epochs": 2}
    assert out["planted"]["windows"] == {"width": 128, "stride": 64}
    assert out["lm"]["overrides"] == {"d_model": 32}


def _signature_defaults(fn) -> dict[str, Any]:
    import inspect

    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


def _keyword_and_constant_defaults() -> list[tuple[str, str, Any]]:
    """(dotted key, where the code keeps its own default, that default) for keys the stages read without a
    settings dataclass: as keyword arguments (`**section`), module constants or a default table."""
    from interp import calibration
    from interp.sae import probe_compare
    from interp.sae.atlas import build_atlas
    from interp.sae.planted import steering_table

    out = []
    for fn, dotted in ((build_atlas, "sae.atlas"), (steering_table, "planted.steer")):
        defaults = _signature_defaults(fn)
        out += [(f"{dotted}.{k}", f"{fn.__name__}({k}=)", defaults.get(k, NO_DEFAULT)) for k in section_properties(dotted)]
    out += [("probe.sae_top_k", "probe_compare.DEFAULT_TOP_K", list(probe_compare.DEFAULT_TOP_K)),
            ("probe.sae_bootstrap", "probe_compare.DEFAULT_BOOTSTRAP", probe_compare.DEFAULT_BOOTSTRAP),
            ("probe.sae_C_grid", "probe_compare.DEFAULT_C_GRID", list(probe_compare.DEFAULT_C_GRID)),
            # calibration.smk passes null_redraws to a replicate only when it differs from this constant
            ("calibration.null_redraws", "calibration.NULL_REDRAWS", calibration.NULL_REDRAWS)]
    return out


def schema_default(dotted: str) -> Any:
    parent, _, key = dotted.rpartition(".")
    return section_properties(parent)[key].get("default", NO_DEFAULT)


@pytest.mark.parametrize(("dotted", "where", "ours"), _keyword_and_constant_defaults(),
                         ids=[d for d, _, _ in _keyword_and_constant_defaults()])
def test_keyword_and_constant_defaults_are_the_schema_defaults(dotted: str, where: str, ours: Any) -> None:
    """Keys read as keyword arguments or through module constants (no dataclass) carry a second default in the
    code; it must be the schema's (the one check_config fills in), or a caller outside the workflow, and
    calibration replicates that leave null_redraws out, get another value."""
    schema = schema_default(dotted)
    assert ours is not NO_DEFAULT, f"{dotted}: {where} has no default (schema {schema!r})"
    assert same_value(ours, schema), f"{dotted}: schema default {schema!r}, {where} {ours!r}"


def test_simulation_defaults_are_the_schema_defaults() -> None:
    """`interp.cohort.simulate.DEFAULTS`, the table cohort.simulate is merged over, agrees with the schema on
    every key both have, and knows every key of the schema's section (it refuses any other)."""
    from interp.cohort.simulate import DEFAULTS

    props = section_properties("cohort.simulate")
    problems = [f"cohort.simulate.{k}: not in simulate.DEFAULTS" for k in props
                if k not in DEFAULTS and k != "ancestry_panel"]  # the panel is read by the ancestry stage
    for key, value in DEFAULTS.items():
        sub = props[key]
        if isinstance(value, dict) and "properties" in sub:
            for k, v in value.items():
                if k in sub["properties"] and not same_value(v, sub["properties"][k].get("default", NO_DEFAULT)):
                    problems.append(f"cohort.simulate.{key}.{k}: schema default "
                                    f"{sub['properties'][k].get('default')!r}, simulate.DEFAULTS {v!r}")
            problems += [f"cohort.simulate.{key}.{k}: not in simulate.DEFAULTS" for k in sub["properties"]
                         if k not in value]
        elif not same_value(value, sub.get("default", NO_DEFAULT)):
            problems.append(f"cohort.simulate.{key}: schema default {sub.get('default')!r}, simulate.DEFAULTS "
                            f"{value!r}")
    assert not problems, "\n".join(problems)


def _readme_table_keys() -> set[str]:
    """Keys the README's Configuration table names: a row's first cell lists `a.b.c`, then `.d` for a.b.d;
    `x.*` stands for every key under x; words in parentheses are values, not keys."""
    import re

    from interp.config import ROOT

    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Configuration"):text.index("## Outputs")]
    top = set(load_schema()["properties"])
    named: set[str] = set()
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cell, parent, depth = line.split(" | ")[0], None, 0
        for piece in re.split(r"(`[^`]*`|[()])", cell):
            depth += (piece == "(") - (piece == ")")
            if depth or not piece.startswith("`"):
                continue
            token = piece.strip("`").replace('"', "")
            if token.startswith(".") and parent is not None:
                named.add(parent + token[1:])
            elif token.split(".")[0] in top:
                named.add(token)
                parent = token.removesuffix(".*").rpartition(".")[0] + "." if "." in token else token + "."
    return named


def _leaf_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted schema keys that are not sections (objects with properties of their own)."""
    out = []
    for key, sub in node.get("properties", {}).items():
        if sub.get("type") == "object" and sub.get("properties") and not sub.get("x-merge-default"):
            out += _leaf_keys(sub, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


def test_every_schema_key_is_in_the_readme_table() -> None:
    named = _readme_table_keys()
    wildcards = [k.removesuffix(".*") + "." for k in named if k.endswith(".*")]
    missing = [k for k in _leaf_keys(load_schema()) if k not in named and not k.startswith(tuple(wildcards))]
    assert not missing, f"schema keys without a row in README.md's Configuration table: {missing}"
    keys = set(_leaf_keys(load_schema()))
    keys |= {k.rpartition(".")[0] for k in keys}  # the sections too: a row may name one (`planted.steer`)
    stale = sorted(k.removesuffix(".*") for k in named if k.removesuffix(".*") not in keys
                   and not any(k.startswith(leaf + ".") for leaf in keys))  # a leaf's own keys: lm.overrides.n_layers
    assert not stale, f"README.md's Configuration table names keys the schema does not have: {stale}"


def test_too_few_label_shifts_for_alpha_are_refused_before_training(tmp_path, capsys) -> None:
    """sae.labels.n_shifts under 1 / alpha - 1 could never label a feature (the smallest family-wise p is
    1 / (1 + n_shifts), `interp.sae.concepts.LabelConfig`): `interp check-config` refuses it, not the label stage
    after the SAE is trained."""
    cfg = demo_config()
    cfg["sae"]["labels"]["alpha"] = 0.001  # the demo's 199 shifts reach 0.005 at best
    path = tmp_path / "shifts.yaml"
    err = check_config_error(cfg, path, capsys)
    assert err.startswith(f"error: {path}: sae.labels.n_shifts 199 cannot reach alpha 0.001"), err


@pytest.mark.parametrize("section", ["rank", "rank.report_top", "sae.steer", "planted.steer"])
def test_settings_that_would_bias_stability_or_steering_are_refused(tmp_path, capsys, section) -> None:
    """rank.stability_screen under 100 x rank.top_k: columns beyond the screen never compete for a half-sample's
    top k, so a screen near top_k gave null columns stability 1.0. rank.report_top over rank.refit_top: the
    report's rows beyond refit_top showed the score's one-step log odds ratios (2x the fit for rare columns). sae.steer.n_random (and planted.steer's) under
    19: the control's Monte Carlo p (1 + controls at least as large) / (1 + n_random) can never reach 0.05, so
    every labelled feature was flagged as changing nothing beyond the control, however strong its effect."""
    cfg = demo_config()
    if section == "rank":
        cfg["rank"].update(top_k=20, stability_screen=1999)
        want = "rank.stability_screen (1999) must be at least 100 x rank.top_k (20), i.e. 2000"
    elif section == "rank.report_top":  # rows beyond refit_top would show unmarked one-step estimates
        cfg["rank"].update(report_top=60, refit_top=50)
        want = "rank.report_top (60) is larger than rank.refit_top (50)"
    else:
        head, _, tail = section.partition(".")
        cfg.setdefault(head, {}).setdefault(tail, {})["n_random"] = 18
        want = f"{section}.n_random: 18 is less than the minimum of 19"
    path = tmp_path / "bias.yaml"
    err = check_config_error(cfg, path, capsys)
    assert err.startswith(f"error: {path}: {want}"), err
