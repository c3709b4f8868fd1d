"""Tests of the pslerp Python package.

Run from a build folder:  cd <build> && PYTHONPATH=python /usr/bin/python3 -m pytest -q ../tests/python
The FAISS interop tests skip when the faiss python module (python3-faiss) is not importable.
The exhaustive IndexProtectedSlerp is the oracle of IndexIVFProtectedSlerp: with every list
probed, the IVF must return exactly its answers.
"""

import functools
import math
import pickle
import re
import threading
import warnings

import numpy as np
import pytest

import pslerp

G, DG = 8, 16
D = G * DG
NLIST = 16
KINDS = ["PSlerp8x16", f"IVF{NLIST},PSlerp8x16"]

# These tests seed on purpose; test_seeds_warn checks the warning itself.
pytestmark = pytest.mark.filterwarnings("ignore:pslerp.*a seed makes keys:RuntimeWarning")


# ----------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def data():
    """300 enrolled identities (sample 0), their second samples as mated probes, and 50 unseen."""
    split = pslerp.synth(groups=G, group_dim=DG, seed=3, gallery_size=300, mated_probes=300,
                         nonmated_probes=50)
    return split


def random_features(n, seed, dim=D):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def train_features(groups=G, n=40 * NLIST, seed=3):
    """n features of identities 1000.. of the synthetic model of `data` (same seed), never
    enrolled: a centroid is an average of its training features, so an IVF learns them from
    other people."""
    x, _ = pslerp.synth(1000 + n, 1, groups=groups, group_dim=DG, seed=seed)
    return np.ascontiguousarray(x[1000:])


def seeded_index(description="PSlerp8x16", seed=11):
    """A seeded index. An IVF is trained on train_features(); the exhaustive index is left
    untrained (no centring), so that it stores exactly what protect() returns."""
    index = pslerp.index_factory(D, description)
    index.set_seed(seed)
    if not index.is_trained:
        index.train(train_features())
    return index


def probe_all(index):
    """The index, made to probe every list when it is an IVF (exact search)."""
    if isinstance(index, pslerp.IndexIVFProtectedSlerp):
        index.nprobe = index.nlist
    return index


def ivf_and_oracle(gallery, seed=7, description=KINDS[1]):
    """An IVF and an exhaustive index holding the same entries: both seeded alike, trained on
    the same features (the same centring) and given the same features in the same order, so
    that entry i has the same keys and mask in both."""
    ivf, flat = pslerp.index_factory(D, description), pslerp.index_factory(D, "PSlerp8x16")
    for index in (ivf, flat):
        index.set_seed(seed)
        index.train(train_features())
        index.add(gallery)
    return ivf, flat


def reference_match(q, templates, keys, masks, t, weights):
    """docs/DESIGN.md section 1 step 7, step by step in float64: normalise the probe's groups, slerp
    each toward the entry's key with acos/sin, drop with the entry's mask, normalise again,
    take the cosine with the (unit-norm) template group and sum with the weights."""
    n = q.shape[0]
    qg = q.astype(np.float64).reshape(n, G, DG)
    qg = qg / np.linalg.norm(qg, axis=2, keepdims=True)
    k = keys.astype(np.float64)
    c = np.clip(np.sum(qg * k, axis=2), -1.0, 1.0)
    theta = np.arccos(c)
    s = np.sin(theta)
    tiny = theta < 1e-7
    a = np.where(tiny, 1.0 - t, np.sin((1.0 - t) * theta) / np.where(tiny, 1.0, s))
    b = np.where(tiny, t, np.sin(t * theta) / np.where(tiny, 1.0, s))
    r = a[..., None] * qg + b[..., None] * k
    r = np.where(masks, r, 0.0)
    r = r / np.linalg.norm(r, axis=2, keepdims=True)
    e = templates.astype(np.float64).reshape(n, G, DG)
    cos = np.sum(r * e, axis=2)
    return np.sum(weights.astype(np.float64) * cos, axis=1)


def reference_protect(x, keys, masks, t):
    """Steps 1-5 in float64 for given keys and masks (fill zero)."""
    n = x.shape[0]
    xg = x.astype(np.float64).reshape(n, G, DG)
    xg = xg / np.linalg.norm(xg, axis=2, keepdims=True)
    k = keys.astype(np.float64)
    theta = np.arccos(np.clip(np.sum(xg * k, axis=2), -1, 1))
    a = np.sin((1 - t) * theta) / np.sin(theta)
    b = np.sin(t * theta) / np.sin(theta)
    r = np.where(masks, a[..., None] * xg + b[..., None] * k, 0.0)
    return (r / np.linalg.norm(r, axis=2, keepdims=True)).reshape(n, -1)


def random_masks(n, seed, keep_at_least=1):
    rng = np.random.default_rng(seed)
    m = rng.random((n, G, DG)) > 0.3
    m[:, :, 0] |= ~m.any(axis=2)  # every group keeps a coordinate
    return m


# ----------------------------------------------------------------------------- Params


def test_params_defaults_and_options():
    p = pslerp.Params()
    assert (p.groups, p.group_dim, p.dim) == (8, 16, 128)
    p = pslerp.Params(4, 32, t=0.8, key_mode="shared", drop="importance", fill="random", mapping="budget")
    assert (p.groups, p.group_dim, p.key_mode, p.drop, p.fill, p.mapping) == (4, 32, "shared", "importance",
                                                                              "random", "budget")
    assert abs(p.t - 0.8) < 1e-7 and p.key_dim == 32
    p.weighting = "importance"
    assert p.weighting == "importance"
    assert pslerp.Params(**p.to_dict()) == p
    assert pickle.loads(pickle.dumps(p)) == p
    assert "shared" in repr(p)


def test_params_slerpface_preset():
    p = pslerp.Params.slerpface()
    assert (p.groups, p.group_dim) == (49, 16)
    assert abs(p.t - 0.9) < 1e-7 and p.t_minus_importance
    assert (p.drop, p.mapping, p.importance, p.weighting) == ("importance", "intervals", "attention", "importance")
    assert p.interval_counts == [12, 4] and p.drop_with_replacement
    assert pslerp.Params.slerpface(8, 16, t=0.8).groups == 8


