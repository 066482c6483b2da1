# Two commands on a fresh machine: `make demo` and `make test` (both create .venv first).
PYTHON ?= python3
VENV ?= .venv
# torch is pinned here, not in pyproject: an unpinned torch pulls a multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0
DEMO_ARGS ?=
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(TORCH_VERSION)
REFERENCE := .cache/ofa-reference

.PHONY: venv test demo bench reference clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# The OFA authors' code, PyPI `ofa`, is the tests' oracle: it lives in its own folder and
# runs only in a subprocess, since its top-level package is also called `ofa`.
reference: $(STAMP)
	PYTHON=$(PY) bash tests/oracle/install_reference.sh $(REFERENCE)

test: $(STAMP) reference
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/ofa-coord demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) bench/export_time.py

clean:
	rm -rf $(VENV) .cache runs .pytest_cache
