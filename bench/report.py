#!/usr/bin/env python3
"""Writes BENCHMARKS.md and the tasks-per-second chart from bench/bench's --json output.

    python3 bench/report.py bench/results.json BENCHMARKS.md bench/tasks-per-second.svg

Standard library only. The chart is a hand-written SVG (grouped bars: pool and floor
tasks/s for 1..64 workers), so that nothing beyond python3 is needed to regenerate it.
bench/notes.md, when present, is appended as the "Observations" section: it is written
by hand and must be re-read whenever the numbers are regenerated.
"""

import json
import math
import os
import sys
from xml.sax.saxutils import escape

RELAYS = ["pipes", "unix", "tcp"]


def body_name(n):
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n} B"


def num(x):
    """Tasks/s with thousands separators."""
    return f"{x:,.0f}"


def us(x):
    return f"{x:,.1f}"


class Points:
    def __init__(self, points):
        self.points = points

    def get(self, section, kind, relay, body, workers, callers):
        for p in self.points:
            if (p["section"], p["kind"], p["relay"], p["body"], p["workers"], p["callers"]) == (
                section, kind, relay, body, workers, callers):
                return p["median"]
        return None

    def unstable(self, section, kind, relay, body, workers, callers):
        """Whether the rounds disagree by more than 2x in tasks/s (scheduler placement)."""
        for p in self.points:
            if (p["section"], p["kind"], p["relay"], p["body"], p["workers"], p["callers"]) == (
                section, kind, relay, body, workers, callers):
                values = [r["tasks_per_s"] for r in p["rounds"]]
                return min(values) > 0 and max(values) / min(values) > 2
        return False

    def bodies(self, section):
        return sorted({p["body"] for p in self.points if p["section"] == section})


def ratio(pool, floor):
    if not pool or not floor or floor["tasks_per_s"] <= 0:
        return "-"
    return f"{pool['tasks_per_s'] / floor['tasks_per_s']:.2f}"


