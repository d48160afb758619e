# Two commands: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/demo.yaml
CORES  ?= 2
# pytest-xdist workers for `make test`; one test file per worker (module fixtures are built once)
TEST_WORKERS ?= 2

.PHONY: demo test test-all test-slurm slurm-up slurm-down lint sysdeps venv clean dryrun-slurm bench bench-scale calibration planted

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $(STAMP)

# bcftools, plink2 and tabix are the oracles of the cohort tests; chromium (headless) prints report.pdf and
# runs the report's browser test, poppler-utils renders the PDF's pages in that test (Debian packages).
SYSDEPS_CMDS := bcftools plink2 tabix chromium pdftoppm
SYSDEPS_PKGS := bcftools plink2 tabix chromium poppler-utils
sysdeps:
	@missing=""; for c in $(SYSDEPS_CMDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSDEPS_PKGS) >/dev/null; \
		else \
			echo "note:$$missing missing and not root: oracle tests and the report's browser/PDF tests will be skipped, and report.pdf not written"; \
		fi; \
	fi

# Rules run `python -m interp.cli`: put the venv first on PATH, as an activated venv would.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --show-failed-logs
	@$(BIN)/python -m interp.cli summary --configfile $(CONFIG)

# one BLAS/OpenMP thread per worker: TEST_WORKERS workers on as many cores, each with its own thread pool,
# oversubscribe the cores and OpenMP's waiting threads spin (k-means in the oracle test: 16 ms a call alone,
# 290 ms in the suite); rules that train set torch's threads themselves
test: $(STAMP) sysdeps
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
		$(BIN)/python -m pytest -m "not slow and not slurm" -q -n $(TEST_WORKERS) --dist loadfile --durations=30

test-all: $(STAMP) sysdeps
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
		$(BIN)/python -m pytest -m "not slurm" -q -n $(TEST_WORKERS) --dist loadfile

# A one-node SLURM cluster on this machine (root; Debian slurm-wlm + munge), then the SLURM tests on it.
slurm-up:
	workflow/scripts/slurm_cluster.sh up

slurm-down:
	workflow/scripts/slurm_cluster.sh down

test-slurm: $(STAMP) slurm-up
	$(BIN)/python -m pytest -m slurm -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint --configfile $(CONFIG)

dryrun-slurm: $(STAMP)
	$(BIN)/snakemake -n --profile configs/profiles/slurm --configfile $(CONFIG)

# The calibration suite (hours on one core; run it wide with a profile, e.g. `--profile configs/profiles/slurm`).
calibration: $(STAMP)
	$(BIN)/snakemake calibration --cores $(CORES) --configfile configs/calibration.yaml --show-failed-logs

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_token_store.py
	$(BIN)/python benchmarks/bench_rank_score.py
	$(BIN)/python benchmarks/embed_throughput.py
	$(BIN)/python benchmarks/cohort_windows_memory.py

# issue 8's scale benchmark: 2,504 samples, a 20 Mb and an 80 Mb VCF (minutes; inputs cached in benchmarks/out/)
bench-scale: $(STAMP)
	nice -n 10 $(BIN)/python benchmarks/scale_cohort.py

# reports/calibration/ and reports/planted/ are tracked results (reports/README.md), not run outputs: kept
clean:
	rm -rf results .snakemake
	@if [ -d reports ]; then find reports -mindepth 1 -maxdepth 1 -type d ! -name calibration ! -name planted \
		-exec rm -rf {} +; fi

# Planted-motif calibration of the SAE features (README: Planted-motif calibration): a synthetic genome with
# planted JASPAR motifs, a periodic repeat and GC-rich islands; built-in LM, SAE, match table, steering check.
planted: $(STAMP)
	$(BIN)/snakemake planted --cores $(CORES) --configfile $(CONFIG) --show-failed-logs
	@cat results/$$($(BIN)/python -c "from interp.config import load_workflow_config as c; print(c(['$(CONFIG)'])['run'])")/planted/match.tsv
