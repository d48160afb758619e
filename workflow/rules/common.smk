# Config validation (before any rule runs) and the small helpers every rule file uses.
import json
import sys

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from interp.config import check_config
from interp.errors import InputError

try:
    # One short message naming the key or path, instead of a schema dump.
    config = check_config(config, base_dir=workflow.basedir, source="config")
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


def card_path(model):
    return f"models/{model}.yaml"


def load_card(model):
    with open(card_path(model)) as fh:
        return yaml.safe_load(fh)


def model_layers(model):
    """Layers to pool for one model: the config's list, or all of the card's."""
    layers = config["embed"]["layers"]
    return list(load_card(model)["layers"]) if layers == "all" else list(layers)


def checkpoint_input(model):
    """The built-in model trains itself; other families load their published weights."""
    if load_card(model).get("family") == "tiny":
        return {"checkpoint": f"{R}/lm/{model}.safetensors"}
    return {}


def job(stage_params):
    """A params function that packs a rule's io, settings and threads as one JSON job."""

    def pack(wildcards, input, output, threads):
        params = stage_params(wildcards) if callable(stage_params) else stage_params

        def plain(named):
            return {k: (list(v) if not isinstance(v, str) else v) for k, v in named.items()}

        return json.dumps({"input": plain(input), "output": plain(output), "params": params,
                           "threads": threads}, sort_keys=True)

    return pack


STAGE = "python -m interp.cli stage"
