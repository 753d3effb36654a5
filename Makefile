# Quick start: `make demo` (set up and run the main job) and `make test` (set up, lint and run every test).
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.ecrstore-installed
NATIVE  := $(wildcard csrc/*.c csrc/*.h ecrstore/*.pyx ecrstore/*.pxd)
# Debian packages the tests drive as real peers (installed when missing; needs root or sudo).
DEB_PEERS ?= skopeo umoci docker.io podman buildah containerd docker-registry apache2-utils postgresql
# What ruff checks; mypy checks the package (strict) and stubtest the native core's stub.
LINT_PATHS := ecrstore tests benchmarks setup.py

.PHONY: all venv build demo lint test bench clean system-deps

all: build

$(STAMP): pyproject.toml setup.py $(NATIVE)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=69" wheel "Cython>=3.0,<4"
	$(PY) -m pip install --quiet --no-build-isolation -e '.[test,bench]'
	touch $(STAMP)

venv build: $(STAMP)

system-deps:
	@missing=""; for p in $(DEB_PEERS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: $(STAMP)
	$(VENV)/bin/ecrstore demo $(if $(FILE),--file $(FILE))

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(PY) -m mypy ecrstore
	$(PY) -m mypy.stubtest --mypy-config-file pyproject.toml ecrstore._sha256

test: $(STAMP) system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) system-deps
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build dist *.egg-info ecrstore/_sha256.c ecrstore/*.so demo-store
