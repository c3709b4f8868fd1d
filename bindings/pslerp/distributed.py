"""pslerp.distributed: a protected gallery sharded over the workers of a Dask cluster.

The FAISS distributed conventions: train once on the client, ship the trained empty index to
every shard, route entries to shards by id, fan a query out to every shard and merge the top-k
with global ids. Each shard is a pslerp index inside a Dask actor on one worker; shards are
never gathered to the client::

    from dask.distributed import Client
    import pslerp.distributed as pdist
    client = Client("tls://scheduler:8786", security=..., direct_to_workers=True)
    secret = pdist.read_secret_file("/etc/pslerp/secret")      # `pslerp keygen` made it
    pdist.install_secret(client, path="/etc/pslerp/secret")   # each worker reads its own copy
    idx = pdist.ShardedIndex(client, 512, "IVF1024,PSlerp32x16", shards=8, secret=secret)
    idx.train(x_train)                  # on the client; the trained empty index goes to every shard
    idx.add_with_ids(x, ids)            # routed by id % shards; protected on the worker
    D, I = idx.search(q, 10, nprobe=32) # every shard, k-way merge (equal scores: smaller id first)
    idx.save("/srv/gallery")            # one file per shard (written by its worker) + manifest.json
    idx = pdist.ShardedIndex.load(client, "/srv/gallery", secret=secret)

Guarantees:

- Never partial results. A shard whose worker died (or whose actor was re-created, e.g. by a
  restarted worker) makes the call raise ShardLostError naming the shard; ``recover()``
  reloads such shards from their last saved files when nothing was written to them since
  (``auto_recover=True``: searches and verify do it themselves and run once more).
- ``add`` is all-or-nothing: ids are checked against every shard first, and if a shard fails
  during the add the entries that did land are removed again; if that is impossible (a lost
  shard) AddError.landed lists exactly the ids that are in the index.
- Searches are cut into chunks of ``query_batch`` queries with at most two chunks in flight, so
  client and worker memory stay bounded by the chunk size, not the number of queries.
- Secrets (sealed index files) reach the workers through a Dask worker plugin
  (install_secret), never as an argument of a task: shards ask their worker's plugin for it.
  With ``install_secret(client, path=...)`` each worker reads the secret from its own file and
  it never crosses the network; with ``secret=`` it is sent once, inside the plugin's
  registration, so use TLS (README, "Sharded over Dask").
- A ShardedIndex owns its actors: two clients that load the same directory hold two separate
  copies, and neither sees the other's writes.
- Cohort score normalisation (the default norm): the trained index that every shard starts
  from carries its cohort model (index/cohort.h), so all shards normalise alike, and so does a
  loaded gallery.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import stat
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

import pslerp

try:
    import distributed as _dd
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - depends on the system
    _dd = None
    _WorkerPlugin = object

__all__ = ["ShardedIndex", "ShardLostError", "AddError", "ShardedDedupResult", "SecretPlugin", "install_secret",
           "read_secret_file"]

MANIFEST = "manifest.json"
_FORMAT = "pslerp-sharded"
_FORMAT_VERSION = 1
_MAX_MANIFEST_BYTES = 1 << 20
_PLUGIN_NAME = "pslerp-secret"


class ShardLostError(RuntimeError):
    """A shard is unreachable (its worker died) or was re-created empty: no result is returned."""

    def __init__(self, shard: int, address: str, why: str):
        super().__init__(
            f"pslerp.distributed: shard {shard} (worker {address}) is lost: {why}; no result is returned "
            "rather than a partial one. recover() reloads it from its last save, if nothing was written since.")
        self.shard = shard
        self.address = address


class AddError(RuntimeError):
    """An add that failed part-way. ``landed``: the ids that are in the index after the call."""

    def __init__(self, message: str, landed: np.ndarray):
        super().__init__(message)
        self.landed = landed


# ----------------------------------------------------------------------------- serialisation
# The one place that knows pslerp's (de)serialisation signatures (sealed files: issue 11).


def _sealing_available() -> bool:
    return hasattr(pslerp, "generate_secret")


def _check_secret_usable(secret) -> None:
    if secret is not None and not _sealing_available():
        raise ValueError("secret: this pslerp build cannot seal index files (no pslerp.generate_secret)")


def _dump(index, secret) -> np.ndarray:
    _check_secret_usable(secret)
    if not _sealing_available():
        return pslerp.serialize_index(index)
    if secret is None:
        return pslerp.serialize_index(index, unsealed=True)
    return pslerp.serialize_index(index, secret=secret)


def _undump(data, secret):
    _check_secret_usable(secret)
    if not _sealing_available() or secret is None:
        return pslerp.deserialize_index(data)
    return pslerp.deserialize_index(data, secret=secret)


def _digest(data) -> str:
    return hashlib.sha256(memoryview(data).cast("B")).hexdigest()


def _write_private(path: str, data) -> None:
    """data to path atomically (temporary file, fsync, rename), mode 0600."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(memoryview(data).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        if os.path.lexists(path) and not os.path.isfile(path):
            raise ValueError(f"{path}: exists and is not a regular file; not replaced")
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _read_checked(path: str, size: int, sha256: str) -> bytes:
    """The file's bytes, refused unless they have the size and digest the manifest records."""
    st = os.stat(path)
    if st.st_size != size:
        raise ValueError(f"{path}: {st.st_size} bytes, the manifest records {size}")
    with open(path, "rb") as f:
        data = f.read(size + 1)
    if len(data) != size or _digest(data) != sha256:
        raise ValueError(f"{path}: contents do not match the manifest's digest (changed or corrupt)")
    return data


# ----------------------------------------------------------------------------- the worker side


_SECRETS: dict = {}  # per worker process: the secret a SecretPlugin delivered


