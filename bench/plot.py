#!/usr/bin/env python3
"""Bar chart of a drover-bench result file.

    python3 bench/plot.py bench/results/start-stop.json bench/results/start-stop.png

One group of bars per cell, one bar per series (drover, raw runtime, LXD): the median,
with a whisker from min to max. The ratio drover/reference is written above each group.
Needs matplotlib (`pip install matplotlib`).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"drover": "#2b6cb0", "raw": "#a0aec0", "lxd": "#dd6b20"}
LABELS = {"drover": "drover (API)", "raw": "raw runtime (floor)", "lxd": "LXD 5.0.2"}


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        result = json.load(f)
    cells = result["cells"]
    names = [s for s in ("drover", "raw", "lxd") if any(s in c["series"] for c in cells)]
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
                    color="white" if name == "drover" else "black")
    for i, c in enumerate(cells):
        r = c["ratio"]
        ax.text(i, top * 1.04, f"{r['of']} = {r['of_medians']:.2f}", ha="center",
                va="bottom", fontsize=9, fontweight="bold")
    ax.set_ylim(0, top * 1.15)
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


if __name__ == "__main__":
    sys.exit(main(sys.argv))
