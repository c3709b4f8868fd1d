// pslerp bench: protected search beside FAISS on a synthetic gallery, in one run. The full
// drivers (sizes, thread counts, nprobe sweeps, plots) are in bench/.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/index_factory.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "index/factory.h"
#include "index/kernels/scan.h"
#include "plugin/synth.h"
#include "tools/common.h"
#include "tools/measure.h"
#include "util/threads.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp bench [--n 100000] [--queries 256] [--groups 8] [--group-dim 16]\n"
        "                    [--factory PSlerp8x16 | IVF1024,PSlerp8x16] [--nprobe N] [-k 10]\n"
        "                    [--repeats 5] [--seed 42] [--train auto]   (-n is --n)\n"
        "Times the protected index against FAISS on the same raw vectors in one run, medians of\n"
        "repeats: IndexFlatIP, and for an IVF factory string also FAISS IndexIVFFlat with the same\n"
        "nlist, quantizer and nprobe (--nprobe, else the index's own), with the ratios; the indexes\n"
        "take turns (single queries in runs of 10, batches by repeat), so that a slow spell of the\n"
        "machine falls on all alike. Indexes are\n"
        "trained on --train features of other synthetic identities (default 50 per list for an IVF,\n"
        "else 10000). For an IVF, recall@1 and recall@k against the exact search (nprobe = nlist:\n"
        "exhaustive protected search for the protected index, IndexFlatIP for FAISS).\n";

/// Fraction of the exact top-1 found at rank 1, and of the exact top-k found in the top-k.
std::pair<double, double> recall(const std::vector<idx_t>& got, const std::vector<idx_t>& exact, int64_t nq,
                                 int64_t k) {
    int64_t hit1 = 0, hit = 0;
    for (int64_t i = 0; i < nq; ++i) {
        hit1 += got[i * k] == exact[i * k];
        for (int64_t j = 0; j < k; ++j) {
            if (exact[i * k + j] < 0) continue;
            hit += std::count(got.begin() + i * k, got.begin() + (i + 1) * k, exact[i * k + j]);
        }
    }
    return {double(hit1) / nq, double(hit) / (nq * k)};
}

/// Rank-1 identification: probe i is a sample of gallery identity labels[i], enrolled as id labels[i].
double rank1(const std::vector<idx_t>& I, const std::vector<int64_t>& labels, int64_t k) {
    int64_t hit = 0;
    for (size_t i = 0; i < labels.size(); ++i) hit += I[i * k] == labels[i];
    return double(hit) / double(labels.size());
}

void print_row(const char* name, const Latency& l) {
    std::printf("%-36s %12.4f %14.5f %10.0f", name, l.single_ms, l.batch_ms, 1e3 / l.batch_ms);
}