def read_secret_file(path: str) -> bytes:
    """The secret in a file that `pslerp keygen` wrote: 64 hex digits, a regular file that group
    and others cannot read or write (as the command line requires)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path}: a secret file must be a regular file")
        if st.st_mode & 0o077:
            raise ValueError(f"{path}: a secret file must not be readable or writable by group or others (chmod 600)")
        text = f.read(1024)
    return _secret_from_hex(text, path)


def _secret_from_hex(text, what: str) -> bytes:
    try:
        b = bytes.fromhex(text.decode("ascii").strip() if isinstance(text, bytes) else text.strip())
    except (ValueError, UnicodeDecodeError):
        b = b""
    if len(b) != 32:
        raise ValueError(f"{what}: expected a secret of 64 hex digits")
    return b


class SecretPlugin(_WorkerPlugin):
    """Gives every worker (and every worker that joins later) the secret of sealed index files.

    ``SecretPlugin(path=...)``: each worker reads the secret file (`pslerp keygen`) at that path
    on its own host; ``SecretPlugin(env=NAME)``: from its environment variable NAME (64 hex
    digits). Either way the secret never crosses the network. ``SecretPlugin(secret=...)``: the
    32 bytes travel once, inside the plugin's registration message (to the scheduler, which keeps
    it for workers that join later, and to the workers): use TLS.
    """

    name = _PLUGIN_NAME

    def __init__(self, secret: Optional[bytes] = None, path: Optional[str] = None, env: Optional[str] = None):
        if sum(v is not None for v in (secret, path, env)) != 1:
            raise ValueError("SecretPlugin: give exactly one of secret=, path= and env=")
        if secret is not None and len(secret) != 32:
            raise ValueError("secret: expected 32 bytes (pslerp.generate_secret())")
        self._secret = None if secret is None else bytes(secret)
        self._path, self._env = path, env

    def setup(self, worker=None):
        if self._path is not None:
            _SECRETS[_PLUGIN_NAME] = read_secret_file(self._path)
        elif self._env is not None:
            if self._env not in os.environ:
                raise ValueError(f"environment variable {self._env} is not set on this worker")
            _SECRETS[_PLUGIN_NAME] = _secret_from_hex(os.environ[self._env], f"environment variable {self._env}")
        else:
            _SECRETS[_PLUGIN_NAME] = self._secret

    def teardown(self, worker=None):
        _SECRETS.pop(_PLUGIN_NAME, None)


def install_secret(client, secret: Optional[bytes] = None, path: Optional[str] = None,
                   env: Optional[str] = None) -> None:
    """Registers a SecretPlugin on the cluster (see SecretPlugin for secret= / path= / env=)."""
    client.register_worker_plugin(SecretPlugin(secret=secret, path=path, env=env), name=_PLUGIN_NAME)


def _worker_secret(sealed: bool):
    if not sealed:
        return None
    s = _SECRETS.get(_PLUGIN_NAME)
    if s is None:
        raise RuntimeError("pslerp.distributed: this worker has no secret: call install_secret(client, ...) first")
    return s


class _Shard:
    """One shard, living in a Dask actor. Every answer carries (uid, version): the client checks
    them, so that a shard re-created or changed behind its back is never taken for the real one."""

    def __init__(self, blob, sealed: bool, seed: Optional[int], file: Optional[Tuple[str, int, str]]):
        if file is not None:
            blob = _read_checked(*file)
        self.sealed = sealed
        self.index = _undump(blob, _worker_secret(sealed))
        if seed is not None:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the client warned once
                self.index.set_seed(int(seed))
        self.uid = uuid.uuid4().hex
        self.version = 0

    def _ok(self, value, wrote: bool = False):
        if wrote:
            self.version += 1
        return self.uid, self.version, value

    def hello(self):
        return self._ok((self.index.ntotal, self.index.next_id, self.index.bytes_per_entry))

    def missing(self, ids):
        return self._ok(np.array([not self.index.contains(int(i)) for i in ids], dtype=bool))

    def add_with_ids(self, x, ids):
        self.index.add_with_ids(x, ids)
        return self._ok(self.index.ntotal, wrote=True)

    def remove_ids(self, ids):
        return self._ok(self.index.remove_ids(ids), wrote=True)

    def search(self, q, k, opts):
        return self._ok(self.index.search(q, k, **opts))

    def range_search(self, q, thresh, opts):
        return self._ok(self.index.range_search(q, thresh, **opts))

    def verify(self, q, ids):
        return self._ok(self.index.verify_batch(q, ids))

    def save(self, directory: str, name: str):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        data = _dump(self.index, _worker_secret(self.sealed))
        _write_private(os.path.join(directory, name), data)
        return self._ok({"file": name, "size": int(data.nbytes), "sha256": _digest(data),
                         "ntotal": int(self.index.ntotal)})


# ----------------------------------------------------------------------------- the client side


@dataclass
class ShardedDedupResult:
    """deduplicate()'s outcome, with the fields of pslerp.DedupResult."""

    existing: List[List[Tuple[int, float]]]  #: per batch item: gallery (id, score) >= threshold, best first
    cluster: np.ndarray                      #: per batch item: its cluster (smallest batch index in it)
    unique: np.ndarray                       #: new items: no gallery match, first of a cluster without one
    enrolled_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def duplicates_of_existing(self) -> int:
        return sum(1 for e in self.existing if e)

    @property
    def clusters_with_several(self) -> int:
        if not len(self.cluster):
            return 0
        return int(np.count_nonzero(np.bincount(self.cluster, minlength=len(self.cluster)) > 1))