@pytest.mark.parametrize("kw,msg", [
    (dict(key_mode="nope"), "option key: expected one of group|shared, got 'nope'"),
    (dict(drop="sometimes"), "option drop: expected one of none|random|importance, got 'sometimes'"),
    (dict(t=1.5), "t must be in [0, 1], got 1.5"),
    (dict(fill="x"), "option fill: expected one of zero|random, got 'x'"),
    (dict(drop_count=16), "drop_count = 16: a group of 16 keeps at least one coordinate (0..15 distinct draws)"),
    (dict(weighting="max"), "option weighting: expected one of uniform|importance, got 'max'"),
])
def test_params_bad_values(kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        pslerp.Params(8, 16, **kw)


def test_params_unknown_option():
    with pytest.raises(TypeError, match="Params: unexpected keyword argument 'colour'"):
        pslerp.Params(colour="red")


# ----------------------------------------------------------------------------- keys, protect, match


def test_generate_keys():
    p = pslerp.Params(G, DG)
    k = pslerp.generate_keys(50, p, seed=5)
    assert k.shape == (50, G, DG) and k.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(k, axis=2), 1.0, atol=1e-6)
    np.testing.assert_array_equal(k, pslerp.generate_keys(50, p, seed=5))
    assert not np.array_equal(k, pslerp.generate_keys(50, p, seed=6))
    assert not np.array_equal(pslerp.generate_keys(3, p), pslerp.generate_keys(3, p))  # OS generator
    ks = pslerp.generate_keys(4, pslerp.Params(G, DG, key_mode="shared"), seed=1)
    assert ks.shape == (4, G, DG)
    assert all(np.array_equal(ks[:, 0], ks[:, g]) for g in range(G))
    assert pslerp.generate_keys(0, p).shape == (0, G, DG)
    with pytest.raises(ValueError, match=re.escape("n: must be >= 0, got -1")):
        pslerp.generate_keys(-1, p)


def test_protect_outputs():
    p = pslerp.Params(G, DG, t=0.6)
    x = random_features(40, 1)
    tmpl, keys, masks, w = pslerp.protect(x, p, seed=2)
    assert tmpl.shape == (40, D) and tmpl.dtype == np.float32
    assert keys.shape == (40, G, DG) and masks.shape == (40, G, DG) and masks.dtype == np.bool_
    assert w.shape == (40, G)
    np.testing.assert_allclose(w, 1.0 / G, atol=1e-7)
    tg = tmpl.reshape(40, G, DG)
    np.testing.assert_allclose(np.linalg.norm(tg, axis=2), 1.0, atol=1e-5)
    assert np.all(tg[~masks] == 0)
    assert np.all((~masks).sum(axis=2) == p.drop_count)  # drop_count distinct draws per group
    np.testing.assert_allclose(np.linalg.norm(keys, axis=2), 1.0, atol=1e-6)


def test_protect_deterministic_given_keys_and_masks():
    p = pslerp.Params(G, DG, t=0.7)
    x = random_features(30, 2)
    keys = pslerp.generate_keys(30, p, seed=9)
    masks = random_masks(30, 4)
    a = pslerp.protect(x, p, keys=keys, masks=masks, seed=1)
    b = pslerp.protect(x, p, keys=keys, masks=masks, seed=12345)
    c = pslerp.protect(x, p, keys=keys, masks=masks.astype(np.uint8))
    for u, v, z in zip(a, b, c):
        np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(u, z)
    np.testing.assert_array_equal(a[1], keys)
    np.testing.assert_array_equal(a[2], masks)
    np.testing.assert_allclose(a[0], reference_protect(x, keys, masks, 0.7), atol=1e-5)


def test_protect_shared_keys_must_repeat():
    p = pslerp.Params(G, DG, key_mode="shared")
    x = random_features(3, 2)
    keys = pslerp.generate_keys(3, pslerp.Params(G, DG), seed=1)  # a different key per group
    with pytest.raises(ValueError, match="keys.*shared"):
        pslerp.protect(x, p, keys=keys)
    shared = pslerp.generate_keys(3, p, seed=1)
    tmpl, k, _, _ = pslerp.protect(x, p, keys=shared)
    np.testing.assert_array_equal(k, shared)


@pytest.mark.parametrize("t,key_mode,weighting", [(0.7, "group", "uniform"), (0.3, "shared", "uniform"),
                                                  (0.9, "group", "importance"), (0.0, "group", "uniform"),
                                                  (1.0, "group", "uniform")])
