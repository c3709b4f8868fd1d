"""pslerp.distributed on a LocalCluster of two worker processes over loopback."""

import hashlib
import json
import os
import pathlib
import signal
import stat
import subprocess
import threading
import time
import warnings

import numpy as np
import pytest

import pslerp

distributed = pytest.importorskip(
    "distributed", reason="Dask distributed is not installed (Debian: apt install python3-distributed)")
import pslerp.distributed as pdist  # noqa: E402

SEALING = hasattr(pslerp, "generate_secret")


@pytest.fixture(scope="module")
def client():
    # The worker processes import pslerp from the same place as this one; one OpenMP thread each.
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(pslerp.__file__)))] +
        [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=":0", silence_logs=50, env=env)
    c = distributed.Client(cluster, direct_to_workers=True)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def data():
    s = pslerp.synth(gallery_size=2000, mated_probes=150, nonmated_probes=50, seed=7)
    xt, _ = pslerp.synth(identities=400, samples_per_identity=1, seed=8)
    return s, xt


def sharded(client, factory, xt, shards=3, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the seed's warning
        idx = pdist.ShardedIndex(client, 128, factory, shards=shards, seed=11, **kw)
    idx.train(xt)
    return idx


def shard_files(directory, manifest, secret=None):
    kw = {} if secret is None else {"secret": secret}
    return [pslerp.read_index(os.path.join(directory, f["file"]), **kw) for f in manifest["files"]]


def oracle_search(directory, manifest, q, k, nprobe=None):
    """What one index holding exactly the shards' entries (same keys) answers: the shards merged
    into one IVF index (merge_from), or for the exhaustive index every shard's own answer merged
    by a plain sort (best score, then smaller id)."""
    shards = shard_files(directory, manifest)
    if nprobe is not None:
        single = shards[0]
        for other in shards[1:]:
            single.merge_from(other)
        return single.search(q, k, nprobe=nprobe)
    answers = [sh.search(q, k) for sh in shards]
    D = np.full((len(q), k), -np.inf, np.float32)
    I = np.full((len(q), k), -1, np.int64)
    for i in range(len(q)):
        pairs = sorted((float(a[0][i, j]), int(a[1][i, j])) for a in answers for j in range(k) if a[1][i, j] >= 0)
        pairs = sorted(pairs, key=lambda p: (-p[0], p[1]))[:k]
        D[i, :len(pairs)] = [p[0] for p in pairs]
        I[i, :len(pairs)] = [p[1] for p in pairs]
    return D, I


def test_merge_orders_ties_by_smaller_id():
    D = [np.array([[0.9, 0.5, -np.inf]], np.float32), np.array([[0.9, 0.5, 0.1]], np.float32)]
    I = [np.array([[7, 3, -1]]), np.array([[2, 8, 4]])]
    Dm, Im = pdist._merge_topk(D, I, 5)
    assert Im.tolist() == [[2, 7, 3, 8, 4]]
    Dm, Im = pdist._merge_topk([np.full((1, 2), -np.inf, np.float32)] * 2, [np.full((1, 2), -1)] * 2, 3)
    assert Im.tolist() == [[-1, -1, -1]] and np.isneginf(Dm).all()


@pytest.mark.parametrize("factory,nprobe", [("PSlerp8x16", None), ("IVF8,PSlerp8x16", 3)])
def test_sharded_equals_single_index_and_save_load(client, data, tmp_path, factory, nprobe):
    s, xt = data
    idx = sharded(client, factory, xt, query_batch=64)
    idx.add_with_ids(s.gallery[:1500], s.gallery_labels[:1500] * 2)  # ids routed by id % shards
    ids = idx.add(s.gallery[1500:])                                   # continues after the largest
    assert ids[0] == 1499 * 2 + 1 and idx.ntotal == 2000
    D, I = idx.search(s.probes, 10, nprobe=nprobe)
    assert I.shape == (200, 10) and (I >= 0).all()
    # Every returned score is the owning shard's 1:1 score (up to float summation order: a
    # batch search goes through the batched kernel, verify through the per-entry one).
    v = idx.verify(s.probes.repeat(10, axis=0), I.reshape(-1).copy()).reshape(I.shape)
    np.testing.assert_allclose(v, D, rtol=0, atol=1e-4)
    assert abs(idx.verify(s.probes[0], int(I[0, 0])) - D[0, 0]) < 1e-4

    manifest = idx.save(tmp_path / "g", unsealed=True)
    assert stat.S_IMODE(os.stat(tmp_path / "g" / pdist.MANIFEST).st_mode) == 0o600
    counts = [f["ntotal"] for f in manifest["files"]]
    assert sum(counts) == 2000 and min(counts) > 600
    Ds, Is = oracle_search(tmp_path / "g", manifest, s.probes, 10, nprobe)
    # The oracle searches all 200 probes at once, the shards 64 at a time: equal up to float
    # summation order in the batched kernel, ids equal but at near-ties.
    np.testing.assert_allclose(D, Ds, rtol=0, atol=1e-4)
    swapped = I != Is
    assert swapped.mean() < 0.01 and (not swapped.any() or np.abs(D[swapped] - Ds[swapped]).max() < 1e-4)

    loaded = pdist.ShardedIndex.load(client, tmp_path / "g")
    assert loaded.ntotal == 2000 and loaded.next_id == ids[-1] + 1 and loaded.factory == idx.factory
    D2, I2 = loaded.search(s.probes, 10, nprobe=nprobe)
    assert np.mean(I2 == I) > 0.99  # (its own query batches: equal up to summation order)
    np.testing.assert_allclose(D2, D, rtol=0, atol=1e-4)
    # A loaded gallery enrols more (the files carry the cohort model).
    new = loaded.add(s.probes[:5])
    assert loaded.ntotal == 2005 and new[0] == ids[-1] + 1
    assert (loaded.search(s.probes[:5], 1, nprobe=nprobe)[1][:, 0] == new).all()
    loaded.close()
    idx.close()


def test_load_refuses_tampering(client, data, tmp_path):
    s, xt = data
    idx = sharded(client, "PSlerp8x16", xt, shards=2)
    idx.add(s.gallery[:100])
    with pytest.raises(ValueError, match="secret is required"):
        idx.save(tmp_path)
    idx.save(tmp_path, unsealed=True)
    shard = tmp_path / "shard-00001-of-00002.pslerp"
    b = bytearray(shard.read_bytes())
    b[len(b) // 2] ^= 1
    shard.write_bytes(bytes(b))
    with pytest.raises(ValueError, match="digest"):
        pdist.ShardedIndex.load(client, tmp_path)
    m = json.loads((tmp_path / pdist.MANIFEST).read_text())
    m["files"][0]["file"] = "../elsewhere.pslerp"
    (tmp_path / pdist.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ValueError, match="plain name"):
        pdist.ShardedIndex.load(client, tmp_path)
    idx.close()


def test_add_is_all_or_nothing_and_inputs_are_checked(client, data):
    s, xt = data
    idx = sharded(client, "PSlerp8x16", xt)
    idx.add_with_ids(s.gallery[:300], s.gallery_labels[:300])
    # ids 298, 299 exist: nothing of the batch lands, on any shard.
    with pytest.raises(ValueError, match=r"already in the index: \[298, 299\]"):
        idx.add_with_ids(s.gallery[300:310], np.arange(298, 308, dtype=np.int64))
    assert idx.ntotal == 300
    bad = s.gallery[:4].copy()
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        idx.add(bad)
    with pytest.raises(ValueError, match="float32"):
        idx.add(s.gallery[:4].astype(np.float64))
    with pytest.raises(ValueError, match="shape"):
        idx.search(s.probes[:, :64].copy(), 5)
    with pytest.raises(ValueError, match="duplicate"):
        idx.add_with_ids(s.gallery[:2], np.array([900, 900], np.int64))
    with pytest.raises(RuntimeError, match="unknown id"):
        idx.verify(s.probes[0], 12345)
    assert idx.ntotal == 300
    # One shard failing during the add: what landed on the others is removed again.
    real_submit = idx._submit

    def failing(s, method, *args):
        if method == "add_with_ids" and s == 1:
            return pdist._Failed(RuntimeError("shard 1 refused"))
        return real_submit(s, method, *args)

    idx._submit = failing
    with pytest.raises(pdist.AddError, match="nothing was added") as e:
        idx.add_with_ids(s.gallery[300:330], np.arange(300, 330, dtype=np.int64))
    assert len(e.value.landed) == 0 and idx.ntotal == 300
    idx._submit = real_submit
    idx.add_with_ids(s.gallery[300:330], np.arange(300, 330, dtype=np.int64))  # the shards are consistent
    assert idx.ntotal == 330 and idx.remove_ids(np.arange(300, 330, dtype=np.int64)) == 30
    assert idx.remove_ids(np.array([0, 1, 2, 5000], np.int64)) == 3 and idx.ntotal == 297
    D, I = idx.search(s.probes[:3], 1000)  # k > ntotal: padded
    assert (I[:, 297:] == -1).all() and np.isneginf(D[:, 297:]).all() and (I[:, :297] >= 3).all()
    idx.close()


def test_deduplicate_over_all_shards(client, data, tmp_path):
    s, xt = data
    idx = sharded(client, "PSlerp8x16", xt)
    idx.add_with_ids(s.gallery[:1000], s.gallery_labels[:1000])
    shards = shard_files(tmp_path, idx.save(tmp_path, unsealed=True))
    # A batch of enrolled faces, new ones, and a new one twice; the threshold between an
    # enrolled feature's score against its own entry and the best other entry's.
    batch = np.concatenate([s.gallery[:20], s.gallery[1000:1010], s.gallery[1000:1001]])
    D, _ = idx.search(s.gallery[:20], 2)
    thr = float(D[:, 0].min() + D[:, 1].max()) / 2
    assert D[:, 0].min() > D[:, 1].max()
    r = idx.deduplicate(batch, thr)
    # Gallery matches use the stored keys: the same as every shard's own, merged.
    ref = [sorted((p for sh in shards for p in sh.deduplicate(batch, thr).existing[i]), key=lambda p: (-p[1], p[0]))
           for i in range(len(batch))]
    assert r.existing == ref
    assert [e[0][0] for e in r.existing[:20]] == list(range(20)) and not any(r.existing[20:])
    assert r.cluster[30] == r.cluster[20] == 20 and r.clusters_with_several == 1
    assert r.unique.tolist() == list(range(20, 30)) and r.duplicates_of_existing == 20
    e = idx.deduplicate(batch, thr, enroll=True, ids=np.arange(5000, 5031, dtype=np.int64))
    assert e.enrolled_ids.tolist() == list(range(5020, 5030)) and idx.ntotal == 1010
    again = idx.deduplicate(batch[20:30], thr)
    assert [x[0][0] for x in again.existing] == list(range(5020, 5030)) and len(again.unique) == 0
    idx.close()


def test_secret_sources(tmp_path, monkeypatch):
    secret = os.urandom(32)
    path = tmp_path / "secret"
    path.write_text(secret.hex())
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="group or others"):
        pdist.read_secret_file(str(path))
    os.chmod(path, 0o600)
    assert pdist.read_secret_file(str(path)) == secret
    path.write_text("12ab")
    with pytest.raises(ValueError, match="64 hex digits"):
        pdist.read_secret_file(str(path))
    monkeypatch.setenv("PSLERP_TEST_SECRET", secret.hex().upper())
    plugin = pdist.SecretPlugin(env="PSLERP_TEST_SECRET")  # what each worker runs
    plugin.setup()
    assert pdist._SECRETS["pslerp-secret"] == secret
    plugin.teardown()
    assert "pslerp-secret" not in pdist._SECRETS
    with pytest.raises(ValueError, match="exactly one"):
        pdist.SecretPlugin(secret=secret, path=str(path))
    with pytest.raises(ValueError, match="32 bytes"):
        pdist.SecretPlugin(secret=b"short")


def _capture_frames(monkeypatch):
    """Every frame this process sends to the scheduler or the workers."""
    sent = []
    real = distributed.protocol.dumps

    def recording(*a, **kw):
        frames = real(*a, **kw)
        sent.extend(bytes(f) for f in frames)
        return frames

    monkeypatch.setattr(distributed.protocol, "dumps", recording)
    return sent


def test_secret_never_in_a_task(client, data, tmp_path, monkeypatch):
    s, xt = data
    secret = pslerp.generate_secret() if SEALING else os.urandom(32)
    path = tmp_path / "secret"
    path.write_text(secret.hex() + "\n")   # as pslerp keygen writes it
    os.chmod(path, 0o600)
    sent = _capture_frames(monkeypatch)
    pdist.install_secret(client, path=str(path))   # each worker reads its own file
    idx = sharded(client, "IVF8,PSlerp8x16", xt, secret=secret if SEALING else None)
    idx.add(s.gallery[:500])
    D, I = idx.search(s.probes[:20], 5)
    idx.save(tmp_path / "g", unsealed=not SEALING)
    if SEALING:
        loaded = pdist.ShardedIndex.load(client, tmp_path / "g", secret=secret)
        assert np.array_equal(loaded.search(s.probes[:20], 5)[1], I)
        with pytest.raises(RuntimeError, match="sealed"):
            pslerp.read_index(str(tmp_path / "g" / "shard-00000-of-00003.pslerp"))  # sealed on the worker
        loaded.close()
    # The workers hold it (compared by digest: a closure holding the secret would send it).
    got = client.run(lambda: hashlib.sha256(pdist._SECRETS.get("pslerp-secret", b"")).hexdigest())
    assert list(got.values()) == [hashlib.sha256(secret).hexdigest()] * 2
    assert len(sent) > 20 and not any(secret in f for f in sent)
    # The check sees what it looks for: the plugin given the secret itself sends it (once).
    pdist.install_secret(client, secret=secret)
    assert any(secret in f for f in sent)
    idx.close()


def cli_binary():
    """The built pslerp binary, found as test_cli.py finds it; None when not built."""
    env = os.environ.get("PSLERP_CLI")
    here = pathlib.Path(__file__).resolve().parents[2]
    for c in ([pathlib.Path(env)] if env else []) + [pathlib.Path.cwd() / "tools" / "pslerp",
                                                      here / "build" / "tools" / "pslerp"]:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


def test_cli_enroll_and_search_with_scheduler(client, data, tmp_path):
    exe = cli_binary()
    if exe is None:
        pytest.skip("the pslerp binary is not built (or set PSLERP_CLI)")
    s, xt = data
    for name, a in (("g", s.gallery[:600]), ("ids", s.gallery_labels[:600] + 10), ("t", xt), ("q", s.probes[:40]),
                    ("ql", np.where(s.probe_labels[:40] < 600, s.probe_labels[:40] + 10, -1))):
        np.save(tmp_path / f"{name}.npy", a)
    sched = ["--scheduler", client.scheduler.address]
    factory = "IVF8,PSlerp8x16"
    run = lambda *a: subprocess.run([exe, *map(str, a)], capture_output=True, text=True, timeout=120)  # noqa: E731
    r = run("enroll", tmp_path / "g.npy", "--ids", tmp_path / "ids.npy", "--train", tmp_path / "t.npy",
            "--factory", factory, "--shards", 2, "--out", tmp_path / "gal", *sched)
    assert r.returncode == 2 and "needs its secret" in r.stderr  # a usage error, as the C++ commands give
    r = run("enroll", tmp_path / "g.npy", "--ids", tmp_path / "ids.npy", "--train", tmp_path / "t.npy",
            "--factory", factory, "--shards", 2, "--out", tmp_path / "gal", "--unsealed", *sched)
    assert r.returncode == 0, r.stderr
    assert "enrolled 600 entries into 2 shards" in r.stdout
    r = run("search", tmp_path / "q.npy", "--index", tmp_path / "gal", "-k", 5, "--nprobe", 8,
            "--labels", tmp_path / "ql.npy", "--out", tmp_path / "res", *sched)
    assert r.returncode == 0, r.stderr
    assert "rank-1 identification" in r.stdout
    loaded = pdist.ShardedIndex.load(client, tmp_path / "gal")
    D, I = loaded.search(s.probes[:40], 5, nprobe=8)
    np.testing.assert_array_equal(np.load(tmp_path / "res_ids.npy"), I)
    np.testing.assert_array_equal(np.load(tmp_path / "res_scores.npy"), D)
    assert set(I[I >= 0].tolist()) <= set(range(10, 610))
    loaded.close()


def test_killed_worker_gives_an_error_never_a_partial_result(client, data, tmp_path):
    s, xt = data
    idx = sharded(client, "PSlerp8x16", xt, shards=2, query_batch=32)
    idx.add(s.gallery)
    idx.save(tmp_path, unsealed=True)
    D0, I0 = idx.search(s.probes, 10)
    many = np.tile(s.probes, (80, 1))  # 16000 queries in 500 chunks: seconds of work
    outcome = {}

    def search():
        try:
            outcome["result"] = idx.search(many, 10)
        except Exception as e:  # noqa: BLE001 - inspected below
            outcome["error"] = e

    t = threading.Thread(target=search)
    t.start()
    time.sleep(0.5)
    pids = client.run(os.getpid)
    os.kill(pids[idx._addresses[1]], signal.SIGKILL)
    t.join(60)
    assert not t.is_alive()
    assert "result" not in outcome, "the search finished before the kill: make it longer"
    assert isinstance(outcome["error"], pdist.ShardLostError) and outcome["error"].shard == 1
    with pytest.raises(pdist.ShardLostError, match="shard 1"):
        idx.search(s.probes, 10)
    # The lost shard comes back from its file (nothing was written since the save).
    assert idx.recover() == [1]
    D1, I1 = idx.search(s.probes, 10)
    np.testing.assert_array_equal(I1, I0)
    np.testing.assert_array_equal(D1, D0)
    # With auto_recover a search that finds a shard lost reloads it and answers in full.
    idx.auto_recover = True
    pids = client.run(os.getpid)
    os.kill(pids[idx._addresses[0]], signal.SIGKILL)
    D2, I2 = idx.search(s.probes, 10)
    np.testing.assert_array_equal(I2, I0)
    np.testing.assert_array_equal(D2, D0)
    # A shard written to since its save cannot come back: the error stays.
    idx.add(s.probes[:2])
    pids = client.run(os.getpid)
    os.kill(pids[idx._addresses[0]], signal.SIGKILL)
    with pytest.raises(pdist.ShardLostError, match="written to after its last save"):
        idx.search(s.probes, 10)
    idx.close()
