#!/usr/bin/env python3
"""Chart of a drover-bench result file.

    python3 bench/plot.py bench/results/start-stop.json bench/results/start-stop.png
    python3 bench/plot.py bench/results/evacuate.json bench/results/evacuate.png

One group of bars per cell, one bar per series (drover, raw runtime, raw runtime from a
sealed copy of its binary, LXD): the median, with a whisker from min to max. The ratio
drover/reference is written above each group (a start-stop result has two: drover/raw and
drover/raw_sealed; files from before session 8 only the first).
An `evacuate` result is drawn as timelines instead (see plot_evacuate).
Needs matplotlib (`pip install matplotlib`).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"drover": "#2b6cb0", "raw": "#a0aec0", "raw_sealed": "#4a5568", "lxd": "#dd6b20"}
LABELS = {"drover": "drover (API)", "raw": "raw runtime (floor, binary on disk)",
          "raw_sealed": "raw runtime, sealed copy (as drover runs it)", "lxd": "LXD 5.0.2"}


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        result = json.load(f)
    if result.get("benchmark") == "evacuate":
        return plot_evacuate(result, argv[2])
    cells = result["cells"]
    names = [s for s in ("drover", "raw", "raw_sealed", "lxd")
             if any(s in c["series"] for c in cells)]
    width = 0.8 / len(names)

    fig, ax = plt.subplots(figsize=(max(6.0, 2.4 * len(cells) + 1.5), 5.2), dpi=120)
    top = 0.0
    for j, name in enumerate(names):
        xs, med, lo, hi = [], [], [], []
        for i, c in enumerate(cells):
            s = c["series"].get(name)
            if s is None:
                continue
            xs.append(i + (j - (len(names) - 1) / 2) * width)
            med.append(s["median_ms"])
            lo.append(s["median_ms"] - s["min_ms"])
            hi.append(s["max_ms"] - s["median_ms"])
            top = max(top, s["max_ms"])
        ax.bar(xs, med, width * 0.95, color=COLORS[name], label=LABELS[name],
               yerr=[lo, hi], capsize=3, error_kw={"elinewidth": 1, "ecolor": "#333333"})
        for x, m in zip(xs, med):
            ax.text(x, m / 2, f"{m:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if name in ("drover", "raw_sealed") else "black")
    for i, c in enumerate(cells):
        ratios = [r for r in (c["ratio"], c.get("ratio_sealed")) if r]
        text = "\n".join(f"{r['of']} = {r['of_medians']:.2f}" for r in ratios)
        ax.text(i, top * 1.04, text, ha="center", va="bottom", fontsize=8 if len(ratios) > 1 else 9,
                fontweight="bold")
    ax.set_ylim(0, top * (1.22 if any(c.get("ratio_sealed") for c in cells) else 1.15))
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([c["name"].replace("_", " ") for c in cells])
    ax.set_ylabel("wall time, ms (median, whiskers min–max)")
    meta, setup = result["metadata"], result.get("setup", {})
    if result["benchmark"] == "start-stop":
        title = (f"start-stop: N={setup.get('n')} busybox containers, total per cell\n"
                 f"{setup.get('runs')} runs, {setup.get('runtime_version')}, lower is better")
    else:
        title = (f"lxc launch → running, {setup.get('n')} launches each\n"
                 f"drover ({setup.get('drover_runtime')}) vs LXD {setup.get('lxd_server_version')}, "
                 "lower is better")
    ax.set_title(title, fontsize=10)
    fig.text(0.99, 0.01, f"{meta['date']}  {meta['git_commit'][:10]}  nproc={meta['nproc']}",
             ha="right", va="bottom", fontsize=7, color="#666666")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=len(names),
              frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(argv[2])
    return 0


SEGMENTS = [("precopy", "#bee3f8", "pre-copy (still running)"), ("stop", "#e53e3e", "stop"),
            ("transfer", "#dd6b20", "transfer / switch"), ("start", "#38a169", "start"),
            ("cleanup", "#cbd5e0", "source clean-up (running)")]


def median_job(jobs):
    """The job whose total is the median of the measured runs."""
    jobs = sorted(jobs, key=lambda j: j["total_ms"])
    return jobs[(len(jobs) - 1) // 2] if jobs else None


def plot_evacuate(result, out):
    """Timelines of the largest N: one bar per instance, its segments in time since the
    request (stop, transfer, start, ...), for the median run of each side and pool; one row
    per phase. A last row shows the parallelism sweep, if the run had one."""
    jobs = [j for j in result["jobs"] if j["run"] is not None and not j.get("vms")]
    n = max(j["n"] for j in jobs)
    sides = []
    for j in jobs:
        key = (j["side"], j["pool"])
        if j["parallel"] is None and key not in sides:
            sides.append(key)
    sides.sort(key=lambda k: (k[0] != "drover", k[1]))
    sweep = [j for j in jobs if j["parallel"] is not None]
    rows = 2 + (1 if sweep else 0)
    fig = plt.figure(figsize=(5.2 * len(sides), 4.6 * rows), dpi=110)
    grid = fig.add_gridspec(rows, len(sides))
    speedups = {(s["drover_pool"], s["n"], s["phase"]): s for s in result.get("speedups", [])}
    for r, phase in enumerate(["evacuate", "restore"]):
        for c, (side, pool) in enumerate(sides):
            ax = fig.add_subplot(grid[r, c])
            job = median_job([j for j in jobs if j["side"] == side and j["pool"] == pool
                              and j["n"] == n and j["phase"] == phase and j["parallel"] is None])
            if job is None:
                ax.set_visible(False)
                continue
            unit = 1000.0 if job["total_ms"] > 3000 else 1.0
            for y, inst in enumerate(job["instances"]):
                for key, color, _ in SEGMENTS:
                    span = inst.get(key)
                    if span:
                        ax.barh(y, (span[1] - span[0]) / unit, left=span[0] / unit, height=0.75,
                                color=color, edgecolor="none")
                if inst["running"] and inst.get("downtime_ms") is not None:
                    ax.text(inst["end_ms"] / unit if inst.get("end_ms") else 0, y,
                            f" {inst['downtime_ms']:.0f}", va="center", fontsize=5, color="#444444")
            ax.axvline(job["total_ms"] / unit, color="#333333", linewidth=0.8, linestyle="--")
            ax.set_yticks(range(len(job["instances"])))
            ax.set_yticklabels([("● " if i["running"] else "○ ") + i["name"] for i in job["instances"]],
                               fontsize=5)
            ax.invert_yaxis()
            ax.set_xlim(0, job["total_ms"] / unit * 1.08)
            ax.set_xlabel("time since the request, " + ("s" if unit > 1 else "ms"), fontsize=8)
            who = "LXD 5.0.2" if side == "lxd" else "drover"
            title = f"{who}, {pool} pool: {phase} N={n}\ntotal {job['total_ms'] / 1000:.2f} s (median run)"
            sp = speedups.get((pool, n, phase)) if side == "drover" else None
            if sp:
                title += f", {sp['speedup']:.1f}× faster than LXD"
            ax.set_title(title, fontsize=9)
            ax.tick_params(axis="x", labelsize=7)
            ax.spines[["top", "right"]].set_visible(False)
    if sweep:
        ax = fig.add_subplot(grid[2, :])
        configs = []
        for j in sweep:
            if j["parallel"] not in configs:
                configs.append(j["parallel"])
        pools = sorted({j["pool"] for j in sweep})
        series = [(p, ph) for p in pools for ph in ("evacuate", "restore")]
        width = 0.8 / len(series)
        palette = ["#2b6cb0", "#90cdf4", "#2f855a", "#9ae6b4"]
        for k, (p, ph) in enumerate(series):
            xs, med = [], []
            for i, cfg in enumerate(configs):
                v = sorted(j["total_ms"] for j in sweep
                           if j["pool"] == p and j["phase"] == ph and j["parallel"] == cfg)
                if v:
                    xs.append(i + (k - (len(series) - 1) / 2) * width)
                    med.append(v[(len(v) - 1) // 2])
            ax.bar(xs, med, width * 0.95, color=palette[k % len(palette)], label=f"{p} {ph}")
            for x, m in zip(xs, med):
                ax.text(x, m, f"{m:.0f}", ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels([f"parallel {c.split('/')[0]}, per target {c.split('/')[1]}" for c in configs],
                           fontsize=8)
        ax.set_ylabel("ms (median run)", fontsize=8)
        nsweep = max(j["n"] for j in sweep)
        ax.set_title(f"drover: parallelism sweep, N={nsweep} (request's parallel / parallel_per_target)",
                     fontsize=9)
        ax.legend(fontsize=7, frameon=False, ncol=len(series))
        ax.spines[["top", "right"]].set_visible(False)
    handles = [matplotlib.patches.Patch(color=c, label=l) for _, c, l in SEGMENTS]
    fig.legend(handles=handles, loc="upper center", ncol=len(SEGMENTS), fontsize=8, frameon=False)
    meta = result["metadata"]
    fig.text(0.99, 0.003, f"{meta['date']}  {meta['git_commit'][:10]}  nproc={meta['nproc']}  "
             f"load {meta['loadavg_start'].split()[0]}→{meta['loadavg_end'].split()[0]}  "
             "● running  ○ stopped  (numbers: downtime ms)",
             ha="right", va="bottom", fontsize=7, color="#666666")
    fig.tight_layout(rect=(0, 0.01, 1, 0.97))
    fig.savefig(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
