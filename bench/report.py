#!/usr/bin/env python3
"""The bench as a page: a Markdown report with SVG plots, from bench.py's JSON.

    python3 bench/report.py RESULTS.json OUTDIR

bench.py calls `write()` itself at the end of a run (`--report DIR`; `bench/run.sh --full`
writes bench/report/). The page has, per workload, each daemon's median with every
round drawn as a dot (the spread), the CPU each daemon spent per I/O, and the issue's
goals checked against the figures of the same run, pass or fail. The SVG is written by
hand (no plotting library needed).
"""

import json
import os
import statistics
import sys
from html import escape

# Daemon colours: rtgtd and its same-build variants in blues, the baseline build in
# purple, tgtd in orange, the socket floor in grey.
COLOURS = {"rtgtd": "#1f5fa8", "tgtd": "#e0782a", "floor": "#8c8c8c", "base": "#7b4fa8"}
VARIANT_COLOURS = ["#5a9bd8", "#9cc3ea", "#2f8f6f", "#6fc2a2"]

# When an A/B variant counts as better than rtgtd's defaults on a workload: its median
# rate is this much higher. The VM's noise between back-to-back runs is about ±5-10%, so a
# smaller gap is not evidence either way.
AB_TOLERANCE = 0.03


def colour(name, order):
    if name in COLOURS:
        return COLOURS[name]
    variants = [n for n in order if n not in COLOURS]
    return VARIANT_COLOURS[variants.index(name) % len(VARIANT_COLOURS)]


def med(v):
    return statistics.median(v) if v else float("nan")


def fmt(x):
    if x != x:  # NaN
        return "-"
    if x >= 100 or x == int(x):
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def nice_step(peak):
    """A round grid step (1, 2, 2.5 or 5 times a power of ten) so that four steps
    reach above `peak`."""
    import math
    raw = peak * 1.12 / 4
    p = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * p >= raw:
            return m * p
    return 10 * p


def panel_svg(title, unit, series, order, width=300, height=190):
    """One panel: a bar per daemon at its median, a dot per round. `series` maps daemon
    name -> list of round values."""
    names = [n for n in order if n in series and series[n]]
    step = nice_step(max((max(series[n]) for n in names), default=1) or 1)
    top = step * 4
    left, right, ptop, bottom = 58, 8, 26, 34
    pw, ph = width - left - right, height - ptop - bottom
    out = [f'<g class="panel">',
           f'<text x="{width / 2}" y="15" text-anchor="middle" font-size="12" '
           f'font-weight="bold">{escape(title)}</text>']
    # Axis with four grid lines.
    for i in range(5):
        v = step * i
        y = ptop + ph - ph * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#ddd" stroke-width="1"/>')
        out.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end" font-size="9" '
                   f'fill="#555">{escape(fmt(v))}</text>')
    out.append(f'<text x="10" y="{ptop + ph / 2}" font-size="9" fill="#555" '
               f'transform="rotate(-90 10 {ptop + ph / 2})" text-anchor="middle">'
               f'{escape(unit)}</text>')
    n = max(len(names), 1)
    slot = pw / n
    bw = slot * 0.6
    for i, name in enumerate(names):
        vals = series[name]
        m = med(vals)
        x = left + slot * i + (slot - bw) / 2
        h = ph * m / top
        c = colour(name, order)
        out.append(f'<rect x="{x:.1f}" y="{ptop + ph - h:.1f}" width="{bw:.1f}" '
                   f'height="{h:.1f}" fill="{c}" fill-opacity="0.75"><title>{escape(name)}: '
                   f'median {escape(fmt(m))} {escape(unit)}</title></rect>')
        for j, v in enumerate(vals):
            dx = (j - (len(vals) - 1) / 2) * min(6, bw / max(len(vals), 1))
            y = ptop + ph - ph * v / top
            out.append(f'<circle cx="{x + bw / 2 + dx:.1f}" cy="{y:.1f}" r="2.4" '
                       f'fill="#222"><title>{escape(fmt(v))}</title></circle>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{ptop + ph - h - 4:.1f}" '
                   f'text-anchor="middle" font-size="9">{escape(fmt(m))}</text>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{height - bottom + 13}" '
                   f'text-anchor="middle" font-size="9">{escape(name)}</text>')
    out.append("</g>")
    return "\n".join(out)


