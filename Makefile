# Rec-LLM: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml client/pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install demo test serve chat build configs bench bench-perf-analyzer bench-profile-storage clean

$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: on these machines pip finds the CPU wheel of 2.13.0 on local disk (pip config);
	# an unpinned resolve would pull a multi-GB CUDA build from the registry.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ./client   # gRPC clients + profile API stubs: no torch, no library
	$(PY) -m pip install -q -e '.[test,kernels]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

build: $(STAMP)
	$(VENV)/bin/recllm build

demo: $(STAMP)
	$(VENV)/bin/recllm demo

serve: $(STAMP)
	$(VENV)/bin/recllm serve

chat: $(STAMP)
	$(VENV)/bin/recllm chat --user $(or $(USER_ID),u000001)

configs: $(STAMP)
	$(PY) -m ensemble.pipeline_graph
	$(PY) -m ensemble.gpu_repository

test: $(STAMP)
	.ci/ensure_postgres.sh   # PostgreSQL binaries for the profile-store tests (installed when absent)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks.serving_latency

bench-perf-analyzer: $(STAMP)
	$(PY) -m benchmarks.perf_analyzer_run

bench-profile-storage: $(STAMP)
	$(PY) -m benchmarks.profile_storage

clean:
	rm -rf artifacts .pytest_cache