def test_match_equals_numpy_reference(t, key_mode, weighting):
    p = pslerp.Params(G, DG, t=t, key_mode=key_mode, weighting=weighting)
    n = 64
    x = random_features(n, 10)
    q = x + 0.8 * random_features(n, 11)
    keys = pslerp.generate_keys(n, p, seed=3)
    masks = random_masks(n, 12)
    weights = None
    if weighting == "importance":
        rng = np.random.default_rng(5)
        weights = rng.random((n, G)).astype(np.float32)
        weights /= weights.sum(axis=1, keepdims=True)
    tmpl, k, m, _ = pslerp.protect(x, p, keys=keys, masks=masks)
    got = pslerp.match(q, tmpl, k, m, p, weights)
    w = weights if weights is not None else np.full((n, G), 1.0 / G, np.float32)
    want = reference_match(q, tmpl, k, m, t, w)
    assert got.shape == (n,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Matching the enrolled feature itself reproduces the template exactly: score 1.
    np.testing.assert_allclose(pslerp.match(x, tmpl, k, m, p, weights), 1.0, atol=1e-5)


@pytest.mark.parametrize("t,key_mode", [(0.7, "group"), (0.4, "shared")])
def test_match_all_equals_numpy_reference(t, key_mode):
    """Every probe against every entry, checked against the float64 reference (not against
    pslerp.match, which runs the same C++ scoring)."""
    p = pslerp.Params(G, DG, t=t, key_mode=key_mode)
    x, q = random_features(20, 1), random_features(7, 2)
    q[3] = x[5]  # one mated probe: score 1
    tmpl, k, m, w = pslerp.protect(x, p, seed=1)
    s = pslerp.match_all(q, tmpl, k, m, p, w)
    assert s.shape == (7, 20) and s.dtype == np.float32
    for i in range(7):
        want = reference_match(np.repeat(q[i:i + 1], 20, 0), tmpl, k, m, t, w)
        np.testing.assert_allclose(s[i], want, atol=1e-5)
    assert abs(s[3, 5] - 1.0) < 1e-5
    assert pslerp.match_all(q[:0], tmpl, k, m, p).shape == (0, 20)


def test_match_weights_required_with_importance_weighting():
    p = pslerp.Params(G, DG, weighting="importance")
    x = random_features(4, 1)
    tmpl, k, m, w = pslerp.protect(x, p, seed=1)
    with pytest.raises(ValueError, match="weights"):
        pslerp.match(x, tmpl, k, m, p)
    pslerp.match(x, tmpl, k, m, p, w)


def test_slerpface_preset_match_self():
    p = pslerp.Params.slerpface(G, DG)
    x = random_features(10, 3)
    tmpl, k, m, w = pslerp.protect(x, p, seed=1)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    # The probe is the enrolled feature: same importance, so the same t_g, key and mask give
    # back the template itself in every group, and the weighted cosines sum to 1.
    s = pslerp.match(x, tmpl, k, m, p, w)
    np.testing.assert_allclose(s, 1.0, atol=1e-6)
    np.testing.assert_allclose(pslerp.match_all(x, tmpl, k, m, p, w).diagonal(), 1.0, atol=1e-6)


# ----------------------------------------------------------------------------- the index


def test_index_basics(data):
    index = seeded_index()
    assert (index.d, index.ntotal, index.is_trained, len(index)) == (D, 0, True, 0)
    assert index.params == pslerp.Params(G, DG)
    assert index.seed == 11 and index.next_id == 0 and not index.is_centered
    index.add(data.gallery)
    assert index.ntotal == 300 and index.bytes_per_entry > 0 and index.next_id == 300
    Dist, I = index.search(data.probes, 5)
    assert Dist.shape == I.shape == (350, 5) and Dist.dtype == np.float32 and I.dtype == np.int64
    assert np.all(np.diff(Dist, axis=1) <= 0)
    rank1 = np.mean(I[:300, 0] == data.probe_labels[:300])
    assert rank1 > 0.9, rank1
    np.testing.assert_allclose(index.verify(data.probes[:300], data.probe_labels[:300]),
                               [index.verify(data.probes[i], int(data.probe_labels[i])) for i in range(300)])
    np.testing.assert_array_equal(index.verify_batch(data.probes[:300], data.probe_labels[:300]),
                                  index.verify(data.probes[:300], data.probe_labels[:300]))
    assert isinstance(index.verify(data.probes[0], 0), float)


def test_cohort_normalisation(data):
    """The default index normalises each entry's scores against a cohort model: train() fits it,
    files keep it, and scores of the model's kind of non-mated probes centre on 0."""
    index = seeded_index(f"IVF{NLIST},PSlerp8x16")
    assert index.params.norm == "cohort"
    info = index.cohort
    assert info["source"] == "train" and info["fitted_from"] == len(train_features()) and len(info["sha256"]) == 64
    index.add(data.gallery)
    index = pslerp.deserialize_index(pslerp.serialize_index(index, unsealed=True))
    assert index.cohort == info
    best_nonmated, _ = index.search(data.probes[300:], 1, nprobe=NLIST)  # 50 unseen people's best of 300
    mated = index.verify(data.probes[:50], data.probe_labels[:50])
    assert np.median(mated) > np.median(best_nonmated) + 1  # z-units: sd about 1 per entry
    flat = pslerp.index_factory(G * DG, "PSlerp8x16")
    assert flat.cohort["source"] == "built-in"
    with pytest.raises(ValueError, match="at least"):
        flat.set_cohort(random_features(10, 3))
    flat.set_cohort(train_features())
    assert flat.cohort["source"] == "user"
    with pytest.raises(RuntimeError, match="norm is 'none'"):
        pslerp.index_factory(G * DG, "PSlerp8x16(norm=none)").set_cohort(train_features())


def test_index_search_equals_match_all(data):
    """An exhaustive index seeded with s stores what protect(x, seed=s) returns (without score
    normalisation, which the scheme's functions do not apply: test_cohort_normalisation)."""
    p = pslerp.Params(G, DG, norm="none")
    index = seeded_index("PSlerp8x16(norm=none)", seed=21)
    index.add(data.gallery)
    tmpl, k, m, w = pslerp.protect(data.gallery, p, seed=21)
    scores = pslerp.match_all(data.probes, tmpl, k, m, p, w)
    Dist, I = index.search(data.probes, 10)
    want_I = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    want_D = np.take_along_axis(scores, want_I, axis=1)
    np.testing.assert_allclose(Dist, want_D, atol=1e-4)
    np.testing.assert_allclose(np.take_along_axis(scores, I, axis=1), Dist, atol=1e-4)
    assert np.mean(I == want_I) > 0.99  # only near-ties may swap
    ids = np.arange(300, dtype=np.int64)
    np.testing.assert_allclose(index.verify(data.probes[:300], ids), scores[np.arange(300), ids], atol=1e-4)


@pytest.mark.parametrize("description", KINDS)
def test_search_k_larger_than_ntotal_and_empty(description):
    index = probe_all(seeded_index(description))
    Dist, I = index.search(random_features(2, 1), 3)
    assert np.all(I == -1) and np.all(np.isneginf(Dist))
    index.add(random_features(2, 2))
    Dist, I = index.search(random_features(3, 3), 5)
    assert np.all(I[:, 2:] == -1) and np.all(np.isneginf(Dist[:, 2:]))
    assert sorted(I[0, :2]) == [0, 1]
    Dist, I = index.search(np.zeros((0, D), np.float32), 4)
    assert Dist.shape == I.shape == (0, 4)
    lims, Dr, Ir = index.range_search(np.zeros((0, D), np.float32), 0.5)
    assert lims.tolist() == [0] and Dr.shape == Ir.shape == (0,)
    index.add(np.zeros((0, D), np.float32))
    assert index.ntotal == 2
    assert index.verify(np.zeros((0, D), np.float32), np.zeros(0, np.int64)).shape == (0,)


@pytest.mark.parametrize("description", KINDS)
def test_add_with_ids_remove_reset(description, data):
    index = probe_all(seeded_index(description))
    ids = np.arange(1000, 1300, dtype=np.int64)
    index.add_with_ids(data.gallery, ids)
    _, I = index.search(data.probes[:300], 1)
    assert np.mean(I[:, 0] == data.probe_labels[:300] + 1000) > 0.9
    before = index.verify(data.probes[:300], ids)
    assert index.remove_ids(np.array([1000, 1001, 1001, 5], dtype=np.int64)) == 2
    assert index.ntotal == 298 and not index.contains(1000) and index.contains(1002)
    # Removal moves entries inside the IVF's lists: the others must keep their scores.
    np.testing.assert_array_equal(index.verify(data.probes[2:300], ids[2:]), before[2:])
    _, I = index.search(data.probes[:2], 10)
    assert 1000 not in I and 1001 not in I
    with pytest.raises(RuntimeError, match="unknown id"):
        index.verify(data.probes[0], 1000)
    with pytest.raises(RuntimeError, match="already"):
        index.add_with_ids(data.gallery[:1], np.array([1002], dtype=np.int64))
    assert index.remove_ids(np.zeros(0, np.int64)) == 0
    index.add(data.gallery[:1])
    assert index.contains(1300)  # ids follow the largest so far
    index.add_with_ids(data.gallery[:1], np.array([1000], dtype=np.int64))  # a removed id may return
    assert index.contains(1000) and index.ntotal == 300
    index.reset()
    assert index.ntotal == 0 and index.is_trained


@pytest.mark.parametrize("description", KINDS)
def test_range_search_matches_search(description, data):
    index = seeded_index(description)  # an IVF at its default nprobe: both probe the same lists
    index.add(data.gallery)
    q = data.probes[:20]
    lims, Dr, Ir = index.range_search(q, 0.9)
    assert lims.shape == (21,) and lims.dtype == np.int64 and lims[-1] == len(Dr) == len(Ir)
    assert lims[-1] > 0
    Ds, Is = index.search(q, 300)
    for i in range(20):
        assert np.all(np.diff(Dr[lims[i]:lims[i + 1]]) <= 0)  # best first
        got = dict(zip(Ir[lims[i]:lims[i + 1]].tolist(), Dr[lims[i]:lims[i + 1]].tolist()))
        want = {int(j): float(s) for j, s in zip(Is[i], Ds[i]) if s >= 0.9}
        assert set(got) == set(want)
        for j in got:
            assert abs(got[j] - want[j]) < 1e-5


@pytest.mark.parametrize("description", [KINDS[0], f"IVF{NLIST},PSlerp8x16(nprobe=4)"])
def test_file_and_pickle_round_trips(description, data, tmp_path):
    index = seeded_index(description)
    index.add(data.gallery[:200])
    want = index.search(data.probes, 5)
    path = tmp_path / "gallery.pslerp"
    secret = pslerp.generate_secret()
    pslerp.write_index(index, path, secret=secret)            # os.PathLike
    pslerp.write_index(index, str(path) + "2", unsealed=True)  # str, clear
    loaded = [pslerp.read_index(path, secret=secret), pslerp.read_index(str(path) + "2"),
              pickle.loads(pickle.dumps(index)), index.clone(),
              pslerp.deserialize_index(pslerp.serialize_index(index, secret=secret), secret=secret),
              pslerp.deserialize_index(pslerp.serialize_index(index, unsealed=True).tobytes())]
    blob = pslerp.serialize_index(index, secret=secret)
    assert blob.dtype == np.uint8 and blob.ndim == 1
    for other in loaded:
        assert type(other) is type(index)
        assert other.ntotal == index.ntotal and other.params == index.params
        assert other.describe() == index.describe() and other.seed == index.seed
        got = other.search(data.probes, 5)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    if isinstance(index, pslerp.IndexIVFProtectedSlerp):
        assert all(other.nprobe == 4 and other.nlist == NLIST for other in loaded)
        np.testing.assert_array_equal(loaded[0].search(data.probes, 5, nprobe=NLIST)[1],
                                      index.search(data.probes, 5, nprobe=NLIST)[1])
    # A loaded seeded index keeps the seed on record but draws fresh keys; seeded again, it
    # continues the saved stream.
    assert all(other.seed == 11 and not other.seeded_stream for other in loaded)
    assert index.seeded_stream
    loaded[0].set_seed(index.seed)
    index.add(data.gallery[200:])
    loaded[0].add(data.gallery[200:])
    np.testing.assert_array_equal(index.search(data.probes, 5)[1], loaded[0].search(data.probes, 5)[1])
    np.testing.assert_array_equal(index.verify(data.probes[:300], data.probe_labels[:300]),
                                  loaded[0].verify(data.probes[:300], data.probe_labels[:300]))
    np.testing.assert_array_equal(pslerp.serialize_index(index, unsealed=True),
                                  pslerp.serialize_index(loaded[0], unsealed=True))


@pytest.mark.parametrize("description", KINDS)
def test_loaded_seeded_index_draws_fresh_keys(description, data):
    """Two enrolments into copies of one seeded file must not get the same keys (issue 15.8)."""
    index = seeded_index(description)
    index.add(data.gallery[:100])
    blob = pslerp.serialize_index(index, unsealed=True)
    first, second = pslerp.deserialize_index(blob), pslerp.deserialize_index(blob)
    assert first.seed == second.seed == 11 and not first.seeded_stream
    np.testing.assert_array_equal(pslerp.serialize_index(first, unsealed=True), blob)  # the seed stays in the file
    for other in (first, second, index):
        other.add(data.gallery[100:110])
    ids = np.arange(100, 110, dtype=np.int64)
    a, b, c = (other.verify(data.probes[100:110], ids) for other in (first, second, index))
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    old = np.arange(100, dtype=np.int64)
    np.testing.assert_array_equal(first.verify(data.probes[:100], old), index.verify(data.probes[:100], old))


@pytest.mark.parametrize("description", KINDS)
def test_deduplicate(description, data):
    # Cosine scores, where only a copy reaches 0.999 at t = 0.7 (with cohort normalisation no
    # constant threshold marks copies: each entry's own feature scores its own maximum).
    index = probe_all(seeded_index(description + "(norm=none,t=0.7)"))
    index.add(data.gallery[:100])
    new = random_features(3, 77)
    batch = np.concatenate([data.gallery[:2], new, new[:1]])  # 2 enrolled, 3 new, 1 repeat
    res = index.deduplicate(batch, threshold=0.999)
    assert [e[0][0] for e in res.existing[:2]] == [0, 1]
    assert all(not e for e in res.existing[2:])
    assert res.cluster.tolist() == [0, 1, 2, 3, 4, 2]
    assert res.unique.tolist() == [2, 3, 4]
    assert res.duplicates_of_existing == 2 and res.clusters_with_several == 1
    res = pslerp.deduplicate(index, batch, 0.999, enroll=True,
                             ids=np.arange(500, 506, dtype=np.int64))
    assert res.enrolled_ids.tolist() == [502, 503, 504] and index.ntotal == 103


@pytest.mark.parametrize("description", KINDS)
def test_concurrent_searches(description, data):
    index = seeded_index(description)
    index.add(data.gallery)
    want = index.search(data.probes, 3)[1]
    results = [None] * 4

    def run(i):
        results[i] = index.search(data.probes, 3)[1]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_verify_identity_is_the_best_of_the_identity_entries():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 32)).astype(np.float32)
    index = pslerp.IndexProtectedSlerp(pslerp.Params(4, 8))
    index.set_seed(2)
    index.add_with_ids(x, np.array([10, 11, 12, 20, 21, 22], dtype=np.int64))
    best = index.verify_identity(x[1], [10, 11, 12])
    assert best == pytest.approx(index.verify(x[1], 11), abs=1e-6)
    assert best >= index.verify(x[1], 10)
    with pytest.raises(ValueError, match="ids: expected a non-empty 1-D sequence of int64 ids"):
        index.verify_identity(x[1], [])
    with pytest.raises(RuntimeError, match="unknown id 99"):
        index.verify_identity(x[1], [10, 99])


