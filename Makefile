# The README's two commands are `make demo` and `make test`; both create or
# refresh the virtualenv first (`make install`).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@bash local/install_system_deps.sh
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	@echo "make demo: the end-to-end synthesized-speech recipe arrives with the decoding issue." >&2
	@exit 1

bench: install
	$(PY) -m asr_recipes.bin.bench_loss

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
