"""Load and check a run's config before any work starts.

The schema (`workflow/schemas/config.schema.yaml`) is the single source of truth for keys, types
and defaults. `check_config` turns the first schema violation into one short message naming the
key, then checks what a schema cannot: that files exist and model cards are there.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from interp.cohort.config import DEMOGRAPHY_POPULATIONS, CohortConfig, causal_gene
from interp.embed.config import EmbedConfig
from interp.errors import InputError, yaml_problem
from interp.io import load_yaml_unique

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"
MODELS_DIR = ROOT / "models"
#: the Snakefile's `configfile:`, under every --configfile the user gives
DEFAULT_CONFIG = ROOT / "configs" / "demo.yaml"
#: the built-in model the planted-motif calibration trains with planted.lm_overrides (workflow/rules/planted.smk)
PLANTED_MODEL = "tiny-dnalm"


def load_schema() -> dict:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


#: JSON schema / YAML names of the Python types a YAML file loads as
_YAML_TYPE = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
              dict: "object"}
#: why a YAML key or value is null or a boolean when the user wrote a word
_YAML_WORDS = {None: "an unquoted null, ~ or empty value is YAML's null: quote \"null\" to mean the word",
               True: "YAML reads unquoted yes/no/on/off/true/false as booleans: quote the word",
               False: "YAML reads unquoted yes/no/on/off/true/false as booleans: quote the word"}


def _shown_key(key: Any) -> str:
    """A config key as the user wrote it; a YAML null or boolean key says how it came about."""
    if key is None or isinstance(key, bool):
        return f"{_YAML_TYPE[type(key)] if key is None else str(key).lower()} ({_YAML_WORDS[key]})"
    return repr(key)


def _expected(schema: dict) -> str:
    """What a (sub)schema accepts, in words: 'integer or null', "one of ['cpu', 'cuda']", 'array of string'."""
    if "enum" in schema:
        return f"one of {schema['enum']}"
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(_expected(s) for s in schema.get("oneOf", schema.get("anyOf")))
    types = schema.get("type")
    if types is None:
        return "a value"
    words = []
    for t in [types] if isinstance(types, str) else types:
        items = schema.get("items", {}) if t == "array" else {}
        words.append(f"{'non-empty ' if schema.get('minItems') and t == 'array' else ''}{t}"
                     + (f" of {_expected(items)}" if items.get("type") or items.get("enum") else ""))
    return " or ".join(words)


def _got(value: Any, expected: str) -> str:
    """The type and value the user gave; a null or boolean where a string is expected says why it is one."""
    name = _YAML_TYPE.get(type(value), type(value).__name__)
    hint = ""
    if (value is None or isinstance(value, bool)) and "string" in expected:
        hint = f"; {_YAML_WORDS[value]}"
    elif value is None:
        hint = "; an empty value or ~ is YAML's null"
    return f"{name} ({value!r}{hint})"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line per schema error, naming the key the user has to fix."""
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted((k for k in error.instance if k not in allowed), key=str)
        return (f"unknown key {', '.join(_shown_key(e) for e in extra)} in {where}; "
                f"allowed keys: {', '.join(allowed)}")
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator in ("type", "oneOf", "anyOf"):
        expected = _expected(error.schema)
        hint = ""
        if isinstance(error.instance, str) and "number" in expected and re.fullmatch(
                r"\s*[-+]?\d+[eE][-+]?\d+\s*", error.instance):  # PyYAML reads 5e-2, without a dot, as text
            mantissa, exponent = re.split(r"[eE]", error.instance.strip())
            hint = (f" (YAML reads {error.instance.strip()}, without a dot, as text: write {float(error.instance)!r} "
                    f"or {mantissa}.0e{exponent})")
        return f"{where}: expected {expected}, got {_got(error.instance, expected)}{hint}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not one of {error.validator_value}"
    if error.validator == "pattern" and error.schema.get("description"):
        return f"{where}: {error.instance!r} is not allowed; expected {error.schema['description']}"
    return f"{where}: {error.message}"


