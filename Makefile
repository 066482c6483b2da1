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

.PHONY: venv test lint test-arm demo bench reference browser postgres proto check-proto clean

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

# Two workers, each taking whole test files (a module's fixtures are built once); then,
# alone, the tests that judge whether the machine is quiet (marked `serial`). Exit code 5
# is "nothing selected", e.g. PYTEST_ARGS naming a file of one kind only.
test: $(STAMP) reference browser postgres check-proto lint
	$(PY) -m pytest -n 2 --dist loadfile -m "not serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) -m pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Debian's Chromium, in which tests/test_web.py loads the status page (root, apt).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Debian's PostgreSQL: the tests of the PostgreSQL backend start its server in a temporary
# folder of their own (root, apt; the package's own cluster is not used).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# Style, import contracts and types; each tool reads its settings from pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# The agent as a real aarch64 process (qemu-user, arm64 Debian chroot) serving a small LUT
# campaign from a coordinator on this host. Needs root and binfmt_misc; see tools/arm64/.
ARM_CACHE := .cache/arm64
test-arm: $(STAMP)
	bash tools/arm64/rootfs.sh build $(ARM_CACHE)
	bash tools/arm64/rootfs.sh with $(ARM_CACHE) $(PY) tools/arm64/check_agent.py --cache $(ARM_CACHE)

# Generated gRPC code is committed (devices need no grpcio-tools); CI fails when it is stale.
PROTO := proto/ofafleet/v1/fleet.proto
GENERATED := fleet_pb2.py fleet_pb2_grpc.py fleet_pb2.pyi
proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. $(PROTO)

check-proto: $(STAMP)
	@tmp=$$(mktemp -d) && \
	$(PY) -m grpc_tools.protoc -I . --python_out=$$tmp --grpc_python_out=$$tmp --pyi_out=$$tmp $(PROTO) && \
	for f in $(GENERATED); do \
	  cmp -s $$tmp/proto/ofafleet/v1/$$f proto/ofafleet/v1/$$f || \
	    { echo "proto/ofafleet/v1/$$f is stale: run 'make proto' and commit"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "generated gRPC code is up to date"
	$(PY) tools/make_reference_model.py --check

demo: $(STAMP)
	$(VENV)/bin/ofa-coord demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) -m bench.export_time

clean:
	rm -rf --one-file-system $(VENV) .cache runs .pytest_cache
