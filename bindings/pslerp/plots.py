"""The evaluation report's plots, drawn from the CSV files the suite wrote (report/report.h).

``python3 -m pslerp.plots DIR`` (what ``pslerp eval`` runs) or ``draw(DIR)`` (what
``pslerp.evaluate`` calls) reads DIR/roc.csv, scores.csv, unlinkability.csv, rank1_gallery.csv and
sweep.csv and writes det.png, roc.png, scores.png, unlinkability.png, rank1_gallery.png and, when
the report has a sweep, sweep.png. Needs numpy and matplotlib only (not the compiled module).
"""

from __future__ import annotations

import csv
import math
import os
import sys
from typing import Dict, List

SYSTEM_STYLE = {"protected": "tab:blue", "unprotected": "tab:gray"}


def _rows(path: str) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(v: str) -> float:
    return float(v) if v not in ("", "null", "None") else math.nan


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def draw(directory: str) -> List[str]:
    """Draws every plot of the report in ``directory``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = os.fspath(directory)
    written = []

    def out(name):
        written.append(os.path.join(d, name))
        return written[-1]

    # DET and ROC.
    roc = _rows(os.path.join(d, "roc.csv"))
    fig_det, ax_det = plt.subplots(figsize=(5.5, 4.5))
    fig_roc, ax_roc = plt.subplots(figsize=(5.5, 4.5))
    for system, colour in SYSTEM_STYLE.items():
        pts = [(_float(r["far"]), _float(r["tar"])) for r in roc if r["system"] == system]
        pts = [(f, t) for f, t in pts if f > 0]
        if not pts:
            continue
        far, tar = zip(*pts)
        ax_det.plot(far, [max(1 - t, 1e-5) for t in tar], color=colour, label=system)
        ax_roc.plot(far, tar, color=colour, label=system)
    ax_det.set(xscale="log", yscale="log", xlabel="FAR (false match rate)", ylabel="FRR (false non-match rate)",
               title="DET")
    ax_roc.set(xscale="log", xlabel="FAR", ylabel="TAR", title="ROC", ylim=(0, 1.01))
    for ax in (ax_det, ax_roc):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    _save(fig_det, out("det.png"))
    _save(fig_roc, out("roc.png"))
    plt.close(fig_det)
    plt.close(fig_roc)

    # Score histograms.
    hist = _rows(os.path.join(d, "scores.csv"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, system in zip(axes, ("protected", "unprotected")):
        for kind, colour in (("mated", "tab:green"), ("nonmated", "tab:red")):
            rs = [r for r in hist if r["system"] == system and r["kind"] == kind]
            lo = [_float(r["lo"]) for r in rs]
            hi = [_float(r["hi"]) for r in rs]
            dens = [_float(r["density"]) for r in rs]
            ax.bar(lo, dens, width=[h - l for l, h in zip(lo, hi)], align="edge", alpha=0.5, color=colour,
                   label="non-mated" if kind == "nonmated" else "mated")
        ax.set(title=f"{system} scores", xlabel="score", ylabel="density")
        ax.legend()
    _save(fig, out("scores.png"))
    plt.close(fig)

    # Unlinkability: D(s) with the two densities, per attacker, same sample and other samples.
    unl = _rows(os.path.join(d, "unlinkability.csv"))
    attackers = list(dict.fromkeys(r["attacker"] for r in unl))
    scenarios = ("same sample", "other samples")
    fig, axes = plt.subplots(len(attackers), 2, figsize=(10, 3.2 * max(1, len(attackers))), squeeze=False)
    for i, attacker in enumerate(attackers):
        for j, scenario in enumerate(scenarios):
            ax = axes[i][j]
            rs = [r for r in unl if r["attacker"] == attacker and r["scenario"] == scenario]
            if not rs:
                continue
            mid = [(_float(r["lo"]) + _float(r["hi"])) / 2 for r in rs]
            ax.plot(mid, [_float(r["p_mated"]) for r in rs], color="tab:green", label="mated density")
            ax.plot(mid, [_float(r["p_nonmated"]) for r in rs], color="tab:red", label="non-mated density")
            ax.set(xlabel="linkage score", ylabel="density")
            ax2 = ax.twinx()
            ax2.plot(mid, [_float(r["d_local"]) for r in rs], color="black", linestyle="--", label="D(s)")
            ax2.set(ylim=(0, 1.05), ylabel="D(s)")
            ax.set_title(f"{attacker}, {scenario}: D_sys {_float(rs[0]['d_sys']):.3f}", fontsize=9)
            if i == 0 and j == 0:
                ax.legend(loc="upper left", fontsize=8)
                ax2.legend(loc="upper right", fontsize=8)
    _save(fig, out("unlinkability.png"))
    plt.close(fig)

    # Rank-1 against gallery size.
    sizes = _rows(os.path.join(d, "rank1_gallery.csv"))
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for system, colour in SYSTEM_STYLE.items():
        rs = [r for r in sizes if r["system"] == system]
        if rs:
            ax.plot([int(r["gallery"]) for r in rs], [_float(r["rank1"]) for r in rs], "o-", color=colour,
                    label=system)
    ax.set(xscale="log", xlabel="gallery size (identities)", ylabel="rank-1", title="Rank-1 against gallery size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, out("rank1_gallery.png"))
    plt.close(fig)

    # Sweep: EER, rank-1 and D_sys per point.
    sweep = _rows(os.path.join(d, "sweep.csv"))
    if len(sweep) > 1:
        labels = [r["label"] for r in sweep]
        x = range(len(labels))
        fig, axes = plt.subplots(3, 1, figsize=(max(6, 0.6 * len(labels)), 8), sharex=True)
        axes[0].plot(x, [_float(r["eer_protected"]) for r in sweep], "o-", label="EER protected")
        axes[0].plot(x, [_float(r["eer_unprotected"]) for r in sweep], "s--", color="gray", label="EER unprotected")
        axes[1].plot(x, [_float(r["rank1_protected"]) for r in sweep], "o-", label="rank-1 protected")
        axes[1].plot(x, [_float(r["rank1_unprotected"]) for r in sweep], "s--", color="gray", label="rank-1 unprotected")
        axes[2].plot(x, [_float(r["dsys_template_same"]) for r in sweep], "o-", label="D_sys template cosine (same sample)")
        axes[2].plot(x, [_float(r["dsys_template_other"]) for r in sweep], "^-", label="D_sys template cosine (other samples)")
        axes[2].axhline(0.05, color="red", linewidth=0.8, linestyle=":")
        for ax in axes:
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        axes[2].set_xticks(list(x))
        axes[2].set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
        _save(fig, out("sweep.png"))
        plt.close(fig)
    return written


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m pslerp.plots DIR", file=sys.stderr)
        return 2
    try:
        draw(argv[0])
    except Exception as e:  # the report says why the plots are missing
        print(f"pslerp.plots: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