absl::Status run(Args& args) {
    auto n = args.integer("n", 100000, 1, kMaxCount);
    auto nq = args.integer("queries", 256, 1, kMaxCount);
    auto groups = args.integer("groups", Params::kDefaultGroups, 1, 4096);
    auto gd = args.integer("group-dim", Params::kDefaultGroupDim, 2, 1024);
    auto k = args.integer("k", 10, 1, kMaxK);
    auto repeats = args.integer("repeats", 5, 1, 1000);
    auto seed = args.integer("seed", 42, 0, std::numeric_limits<int64_t>::max());
    auto train_arg = args.integer("train", 0, 1, kMaxCount);
    auto sp = search_options(args);
    const std::string factory_arg = args.str("factory", "");
    for (const auto& s : {n.status(), nq.status(), groups.status(), gd.status(), k.status(), repeats.status(),
                          seed.status(), train_arg.status(), sp.status()}) {
        if (!s.ok()) return s;
    }
    if (auto s = args.finish(); !s.ok()) return s;
    if (!args.positional().empty()) return usage_error("bench takes no positional arguments");
    const int64_t dim = *groups * *gd;
    if (auto s = check_buffer("gallery x dimension", {*n, dim}, 3 * sizeof(float)); !s.ok()) return s;
    if (auto s = check_buffer("queries x k results", {*nq, *k}, 4 * (sizeof(float) + sizeof(idx_t))); !s.ok()) {
        return s;
    }
    const std::string factory = factory_arg.empty() ? absl::StrFormat("PSlerp%dx%d", *groups, *gd) : factory_arg;
    SynthConfig cfg;
    cfg.groups = int(*groups);
    cfg.group_dim = int(*gd);
    cfg.seed = uint64_t(*seed);
    auto index = make_index(cfg.dim(), factory);
    if (!index.ok()) return index.status();
    if (auto s = sp->bind(**index); !s.ok()) return s;
    const faiss::IndexIVF* ivf = as_ivf(**index);
    const int64_t ntrain = *train_arg > 0 ? *train_arg : ivf ? std::max<int64_t>(10000, 50 * int64_t(ivf->nlist)) : 10000;
    if (auto s = check_buffer("training features x dimension", {ntrain, dim}, sizeof(float)); !s.ok()) return s;

    auto split = synth_gallery(cfg, *n, *nq, 0);
    if (!split.ok()) return split.status();
    auto train = synth_identities_checked(cfg, *n, ntrain);
    if (!train.ok()) return train.status();
    const int64_t D = split->gallery.dim;
    const float* xb = split->gallery.x.data();
    const float* q = split->probes.x.data();
    std::printf("pslerp bench: %s, N=%ld, D=%ld, %ld queries, k=%ld, %d threads (OMP_WAIT_POLICY %s), kernel %s, "
                "data seed %ld, trained on %ld features of other identities\n",
                describe_index(**index).c_str(), long(*n), long(D), long(*nq), long(*k), omp_get_max_threads(),
                omp_wait_policy(), kernels::simd_level(), long(*seed), long(ntrain));
    double t0 = now_seconds();
    if (auto s = train_index(**index, ntrain, train->x.data()); !s.ok()) return s;
    if (auto s = enroll_in_batches(**index, *n, xb, split->gallery.labels.data()); !s.ok()) return s;
    const double build = now_seconds() - t0;
    faiss::IndexFlatIP flat(D);
    flat.add(*n, xb);

    // The same IVF on the raw vectors (IVF factories): the IVF part of the factory string, flat
    // codes; built before the timing, which then takes the indexes in turns.
    const std::string ivf_part = factory.substr(0, factory.find(','));  // "IVF1024" or "IVF4096_HNSW32"
    const std::string raw_str = ivf_part + ",Flat";
    std::unique_ptr<faiss::Index> raw;
    double raw_build = 0;
    if (ivf) {
        raw.reset(faiss::index_factory(int(D), raw_str.c_str(), faiss::METRIC_INNER_PRODUCT));
        dynamic_cast<faiss::IndexIVF&>(*raw).nprobe = sp->nprobe > 0 ? size_t(sp->nprobe) : ivf->nprobe;
        t0 = now_seconds();
        raw->train(ntrain, train->x.data());
        raw->add(*n, xb);
        raw_build = now_seconds() - t0;
    }
    std::vector<Timed> timed{{index->get(), sp->params()}, {&flat, nullptr}};
    if (raw) timed.push_back({raw.get(), nullptr});
    const std::vector<Latency> lat = measure_latencies(timed, q, *nq, *k, int(*repeats));
    const Latency &lp = lat[0], &lf = lat[1];
    std::vector<float> Dp(*nq * *k), Df(*nq * *k);
    std::vector<idx_t> Ip(*nq * *k), If(*nq * *k);
    (*index)->search(*nq, q, *k, Dp.data(), Ip.data(), sp->params());
    flat.search(*nq, q, *k, Df.data(), If.data());
    const std::vector<int64_t>& labels = split->probes.labels;

    std::printf("protected build %.2f s (training included); %zu B/entry (FAISS flat %ld, IVFFlat %ld)\n", build,
                protected_of(**index).bytes_per_entry(), long(4 * D), long(4 * D + 8));
    std::printf("%-36s %12s %14s %10s %8s", "", "single (ms)", "batch (ms/q)", "batch QPS", "rank-1");
    if (ivf) std::printf(" %9s %9s", "recall@1", absl::StrCat("recall@", *k).c_str());
    std::printf("\n");
    const std::string pname = ivf ? absl::StrFormat("protected %s, nprobe %d", ivf_part,
                                                    sp->nprobe > 0 ? size_t(sp->nprobe) : ivf->nprobe)
                                  : std::string("protected exhaustive");
    print_row(pname.c_str(), lp);
    std::printf(" %8.4f", rank1(Ip, labels, *k));
    if (ivf) {
        // nprobe = nlist scores every entry: exactly the exhaustive protected search.
        faiss::SearchParametersIVF all;
        all.nprobe = ivf->nlist;
        std::vector<float> De(*nq * *k);
        std::vector<idx_t> Ie(*nq * *k);
        (*index)->search(*nq, q, *k, De.data(), Ie.data(), &all);
        const auto [r1, rk] = recall(Ip, Ie, *nq, *k);
        std::printf(" %9.4f %9.4f", r1, rk);
    }
    std::printf("\n");
    print_row("FAISS IndexFlatIP", lf);
    std::printf(" %8.4f\n", rank1(If, labels, *k));
    std::printf("%-36s %12.2f %14.2f\n", "ratio protected / FAISS flat", lp.single_ms / lf.single_ms,
                lp.batch_ms / lf.batch_ms);
    if (ivf) {
        const Latency& lr = lat[2];
        std::vector<float> Dr(*nq * *k);
        std::vector<idx_t> Ir(*nq * *k);
        raw->search(*nq, q, *k, Dr.data(), Ir.data());
        const auto [r1, rk] = recall(Ir, If, *nq, *k);
        const std::string rname =
                absl::StrFormat("FAISS %s, nprobe %d", raw_str, dynamic_cast<const faiss::IndexIVF&>(*raw).nprobe);
        print_row(rname.c_str(), lr);
        std::printf(" %8.4f %9.4f %9.4f\n", rank1(Ir, labels, *k), r1, rk);
        std::printf("%-36s %12.2f %14.2f\n", "ratio protected / FAISS IVF", lp.single_ms / lr.single_ms,
                    lp.batch_ms / lr.batch_ms);
        std::printf("FAISS %s build %.2f s; protected IVF lists imbalance %.2f\n", raw_str.c_str(), raw_build,
                    dynamic_cast<const IndexIVFProtectedSlerp&>(**index).imbalance());
    }
    return absl::OkStatus();
}

}  // namespace

int cmd_bench(const std::vector<std::string>& argv) {
    return run_command("bench", argv, {}, kUsage, run);
}

}  // namespace pslerp::cli
