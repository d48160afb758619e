"""The schema (`workflow/schemas/config.schema.yaml`) is the one place for config defaults.

A key the user leaves out gets the schema's default (`interp.config.check_config` fills it in), so
every settings dataclass built from a config section must have the same default for each field that
is also a key of that section; a test failure names the key and both values.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

import pytest

from interp.audit import AuditConfig
from interp.config import load_schema
from interp.probe import ProbeConfig
from interp.rank import RankConfig
from interp.sae.concept_tracks import ConceptConfig
from interp.sae.concepts import LabelConfig
from interp.sae.config import SAEConfig
from interp.sae.planted import PlantedTargets
from interp.sae.planted_genome import PlantedConfig
from interp.sae.steer import SteerConfig

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
]

#: sections whose dataclass holds nothing but config keys (the run's `seed` aside)
EVERY_FIELD_A_KEY = ("sae", "sae.concepts", "sae.labels", "sae.steer", "planted.genome", "planted.targets")

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
    from interp.stages import PROBE_NOT_FIT, RANK_NOT_FIT

    cfg = check_config(yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text()), base_dir=ROOT)
    audit = settings_from_section(AuditConfig, cfg["audit"], seed=5)
    assert audit.seed == 5 and audit.n_folds == cfg["audit"]["n_folds"] and audit.null == cfg["audit"]["null"]
    rank = settings_from_section(RankConfig, cfg["rank"], ignore=RANK_NOT_FIT, seed=1)
    assert rank.resamples == cfg["rank"]["resamples"]
    probe = settings_from_section(ProbeConfig, cfg["probe"], ignore=PROBE_NOT_FIT, seed=1)
    assert probe.C == cfg["probe"]["C"]


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
