#!/usr/bin/python3
"""Plots mated rank-1 against batched QPS from bench_ivf's CSV files.

One panel per CSV (one N, D and data kind); per nlist, the protected IVF swept over nprobe as a
solid line and the unprotected IndexIVFFlat with the same centroids as a dashed line of the same
colour; points mark exhaustive protected search and IndexFlatIP.

Usage: /usr/bin/python3 bench/plot_ivf.py CSV... -o ivf.png
(Debian's interpreter, which has python3-matplotlib.)
"""
import argparse
import csv
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    fig, axes = plt.subplots(1, len(args.csv), figsize=(5.2 * len(args.csv), 4.2), squeeze=False)
    for ax, path in zip(axes[0], args.csv):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        curves = defaultdict(list)
        for r in rows:
            rank1, qps = float(r["rank1"]), float(r["qps_batch"])
            if r["system"] in ("IndexFlatIP (raw)", "exhaustive protected"):
                marker = "s" if r["system"].startswith("exhaustive") else "^"
                ax.plot([qps], [rank1], marker, color="black", label=r["system"])
            else:
                curves[(r["system"], r["nlist"])].append((int(r["nprobe"]), qps, rank1))
        colours = {}
        for (system, nlist), pts in sorted(curves.items()):
            pts.sort()
            colour = colours.setdefault(nlist, "C%d" % len(colours))
            style = "-" if system.startswith("IVF protected") else "--"
            ax.plot([p[1] for p in pts], [p[2] for p in pts], style, marker="o", ms=3, color=colour,
                    label="%s IVF%s" % ("protected" if style == "-" else "IndexIVFFlat", nlist))
            if style == "-":
                for nprobe, qps, rank1 in pts:
                    ax.annotate(str(nprobe), (qps, rank1), fontsize=6, xytext=(2, -8), textcoords="offset points")
        r0 = rows[0]
        decay = r0.get("decay", "auto")
        ax.set_title("N=%s D=%s (%s)" % (r0["n"], r0["dim"], "structured" if decay == "auto" and r0["dim"] == "512"
                                         else "isotropic" if decay in ("auto", "1") else "decay " + decay),
                     fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("queries per second, batched (log; labels: nprobe)")
        ax.set_ylabel("mated rank-1")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print("wrote", os.path.abspath(args.out))


if __name__ == "__main__":
    main()
