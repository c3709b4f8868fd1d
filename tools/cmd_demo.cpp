// pslerp demo: the main job end to end on an embedded default — a synthetic gallery enrolled
// protected twice (the exhaustive index and the IVF index), mated and non-mated probes searched
// 1:N and verified 1:1, beside FAISS IndexFlatIP and IndexIVFFlat on the same raw vectors.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eval/metrics.h"
#include "index/IndexIVFProtectedSlerp.h"
#include "index/factory.h"
#include "index/kernels/scan.h"
#include "plugin/synth.h"
#include "tools/common.h"
#include "tools/measure.h"

namespace pslerp::cli {
namespace {

constexpr char kUsage[] =
        "usage: pslerp demo [--gallery 100000] [--mated 1000] [--nonmated 1000] [--groups 8]\n"
        "                   [--group-dim 16] [--factory PSlerp8x16] [--nlist auto] [--nprobe default]\n"
        "                   [--train auto] [--seed 42] [--impostors 10]\n"
        "Synthetic gallery (seeded) enrolled protected with fresh OS-random keys, twice: the\n"
        "exhaustive index (every entry scored) and the IVF index (nlist lists, about 4 * sqrt(N) by\n"
        "default; a query scores its nprobe nearest lists), trained on a separate draw of OTHER\n"
        "identities (--train features, 50 per list by default). Mated and non-mated probes are\n"
        "searched 1:N (rank-1; open-set DIR at FPIR 1%, the threshold set on the non-mated\n"
        "searches) and verified 1:1 (EER, TAR@FAR), beside FAISS IndexFlatIP and IndexIVFFlat\n"
        "(same nlist and training) on the same raw vectors; each IVF at its nprobe and at 4x it.\n"
        "Then bytes per entry and speed.\n"
        "--factory is the PSlerp part (options included), e.g. PSlerp8x16(t=0.8).\n";

constexpr double kTargetFpir = 0.01;

/// One index of the comparison and what its 1:N searches returned.
struct Row {
    std::string name;
    const faiss::Index* index = nullptr;
    /// Null: the index's own nprobe.
    const faiss::SearchParameters* params = nullptr;
    bool shown = true;
    double train_s = 0, add_s = 0;
    double bytes_per_entry = 0;
    std::vector<int64_t> top1;
    std::vector<float> top1_score;
    Latency latency;
};

/// Open-set identification at a target FPIR: the threshold is set on the non-mated searches
/// alone (the best score of each non-mated probe's search), then DIR counts the mated probes
/// whose own identity is rank 1 with a score at or above it.
struct OpenSet {
    double threshold = 0, dir = 0, fpir = 0;
    int64_t nonmated = 0, allowed = 0;
};

absl::StatusOr<OpenSet> open_set(const Row& r, const std::vector<int64_t>& truth, double target_fpir) {
    std::vector<float> nm;
    for (size_t i = 0; i < truth.size(); ++i) {
        if (truth[i] < 0) nm.push_back(r.top1_score[i]);
    }
    if (nm.empty()) return absl::InvalidArgumentError("no non-mated probes to set the open-set threshold on");
    std::sort(nm.begin(), nm.end(), std::greater<float>());
    OpenSet o;
    o.nonmated = int64_t(nm.size());
    o.allowed = int64_t(std::floor(target_fpir * double(nm.size())));
    // Just above the (allowed+1)-th best non-mated score: at most `allowed` reach it.
    o.threshold = std::nextafter(double(nm[o.allowed]), std::numeric_limits<double>::infinity());
    auto id = identification_rates(r.top1, truth, r.top1_score, o.threshold);
    if (!id.ok()) return id.status();
    o.dir = id->dir;
    o.fpir = id->fpir;
    return o;
}

/// The power of two nearest (in ratio) to 4 * sqrt(n), at most n.
int64_t auto_nlist(int64_t n) {
    const double target = 4.0 * std::sqrt(double(n));
    const int64_t p = int64_t(1) << int(std::lround(std::log2(std::max(target, 1.0))));
    return std::max<int64_t>(1, std::min(p, n));
}

void print_verification(const char* name, const std::vector<float>& mated, const std::vector<float>& nonmated) {
    auto rep = verification_report(mated, nonmated, {1e-2, 1e-3});
    if (!rep.ok()) {
        std::printf("  %-24s evaluation failed: %s\n", name, std::string(rep.status().message()).c_str());
        return;
    }
    std::printf("  %-24s EER %.4f | TAR@FAR1e-2 %.4f (thr %.4f) | TAR@FAR1e-3 %.4f (thr %.4f)\n", name, rep->eer.eer,
                rep->tar[0].tar, rep->tar[0].threshold, rep->tar[1].tar, rep->tar[1].threshold);
}

absl::Status run(Args& args) {
    auto gallery = args.integer("gallery", 100000, 1, kMaxCount);
    auto mated = args.integer("mated", 1000, 1, kMaxCount);
    auto nonmated = args.integer("nonmated", 1000, 1, kMaxCount);
    auto groups = args.integer("groups", Params::kDefaultGroups, 1, 4096);
    auto group_dim = args.integer("group-dim", Params::kDefaultGroupDim, 2, 1024);
    auto seed = args.integer("seed", 42, 0, std::numeric_limits<int64_t>::max());
    auto impostors = args.integer("impostors", 10, 1, 1000000);
    auto nlist_arg = args.integer("nlist", 0, 1, int64_t{1} << 24);
    auto nprobe_arg = args.integer("nprobe", 0, 1, int64_t{1} << 24);
    auto train_arg = args.integer("train", 0, 1, kMaxCount);
    const std::string factory_arg = args.str("factory", "");
    for (const auto& s : {gallery.status(), mated.status(), nonmated.status(), groups.status(), group_dim.status(),
                          seed.status(), impostors.status(), nlist_arg.status(), nprobe_arg.status(),
                          train_arg.status()}) {
        if (!s.ok()) return s;
    }
    if (auto s = args.finish(); !s.ok()) return s;
    if (!args.positional().empty()) return usage_error("demo takes no positional arguments");
    if (factory_arg.rfind("IVF", 0) == 0) {
        return usage_error("--factory is the PSlerp part only (e.g. PSlerp8x16(t=0.8)): the demo builds both indexes "
                           "from it; the IVF's list count is --nlist");
    }
    const std::string factory =
            factory_arg.empty() ? absl::StrFormat("PSlerp%dx%d", *groups, *group_dim) : factory_arg;
    const int64_t nlist = *nlist_arg > 0 ? *nlist_arg : auto_nlist(*gallery);
    const int64_t ntrain = *train_arg > 0 ? *train_arg : std::max<int64_t>(10000, 50 * nlist);
    if (ntrain < nlist) return usage_error(absl::StrFormat("--train %d is fewer than the %d lists", ntrain, nlist));
    if (*nprobe_arg > nlist) {
        return usage_error(absl::StrFormat("--nprobe %d exceeds the %d lists", *nprobe_arg, nlist));
    }
    // The raw gallery is held by the data, IndexFlatIP and IndexIVFFlat, the protected entries
    // by the two protected indexes (several times the raw size).
    const int64_t dim = *groups * *group_dim;
    for (const auto& s :
         {check_buffer("gallery x dimension", {*gallery, dim}, 8 * sizeof(float)),
          check_buffer("probes and training features x dimension", {*mated + *nonmated + ntrain, dim}, sizeof(float)),
          check_buffer("impostor pairs x dimension", {*mated + *nonmated, *impostors, dim}, sizeof(float))}) {
        if (!s.ok()) return s;
    }
    const std::string ivf_factory = absl::StrCat("IVF", nlist, ",", factory);

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
    auto model = synth_model(cfg);
    if (!model.ok()) return model.status();
    const bool isotropic = model->centre_decay >= 1.f;
    // Training draw: other people of the same population (identities after the non-mated probes).
    auto train = synth_identities_checked(cfg, *gallery + *nonmated, ntrain);
    if (!train.ok()) return train.status();
    const int64_t D = split->gallery.dim, N = split->gallery.n, NQ = split->probes.n;
    const float* xb = split->gallery.x.data();
    const float* xt = train->x.data();
    const float* q = split->probes.x.data();
    const std::vector<int64_t>& truth = split->probes.labels;
    std::printf("synthetic data        %.2f s (gallery, probes, and %ld training features of other identities)\n",
                now_seconds() - t0, long(ntrain));

    // Unprotected references on the raw vectors (cosine: unit-norm rows).
    faiss::IndexFlatIP flat(D);
    faiss::IndexFlatIP raw_quantizer(D);
    faiss::IndexIVFFlat raw_ivf(&raw_quantizer, D, size_t(nlist), faiss::METRIC_INNER_PRODUCT);

    auto exhaustive = make_index(D, factory);
    if (!exhaustive.ok()) return exhaustive.status();
    auto ivf_index = make_index(D, ivf_factory);
    if (!ivf_index.ok()) return ivf_index.status();
    auto& pivf = dynamic_cast<IndexIVFProtectedSlerp&>(**ivf_index);
    if (*nprobe_arg > 0) pivf.nprobe = size_t(*nprobe_arg);
    raw_ivf.nprobe = pivf.nprobe;

    // Each IVF also at 4x its nprobe: what scanning more lists buys back.
    faiss::SearchParametersIVF wider;
    wider.nprobe = std::min(4 * pivf.nprobe, size_t(nlist));
    const bool sweep = wider.nprobe > pivf.nprobe;
    enum { kFlat, kRawIvf, kRawIvfWide, kExhaustive, kIvf, kIvfWide, kRows };
    std::vector<Row> rows(kRows);
    rows[kFlat].name = "FAISS IndexFlatIP";
    rows[kFlat].index = &flat;
    rows[kFlat].bytes_per_entry = double(sizeof(float) * D);
    rows[kRawIvf].name = absl::StrFormat("FAISS IVF%d,Flat np=%d", nlist, raw_ivf.nprobe);
    rows[kRawIvf].index = &raw_ivf;
    rows[kRawIvf].bytes_per_entry = double(sizeof(float) * D + sizeof(idx_t));
    rows[kRawIvfWide] = rows[kRawIvf];
    rows[kRawIvfWide].name = absl::StrFormat("FAISS IVF%d,Flat np=%d", nlist, wider.nprobe);
    rows[kRawIvfWide].params = &wider;
    rows[kExhaustive].name = "protected exhaustive";
    rows[kExhaustive].index = exhaustive->get();
    rows[kExhaustive].bytes_per_entry = double(protected_of(**exhaustive).bytes_per_entry());
    rows[kIvf].name = absl::StrFormat("protected IVF%d np=%d", nlist, pivf.nprobe);
    rows[kIvf].index = ivf_index->get();
    rows[kIvf].bytes_per_entry = double(pivf.bytes_per_entry());
    rows[kIvfWide] = rows[kIvf];
    rows[kIvfWide].name = absl::StrFormat("protected IVF%d np=%d", nlist, wider.nprobe);
    rows[kIvfWide].params = &wider;

    t0 = now_seconds();
    flat.add(N, xb);
    rows[kFlat].add_s = now_seconds() - t0;
    t0 = now_seconds();
    raw_ivf.train(ntrain, xt);
    rows[kRawIvf].train_s = now_seconds() - t0;
    t0 = now_seconds();
    raw_ivf.add(N, xb);
    rows[kRawIvf].add_s = now_seconds() - t0;
    for (int r : {kExhaustive, kIvf}) {
        faiss::Index& ix = *(r == kExhaustive ? *exhaustive : *ivf_index);
        t0 = now_seconds();
        if (auto s = train_index(ix, ntrain, xt); !s.ok()) return s;
        rows[r].train_s = now_seconds() - t0;
        t0 = now_seconds();
        if (auto s = enroll_in_batches(ix, N, xb, split->gallery.labels.data()); !s.ok()) return s;
        rows[r].add_s = now_seconds() - t0;
    }
    std::printf("\nbuild (%s; the IVFs train k-means on the other identities)\n", factory.c_str());
    std::printf("  %-28s %10s %10s %12s\n", "", "train (s)", "add (s)", "added/s");
    for (int r : {kFlat, kRawIvf, kExhaustive, kIvf}) {
        std::printf("  %-28s %10.2f %10.2f %12.0f\n", rows[r].name.c_str(), rows[r].train_s, rows[r].add_s,
                    N / std::max(rows[r].add_s, 1e-9));
    }
    rows[kRawIvfWide].shown = rows[kIvfWide].shown = sweep;

    // 1:N search of every probe, top-1.
    for (Row& r : rows) {
        if (!r.shown) continue;
        r.top1.resize(NQ);
        r.top1_score.resize(NQ);
        r.index->search(NQ, q, 1, r.top1_score.data(), r.top1.data(), r.params);
    }
    std::printf("\n1:N identification (%ld mated probes for rank-1 and DIR; %ld non-mated searches set the threshold "
                "at FPIR %.0f%%)\n",
                long(*mated), long(*nonmated), 100 * kTargetFpir);
    std::printf("  %-28s %8s %12s %10s %8s\n", "", "rank-1", "DIR@FPIR1%", "threshold", "FPIR");
    for (const Row& r : rows) {
        if (!r.shown) continue;
        auto id = identification_rates(r.top1, truth);
        auto os = open_set(r, truth, kTargetFpir);
        if (!id.ok() || !os.ok()) return id.ok() ? os.status() : id.status();
        std::printf("  %-28s %8.4f %12.4f %10.4f %8.4f\n", r.name.c_str(), id->rank1, os->dir, os->threshold, os->fpir);
    }
    if (double(*nonmated) * kTargetFpir < 1) {
        std::printf("  (FPIR %.0f%% needs >= %.0f non-mated probes; with %ld the threshold is above every non-mated "
                    "score)\n",
                    100 * kTargetFpir, std::ceil(1 / kTargetFpir), long(*nonmated));
    }
    std::printf("  (np: lists scanned of %ld%s; an IVF misses a mate enrolled in a list the probe does not scan)\n",
                long(nlist),
                pivf.nprobe == default_nprobe(size_t(nlist)) ? absl::StrCat(", ", pivf.nprobe, " the default").c_str()
                                                             : "");
    if (isotropic) {
        std::printf("  (%dx%d synthetic identities are isotropic: no cluster structure in %ld-D, the hard case for any "
                    "IVF, raw or protected; --groups 32 draws the anisotropic 512-D calibration)\n",
                    cfg.groups, cfg.group_dim, long(D));
    }

    // 1:1: each mated probe against its identity; impostor pairs against random other entries.
    std::mt19937_64 rng(uint64_t(*seed) + 1);
    std::vector<float> qm, qn;
    std::vector<int64_t> idm, idn;
    for (int64_t i = 0; i < NQ; ++i) {
        if (truth[i] >= 0) {
            qm.insert(qm.end(), q + i * D, q + (i + 1) * D);
            idm.push_back(truth[i]);
        }
        for (int64_t j = 0; j < *impostors; ++j) {
            int64_t other = int64_t(rng() % uint64_t(N));
            if (other == truth[i]) other = (other + 1) % N;
            if (other == truth[i]) continue;  // a gallery of one
            qn.insert(qn.end(), q + i * D, q + (i + 1) * D);
            idn.push_back(other);
        }
    }
    const ProtectedIndex& pex = protected_of(**exhaustive);
    std::vector<float> pm(idm.size()), pn(idn.size()), rm, rn;
    pex.verify_batch(int64_t(idm.size()), qm.data(), idm.data(), pm.data());
    pex.verify_batch(int64_t(idn.size()), qn.data(), idn.data(), pn.data());
    auto cosine = [&](const float* a, int64_t id) {
        const float* b = xb + id * D;
        double ab = 0, aa = 0, bb = 0;
        for (int64_t j = 0; j < D; ++j) {
            ab += double(a[j]) * b[j];
            aa += double(a[j]) * a[j];
            bb += double(b[j]) * b[j];
        }
        return float(ab / std::sqrt(aa * bb));
    };
    for (size_t i = 0; i < idm.size(); ++i) rm.push_back(cosine(qm.data() + i * D, idm[i]));
    for (size_t i = 0; i < idn.size(); ++i) rn.push_back(cosine(qn.data() + i * D, idn[i]));
    std::printf("\n1:1 verification (%zu mated pairs, %zu impostor pairs; pairwise thresholds, lower than the 1:N "
                "ones above, which must clear the best of N impostors)\n",
                idm.size(), idn.size());
    print_verification("unprotected cosine", rm, rn);
    print_verification("protected", pm, pn);

    // Speed: single queries and a batch, the same probes for every index.
    const int64_t nb = std::min<int64_t>(NQ, 256);
    {
        std::vector<Timed> timed;
        std::vector<Row*> shown;
        for (Row& r : rows) {
            if (r.shown) timed.push_back({r.index, r.params}), shown.push_back(&r);
        }
        const std::vector<Latency> lat = measure_latencies(timed, q, nb, 10, 3);
        for (size_t i = 0; i < shown.size(); ++i) shown[i]->latency = lat[i];
    }
    std::printf("\nspeed (k=10; single: median of %ld queries; batch: %ld queries, median of 3)\n",
                long(std::min<int64_t>(nb, 50)), long(nb));
    std::printf("  %-28s %12s %14s %12s %12s\n", "", "single (ms)", "batch (ms/q)", "batch QPS", "bytes/entry");
    for (const Row& r : rows) {
        if (!r.shown) continue;
        std::printf("  %-28s %12.3f %14.4f %12.0f %12.0f\n", r.name.c_str(), r.latency.single_ms, r.latency.batch_ms,
                    1e3 / r.latency.batch_ms, r.bytes_per_entry);
    }
    const Latency& le = rows[kExhaustive].latency;
    const Latency& li = rows[kIvf].latency;
    std::printf("  protected IVF over protected exhaustive: %.1fx the batch QPS (%.0f vs %.0f), %.1fx single query\n",
                le.batch_ms / li.batch_ms, 1e3 / li.batch_ms, 1e3 / le.batch_ms, le.single_ms / li.single_ms);
    std::printf("  protected / FAISS on the raw vectors, batch: exhaustive %.2fx IndexFlatIP, IVF %.2fx IndexIVFFlat\n",
                le.batch_ms / rows[kFlat].latency.batch_ms, li.batch_ms / rows[kRawIvf].latency.batch_ms);
    std::printf("  IVF lists: imbalance %.2f (1 = balanced); the %ld centroids add %.0f KiB, shared by all entries\n",
                pivf.imbalance(), long(nlist), double(nlist) * D * sizeof(float) / 1024);
    std::printf("clamped antipodal probe-key cosines: %ld (exhaustive), %ld (IVF)\n", long(pex.clamped_count()),
                long(pivf.clamped_count()));
    return absl::OkStatus();
}

}  // namespace

int cmd_demo(const std::vector<std::string>& argv) {
    return run_command("demo", argv, {}, kUsage, run);
}

}  // namespace pslerp::cli
