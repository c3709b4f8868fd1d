// pslerp bench: protected search beside FAISS on a synthetic gallery, in one run. The full
// drivers (sizes, thread counts, coarse sweeps, plots) are in bench/.
#include <omp.h>

#include <cstdio>
#include <iostream>

#include <faiss/IndexFlat.h>
#include <faiss/index_factory.h>

#include "absl/strings/str_format.h"
#include "index/factory.h"
#include "index/kernels/scan.h"
#include "plugin/synth.h"
#include "tools/common.h"
#include "tools/measure.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp bench [--n 100000] [--queries 256] [--groups 8] [--group-dim 16]\n"
        "                    [--factory PSlerp8x16[,COARSE]] [-k 10] [--repeats 5] [--seed 42]\n"
        "                    [--k-factor N] [--nprobe N] [--ef-search N]\n"
        "Times the protected index against FAISS on the same raw vectors (IndexFlatIP, and the same\n"
        "coarse factory string when one is given), medians of repeats, and reports recall@k of the\n"
        "coarse-then-refine search against exhaustive protected search.\n";

absl::Status run(Args& args) {
    auto n = args.integer("n", 100000);
    auto nq = args.integer("queries", 256);
    auto groups = args.integer("groups", 8);
    auto gd = args.integer("group-dim", 16);
    auto k = args.integer("k", 10);
    auto repeats = args.integer("repeats", 5);
    auto seed = args.integer("seed", 42);
    auto sp = search_options(args);
    const std::string factory_arg = args.str("factory", "");
    for (const auto& s : {n.status(), nq.status(), groups.status(), gd.status(), k.status(), repeats.status(),
                          seed.status(), sp.status()}) {
        if (!s.ok()) return s;
    }
    if (auto s = args.finish(); !s.ok()) return s;
    if (*n < 1 || *nq < 1 || *k < 1 || *repeats < 1) return absl::InvalidArgumentError("sizes must be >= 1");
    const std::string factory = factory_arg.empty() ? absl::StrFormat("PSlerp%dx%d", *groups, *gd) : factory_arg;
    SynthConfig cfg;
    cfg.groups = int(*groups);
    cfg.group_dim = int(*gd);
    cfg.seed = uint64_t(*seed);
    auto split = synth_gallery(cfg, *n, *nq, 0);
    if (!split.ok()) return split.status();
    const int64_t D = split->gallery.dim;
    std::unique_ptr<IndexProtectedSlerp> index;
    try {
        index = index_factory(int(D), factory);
    } catch (const std::exception& e) {
        return absl::InvalidArgumentError(e.what());
    }
    std::printf("pslerp bench: %s, N=%ld, D=%ld, %ld queries, k=%ld, %d threads, kernel %s, seed %ld\n",
                factory.c_str(), long(*n), long(D), long(*nq), long(*k), omp_get_max_threads(),
                kernels::simd_level(), long(*seed));
    double t0 = now_seconds();
    index->train(std::min<int64_t>(*n, 100000), split->gallery.x.data());
    enroll_in_batches(*index, *n, split->gallery.x.data(), nullptr);
    const double build = now_seconds() - t0;
    faiss::IndexFlatIP flat(D);
    flat.add(*n, split->gallery.x.data());
    const float* q = split->probes.x.data();
    const Latency lp = measure_latency(*index, q, *nq, *k, int(*repeats), &*sp);
    const Latency lf = measure_latency(flat, q, *nq, *k, int(*repeats));
    std::printf("build %.2f s; %zu B/entry storage + %.1f B/entry coarse (FAISS flat %ld)\n", build,
                index->storage_bytes_per_entry(), index->coarse_bytes_per_entry(), long(4 * D));
    std::printf("%-28s %12s %14s\n", "", "single (ms)", "batch (ms/q)");
    std::printf("%-28s %12.4f %14.5f\n", "protected", lp.single_ms, lp.batch_ms);
    std::printf("%-28s %12.4f %14.5f\n", "FAISS IndexFlatIP", lf.single_ms, lf.batch_ms);
    std::printf("%-28s %12.2f %14.2f\n", "ratio protected / flat", lp.single_ms / lf.single_ms, lp.batch_ms / lf.batch_ms);
    if (index->coarse) {
        // Recall of coarse-then-refine against exhaustive protected search, and the same coarse
        // index on the raw vectors as the unprotected reference.
        std::vector<float> De(*nq * *k), Dc(*nq * *k);
        std::vector<idx_t> Ie(*nq * *k), Ic(*nq * *k);
        index->search_exhaustive(*nq, q, *k, De.data(), Ie.data());
        index->search(*nq, q, *k, Dc.data(), Ic.data(), &*sp);
        int64_t hit = 0, hit1 = 0;
        for (int64_t i = 0; i < *nq; ++i) {
            hit1 += Ic[i * *k] == Ie[i * *k];
            for (int64_t j = 0; j < *k; ++j) {
                hit += std::count(Ic.begin() + i * *k, Ic.begin() + (i + 1) * *k, Ie[i * *k + j]);
            }
        }
        std::printf("recall@1 %.4f, recall@%ld %.4f against exhaustive protected search\n", double(hit1) / *nq,
                    long(*k), double(hit) / (*nq * *k));
        const std::string coarse_str = factory.substr(factory.find(',') + 1);
        std::unique_ptr<faiss::Index> raw(faiss::index_factory(int(D), coarse_str.c_str(), faiss::METRIC_INNER_PRODUCT));
        raw->train(std::min<int64_t>(*n, 100000), split->gallery.x.data());
        raw->add(*n, split->gallery.x.data());
        const Latency lr = measure_latency(*raw, q, *nq, *k, int(*repeats));
        std::printf("%-28s %12.4f %14.5f\n", ("FAISS " + coarse_str + " (raw)").c_str(), lr.single_ms, lr.batch_ms);
        std::printf("%-28s %12.2f %14.2f\n", "ratio protected / raw coarse", lp.single_ms / lr.single_ms,
                    lp.batch_ms / lr.batch_ms);
    }
    return absl::OkStatus();
}

}  // namespace

int cmd_bench(const std::vector<std::string>& argv) {
    return run_command("bench", argv, {}, kUsage, run);
}

}  // namespace pslerp::cli
