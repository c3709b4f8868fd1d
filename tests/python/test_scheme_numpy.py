"""Drop counts of every preset and mapping against a small independent numpy version.

Run from a build folder:  cd <build> && PYTHONPATH=python /usr/bin/python3 -m pytest -q ../tests/python

pslerp does not expose its drop counts; they are read off the masks pslerp.protect returns.
Drawing without replacement, a group that draws c coordinates drops exactly c distinct ones, so
c = d - kept. The presets that draw with replacement (slerpface) are compared exactly with
replacement turned off (the counts do not depend on it: every count here is below the d - 1 cap),
and with replacement on through the number of distinct coordinates dropped.

Everything under "numpy reference" is written from the rules in plugin/params.h and the
reference code (recognition/tasks/slerpface/encrypt_template/enrollment.py), never calling
pslerp: importance by self-attention, and the function, intervals (median or 1/G) and budget
mappings. The importance that protect() used is the weights it returns when the weighting is
'importance' (the weighting plays no part in the drop), so every case below sets it and the
counts are computed from exactly the importance the C++ saw.
"""

import numpy as np
import pytest

import pslerp

# These tests seed on purpose (pslerp warns for every seed).
pytestmark = pytest.mark.filterwarnings("ignore:pslerp.*a seed makes keys:RuntimeWarning")


# ----------------------------------------------------------------------------- numpy reference


def np_attention_importance(x, groups, group_dim, temperature=1.0):
    """Self-attention importance with identity projections: per sample, the groups normalised,
    logits <x_g, x_h> / (sqrt(d) * temperature), a softmax over h for each g, and the importance
    of h the mean attention it receives (already summing to 1)."""
    xg = x.astype(np.float64).reshape(len(x), groups, group_dim)
    xg /= np.linalg.norm(xg, axis=2, keepdims=True)
    logits = np.einsum("ngd,nhd->ngh", xg, xg) / (np.sqrt(group_dim) * temperature)
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    attn = e / e.sum(axis=2, keepdims=True)
    w = attn.mean(axis=1)
    return w / w.sum(axis=1, keepdims=True)


def np_function_counts(w, drop_min, drop_max):
    """A linear map of relative importance r = (w - min) / (max - min) (r = 1/2 when all are
    equal; float32, as the weights are) onto [drop_max, drop_min], rounded half away from zero."""
    lo, hi = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, np.float32(1))
    r = np.where(hi > lo, (w - lo) / span, np.float32(0.5)).astype(np.float64)
    x = drop_max - r * (drop_max - drop_min)
    return np.floor(x + 0.5).astype(np.int64)  # x >= 0: half away from zero


def np_interval_counts(w, bounds, counts, by_median):
    """ratio = w / np.median(w) (the reference code's median: the mean of the two middle values
    for an even G) or w * G; a ratio below bounds[i] (and not below bounds[i-1]) draws counts[i],
    one at or above every bound counts[-1]. So with the single bound 1, w < median draws
    counts[0] and w >= median counts[1], as the reference code's low/high split."""
    G = w.shape[1]
    ref = np.median(w, axis=1, keepdims=True).astype(np.float64) if by_median else np.full((len(w), 1), 1.0 / G)
    ratio = w.astype(np.float64) / np.maximum(ref, 1e-30)
    b = np.asarray(bounds, np.float32).astype(np.float64)
    idx = (ratio[..., None] >= b).sum(axis=2)  # how many bounds the ratio is not below
    return np.asarray(counts, np.int64)[idx]


def np_budget_counts(w, drop_count, cap):
    """drop_count * G draws shared in proportion to 1 / (w + 1e-6): each group gets the floor of
    its exact share (at most cap), and what is left goes one draw at a time to the groups in
    order of decreasing remainder (ties: lower group first), skipping full groups, round after
    round."""
    n, G = w.shape
    budget = drop_count * G
    out = np.zeros((n, G), np.int64)
    for i in range(n):
        share = 1.0 / (w[i].astype(np.float64) + 1e-6)
        exact = budget * share / share.sum()
        c = np.minimum(np.floor(exact), cap).astype(np.int64)
        rem = exact - c
        order = sorted(range(G), key=lambda g: (-rem[g], g))
        left = budget - int(c.sum())
        while left > 0:
            open_groups = [g for g in order if c[g] < cap]
            if not open_groups:
                break
            for g in open_groups[:left]:
                c[g] += 1
            left -= min(left, len(open_groups))
        out[i] = c
    return out


def np_drop_counts(p, w):
    """Draws per group for importance w (n, G float32) under Params p (read as plain values)."""
    n, G = w.shape
    d = p.group_dim
    cap = 2**31 - 1 if p.drop_with_replacement else d - 1
    if p.drop == "none":
        c = np.zeros((n, G), np.int64)
    elif p.drop == "random":
        c = np.full((n, G), p.drop_count, np.int64)
    elif p.mapping == "function":
        c = np_function_counts(w, p.drop_min, p.drop_max)
    elif p.mapping == "intervals":
        c = np_interval_counts(w, list(p.interval_bounds), list(p.interval_counts), p.intervals_by_median)
    else:
        assert p.mapping == "budget"
        c = np_budget_counts(w, p.drop_count, cap)
    return np.clip(c, 0, cap)