def grid_svg(panels, cols=3, pw=300, ph=190, caption=""):
    rows = (len(panels) + cols - 1) // cols
    w, h = cols * pw, rows * ph + (22 if caption else 0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" font-family="sans-serif">',
           f'<rect width="{w}" height="{h}" fill="white"/>']
    for i, p in enumerate(panels):
        x, y = (i % cols) * pw, (i // cols) * ph
        out.append(f'<g transform="translate({x},{y})">{p}</g>')
    if caption:
        out.append(f'<text x="6" y="{h - 7}" font-size="10" fill="#444">{escape(caption)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def goals(res):
    """The goals of issue 22, each as (goal, figure, met) from this run's figures; met is
    None when the run did not measure it (a workload or daemon left out)."""
    w, order = res["workloads"], res["daemons"]
    rows = []

    def rate(name, d):
        return med(w.get(name, {}).get("raw", {}).get(d, {}).get("rate", []))

    def cpu(name, d):
        return med(w.get(name, {}).get("raw", {}).get(d, {}).get("cpu_per_mio", []))

    def row(goal, a, b, figure, ok):
        """NaN (not run) on either side: not measured."""
        if a != a or b != b or not b:
            rows.append((goal, "not measured", None))
        else:
            rows.append((goal, figure(a, b), ok(a, b)))

    null = "4K randread QD32 null"
    row("CPU per null 4K read at QD32 <= 2x the socket floor's",
        cpu(null, "rtgtd"), cpu(null, "floor"),
        lambda r, f: f"{fmt(r)} vs floor {fmt(f)} us: {r / f:.2f}x", lambda r, f: r <= 2 * f)
    def floor_says(ratio, what):
        """What the socket floor reached on the same measure, when it ran: a goal the
        floor itself misses is beyond what this machine and initiator allow."""
        return "" if ratio != ratio else f" (the floor: {ratio:.2f}{what})"

    floor_null = cpu(null, "floor") / cpu(null, "tgtd") if cpu(null, "tgtd") else float("nan")
    row("CPU per null 4K read at QD32 <= 1/4 of tgtd's",
        cpu(null, "rtgtd"), cpu(null, "tgtd"),
        lambda r, t: f"{fmt(r)} vs tgtd {fmt(t)} us: {r / t:.2f}" + floor_says(floor_null, ""),
        lambda r, t: r <= t / 4)
    for name, goal in (("4K write QD32 cached", 2.5), ("4K randread QD32 cached", 3.0)):
        fl = rate(name, "floor") / rate(name, "tgtd") if rate(name, "tgtd") else float("nan")
        row(f"{name} >= {goal}x tgtd", rate(name, "rtgtd"), rate(name, "tgtd"),
            lambda r, t, fl=fl: f"{fmt(r)} vs {fmt(t)} IOPS: {r / t:.2f}x" + floor_says(fl, "x"),
            lambda r, t, g=goal: r >= g * t)
    q = "4K randread QD1 cached"
    row("QD1 4K read latency no worse than tgtd's", rate(q, "rtgtd"), rate(q, "tgtd"),
        lambda r, t: f"{1e6 / r:.0f} vs {1e6 / t:.0f} us (median IOPS {fmt(r)} vs {fmt(t)})",
        lambda r, t: r >= t)
    seq = "1M seqread QD8 cached"
    row("1M sequential read >= 100% of one iperf3 stream", rate(seq, "rtgtd"),
        res.get("iperf3_MBps") or float("nan"),
        lambda r, ip: f"{fmt(r)} vs {fmt(ip)} MB/s: {r / ip * 100:.0f}%", lambda r, ip: r >= ip)
    for v in order:
        if v in ("rtgtd", "tgtd", "floor"):
            continue
        worse, figs = [], []
        for name in w:
            raw = w[name]["raw"]
            if "rtgtd" not in raw or v not in raw:
                continue
            # Rounds are paired: both ran within seconds of each other, so the median of
            # the per-round ratios cancels the machine's drift better than a ratio of
            # medians.
            pairs = [x / y for x, y in zip(raw["rtgtd"]["rate"], raw[v]["rate"]) if y]
            if not pairs:
                continue
            r = med(pairs)
            figs.append(f"{name} {r:.2f}x")
            if r < 1 - AB_TOLERANCE:
                worse.append(f"{name} {r:.2f}x")
        args = res.get("args", {}).get(v, "")
        goal = (f"no workload worse than `{v}` (`{args}`) by more than "
                f"{AB_TOLERANCE * 100:.0f}% (median of the per-round rate ratios)")
        if not figs:
            rows.append((goal, "not measured", None))
        else:
            rows.append((goal, ("worse: " + "; ".join(worse)) if worse else
                         "rtgtd / " + v + ": " + "; ".join(figs), not worse))
    return rows


def verdict(ok):
    return "not measured" if ok is None else "**yes**" if ok else "**NO**"


def write(res, outdir):
    """Writes OUTDIR/README.md, OUTDIR/rates.svg, OUTDIR/cpu.svg and OUTDIR/results.json."""
    os.makedirs(outdir, exist_ok=True)
    order = res["daemons"]
    w = res["workloads"]
    rate_panels, cpu_panels = [], []
    for name, wl in w.items():
        raw = wl["raw"]
        rate_panels.append(panel_svg(name, wl["unit"], {d: raw[d]["rate"] for d in raw}, order))
        cpu_panels.append(panel_svg(name, "us CPU per I/O",
                                    {d: raw[d]["cpu_per_mio"] for d in raw}, order))
    if res.get("iperf3"):
        rate_panels.append(panel_svg("iperf3 loopback, 1 stream", "MB/s",
                                     {"iperf3": [x / 1e6 for x in res["iperf3"]]},
                                     ["iperf3"]))
    cap = (f"bars: median of {res['rounds']} alternated rounds of {res['seconds']} s; "
           "dots: each round")
    with open(os.path.join(outdir, "rates.svg"), "w") as f:
        f.write(grid_svg(rate_panels, caption=cap))
    with open(os.path.join(outdir, "cpu.svg"), "w") as f:
        f.write(grid_svg(cpu_panels, caption=cap + "; CPU = the daemon's utime+stime / I/Os"))
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(res, f, indent=1)

    lines = ["# rtgtd benchmark report", ""]
    lines.append(f"`{res.get('command', 'bench/run.sh')}` on {res.get('date', '?')}: "
                 f"{res.get('machine', '')}. Load average during the run: "
                 f"{res['load'][0]} .. {res['load'][-1]}. Each figure is the median of "
                 f"{res['rounds']} rounds of {res['seconds']} s, the daemons alternating "
                 "within each round. The initiators run on the same CPUs as the targets: "
                 "read the ratios, not the absolute numbers.")
    if res.get("note"):
        lines.append("")
        lines.append(f"**Note:** {res['note']}")
    lines.append("")
    lines.append("Daemons: " + "; ".join(
        f"**{d}**: {res.get('args', {}).get(d) or res.get('about', {}).get(d, '')}"
        for d in order) + ".")
    lines.append("")
    lines.append("## Goals (issue 22), checked against this run")
    lines.append("")
    lines.append("| goal | figure | met? |")
    lines.append("|---|---|---|")
    for g, fig, ok in goals(res):
        lines.append(f"| {g} | {fig} | {verdict(ok)} |")
    lines.append("")
    lines.append("## Rates")
    lines.append("")
    lines.append("![rates per workload](rates.svg)")
    lines.append("")
    lines.append("## CPU per I/O")
    lines.append("")
    lines.append("![CPU per I/O per workload](cpu.svg)")
    lines.append("")
    lines.append("## Table")
    lines.append("")
    hdr = "| workload | " + " | ".join(order) + " | " + " | ".join(
        f"CPU us/I/O {d}" for d in order) + " | " + " | ".join(
        f"initiator busy, {d}" for d in order) + " |"
    lines.append(hdr)
    lines.append("|---|" + "---:|" * (3 * len(order)))
    for name, wl in w.items():
        raw = wl["raw"]
        cells = [fmt(med(raw[d]["rate"])) if d in raw else "" for d in order]
        cpus = [fmt(med(raw[d]["cpu_per_mio"])) if d in raw else "" for d in order]
        busy = [f"{med(raw[d]['client_busy']) * 100:.0f}%" if d in raw else "" for d in order]
        lines.append(f"| {name} ({wl['unit']}) | " + " | ".join(cells) + " | "
                     + " | ".join(cpus) + " | " + " | ".join(busy) + " |")
    if res.get("iperf3_MBps"):
        lines.append(f"| iperf3 loopback, 1 stream (MB/s) | {fmt(res['iperf3_MBps'])} |"
                     + " |" * (3 * len(order) - 1))
    rss = res.get("vmhwm_kb", {})
    lines.append("| peak RSS (VmHWM, MiB) | " + " | ".join(
        f"{rss[d] / 1024:.1f}" if d in rss else "" for d in order) + " |"
        + " |" * (2 * len(order)))
    lines.append("")
    lines.append("The socket floor (`bench/floor`) does only what any iSCSI target must do "
                 "per 4 KiB READ: it takes the 48-byte command off the loopback connection "
                 "and `writev`s a 48-byte Data-In header with the status plus 4096 bytes, "
                 "every whole request of one `read` answered by one `writev`. It serves "
                 "the null-LUN read workloads and the 4K writes, whose data (immediate "
                 "data, all of it in the command PDU) it reads and discards: a goal the "
                 "floor itself misses is out of reach of any target under this initiator "
                 "on this machine. CPU per I/O is the daemon process's "
                 "utime+stime over the run divided by the I/Os done (all its threads). "
                 "\"Initiator busy\" is iscsi-perf's or qemu-img's own CPU per wall second: "
                 "a single-threaded initiator near 100% sets the rate, whatever the target "
                 "does. `results.json` has every round.")
    lines.append("")
    with open(os.path.join(outdir, "README.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        write(json.load(f), sys.argv[2])
