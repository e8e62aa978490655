# libroadrunner: build, test and install the Rust library and its C interface.
#
#   make            build the library, the test worker and the C/C++ programs in build/
#   make test       run every test (Rust, header, C, C++, hosts over pipes/tcp/unix,
#                   Python, Go, PHP, install, ASan, valgrind), after installing what they
#                   need from Debian (make test-deps)
#   make help       list the targets
#
# Variables: CC, CXX, CARGO, CFLAGS/CXXFLAGS/LDFLAGS (added to ours), PREFIX, DESTDIR,
# CBINDGEN_ROOT (where the pinned cbindgen lives), DEMO_TCP_PORT, STEP_TIMEOUT, TEST_STEPS.

CARGO      ?= cargo
PKG_CONFIG ?= pkg-config
PYTHON     ?= python3
GO         ?= go
PHP        ?= php
VALGRIND   ?= valgrind

# The header generator, pinned: another version may write another header.
CBINDGEN_VERSION := 0.29.4
CARGO_HOME       ?= $(HOME)/.cargo
CBINDGEN_ROOT    ?= $(CARGO_HOME)
CBINDGEN         := $(CBINDGEN_ROOT)/bin/cbindgen

# The package version, from Cargo.toml.
VERSION       := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
VERSION_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
DESCRIPTION   := $(shell sed -n 's/^description *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
SONAME        := libroadrunner.so.$(VERSION_MAJOR)

HEADER      := include/rr.h
INCDIR      ?= include
RELEASE     := target/release
LIB_SO      := $(RELEASE)/libroadrunner.so
LIB_A       := $(RELEASE)/libroadrunner.a
TEST_WORKER := $(CURDIR)/$(RELEASE)/rr-test-worker
BUILD       := build

WARNINGS    := -Wall -Wextra -Wpedantic -Werror
RR_CFLAGS   := -std=c11 $(WARNINGS) -O2 -g -pthread -I$(INCDIR)
RR_CXXFLAGS := -std=c++17 $(WARNINGS) -O2 -g -pthread -I$(INCDIR)
RR_LDFLAGS  := -L$(RELEASE) -lroadrunner -Wl,-rpath,$(CURDIR)/$(RELEASE)
ASAN_FLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer

C_TEST_SRCS := $(wildcard tests/c/*.c)
C_TEST_HDRS := $(wildcard tests/c/*.h)
# The C tests check that the header's RR_VERSION_* macros match Cargo.toml.
C_TEST_DEFS := -DRR_CARGO_VERSION='"$(VERSION)"'
C_TEST_ENV  := RR_TEST_WORKER=$(TEST_WORKER) RR_C_WORKER=$(CURDIR)/$(BUILD)/worker

EXAMPLES := $(BUILD)/hello $(BUILD)/host $(BUILD)/async-host $(BUILD)/status-host $(BUILD)/worker $(BUILD)/host-cpp $(BUILD)/c-tests

DEMO_TCP_PORT ?= 0

# Installation directories (GNU names).
PREFIX       ?= /usr/local
DESTDIR      ?=
libdir       ?= $(PREFIX)/lib
includedir   ?= $(PREFIX)/include
pkgconfigdir ?= $(libdir)/pkgconfig

# A hung test suite must fail CI, not hold it: each suite gets STEP_TIMEOUT seconds.
STEP_TIMEOUT ?= 600
LIMIT        := timeout --kill-after=10 $(STEP_TIMEOUT)

# What `make test` runs, in this order (each one is also a target of its own).
TEST_STEPS := test-rust check-header test-c test-cpp test-cpp-header test-demo test-python test-python-package \
              test-go test-go-package test-php test-install asan valgrind

.DEFAULT_GOAL := all

# make bench, make bench-report (benchmarks are never part of make test).
include bench/bench.mk
# make test-cpp-header (the tests of include/rr.hpp).
include tests/cpp/cpp.mk
.PHONY: all lib examples header check-header cbindgen demo test test-deps test-rust test-c test-cpp \
        test-demo test-python test-python-package test-go test-go-package test-php test-install soak asan \
        valgrind install uninstall clean help
.DELETE_ON_ERROR:

all: lib examples  ## build the library, rr-test-worker and the C/C++ programs (default)

lib:  ## cargo build --release: libroadrunner.so/.a and rr-test-worker in target/release
	$(CARGO) build --release
	@# Programs linked with -lroadrunner load the soname (build.rs), which cargo does not create.
	@ln -sf libroadrunner.so $(RELEASE)/$(SONAME)

examples: $(EXAMPLES)  ## build/hello, build/host, build/async-host, build/status-host, build/worker, build/host-cpp and build/c-tests

$(BUILD):
	mkdir -p $@

# `lib` is order-only: cargo runs first (it knows when to rebuild), and a program is
# relinked only when its sources or the header change (the library is shared).
$(BUILD)/host: examples-c/host.c $(HEADER) | lib $(BUILD)
	$(CC) $(RR_CFLAGS) $(CFLAGS) -o $@ $< $(RR_LDFLAGS) $(LDFLAGS)

$(BUILD)/async-host: examples-c/async_host.c $(HEADER) | lib $(BUILD)
	$(CC) $(RR_CFLAGS) $(CFLAGS) -o $@ $< $(RR_LDFLAGS) $(LDFLAGS)

$(BUILD)/hello: examples-c/hello.c $(HEADER) | lib $(BUILD)
	$(CC) $(RR_CFLAGS) $(CFLAGS) -o $@ $< $(RR_LDFLAGS) $(LDFLAGS)

$(BUILD)/status-host: examples-c/status_host.c $(HEADER) | lib $(BUILD)
	$(CC) $(RR_CFLAGS) $(CFLAGS) -o $@ $< $(RR_LDFLAGS) $(LDFLAGS)

$(BUILD)/worker: examples-c/worker.c $(HEADER) | lib $(BUILD)
	$(CC) $(RR_CFLAGS) $(CFLAGS) -o $@ $< $(RR_LDFLAGS) $(LDFLAGS)

$(BUILD)/host-cpp: examples-c/host.cpp $(HEADER) | lib $(BUILD)
	$(CXX) $(RR_CXXFLAGS) $(CXXFLAGS) -o $@ $< $(RR_LDFLAGS) $(LDFLAGS)

$(BUILD)/c-tests: $(C_TEST_SRCS) $(C_TEST_HDRS) $(HEADER) Cargo.toml | lib $(BUILD)
	$(CC) $(RR_CFLAGS) $(C_TEST_DEFS) $(CFLAGS) -o $@ $(C_TEST_SRCS) $(RR_LDFLAGS) $(LDFLAGS)

$(BUILD)/c-tests-asan: $(C_TEST_SRCS) $(C_TEST_HDRS) $(HEADER) Cargo.toml | lib $(BUILD)
	$(CC) $(RR_CFLAGS) $(ASAN_FLAGS) $(C_TEST_DEFS) $(CFLAGS) -o $@ $(C_TEST_SRCS) $(RR_LDFLAGS) $(LDFLAGS)

# The header is committed; it is generated here only when it is missing.
$(HEADER):
	$(MAKE) --no-print-directory header

cbindgen:  ## install the pinned cbindgen (CBINDGEN_VERSION) into CBINDGEN_ROOT/bin unless there
	@if [ "$$($(CBINDGEN) --version 2>/dev/null)" != "cbindgen $(CBINDGEN_VERSION)" ]; then \
		echo "installing cbindgen $(CBINDGEN_VERSION) into $(CBINDGEN_ROOT)"; \
		$(CARGO) install cbindgen --version $(CBINDGEN_VERSION) --locked --root "$(CBINDGEN_ROOT)"; \
	fi

header: cbindgen  ## regenerate include/rr.h from src/ffi with the pinned cbindgen
	$(CBINDGEN) --config cbindgen.toml --crate roadrunner --output $(HEADER)

check-header: cbindgen  ## fail when include/rr.h differs from what src/ffi generates
	@set -e; tmp=$$(mktemp); trap 'rm -f "$$tmp"' EXIT; \
	$(CBINDGEN) --quiet --config cbindgen.toml --crate roadrunner --output "$$tmp"; \
	if diff -u $(HEADER) "$$tmp"; then echo "$(HEADER) is up to date"; \
	else echo "$(HEADER) is stale: run 'make header' and commit it" >&2; exit 1; fi

demo: all  ## run build/host, then build/async-host, with 4 C workers (build/worker) over pipes: answers, events, tasks/s
	$(BUILD)/host -n 4 -r pipes -- $(BUILD)/worker
	$(BUILD)/async-host -n 4 -r pipes -- $(BUILD)/worker

# test-deps runs first and alone: on a machine without php or go, `make test` stops (or
# installs them) before minutes of building; `all` is built by a sub-make after it, since
# a prerequisite `all` could start alongside test-deps under -j.
test: test-deps  ## run every test (the steps in TEST_STEPS, all of them, then report)
	@$(MAKE) --no-print-directory all
	@failed=""; for step in $(TEST_STEPS); do \
		echo "=== make $$step"; \
		$(MAKE) --no-print-directory $$step || failed="$$failed $$step"; \
	done; \
	if [ -n "$$failed" ]; then echo "=== FAILED:$$failed"; exit 1; fi; \
	echo "=== all tests passed"

# The programs the tests run, as this make invocation would run them (cgo uses $CC only
# when make exports it: given on the command line or in the environment, else gcc).
test-deps:  ## install what the tests need from Debian, or say what to run
	@PHP='$(PHP)' GO='$(GO)' PYTHON='$(PYTHON)' VALGRIND='$(VALGRIND)' PKG_CONFIG='$(PKG_CONFIG)' \
		CC='$(CC)' CXX='$(CXX)' CARGO='$(CARGO)' \
		RR_DEPS_CGO_CC='$(if $(filter default,$(origin CC)),gcc,$(CC))' .ci/test-deps

# The panic tests need the fault points of the `fault-injection` feature: a build of
# their own, in a target directory of its own, so that target/release stays a release.
test-rust:  ## cargo test --release, then the injected-panic tests (tests/panics.rs)
	$(LIMIT) $(CARGO) test --release
	$(LIMIT) $(CARGO) test --release --features fault-injection --target-dir target/fault-injection --test panics

test-c: $(BUILD)/c-tests $(BUILD)/worker  ## the C tests of the whole C interface
	$(C_TEST_ENV) $(LIMIT) $(BUILD)/c-tests

test-cpp: $(BUILD)/host-cpp $(BUILD)/worker  ## the C++ host over the C worker
	$(BUILD)/host-cpp -n 2 -t 4 -- $(BUILD)/worker

test-demo: $(BUILD)/hello $(BUILD)/host $(BUILD)/async-host $(BUILD)/worker  ## the README's C program, the C hosts (host, async-host) over pipes, tcp and unix relays, protocols V1 and V2
	@out=$$($(BUILD)/hello $(TEST_WORKER)); echo "$(BUILD)/hello $(TEST_WORKER): $$out"; \
		test "$$out" = "hello world" || { echo "hello printed something else" >&2; exit 1; }
	$(BUILD)/host -q -n 4 -r pipes -- $(BUILD)/worker
	$(BUILD)/host -q -n 4 -r tcp://127.0.0.1:$(DEMO_TCP_PORT) -- $(BUILD)/worker
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	echo "$(BUILD)/host -q -n 4 -r unix://$$dir/rr.sock -- $(BUILD)/worker"; \
	$(BUILD)/host -q -n 4 -r "unix://$$dir/rr.sock" -- $(BUILD)/worker
	$(BUILD)/host -q -n 2 -b 4096 -r pipes -- $(TEST_WORKER)
	$(BUILD)/host -q -n 4 -p 2 -s 12 -r pipes -- "$(CURDIR)/$(BUILD)/worker --protocol 2"
	$(BUILD)/host -q -n 4 -p 2 -s 12 -r tcp://127.0.0.1:$(DEMO_TCP_PORT) -- "$(CURDIR)/$(BUILD)/worker --protocol 2"
	$(BUILD)/async-host -n 4 -k 2000 -r pipes -- $(BUILD)/worker
	$(BUILD)/async-host -n 2 -k 1000 -i 16 -r tcp://127.0.0.1:$(DEMO_TCP_PORT) -- $(BUILD)/worker
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	echo "$(BUILD)/async-host -n 4 -k 1000 -p 2 -r unix://$$dir/rr.sock -- \"$(CURDIR)/$(BUILD)/worker --protocol 2\""; \
	$(BUILD)/async-host -n 4 -k 1000 -p 2 -r "unix://$$dir/rr.sock" -- "$(CURDIR)/$(BUILD)/worker --protocol 2"

test-python: lib $(BUILD)/status-host  ## the Python (ctypes) tests in tests/python
	RR_LIB=$(CURDIR)/$(LIB_SO) RR_TEST_WORKER=$(TEST_WORKER) RR_STATUS_HOST=$(CURDIR)/$(BUILD)/status-host $(LIMIT) $(PYTHON) -m unittest discover -s tests/python -v

test-python-package: lib  ## pip install ./python into a fresh venv (cargo builds the library into it), then python/tests and python/example.py
	RR_TEST_WORKER=$(TEST_WORKER) PYTHON=$(PYTHON) $(LIMIT) python/run-tests.sh

test-go-package: lib  ## the Go package (go/): gofmt, go vet, go test -race, and go/example/hello
	RR_TEST_WORKER=$(TEST_WORKER) RR_LIB_DIR=$(CURDIR)/$(RELEASE) GO=$(GO) $(LIMIT) go/run-tests.sh

test-go: lib  ## the Go (cgo) tests in tests/go
	cd tests/go && RR_TEST_WORKER=$(TEST_WORKER) CGO_CFLAGS="-I$(CURDIR)/include" \
		CGO_LDFLAGS="-L$(CURDIR)/$(RELEASE) -lroadrunner -Wl,-rpath,$(CURDIR)/$(RELEASE)" $(LIMIT) $(GO) test -count=1 -v ./...

test-php: $(BUILD)/host  ## the C host over the PHP workers (examples-php/): V1 and V2 (with a stream), pipes and unix
	$(BUILD)/host -n 2 -r pipes -- "$(PHP) examples-php/worker.php"
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	echo "$(BUILD)/host -n 2 -r unix://$$dir/rr.sock -- \"$(PHP) examples-php/worker.php\""; \
	$(BUILD)/host -n 2 -r "unix://$$dir/rr.sock" -- "$(PHP) examples-php/worker.php"
	$(BUILD)/host -q -n 2 -p 2 -s 23 -r pipes -- "$(PHP) examples-php/worker-v2.php"
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	echo "$(BUILD)/host -q -n 2 -p 2 -s 23 -r unix://$$dir/rr.sock -- \"$(PHP) examples-php/worker-v2.php\""; \
	$(BUILD)/host -q -n 2 -p 2 -s 23 -r "unix://$$dir/rr.sock" -- "$(PHP) examples-php/worker-v2.php"

test-install: all  ## install into a temp PREFIX, build host.c and host.cpp with pkg-config, run them (shared and static)
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(MAKE) --no-print-directory install PREFIX="$$tmp" DESTDIR=; \
	export PKG_CONFIG_PATH="$$tmp/lib/pkgconfig"; \
	readelf -d "$$tmp/lib/libroadrunner.so.$(VERSION)" | grep -q 'Library soname: \[$(SONAME)\]' \
		|| { echo "the library's soname is not $(SONAME)" >&2; exit 1; }; \
	flags=$$($(PKG_CONFIG) --cflags --libs roadrunner); echo "pkg-config --cflags --libs: $$flags"; \
	$(CC) -std=c11 $(WARNINGS) -O2 -pthread examples-c/host.c -o "$$tmp/host" $$flags; \
	LD_LIBRARY_PATH="$$tmp/lib" ldd "$$tmp/host" | grep -q "$$tmp/lib/$(SONAME)" \
		|| { echo "host does not load the installed library" >&2; exit 1; }; \
	LD_LIBRARY_PATH="$$tmp/lib" "$$tmp/host" -q -n 2 -t 2 -k 200 -- $(CURDIR)/$(BUILD)/worker; \
	$(CXX) -std=c++17 $(WARNINGS) -O2 -pthread examples-c/host.cpp -o "$$tmp/host-cpp" $$flags; \
	LD_LIBRARY_PATH="$$tmp/lib" "$$tmp/host-cpp" -n 2 -t 2 -- $(CURDIR)/$(BUILD)/worker; \
	static=$$($(PKG_CONFIG) --static --libs roadrunner | sed 's/-lroadrunner/-l:libroadrunner.a/'); \
	echo "static: $$static"; \
	$(CC) -std=c11 $(WARNINGS) -O2 -pthread examples-c/host.c -o "$$tmp/host-static" \
		$$($(PKG_CONFIG) --cflags roadrunner) $$static; \
	if ldd "$$tmp/host-static" | grep -q libroadrunner; then echo "host-static loads libroadrunner.so" >&2; exit 1; fi; \
	"$$tmp/host-static" -q -n 2 -t 2 -k 200 -- $(CURDIR)/$(BUILD)/worker

SOAK_SECONDS ?= 60
soak:  ## the fault-injection suite (tests/faults.rs) for SOAK_SECONDS seconds per fault kind
	RR_SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --release --test faults -- --nocapture

asan: $(BUILD)/c-tests-asan $(BUILD)/worker  ## the C tests built with -fsanitize=address,undefined
	nm $(BUILD)/c-tests-asan | grep -q __asan_init
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(C_TEST_ENV) $(LIMIT) $(BUILD)/c-tests-asan

valgrind: $(BUILD)/c-tests $(BUILD)/worker  ## the C tests (release build) under valgrind memcheck
	$(C_TEST_ENV) $(LIMIT) $(VALGRIND) --leak-check=full --error-exitcode=1 --errors-for-leak-kinds=definite \
		--trace-children=no --child-silent-after-fork=yes $(BUILD)/c-tests

# Installs what `make` built (it builds nothing itself, so `sudo make install` needs no cargo).
install: $(HEADER)  ## install the library, rr.h, rr.hpp and roadrunner.pc into DESTDIR/PREFIX
	@test -f $(LIB_SO) -a -f $(LIB_A) || { echo "nothing built: run make first" >&2; exit 1; }
	install -d "$(DESTDIR)$(libdir)" "$(DESTDIR)$(includedir)" "$(DESTDIR)$(pkgconfigdir)"
	install -m 0755 $(LIB_SO) "$(DESTDIR)$(libdir)/libroadrunner.so.$(VERSION)"
	ln -sf libroadrunner.so.$(VERSION) "$(DESTDIR)$(libdir)/$(SONAME)"
	ln -sf $(SONAME) "$(DESTDIR)$(libdir)/libroadrunner.so"
	install -m 0644 $(LIB_A) "$(DESTDIR)$(libdir)/libroadrunner.a"
	install -m 0644 $(HEADER) "$(DESTDIR)$(includedir)/rr.h"
	install -m 0644 include/rr.hpp "$(DESTDIR)$(includedir)/rr.hpp"
	printf '%s\n' \
		'prefix=$(PREFIX)' \
		'exec_prefix=$${prefix}' \
		'libdir=$(patsubst $(PREFIX)/%,$${exec_prefix}/%,$(libdir))' \
		'includedir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(includedir))' \
		'' \
		'Name: roadrunner' \
		'Description: $(DESCRIPTION)' \
		'Version: $(VERSION)' \
		'Libs: -L$${libdir} -lroadrunner' \
		'Libs.private: -lpthread -ldl -lm' \
		'Cflags: -I$${includedir}' \
		> "$(DESTDIR)$(pkgconfigdir)/roadrunner.pc"

uninstall:  ## remove what install put into DESTDIR/PREFIX
	rm -f "$(DESTDIR)$(libdir)/libroadrunner.so.$(VERSION)" "$(DESTDIR)$(libdir)/$(SONAME)" \
		"$(DESTDIR)$(libdir)/libroadrunner.so" "$(DESTDIR)$(libdir)/libroadrunner.a" \
		"$(DESTDIR)$(includedir)/rr.h" "$(DESTDIR)$(includedir)/rr.hpp" "$(DESTDIR)$(pkgconfigdir)/roadrunner.pc"

clean:  ## remove build/ and cargo's target/
	rm -rf $(BUILD)
	$(CARGO) clean

help:  ## list the targets
	@echo "Targets:"
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_-]+:.*## / { printf "  %-13s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo "TEST_STEPS = $(TEST_STEPS)"
	@echo "CBINDGEN_VERSION = $(CBINDGEN_VERSION), CBINDGEN_ROOT = $(CBINDGEN_ROOT), PREFIX = $(PREFIX)"
