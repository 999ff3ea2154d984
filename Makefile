# `make demo` and `make test` set everything up themselves on a fresh machine.
# torch is pinned and installed first: the CPU wheel of 2.13.0 is what these machines carry,
# and an unpinned torch would pull several GB of CUDA.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sidrec-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup browser demo test lint bench

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/accelerate launch --num_processes 1 --num_cpu_threads_per_process 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
		train.py --config configs/scientific-tiger-demo.yaml --overwrite_output_dir

# Chromium and chromedriver from the system's packages for the demo Space's browser test, where the machine allows
# (root with apt-get); elsewhere it says so and tests/test_space.py skips that one test with its reason.
browser:
	@sh scripts/install_browser.sh

test: setup browser
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) benchmarks/bench_recommend.py
