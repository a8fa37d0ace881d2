# segunify: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
RUN ?= quick

.PHONY: install demo reproduce example-report publish-results results test test-all lint format bench gpu-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# A registry connection that drops mid-wheel fails the whole install: pip resumes a download up to
	# 20 times, and the install is tried 3 times. (CI's one failure so far, onnxruntime 1.32 stopping at
	# the same byte on every resume, was not transient: pyproject.toml pins the release CI holds locally.)
	for try in 1 2 3; do \
	  $(BIN)/python -m pip install --quiet --resume-retries 20 -e '.[dev]' && break; \
	  test $$try = 3 && exit 1; echo "pip install failed (try $$try of 3), retrying in 20 s"; sleep 20; \
	done
	touch $(STAMP)

install: $(STAMP)

# The compound demo (quick budget); outputs and the report in runs/quick/ (ignored by git).
SEEDS ?= 1

demo: $(STAMP)  # SEEDS=3: three students per label set, figures as mean +- std
	$(BIN)/segunify demo --seeds $(SEEDS)

# The same experiment at the larger budget (about half an hour on 2 cores: docs/results.md): runs/full/.
reproduce: $(STAMP)
	$(BIN)/segunify demo --full --seeds $(SEEDS)

# Publish the last quick run's report as the example README links to (on purpose, never by make demo),
# then regenerate docs/results.md and README's results table from it.
example-report: $(STAMP)  # RUN=<folder under runs/> publishes another run of the quick config
	test -f runs/$(RUN)/report/index.html || { echo "run 'make demo' first"; exit 1; }
	rm -rf docs/example-report
	cp -r runs/$(RUN)/report docs/example-report
	# Cityscapes' terms forbid redistributing its images: the committed copy keeps no Cityscapes overlay.
	rm -f docs/example-report/cityscapes-overlays.png
	sed -i 's|<img src="cityscapes-overlays.png"[^>]*>|<p class="muted">Cityscapes overlays are in your own run (runs/quick/report/); its terms forbid redistributing the images.</p>|' docs/example-report/index.html
	$(BIN)/python scripts/results_md.py

# Publish another finished run's figures (make reproduce: RUN=full; camvid, ...) as docs/results/<run>.json,
# then regenerate docs/results.md.
publish-results: $(STAMP)
	$(BIN)/python scripts/results_md.py --publish runs/$(RUN)

# docs/results.md and README's results table from the published results files (scripts/results_md.py).
results: $(STAMP)
	$(BIN)/python scripts/results_md.py

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

# Every CPU benchmark at its defaults; each JSON line is recorded in benchmarks/results.jsonl and
# docs/benchmarks.md regenerated (scripts/bench.py; one benchmark: python scripts/bench.py run X.py ARGS).
bench: $(STAMP)
	$(BIN)/python scripts/bench.py run

# The GPU path in one run (<= 8 minutes on one GPU; one JSON line, recorded like make bench's; exit 1 on
# any failed section). GPU_CHECK_ARGS=--dry runs the same code on the CPU at toy sizes (not recorded).
gpu-check: $(STAMP)
	$(BIN)/python scripts/bench.py run gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
