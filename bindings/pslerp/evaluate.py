"""pslerp.evaluate: the evaluation suite (report/report.h; `pslerp eval` from the command line)."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from . import _pslerp

_SEED_WARNING = ("pslerp: a seed makes keys, masks and fills reproducible: for tests and benchmarks only, "
                 "never for real enrolments")

SweepSpec = Union[None, bool, str, Mapping[str, Sequence[Any]]]


def _sweep_text(sweep: SweepSpec) -> Optional[str]:
    if sweep is None or sweep is True:
        return None  # the default sweep
    if sweep is False or (isinstance(sweep, str) and sweep.strip().lower() == "none"):
        return ""
    if isinstance(sweep, str):
        return sweep
    if isinstance(sweep, Mapping):
        parts = []
        for name, values in sweep.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                values = [values]
            parts.append(f"{name}=" + ",".join(str(v) for v in values))
        return ";".join(parts)
    raise ValueError(f"sweep: expected None, False, 'none', a string 'option=v1,v2;...' or a dict "
                     f"{{option: [values]}}, got {type(sweep).__name__}")


def _labels(labels, n: int) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim != 1:
        raise ValueError(f"labels: expected one label per row (1-D), got shape {a.shape}")
    if a.dtype.kind in "iu":
        if a.size and a.min() < 0:
            raise ValueError("labels: negative labels are not identities")
        return np.ascontiguousarray(a, dtype=np.int64)
    if a.dtype.kind not in "UOS":
        raise ValueError(f"labels: expected integers or strings, got {a.dtype}")
    # Dense ids in order of first appearance (as `pslerp eval` numbers a labels file).
    _, first, inverse = np.unique(a.astype(str), return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return np.ascontiguousarray(rank[inverse.reshape(-1)], dtype=np.int64)


def evaluate(x: np.ndarray, labels, out: Optional[Union[str, os.PathLike]] = None, params=None, *,
             preset: Optional[str] = None, sweep: SweepSpec = None, seed: Optional[int] = None,
             train: Optional[np.ndarray] = None, max_nonmated_pairs: int = 1_000_000, bins: int = 0,
             plots: bool = True) -> Dict[str, Any]:
    """Measures the protected system against the unprotected one on identity-labelled features.

    Args:
        x: (n, D) float32 raw features (from ``pslerp extract`` or ``pslerp.synth``).
        labels: n identity labels, integers or strings (identical values are one identity).
        out: a folder to write report.md, report.json, the CSVs and the PNG plots into; None
            writes nothing.
        params: the base scheme: a ``pslerp.Params`` (its G * d must be D), a string of options
            ``"t=0.9,drop_count=2"`` (any factory option, and ``groups=G``) applied to the defaults
            with groups of 16, or None for those defaults.
        preset: "slerpface" or "default", applied before the options of a string ``params``.
        sweep: None for the default sweep (t, drop_count, drop, groups, the slerpface preset),
            False or "none" for no sweep, a string ``"t=0.5,0.9;drop_count=0,2"`` or a dict
            ``{"t": [0.5, 0.9], "drop_count": [0, 2]}``. Each point changes one option.
        seed: makes keys and masks reproducible (tests and benchmarks only; warns).
        train: (m, D) float32 features whose mean centres both systems; None: x's own mean.
        max_nonmated_pairs: non-mated pairs sampled for verification and linkage when there
            are more.
        bins: histogram bins of the unlinkability metric; 0: 2 sqrt(n) within [10, 100].
        plots: draw the PNGs (matplotlib) when ``out`` is given; if drawing fails, report.md
            says why.

    Returns:
        Every figure as a dict (the content of report.json): ``base`` (verification,
        identification, unlinkability, irreversibility, renewability of the base scheme) and
        ``sweep`` (the same per sweep point).

    Bad input (a label count that differs from the rows, one identity only, no identity with
    two samples, NaN or infinite values, a dimension the scheme does not fit) raises ValueError.
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"x: expected a numpy array of float32, got {type(x).__name__}")
    n = x.shape[0] if x.ndim >= 1 else 0
    lab = _labels(labels, n)
    options = ""
    if params is None or isinstance(params, str):
        d = x.shape[1] if x.ndim == 2 else 0
        base = _pslerp.Params(d // 16, 16) if d % 16 == 0 and d > 0 else _pslerp.Params(1, max(d, 1))
        options = params or ""
    elif isinstance(params, _pslerp.Params):
        base = params
    else:
        raise ValueError(f"params: expected None, a string of options or a pslerp.Params, got {type(params).__name__}")
    if seed is not None:
        warnings.warn(_SEED_WARNING, RuntimeWarning, stacklevel=2)
    command = (f"pslerp.evaluate(x {tuple(x.shape)}, labels, params={params!r}, preset={preset!r}, "
               f"sweep={sweep!r}, seed={seed!r}, train={None if train is None else tuple(np.shape(train))}, "
               f"max_nonmated_pairs={max_nonmated_pairs}, bins={bins})")
    report = _pslerp._evaluate(x, lab, base, preset or "", options, _sweep_text(sweep), seed, train,
                               int(max_nonmated_pairs), int(bins), command)
    if out is not None:
        folder = os.fspath(out)
        report.write_data(folder)
        note = "plots=False"
        if plots:
            try:
                from . import plots as _plots

                _plots.draw(folder)
                note = ""
            except Exception as e:  # noqa: BLE001 - the report says why the plots are missing
                note = f"{type(e).__name__}: {e}"
                warnings.warn(f"pslerp.evaluate: plots not drawn: {note}", RuntimeWarning, stacklevel=2)
        report.write_markdown(folder, note)
    return json.loads(report.to_json())
