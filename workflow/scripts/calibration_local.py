"""Run the calibration suite's replicate jobs in a few long-lived worker processes on one machine.

Snakemake runs one process per `calibration_replicate` job, and each pays about 15 s of imports (torch,
scanpy, numba) against 25-40 s of work. On a single machine this script takes the jobs Snakemake would
run (`snakemake -n -p`, the same job JSON and the same output files) and runs them in `--workers`
processes that import once. Finished replicates are skipped, so it can be stopped and started again;
`snakemake calibration --configfile configs/calibration.yaml` then only gathers.

    python workflow/scripts/calibration_local.py --workers 2 --cells base confounding=strong \
        --replicates 100 [--archive results/calibration/calibration/archive]

    python workflow/scripts/calibration_local.py --reaudit --archive results/calibration/calibration/archive \
        [--cells ...] [--first 0 --replicates 100] [--run NAME --overlay my-audit.yaml]

--run NAME writes into results/NAME/ instead of results/calibration/ (a separate measurement that is
gathered on its own, e.g. ranked replicates rerun with null redraws); it uses the LM and SAE under
results/NAME/, which `snakemake ... --config run=NAME` trains (or link those of results/calibration).

--archive keeps about 1 MB per replicate (embeddings, PCs, truth, rank table) so that `--reaudit` can
rewrite every archived replicate's summary with the current audit code, without simulating or
embedding again.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = ["configs/demo.yaml", "configs/calibration.yaml"]
RUN = "calibration"  # the run name of configs/calibration.yaml


def _jobs(targets: list[str], run: str, configs: list[str]) -> list[dict]:
    """Job JSON of each pending target, from a Snakemake dry run that prints the shell commands."""
    cmd = ["snakemake", "-n", "-p", *targets, "--configfile", *configs]
    if run != RUN:
        cmd += ["--config", f"run={run}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:  # a bad config or target: snakemake's own message, not a CalledProcessError traceback
        raise SystemExit(f"error: {shlex.join(cmd)} failed:\n{(res.stdout + res.stderr).strip()}")
    text = res.stdout
    jobs = []
    for line in text.splitlines():
        m = re.search(r"interp\.cli stage calibration_replicate (.*?) > ", line)
        if m:
            jobs.append(json.loads(shlex.split(m.group(1))[0]))
    return jobs


def _run(job: dict) -> tuple[str, float, str]:
    from interp import stages

    t0 = time.perf_counter()
    try:
        stages.calibration_replicate(stages.Job(**job))
        return job["output"]["summary"], time.perf_counter() - t0, ""
    except Exception as exc:  # one failed replicate must not stop the others; it is reported and left undone
        return job["output"]["summary"], time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"


_CONFIG: dict = {}  # the checked config of a re-audit worker, loaded once per process (`_load_config`)


def _load_config(configs: list[str]) -> None:
    from interp.config import check_config, load_config_files

    _CONFIG.update(check_config(load_config_files(configs)))


def _reaudit_one(task: tuple[str, str]) -> str:
    from interp.calibration import reaudit_replicate
    from interp.io import write_text_atomic

    folder, path = task
    summary = reaudit_replicate(Path(folder), _CONFIG, None)
    write_text_atomic(path, json.dumps(summary, indent=1))  # a stopped re-audit keeps the earlier summary whole
    return path


def _reaudit(archive: Path, out: Path, cells: list[str] | None, replicates: range, configs: list[str],
             workers: int) -> int:
    tasks = []
    for folder in sorted(p.parent for p in archive.glob("*/*/summary.json")):
        cell, replicate = folder.parent.name, folder.name
        if (cells and cell not in cells) or int(replicate) not in replicates:
            continue
        tasks.append((str(folder), str(out / "replicates" / cell / f"{replicate}.json")))
    with mp.get_context("spawn").Pool(workers, initializer=_load_config, initargs=(configs,)) as pool:
        for path in pool.imap_unordered(_reaudit_one, tasks):
            print(f"{time.strftime('%H:%M:%S')} {path}", file=sys.stderr, flush=True)
    print(f"re-audited {len(tasks)} archived replicates", file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", required=False, help="cell names (interp.calibration.grid_cells)")
    ap.add_argument("--replicates", type=int, default=None,
                    help="replicates first..first+N-1 of each cell (default 100; with --reaudit, every archived one)")
    ap.add_argument("--first", type=int, default=0, help="first replicate index")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--archive", type=Path, help="keep each replicate's audit inputs here (see --reaudit)")
    ap.add_argument("--reaudit", action="store_true", help="re-run the audit on the archived replicates")
    ap.add_argument("--run", default=RUN, help="run name: outputs under results/RUN/calibration")
    ap.add_argument("--overlay", nargs="*", default=[],
                    help="config files merged over configs/demo.yaml + configs/calibration.yaml (e.g. another audit)")
    args = ap.parse_args()
    configs = CONFIGS + [str(p) for p in args.overlay]
    out = Path("results") / args.run / "calibration"
    if args.reaudit:
        if not args.archive:
            ap.error("--reaudit needs --archive")
        # every archived replicate from --first unless --replicates bounds it (mild confounding has 0-199)
        last = args.first + args.replicates if args.replicates is not None else sys.maxsize
        return _reaudit(args.archive, out, args.cells, range(args.first, last), configs,
                        args.workers)
    if not args.cells:
        ap.error("--cells is required")
    n_replicates = 100 if args.replicates is None else args.replicates
    targets = [str(out / "replicates" / c / f"{r}.json") for r in range(args.first, args.first + n_replicates)
               for c in args.cells]
    pending = [t for t in targets if not Path(t).exists()]
    if not pending:
        print("nothing to do", file=sys.stderr)
        return 0
    jobs = _jobs(pending, args.run, configs)
    if args.archive:
        for job in jobs:
            p = job["params"]
            job["params"] = {**p, "archive": str(args.archive / p["cell"] / str(p["replicate"]))}
    order = {t: i for i, t in enumerate(targets)}  # replicate-major, so every cell grows together
    jobs.sort(key=lambda j: order.get(j["output"]["summary"], 0))
    print(f"{len(jobs)} replicate jobs on {args.workers} workers", file=sys.stderr)
    failed = 0
    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=50) as pool:
        for path, seconds, error in pool.imap_unordered(_run, jobs):
            failed += bool(error)
            print(f"{time.strftime('%H:%M:%S')} {path} {seconds:.1f} s {error}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