def _merge_topk(Ds: Sequence[np.ndarray], Is: Sequence[np.ndarray], k: int) -> Tuple[np.ndarray, np.ndarray]:
    """k-way merge of per-shard top-k lists: best score first, equal scores by smaller id
    (index/topk.h), padding (-1, -inf) last."""
    D = np.concatenate(Ds, axis=1)
    I = np.concatenate(Is, axis=1)
    pad = I < 0
    order = np.lexsort((np.where(pad, np.iinfo(np.int64).max, I), -D.astype(np.float64), pad), axis=1)[:, :k]
    return np.take_along_axis(D, order, axis=1), np.take_along_axis(I, order, axis=1)


class _Failed:
    """A shard call that could not be sent."""

    def __init__(self, e: Exception):
        self._e = e

    def result(self, timeout=None):
        raise self._e


def _lost_kind(e: BaseException) -> bool:
    """Whether e says that the shard's worker is gone (not an error the shard itself raised,
    such as an OSError of its save)."""
    import asyncio
    from distributed.comm.core import CommClosedError
    return isinstance(e, (CommClosedError, asyncio.CancelledError)) or \
        type(e).__name__ in ("KilledWorker", "FutureCancelledError", "CancelledError") or \
        (isinstance(e, OSError) and "Unable to contact Actor's worker" in str(e)) or \
        (isinstance(e, ValueError) and "Worker holding Actor was lost" in str(e))


