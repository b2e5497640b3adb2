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

.PHONY: all deps build test test-c test-python demo bench reproduce lint format install clean

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

# ---- reliability (docs/reliability.md): sanitizers, valgrind, libFuzzer --------
# Each in its own build directory; the C library and tests only (no torch).
SANITIZE_BUILD ?= build-sanitize
VALGRIND_BUILD ?= build-valgrind
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
RELIABILITY_CMAKE = -DPHYSGRAD_BUILD_TORCH=OFF -DPHYSGRAD_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
# Full malloc stacks (fast_unwind_on_malloc=0) so that tests/sanitizers/lsan.supp can
# recognise Open MPI's start-up leaks (its libraries have no frame pointers).
SANITIZER_ENV = ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=64 \
  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitizers/lsan.supp:print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
.PHONY: test-sanitize test-valgrind fuzz fuzz-build

# The C tests with AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer (gcc).
test-sanitize: deps
	cmake -S . -B $(SANITIZE_BUILD) -DPHYSGRAD_SANITIZE=ON -DPHYSGRAD_WERROR=ON $(RELIABILITY_CMAKE)
	cmake --build $(SANITIZE_BUILD) -j $(JOBS)
	$(SANITIZER_ENV) ctest --test-dir $(SANITIZE_BUILD) --output-on-failure -j $(JOBS)

# The C tests under valgrind memcheck: no errors, no definite leaks.
test-valgrind:
	@scripts/install-deps.sh valgrind
	cmake -S . -B $(VALGRIND_BUILD) $(RELIABILITY_CMAKE)
	cmake --build $(VALGRIND_BUILD) -j $(JOBS)
	tests/sanitizers/valgrind.sh $(VALGRIND_BUILD)

# libFuzzer targets tests/fuzz/fuzz_<object>.c (clang, ASan + UBSan), FUZZ_SECONDS each.
fuzz-build:
	@scripts/install-deps.sh clang libclang-rt-14-dev
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DPHYSGRAD_FUZZ=ON \
	  -DPHYSGRAD_BUILD_TESTS=OFF $(RELIABILITY_CMAKE)
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The Python tests with a sanitized libcphys + op library.  Python and torch are not
# instrumented: libasan is preloaded, with libstdc++ (else ASan cannot intercept
# torch's C++ exceptions).  Leak checking is off (Python and torch keep memory at exit
# by design; the C tests check cphys for leaks).  --capture=sys: a report on fd 2
# stays visible.  Depends on `build`: the packaging tests look for build/lib.
SANITIZE_PY_BUILD ?= build-sanitize-py
.PHONY: test-python-sanitize
test-python-sanitize: build
	cmake -S . -B $(SANITIZE_PY_BUILD) -DPHYSGRAD_SANITIZE=ON -DPython3_EXECUTABLE=$(PYTHON) 	  -DPHYSGRAD_BUILD_TESTS=OFF -DPHYSGRAD_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(SANITIZE_PY_BUILD) -j $(JOBS)
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so.6)" 	  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 PYTHONMALLOC=malloc 	  PHYSGRAD_LIBRARY=$(CURDIR)/$(SANITIZE_PY_BUILD)/lib/libphysgrad_ops.so 	  $(PYTHON) -m pytest tests/python -q --capture=sys

demo: build
	$(PYTHON) -m physgrad compare poisson --methods adam,adam+pg --iterations $(DEMO_ITERATIONS) --batch-size $(DEMO_BATCH) --out $(DEMO_OUT)

# The paper's experiments at its settings (hours of CPU; resumable): runs in results/logs,
# figures and tables in results/ (results/README.md). REPRODUCE=sin,poisson,... for some.
REPRODUCE ?= all
COMMA := ,
reproduce: build
	$(PYTHON) -m physgrad reproduce $(subst $(COMMA), ,$(REPRODUCE)) --threads 1

# Style (CI runs it): clang-format (.clang-format) on the C and C++ sources, flake8
# (.flake8) on the Python; `make format` rewrites the C and C++ in place.
STYLE_C = $(shell git ls-files '*.c' '*.h' '*.cpp' 2>/dev/null)
lint:
	@scripts/install-deps.sh clang-format flake8
	clang-format --dry-run -Werror $(STYLE_C)
	flake8 python tests benchmarks examples scripts

format:
	@scripts/install-deps.sh clang-format
	clang-format -i $(STYLE_C)

# Op and training-step timings against plain PyTorch (benchmarks/RESULTS.md, "Performance").
BENCH_OUT ?= benchmarks/results
bench: build
	$(PYTHON) benchmarks/bench_ops.py --out $(BENCH_OUT)
	$(PYTHON) benchmarks/bench_heat.py --out $(BENCH_OUT)/bench_heat.json

# libcphys + include/cphys/ + libphysgrad_ops + the CMake package `cphys`, under $(PREFIX).
PREFIX ?= $(HOME)/.local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