# ----------------------------------------------------------------------------- the IVF index


def test_factory_kinds():
    flat = pslerp.index_factory(D, "PSlerp8x16")
    assert type(flat) is pslerp.IndexProtectedSlerp and isinstance(flat, pslerp.Index)
    ivf = pslerp.index_factory(D, KINDS[1])
    assert type(ivf) is pslerp.IndexIVFProtectedSlerp and isinstance(ivf, pslerp.Index)
    assert (ivf.nlist, ivf.nprobe, ivf.is_trained, ivf.ntotal) == (NLIST, pslerp.default_nprobe(NLIST), False, 0)
    assert [pslerp.default_nprobe(n) for n in (4, 16, 1024, 65536)] == [4, 8, 32, 2048]
    hnsw = pslerp.index_factory(D, "IVF64_HNSW16,PSlerp8x16(t=0.9,nprobe=5)")
    assert hnsw.nprobe == 5 and hnsw.nlist == 64 and abs(hnsw.params.t - 0.9) < 1e-7
    assert hnsw.describe().startswith("IVF64_HNSW16,PSlerp8x16(") and "nprobe=5" in hnsw.describe()
    assert ivf.describe() == KINDS[1] and flat.describe() == "PSlerp8x16"
    for index in (flat, ivf, hnsw):
        assert pslerp.index_factory(D, index.describe()).describe() == index.describe()
        assert index.describe() in repr(index) and type(index).__name__ in repr(index)
    # The constructor: a flat L2 quantizer by default, or one from a faiss factory string.
    p = pslerp.Params(G, DG)
    assert pslerp.IndexIVFProtectedSlerp(p, NLIST).describe() == KINDS[1]
    assert pslerp.IndexIVFProtectedSlerp(p, NLIST, "Flat").describe() == KINDS[1]
    assert pslerp.IndexIVFProtectedSlerp(p, NLIST, "HNSW8").describe() == f"IVF{NLIST}_HNSW8,PSlerp8x16"


