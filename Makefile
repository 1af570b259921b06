# The README's two commands are `make demo` and `make test`; both create or
# refresh the virtualenv first (`make install`). `make test` is what CI runs (.ci/run);
# `make test-fast` skips the tests marked slow, for the edit-test loop.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test test-fast demo bench gpu-prepare gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@bash local/install_system_deps.sh
	@bash local/install_python_deps.sh $(VENV)
	@touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: install
	bash egs/mini/run.sh
	@# This run's own table (stage 7); egs/mini/RESULTS.md holds the curated results.
	@echo && cat egs/mini/exp/RESULTS.md

bench: install
	$(PY) -m asr_recipes.bin.bench_loss

# The GPU check (README, "GPU check"). gpu-prepare runs here (CPU, espeak-ng, network) and fills
# .gpu-check/ (data bundle + wheels); gpu-check runs on the GPU machine, which has no network
# and no virtualenv, so it does not depend on `install`. GPU_CHECK_ARGS: e.g. "parts=[train]".
gpu-prepare: install
	$(PY) -m asr_recipes.bin.gpu_prepare

gpu-check:
	bash local/gpu_check.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .gpu-check .gpu-check-scratch
