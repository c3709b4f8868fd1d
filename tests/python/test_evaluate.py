"""Tests of pslerp.evaluate (the evaluation suite, report/report.h) on small synthetic sets.

Run from a build folder:  cd <build> && PYTHONPATH=python /usr/bin/python3 -m pytest -q ../tests/python/test_evaluate.py
The PNG checks skip when matplotlib is not importable.
"""

import json

import numpy as np
import pytest

import pslerp

pytestmark = pytest.mark.filterwarnings("ignore:pslerp.*a seed makes keys:RuntimeWarning")

PNGS = ("det.png", "roc.png", "scores.png", "unlinkability.png", "rank1_gallery.png", "sweep.png")


def _copies(identities=30, per=3, d=128, seed=2):
    """Every sample an exact copy of its identity's random direction."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, d)).astype(np.float32)
    return np.ascontiguousarray(np.repeat(centres, per, axis=0)), np.repeat(np.arange(identities), per)


def test_report_files_and_figures(tmp_path):
    x, labels = pslerp.synth(identities=24, samples_per_identity=3, seed=5)
    out = tmp_path / "report"
    r = pslerp.evaluate(x, labels, out, params="t=0.8", sweep={"t": [0.9], "drop_count": [2]}, seed=1)
    assert (out / "report.md").is_file() and (out / "report.json").is_file()
    assert json.loads((out / "report.json").read_text()) == r
    base = r["base"]
    assert base["scheme"].startswith("8x16 t=0.8")
    v = base["verification"]
    assert v["protected"]["mated_pairs"] == 24 * 3
    assert v["protected"]["nonmated_pairs"] == 72 * 71 // 2 - 72
    assert [t["far"] for t in v["protected"]["tar"]] == [1e-2, 1e-3, 1e-4]
    assert all(t["nonmated_pairs"] == v["protected"]["nonmated_pairs"] for t in v["protected"]["tar"])
    assert 0 <= v["protected"]["eer"] <= 0.5
    ident = base["identification"]["protected"]
    assert ident["gallery"] + round(0.2 * 24) == 24
    assert [p["fpir_target"] for p in ident["open_set"]] == [1e-2, 1e-3]
    assert [p["label"] for p in r["sweep"]] == ["t=0.9", "drop_count=2"]
    assert len(base["unlinkability"]) == 3 and len(base["irreversibility"]["attacks"]) == 3
    text = (out / "report.md").read_text()
    for section in ("## 1. Verification", "## 2. 1:N", "## 3. Unlinkability", "## 4. Irreversibility",
                    "## 5. Renewability", "## 6. Sweep", "pslerp.evaluate(x (72, 128)", "seed 1"):
        assert section in text, section
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pytest.skip("matplotlib is not installed: no PNGs")
    for png in PNGS:
        assert (out / png).stat().st_size > 1000, png
    assert "Plots were not drawn" not in text


def test_known_answers():
    # Copies: the unprotected system is perfect; the protected one finds every identity.
    x, labels = _copies()
    r = pslerp.evaluate(x, labels, sweep=False, seed=3)
    assert r["base"]["verification"]["unprotected"]["eer"] == 0
    assert r["base"]["identification"]["unprotected"]["rank1"] == 1
    assert r["base"]["identification"]["protected"]["rank1"] == 1
    assert all(s["rank1"] == 1 for s in r["base"]["identification"]["protected"]["rank1_by_gallery_size"])
    assert r["sweep"] == []

    # t = 0, no drop: undoing the slerp recovers the feature exactly; templates fully linkable.
    x, labels = pslerp.synth(identities=20, samples_per_identity=3, seed=8)
    p = pslerp.Params(8, 16, t=0.0, drop="none")
    r = pslerp.evaluate(x, labels, params=p, sweep=False, seed=3)
    attacks = r["base"]["irreversibility"]["attacks"]
    assert attacks[2]["cosine_to_raw"] == pytest.approx(1.0, abs=1e-5)
    assert r["base"]["unlinkability"][0]["d_sys_same_sample"] == 1.0


def test_same_seed_same_numbers_and_labels_as_strings():
    x, labels = pslerp.synth(identities=15, samples_per_identity=3, seed=4)
    names = np.array([f"person {i}" for i in labels])
    a = pslerp.evaluate(x, labels, sweep="none", seed=9)
    b = pslerp.evaluate(x, names, sweep="none", seed=9)
    a.pop("command"), b.pop("command")
    assert a == b


def test_bad_input():
    x, labels = pslerp.synth(identities=6, samples_per_identity=2, seed=1)
    with pytest.raises(ValueError, match="11 labels for 12 features"):
        pslerp.evaluate(x, labels[:-1], sweep=False)
    with pytest.raises(ValueError, match="at least two identities"):
        pslerp.evaluate(x, np.zeros(12, dtype=np.int64), sweep=False)
    with pytest.raises(ValueError, match="no identity has two samples"):
        pslerp.evaluate(x, np.arange(12), sweep=False)
    bad = x.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="feature 3 has a NaN"):
        pslerp.evaluate(bad, labels, sweep=False)
    with pytest.raises(ValueError, match="x: expected float32"):
        pslerp.evaluate(x.astype(np.float64), labels, sweep=False)
    with pytest.raises(ValueError, match="unknown option 'tee'"):
        pslerp.evaluate(x, labels, sweep={"tee": [1]})
    with pytest.raises(ValueError, match="groups"):
        pslerp.evaluate(x, labels, params="groups=5", sweep=False)
    with pytest.raises(ValueError, match="labels"):
        pslerp.evaluate(x, labels.reshape(6, 2), sweep=False)


def test_plots_module_reads_what_the_suite_wrote(tmp_path):
    pytest.importorskip("matplotlib")
    from pslerp import plots

    x, labels = pslerp.synth(identities=12, samples_per_identity=3, seed=6)
    pslerp.evaluate(x, labels, tmp_path, sweep=False, seed=2, plots=False)
    assert "Plots were not drawn: plots=False" in (tmp_path / "report.md").read_text()
    written = plots.draw(tmp_path)
    assert sorted(p.split("/")[-1] for p in written) == sorted(PNGS[:-1])  # no sweep: no sweep.png
    assert plots.main([]) == 2
    assert plots.main([str(tmp_path / "missing")]) == 1