@pytest.mark.parametrize("description", ["PSlerp8x16,HNSW32", "PSlerp8x16,IVF256,Flat", "PSlerp8x16(k_factor=10)",
                                         "PSlerp8x16(embedding=identity)", "PSlerp8x16(nprobe=4)"])
def test_retired_coarse_stage_is_refused(description):
    with pytest.raises(RuntimeError, match="IVF"):
        pslerp.index_factory(D, description)


def test_ivf_needs_training(data):
    ivf = pslerp.index_factory(D, KINDS[1])
    for call in (lambda: ivf.add(data.gallery), lambda: ivf.search(data.probes, 1),
                 lambda: ivf.range_search(data.probes, 0.5)):
        with pytest.raises(RuntimeError, match="train"):
            call()
    with pytest.raises(RuntimeError, match="lists"):
        ivf.train(train_features()[:NLIST - 1])
    assert not ivf.is_trained and not ivf.is_centered
    ivf.train(train_features())
    assert ivf.is_trained and ivf.is_centered and ivf.ntotal == 0 and ivf.imbalance() == 0
    ivf.add(data.gallery)
    assert ivf.ntotal == 300 and 1 <= ivf.imbalance() < 2
    with pytest.raises(RuntimeError, match="reset"):
        ivf.train(train_features())
    # An HNSW quantizer is filled with the k-means centroids.
    hnsw = pslerp.index_factory(D, f"IVF{NLIST}_HNSW8,PSlerp8x16")
    hnsw.train(train_features())
    hnsw.add(data.gallery)
    _, I = hnsw.search(data.probes[:300], 1, nprobe=NLIST)
    assert np.mean(I[:, 0] == data.probe_labels[:300]) > 0.9


def test_ivf_with_every_list_is_the_exhaustive_index(data):
    ivf, flat = ivf_and_oracle(data.gallery)
    for k in (10, 305):  # k > ntotal pads alike
        D_flat, I_flat = flat.search(data.probes, k)
        D_ivf, I_ivf = ivf.search(data.probes, k, nprobe=NLIST)
        # The same keys and closed form: equal scores up to float summation order (the batched
        # kernel's sgemm blocks start at other entries in a list than in the whole gallery), and
        # the same ids but where two scores are that close.
        np.testing.assert_allclose(D_ivf, D_flat, rtol=0, atol=1e-4)
        assert np.mean(I_ivf == I_flat) > 0.999
        swapped = I_ivf != I_flat  # near-ties: both lists hold scores that close at that rank
        assert not swapped.any() or np.max(np.abs(D_ivf[swapped] - D_flat[swapped])) < 1e-4
    ids = np.clip(data.probe_labels, 0, None)
    np.testing.assert_array_equal(ivf.verify(data.probes, ids), flat.verify(data.probes, ids))
    lims, Dr, Ir = ivf.range_search(data.probes, 0.9, nprobe=NLIST)
    lims_f, Dr_f, Ir_f = flat.range_search(data.probes, 0.9)
    np.testing.assert_array_equal(lims, lims_f)
    assert 0 < lims[-1] < 300 * 350
    for i in range(len(data.probes)):  # equal scores may come in either order
        b, e = lims[i], lims[i + 1]
        assert sorted(Ir[b:e]) == sorted(Ir_f[b:e])
        by_id = dict(zip(Ir_f[b:e], Dr_f[b:e]))
        assert all(abs(s - by_id[i]) < 1e-4 for i, s in zip(Ir[b:e], Dr[b:e]))
    # The index's own nprobe, and any nprobe above nlist, probe every list too.
    ivf.nprobe = 1000
    assert np.mean(ivf.search(data.probes, 10)[1] == flat.search(data.probes, 10)[1]) > 0.999


def test_ivf_nprobe_keyword(data):
    ivf, flat = ivf_and_oracle(data.gallery)
    assert ivf.nprobe == pslerp.default_nprobe(NLIST) == 8

    def rank1(I):
        return np.mean(I[:300, 0] == data.probe_labels[:300])

    _, I_default = ivf.search(data.probes, 5)
    np.testing.assert_array_equal(ivf.search(data.probes, 5, nprobe=8)[1], I_default)
    _, I_one = ivf.search(data.probes, 5, nprobe=1)
    assert ivf.nprobe == 8  # a per-call nprobe leaves the index's alone
    assert rank1(I_one) < rank1(I_default)  # can fail: fewer lists find fewer mates
    assert rank1(I_default) > 0.8
    ivf.nprobe = 1
    np.testing.assert_array_equal(ivf.search(data.probes, 5)[1], I_one)
    ivf.nprobe = 8
    lims_one = ivf.range_search(data.probes, 0.3, nprobe=1)[0]
    lims_all = ivf.range_search(data.probes, 0.3, nprobe=NLIST)[0]
    assert lims_one[-1] < lims_all[-1]
    np.testing.assert_array_equal(lims_all, flat.range_search(data.probes, 0.3)[0])
    # deduplicate searches the gallery with the nprobe given.
    res = ivf.deduplicate(data.gallery[:5], threshold=0.999, nprobe=NLIST)
    assert [e[0][0] for e in res.existing] == [0, 1, 2, 3, 4]
    res = pslerp.deduplicate(ivf, data.gallery[:5], 0.999, nprobe=1)  # an entry's own list comes first
    assert [e[0][0] for e in res.existing] == [0, 1, 2, 3, 4]
    # The retired keywords are gone, and the exhaustive index probes no lists.
    with pytest.raises(TypeError, match="(?s)incompatible function arguments.*kwargs: k_factor=4"):
        ivf.search(data.probes, 1, k_factor=4)
    with pytest.raises(TypeError, match="(?s)incompatible function arguments.*kwargs: efSearch=64"):
        ivf.search(data.probes, 1, efSearch=64)
    with pytest.raises(TypeError, match="(?s)incompatible function arguments.*kwargs: nprobe=4"):
        flat.search(data.probes, 1, nprobe=4)


