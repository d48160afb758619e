"""Command line: `python -m interp.cli stage <stage> '<job json>'` (every rule but `prefetch`), and more.

The other verbs: `check-config`, `summary`, `calibration-gather`, `calibration-oracle` and `prefetch`.

Rules only wire: each passes its inputs, outputs, settings and threads as one JSON job to a stage
function in `interp.stages` (of the rule's own name, except the `planted_*` rules that rerun `windows`,
`pretrain_tiny_dnalm`, `embed` and `sae` on the planted genome). User mistakes (`InputError`) print one
clean line on stderr and exit 2; partial outputs are never left behind by the stages.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from interp.errors import InputError


class StageStopped(BaseException):
    """A stage stopped by SIGTERM or SIGINT (a BaseException, as KeyboardInterrupt: no `except Exception` of a
    stage takes it for an error of its own)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame) -> None:
    raise StageStopped(signum)


#: thread-count variables of the native math libraries (OpenMP, OpenBLAS, MKL, ...): the ones Snakemake sets to a
#: rule's threads for its shell command
NATIVE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                           "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit_native_threads(job_json: str) -> None:
    """Set NATIVE_THREAD_VARIABLES to the job's threads, before numpy, scipy or torch are loaded, as Snakemake does
    for a rule: a stage run by hand (or by a script) then uses the rule's thread count in BLAS too, and its tables
    come out as under Snakemake (a multi-threaded BLAS sums in another order: the linear probes' F1 moved in the
    fourth decimal). A job that does not parse is left to `Job.from_json` to report."""
    try:
        threads = int(json.loads(job_json).get("threads", 1))
    except (ValueError, TypeError, AttributeError):
        return
    for variable in NATIVE_THREAD_VARIABLES:
        os.environ[variable] = str(max(1, threads))