def pair_table(pts, workers, callers, pairs):
    """The rows of one comparison, and whether any of them is marked unstable."""
    marked = False
    rows = [
        "| relay | body | floor tasks/s | floor p50 µs | floor p99 µs | pool tasks/s | pool p50 µs "
        "| pool p99 µs | pool MB/s | pool/floor |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for relay in RELAYS:
        for body in pts.bodies("main"):
            f = pts.get("main", "floor", relay, body, pairs, pairs)
            p = pts.get("main", "pool", relay, body, workers, callers)
            if not f or not p:
                continue
            mb = f"{p['mb_per_s']:,.0f}" if body >= 4096 else "-"
            star = (pts.unstable("main", "floor", relay, body, pairs, pairs)
                    or pts.unstable("main", "pool", relay, body, workers, callers))
            marked = marked or star
            rows.append(
                f"| {relay} | {body_name(body)} | {num(f['tasks_per_s'])} | {us(f['p50_us'])} | {us(f['p99_us'])} "
                f"| {num(p['tasks_per_s'])} | {us(p['p50_us'])} | {us(p['p99_us'])} | {mb} "
                f"| {ratio(p, f)}{' *' if star else ''} |")
    return "\n".join(rows), marked


def opt_in_table(pts):
    """The 4 x 16 pipes rows measured with the opt-in settings, or "" if the run has none."""
    rows = ["| body | pool tasks/s | pool p50 µs | pool p99 µs | pool/floor |", "|---|--:|--:|--:|--:|"]
    for body in pts.bodies("main"):
        f = pts.get("main", "floor", "pipes", body, 2, 2)
        p = pts.get("main", "opt_in", "pipes", body, 4, 16)
        if f and p:
            rows.append(f"| {body_name(body)} | {num(p['tasks_per_s'])} | {us(p['p50_us'])} | {us(p['p99_us'])} "
                        f"| {ratio(p, f)} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def by_hand_table(pts):
    """The by-hand rows of the 4 x 16 shape against the pool, or "" if the run has none."""
    pool = pts.get("main", "pool", "pipes", 16, 4, 16)
    rows = ["| host | tasks/s | p50 µs | p99 µs | pool/this |", "|---|--:|--:|--:|--:|"]
    for kind, label in (("by_hand_locked", "a mutex per worker"),
                        ("by_hand_pipelined", "tasks queued in the workers' pipes")):
        h = pts.get("main", kind, "pipes", 16, 4, 16)
        if h:
            rows.append(f"| {label} | {num(h['tasks_per_s'])} | {us(h['p50_us'])} | {us(h['p99_us'])} "
                        f"| {ratio(pool, h)} |")
    return "\n".join(rows) if len(rows) > 2 else ""


ASYNC_IN_FLIGHT = 64

# The completion queue's rows: (kind, label, workers, tasks in flight, the rr_exec kind and callers it is
# compared with, the target: (against, minimum, maximum) or None).
ASYNC_ROWS = (
    ("async", "one thread, 4 workers, 64 in flight", 4, ASYNC_IN_FLIGHT, "pool", 16),
    ("async_opt_in", "one thread, 4 workers, 64 in flight, opt-in settings", 4, ASYNC_IN_FLIGHT, "opt_in", 16),
    ("async", "one thread, 1 worker, 1 in flight", 1, 1, "pool", 1),
)


def async_target(kind, workers, body):
    """The target the issue set for a row: ("floor" or "rr_exec", low, high), or None."""
    if kind != "async":
        return None
    if workers == 4 and body in (16, 65536, 1 << 20):
        return ("floor", 0.80, None)
    if workers == 1 and body == 16:
        return ("rr_exec", 0.90, 1.10)
    return None


def async_table(pts):
    """The completion queue's rows against the floor and against rr_exec of the same run, then the
    16 B reference lines; ("", False) if the run has no async points."""
    marked = False
    rows = ["| host | body | tasks/s | p50 µs | p99 µs | MB/s | vs floor | vs rr_exec | target |",
            "|---|---|--:|--:|--:|--:|--:|--:|---|"]
    for kind, label, workers, in_flight, vs_kind, vs_callers in ASYNC_ROWS:
        for body in pts.bodies("main"):
            p = pts.get("main", kind, "pipes", body, workers, in_flight)
            if not p:
                continue
            pairs = 1 if workers == 1 else 2
            f = pts.get("main", "floor", "pipes", body, pairs, pairs)
            e = pts.get("main", vs_kind, "pipes", body, workers, vs_callers)
            star = (pts.unstable("main", kind, "pipes", body, workers, in_flight)
                    or pts.unstable("main", "floor", "pipes", body, pairs, pairs))
            marked = marked or star
            mb = f"{p['mb_per_s']:,.0f}" if body >= 4096 else "-"
            target = async_target(kind, workers, body)
            goal = ""
            if target:
                against, low, high = target
                ref = f if against == "floor" else e
                value = p["tasks_per_s"] / ref["tasks_per_s"] if ref and ref["tasks_per_s"] > 0 else None
                bound = (f"≥ {low:.2f}" if high is None else f"{low:.2f}–{high:.2f}") + f" of {against}"
                if value is not None:
                    met = value >= low and (high is None or value <= high)
                    goal = f"{bound}: {'met' if met else 'not met'}"
                else:
                    goal = bound
            rows.append(f"| {label} | {body_name(body)} | {num(p['tasks_per_s'])} | {us(p['p50_us'])} "
                        f"| {us(p['p99_us'])} | {mb} | {ratio(p, f)}{' *' if star else ''} | {ratio(p, e)} "
                        f"| {goal} |")
    if len(rows) == 2:
        return "", False
    f2 = pts.get("main", "floor", "pipes", 16, 2, 2)
    refs = ["| reference, 16 B, pipes | tasks/s | p50 µs | p99 µs | vs 2 floor pairs |", "|---|--:|--:|--:|--:|"]
    for label, point in (
            ("2 floor pairs (no library, 2 threads, 2 workers)", f2),
            ("rr_exec, 4 workers × 16 callers (blocking)", pts.get("main", "pool", "pipes", 16, 4, 16)),
            ("by hand, the same shape: 4 workers × 16 threads, a mutex per worker (no library)",
             pts.get("main", "by_hand_locked", "pipes", 16, 4, 16)),
            ("by hand, one thread, 4 workers, 64 in flight: epoll on the relays (no library)",
             pts.get("main", "by_hand_async_loop", "pipes", 16, 4, ASYNC_IN_FLIGHT)),
            ("by hand, the queue's shape: a host thread + a reactor thread, 4 workers, 64 in flight (no library)",
             pts.get("main", "by_hand_async_reactor", "pipes", 16, 4, ASYNC_IN_FLIGHT)),
            ("completion queue, one thread, 4 workers, 64 in flight",
             pts.get("main", "async", "pipes", 16, 4, ASYNC_IN_FLIGHT)),
            ("1 floor pair", pts.get("main", "floor", "pipes", 16, 1, 1)),
            ("rr_exec, 1 worker × 1 caller", pts.get("main", "pool", "pipes", 16, 1, 1)),
            ("by hand, one thread, 1 worker, 1 in flight (no library)",
             pts.get("main", "by_hand_async_loop", "pipes", 16, 1, 1)),
            ("by hand, the queue's shape, 1 worker, 1 in flight (no library)",
             pts.get("main", "by_hand_async_reactor", "pipes", 16, 1, 1)),
            ("completion queue, one thread, 1 worker, 1 in flight", pts.get("main", "async", "pipes", 16, 1, 1))):
        if point:
            refs.append(f"| {label} | {num(point['tasks_per_s'])} | {us(point['p50_us'])} | {us(point['p99_us'])} "
                        f"| {ratio(point, f2)} |")
    return "\n".join(rows) + "\n\n" + "\n".join(refs), marked


def v2_table(pts, workers, callers, pairs):
    """The protocol V2 rows of one shape with the V1 pool of the same shape beside, and whether
    any of them is marked unstable; ("", False) if the run has no V2 points."""
    marked = False
    rows = [
        "| relay | body | V2 floor tasks/s | V2 floor p50 µs | V2 pool tasks/s | V2 pool p50 µs | V2 pool p99 µs "
        "| V2 pool MB/s | pool/floor | V1 pool tasks/s | V2/V1 |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for relay in RELAYS:
        for body in pts.bodies("v2"):
            f = pts.get("v2", "floor", relay, body, pairs, pairs)
            p = pts.get("v2", "pool", relay, body, workers, callers)
            v1 = pts.get("main", "pool", relay, body, workers, callers)
            if not f or not p:
                continue
            mb = f"{p['mb_per_s']:,.0f}" if body >= 4096 else "-"
            star = (pts.unstable("v2", "floor", relay, body, pairs, pairs)
                    or pts.unstable("v2", "pool", relay, body, workers, callers)
                    or pts.unstable("main", "pool", relay, body, workers, callers))
            marked = marked or star
            rows.append(
                f"| {relay} | {body_name(body)} | {num(f['tasks_per_s'])} | {us(f['p50_us'])} "
                f"| {num(p['tasks_per_s'])} | {us(p['p50_us'])} | {us(p['p99_us'])} | {mb} "
                f"| {ratio(p, f)}{' *' if star else ''} | {num(v1['tasks_per_s']) if v1 else '-'} | {ratio(p, v1)} |")
    return ("\n".join(rows), marked) if len(rows) > 2 else ("", False)


def stream_table(pts, chunks):
    """The V2 stream rows (chunks/s and MB/s, pool against floor), or "" if the run has none."""
    rows = ["| relay | floor chunks/s | floor MB/s | pool chunks/s | pool MB/s | pool p50 µs per stream "
            "| pool p99 µs per stream | pool/floor |", "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for relay in RELAYS:
        for body in pts.bodies("v2_stream"):
            f = pts.get("v2_stream", "floor", relay, body, 1, 1)
            p = pts.get("v2_stream", "pool", relay, body, 1, 1)
            if not f or not p:
                continue
            star = (pts.unstable("v2_stream", "floor", relay, body, 1, 1)
                    or pts.unstable("v2_stream", "pool", relay, body, 1, 1))
            rows.append(f"| {relay} | {num(f['tasks_per_s'] * chunks)} | {f['mb_per_s']:,.0f} "
                        f"| {num(p['tasks_per_s'] * chunks)} | {p['mb_per_s']:,.0f} | {us(p['p50_us'])} "
                        f"| {us(p['p99_us'])} | {ratio(p, f)}{' *' if star else ''} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def nice_ceiling(x):
    """A round number at or above x for the chart's axis (1, 1.5, 2, ... 8 x 10^k)."""
    if x <= 0:
        return 1
    exp = 10 ** math.floor(math.log10(x))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * exp >= x:
            return step * exp
    return 10 * exp


def scaling_panel(scaling, cpus, width, y0):
    """Grouped bars: for each worker count, pool (N workers x 4N callers) and floor (N pairs).
    Returns the SVG elements and the panel's height."""
    height = 420
    left, right, top, bottom = 90, 20, 60, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    top += y0
    peak = max(max(p, f) for _, p, f in scaling)
    ymax = nice_ceiling(peak * 1.05)
    colors = {"pool": "#2b6cb0", "floor": "#a0aec0"}
    out = [
        f'<text x="{width / 2}" y="{y0 + 24}" text-anchor="middle" font-size="16" font-weight="bold">'
        f"Tasks per second, 16 B over pipes ({cpus} CPUs)</text>",
        f'<text x="{width / 2}" y="{y0 + 42}" text-anchor="middle" fill="#4a5568">'
        "pool: N workers, 4N callers (rr_exec) - floor: N hand-written pairs, no library</text>",
    ]
    ticks = 5
    for i in range(ticks + 1):
        value = ymax * i / ticks
        y = top + plot_h - plot_h * i / ticks
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e2e8f0"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{value:,.0f}</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#2d3748"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#2d3748"/>')
    group_w = plot_w / len(scaling)
    bar_w = group_w * 0.34
    for i, (n, pool, floor) in enumerate(scaling):
        x0 = left + group_w * i + group_w * 0.14
        for j, (kind, value) in enumerate((("pool", pool), ("floor", floor))):
            h = plot_h * value / ymax
            x = x0 + j * (bar_w + 4)
            y = top + plot_h - h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colors[kind]}">'
                       f"<title>{kind}, {n} workers: {value:,.0f} tasks/s</title></rect>")
            out.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="10">'
                       f"{value / 1000:,.0f}k</text>")
        out.append(f'<text x="{left + group_w * (i + 0.5):.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
                   f"{n}</text>")
    out.append(f'<text x="{left + plot_w / 2}" y="{y0 + height - 28}" text-anchor="middle">'
               "workers (floor: pairs)</text>")
    out.append(f'<text transform="translate(20 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
               "tasks/s</text>")
    lx = left + plot_w - 170
    for j, kind in enumerate(("pool", "floor")):
        y = top + 8 + j * 18
        label = "pool (libroadrunner)" if kind == "pool" else "floor (no library)"
        out.append(f'<rect x="{lx}" y="{y - 10}" width="12" height="12" fill="{colors[kind]}"/>')
        out.append(f'<text x="{lx + 18}" y="{y}">{escape(label)}</text>')
    return out, height


BAR_COLORS = {"floor": "#a0aec0", "by_hand": "#718096", "rr_exec": "#2b6cb0", "async": "#dd6b20"}


def bars_panel(bars, width, y0):
    """Horizontal bars, one per host of the 16 B pipes shapes (label, tasks/s, colour key); a None
    entry leaves a gap between groups. Returns the SVG elements and the panel's height."""
    left, right, top, row_h, bottom = 330, 70, 60, 24, 40
    rows = len(bars)
    height = top + rows * row_h + bottom
    plot_w = width - left - right
    peak = max(b[1] for b in bars if b)
    xmax = nice_ceiling(peak * 1.02)
    out = [
        f'<text x="{width / 2}" y="{y0 + 24}" text-anchor="middle" font-size="16" font-weight="bold">'
        "The completion queue beside rr_exec, by hand and the floor (16 B, pipes)</text>",
        f'<text x="{width / 2}" y="{y0 + 42}" text-anchor="middle" fill="#4a5568">'
        "tasks/s, medians of the same run; completion queue: one host thread, N tasks in flight</text>",
    ]
    top += y0
    ticks = 5
    for i in range(ticks + 1):
        x = left + plot_w * i / ticks
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + rows * row_h}" stroke="#e2e8f0"/>')
        out.append(f'<text x="{x:.1f}" y="{top + rows * row_h + 16}" text-anchor="middle">'
                   f"{xmax * i / ticks / 1000:,.0f}k</text>")
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + rows * row_h}" stroke="#2d3748"/>')
    for i, bar in enumerate(bars):
        if not bar:
            continue
        label, value, key = bar
        y = top + i * row_h + 4
        w = plot_w * value / xmax
        out.append(f'<text x="{left - 8}" y="{y + 12}" text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row_h - 8}" fill="{BAR_COLORS[key]}">'
                   f"<title>{escape(label)}: {value:,.0f} tasks/s</title></rect>")
        out.append(f'<text x="{left + w + 4:.1f}" y="{y + 12}" font-size="10">{value / 1000:,.0f}k</text>')
    return out, height