class ShardedIndex:
    """A pslerp index sharded over Dask workers (module docstring).

    Args:
        client: a dask.distributed Client.
        d: raw dimension; factory: a pslerp factory string ("PSlerp8x16", "IVF1024,PSlerp8x16").
        shards: number of shards (default: one per worker), placed round-robin on the workers
            sorted by address. A worker runs its actors' calls one at a time (Dask's actor
            thread) and a shard parallelises inside with OpenMP, so one shard per worker process
            with OMP_NUM_THREADS = its cores is the natural layout.
        secret: the secret of sealed files, for the client's side (the trained index it ships
            and the file it saves); the workers get theirs from install_secret. None: unsealed.
        query_batch: queries per chunk in search / range_search / deduplicate.
        seed: makes keys reproducible, shard s drawing from seed + s (tests, benchmarks only).
        timeout: seconds a call may wait for a shard before it is declared lost (None: no
            limit; a dead worker is still detected from the scheduler's worker list).
        auto_recover: a search, range_search or verify that finds a shard lost calls recover()
            and runs once more (the answer is then complete); without it, ShardLostError.
    """

    def __init__(self, client, d: int, factory: str, shards: Optional[int] = None, *, secret=None,
                 query_batch: int = 4096, seed: Optional[int] = None, timeout: Optional[float] = None,
                 auto_recover: bool = False, _template=None):
        if _dd is None:
            raise ImportError("pslerp.distributed needs Dask distributed (Debian: apt install python3-distributed)")
        _check_secret_usable(secret)
        self.client = client
        self._template = _template if _template is not None else pslerp.index_factory(int(d), factory)
        if _template is None and secret is not None:
            # As `pslerp enroll` does for a sealed gallery: a secret frame, shared by every shard
            # (they are copies of this index) and stored only in sealed files.
            pslerp.enable_secret_frame(self._template)
        self.d = int(self._template.d)
        self.factory = self._template.describe()
        if shards is None:
            shards = len(self._live_workers())
        if int(shards) < 1:
            raise ValueError(f"shards: must be >= 1, got {shards}")
        if query_batch < 1:
            raise ValueError(f"query_batch: must be >= 1, got {query_batch}")
        self.nshards = int(shards)
        self.query_batch = int(query_batch)
        self.timeout = timeout
        self.auto_recover = bool(auto_recover)
        self._secret = secret
        self._seed = seed
        if seed is not None:
            import warnings
            warnings.warn(pslerp._SEED_WARNING, RuntimeWarning, stacklevel=2)
        self._futures: List = []
        self._actors: List = []
        self._addresses: List[str] = []
        self._state: List[Tuple[str, int]] = []  # (uid, version) the client expects of each shard
        self._saved: List[Optional[dict]] = [None] * self.nshards
        self._next_id = 0
        self.bytes_per_entry = None

    # -- placement and calls

    def _live_workers(self) -> set:
        workers = set(self.client.scheduler_info()["workers"])
        if not workers:
            raise RuntimeError("pslerp.distributed: the cluster has no workers")
        return workers

    def _start(self, shard: int, address: str, blob, file=None):
        seed = None if self._seed is None else self._seed + shard
        # Pinned to one worker, never re-run elsewhere: a lost shard is an error, not an empty shard.
        return self.client.submit(_Shard, blob, self._secret is not None, seed, file, actor=True,
                                  workers=[address], allow_other_workers=False, pure=False,
                                  key=f"pslerp-shard-{shard}-{uuid.uuid4().hex}")

    def _ensure_shards(self) -> None:
        if self._actors:
            return
        if not self._template.is_trained:
            raise RuntimeError("pslerp.distributed: train() the index first (an IVF index needs its centroids)")
        blob = _dump(self._template, self._secret)
        workers = sorted(self._live_workers())
        spread = [workers[i % len(workers)] for i in range(self.nshards)]
        blob_future = self.client.scatter(blob, broadcast=True, hash=False) if self.nshards > 1 else blob
        futs = [self._start(s, spread[s], blob_future) for s in range(self.nshards)]
        self._install(futs, spread)

    def _install(self, futs, addresses, shards: Optional[Sequence[int]] = None) -> None:
        shards = list(range(len(futs))) if shards is None else list(shards)
        if not self._actors:
            self._futures = [None] * self.nshards
            self._actors = [None] * self.nshards
            self._addresses = [""] * self.nshards
            self._state = [("", 0)] * self.nshards
        for s, f, a in zip(shards, futs, addresses):
            self._futures[s], self._addresses[s] = f, a
        for s, f in zip(shards, futs):
            self._actors[s] = self._wait_future(s, f)
        calls = [(s, self._submit(s, "hello")) for s in shards]
        for s, fut in calls:
            uid, version, (n, next_id, bpe) = self._wait(s, fut, check=False)
            self._state[s] = (uid, version)
            self._next_id = max(self._next_id, int(next_id))
            self.bytes_per_entry = bpe

    def _wait_future(self, s: int, fut):
        t0 = time.monotonic()
        while True:
            try:
                return fut.result(timeout=0.5)
            except TimeoutError:
                pass
            except Exception as e:
                if _lost_kind(e):
                    raise ShardLostError(s, self._addresses[s], f"starting it failed ({type(e).__name__}: {e})") from e
                raise
            self._check_alive(s, t0)

    def _submit(self, s: int, method: str, *args):
        """Calls method on shard s's actor; a shard known lost gives a future that raises."""
        try:
            return getattr(self._actors[s], method)(*args)
        except Exception as e:  # noqa: BLE001 - "Worker holding Actor was lost" is raised here
            return _Failed(e)

    def _check_alive(self, s: int, t0: float) -> None:
        addr = self._addresses[s]
        if addr not in self.client.scheduler_info()["workers"]:
            raise ShardLostError(s, addr, "its worker left the cluster")
        if self.timeout is not None and time.monotonic() - t0 > self.timeout:
            raise ShardLostError(s, addr, f"no answer within {self.timeout} s")

    def _wait(self, s: int, fut, check: bool = True, wrote: bool = False):
        """A shard call's (uid, version, value), raising ShardLostError if the shard is lost."""
        t0 = time.monotonic()
        while True:
            try:
                out = fut.result(timeout=0.5)
                break
            except TimeoutError:
                self._check_alive(s, t0)
            except Exception as e:
                if _lost_kind(e):
                    raise ShardLostError(s, self._addresses[s], f"{type(e).__name__}: {e}") from e
                raise
        uid, version, value = out
        if check:
            want_uid, want_version = self._state[s]
            if uid != want_uid or version != want_version + int(wrote):
                raise ShardLostError(s, self._addresses[s], "it was re-created or changed by another client")
            self._state[s] = (uid, version)
        return out

    def _call_all(self, method: str, shards: Sequence[int], args_of, wrote: bool = False) -> dict:
        """Calls method on every shard in parallel; {shard: value}. The first error is raised
        after every call has finished (or been declared lost)."""
        self._ensure_shards()
        futs = {s: self._submit(s, method, *args_of(s)) for s in shards}
        out, err = {}, None
        for s, f in futs.items():
            try:
                out[s] = self._wait(s, f, wrote=wrote)[2]
            except Exception as e:  # noqa: BLE001 - re-raised below
                err = err or e
        if err is not None:
            raise err
        return out

    # -- validation

    def _features(self, x, name: str = "x") -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            raise ValueError(f"{name}: expected a numpy float32 array, got "
                             f"{type(x).__name__}{'' if not isinstance(x, np.ndarray) else ' of ' + str(x.dtype)}")
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"{name}: expected shape (n, {self.d}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name}: NaN or infinite values")
        p = self._template.params
        g = x.reshape(x.shape[0], p.groups, -1)
        if x.shape[0] and (np.einsum("ngd,ngd->ng", g, g) == 0).any():
            raise ValueError(f"{name}: a group of zero norm")
        return np.ascontiguousarray(x)

    def _ids(self, ids, n: int) -> np.ndarray:
        if not isinstance(ids, np.ndarray) or ids.dtype != np.int64 or ids.shape != (n,):
            raise ValueError(f"ids: expected a numpy int64 array of shape ({n},)")
        if n and ids.min() < 0:
            raise ValueError("ids: must be >= 0")
        if len(np.unique(ids)) != n:
            raise ValueError("ids: duplicate ids in the batch")
        return np.ascontiguousarray(ids)

    def _route(self, ids: np.ndarray) -> dict:
        owner = ids % self.nshards
        return {s: np.flatnonzero(owner == s) for s in range(self.nshards) if (owner == s).any()}

    @staticmethod
    def _options(nprobe: Optional[int]) -> dict:
        return {} if nprobe is None else {"nprobe": int(nprobe)}

    # -- the index API

    @property
    def is_trained(self) -> bool:
        return bool(self._template.is_trained)

    def train(self, x: np.ndarray) -> None:
        """Trains on the client (centring, IVF centroids); the shards are made from the result."""
        if self._actors:
            raise RuntimeError("pslerp.distributed: already trained and shipped to the shards")
        x = self._features(x)
        self._template.train(x)  # also fits the cohort model, unless set_cohort() gave one
        self._ensure_shards()

    def set_cohort(self, x: np.ndarray) -> None:
        """Fits the cohort model of score normalisation (params.norm "cohort") from other people's
        features, instead of train()'s vectors: call it before train(), which ships the model to
        the shards with the trained index."""
        if self._actors:
            raise RuntimeError("pslerp.distributed: set_cohort() goes before train(): the shards already have "
                               "their model")
        self._template.set_cohort(self._features(x))

    @property
    def ntotal(self) -> int:
        return int(sum(v[0] for v in self._call_all("hello", range(self.nshards), lambda s: ()).values()))

    def __len__(self) -> int:
        return self.ntotal

    @property
    def next_id(self) -> int:
        return self._next_id

    def add(self, x: np.ndarray) -> np.ndarray:
        """Adds under the ids next_id, next_id + 1, ...; returns them."""
        x = self._features(x)
        ids = np.arange(self._next_id, self._next_id + x.shape[0], dtype=np.int64)
        self.add_with_ids(x, ids)
        return ids

    def add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        """Routes entry i to shard ids[i] % shards; all-or-nothing (AddError otherwise)."""
        x = self._features(x)
        ids = self._ids(ids, x.shape[0])
        if x.shape[0] == 0:
            return
        self._ensure_shards()
        parts = self._route(ids)
        missing = self._call_all("missing", parts, lambda s: (ids[parts[s]],))
        present = np.sort(np.concatenate([ids[parts[s]][~m] for s, m in missing.items()]))
        if len(present):
            raise ValueError(f"ids: already in the index: {present[:10].tolist()}{' ...' if len(present) > 10 else ''}")
        futs = {s: self._submit(s, "add_with_ids", x[rows], ids[rows]) for s, rows in parts.items()}
        done, err = [], None
        for s, f in futs.items():
            try:
                self._wait(s, f, wrote=True)
                done.append(s)
            except Exception as e:  # noqa: BLE001
                err = err or e
        if err is None:
            self._next_id = max(self._next_id, int(ids.max()) + 1)
            self._mark_written(parts)
            return
        landed = []
        for s in done:  # undo, so that the call changes nothing
            try:
                self._wait(s, self._submit(s, "remove_ids", ids[parts[s]]), wrote=True)
            except Exception:  # noqa: BLE001 - reported through landed
                landed.append(ids[parts[s]])
        self._mark_written({s: None for s in done})
        landed = np.sort(np.concatenate(landed)) if landed else np.empty(0, np.int64)
        raise AddError(f"pslerp.distributed: add failed ({err}); "
                       + ("nothing was added" if not len(landed) else f"{len(landed)} ids landed (AddError.landed)"),
                       landed) from err

    def remove_ids(self, ids) -> int:
        """Removes these ids from their shards; returns how many were present."""
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
        if ids.size == 0:
            return 0
        parts = self._route(np.abs(ids))
        out = self._call_all("remove_ids", parts, lambda s: (ids[parts[s]],), wrote=True)
        self._mark_written(parts)
        return int(sum(out.values()))

    def _read(self, fn):
        """fn(); with auto_recover, once more after recover() when a shard was lost."""
        try:
            return fn()
        except ShardLostError:
            if not self.auto_recover:
                raise
            self.recover()  # raises ShardLostError itself when a shard cannot come back
            return fn()

    def _chunks(self, n: int):
        return [(i, min(n, i + self.query_batch)) for i in range(0, n, self.query_batch)]

    def _pipelined(self, method: str, q: np.ndarray, args, merge) -> list:
        """method(q[chunk], *args) on every shard, chunk by chunk with two chunks in flight;
        merge({shard: value}) per chunk, in order."""
        self._ensure_shards()
        chunks = self._chunks(q.shape[0])
        out, inflight = [], []

        def submit(c):
            a, b = chunks[c]
            return {s: self._submit(s, method, q[a:b], *args) for s in range(self.nshards)}

        def collect(futs):
            vals, err = {}, None
            for s, f in futs.items():
                try:
                    vals[s] = self._wait(s, f)[2]
                except Exception as e:  # noqa: BLE001
                    err = err or e
            if err is not None:
                raise err
            return merge(vals)

        for c in range(len(chunks)):
            inflight.append(submit(c))
            if len(inflight) == 2:
                out.append(collect(inflight.pop(0)))
        while inflight:
            out.append(collect(inflight.pop(0)))
        return out

    def search(self, q: np.ndarray, k: int, nprobe: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """k best entries of every shard for each probe q (n, d): (D (n, k), I (n, k) global ids)."""
        q = self._features(q, "q")
        if int(k) <= 0:
            raise ValueError(f"k: must be > 0, got {k}")
        k = int(k)
        if q.shape[0] == 0:
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        parts = self._read(lambda: self._pipelined(
                "search", q, (k, self._options(nprobe)),
                lambda v: _merge_topk([v[s][0] for s in sorted(v)], [v[s][1] for s in sorted(v)], k)))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def range_search(self, q: np.ndarray, thresh: float, nprobe: Optional[int] = None):
        """Every entry scoring >= thresh: (lims (n+1,), D, I), each probe's results best first."""
        q = self._features(q, "q")
        if not np.isfinite(thresh):
            raise ValueError("thresh: must be finite")

        def merge(v):
            n = len(v[0][0]) - 1
            lims, Ds, Is = [0], [], []
            for i in range(n):
                d = np.concatenate([v[s][1][v[s][0][i]:v[s][0][i + 1]] for s in sorted(v)])
                ids = np.concatenate([v[s][2][v[s][0][i]:v[s][0][i + 1]] for s in sorted(v)])
                o = np.lexsort((ids, -d.astype(np.float64)))
                Ds.append(d[o]), Is.append(ids[o]), lims.append(lims[-1] + len(o))
            return np.array(lims, np.int64), Ds, Is

        parts = self._read(lambda: self._pipelined("range_search", q, (float(thresh), self._options(nprobe)), merge))
        lims, Ds, Is = [np.zeros(1, np.int64)], [], []
        for l, d, i in parts:
            lims.append(l[1:] + lims[-1][-1])
            Ds += d
            Is += i
        D = np.concatenate(Ds) if Ds else np.empty(0, np.float32)
        I = np.concatenate(Is) if Is else np.empty(0, np.int64)
        return np.concatenate(lims), D.astype(np.float32), I.astype(np.int64)

    def verify(self, q: np.ndarray, id):
        """1:1 score on the shard that owns the id. q (d,) with an int id -> float; q (n, d) with
        ids (n,) int64 -> (n,) float32. Unknown ids raise RuntimeError."""
        if isinstance(q, np.ndarray) and q.ndim == 1:
            if not isinstance(id, (int, np.integer)):
                raise ValueError("id: expected an int for a single probe")
            return float(self.verify(q.reshape(1, -1), np.array([id], np.int64))[0])
        q = self._features(q, "q")
        ids = np.asarray(id)
        if ids.dtype != np.int64 or ids.shape != (q.shape[0],):
            raise ValueError(f"ids: expected a numpy int64 array of shape ({q.shape[0]},)")
        if len(ids) and ids.min() < 0:
            raise RuntimeError(f"pslerp: unknown id {int(ids.min())}")
        parts = self._route(ids)
        vals = self._read(lambda: self._call_all("verify", parts, lambda s: (q[parts[s]], ids[parts[s]])))
        out = np.empty(len(ids), np.float32)
        for s, rows in parts.items():
            out[rows] = vals[s]
        return out

    def deduplicate(self, x: np.ndarray, threshold: float = 0.9, enroll: bool = False, ids=None,
                    nprobe: Optional[int] = None) -> ShardedDedupResult:
        """pslerp.deduplicate over every shard: gallery matches (range search on all shards) and
        clusters within the batch (on the client, under fresh keys, as the C++ deduplicate does);
        enroll=True adds one representative per new identity (under ids[i] when given)."""
        x = self._features(x)
        if not np.isfinite(threshold):
            raise ValueError("threshold: must be finite")
        if ids is not None:
            ids = self._ids(ids, x.shape[0])
        n = x.shape[0]
        lims, D, I = self.range_search(x, threshold, nprobe)
        existing = [list(zip(I[lims[i]:lims[i + 1]].tolist(), D[lims[i]:lims[i + 1]].tolist())) for i in range(n)]
        # Within the batch: the C++ deduplicate on an empty copy of the trained index (same
        # parameters and centring) has no gallery match and so gives the clusters alone.
        scratch = self._template.clone()
        if self._seed is not None:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                scratch.set_seed(self._seed + self.nshards)
        cluster = np.asarray(scratch.deduplicate(x, float(threshold)).cluster, np.int64) if n else np.empty(0, np.int64)
        has_existing = np.zeros(n, bool)
        for i in range(n):
            if existing[i]:
                has_existing[cluster[i]] = True
        unique = np.array([i for i in range(n) if cluster[i] == i and not has_existing[i]], np.int64)
        res = ShardedDedupResult(existing, cluster, unique)
        if enroll and len(unique):
            new_ids = ids[unique] if ids is not None else np.arange(self._next_id, self._next_id + len(unique),
                                                                      dtype=np.int64)
            self.add_with_ids(np.ascontiguousarray(x[unique]), new_ids)
            res.enrolled_ids = new_ids
        return res

    # -- files

    def _mark_written(self, shards) -> None:
        for s in shards:
            self._saved[s] = None

    def save(self, directory: str, unsealed: bool = False) -> dict:
        """Each worker writes its shard to directory/shard-XXXXX-of-YYYYY.pslerp (a shared file
        system, or the same path on every host); the client writes trained.pslerp (the trained
        empty index) and manifest.json (shard files, sizes, SHA-256, d, factory, id routing).
        Files are written atomically, mode 0600, sealed under the secret; without one,
        unsealed=True must be given (anyone who reads clear files gets keys and templates).
        Returns the manifest."""
        if (self._secret is None) != bool(unsealed):
            raise ValueError("save: give the ShardedIndex a secret (sealed files) or unsealed=True, not both"
                             if unsealed else "save: a secret is required (ShardedIndex(..., secret=...)); "
                             "unsealed=True writes clear files, which expose keys and templates")
        self._ensure_shards()
        directory = os.path.abspath(directory)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        names = {s: f"shard-{s:05d}-of-{self.nshards:05d}.pslerp" for s in range(self.nshards)}
        files = self._call_all("save", range(self.nshards), lambda s: (directory, names[s]))
        for s in range(self.nshards):  # where the file is, for load() to find it without a shared file system
            files[s]["host"] = _host_of(self._addresses[s])
        tmpl = _dump(self._template, self._secret)
        _write_private(os.path.join(directory, "trained.pslerp"), tmpl)
        manifest = {
            "format": _FORMAT, "version": _FORMAT_VERSION, "d": self.d, "factory": self.factory,
            "sealed": self._secret is not None, "routing": "id % shards", "shards": self.nshards,
            "next_id": self._next_id,
            "trained": {"file": "trained.pslerp", "size": int(tmpl.nbytes), "sha256": _digest(tmpl)},
            "files": [files[s] for s in range(self.nshards)],
        }
        _write_private(os.path.join(directory, MANIFEST), json.dumps(manifest, indent=1).encode())
        self._saved = [dict(files[s], path=os.path.join(directory, names[s])) for s in range(self.nshards)]
        return manifest

    @classmethod
    def load(cls, client, directory: str, *, secret=None, query_batch: int = 4096, timeout: Optional[float] = None,
             auto_recover: bool = False) -> "ShardedIndex":
        """Restores a save(): every shard file is checked against the manifest's size and digest
        on its worker before it is read."""
        directory = os.path.abspath(directory)
        m = _read_manifest(directory)
        if m["sealed"] != (secret is not None):
            raise ValueError("secret: " + ("the index is sealed: give its secret" if m["sealed"]
                                           else "the index is not sealed: give no secret"))
        t = m["trained"]
        template = _undump(_read_checked(os.path.join(directory, t["file"]), t["size"], t["sha256"]), secret)
        if template.d != m["d"]:
            raise ValueError(f"{directory}: trained.pslerp has dimension {template.d}, the manifest {m['d']}")
        self = cls(client, m["d"], m["factory"], m["shards"], secret=secret, query_batch=query_batch,
                   timeout=timeout, auto_recover=auto_recover, _template=template)
        live = sorted(self._live_workers())
        by_host = {}
        for a in live:
            by_host.setdefault(_host_of(a), []).append(a)
        addrs = []
        for s, f in enumerate(m["files"]):
            on_host = by_host.get(f.get("host"), [])
            addrs.append(on_host[s % len(on_host)] if on_host else live[s % len(live)])
        futs = [self._start(s, addrs[s], None, (os.path.join(directory, f["file"]), f["size"], f["sha256"]))
                for s, f in enumerate(m["files"])]
        self._install(futs, addrs)
        self._next_id = max(self._next_id, int(m["next_id"]))
        self._saved = [dict(f, path=os.path.join(directory, f["file"])) for f in m["files"]]
        return self

    def recover(self, wait: float = 30.0) -> List[int]:
        """Restarts every lost shard from its last saved file, if it was saved and not written
        since (ShardLostError otherwise), on the live workers holding fewest shards, never on
        the worker it was lost on; waits up to `wait` seconds for such a worker when there is
        none (one being restarted). Returns the shards restarted."""
        live = set(self.client.scheduler_info()["workers"])
        lost = []
        for s in range(self.nshards):
            try:
                if self._addresses[s] not in live:
                    raise ShardLostError(s, self._addresses[s], "its worker left the cluster")
                self._wait(s, self._submit(s, "hello"))
            except ShardLostError:
                lost.append(s)
        for s in lost:
            if self._saved[s] is None:
                raise ShardLostError(s, self._addresses[s], "it was written to after its last save (or never saved)")
        dead = {self._addresses[s] for s in lost}
        deadline = time.monotonic() + wait
        while lost:
            live = set(self.client.scheduler_info()["workers"]) - dead
            if live:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"pslerp.distributed: no live worker to reload shards {lost} on")
            time.sleep(0.2)
        load = {a: sum(1 for t in range(self.nshards) if t not in lost and self._addresses[t] == a) for a in live}
        for s in lost:
            saved = self._saved[s]
            addr = min(sorted(load), key=lambda a: load[a])
            load[addr] += 1
            self.client.cancel(self._futures[s])
            fut = self._start(s, addr, None, (saved["path"], saved["size"], saved["sha256"]))
            self._install([fut], [addr], [s])
        return lost

    def close(self) -> None:
        """Releases the shards (their entries are dropped: save() first to keep them)."""
        if self._futures:
            self.client.cancel([f for f in self._futures if f is not None])
        self._futures, self._actors = [], []