def test_ivf_verify_by_id(data):
    ivf, flat = ivf_and_oracle(data.gallery)
    ids = np.arange(300, dtype=np.int64)
    s = ivf.verify(data.probes[:300], ids)
    np.testing.assert_array_equal(s, flat.verify(data.probes[:300], ids))
    np.testing.assert_array_equal(ivf.verify_batch(data.probes[:300], ids), s)
    assert ivf.verify(data.probes[0], 0) == float(s[0])
    best = max(ivf.verify(data.probes[3], i) for i in (1, 3, 5))
    assert ivf.verify_identity(data.probes[3], [1, 3, 5]) == best == flat.verify_identity(data.probes[3], [1, 3, 5])
    assert ivf.contains(299) and not ivf.contains(300)
    with pytest.raises(RuntimeError, match="unknown id"):
        ivf.verify(data.probes[0], 300)
    with pytest.raises(RuntimeError, match="unknown id"):
        ivf.verify_identity(data.probes[0], [0, 300])


def test_ivf_merge_from(data):
    base = pslerp.index_factory(D, KINDS[1])
    base.train(train_features())
    left, right = base.clone(), base.clone()  # the same centring and centroids
    left.set_seed(1)
    right.set_seed(2)
    ids = np.arange(300, dtype=np.int64)
    left.add_with_ids(data.gallery[:150], ids[:150])
    right.add_with_ids(data.gallery[150:], ids[150:])
    want = np.concatenate([left.verify(data.probes[:150], ids[:150]), right.verify(data.probes[150:300], ids[150:])])
    left.merge_from(right)
    assert (left.ntotal, right.ntotal, left.next_id) == (300, 0, 300)
    np.testing.assert_array_equal(left.verify(data.probes[:300], ids), want)
    _, I = left.search(data.probes[:300], 1, nprobe=NLIST)
    assert np.mean(I[:, 0] == data.probe_labels[:300]) > 0.9
    # Colliding ids and other centroids are refused, and leave both indexes as they were.
    other = base.clone()
    other.add_with_ids(data.gallery[:1], np.array([7], dtype=np.int64))
    with pytest.raises(RuntimeError, match="both"):
        left.merge_from(other)
    assert (left.ntotal, other.ntotal) == (300, 1)
    stranger = pslerp.index_factory(D, KINDS[1])
    stranger.train(random_features(40 * NLIST, 5))
    with pytest.raises(RuntimeError, match=re.escape("merge: the indexes use different centrings (train one, then")):
        left.merge_from(stranger)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        left.merge_from(pslerp.index_factory(D, "PSlerp8x16"))


def test_ivf_rank1_at_default_nprobe():
    """The default nprobe keeps >= 0.98x the exhaustive rank-1 on small ArcFace-sized (512-D)
    data, the IVF trained on other identities. (The isotropic 128-D synthetic data are harder
    for any IVF, raw features included.)"""
    groups, n, nlist = 32, 1000, 32
    s = pslerp.synth(groups=groups, group_dim=DG, seed=3, gallery_size=n, mated_probes=n, nonmated_probes=0)
    train = train_features(groups=groups, n=40 * nlist)
    rank1 = []
    for description in (f"PSlerp{groups}x{DG}", f"IVF{nlist},PSlerp{groups}x{DG}"):
        index = pslerp.index_factory(groups * DG, description)
        index.set_seed(5)
        index.train(train)
        index.add(s.gallery)
        _, I = index.search(s.probes, 1)
        rank1.append(np.mean(I[:, 0] == s.probe_labels))
    assert index.nprobe == pslerp.default_nprobe(nlist)
    assert rank1[0] > 0.95 and rank1[1] >= 0.98 * rank1[0], rank1


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("description", KINDS)
def test_bad_arrays_name_the_argument(description):
    index = seeded_index(description)
    index.add(random_features(5, 1))
    x = random_features(4, 2)
    cases = [
        (lambda: index.add(x.astype(np.float64)), "x: expected float32, got float64"),
        (lambda: index.add(x.tolist()), "x: expected a numpy array"),
        (lambda: index.add(x[:, :100]), r"x: expected shape \(n, 128\), got \(4, 100\)"),
        (lambda: index.add(x[0]), r"x: expected shape \(n, 128\), got \(128,\)"),
        (lambda: index.add(np.asfortranarray(x)), "x: expected a C-contiguous"),
        (lambda: index.add(np.concatenate([x, x], 1)[:, ::2]), "x: expected a C-contiguous"),
        (lambda: index.search(x.astype(np.float16), 1), "x: expected float32, got float16"),
        (lambda: index.search(x, 0), "k: must be > 0"),
        (lambda: index.search(x, -3), "k: must be > 0"),
        (lambda: index.add_with_ids(x, np.arange(4, dtype=np.int32)), "ids: expected int64, got int32"),
        (lambda: index.add_with_ids(x, np.arange(3, dtype=np.int64)), r"ids: expected shape \(4,\)"),
        (lambda: index.remove_ids(np.array([1.0])), "ids: expected int64"),
        (lambda: index.verify(x[0].astype(np.float64), 0), "x: expected float32"),
        (lambda: index.verify(x, np.zeros(4, np.int32)), "ids: expected int64"),
        (lambda: index.verify_batch(x, np.zeros(3, np.int64)), r"ids: expected shape \(4,\)"),
        (lambda: index.range_search(x, float("nan")), "thresh"),
        (lambda: index.deduplicate(x.astype(np.float64), 5.0), "x: expected float32"),
        (lambda: index.train(np.zeros((0, D), np.float32)), "x: train needs at least one vector"),
    ]
    if isinstance(index, pslerp.IndexIVFProtectedSlerp):
        cases += [
            (lambda: index.search(x, 1, nprobe=0), "nprobe: must be >= 1"),
            (lambda: index.range_search(x, 0.5, nprobe=-2), "nprobe: must be >= 1"),
            (lambda: index.deduplicate(x, 5.0, nprobe=0), "nprobe: must be >= 1"),
            (lambda: setattr(index, "nprobe", 0), "nprobe: must be >= 1"),
        ]
    for call, msg in cases:
        with pytest.raises(ValueError, match=msg):
            call()
    assert index.ntotal == 5


def bad_vectors(mean=None):
    """(name, x, message) with a NaN, an infinite value and a zero group in one row each. For a
    centred index (its mean given) the zero group is one that centring makes zero."""
    nan, inf, zero = random_features(3, 1), random_features(3, 2), random_features(3, 3)
    nan[1, 5] = np.nan
    inf[2, 17] = -np.inf
    zero[0, DG:2 * DG] = 0 if mean is None else mean[DG:2 * DG]
    return [("nan", nan, "NaN or infinite"), ("inf", inf, "NaN or infinite"), ("zero", zero, "zero norm")]


def centring_mean(index):
    """The mean an index trained on train_features() centres on, as the C++ computes it."""
    if not index.is_centered:
        return None
    t = train_features().astype(np.float64)
    return (np.array([math.fsum(c) for c in t.T]) / len(t)).astype(np.float32)