def async_bars(pts):
    """The bars of the second panel, or [] when the run has no completion queue points."""
    if not pts.get("main", "async", "pipes", 16, 4, ASYNC_IN_FLIGHT):
        return []
    groups = (
        (("2 floor pairs (no library)", ("floor", 16, 2, 2), "floor"),
         ("by hand, 4 workers × 16 threads (no library)", ("by_hand_locked", 16, 4, 16), "by_hand"),
         ("rr_exec, 4 workers × 16 callers", ("pool", 16, 4, 16), "rr_exec"),
         ("rr_exec, 4 × 16, opt-in settings", ("opt_in", 16, 4, 16), "rr_exec"),
         ("by hand, 1 thread, 4 workers, 64 in flight", ("by_hand_async_loop", 16, 4, ASYNC_IN_FLIGHT), "by_hand"),
         ("by hand, host + reactor thread, 4 w, 64 in flight",
          ("by_hand_async_reactor", 16, 4, ASYNC_IN_FLIGHT), "by_hand"),
         ("queue, 1 thread, 4 workers, 64 in flight", ("async", 16, 4, ASYNC_IN_FLIGHT), "async"),
         ("queue, 4 workers, 64 in flight, opt-in", ("async_opt_in", 16, 4, ASYNC_IN_FLIGHT), "async")),
        (("1 floor pair (no library)", ("floor", 16, 1, 1), "floor"),
         ("rr_exec, 1 worker × 1 caller", ("pool", 16, 1, 1), "rr_exec"),
         ("by hand, 1 thread, 1 worker, 1 in flight", ("by_hand_async_loop", 16, 1, 1), "by_hand"),
         ("by hand, host + reactor thread, 1 w, 1 in flight", ("by_hand_async_reactor", 16, 1, 1), "by_hand"),
         ("queue, 1 thread, 1 worker, 1 in flight", ("async", 16, 1, 1), "async")),
    )
    bars = []
    for g, group in enumerate(groups):
        if g:
            bars.append(None)
        for label, (kind, body, workers, callers), key in group:
            p = pts.get("main", kind, "pipes", body, workers, callers)
            if p:
                bars.append((label, p["tasks_per_s"], key))
    return bars