# ----------------------------------------------------------------------------- helpers


def importance_rows(n, groups, seed):
    """n importance vectors (float32, rows sum to about 1): half continuous (Dirichlet), half
    small integers (many ties, also at the median), then normalised."""
    rng = np.random.default_rng(seed)
    cont = rng.dirichlet(np.full(groups, 2.0), size=n - n // 2)
    ints = rng.integers(1, 6, size=(n // 2, groups)).astype(np.float64)
    w = np.concatenate([cont, ints / ints.sum(axis=1, keepdims=True)])
    return w.astype(np.float32)


def protect_counts(p, w=None, n=None, seed=3):
    """(drop counts read off the masks, the importance protect used) for random features; with
    w given protect uses it as the importance (it renormalises it: the returned weights are
    what it used)."""
    n = len(w) if w is not None else n
    x = np.random.default_rng(seed + 100).standard_normal((n, p.dim)).astype(np.float32)
    _, _, masks, used = pslerp.protect(x, p, weights=w, seed=seed)
    return p.group_dim - masks.sum(axis=2), used, x


def without_replacement(p):
    q = p.copy()
    q.drop_with_replacement = False
    q.validate()
    return q


def importance_params(groups, group_dim, **kw):
    return pslerp.Params(groups, group_dim, drop="importance", weighting="importance", **kw)


# ----------------------------------------------------------------------------- the numpy reference itself


def test_reference_median_is_the_mean_of_the_middle_values():
    # Issue 16's example: 8 groups, 4 of them below np.median (the lower median would give 3).
    w = np.array([[0.16, 0.04, 0.10, 0.22, 0.07, 0.13, 0.19, 0.09]], np.float32)
    assert np_interval_counts(w, [1.0], [12, 4], True).tolist() == [[4, 12, 12, 4, 12, 4, 4, 12]]
    assert np_function_counts(np.array([[0, 1, 0.5, 0.25]], np.float32), 1, 8).tolist() == [[8, 1, 5, 6]]
    w = np.array([[0.01, 0.49, 0.25, 0.25]], np.float32)
    assert np_budget_counts(w, 2, 3).tolist() == [[3, 1, 2, 2]]
    assert np_budget_counts(w, 2, 2**31 - 1).tolist() == [[7, 0, 1, 0]]


# ----------------------------------------------------------------------------- mappings


MAPPING_CASES = {
    "function": dict(mapping="function"),
    "function_2_13": dict(mapping="function", drop_min=2, drop_max=13),
    "function_equal_ends": dict(mapping="function", drop_min=5, drop_max=5),
    "intervals_median": dict(mapping="intervals"),
    "intervals_median_many": dict(mapping="intervals", interval_bounds=[0.5, 0.9, 1.0, 1.15, 1.5],
                                  interval_counts=[11, 9, 7, 5, 3, 1]),
    "intervals_one_over_g": dict(mapping="intervals", intervals_by_median=False),
    "intervals_one_over_g_many": dict(mapping="intervals", intervals_by_median=False,
                                      interval_bounds=[0.5, 1.0, 1.5], interval_counts=[9, 6, 3, 0]),
    "budget": dict(mapping="budget", drop_count=4),
    "budget_large": dict(mapping="budget", drop_count=12),
}


@pytest.mark.parametrize("groups", [7, 8])
@pytest.mark.parametrize("name", list(MAPPING_CASES))
def test_mapping_counts_equal_numpy(name, groups):
    p = importance_params(groups, 16, **MAPPING_CASES[name])
    w = importance_rows(200, groups, seed=groups)
    got, used, _ = protect_counts(p, w)
    want = np_drop_counts(p, used)
    np.testing.assert_array_equal(got, want)
    if p.mapping == "budget":
        assert np.all(got.sum(axis=1) == p.drop_count * groups)
    # The counts vary with importance (else the test could not tell the mappings apart).
    if name != "function_equal_ends":
        assert len(np.unique(got)) >= 2


@pytest.mark.parametrize("group_dim,drop_count", [(4, 2), (4, 3), (3, 1), (6, 5)])
def test_budget_at_the_cap_equals_numpy(group_dim, drop_count):
    """Without replacement a group draws at most d - 1: skewed importance sends more than that
    to the least important groups, and the budget passes the rest on."""
    p = importance_params(5, group_dim, mapping="budget", drop_count=drop_count)
    rng = np.random.default_rng(group_dim * 10 + drop_count)
    w = rng.dirichlet(np.full(5, 0.3), size=150).astype(np.float32)  # skewed: some groups near 0
    got, used, _ = protect_counts(p, w)
    np.testing.assert_array_equal(got, np_drop_counts(p, used))
    assert np.all(got <= group_dim - 1) and np.all(got.sum(axis=1) == drop_count * 5)
    assert np.any(got == group_dim - 1)


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 5, 6])
def test_intervals_median_small_groups(groups):
    """Small G: the two middle values are a large share of the weights (G = 2: the median is
    their mean, and only the smaller weight is below it)."""
    p = importance_params(groups, 16, mapping="intervals", interval_bounds=[0.8, 1.0, 1.25],
                          interval_counts=[13, 9, 5, 1])
    w = importance_rows(200, groups, seed=40 + groups)
    got, used, _ = protect_counts(p, w)
    np.testing.assert_array_equal(got, np_drop_counts(p, used))


def test_uniform_importance_is_every_ratio_one():
    p = importance_params(8, 16, mapping="intervals", importance="uniform")
    got, used, _ = protect_counts(p, n=20)
    np.testing.assert_array_equal(used, np.float32(1 / 8))
    np.testing.assert_array_equal(got, 2)  # ratio 1 is not below the bound 1: counts[1]
    p.mapping = "function"
    np.testing.assert_array_equal(protect_counts(p, n=20)[0], 5)  # r = 1/2: 8 - 3.5 -> 5


# ----------------------------------------------------------------------------- presets


def preset_cases():
    """Every preset of plugin/params.cpp (Params::defaults, Params::slerpface, reached also by
    set('preset', ...)), at the reference's shape and at even and small G."""
    cases = {}
    for groups, group_dim in [(8, 16), (7, 8), (2, 16)]:
        cases[f"default_{groups}x{group_dim}"] = pslerp.Params.defaults(groups, group_dim)
    for groups in (49, 8, 6, 5, 2):
        cases[f"slerpface_{groups}x16"] = pslerp.Params.slerpface(groups, 16)
    return cases


@pytest.mark.parametrize("name,p", list(preset_cases().items()))
def test_presets_reached_by_name_are_the_same(name, p):
    q = pslerp.Params(p.groups, p.group_dim)
    q.set("preset", name.split("_")[0])
    assert q == p


@pytest.mark.parametrize("name,p", list(preset_cases().items()))
def test_preset_counts_equal_numpy(name, p):
    """The preset's own importance (self-attention for slerpface) from the features, its drop
    counts from that importance; with replacement off so that the masks show the counts."""
    q = without_replacement(p)
    q.weighting = "importance"  # the returned weights are then the importance used
    got, used, x = protect_counts(q, n=120, seed=len(name))
    if q.importance == "attention":
        np.testing.assert_allclose(used, np_attention_importance(x, q.groups, q.group_dim,
                                                                 q.attention_temperature), atol=1e-6)
    else:
        np.testing.assert_array_equal(used, np.float32(1 / q.groups))
    np.testing.assert_array_equal(got, np_drop_counts(q, used))
    if name.startswith("slerpface"):
        # The reference's split: 12 below the median, 4 at or above it. Without ties exactly
        # G // 2 groups are below np.median, for even G too (the lower median would leave one
        # fewer).
        assert set(np.unique(got)) <= {4, 12}
        if q.groups == 2:
            # Two groups attend to each other symmetrically: importance 1/2 each, both at the
            # median.
            np.testing.assert_allclose(used, 0.5, atol=1e-6)
            np.testing.assert_array_equal(got, 4)
        else:
            assert all(len(np.unique(row)) == q.groups for row in used)  # no ties here
            np.testing.assert_array_equal((got == 12).sum(axis=1), q.groups // 2)
    else:
        np.testing.assert_array_equal(got, pslerp.Params().drop_count)  # default: drop_count distinct draws per group
        assert pslerp.Params().drop_count == 2


@pytest.mark.parametrize("groups", [8, 49])
def test_slerpface_with_replacement_drops_the_reference_counts(groups):
    """With replacement (the preset as it is) a group of 16 that draws c coordinates drops
    16 (1 - (15/16)^c) distinct ones on average: 8.6 for c = 12, 3.6 for c = 4. Groups the numpy
    reference gives 4 draws never drop more than 4."""
    p = pslerp.Params.slerpface(groups, 16)
    _, _, masks, used = pslerp.protect(
        np.random.default_rng(groups).standard_normal((300, p.dim)).astype(np.float32), p, seed=5)
    dropped = 16 - masks.sum(axis=2)
    want = np_drop_counts(without_replacement(p), used)
    assert set(np.unique(want)) == {4, 12}
    assert np.all(dropped[want == 4] <= 4) and np.all(dropped >= 1)
    for c in (4, 12):
        expected = 16 * (1 - (15 / 16) ** c)
        assert abs(dropped[want == c].mean() - expected) < 0.15, (c, dropped[want == c].mean(), expected)