@pytest.mark.parametrize("description", KINDS)
def test_bad_vectors_raise_value_error_everywhere(description):
    """README: NaN or zero vectors raise ValueError, from every entry point (issue 15.7);
    other errors inside the index stay RuntimeError."""
    index = seeded_index(description)
    index.add(random_features(5, 9))
    ids = np.arange(3, dtype=np.int64)
    for name, x, msg in bad_vectors(centring_mean(index)):
        row = {"nan": 1, "inf": 2, "zero": 0}[name]
        calls = {
            "add": lambda: index.add(x),
            "add_with_ids": lambda: index.add_with_ids(x, ids + 100),
            "search": lambda: index.search(x, 2),
            "range_search": lambda: index.range_search(x, 0.5),
            "verify": lambda: index.verify(x, ids),
            "verify one": lambda: index.verify(x[row], 0),
            "verify_batch": lambda: index.verify_batch(x, ids),
            "verify_identity": lambda: index.verify_identity(x[row], [0, 1]),
            "deduplicate": lambda: index.deduplicate(x, 5.0, enroll=True),
        }
        for call_name, call in calls.items():
            with pytest.raises(ValueError, match=msg):
                call()
        assert index.ntotal == 5, name  # a throwing call leaves the index as it was
    nan = bad_vectors()[0][1]
    with pytest.raises(ValueError, match="NaN or infinite"):
        pslerp.index_factory(D, description).train(np.concatenate([train_features(), nan]))
    with pytest.raises(RuntimeError, match="unknown id"):
        index.verify(random_features(1, 4)[0], 999)


def test_bad_vectors_raise_value_error_in_the_scheme():
    p = pslerp.Params(G, DG)
    good = random_features(3, 7)
    tmpl, k, m, w = pslerp.protect(good, p, seed=1)
    for name, x, msg in bad_vectors():
        with pytest.raises(ValueError, match=msg):
            pslerp.protect(x, p)
        with pytest.raises(ValueError, match=msg):
            pslerp.match(x, tmpl, k, m, p, w)
        with pytest.raises(ValueError, match=msg):
            pslerp.match_all(x, tmpl, k, m, p, w)


