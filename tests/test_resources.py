"""interp.resources: a job's memory and run time grow with its inputs and its retry attempt."""

from __future__ import annotations

from pathlib import Path

import pytest

from interp.resources import SCALING, count_lines, job_resources


def test_resources_grow_linearly_with_input_size_and_units() -> None:
    small = job_resources("ancestry", 1.0)
    big = job_resources("ancestry", 101.0)
    s = SCALING["ancestry"]
    assert big["mem_mb"] - small["mem_mb"] == pytest.approx(100 * s.mb_per_mb, abs=1)
    assert big["runtime"] > small["runtime"]
    shard = job_resources("haplotypes_shard", 0.0, units=2504 * 10)
    assert shard["mem_mb"] == 1000 + round(0.2 * 25040)


def test_a_retry_asks_for_more_and_the_cap_holds() -> None:
    once, twice = job_resources("embed", 10.0), job_resources("embed", 10.0, attempt=2)
    assert twice["mem_mb"] == 2 * once["mem_mb"] and twice["runtime"] == 2 * once["runtime"]
    huge = job_resources("embed", 1e9)
    assert huge == {"mem_mb": SCALING["embed"].max_mb, "runtime": SCALING["embed"].max_min}
    assert all(isinstance(v, int) for v in huge.values())


def test_unknown_rule_and_bad_sizes_are_refused() -> None:
    with pytest.raises(KeyError, match="known"):
        job_resources("nope", 1.0)
    with pytest.raises(ValueError):
        job_resources("embed", -1.0)
    with pytest.raises(ValueError):
        job_resources("embed", 1.0, attempt=0)


def test_count_lines_skips_header_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "s.tsv").write_text("sample_id\tp\nA\t1\nB\t0\n\n")
    assert count_lines(str(tmp_path / "s.tsv")) == 2
