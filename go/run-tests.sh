#!/bin/sh
# Tests the Go package (go/): go vet, go test -race, and the example programs, against the
# library built in this repository (make lib). Exits non-zero on any failure.
#
# Environment (all optional):
#   RR_LIB_DIR      where libroadrunner.so is (default: <repo>/target/release)
#   RR_INCLUDE_DIR  where rr.h is (default: <repo>/include)
#   RR_TEST_WORKER  the library's test worker (default: $RR_LIB_DIR/rr-test-worker)
#   GO              the go command (default: go)
#   GO_TEST_FLAGS   extra flags for go test (e.g. -v, -run Stream)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
lib_dir=${RR_LIB_DIR:-$root/target/release}
include_dir=${RR_INCLUDE_DIR:-$root/include}
GO=${GO:-go}
RR_TEST_WORKER=${RR_TEST_WORKER:-$lib_dir/rr-test-worker}
export RR_TEST_WORKER

for f in "$lib_dir/libroadrunner.so" "$include_dir/rr.h" "$RR_TEST_WORKER"; do
	if [ ! -e "$f" ]; then
		echo "run-tests.sh: $f not found (run make lib first, or set RR_LIB_DIR/RR_INCLUDE_DIR)" >&2
		exit 1
	fi
done

CGO_ENABLED=1
CGO_CFLAGS="-g -O2 -I$include_dir"
CGO_LDFLAGS="-L$lib_dir -Wl,-rpath,$lib_dir"
export CGO_ENABLED CGO_CFLAGS CGO_LDFLAGS

cd "$here"
set -x
"$GO" version
test -z "$(gofmt -l .)" || { gofmt -l . >&2; echo "run-tests.sh: gofmt needed" >&2; exit 1; }
"$GO" vet ./...
# shellcheck disable=SC2086
"$GO" test -race -count=1 -timeout 300s ${GO_TEST_FLAGS:-} ./...

# The example, as the README prints it, over the library's test worker and over the Go worker.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$GO" build -o "$tmp/hello" ./example/hello
"$GO" build -o "$tmp/echo-worker" ./example/echo-worker
# Without its argument: a usage line on stderr, nothing on stdout, exit status 2.
rc=0
"$tmp/hello" >"$tmp/usage.out" 2>"$tmp/usage.err" || rc=$?
test "$rc" = 2 || { echo "hello without an argument exited with $rc, want 2" >&2; exit 1; }
test ! -s "$tmp/usage.out" || { echo "hello without an argument wrote to stdout" >&2; exit 1; }
grep -q '^usage: hello WORKER-COMMAND$' "$tmp/usage.err" || {
	echo "hello without an argument printed no usage line:" >&2; cat "$tmp/usage.err" >&2; exit 1; }
out=$("$tmp/hello" "$RR_TEST_WORKER")
test "$out" = "hello world" || { echo "hello with rr-test-worker printed: $out" >&2; exit 1; }
out=$("$tmp/hello" "$tmp/echo-worker")
test "$out" = "hello WORLD" || { echo "hello with echo-worker printed: $out" >&2; exit 1; }
out=$("$GO" run ./example/hello "$RR_TEST_WORKER")
test "$out" = "hello world" || { echo "go run ./example/hello printed: $out" >&2; exit 1; }
set +x
echo "run-tests.sh: Go package OK"
