"""Both indexes from many Python threads at once (issue 15.1).

Searching while other threads add or remove, two adds at once, and an add while the index is
being saved all used to crash: the bindings release the GIL, and nothing else kept writers
apart. The indexes now lock themselves; these tests reproduce the crashes (faulthandler
prints every thread's stack if one happens) and bound each test's time (a deadlock dumps the
stacks and exits instead of hanging).

Run from a build folder:  cd <build> && PYTHONPATH=python /usr/bin/python3 -m pytest -q ../tests/python
"""

import faulthandler
import pickle
import threading

import numpy as np
import pytest

import pslerp

G, DG = 4, 8
D = G * DG
KINDS = ["PSlerp4x8", "IVF8,PSlerp4x8"]
LIMIT_S = 240  # per test; a hang dumps every thread's stack and exits
SECRET = pslerp.generate_secret()

pytestmark = pytest.mark.filterwarnings("ignore:pslerp.*a seed makes keys:RuntimeWarning")


@pytest.fixture(autouse=True)
def bounded_time():
    faulthandler.enable()
    faulthandler.dump_traceback_later(LIMIT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def features(n, seed):
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


def make_index(description, n, seed=1):
    """A seeded index (trained if it needs it) holding features(n, seed) under ids 0..n-1."""
    index = pslerp.index_factory(D, description)
    index.set_seed(seed)
    if not index.is_trained:
        index.train(features(400, seed + 1000))
    index.add_with_ids(features(n, seed), np.arange(n, dtype=np.int64))
    return index


def run(*bodies):
    """Runs each body in its own thread; re-raises the first exception a thread raised."""
    errors = []

    def guarded(body):
        try:
            body()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("description", KINDS)
def test_concurrent_reads_equal_sequential_ones(description):
    index = make_index(description, 500)
    q, ids = features(20, 1), np.arange(20, dtype=np.int64)  # the first 20 enrolled features
    want = (index.search(q, 8), index.range_search(q, 0.3), index.verify(q, ids))

    def reader():
        for _ in range(10):
            got = (index.search(q, 8), index.range_search(q, 0.3), index.verify(q, ids))
            for a, b in zip(got[0] + got[1] + (got[2],), want[0] + want[1] + (want[2],)):
                np.testing.assert_array_equal(a, b)

    run(*[reader] * 8)


@pytest.mark.parametrize("description", KINDS)
def test_concurrent_calls_with_their_own_parameters_equal_sequential_ones(description):
    """Threads that search, range-search and verify at once, each call with its own k,
    threshold, probes and ids (and nprobe on the IVF), get exactly the answers of the same
    calls made one at a time; per-call nprobe leaves the index's own nprobe alone."""
    index = make_index(description, 600, seed=3)
    ivf = description.startswith("IVF")
    if ivf:
        index.nprobe = 2
    q = features(40, 3)  # the first 40 enrolled features
    # (k, thresh, first probe, probes, nprobe or None)
    configs = [(1, 0.9, 0, 40, None), (5, 0.3, 3, 17, 1), (17, 0.2, 10, 30, 8), (64, 0.5, 0, 1, 3),
               (9, 0.25, 5, 35, 6), (600, -2.0, 7, 2, 8), (2, 0.35, 1, 39, None), (12, 0.3, 11, 9, 5)]

    def call(c):
        k, thresh, first, n, nprobe = c
        x = q[first:first + n]
        ids = (first + 3 * np.arange(n, dtype=np.int64)) % 600
        opt = {"nprobe": nprobe} if ivf and nprobe is not None else {}
        D, I = index.search(x, k, **opt)
        lims, Dr, Ir = index.range_search(x, thresh, **opt)
        ident = [index.verify_identity(x[i], np.arange(first, first + 5, dtype=np.int64)) for i in range(n)]
        return D, I, lims, Dr, Ir, index.verify(x, ids), np.array(ident, dtype=np.float32)

    want = [call(c) for c in configs]
    if ivf:  # nprobe changes the answers of the same call
        assert not np.array_equal(call((17, 0.2, 10, 30, 1))[1], want[2][1])

    def worker(t):
        for r in range(3):
            for j in range(len(configs)):
                c = (5 * j + t + r) % len(configs)
                for got, expected in zip(call(configs[c]), want[c]):
                    np.testing.assert_array_equal(got, expected, err_msg=f"thread {t} config {c}")

    run(*[lambda t=t: worker(t) for t in range(8)])
    if ivf:
        assert index.nprobe == 2


@pytest.mark.parametrize("description", KINDS)
def test_search_while_others_add_and_remove(description):
    """Used to segfault: searches read the storage that adds reallocate and removals compact."""
    stable = 150
    index = make_index(description, stable)
    q = features(stable, 1)
    own = np.arange(stable, dtype=np.int64)
    want_scores = index.verify(q, own)
    writers_left = [2]
    lock = threading.Lock()

    def writer(w):
        previous = None
        for r in range(8):
            ids = np.arange(300, dtype=np.int64) + 10**6 * (w + 1) + 300 * r
            index.add_with_ids(features(300, 100 + 10 * w + r), ids)
            if previous is not None:
                assert index.remove_ids(previous) == len(previous)
            previous = ids
        with lock:
            writers_left[0] -= 1

    def reader(t):
        i = t
        while True:
            first = (37 * i) % (stable - 8)
            probes = q[first:first + 8]
            _, I = index.search(probes, 3)
            assert (I[:, 0] == own[first:first + 8]).all(), "an entry's own feature finds it first"
            lims, _, Ir = index.range_search(probes, 0.5)
            assert all(first + j in Ir[lims[j]:lims[j + 1]] for j in range(8))
            np.testing.assert_array_equal(index.verify(probes, own[first:first + 8]), want_scores[first:first + 8])
            assert index.contains(first) and len(index) >= stable
            i += 1
            with lock:
                if writers_left[0] == 0:
                    return

    run(lambda: writer(0), lambda: writer(1), *[lambda t=t: reader(t) for t in range(6)])
    assert index.ntotal == stable + 2 * 300


@pytest.mark.parametrize("description", KINDS)
def test_two_adds_at_once(description):
    """Used to segfault (or give two entries one id): add() from several threads."""
    index = make_index(description, 0)
    rounds, batch = 15, 4

    def adder(t):
        for r in range(rounds):
            index.add(features(batch, 10 + 100 * t + r))

    run(*[lambda t=t: adder(t) for t in range(4)])
    total = 4 * rounds * batch
    assert index.ntotal == total and index.next_id == total
    assert all(index.contains(i) for i in range(total))


@pytest.mark.parametrize("description", KINDS)
def test_add_while_saving(description, tmp_path):
    """Used to write freed memory into the file: saving reads the storage an add reallocates.
    Every saved copy must load and hold a consistent index."""
    index = make_index(description, 200)
    saved = []
    adding = [True]

    def adder():
        for r in range(30):
            index.add(features(20, 500 + r))
        adding[0] = False

    def saver(kind):
        i = 0
        while adding[0] or i == 0:
            if kind == "write":
                path = tmp_path / f"copy{i % 3}.pslerp"
                pslerp.write_index(index, path, secret=SECRET)
                saved.append(pslerp.read_index(path, secret=SECRET))
            elif kind == "serialize":
                saved.append(pslerp.deserialize_index(pslerp.serialize_index(index, secret=SECRET), secret=SECRET))
            elif kind == "pickle":
                saved.append(pickle.loads(pickle.dumps(index)))
            else:
                saved.append(index.clone())
            i += 1

    run(adder, *[lambda k=k: saver(k) for k in ("write", "serialize", "pickle", "clone")])
    probe = features(1, 1)
    for copy in saved:
        assert 200 <= copy.ntotal <= 800 and (copy.ntotal - 200) % 20 == 0
        assert copy.contains(0) and copy.next_id == copy.ntotal
        assert copy.search(probe, 1)[1][0, 0] == 0
    assert index.ntotal == 800


def test_nprobe_changes_during_searches():
    index = make_index(KINDS[1], 300)
    q = features(10, 1)
    want = index.search(q, 5, nprobe=8)
    done = [False]

    def tuner():
        for r in range(200):
            index.nprobe = 1 + r % 8
        index.nprobe = 8
        done[0] = True

    def searcher():
        while not done[0]:
            np.testing.assert_array_equal(index.search(q, 5, nprobe=8)[1], want[1])
            index.search(q, 5)  # whatever nprobe is set
            assert 1 <= index.nprobe <= 8

    run(tuner, searcher, searcher)


def test_merges_in_opposite_directions():
    """a.merge_from(b) and b.merge_from(a) at once must neither deadlock nor lose entries."""
    a = make_index(KINDS[1], 100)
    b = a.clone()
    b.reset()
    b.add_with_ids(features(100, 2), np.arange(1000, 1100, dtype=np.int64))
    searching = [True]

    def searcher():
        while searching[0]:
            for index in (a, b):
                I = index.search(features(3, 1), 3)[1]
                assert ((I == -1) | ((I >= 0) & (I < 100)) | ((I >= 1000) & (I < 1100))).all()

    def merger(dst, src):
        for _ in range(30):
            dst.merge_from(src)

    def mergers():
        run(lambda: merger(a, b), lambda: merger(b, a))
        searching[0] = False

    run(mergers, searcher)
    assert a.ntotal + b.ntotal == 200
    assert all(a.contains(i) != b.contains(i) for i in (0, 99, 1000, 1099))


@pytest.mark.parametrize("description", KINDS)
def test_concurrent_dedup_enrols_once(description):
    """Two threads de-duplicating and enrolling the same new people enrol them once."""
    # Cosine scores at t = 0.7: only an entry's own feature reaches 0.99 (with the default cohort
    # z-scores no constant threshold marks copies).
    index = make_index(description + "(norm=none,t=0.7)", 100)
    new = features(6, 4321)
    results = [None, None]
    options = {"nprobe": 8} if description.startswith("IVF") else {}

    def dedup(t):
        results[t] = index.deduplicate(new, threshold=0.99, enroll=True, **options)

    run(lambda: dedup(0), lambda: dedup(1))
    assert index.ntotal == 106
    assert sorted(len(r.enrolled_ids) for r in results) == [0, 6]
