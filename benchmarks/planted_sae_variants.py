"""Rerun the planted calibration's SAE on an existing planted run with other SAE settings (seeds, architectures).

The README's planted experiments that change only the SAE (seed replicates, architectures on one LM) train it
again on the run's stored tokens: the `planted_sae` and `planted_calibration` stages, with the rules' own jobs
(taken from `snakemake planted -n -p`, so every other setting is the run's) and the named SAE keys replaced.
The LM, windows and tokens are the run's and are not touched; each variant writes to OUT/<name>/ (weights,
metrics, features, calibration.json, match.tsv, steer.tsv, logs). Two variants run at a time (one thread each,
as the rules). A variant whose outputs exist is skipped.

    python benchmarks/planted_sae_variants.py OUT --configfile configs/demo.yaml [overlay.yaml ...] \\
        -- seed1:seed=1 batchtopk:architecture=batchtopk wide:n_features=2048,k=32

Values are read as YAML (`seed=1` an int, `architecture=relu` a string). The run must have been built
(`snakemake planted ...` with the same config files). Prints one summary line per variant; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def rule_jobs(configfiles: list[str]) -> dict[str, dict]:
    """The JSON jobs of the `sae` and `planted_calibration` stages that `snakemake planted` would run."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "planted", "-n", "-p", "--nolock", "--forcerun",
                          "planted_sae", "--configfile", *configfiles], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"snakemake dry run failed:\n{out.stderr[-2000:]}")
    jobs = {}
    for line in out.stdout.splitlines():
        if "interp.cli stage" not in line:
            continue
        words = shlex.split(line[line.index("python"):])
        stage = words[words.index("stage") + 1]
        if stage in ("sae", "planted_calibration"):
            jobs[stage] = json.loads(words[words.index("stage") + 2])
    if set(jobs) != {"sae", "planted_calibration"}:
        raise SystemExit("snakemake planted -n -p did not list the planted_sae and planted_calibration jobs")
    missing = [path for path in jobs["sae"]["input"].values() if isinstance(path, str) and not (ROOT / path).exists()]
    if missing:
        raise SystemExit(f"the planted run is not built (missing {', '.join(missing)}): run `snakemake planted` "
                         "with the same config files first")
    return jobs


def parse_variant(text: str) -> tuple[str, dict]:
    """'name:key=value,key=value' -> (name, {key: YAML value})."""
    name, _, settings = text.partition(":")
    if not name or not settings:
        raise SystemExit(f"variant {text!r}: expected name:key=value[,key=value]")
    changes = {}
    for item in settings.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"variant {text!r}: {item!r} is not key=value")
        changes[key.strip()] = yaml.safe_load(value)
    return name, changes


def variant_jobs(jobs: dict[str, dict], changes: dict, out: Path) -> list[tuple[str, dict]]:
    """The two stage jobs with the SAE keys changed and every output under `out`."""
    sae = json.loads(json.dumps(jobs["sae"]))
    unknown = set(changes) - set(sae["params"])
    if unknown:
        raise SystemExit(f"not SAE settings of the sae stage: {', '.join(sorted(unknown))}")
    sae["params"].update(changes)
    sae["params"]["log_dir"] = str(out / "csv")
    sae["output"] = {k: str(out / Path(v).name) for k, v in sae["output"].items()}
    cal = json.loads(json.dumps(jobs["planted_calibration"]))
    cal["params"]["sae"].update({k: v for k, v in changes.items() if k in cal["params"]["sae"]})
    for key in ("weights", "features", "units"):
        cal["input"][key] = sae["output"][key]
    cal["input"]["sae_metrics"] = sae["output"]["metrics"]
    cal["output"] = {k: str(out / Path(v).name) for k, v in cal["output"].items()}
    return [("sae", sae), ("planted_calibration", cal)]


def run_variant(name: str, stages: list[tuple[str, dict]], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    for stage, job in stages:
        if all(Path(p).exists() for p in job["output"].values()):
            continue
        with open(out / f"{stage}.log", "w") as log:
            done = subprocess.run([sys.executable, "-m", "interp.cli", "stage", stage, json.dumps(job)], cwd=ROOT,
                                  stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            return f"{name}: stage {stage} failed (exit {done.returncode}), see {out / f'{stage}.log'}"
    calibration = json.loads(Path(stages[1][1]["output"]["json"]).read_text())
    match = {row["concept"]: row for row in calibration["match"]}
    steered = [row for row in calibration["steering"] if row.get("rule") != "per_base_best"]
    f1 = ", ".join(f"{k} {v['f1']:.2f}" if v["f1"] is not None else f"{k} -" for k, v in match.items())
    return (f"{name}: per base {calibration['match_n_matched']} of {len(match)}, per instance "
            f"{calibration['match_instance_n_matched']}, steering {sum(bool(r['raises_motif']) for r in steered)} "
            f"of {len(steered)}, FVU {calibration['sae']['fvu']:.3f}, loss recovered "
            f"{calibration['sae']['loss_recovered']:.3f}; per-base F1: {f1}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the variants' outputs (one subfolder each)")
    parser.add_argument("--configfile", nargs="+", required=True, help="the planted run's config files")
    parser.add_argument("variants", nargs="+", help="name:key=value[,key=value] (SAE settings)")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variants]
    jobs = rule_jobs(args.configfile)
    plans = [(name, variant_jobs(jobs, changes, args.out / name), args.out / name) for name, changes in variants]
    with ThreadPoolExecutor(2) as pool:
        for line in pool.map(lambda plan: run_variant(*plan), plans):
            print(line, flush=True)


if __name__ == "__main__":
    main()
