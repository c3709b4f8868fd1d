// pslerp demo: the main job end to end on an embedded default — a synthetic gallery enrolled
// protected, mated and non-mated probes searched and verified, beside FAISS IndexFlatIP on
// the same raw vectors.
#include <omp.h>

#include <cstdio>
#include <iostream>
#include <random>

#include <faiss/IndexFlat.h>

#include "absl/strings/str_format.h"
#include "bench/eval.h"
#include "index/factory.h"
#include "index/kernels/scan.h"
#include "plugin/synth.h"
#include "tools/common.h"
#include "tools/measure.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp demo [--gallery 100000] [--mated 1000] [--nonmated 1000] [--groups 8]\n"
        "                   [--group-dim 16] [--factory PSlerp8x16] [--seed 42] [--impostors 10]\n"
        "Synthetic gallery (seeded), protected enrolment with fresh OS-random keys, 1:N search of\n"
        "mated and non-mated probes, 1:1 verification, bytes per entry and latency beside FAISS\n"
        "IndexFlatIP on the same raw vectors.\n";

struct Side {
    std::vector<float> mated, nonmated;  // verification scores
    std::vector<int64_t> top1;
    std::vector<float> top1_score;
};

void print_verification(const char* name, const Side& s, const std::vector<int64_t>& truth) {
    auto rep = verification_report(s.mated, s.nonmated, {1e-2, 1e-3});
    auto id = identification_rates(s.top1, truth, s.top1_score, rep.ok() ? rep->tar[1].threshold : 0.0);
    if (!rep.ok() || !id.ok()) {
        std::printf("%-12s evaluation failed: %s\n", name, std::string((rep.ok() ? id.status() : rep.status()).message()).c_str());
        return;
    }
    std::printf("%-12s rank-1 %.4f | EER %.4f | TAR@FAR1e-2 %.4f (thr %.4f) | TAR@FAR1e-3 %.4f (thr %.4f) | "
                "open-set at that thr: DIR %.4f FPIR %.4f\n",
                name, id->rank1, rep->eer.eer, rep->tar[0].tar, rep->tar[0].threshold, rep->tar[1].tar,
                rep->tar[1].threshold, id->dir, id->fpir);
}

