# Two commands: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/demo.yaml
CORES  ?= 2

.PHONY: demo test test-all lint sysdeps venv clean dryrun-slurm bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $(STAMP)

# bcftools, plink2 and tabix are the oracles of the cohort tests (Debian packages).
sysdeps:
	@if ! command -v bcftools >/dev/null || ! command -v plink2 >/dev/null || ! command -v tabix >/dev/null; then \
		if [ "$$(id -u)" = "0" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bcftools plink2 tabix >/dev/null; \
		else \
			echo "note: bcftools/plink2/tabix missing and not root: oracle tests will be skipped"; \
		fi; \
	fi

# Rules run `python -m interp.cli`: put the venv first on PATH, as an activated venv would.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --show-failed-logs
	@$(BIN)/python -m interp.cli summary --configfile $(CONFIG)

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint --configfile $(CONFIG)

dryrun-slurm: $(STAMP)
	$(BIN)/snakemake -n --profile configs/profiles/slurm --configfile $(CONFIG)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_token_store.py
	$(BIN)/python benchmarks/embed_throughput.py

clean:
	rm -rf results reports/*/ .snakemake