def _run_stage(name: str, job_json: str) -> int:
    """Run one stage. SIGTERM (Snakemake cancelling its jobs, `timeout`, SLURM at the time limit) and SIGINT
    unwind the stage as an exception, so every `finally` of interp.io's atomic writes removes its temporary
    file; Python's default SIGTERM exit skipped them and left `.<name>.tmp<pid>` files no later run removes.
    The log then says in one line which stage stopped and why; the exit status is 128 + the signal."""
    limit_native_threads(job_json)
    from interp import stages

    fn = getattr(stages, name, None)
    if fn is None or name.startswith("_") or name not in stages.STAGES:
        raise InputError(f"unknown stage {name!r}; stages: {', '.join(stages.STAGES)}")
    job = stages.Job.from_json(job_json)
    t0 = time.perf_counter()
    previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        fn(job)
    except StageStopped as stop:
        print(f"error: stage {name} stopped by {stop} after {time.perf_counter() - t0:.1f} s; its outputs were "
              "not written (rerun to complete them)", file=sys.stderr)
        return 128 + stop.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(f"[interp] stage {name} finished in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def _summary(configfiles: list[str]) -> int:
    """Print where the report is and the wall time of every rule (from Snakemake benchmarks)."""
    from interp.config import check_config, load_workflow_config
    from interp.report.provenance import rule_timings

    cfg = check_config(load_workflow_config(configfiles), source=", ".join(configfiles) or "configs/demo.yaml")
    run = cfg["run"]
    if not (Path("reports") / run / "index.html").is_file():
        raise InputError(f"reports/{run}/index.html: no report for run {run!r} yet (run snakemake with the same "
                         "config first)")
    print(f"\nReport: reports/{run}/index.html\n        reports/{run}/report.json")
    pdf = Path("reports") / run / "report.pdf"
    print(f"        {pdf}" if pdf.exists() else "        (no report.pdf: Chromium not installed, see the report log)")
    timings = rule_timings(Path("results") / run / "benchmarks")
    if timings:
        print("\nWall time per rule (seconds, from benchmark files):")
        for row in timings:
            print(f"  {row['rule']:<40s} {row['seconds']:8.1f}")
        print(f"  {'total (sum of rules)':<40s} {sum(r['seconds'] for r in timings):8.1f}")
    return 0


def _calibration_gather(replicates: Path, out: Path, prior: Path | None = None,
                        supersede: tuple[str, ...] = ()) -> int:
    from interp.calibration import gather

    # not the hidden temporary sibling of a summary being written (interp.io.atomic_path: .<name>.tmp<pid>.json)
    if not replicates.is_dir():
        raise InputError(f"{replicates}: no such folder (expected the calibration suite's replicate folder, "
                         "<cell>/<replicate>.json)")
    files = sorted(p for p in replicates.glob("*/*.json") if not p.name.startswith("."))
    if not files:
        raise InputError(f"{replicates}: no replicate summaries (<cell>/<replicate>.json) yet")
    if prior is not None and not prior.is_file():
        raise InputError(f"{prior}: no such calibration table (--prior expects an earlier calibration.json)")
    command = (f"interp calibration-gather {replicates} {out}" + (f" --prior {prior}" if prior else "")
               + "".join(f" --supersede {cell}" for cell in supersede))
    try:
        rows = gather(files, {"tsv": out / "calibration.tsv", "json": out / "calibration.json",
                              "report": out / "report" / "report.md"}, meta={"command": command}, prior=prior,
                      supersede=tuple(supersede))
    except ValueError as exc:  # each message names its file or cell
        raise InputError(str(exc)) from None
    print(f"{len(files)} replicate summaries, {len(rows)} rows -> {out}/calibration.tsv, calibration.json, "
          "report/report.md")
    return 0


def _calibration_oracle(archive: Path, out: Path, cells: list[str] | None, configfiles: list[str]) -> int:
    from interp.calibration import oracle_markdown, oracle_rows
    from interp.config import check_config, load_workflow_config
    from interp.io import write_text_atomic

    if not archive.is_dir():
        raise InputError(f"{archive}: no such calibration archive (calibration_local.py --archive writes one)")
    config = check_config(load_workflow_config(configfiles), source=", ".join(configfiles))
    try:
        rows = oracle_rows(archive, config, cells, alpha=float(config.get("calibration", {}).get("alpha", 0.05)))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if not rows:
        raise InputError(f"{archive}: no archived replicate (<cell>/<replicate>/summary.json, geno.h5ad)")
    command = f"interp calibration-oracle {archive} {out}" + (f" --cells {' '.join(cells)}" if cells else "")
    write_text_atomic(out, json.dumps({"meta": {"command": command, "configfiles": configfiles}, "rows": rows},
                                      indent=2, sort_keys=True) + "\n")
    print(oracle_markdown(rows), end="")
    return 0


def _prefetch(cards: list[str], configfiles: list[str], cache: str | None) -> int:
    """Download the models of the given cards (or of a config's `models`) into the HF cache."""
    from interp.config import model_card_path
    from interp.embed.hub import prefetch_models
    from interp.embed.registry import load_card

    # a card named by its file (models/x.yaml, ./my.yaml) or by its name (x: models/x.yaml)
    paths = [Path(c) if Path(c).is_file() or c.endswith((".yaml", ".yml")) or "/" in c else model_card_path(c)
             for c in cards]
    if configfiles:
        from interp.config import check_config, load_workflow_config

        cfg = check_config(load_workflow_config(configfiles), source=", ".join(configfiles))
        paths += [model_card_path(name) for name in cfg["models"]]
        cache = cache or cfg["embed"].get("hf_cache")
    if not paths:
        raise InputError("prefetch: name model cards or give --configfile")
    for row in prefetch_models([load_card(p) for p in paths], cache or None):
        print(json.dumps(row, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    stage = sub.add_parser("stage", help="run one pipeline stage from a JSON job (used by the rules)")
    stage.add_argument("name")
    stage.add_argument("job", help="JSON: {input, output, params, threads, log}")
    check = sub.add_parser("check-config", help="validate config files (merged over configs/demo.yaml, as the Snakefile "
                           "does), print the resolved config")
    check.add_argument("configfile", nargs="+")
    summary = sub.add_parser("summary", help="print the report path and per-rule wall times")
    summary.add_argument("--configfile", action="append", default=[])
    cal = sub.add_parser("calibration-gather",
                         help="pool the calibration replicate summaries written so far (partial results of a run)")
    cal.add_argument("replicates", help="folder of <cell>/<replicate>.json, e.g. results/calibration/calibration/replicates")
    cal.add_argument("out", help="folder for calibration.tsv, calibration.json and report/")
    cal.add_argument("--prior", default=None, help="an earlier calibration.json (replicates 0.. of each cell, whose "
                                                   "summaries are gone) to pool the verdict counts with")
    cal.add_argument("--supersede", action="append", default=[], metavar="CELL",
                     help="a cell of --prior whose rows are dropped, not pooled: its simulation changed, and the new "
                          "replicates (from 0) replace it (repeatable)")
    oracle = sub.add_parser("calibration-oracle",
                            help="the audit's causal PASS rate beside a test of the known causal variant, per cell "
                                 "of a calibration archive")
    oracle.add_argument("archive", help="folder of <cell>/<replicate>/ (calibration_local.py --archive)")
    oracle.add_argument("out", help="JSON file for the table (printed as markdown too)")
    oracle.add_argument("--cells", nargs="+", default=None, help="cells to read (default: every cell folder)")
    oracle.add_argument("--configfile", action="append", default=None,
                        help="the suite's config files (default: configs/demo.yaml configs/calibration.yaml)")
    prefetch = sub.add_parser("prefetch", help="download every hub model named by model cards or a config "
                                                "(run on a login node; compute nodes then use HF_HUB_OFFLINE=1)")
    prefetch.add_argument("cards", nargs="*", help="model card files or names (models/<name>.yaml)")
    prefetch.add_argument("--configfile", action="append", default=[], help="take the cards and embed.hf_cache "
                                                                             "from these config files")
    prefetch.add_argument("--cache", default=None, help="Hugging Face cache folder (overrides embed.hf_cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("lightning.pytorch", "pytorch_lightning", "lightning", "numba", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        if args.command == "stage":
            return _run_stage(args.name, args.job)
        if args.command == "check-config":
            from interp.config import check_config, load_workflow_config

            cfg = check_config(load_workflow_config(args.configfile), source=", ".join(args.configfile))
            print(json.dumps(cfg, indent=2))
            return 0
        if args.command == "calibration-gather":
            return _calibration_gather(Path(args.replicates), Path(args.out),
                                       Path(args.prior) if args.prior else None, tuple(args.supersede))
        if args.command == "calibration-oracle":
            return _calibration_oracle(Path(args.archive), Path(args.out), args.cells,
                                       args.configfile or ["configs/demo.yaml", "configs/calibration.yaml"])
        if args.command == "prefetch":
            return _prefetch(args.cards, args.configfile, args.cache)
        return _summary(args.configfile)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