def _fill_defaults(schema: dict, instance: Any) -> None:
    """Insert schema defaults into `instance` in place (objects only, recursively). An object property marked
    `x-merge-default: true` (a dict of overrides, e.g. planted.lm_overrides) that the config gives keeps the
    default's other keys: setting one key does not drop the rest."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        elif sub.get("x-merge-default") and isinstance(instance.get(key), dict):
            instance[key] = {**copy.deepcopy(sub["default"]), **instance[key]}
        if key in instance:
            _fill_defaults(sub, instance[key])
            if sub.get("type") == "array" and isinstance(instance[key], list):
                for item in instance[key]:
                    _fill_defaults(sub.get("items", {}), item)


def check_config(config: dict, base_dir: str | Path = ".", source: str = "config") -> dict:
    """Validate `config` against the schema, fill defaults, check inputs exist.

    Returns a new dict with defaults filled in. Raises InputError naming the key or path.
    """
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.message))
    if errors:
        raise InputError(f"{source}: {_describe(errors[0])}")
    cfg = copy.deepcopy(config)
    _fill_defaults(schema, cfg)
    base = Path(base_dir)

    def must_exist(key: str, value: str | None) -> None:
        if value is None:
            return
        if not (base / value).exists():
            raise InputError(f"{source}: {key} = {value!r}: file not found")
        if (base / value).is_dir():
            raise InputError(f"{source}: {key} = {value!r}: is a folder; expected a file")

    must_exist("reference.fasta", cfg["reference"]["fasta"])
    must_exist("reference.annotation", cfg["reference"].get("annotation"))
    cards: dict[str, dict] = {}
    for name in cfg["models"]:
        card = model_card_path(name)
        if not card.exists():
            known = sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))
            raise InputError(f"{source}: models: no model card {card.relative_to(ROOT)} "
                             f"(known cards: {', '.join(known)})")
        from interp.embed.registry import load_card

        cards[name] = load_card(card)  # a bad card stops the run here, naming the card file and field
        if cards[name]["name"] != name:  # the report and the results name a model by its card's `name`
            raise InputError(f"{card}, field name: {cards[name]['name']!r}, but the card is "
                             f"listed in models as {name!r}; a copied card needs name: {name}")
    calibration_card = model_card_path(cfg["calibration"]["model"])
    if not calibration_card.exists():  # once: a FileNotFoundError traceback from common.smk (target calibration)
        known = sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))
        raise InputError(f"{source}: calibration.model: no model card {calibration_card.relative_to(ROOT)} "
                         f"(known cards: {', '.join(known)})")
    for region in cfg["regions"]:
        if "end" in region and region["end"] <= region.get("start", 0):
            raise InputError(f"{source}: regions: region {region['name']!r} has end {region['end']} "
                             f"<= start {region.get('start', 0)}")
    settings_from_section(EmbedConfig, cfg["embed"], source=f"{source}: embed")
    cohort = settings_from_section(CohortConfig, cfg["cohort"], source=f"{source}: cohort")
    if cohort.enabled:
        if cohort.source == "vcf":
            for key in ("vcf", "samples"):
                if getattr(cohort, key) is None:
                    raise InputError(f"{source}: cohort.{key} is required when cohort.source is 'vcf'")
                must_exist(f"cohort.{key}", getattr(cohort, key))
        if not cohort.genes and cohort.bed is None:
            raise InputError(f"{source}: cohort needs regions: set cohort.genes (from the gene table) "
                             "or cohort.bed")
        if cohort.genes and not cfg["reference"].get("annotation"):
            raise InputError(f"{source}: cohort.genes needs reference.annotation (the gene table)")
        must_exist("cohort.bed", cohort.bed)
        if cohort.bed is not None:  # the Snakefile counts its records to plan shards before any job runs
            from interp.cohort.shards import count_bed_regions

            n_bed = count_bed_regions(base / cohort.bed, source=f"{source}: cohort.bed = {cohort.bed!r}")
            if n_bed == 0 and not cohort.genes:
                raise InputError(f"{source}: cohort.bed = {cohort.bed!r}: no records (blank, '#', 'track' and "
                                 "'browser' lines only) and cohort.genes is empty: the cohort has no regions")
        roles = [("phenotype", p) for p in cohort.phenotypes] + [("covariate", c) for c in cohort.covariates]
        roles += [("population column", cohort.population_column)] if cohort.population_column else []
        seen: dict[str, str] = {}
        for role, column in roles:
            if column in seen:  # e.g. a phenotype adjusted for itself explains every test away
                raise InputError(f"{source}: samples.tsv column {column!r} is listed both as {seen[column]} and as "
                                 f"{role}; each column has one role (cohort.phenotypes, cohort.covariates, "
                                 "cohort.population_column)")
            seen[column] = role
        stray = [c for c in cohort.categorical_covariates if c not in cohort.covariates]
        if stray:
            raise InputError(f"{source}: cohort.categorical_covariates {stray} must also be listed in "
                             f"cohort.covariates ({cohort.covariates})")
        demography = cohort.simulate.get("demography", "OutOfAfrica_3G09")
        known = DEMOGRAPHY_POPULATIONS.get(demography, ())
        unknown = [p for p in cohort.populations if p not in known]
        if cohort.source == "simulate" and known and unknown:  # else the simulate job stops on it, much later
            raise InputError(f"{source}: cohort.populations: {unknown[0]!r} is not a population of "
                             f"cohort.simulate.demography {demography} ({', '.join(known)}); a config's "
                             "populations replace the default's")
        if cohort.source == "simulate":
            try:  # the simulate job would stop on it (it read only DOC2B's exons until the thirty-fourth session)
                causal_gene(cohort.simulate, cohort.genes)
            except InputError as exc:
                raise InputError(f"{source}: {exc}") from None
        if cohort.source == "simulate" and cohort.simulate.get("labels") == "absent" and cohort.population_column:
            raise InputError(f"{source}: cohort.simulate.labels is 'absent' (samples.tsv gets no population "
                             "column): set cohort.population_column: null")
        must_exist("cohort.ancestry_vcf", cohort.ancestry_vcf)
        if cohort.source == "vcf":
            _check_samples_sheet(base / cohort.samples, cohort, cfg["audit"]["n_folds"])
        width, stride = cohort.window["width"], cohort.window["stride"]
        if stride > width:
            raise InputError(f"{source}: cohort.window.stride ({stride}) is larger than cohort.window.width ({width}): "
                             "the bases between windows, and the variants there, would be in no haplotype window; "
                             "use a stride of at most the width")
    if cfg["sae"].get("layer") is None:
        raise InputError(f"{source}: sae.layer is required (one of the model's layers)")
    _check_lm_overrides(cfg, cards, source)
    _check_layers(cfg, cards, source)
    _check_planted_layer(cfg, source)
    _check_motifs_and_planted_genome(cfg, source)
    if cfg.get("calibration", {}).get("cells"):
        from interp.calibration import select_cells

        try:  # the Snakefile plans the calibration target's cells whatever the target, so a bad name stops any run
            select_cells(cfg["calibration"]["cells"])
        except ValueError as exc:
            raise InputError(f"{source}: calibration.cells: {exc}") from None
    if cfg["sae"]["layer"] not in cfg["embed"]["token_layers"]:
        cfg["embed"]["token_layers"] = list(cfg["embed"]["token_layers"]) + [cfg["sae"]["layer"]]
    _check_sae_sweep(cfg["sae"], source)
    _check_split_blocks(cfg, source)
    _check_label_shifts(cfg["sae"], source)
    _check_rank(cfg["rank"], source)
    if cfg.get("planted", {}).get("sae"):  # the planted SAE: `sae` with planted.sae merged over it (rule planted_sae)
        from interp.sae.config import SAEConfig, sae_settings

        settings_from_section(SAEConfig, cfg["planted"]["sae"], source=f"{source}: planted.sae", seed=0)
        sae_settings({**cfg["sae"], **cfg["planted"]["sae"]}, source=f"{source}: planted.sae")
    _check_job_size(cfg, source)
    return cfg


#: the most bytes of JSON the whole config may take: every rule passes its settings (rule `report`: the whole
#: config) inside its JSON job, one argument of its shell command, which Linux caps at 128 KiB (MAX_ARG_STRLEN);
#: the rest is left for the job's paths (long lists compacted, `interp.stages.compact_paths`) and the shell line
MAX_CONFIG_JSON = 96 * 1024


def _lists(value: Any, key: str = "") -> list[tuple[str, list]]:
    """Every list in a config (nested in dicts), with its dotted key."""
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _lists(v, f"{key}.{k}" if key else str(k))]
    return [(key, value)] if isinstance(value, list) else []


def _check_job_size(cfg: dict, source: str) -> None:
    """Refuse a config too long to travel in the rules' jobs: with ~15,000 names in cohort.genes, every cohort
    rule and the report failed at exec with "Argument list too long", after the run had started."""
    size = len(json.dumps(cfg, sort_keys=True))
    if size <= MAX_CONFIG_JSON:
        return
    key, longest = max(_lists(cfg), key=lambda kv: len(json.dumps(kv[1])), default=("a value", []))
    advice = {"cohort.genes": "list the cohort's regions in a BED file instead (cohort.bed: contig, start, end, "
                              "name per line; cohort.genes: [])",
              "regions": "tile fewer, longer regions"}.get(
        key, "shorten it")
    raise InputError(f"{source}: {key} ({len(longest):,} entries, {len(json.dumps(longest)) // 1024} KiB as JSON) "
                     f"makes the configuration {size // 1024} KiB as JSON, more than the {MAX_CONFIG_JSON // 1024} "
                     "KiB the rules can carry (each rule gets its settings as one command-line argument, which "
                     f"Linux caps at 128 KiB): {advice}")


def model_layer_names(card: dict, lm_overrides: dict | None) -> list[str]:
    """The layers a model has: its card's `layers`, or for the built-in model (family tiny) under
    `lm.overrides.n_layers`, `embed` and `block1`..`block<n>` (its depth follows the override)."""
    n_blocks = (lm_overrides or {}).get("n_layers") if card.get("family") == "tiny" else None
    if n_blocks is None:
        if card.get("family") == "tiny":  # the card's layers must be ones its architecture builds
            from interp.lm.config import TinyLMConfig

            depth = (card.get("architecture") or {}).get("n_layers", TinyLMConfig.n_layers)
            built = ["embed", *(f"block{i}" for i in range(1, depth + 1))] if isinstance(depth, int) else []
            unbuilt = [layer for layer in card["layers"] if layer not in built]
            if built and unbuilt:
                raise InputError(f"model card {card.get('name')}, field layers: {', '.join(map(repr, unbuilt))} "
                                 f"are not layers of the built-in model, which has embed and block1..block{depth} "
                                 f"(architecture.n_layers {depth})")
        return list(card["layers"])
    if not isinstance(n_blocks, int) or isinstance(n_blocks, bool) or n_blocks < 1:
        raise InputError(f"lm.overrides.n_layers: expected a positive integer, got {n_blocks!r}")
    return ["embed"] + [f"block{i}" for i in range(1, n_blocks + 1)]


def _check_lm_overrides(cfg: dict, cards: dict[str, dict], source: str) -> None:
    """lm.overrides (every built-in model of `models`) and planted.lm_overrides (the planted target's tiny-dnalm)
    must be keys of the card's `architecture` / `training` and give a consistent model: a misspelt key would
    otherwise stop only the pretrain rule, after the windows are built (the schema leaves these dicts open)."""
    from interp.lm.config import resolve_settings

    checks = [("lm.overrides", name, card, cfg["lm"]["overrides"]) for name, card in cards.items()
              if card.get("family") == "tiny"]
    planted = cfg.get("planted", {}).get("lm_overrides")
    if planted is not None and model_card_path(PLANTED_MODEL).exists():
        from interp.embed.registry import load_card

        checks.append(("planted.lm_overrides", PLANTED_MODEL, load_card(model_card_path(PLANTED_MODEL)), planted))
    for key, name, card, overrides in checks:
        try:  # the card alone first: its own mistakes are the card file's, not the config's
            resolve_settings(card, {})
        except InputError as exc:
            raise InputError(f"{model_card_path(name)}: {exc}") from None
        try:
            resolve_settings(card, overrides)
        except InputError as exc:
            raise InputError(f"{source}: {key}: {exc}") from None


def _check_layers(cfg: dict, cards: dict[str, dict], source: str) -> None:
    """embed.layers, embed.token_layers and sae.layer must be layers of every model in `models`: a name the
    model lacks would otherwise fail only in the embed rule, after the built-in model has been trained."""
    wanted = [("embed.layers", [] if cfg["embed"]["layers"] == "all" else list(cfg["embed"]["layers"])),
              ("embed.token_layers", list(cfg["embed"]["token_layers"])),
              ("sae.layer", [cfg["sae"]["layer"]])]
    for name, card in cards.items():
        try:
            have = model_layer_names(card, cfg["lm"]["overrides"])
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
        for key, layers in wanted:
            missing = [layer for layer in layers if layer not in have]
            if missing:
                depth = (" (lm.overrides.n_layers sets its depth)"
                         if card.get("family") == "tiny" and "n_layers" in cfg["lm"]["overrides"] else "")
                raise InputError(f"{source}: {key}: model {name} has no layer {', '.join(map(repr, missing))}; "
                                 f"its layers are {', '.join(have)}{depth}")


def _check_samples_sheet(path: Path, cohort, n_folds: int) -> None:
    """samples.tsv alone (its columns, phenotypes, population labels, covariates), as check_cohort checks it: read
    at config time, it stops a quantitative phenotype or a missing covariate before any job starts (on several
    cores the LM training would otherwise start beside check_cohort and be waited for). Cheap: the sheet only,
    no VCF."""
    from interp.cohort.vcf import check_phenotypes, read_samples_tsv
    from interp.covariates import covariate_design

    samples = read_samples_tsv(path, cohort.phenotypes, cohort.covariates, cohort.population_column)
    check_phenotypes(samples, cohort.phenotypes, n_folds, None, binary_only=True, source=str(path))
    covariate_design({n: samples[n].to_numpy() for n in cohort.covariates}, cohort.covariates,
                     missing=cohort.covariate_missing, sample_ids=samples["sample_id"].to_list(),
                     source=str(path), categorical=cohort.categorical_covariates)


def _check_motifs_and_planted_genome(cfg: dict, source: str) -> None:
    """The JASPAR names of sae.concepts.motifs and planted.genome.motifs, and the planted genome's ranges: a bad
    one would otherwise stop the run after the SAE has trained (the concept tracks) or in rule planted_genome."""
    from interp.sae.concept_tracks import load_jaspar_motifs
    from interp.sae.planted_genome import PlantedConfig

    try:
        load_jaspar_motifs(cfg["sae"].get("concepts", {}).get("motifs", []), "sae.concepts.motifs")
        genome = cfg.get("planted", {}).get("genome")
        if genome is not None:
            load_jaspar_motifs(PlantedConfig.from_params(genome).motifs, "planted.genome.motifs")
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def _check_planted_layer(cfg: dict, source: str) -> None:
    """planted.layer must be a layer of the planted target's tiny-dnalm at planted.lm_overrides' depth: a name it
    lacks would otherwise fail only in rule planted_embed, after the planted LM has been trained (minutes)."""
    planted = cfg.get("planted", {})
    if planted.get("layer") is None or not model_card_path(PLANTED_MODEL).exists():
        return
    from interp.embed.registry import load_card

    try:
        have = model_layer_names(load_card(model_card_path(PLANTED_MODEL)), planted.get("lm_overrides"))
    except InputError as exc:
        raise InputError(f"{source}: planted.{exc}") from None
    if planted["layer"] not in have:
        raise InputError(f"{source}: planted.layer: model {PLANTED_MODEL} has no layer {planted['layer']!r} at "
                         f"planted.lm_overrides' depth; its layers are {', '.join(have)}")


def _check_sae_sweep(sae: dict, source: str) -> None:
    """The whole `sae` section and each sweep entry (a name + the training keys it overrides) must make a valid
    SAEConfig; an entry's key that is not a training setting (nor `name`) is refused by name."""
    from interp.sae.config import SAEConfig, sae_settings

    sae_settings(sae, source=f"{source}: sae")
    seen = set()
    for i, entry in enumerate(sae.get("sweep", [])):
        where = f"{source}: sae.sweep[{i}] ({entry.get('name')})"
        overrides = {k: v for k, v in entry.items() if k != "name"}
        settings_from_section(SAEConfig, overrides, source=where, seed=0)  # the seed is the run's, not an entry's
        if entry["name"] in seen or entry["name"] == "main":
            raise InputError(f"{source}: sae.sweep[{i}]: name {entry['name']!r} is used twice (or is 'main')")
        seen.add(entry["name"])
        sae_settings({**sae, **overrides}, source=where)


def label_shifts_problem(n_shifts: int, alpha: float) -> str | None:
    """Why sae.labels' n_shifts cannot serve alpha, or None: the smallest family-wise p of the label test's shift
    null is 1 / (1 + n_shifts) (`interp.sae.shift_null`), so with fewer than 1 / alpha - 1 shifts no unit could
    ever be labelled, and the tables would not say why. Torch-free: check_config runs on every Snakemake start."""
    if n_shifts > 0 and 1.0 / (1 + n_shifts) > alpha:
        return (f"sae.labels.n_shifts {n_shifts} cannot reach alpha {alpha} (the smallest family-wise p is "
                "1 / (1 + n_shifts)): use at least 1 / alpha - 1 shifts, or 0 (Bonferroni)")
    return None


def _check_label_shifts(sae: dict, source: str) -> None:
    """sae.labels' n_shifts must reach its alpha (`label_shifts_problem`): refused here, not by the label stage
    after the SAE is trained. check_config has filled the schema's defaults."""
    labels = sae.get("labels") or {}
    problem = label_shifts_problem(int(labels.get("n_shifts", 0)), float(labels.get("alpha", 1.0)))
    if problem:
        raise InputError(f"{source}: {problem}")


#: rank.stability_screen must be at least this many times rank.top_k (the defaults: 2000 and 20)
MIN_SCREEN_PER_TOP_K = 100


def _check_rank(rank: dict, source: str) -> None:
    """rank settings that would bias what it reports. Stability is computed among the best `stability_screen`
    columns only, so columns beyond them never compete for a half-sample's top_k: at a screen near top_k every
    screened null column read stability near 1 (screen 10, top_k 20: 1.0; at 10x top_k still up to 0.2 above the
    unscreened value, at 100x within 0.05; one simulation each). The report's rows must have refitted effects
    (`refit_top`)."""
    screen, top_k = int(rank["stability_screen"]), int(rank["top_k"])
    if screen < MIN_SCREEN_PER_TOP_K * top_k:
        raise InputError(f"{source}: rank.stability_screen ({screen}) must be at least {MIN_SCREEN_PER_TOP_K} x "
                         f"rank.top_k ({top_k}), i.e. {MIN_SCREEN_PER_TOP_K * top_k}: columns beyond the screen never "
                         "compete for a half-sample's top k, which inflates the stability of the screened ones")
    # the report shows the best report_top rows of each family: beyond refit_top their log odds ratios would be the
    # score's one-step estimates, up to 2x the fitted value for a rare column with unbalanced cases, unmarked
    refit, shown = int(rank["refit_top"]), int(rank["report_top"])
    if 0 < refit < shown:
        raise InputError(f"{source}: rank.report_top ({shown}) is larger than rank.refit_top ({refit}): the report's "
                         f"rows beyond the first {refit} of each family would show one-step score estimates of the log "
                         "odds ratio (up to 2x the fitted value for rare columns with unbalanced cases); set "
                         f"rank.refit_top to at least {shown} (or 0: one-step estimates throughout, as the report then says)")


def _check_split_blocks(cfg: dict, source: str) -> None:
    """sae.split_block_bases (and a sweep entry's or planted.sae's own) must be at least twice the width of the
    windows the SAE reads: the tokens of a window straddling two splits are in no split
    (`interp.sae.splits`), so blocks about one window long would leave out about half the tokens and almost
    none in the small validation and test splits; refused before anything is embedded."""
    from interp.sae.config import SAEConfig

    default = SAEConfig.split_block_bases
    sae = cfg["sae"]
    checks = [("sae.split_block_bases", sae.get("split_block_bases", default), "windows.width",
               (cfg.get("windows") or {}).get("width"))]
    checks += [(f"sae.sweep[{i}].split_block_bases", e["split_block_bases"], "windows.width",
                (cfg.get("windows") or {}).get("width"))
               for i, e in enumerate(sae.get("sweep", [])) if "split_block_bases" in e]
    planted = cfg.get("planted") or {}
    if planted:
        block = (planted.get("sae") or {}).get("split_block_bases", sae.get("split_block_bases", default))
        checks.append(("planted.sae.split_block_bases (else sae.split_block_bases)", block, "planted.windows.width",
                       (planted.get("windows") or {}).get("width")))
    for key, block, width_key, width in checks:
        if isinstance(block, int) and isinstance(width, int) and block < 2 * width:
            raise InputError(f"{source}: {key} = {block} is less than twice {width_key} ({width}): a window that "
                             f"straddles blocks of two splits gives none of its tokens to any split, so about "
                             f"{min(100, round(100 * width / block))}% of windows would be left out. Use blocks of "
                             f"at least {2 * width} bases (several times the window length)")


def model_card_path(name: str) -> Path:
    """models/<name>.yaml"""
    return MODELS_DIR / f"{name}.yaml"


def load_workflow_config(paths: list[str | Path]) -> dict:
    """The config Snakemake runs with `--configfile paths`: `DEFAULT_CONFIG` first, then `paths` merged
    over it (none: the default alone), so the command-line tools see what the workflow sees."""
    rest = [p for p in paths if Path(p).resolve() != DEFAULT_CONFIG.resolve()]
    return load_config_files([DEFAULT_CONFIG, *rest])


#: mappings whose keys are data (population names), not settings: a config file that sets one replaces the
#: mapping of the files before it (the defaults') instead of adding to it, or a user's {ADMIX: 300} would keep
#: the demo's YRI, CEU and CHB
REPLACED_MAPPINGS: tuple[tuple[str, ...], ...] = (("cohort", "populations"),)


def read_config_file(path: str | Path) -> dict:
    """One YAML config file as a mapping; InputError naming the file for a missing or empty file, YAML that
    does not parse, a key given twice in one mapping (a section written twice kept only the last), or a top
    level that is not a mapping."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"config file {p} not found")
    if p.is_dir():
        raise InputError(f"config file {p} is a folder; expected a YAML file")
    try:
        with open(p, encoding="utf-8") as fh:
            data = load_yaml_unique(fh.read())
    except yaml.YAMLError as exc:
        raise InputError(f"{p}: not valid YAML: {yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not a UTF-8 text file ({exc.reason} at byte {exc.start}); expected YAML") from None
    except OSError as exc:
        raise InputError(f"config file {p}: cannot be read ({exc.strerror})") from None
    if data is None:  # Snakemake refuses it too, without naming the file
        raise InputError(f"{p}: no settings (the file is empty or holds only comments); expected a mapping of "
                         "config keys such as run: and reference:")
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a mapping of config keys at the top level")
    return data


def load_config_files(paths: list[str | Path]) -> dict:
    """Merge YAML config files left to right (later keys win, like snakemake --configfile; the mappings of
    `REPLACED_MAPPINGS` are replaced whole)."""
    merged: dict = {}
    for path in paths:
        _deep_update(merged, read_config_file(path))
    return merged


def replace_data_mappings(config: dict, sources: list) -> dict:
    """`config` merged key by key by Snakemake from `sources` (its --configfile files, after the workflow's own
    default, then its --config mapping), with each mapping of `REPLACED_MAPPINGS` that a source sets replaced
    by the last such source's own (files are read again, and checked as `read_config_file` does)."""
    for keys in REPLACED_MAPPINGS:
        last = None
        for source in sources:
            node: Any = dict(source) if isinstance(source, Mapping) else read_config_file(source)
            for key in keys:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict):
                last = node
        if last is not None:
            parent = config
            for key in keys[:-1]:
                parent = parent.setdefault(key, {})
            parent[keys[-1]] = copy.deepcopy(last)
    return config