def test_seeds_warn():
    """Every way of asking for a seed warns; no seed, no warning (issue 15.8)."""
    p = pslerp.Params(G, DG)
    x = random_features(2, 1)
    index = pslerp.IndexProtectedSlerp(p)
    for call in (lambda: pslerp.generate_keys(2, p, seed=1), lambda: pslerp.protect(x, p, seed=1),
                 lambda: index.set_seed(3)):
        with pytest.warns(RuntimeWarning, match="reproducible.*tests and benchmarks only"):
            call()
    assert index.seed == 3 and index.seeded_stream
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pslerp.generate_keys(2, p)
        pslerp.protect(x, p)
        pslerp.IndexProtectedSlerp(p).add(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a warning made an error does not seed
        fresh = pslerp.IndexProtectedSlerp(p)
        with pytest.raises(RuntimeWarning):
            fresh.set_seed(4)
        assert fresh.seed is None and not fresh.seeded_stream


def test_bad_scheme_inputs():
    p = pslerp.Params(G, DG)
    x = random_features(3, 1)
    tmpl, k, m, w = pslerp.protect(x, p, seed=1)
    with pytest.raises(ValueError, match="keys: expected float32"):
        pslerp.protect(x, p, keys=k.astype(np.float64))
    with pytest.raises(ValueError, match=r"keys: expected shape \(3, 8, 16\)"):
        pslerp.protect(x, p, keys=k.reshape(3, -1))
    with pytest.raises(ValueError, match="keys.*unit-norm"):
        pslerp.protect(x, p, keys=2 * k)
    with pytest.raises(ValueError, match="masks: expected uint8"):
        pslerp.protect(x, p, masks=m.astype(np.float32))
    with pytest.raises(ValueError, match="masks.*keeps no coordinate"):
        pslerp.protect(x, p, masks=np.zeros_like(m))
    with pytest.raises(ValueError, match=r"weights: expected shape"):
        pslerp.protect(x, p, weights=w[:, :3].copy())
    with pytest.raises(ValueError, match=r"x: expected shape \(n, 128\)"):
        pslerp.protect(x[:, :64].copy(), p)
    with pytest.raises(ValueError, match=r"templates: expected shape \(3, 128\)"):
        pslerp.match(x, tmpl[:2], k, m, p)
    with pytest.raises(ValueError, match=r"q: expected float32"):
        pslerp.match_all(x.astype(np.float64), tmpl, k, m, p)
    with pytest.raises(ValueError, match=r"masks: expected shape"):
        pslerp.match_all(x, tmpl, k, m[:2], p)
    empty = pslerp.protect(np.zeros((0, D), np.float32), p)
    assert [a.shape[0] for a in empty] == [0, 0, 0, 0]
    assert pslerp.match(x[:0], *empty[:3], p).shape == (0,)


def test_bad_factory_and_files(tmp_path):
    with pytest.raises(RuntimeError, match=re.escape("a coarse stage after PSlerp ('Nonsense') is retired")):
        pslerp.index_factory(D, "PSlerp8x16,Nonsense")
    with pytest.raises(RuntimeError, match="the data dimension is 100 but PSlerp8x16 means 8 groups x 16 = 128"):
        pslerp.index_factory(100, "PSlerp8x16")
    with pytest.raises(RuntimeError, match="factory string 'IVF,PSlerp8x16': bad list count after 'IVF'"):
        pslerp.index_factory(D, "IVF,PSlerp8x16")
    with pytest.raises(RuntimeError, match="cannot open index file '.*missing.pslerp': no such file"):
        pslerp.read_index(tmp_path / "missing.pslerp")
    bad = tmp_path / "bad.pslerp"
    bad.write_bytes(b"not an index at all" * 10)
    with pytest.raises(RuntimeError, match=re.escape('not a pslerp index file (wrong magic, expected "PSLERPIX")')):
        pslerp.read_index(bad)
    for index in (seeded_index(), seeded_index(KINDS[1])):
        blob = pslerp.serialize_index(index, unsealed=True)
        n = blob.size
        with pytest.raises(RuntimeError, match=f"truncated index file: {n - 3} bytes, the header says {n}"):
            pslerp.deserialize_index(blob[:-3])
        with pytest.raises(ValueError, match="data: expected bytes or a contiguous 1-D uint8 array"):
            pslerp.deserialize_index(np.zeros(8, np.float32))
    with pytest.raises(TypeError, match=r"write_index\(\): incompatible function arguments"):
        pslerp.write_index("not an index", tmp_path / "x.pslerp", unsealed=True)


def test_sealed_files(data, tmp_path):
    """Issue 11: sealed files, secrets given wrong, the secret frame, file modes."""
    secret = pslerp.generate_secret()
    assert isinstance(secret, bytes) and len(secret) == 32 and secret != pslerp.generate_secret()
    index = pslerp.index_factory(D, "PSlerp8x16")
    pslerp.enable_secret_frame(index)
    assert pslerp.has_secret_frame(index)
    index.train(train_features())
    index.add(data.gallery[:300])
    path = tmp_path / "g.pslerp"
    pslerp.write_index(index, path, secret=secret)
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o640)
    pslerp.write_index(index, path, secret=bytearray(secret))
    assert path.stat().st_mode & 0o777 == 0o640  # a re-saved file keeps its mode
    loaded = pslerp.read_index(path, secret=secret)
    assert pslerp.has_secret_frame(loaded)
    want = index.search(data.probes[:50], 5)
    got = loaded.search(data.probes[:50], 5)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert pslerp.has_secret_frame(index.clone())
    with pytest.raises(RuntimeError, match="the file is sealed and no secret was given"):
        pslerp.read_index(path)
    with pytest.raises(RuntimeError, match="wrong secret or file modified"):
        pslerp.read_index(path, secret=pslerp.generate_secret())
    blob = pslerp.serialize_index(index, secret=secret)
    with pytest.raises(RuntimeError, match="truncated sealed file"):
        pslerp.deserialize_index(blob[:-1], secret=secret)
    flipped = blob.copy()
    flipped[blob.size // 2] ^= 1
    with pytest.raises(RuntimeError, match="wrong secret or file modified"):
        pslerp.deserialize_index(flipped, secret=secret)
    # A frame's seed exists only in sealed files.
    with pytest.raises(RuntimeError, match="secret frame"):
        pslerp.write_index(index, tmp_path / "clear.pslerp", unsealed=True)
    with pytest.raises(RuntimeError, match="secret frame"):
        pickle.dumps(index)
    # Writing needs exactly one of secret= and unsealed=True; a secret is 32 bytes.
    with pytest.raises(ValueError, match="a secret is required"):
        pslerp.write_index(index, tmp_path / "x.pslerp")
    with pytest.raises(ValueError, match="a secret is required"):
        pslerp.serialize_index(index)
    with pytest.raises(ValueError, match="not both"):
        pslerp.write_index(index, tmp_path / "x.pslerp", secret=secret, unsealed=True)
    for bad in (b"short", secret + b"x", "x" * 32, 12345, np.zeros(32, np.uint8)):
        with pytest.raises(ValueError, match="secret must be bytes of length 32"):
            pslerp.write_index(index, tmp_path / "x.pslerp", secret=bad)
        with pytest.raises(ValueError, match="secret must be bytes of length 32"):
            pslerp.read_index(path, secret=bad)
    assert not (tmp_path / "x.pslerp").exists()
    # A clear file is not accepted where a sealed one is expected.
    plain = pslerp.index_factory(D, "PSlerp8x16")
    plain.train(train_features())
    pslerp.write_index(plain, tmp_path / "clear.pslerp", unsealed=True)
    with pytest.raises(RuntimeError, match="not sealed, but a secret was given"):
        pslerp.read_index(tmp_path / "clear.pslerp", secret=secret)
    # The frame on an index with entries, or a trained IVF, is refused.
    with pytest.raises(RuntimeError, match="already has a secret frame"):
        pslerp.enable_secret_frame(index)
    plain.add(data.gallery[:10])
    with pytest.raises(RuntimeError, match="has entries"):
        pslerp.enable_secret_frame(plain)


# ----------------------------------------------------------------------------- evaluation, synth


def test_eval_helpers():
    mated = np.array([0.9, 0.8, 0.7, 0.4], np.float32)
    nonmated = np.array([0.1, 0.2, 0.5, 0.3], np.float32)
    roc = pslerp.roc_curve(mated, nonmated)
    assert roc["mated"] == 4 and roc["tar"][-1] == 1.0 and roc["far"][0] == 0.0
    # FAR - FRR: -0.25 at 0.7 (0.4 rejected, nothing false accepted), exactly 0 at 0.5 (0.5
    # accepted too): EER 1/4 at threshold 0.5, with no interpolation.
    eer, thr = pslerp.equal_error_rate(mated, nonmated)
    assert eer == 0.25 and thr == 0.5
    t = pslerp.tar_at_far(mated, nonmated, 0.25)
    assert t["tar"] == 1.0 and t["false_accepts"] == 1 and t["resolvable"]  # 0.5 is the one allowed
    same = pslerp.unlinkability(mated, mated, bins=10)
    apart = pslerp.unlinkability(mated + 2, nonmated, bins=10)
    assert same["d_sys"] < 0.05 and apart["d_sys"] > 0.95
    with pytest.raises(ValueError, match="mated: expected float32"):
        pslerp.roc_curve(mated.astype(np.float64), nonmated)
    with pytest.raises(ValueError, match="no mated scores"):
        pslerp.roc_curve(mated[:0], nonmated)


def test_synth():
    x, labels = pslerp.synth(10, 3, seed=1)
    assert x.shape == (30, D) and labels.tolist() == sorted(list(range(10)) * 3)
    np.testing.assert_array_equal(x, pslerp.synth(10, 3, seed=1)[0])
    s = pslerp.synth(groups=4, group_dim=8, gallery_size=20, mated_probes=5, nonmated_probes=3, seed=2)
    assert s.gallery.shape == (20, 32) and s.probes.shape == (8, 32)
    assert (s.probe_labels[5:] == -1).all() and (s.probe_labels[:5] >= 0).all()
    with pytest.raises(TypeError, match="SynthConfig: unexpected keyword argument 'colour'"):
        pslerp.synth(10, 2, colour=1)


# ----------------------------------------------------------------------------- FAISS interop


def test_ivf_quantizer_from_faiss(data, monkeypatch):
    faiss = pytest.importorskip("faiss")
    p = pslerp.Params(G, DG)
    hnsw = faiss.IndexHNSWFlat(D, 16)
    ivf = pslerp.IndexIVFProtectedSlerp(p, NLIST, hnsw)  # copied through serialisation
    assert ivf.describe() == f"IVF{NLIST}_HNSW16,PSlerp8x16"
    ivf.set_seed(4)
    ivf.train(train_features())
    ivf.add(data.gallery)
    assert hnsw.ntotal == 0
    _, I = ivf.search(data.probes[:300], 1, nprobe=NLIST)
    assert np.mean(I[:, 0] == data.probe_labels[:300]) > 0.9
    # Serialised FAISS bytes too.
    flat_bytes = faiss.serialize_index(faiss.IndexFlatL2(D))
    assert pslerp.IndexIVFProtectedSlerp(p, NLIST, flat_bytes).describe() == KINDS[1]
    with pytest.raises(ValueError, match="quantizer: expected dimension 128"):
        pslerp.IndexIVFProtectedSlerp(p, NLIST, faiss.IndexFlatL2(D // 2))
    with pytest.raises(RuntimeError, match="L2"):
        pslerp.IndexIVFProtectedSlerp(p, NLIST, faiss.IndexFlatIP(D))
    with pytest.raises(ValueError, match="quantizer"):
        pslerp.IndexIVFProtectedSlerp(p, NLIST, 42)
    monkeypatch.setattr(faiss, "__version__", "1.8.0")
    with pytest.raises(RuntimeError, match="1.8.0.*" + pslerp.FAISS_VERSION.replace(".", r"\.")):
        pslerp.IndexIVFProtectedSlerp(p, NLIST, faiss.IndexFlatL2(D))
