"""Enrolment and search throughput of pslerp.distributed on a LocalCluster of 1 and 2 worker
processes (one thread each), against one in-process index at the same N, and the per-shard
figures that a projection to a large gallery needs (bench/RESULTS.md "Sharded over Dask").

    cd build && OMP_NUM_THREADS=1 PYTHONPATH=python /usr/bin/python3 ../bench/bench_distributed.py \
        --n 100000 --d 512 --nlist 256 --nprobe 16 --queries 2000

Every index (in-process and each worker) runs its OpenMP loops on one thread, so the 1-worker
row compares Dask's overhead at equal compute and the 2-worker row shows the scaling.
"""

import argparse
import os
import subprocess
import sys
import time
import warnings

import pslerp
import pslerp.distributed as pdist


def now():
    return time.perf_counter()


def git_commit():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def timed(fn, cpu_of):
    """(wall seconds, CPU seconds of the processes that compute, result)."""
    c0, t0 = cpu_of(), now()
    out = fn()
    return now() - t0, cpu_of() - c0, out


def best_of(repeats, fn, cpu_of):
    """The fastest of `repeats` runs (other work on the machine only ever slows a run down)."""
    runs = [timed(fn, cpu_of) for _ in range(repeats)]
    return min(runs, key=lambda r: r[0])


def adds(idx, x, batch):
    for i in range(0, len(x), batch):
        idx.add(x[i:i + batch])


def in_process(args, factory, xt, x, q):
    idx = pslerp.index_factory(args.d, factory)
    idx.set_seed(args.seed)
    idx.train(xt)
    t_add, c_add, _ = timed(lambda: adds(idx, x, args.batch), time.process_time)
    idx.search(q[:64], args.k, nprobe=args.nprobe)  # warm-up
    t_search, c_search, (D, I) = best_of(args.repeats, lambda: idx.search(q, args.k, nprobe=args.nprobe),
                                         time.process_time)
    return {"add": t_add, "add_cpu": c_add, "search": t_search, "search_cpu": c_search,
            "bpe": idx.bytes_per_entry, "I": I}


def sharded(args, factory, xt, x, q, workers):
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=":0", silence_logs=50)
    client = Client(cluster, direct_to_workers=True)

    def workers_cpu():  # CPU seconds of every worker process so far
        return sum(client.run(time.process_time).values())

    try:
        idx = pdist.ShardedIndex(client, args.d, factory, shards=workers, seed=args.seed,
                                 query_batch=args.query_batch)
        t_ship, _, _ = timed(lambda: idx.train(xt), time.process_time)  # k-means on the client, then shipped
        t_add, c_add, _ = timed(lambda: adds(idx, x, args.batch), workers_cpu)
        idx.search(q[:64], args.k, nprobe=args.nprobe)
        t_search, c_search, (D, I) = best_of(args.repeats, lambda: idx.search(q, args.k, nprobe=args.nprobe),
                                             workers_cpu)
        # The client's own share: the k-way merge of the shards' lists for every query.
        t_merge, _, _ = timed(lambda: pdist._merge_topk([D] * workers, [I] * workers, args.k), time.process_time)
        return {"add": t_add, "add_cpu": c_add, "search": t_search, "search_cpu": c_search, "ship": t_ship,
                "merge": t_merge, "I": I, "ntotal": idx.ntotal}
    finally:
        client.close()
        cluster.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100000)
    p.add_argument("--d", type=int, default=512, help="raw dimension, groups of 16")
    p.add_argument("--nlist", type=int, default=256, help="0: exhaustive index")
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--train", type=int, default=20000)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--batch", type=int, default=20000, help="entries per add call")
    p.add_argument("--query-batch", type=int, default=4096, help="queries per chunk")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="searches timed; the fastest is reported")
    args = p.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # the seed's warning (benchmark)
    groups = args.d // 16
    factory = f"IVF{args.nlist},PSlerp{groups}x16" if args.nlist else f"PSlerp{groups}x16"
    if not args.nlist:
        args.nprobe = None
    s = pslerp.synth(groups=groups, gallery_size=args.n, mated_probes=args.queries, seed=args.seed)
    xt, _ = pslerp.synth(identities=args.train, samples_per_identity=1, groups=groups, seed=args.seed + 1000)
    x, q = s.gallery, s.probes
    print(f"# bench_distributed: commit {git_commit()}, {factory}, N {args.n}, d {args.d}, nprobe {args.nprobe}, "
          f"{args.queries} queries, k {args.k}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average before {os.getloadavg()[0]:.2f}")
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    base = in_process(args, factory, xt, x, q)
    mated = s.probe_labels >= 0
    rank1 = lambda I: float((I[mated, 0] == s.probe_labels[mated]).mean())  # noqa: E731
    rows = [("in-process index", base, "")]
    for w in [int(v) for v in args.workers.split(",")]:
        r = sharded(args, factory, xt, x, q, w)
        assert r["ntotal"] == args.n
        rows.append((f"ShardedIndex, {w} worker{'s' if w > 1 else ''}", r,
                     f"train + ship {r['ship']:.2f} s; merge {1e6 * r['merge'] / args.queries:.1f} us/query"))
    print(f"# load average after {os.getloadavg()[0]:.2f}; bytes per entry {base['bpe']}")
    print("| system | enrol s (CPU s) | entries/s | vs in-process | search s (CPU s) | QPS | vs in-process | "
          "rank-1 | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r, note in rows:
        print(f"| {name} | {r['add']:.2f} ({r['add_cpu']:.2f}) | {args.n / r['add']:,.0f} | "
              f"{base['add'] / r['add']:.2f}x | {r['search']:.2f} ({r['search_cpu']:.2f}) | "
              f"{args.queries / r['search']:,.1f} | {base['search'] / r['search']:.2f}x | {rank1(r['I']):.3f} | {note} |")
    scanned = 1.0 if not args.nlist else min(1.0, args.nprobe / args.nlist)
    for what, t in (("wall", base["search"]), ("CPU", base["search_cpu"])):
        print(f"# in-process, {what} time: {1e9 * t / (args.queries * args.n * scanned):.1f} ns per scanned entry "
              f"per query (scanned fraction {scanned:.4f} nominal), "
              f"{1e6 * (base['add'] if what == 'wall' else base['add_cpu']) / args.n:.1f} us per enrolled entry")
    print(f"# {base['bpe']} bytes per entry")


if __name__ == "__main__":
    main()
