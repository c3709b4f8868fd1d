#!/usr/bin/python3
"""Plots recall@10 against batched QPS from bench_recall's CSV files.

One panel per (N, D); per coarse type, the protected index's Pareto front over (coarse
parameter, k_factor) as a solid line and the unprotected FAISS equivalent as a dashed line of
the same colour; horizontal lines mark exhaustive protected search and IndexFlatIP.

Usage: /usr/bin/python3 bench/plot_recall.py [--qps single|batch] CSV... -o recall.png
(Debian's interpreter, which has python3-matplotlib.)
"""
import argparse
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pareto(points):
    """Points (recall, qps) not dominated by another: higher recall at no lower QPS."""
    front, best = [], -1.0
    for r, q in sorted(points, key=lambda p: (-p[1], -p[0])):
        if r > best:
            front.append((r, q))
            best = r
    return sorted(front)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+")
    ap.add_argument("-o", "--output", default="recall.png")
    ap.add_argument("--qps", choices=["single", "batch"], default="batch")
    args = ap.parse_args()

    panels = defaultdict(list)
    for path in args.csv:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                # Runs with index options (e.g. embedding=identity) are their own series.
                # (their unprotected rows repeat the run without options and are not drawn).
                if row.get("index_options"):
                    if row["system"] == "unprotected":
                        continue
                    row["coarse"] = f'{row["coarse"]} ({row["index_options"]})'
                panels[(int(row["n"]), int(row["dim"]))].append(row)
    if not panels:
        sys.exit("no rows in " + ", ".join(args.csv))

    keys = sorted(panels)
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 5), squeeze=False)
    qcol = "qps_" + args.qps
    for ax, key in zip(axes[0], keys):
        rows = panels[key]
        coarses = sorted({r["coarse"] for r in rows})
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, coarse in enumerate(coarses):
            c = colours[i % len(colours)]
            for system, style in (("protected", "-o"), ("unprotected", "--s")):
                pts = [(float(r["recall10"]), float(r[qcol])) for r in rows
                       if r["coarse"] == coarse and r["system"] == system]
                if not pts:
                    continue
                front = pareto(pts)
                ax.plot([p[0] for p in front], [p[1] for p in front], style, color=c, markersize=4,
                        label=f"{coarse} {system}")
        exh = float(rows[0]["exhaustive_protected_qps_" + args.qps])
        flat = float(rows[0]["flat_ip_qps_" + args.qps])
        ax.axhline(exh, color="k", linewidth=0.8, label="exhaustive protected")
        ax.axhline(flat, color="grey", linewidth=0.8, linestyle=":", label="IndexFlatIP (raw)")
        ax.axhline(20 * exh, color="k", linewidth=0.6, linestyle="-.", label="20x exhaustive protected")
        ax.axvline(0.99, color="r", linewidth=0.6, linestyle=":")
        ax.set_yscale("log")
        ax.set_xlabel("recall@10 (protected: vs exhaustive protected; unprotected: vs exact IndexFlatIP)")
        ax.set_ylabel(f"QPS ({args.qps}, {rows[0]['threads']} threads)")
        ax.set_title(f"N = {key[0]:,}, D = {key[1]}")
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print("wrote", args.output)


if __name__ == "__main__":
    main()
