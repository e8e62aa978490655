# Benchmarks (included by the top-level Makefile: `include bench/bench.mk`).
#
#   make bench         build bench/ with the release library, run it, print the table
#   make bench-report  the same plus the scaling points (1..64 workers), then write
#                      BENCHMARKS.md and bench/tasks-per-second.svg (bench/report.py)
#
# Variables: BENCH_ARGS (extra arguments for bench/bench, e.g. --seconds 0.5 --rounds 5).
# The programs are plain C11 with no library but libroadrunner (bench/bench only).

RELEASE       := target/release
BENCH_DIR     := bench
BENCH_CC      ?= $(CC)
BENCH_CFLAGS  := -std=c11 -Wall -Wextra -Wpedantic -Werror -O2 -g -pthread -Iinclude
BENCH_LDFLAGS := -L$(RELEASE) -lroadrunner -Wl,-rpath,$(CURDIR)/$(RELEASE)
BENCH_PYTHON  ?= python3
BENCH_ARGS    ?=
BENCH_COMMON  := $(BENCH_DIR)/common.c $(BENCH_DIR)/common.h $(BENCH_DIR)/proto.h
BENCH_PROGS   := $(BENCH_DIR)/echo_worker $(BENCH_DIR)/floor $(BENCH_DIR)/bench $(BENCH_DIR)/elastic

.PHONY: bench bench-build bench-report bench-clean

bench-build: $(BENCH_PROGS)  ## build bench/echo_worker, bench/floor and bench/bench

# The worker and the floor use no library at all: that is the point of them.
$(BENCH_DIR)/echo_worker: $(BENCH_DIR)/echo_worker.c $(BENCH_DIR)/proto.h
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $<

$(BENCH_DIR)/floor: $(BENCH_DIR)/floor.c $(BENCH_COMMON)
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $(BENCH_DIR)/floor.c $(BENCH_DIR)/common.c

# `lib` (cargo build --release + the soname link) is order-only: cargo decides.
$(BENCH_DIR)/bench: $(BENCH_DIR)/bench.c $(BENCH_DIR)/by_hand.c $(BENCH_DIR)/by_hand.h $(BENCH_DIR)/by_hand_async.c \
                    $(BENCH_DIR)/by_hand_async.h $(BENCH_COMMON) include/rr.h | lib
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $(BENCH_DIR)/bench.c $(BENCH_DIR)/by_hand.c $(BENCH_DIR)/by_hand_async.c \
	    $(BENCH_DIR)/common.c $(BENCH_LDFLAGS)

# The elastic pool's figures (start-up on demand, a burst, host memory), with rr-test-worker.
$(BENCH_DIR)/elastic: $(BENCH_DIR)/elastic.c include/rr.h | lib
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $< $(BENCH_LDFLAGS)

bench: lib $(BENCH_PROGS)  ## run the benchmark against the floor and print the table, then the elastic pool's figures (~4 min)
	$(BENCH_DIR)/bench $(BENCH_ARGS)
	$(BENCH_DIR)/elastic --worker $(RELEASE)/rr-test-worker

bench-report: lib $(BENCH_PROGS)  ## bench + scaling points, then write BENCHMARKS.md and bench/tasks-per-second.svg
	@# The table is kept in bench/results.txt too (no tee: sh has no pipefail to keep bench's status).
	$(BENCH_DIR)/bench --report --json $(BENCH_DIR)/results.json $(BENCH_ARGS) > $(BENCH_DIR)/results.txt; \
		status=$$?; cat $(BENCH_DIR)/results.txt; exit $$status
	$(BENCH_DIR)/elastic --worker $(RELEASE)/rr-test-worker --json $(BENCH_DIR)/elastic.json
	$(BENCH_PYTHON) $(BENCH_DIR)/report.py $(BENCH_DIR)/results.json BENCHMARKS.md $(BENCH_DIR)/tasks-per-second.svg $(BENCH_DIR)/elastic.json

bench-clean:  ## remove the bench programs (not the results)
	rm -f $(BENCH_PROGS)