absl::Status run(Args& args) {
    auto gallery = args.integer("gallery", 100000);
    auto mated = args.integer("mated", 1000);
    auto nonmated = args.integer("nonmated", 1000);
    auto groups = args.integer("groups", 8);
    auto group_dim = args.integer("group-dim", 16);
    auto seed = args.integer("seed", 42);
    auto impostors = args.integer("impostors", 10);
    const std::string factory_suffix = args.str("factory", "");
    for (const auto& s : {gallery.status(), mated.status(), nonmated.status(), groups.status(), group_dim.status(),
                          seed.status(), impostors.status()}) {
        if (!s.ok()) return s;
    }
    if (auto s = args.finish(); !s.ok()) return s;
    if (*gallery < 1 || *mated < 1 || *nonmated < 1 || *impostors < 1) {
        return absl::InvalidArgumentError("--gallery, --mated, --nonmated, --impostors must be >= 1");
    }
    const std::string factory =
            factory_suffix.empty() ? absl::StrFormat("PSlerp%dx%d", *groups, *group_dim) : factory_suffix;

    std::printf("pslerp demo: %ld gallery identities, %ld mated + %ld non-mated probes, %ldx%ld, data seed %ld, "
                "%d threads, kernel %s\n",
                long(*gallery), long(*mated), long(*nonmated), long(*groups), long(*group_dim), long(*seed),
                omp_get_max_threads(), kernels::simd_level());
    SynthConfig cfg;
    cfg.groups = int(*groups);
    cfg.group_dim = int(*group_dim);
    cfg.seed = uint64_t(*seed);
    double t0 = now_seconds();
    auto split = synth_gallery(cfg, *gallery, *mated, *nonmated);
    if (!split.ok()) return split.status();
    const int64_t D = split->gallery.dim, N = split->gallery.n, NQ = split->probes.n;
    std::printf("synthetic data        %.2f s\n", now_seconds() - t0);

    // Unprotected reference: FAISS IndexFlatIP on the raw vectors (cosine: unit-norm rows).
    faiss::IndexFlatIP flat(D);
    t0 = now_seconds();
    flat.add(N, split->gallery.x.data());
    const double flat_add = now_seconds() - t0;

    std::unique_ptr<IndexProtectedSlerp> index;
    try {
        index = index_factory(int(D), factory);
    } catch (const std::exception& e) {
        return absl::InvalidArgumentError(e.what());
    }
    t0 = now_seconds();
    index->train(std::min<int64_t>(N, 100000), split->gallery.x.data());
    const double train_s = now_seconds() - t0;
    t0 = now_seconds();
    enroll_in_batches(*index, N, split->gallery.x.data(), split->gallery.labels.data());
    const double enrol_s = now_seconds() - t0;
    std::printf("enrolment (%s)  train %.2f s, add %.2f s = %.0f entries/s (FAISS flat add %.2f s)\n", factory.c_str(),
                train_s, enrol_s, N / enrol_s, flat_add);

    // 1:N search of every probe, top-1.
    const float* q = split->probes.x.data();
    Side prot, raw;
    prot.top1.resize(NQ);
    prot.top1_score.resize(NQ);
    raw.top1.resize(NQ);
    raw.top1_score.resize(NQ);
    index->search(NQ, q, 1, prot.top1_score.data(), prot.top1.data());
    flat.search(NQ, q, 1, raw.top1_score.data(), raw.top1.data());

    // 1:1: each mated probe against its identity; impostor pairs against random other entries.
    std::mt19937_64 rng(uint64_t(*seed) + 1);
    std::vector<float> qm, qn;
    std::vector<int64_t> idm, idn;
    for (int64_t i = 0; i < NQ; ++i) {
        const int64_t truth = split->probes.labels[i];
        if (truth >= 0) {
            qm.insert(qm.end(), q + i * D, q + (i + 1) * D);
            idm.push_back(truth);
        }
        for (int64_t j = 0; j < *impostors; ++j) {
            int64_t other = int64_t(rng() % uint64_t(N));
            if (other == truth) other = (other + 1) % N;
            if (other == truth) continue;  // a gallery of one
            qn.insert(qn.end(), q + i * D, q + (i + 1) * D);
            idn.push_back(other);
        }
    }
    prot.mated.resize(idm.size());
    prot.nonmated.resize(idn.size());
    index->verify_batch(int64_t(idm.size()), qm.data(), idm.data(), prot.mated.data());
    index->verify_batch(int64_t(idn.size()), qn.data(), idn.data(), prot.nonmated.data());
    auto cosine = [&](const float* a, int64_t id) {
        const float* b = split->gallery.x.data() + id * D;
        double ab = 0, aa = 0, bb = 0;
        for (int64_t j = 0; j < D; ++j) {
            ab += double(a[j]) * b[j];
            aa += double(a[j]) * a[j];
            bb += double(b[j]) * b[j];
        }
        return float(ab / std::sqrt(aa * bb));
    };
    for (size_t i = 0; i < idm.size(); ++i) raw.mated.push_back(cosine(qm.data() + i * D, idm[i]));
    for (size_t i = 0; i < idn.size(); ++i) raw.nonmated.push_back(cosine(qn.data() + i * D, idn[i]));
    std::printf("\naccuracy (%zu mated pairs, %zu impostor pairs; 1:N over %ld probes)\n", idm.size(), idn.size(), long(NQ));
    print_verification("unprotected", raw, split->probes.labels);
    print_verification("protected", prot, split->probes.labels);

    std::printf("\nmemory               protected %zu B/entry storage + %.1f B/entry coarse; FAISS flat %ld B/entry\n",
                index->storage_bytes_per_entry(), index->coarse_bytes_per_entry(), long(4 * D));
    const int64_t nb = std::min<int64_t>(NQ, 256);
    const Latency lp = measure_latency(*index, q, nb, 10, 3);
    const Latency lf = measure_latency(flat, q, nb, 10, 3);
    std::printf("latency (k=10)       single query: protected %.3f ms, FAISS flat %.3f ms (ratio %.2f)\n", lp.single_ms,
                lf.single_ms, lp.single_ms / lf.single_ms);
    std::printf("                     batch of %ld: protected %.4f ms/query, FAISS flat %.4f ms/query (ratio %.2f)\n",
                long(nb), lp.batch_ms, lf.batch_ms, lp.batch_ms / lf.batch_ms);
    std::printf("clamped antipodal probe-key cosines: %ld\n", long(index->clamped_count()));
    return absl::OkStatus();
}

}  // namespace

int cmd_demo(const std::vector<std::string>& argv) {
    return run_command("demo", argv, {}, kUsage, run);
}

}  // namespace pslerp::cli
