"""Half-precision storage from Python (issue 12): the `storage` option of Params and of factory
strings, bytes per entry, scores against the same seeded fp32 index, files, and merge.

Run from a build folder:  cd <build> && PYTHONPATH=python /usr/bin/python3 -m pytest -q ../tests/python/test_fp16.py
"""

import numpy as np
import pytest

import pslerp

G, DG = 8, 16
D = G * DG

pytestmark = pytest.mark.filterwarnings("ignore:pslerp.*a seed makes keys:RuntimeWarning")


def features(n, seed, dim=D):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def seeded(description, n=200, seed=5):
    index = pslerp.index_factory(D, description)
    index.set_seed(seed)
    if not index.is_trained:
        index.train(features(600, 1))
    index.add(features(n, 2))
    return index


def test_params_storage_option():
    p = pslerp.Params(G, DG)
    assert p.storage == "fp32"
    p.storage = "fp16"
    assert p.storage == "fp16"
    assert "storage=fp16" in p.describe()
    assert pslerp.Params(G, DG, storage="fp16").to_dict()["storage"] == "fp16"
    with pytest.raises(ValueError, match="storage"):
        p.storage = "fp8"
    with pytest.raises(RuntimeError, match="option storage: expected one of fp32|fp16"):
        pslerp.index_factory(D, "PSlerp8x16(storage=int8)")
    # fp32 is the default and not spelled out
    assert "storage" not in pslerp.Params(G, DG).describe()


@pytest.mark.parametrize("description", ["PSlerp8x16(storage=fp16)", "IVF16,PSlerp8x16(storage=fp16)"])
def test_bytes_per_entry_at_most_600(description):
    index = pslerp.index_factory(D, description)
    assert index.params.storage == "fp16"
    assert "storage=fp16" in index.describe()
    assert index.bytes_per_entry <= 600
    plain = pslerp.index_factory(D, description.replace("(storage=fp16)", ""))
    assert index.bytes_per_entry < 0.55 * plain.bytes_per_entry


@pytest.mark.parametrize("norm,bound", [("none", 1e-3), ("cohort", 5e-2)])
def test_scores_close_to_fp32_and_same_top1(norm, bound):
    """Same seed, same data: fp16 scores within 1e-3 of fp32 in cosine units (norm=none); with
    norm=cohort scores are z-units and the cohort weights multiply the rounding error."""
    a = seeded(f"PSlerp8x16(norm={norm})", n=400)
    b = seeded(f"PSlerp8x16(norm={norm},storage=fp16)", n=400)
    q = features(30, 9)
    ids = np.arange(400, dtype=np.int64)
    worst = 0.0
    for i in range(len(q)):
        qq = np.repeat(q[i:i + 1], 400, axis=0)
        worst = max(worst, float(np.max(np.abs(a.verify_batch(qq, ids) - b.verify_batch(qq, ids)))))
    print(f"norm={norm}: max |fp16 - fp32| = {worst:.2e}")
    assert worst < bound
    # Near-copies of enrolled entries: the same top-1 in both.
    probes = features(400, 2)[:100] + 0.3 * features(100, 10)
    _, ia = a.search(probes, 1)
    _, ib = b.search(probes, 1)
    assert np.mean(ia[:, 0] == ib[:, 0]) >= 0.99
    assert np.mean(ia[:, 0] == np.arange(100)) > 0.9


@pytest.mark.parametrize("description", ["PSlerp8x16(storage=fp16)", "IVF16,PSlerp8x16(storage=fp16,nprobe=16)"])
@pytest.mark.parametrize("sealed", [False, True])
def test_file_round_trip_keeps_storage_and_answers(tmp_path, description, sealed):
    index = seeded(description)
    q = features(7, 3)
    want = index.search(q, 5)
    path = tmp_path / "g.pslerp"
    secret = pslerp.generate_secret() if sealed else None
    if sealed:
        pslerp.write_index(index, path, secret=secret)
    else:
        pslerp.write_index(index, path, unsealed=True)
    back = pslerp.read_index(path, secret=secret)
    assert back.params.storage == "fp16"
    assert back.describe() == index.describe()
    got = back.search(q, 5)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_merge_fp16_with_fp32_refused():
    a = seeded("IVF16,PSlerp8x16")
    b = seeded("IVF16,PSlerp8x16(storage=fp16)")
    with pytest.raises(Exception, match="merge"):
        b.merge_from(a)
    assert b.ntotal == 200