def _host_of(address: str) -> str:
    from distributed.comm import get_address_host
    return get_address_host(address)


def _read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    with open(path, "rb") as f:
        raw = f.read(_MAX_MANIFEST_BYTES + 1)
    if len(raw) > _MAX_MANIFEST_BYTES:
        raise ValueError(f"{path}: larger than {_MAX_MANIFEST_BYTES} bytes: not a manifest")
    try:
        m = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({e})") from None

    def bad(why):
        return ValueError(f"{path}: {why}")

    if not isinstance(m, dict) or m.get("format") != _FORMAT:
        raise bad(f"not a {_FORMAT} manifest")
    if m.get("version") != _FORMAT_VERSION:
        raise bad(f"version {m.get('version')!r}, this pslerp reads {_FORMAT_VERSION}")
    if m.get("routing") != "id % shards":
        raise bad(f"unknown routing {m.get('routing')!r}")
    for key, kind in (("d", int), ("shards", int), ("next_id", int), ("factory", str), ("sealed", bool)):
        if not isinstance(m.get(key), kind):
            raise bad(f"field {key!r} missing or not {kind.__name__}")
    files = m.get("files")
    if not isinstance(files, list) or len(files) != m["shards"] or m["shards"] < 1:
        raise bad("'files' must list one entry per shard")
    for f in files + [m.get("trained")]:
        if not isinstance(f, dict) or not isinstance(f.get("file"), str) or not isinstance(f.get("size"), int) \
                or not isinstance(f.get("sha256"), str):
            raise bad("every file entry needs file, size and sha256")
        if os.path.basename(f["file"]) != f["file"] or f["file"] in ("", ".", ".."):
            raise bad(f"file name {f['file']!r} is not a plain name inside the directory")
    return m