def chart(scaling, cpus, bars=()):
    """The scaling panel (when the run has scaling points), then the completion queue panel (when it
    has completion queue points), one above the other in one SVG."""
    width = 760
    body, y = [], 0
    if scaling:
        part, h = scaling_panel(scaling, cpus, width, y)
        body += part
        y += h
    if bars:
        part, h = bars_panel(list(bars), width, y)
        body += part
        y += h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
           f'viewBox="0 0 {width} {y}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{y}" fill="white"/>'] + body + ["</svg>"]
    return "\n".join(out) + "\n"


def elastic_section(path):
    """The elastic pool's figures (bench/elastic --json), as Markdown lines."""
    with open(path) as f:
        e = json.load(f)
    added = e["host_rss_64_idle_kib"] - e["host_rss_before_kib"]
    return [
        "## The elastic pool (`bench/elastic`)\n",
        f"rr-test-worker over pipes, medians of {e['rounds']} rounds. Start-up: workers that take 50 ms to boot "
        "(`boot-sleep 50`), 32 callers arriving at once with a 2 s task each; the time until all 32 run. "
        "Burst: 64 callers at once, each with one task of 20 ms (`!sleep:20`); the time until the last answer.\n",
        "| measurement | ms |\n|---|--:|",
        f"| start-up: on demand 0..32, until 32 callers run | {e['startup_on_demand_ms']:.0f} |",
        f"| start-up: static 32, `rr_server_start` | {e['startup_static_ms']:.0f} |",
        f"| burst of 64 × 20 ms: elastic 1..16 | {e['burst_elastic_ms']:.0f} |",
        f"| burst of 64 × 20 ms: static 16 | {e['burst_static16_ms']:.0f} |",
        f"| burst of 64 × 20 ms: static 1 | {e['burst_static1_ms']:.0f} |",
        "",
        f"Host memory (VmRSS) with 64 idle workers: {e['host_rss_64_idle_kib']:,} KiB, "
        f"{added:,} KiB more than before the pool ({added / 64:.1f} KiB per worker: its relay buffers, "
        "its stderr reader and its watcher's stack).\n",
    ]


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: report.py RESULTS.json BENCHMARKS.md CHART.svg [ELASTIC.json]")
    json_path, md_path, svg_path = sys.argv[1:4]
    elastic_path = sys.argv[4] if len(sys.argv) == 5 else None
    with open(json_path) as f:
        data = json.load(f)
    meta = data["meta"]
    pts = Points(data["points"])
    r = data["ratios"]
    md = []
    md.append("# Benchmarks\n")
    md.append(
        f"Generated by `make bench-report` ({meta['date']}) on {meta['cpus']} CPUs ({meta['cpu']}), "
        f"{meta['kernel']}, libroadrunner {meta['library_version']}. Every figure is the median of "
        f"{meta['rounds']} rounds of {meta['seconds']:.2f} s; the whole run took {meta['run_seconds']:.0f} s. "
        f"Raw data: `bench/results.json`, printed table: `bench/results.txt`.\n")
    md.append("## Headline\n")
    md.append("```")
    md.append(f"floor ratio: {r['one_core_1x1_pipes_16']:.2f} (16 B, 1 worker, 1 caller, pipes, one core)")
    md.append(f"floor ratio: {r['pipes_16_4x16_vs_2_pairs']:.2f} (16 B, 4 workers, 16 callers, pipes, vs 2 floor pairs)")
    md.append("```\n")
    if "pipes_16_4x16_opt_in_vs_2_pairs" in r:
        md.append(
            f"With the opt-in `worker_cpu_affinity` and `worker_sched_batch` (off by default; see the table "
            f"below), the second ratio is **{r['pipes_16_4x16_opt_in_vs_2_pairs']:.2f}** in the same run.\n")
    if "pipes_16_4x16_vs_by_hand_locked" in r:
        md.append(
            f"Against a host of the same shape written by hand (16 threads sharing 4 workers, a mutex per "
            f"worker, no library), the pool's 4 × 16 ratio is **{r['pipes_16_4x16_vs_by_hand_locked']:.2f}**: "
            f"two floor pairs are two threads and two workers, a cheaper shape on {meta['cpus']} CPUs.\n")
    if "async_pipes_16_4x64_vs_2_pairs" in r and r["async_pipes_16_4x64_vs_2_pairs"] > 0:
        md.append(
            f"With the completion queue (`rr_exec_submit`, one host thread, 4 workers, 64 tasks in flight, 16 B "
            f"over pipes) the ratio against 2 floor pairs is **{r['async_pipes_16_4x64_vs_2_pairs']:.2f}** "
            f"(64 KiB: {r['async_pipes_64k_4x64_vs_2_pairs']:.2f}, 1 MiB: {r['async_pipes_1m_4x64_vs_2_pairs']:.2f} "
            f"of the floor's bytes/s); with 1 worker and 1 task in flight it makes "
            f"**{r['async_pipes_16_1x1_vs_exec_1x1']:.2f}** of `rr_exec` 1 × 1 "
            f"({r['async_pipes_16_1x1_vs_1_pair']:.2f} of one floor pair). See the completion queue table.\n")
    if r.get("async_pipes_16_4x64_vs_by_hand_async_reactor", 0) > 0:
        md.append(
            f"The same shapes written by hand (`bench/by_hand_async.c`, no library) show what a host reaches "
            f"on this machine: one thread owning the relays (epoll), 4 workers, 64 in flight, "
            f"**{r['by_hand_async_loop_pipes_16_4x64_vs_2_pairs']:.2f}** of 2 floor pairs; the queue's own shape "
            f"(an event-loop host thread that another thread hands the completions to) "
            f"**{r['by_hand_async_reactor_pipes_16_4x64_vs_2_pairs']:.2f}**, against which the queue makes "
            f"**{r['async_pipes_16_4x64_vs_by_hand_async_reactor']:.2f}**. With 1 worker and 1 task in flight: "
            f"{r['by_hand_async_loop_pipes_16_1x1_vs_exec_1x1']:.2f} and "
            f"{r['by_hand_async_reactor_pipes_16_1x1_vs_exec_1x1']:.2f} of `rr_exec` 1 × 1, the queue "
            f"**{r['async_pipes_16_1x1_vs_by_hand_async_reactor']:.2f}** of its shape by hand.\n")
    md.append(
        "A ratio is the pool's tasks/s divided by the floor's: 1.00 means the library adds nothing a "
        "hand-written program would not pay too.\n")
    md.append("## How it is measured\n")
    md.append(
        "- **Worker**: `bench/echo_worker.c`, a minimal C worker that speaks the protocol by hand (no "
        "library): the pid handshake, then per task a buffered read of the context and body frames and "
        "one `writev` with the echoed answer. The same binary serves the floor and the pool.\n"
        "- **Floor** (`bench/floor.c`, `bench/common.c`): a parent that spawns that worker and plays "
        "ping-pong with it over the same channel, with the same frames, one `writev` per task and "
        "buffered reads; no library, no locks, no threads beyond one per pair. *N pairs* = N such "
        "parents (threads) with a worker each, in parallel. It is what two processes physically cost.\n"
        "- **Pool** (`bench/bench.c`): `rr_exec` on an `rr_server` running the same worker over the "
        "same relay; callers are pthreads that call `rr_exec` in a loop. Each task sends a "
        f"{meta['context_bytes']}-byte JSON context and the body; the answer is checked and freed.\n"
        + ("- *Completion queue* rows: one host thread keeps N tasks submitted with `rr_exec_submit`, waits "
           "with `poll()` on `rr_queue_fd`, takes every waiting completion with `rr_queue_next(q, 0)` until "
           "`RR_STATUS_TIMEOUT` (each answer checked and freed), submits again up to N. Measured on the pools of "
           "the rr_exec rows, right after them; a latency runs from submission to the completion taken.\n"
           if any(p["kind"] == "async" for p in data["points"]) else "")
        + "- Floor and pool measurements alternate (floor, pool, floor, pool, ...) so both see the same "
        "machine state; each starts after a 50 ms warm-up; latencies are per `rr_exec` call.\n"
        "- *One core*: the host, the library's threads and the workers are all pinned to CPU 0 "
        "(`sched_setaffinity` on every thread; children inherit it). This removes cross-CPU wake-ups, "
        "which on a small VM dominate a 1-caller round trip and vary from run to run.\n"
        "- MB/s is body bytes echoed per second in one direction (streams: chunk bodies received per second).\n"
        + ("- *Protocol V2* rows: the same worker with `--protocol 2`, the pool with `RR_PROTOCOL_V2`, floor "
           "pairs moving V2 frames (one frame per task and per answer); measured in the same rounds as V1, right "
           "after the V1 rows of each relay.\n"
           if any(p["section"] == "v2" for p in data["points"]) else "")
        + ("- CPU idle states: the run held PM QoS `/dev/cpu_dma_latency` = 0, so idle CPUs poll instead of "
           "halting (on a VM, waking a halted vCPU costs tens of µs per message and made 1-caller results "
           "vary several-fold between runs). `bench/bench --allow-idle` measures without it.\n"
           if meta.get("cpus_awake") else
           "- CPU idle states: CPUs were allowed to sleep when idle; 1-caller figures then depend on "
           "scheduler placement (see the observations).\n"))
    marked = False
    for title, shape in (("1 worker × 1 caller, against 1 floor pair", (1, 1, 1)),
                         ("4 workers × 16 callers, against 2 floor pairs", (4, 16, 2))):
        table, star = pair_table(pts, *shape)
        marked = marked or star
        md.append(f"## {title}\n")
        md.append(table + "\n")
    opt_in = opt_in_table(pts)
    if opt_in:
        md.append("## 4 workers × 16 callers over pipes with the opt-in scheduling settings\n")
        md.append("Workers pinned one CPU each, spread evenly (`rr_config_set_worker_cpu_affinity`), and in "
                  "`SCHED_BATCH` (`rr_config_set_worker_sched_batch`); against the same 2 floor pairs as the "
                  "table above, in the same rounds.\n")
        md.append(opt_in + "\n")
    by_hand = by_hand_table(pts)
    if by_hand:
        md.append("## The pool's shape written by hand (pipes, 16 B, 4 workers × 16 threads)\n")
        md.append("`bench/by_hand.c`, no library: the same echo_workers, 16 threads, thread *t* always on worker "
                  "*t* mod 4. *A mutex per worker*: each round trip under its worker's mutex, the simplest "
                  "correct host of this shape. *Tasks queued in the workers' pipes*: a thread writes its task "
                  "at once, behind those already in the pipe, and reads its answer when its turn comes, so a "
                  "worker never waits for a task; the pool does not do that (a task goes to a free worker, never "
                  "behind a slow one). pool/this divides the pool's 4 × 16 figure above by the row's.\n")
        md.append(by_hand + "\n")
    queue, star = async_table(pts)
    if queue:
        marked = marked or star
        md.append("## The completion queue: one host thread, tasks in flight (pipes)\n")
        md.append("`rr_exec_submit` hands a task to the pool and returns at once; one host thread keeps *in flight* "
                  "tasks submitted, waits with `poll()` on `rr_queue_fd` and takes every waiting completion with "
                  "`rr_queue_next(q, 0)` until `RR_STATUS_TIMEOUT`, freeing each answer, then submits again. The "
                  "library writes a task to a free worker on the submitting thread and reads the answers on one "
                  "reactor thread per pool. Measured on the very pools of the rr_exec rows, right after them. "
                  "*vs floor*: against 2 floor pairs for 4 workers, 1 pair for 1 worker, same body (for 64 KiB and "
                  "1 MiB this is the ratio of bytes/s too); *vs rr_exec*: against rr_exec 4 × 16 (the opt-in row: "
                  "rr_exec 4 × 16 with the same settings) or 1 × 1, same body, same run. *Target*: what the "
                  "completion queue's issue asks of `make bench`.\n")
        md.append(queue + "\n")
    v2_sections = []
    for title, shape in (("1 worker × 1 caller, against 1 V2 floor pair", (1, 1, 1)),
                         ("4 workers × 16 callers, against 2 V2 floor pairs", (4, 16, 2))):
        table, star = v2_table(pts, *shape)
        marked = marked or star
        if table:
            v2_sections.append((title, table))
    if v2_sections:
        md.append("## Protocol V2\n")
        md.append("The same shapes in protocol V2 (goridge 3/4, RoadRunner 2.x to 2025.x workers): a task and its "
                  "answer are one frame each (a 16-byte header with a CRC, the context's length as its option, then "
                  "context and body) instead of V1's two frames of 17-byte prefixes. The worker is the same "
                  "`bench/echo_worker` with `--protocol 2`, the pool is set to `RR_PROTOCOL_V2` "
                  "(`rr_config_set_protocol`), and the floor pairs move the same V2 frames. *V1 pool tasks/s* is the "
                  "V1 pool of the same shape, relay and body from the tables above (same rounds); V2/V1 divides "
                  "the V2 pool's figure by it.\n")
        for title, table in v2_sections:
            md.append(f"### {title}\n")
            md.append(table + "\n")
    chunks = meta.get("stream_chunks", 16)
    streams = stream_table(pts, chunks)
    if streams:
        md.append(f"### Streams (1 worker × 1 caller, {chunks} chunks of "
                  f"{body_name(meta.get('stream_chunk_bytes', 65536))} per task)\n")
        md.append(f"`bench/echo_worker --protocol 2 --stream {chunks}` answers every task with {chunks} frames of "
                  "64 KiB, STREAM set on all but the last; like the library's own worker side it sets PING on every "
                  "5th chunk and waits for the host's PONG before sending the next. The pool reads them with "
                  "`rr_exec_stream` and `rr_stream_next` (each chunk freed); the floor is one parent reading the "
                  "same frames from the same worker, answering each PING with a PONG. Latencies are per whole "
                  "stream.\n")
        md.append(streams + "\n")
    if marked:
        md.append("\\* The rounds of the floor or of the pool differ by more than 2× in tasks/s on that row: the "
                  "median there reflects where the scheduler put the processes more than the code.\n")
    f1 = pts.get("one_core", "floor", "pipes", 16, 1, 1)
    p1 = pts.get("one_core", "pool", "pipes", 16, 1, 1)
    md.append(f"## One core (pipes, 16 B, 1 worker × 1 caller, {meta['rounds']} rounds of "
              f"{meta.get('one_core_seconds', meta['seconds']):.2f} s)\n")
    md.append("| | tasks/s | p50 µs | p99 µs |\n|---|--:|--:|--:|")
    md.append(f"| floor | {num(f1['tasks_per_s'])} | {us(f1['p50_us'])} | {us(f1['p99_us'])} |")
    md.append(f"| pool | {num(p1['tasks_per_s'])} | {us(p1['p50_us'])} | {us(p1['p99_us'])} |")
    md.append(f"\npool/floor: **{ratio(p1, f1)}**\n")
    f1v2 = pts.get("one_core_v2", "floor", "pipes", 16, 1, 1)
    p1v2 = pts.get("one_core_v2", "pool", "pipes", 16, 1, 1)
    if f1v2 and p1v2:
        md.append("The same in protocol V2, in the same rounds:\n")
        md.append("| | tasks/s | p50 µs | p99 µs |\n|---|--:|--:|--:|")
        md.append(f"| V2 floor | {num(f1v2['tasks_per_s'])} | {us(f1v2['p50_us'])} | {us(f1v2['p99_us'])} |")
        md.append(f"| V2 pool | {num(p1v2['tasks_per_s'])} | {us(p1v2['p50_us'])} | {us(p1v2['p99_us'])} |")
        md.append(f"\nV2 pool/V2 floor: **{ratio(p1v2, f1v2)}**; V2 pool/V1 pool: **{ratio(p1v2, p1)}**\n")

    scaling = []
    for n in sorted({p["workers"] for p in data["points"] if p["section"] == "scaling" and p["kind"] == "floor"}):
        f = pts.get("scaling", "floor", "pipes", 16, n, n)
        p = pts.get("scaling", "pool", "pipes", 16, n, 4 * n)
        if f and p:
            scaling.append((n, p, f))
    bars = async_bars(pts)
    chart_link = f"![tasks per second]({os.path.relpath(svg_path, os.path.dirname(md_path) or '.')})\n"
    if scaling:
        md.append("## Scaling: N workers × 4N callers against N floor pairs (pipes, 16 B)\n")
        md.append(f"The machine has {meta['cpus']} CPUs: past that, more pairs or workers only share them."
                  + (" The chart's second panel sets the completion queue beside rr_exec, the host written by hand "
                     "and the floor (tables above).\n" if bars else "\n"))
        md.append(chart_link)
        md.append("| workers | callers | floor tasks/s | floor p99 µs | pool tasks/s | pool p50 µs | pool p99 µs "
                  "| pool/floor |\n|--:|--:|--:|--:|--:|--:|--:|--:|")
        for n, p, f in scaling:
            md.append(f"| {n} | {4 * n} | {num(f['tasks_per_s'])} | {us(f['p99_us'])} | {num(p['tasks_per_s'])} "
                      f"| {us(p['p50_us'])} | {us(p['p99_us'])} | {ratio(p, f)} |")
        md.append("")
    elif bars:
        md.append("## Chart\n")
        md.append(chart_link)
    if scaling or bars:
        with open(svg_path, "w") as f:
            f.write(chart([(n, p["tasks_per_s"], f["tasks_per_s"]) for n, p, f in scaling], meta["cpus"], bars))

    ss = pts.get("split_sends", "pool", "tcp", 16, 1, 1)
    nv = pts.get("split_sends", "naive", "tcp", 16, 1, 1)
    md.append("## TCP with a PHP-like worker (`--split-sends`)\n")
    md.append(
        "The worker sends every prefix and every payload with its own `send()` and leaves Nagle on, as "
        "PHP's socket relay does. Without a prompt ACK from the host, each answer waits for the "
        "delayed-ACK timer (RoadRunner 1.0: ~44 ms per task). 16 B, 1 worker × 1 caller.\n")
    md.append("| host | tasks/s | p50 µs | p99 µs |\n|---|--:|--:|--:|")
    md.append(f"| libroadrunner | {num(ss['tasks_per_s'])} | {us(ss['p50_us'])} | {us(ss['p99_us'])} |")
    if nv:
        md.append(f"| naive host (TCP_NODELAY, no TCP_QUICKACK) | {num(nv['tasks_per_s'])} | {us(nv['p50_us'])} "
                  f"| {us(nv['p99_us'])} |")
    md.append("")
    md.append("## Start-up\n")
    md.append("Time of `rr_server_start` with 32 workers (median); each worker sleeps before its handshake. "
              "Started one after another, 32 × 50 ms would take 1.6 s.\n")
    md.append("| relay | boot per worker | rr_server_start | rr_server_stop |\n|---|--:|--:|--:|")
    for s in data["startup"]:
        md.append(f"| {s['relay']} | {s['boot_ms']} ms | {s['start_ms']:.1f} ms | {s['stop_ms']:.1f} ms |")
    md.append("")
    rss = data["rss"]
    md.append("## Host memory\n")
    md.append(
        f"VmRSS of a fresh host process before and after starting {rss['workers']} idle workers over pipes: "
        f"{rss['before_kb']:,} KiB → {rss['after_kb']:,} KiB, i.e. **{rss['per_worker_kb']:.1f} KiB per worker** "
        f"(threads {rss['threads_before']} → {rss['threads_after']}). The workers' own memory is not counted.\n")
    al = data["allocs"]
    md.append("## Heap allocations per task (host side)\n")
    md.append(
        f"`malloc`/`calloc`/`realloc`/`posix_memalign` interposed in the bench binary and counted on every "
        f"thread during {al['tasks']:,} calls of `rr_exec` with 16 B (1 worker × 1 caller), the answer freed "
        f"with `rr_payload_free`; for the completion queue, {al['tasks']:,} tasks submitted, polled for and "
        f"taken, each answer freed."
        f"{'' if al['interposed'] else ' **Interposition failed: the counts are void.**'}\n")
    md.append("| relay | new blocks | reallocs | frees |\n|---|--:|--:|--:|")
    for relay in RELAYS:
        a = al[relay]
        md.append(f"| {relay} | {a['allocs_per_task']:.2f} | {a['reallocs_per_task']:.2f} | {a['frees_per_task']:.2f} |")
    for q in al.get("queue", []):
        md.append(f"| pipes, completion queue, {q['workers']} worker{'s' if q['workers'] > 1 else ''} × "
                  f"{q['in_flight']} in flight | {q['allocs_per_task']:.2f} | {q['reallocs_per_task']:.2f} "
                  f"| {q['frees_per_task']:.2f} |")
    md.append("")
    if elastic_path:
        md.extend(elastic_section(elastic_path))
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            md.append(f.read().rstrip() + "\n")
    md.append("## Reproducing\n")
    md.append(
        "```sh\n"
        "make bench          # the tables above without the scaling points (about 3 minutes)\n"
        "make bench-report   # everything, then rewrites this file and the chart\n"
        "bench/floor [--protocol 2 [--stream]]   # the floor alone (V1, V2, V2 streams)\n"
        "bench/bench --exec-loop 100000 [--relay tcp] [--workers 4 --callers 16] [--pin-workers] [--batch-workers]\n"
        "                    [--protocol 2 [--stream]] [--async K]\n"
        "                    # for strace/perf; --pin-workers, --batch-workers: the opt-in scheduling settings;\n"
        "                    # --protocol 2: V2; --stream: every task a V2 stream of 16 x 64 KiB;\n"
        "                    # --async K: one thread, K tasks in flight through a completion queue (no --callers)\n"
        "```\n")
    with open(md_path, "w") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    main()
