"""environment.yml, the conda twin of pyproject.toml: the same pins, and usable where conda reads it."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import REPO


def _env_pip() -> list[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml: expected one pip: list"
    return [str(x).strip() for x in pip[0]]


def test_environment_pins_equal_pyproject() -> None:
    """Every package pyproject.toml pins (dependencies and the test extra) at the same version, and no other."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = sorted(project["dependencies"] + project["optional-dependencies"]["test"])
    pinned = sorted(x for x in _env_pip() if re.match(r"^[A-Za-z0-9_.\-\[\]]+==", x))
    assert pinned == wanted


def test_environment_names_no_relative_local_path() -> None:
    """environment.yml once ended with `-e ..`. conda runs pip in the env file's own folder, so from the repository
    root that is the folder above the checkout (not a Python project: `conda env create` fails), and
    `snakemake --sdm conda` builds each rule's env from a copy in .snakemake/conda/ (or --conda-prefix), where no
    relative path reaches the checkout. The rules need no install: they run `python -m interp.cli` in the
    workflow's folder, and Snakemake puts that folder on the import path of the Snakefile."""
    for entry in _env_pip():
        target = re.sub(r"^(-e|--editable)(\s+|=)", "", entry)
        local = target != entry or target.startswith((".", "/", "file:"))
        for where in (REPO, REPO / ".snakemake" / "conda"):
            resolved = (where / target).resolve() if local else None
            assert not local or (resolved / "pyproject.toml").is_file() and resolved == REPO.resolve(), (
                f"environment.yml pip entry {entry!r}: from {where} (where conda runs pip) it is {resolved}, "
                "not this project")

