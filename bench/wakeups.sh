#!/bin/sh
# wakeups.sh: who wakes whom while a command runs, and how often on another CPU.
#
#   bench/wakeups.sh bench/bench --exec-loop 200000 --workers 4 --callers 16
#   bench/wakeups.sh bench/floor --seconds 1 --channel pipes --pairs 2 --body 16
#
# Prints one line per waker -> wakee pair of program names (pairs seen over 1000 times):
# the wake-ups and the share whose target CPU is not the waker's. A wake-up on another
# CPU costs an interrupt there (a VM exit in a virtual machine), where a wake-up on the
# waker's own CPU costs a queue insertion; bench/notes.md explains why that matters here.
#
# Needs perf and the right to trace the scheduler system-wide (root, or
# kernel.perf_event_paranoid <= -1). Not part of `make bench`: it is a diagnostic.
set -eu
if [ $# -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi
data=$(mktemp)
trap 'rm -f "$data"' EXIT
perf record -q -a -e sched:sched_wakeup -o "$data" -- "$@"
# `perf script` line: WAKER [CPU] sched:sched_wakeup: comm=WAKEE pid=.. prio=.. target_cpu=NNN
perf script -i "$data" -F comm,cpu,event,trace 2>/dev/null | awk '
/sched_wakeup/ {
    cpu = $2; gsub(/[\[\]]/, "", cpu)
    match($0, /target_cpu=[0-9]+/); target = substr($0, RSTART + 11, RLENGTH - 11)
    match($0, /comm=[^ ]+/); wakee = substr($0, RSTART + 5, RLENGTH - 5)
    pair = $1 " -> " wakee
    seen[pair]++
    if (target + 0 != cpu + 0) remote[pair]++
}
END {
    for (pair in seen)
        if (seen[pair] > 1000)
            printf "%-34s %9d wake-ups  %5.1f %% on another CPU\n", pair, seen[pair], 100 * remote[pair] / seen[pair]
}' | sort -k4 -n -r