# ----------------------------------------------------------------------------- command line
# `pslerp enroll|search --scheduler tcp://host:8786 ...` run here (tools/cmd_dask.cpp).


def _load_array(path: str, dtype) -> np.ndarray:
    a = np.load(path, allow_pickle=False, mmap_mode="r")
    if a.dtype != dtype:
        raise ValueError(f"{path}: expected {np.dtype(dtype).name}, got {a.dtype}")
    return np.ascontiguousarray(a)


def _connect(args, writes: bool, usage):
    from distributed import Client
    if args.secret_file and args.secret_env:
        usage("give at most one of --secret-file and --secret-env")
    if writes and (args.secret_file or args.secret_env) and args.unsealed:
        usage("give --unsealed or a secret (--secret-file / --secret-env), not both")
    if writes and not (args.secret_file or args.secret_env or args.unsealed):
        usage("writing an index needs its secret: --secret-file PATH (from pslerp keygen) or --secret-env NAME, "
              "or --unsealed for clear files (anyone who reads them gets keys and templates)")
    secret = None
    if args.secret_file:
        secret = read_secret_file(args.secret_file)
    elif args.secret_env:
        if args.secret_env not in os.environ:
            raise ValueError(f"--secret-env: environment variable {args.secret_env} is not set")
        secret = _secret_from_hex(os.environ[args.secret_env], f"environment variable {args.secret_env}")
    security = None
    if args.tls_ca_file:
        from distributed.security import Security
        security = Security(tls_ca_file=args.tls_ca_file, tls_client_cert=args.tls_cert,
                            tls_client_key=args.tls_key, require_encryption=True)
    client = Client(args.scheduler, security=security, timeout=args.connect_timeout, direct_to_workers=True)
    if args.secret_file:
        install_secret(client, path=os.path.abspath(args.secret_file))  # the same path on every worker host
    elif args.secret_env:
        install_secret(client, env=args.secret_env)                      # the same variable on every worker
    return client, secret


