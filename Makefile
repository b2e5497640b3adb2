# physgrad: `make demo` runs the main job, `make test` runs every test.
# Both install missing Debian packages first and (re)build.
PYTHON ?= /usr/bin/python3
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
DEMO_OUT ?= runs/demo
DEMO_ITERATIONS ?= 200
DEMO_BATCH ?= 16

export PYTHONPATH := $(CURDIR)/python$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: all deps build test test-c test-python demo install clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DPython3_EXECUTABLE=$(PYTHON) -DPHYSGRAD_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

test-c: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-python: build
	$(PYTHON) -m pytest tests/python -q

test: test-c test-python

demo: build
	$(PYTHON) -m physgrad compare poisson --methods adam,adam+pg --iterations $(DEMO_ITERATIONS) --batch-size $(DEMO_BATCH) --out $(DEMO_OUT)

# libcphys + include/cphys/ + libphysgrad_ops + the CMake package `cphys`, under $(PREFIX).
PREFIX ?= $(HOME)/.local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
