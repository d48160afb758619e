"""`interp.cli.limit_native_threads`: a stage run by hand uses the job's threads in BLAS, as under Snakemake."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from interp.cli import NATIVE_THREAD_VARIABLES

PROBE = """
import json, sys
from interp.cli import limit_native_threads
limit_native_threads(sys.argv[1])
import numpy  # loads its BLAS after the limit, as a stage does
from threadpoolctl import threadpool_info
print(json.dumps([pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]))
"""


def blas_threads(job_json: str) -> list[int]:
    env = {k: v for k, v in os.environ.items() if k not in NATIVE_THREAD_VARIABLES}
    out = subprocess.run([sys.executable, "-c", PROBE, job_json], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def job(threads) -> str:
    return json.dumps({"input": {}, "output": {}, "params": {}, "threads": threads})


def test_blas_uses_the_jobs_threads() -> None:
    unlimited = blas_threads("not json")  # a job that does not parse changes nothing: BLAS's own default
    if max(unlimited, default=1) < 2:
        pytest.skip("BLAS runs one thread by default here: a limit of 1 could not be told apart")
    assert blas_threads(job(1)) == [1] * len(unlimited)
    assert blas_threads(job(2)) == [2] * len(unlimited)
    assert blas_threads(job("two")) == unlimited