def _cli(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="pslerp", description="pslerp enroll / search sharded over a Dask cluster")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--scheduler", required=True, help="Dask scheduler address, e.g. tcp://host:8786")
    common.add_argument("--secret-file", help="sealed files: the secret file (pslerp keygen), present at this path "
                                              "on this host and every worker host (it never crosses the network)")
    common.add_argument("--secret-env", help="sealed files: an environment variable (64 hex digits) set here and "
                                             "on every worker")
    common.add_argument("--tls-ca-file"), common.add_argument("--tls-cert"), common.add_argument("--tls-key")
    common.add_argument("--connect-timeout", type=float, default=30)
    common.add_argument("--threads", type=int, help="ignored: each worker's threads are set by `dask worker`")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("enroll", parents=[common], help="enrol features into a sharded index directory")
    e.add_argument("features"), e.add_argument("--out", "-o", required=True)
    e.add_argument("--factory", default="PSlerp8x16"), e.add_argument("--ids"), e.add_argument("--train")
    e.add_argument("--train-on-enrolled", action="store_true"), e.add_argument("--no-train", action="store_true")
    e.add_argument("--cohort", help="features of other people to fit the score normalisation's cohort model from")
    e.add_argument("--shards", type=int), e.add_argument("--batch", type=int, default=20000)
    e.add_argument("--seed", type=int, help="tests only")
    e.add_argument("--unsealed", action="store_true", help="write clear files (anyone who reads them gets the keys)")
    s = sub.add_parser("search", parents=[common], help="search a sharded index directory")
    s.add_argument("probes"), s.add_argument("--index", required=True), s.add_argument("-k", type=int, default=10)
    s.add_argument("--nprobe", type=int), s.add_argument("--labels"), s.add_argument("--out", "-o")
    a = p.parse_args(argv)
    if a.cmd == "enroll" and sum([bool(a.train), a.train_on_enrolled, a.no_train]) > 1:
        p.error("give at most one of --train, --train-on-enrolled, --no-train")
    if a.cmd == "enroll" and a.factory.startswith("IVF") and not a.train and not a.train_on_enrolled:
        p.error("an IVF index needs --train FILE (features of other people than the enrolled ones: its centroids "
                "are stored) or --train-on-enrolled")
    client, secret = _connect(a, a.cmd == "enroll", p.error)
    try:
        if a.cmd == "enroll":
            x = _load_array(a.features, np.float32)
            ids = _load_array(a.ids, np.int64).reshape(-1) if a.ids else np.arange(len(x), dtype=np.int64)
            if x.ndim != 2 or ids.shape != (len(x),):
                raise ValueError(f"{a.features}: expected (n, d) features and as many ids, got {x.shape} "
                                 f"and {ids.shape}")
            idx = ShardedIndex(client, x.shape[1], a.factory, a.shards, secret=secret, seed=a.seed)
            if a.cohort:
                idx.set_cohort(_load_array(a.cohort, np.float32))
            if a.train:
                idx.train(_load_array(a.train, np.float32))
            elif not a.no_train:
                idx.train(x)
            else:
                idx._ensure_shards()
            t0 = time.perf_counter()
            for i in range(0, len(x), a.batch):
                idx.add_with_ids(x[i:i + a.batch], ids[i:i + a.batch])
            t1 = time.perf_counter()
            idx.save(a.out, unsealed=a.unsealed)
            print(f"enrolled {len(x)} entries into {idx.nshards} shards ({idx.factory}): {t1 - t0:.3f} s "
                  f"({len(x) / max(t1 - t0, 1e-9):.1f} entries/s); wrote {a.out}/{MANIFEST}")
        else:
            idx = ShardedIndex.load(client, a.index, secret=secret)
            q = _load_array(a.probes, np.float32)
            t0 = time.perf_counter()
            D, I = idx.search(q, a.k, nprobe=a.nprobe)
            t1 = time.perf_counter()
            print(f"searched {len(q)} probes against {idx.ntotal} entries in {idx.nshards} shards: {t1 - t0:.3f} s "
                  f"({len(q) / max(t1 - t0, 1e-9):.1f} queries/s)")
            if a.labels:
                truth = _load_array(a.labels, np.int64).reshape(-1)
                if truth.shape != (len(q),):
                    raise ValueError(f"{a.labels}: {truth.size} labels for {len(q)} probes")
                mated = truth >= 0
                hit = int((I[mated, 0] == truth[mated]).sum())
                if mated.any():
                    print(f"rank-1 identification: {hit / mated.sum():.4f} ({hit} of {int(mated.sum())} mated probes)")
            if a.out:
                for suffix, arr in (("_scores.npy", D), ("_ids.npy", I)):
                    buf = io.BytesIO()
                    np.save(buf, arr)
                    _write_private(a.out + suffix, buf.getbuffer())
                print(f"wrote {a.out}_scores.npy and {a.out}_ids.npy")
            else:
                for i in range(min(len(q), 5)):
                    best = [f"  {I[i, j]} ({D[i, j]:.4f})" for j in range(min(a.k, 5)) if I[i, j] >= 0]
                    print(f"probe {i}:" + "".join(best))
    finally:
        client.close()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _cli(argv)
    except (ValueError, RuntimeError, OSError, ImportError) as e:
        print(f"pslerp {argv[0] if argv else ''}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # Run through the importable module, not __main__: classes that travel to the workers
    # (SecretPlugin, _Shard) must be found there by name.
    from pslerp.distributed import main as _main
    sys.exit(_main())