def _deep_update(base: dict, new: dict, path: tuple[str, ...] = ()) -> None:
    for key, value in new.items():
        here = (*path, key)
        if isinstance(value, dict) and isinstance(base.get(key), dict) and here not in REPLACED_MAPPINGS:
            _deep_update(base[key], value, here)
        else:
            base[key] = value


def settings_from_section(cls: type, section: dict, *, ignore: tuple[str, ...] | set[str] = (), source: str = "config",
                          **extra: Any) -> Any:
    """A settings dataclass built from a whole config section, plus `extra` fields (the run's seed).

    Every key of `section` must be a field of `cls` or be named in `ignore` (keys of the section that other
    code reads, e.g. rank.report_top for the report); anything else raises InputError naming the section, the
    key and the fields `cls` has, instead of being silently dropped. The fields `extra` sets are the run's, not
    the section's: a section key of that name is refused too, unless ignored (then `extra` wins). Fields the
    section leaves out keep the dataclass defaults (the schema's, `tests/test_config_defaults.py`).
    """
    from dataclasses import fields

    names = {f.name for f in fields(cls)}
    bad_extra = sorted(set(extra) - names)
    if bad_extra:
        raise TypeError(f"{cls.__name__} has no fields {bad_extra}")
    keys = names - set(extra)
    unknown = sorted(set(section) - keys - set(ignore))
    if unknown:
        raise InputError(f"{source}: unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(k) for k in unknown)} for {cls.__name__}; "
                         f"expected some of {', '.join(sorted(keys))}")
    return cls(**{k: v for k, v in section.items() if k in keys}, **extra)
