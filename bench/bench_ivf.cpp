// The protected IVF against exhaustive protected search and against FAISS's unprotected
// IndexIVFFlat, in one run. For each gallery size N and dimension D (G groups of 16) of
// synthetic identities:
//   - IndexFlatIP on the raw features (unprotected exhaustive) and the exhaustive
//     IndexProtectedSlerp (the oracle): rank-1 of mated probes, open-set DIR at FPIR 1%
//     (threshold calibrated on the non-mated probes' searches), QPS single and batched;
//   - for each nlist: "IVF<nlist>,PSlerp<G>x16[(options)]" trained on --train samples of OTHER
//     identities (a centroid is an average of its training features), holding the same
//     protected entries as the oracle (same seed, same centring), swept over nprobe: rank-1,
//     DIR, agreement of its top-1 with the oracle's, share of the gallery scanned, QPS, speed-up
//     over the oracle; and faiss::IndexIVFFlat with the same quantizer (a copy of the same
//     centroids) over the same centred, group-normalised vectors, at the same nprobe.
// Build time and bytes per entry of each. Writes ivf_n<N>_d<D>[_options].csv and .json into
// --out (bench/plot_ivf.py plots rank-1 against QPS).
//
// Not a timed test. Example:
//   build/bench/bench_ivf --n 100000 --dims 128 --nlist 1024 --out bench/results
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/clone_index.h>

#include "bench/driver_util.h"
#include "eval/metrics.h"
#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"
#include "index/factory.h"
#include "plugin/synth.h"
#include "util/threads.h"

using namespace pslerp;
using pslerp::bench::value_or_die;

namespace {

using SearchFn = std::function<void(idx_t n, const float* x, float* distances, idx_t* labels)>;

struct Measured {
    double qps_single = 0, qps_batch = 0;
    std::vector<float> top1_scores;
    std::vector<idx_t> top1;
};

// Batched: all nq queries in one call (top-1); single: the first n_single one at a time.
// Medians of `repeats`.
Measured measure(const SearchFn& fn, const float* x, int64_t nq, int64_t n_single, int dim, int repeats) {
    Measured m;
    m.top1_scores.resize(nq);
    m.top1.resize(nq);
    std::vector<double> single, batch;
    for (int r = 0; r < repeats; ++r) {
        double a = now_seconds();
        fn(nq, x, m.top1_scores.data(), m.top1.data());
        batch.push_back(double(nq) / (now_seconds() - a));
        float d;
        idx_t l;
        a = now_seconds();
        for (int64_t q = 0; q < n_single; ++q) fn(1, x + q * dim, &d, &l);
        if (n_single > 0) single.push_back(double(n_single) / (now_seconds() - a));
    }
    m.qps_batch = median(batch);
    m.qps_single = median(single);
    return m;
}

// Rank-1 over the mated probes and DIR at the threshold that FPIR 1% of the non-mated
// probes' best scores exceed (this system's own calibration).
struct Accuracy {
    double rank1 = 0, dir = 0, fpir = 0, threshold = 0;
};

Accuracy accuracy(const Measured& m, const std::vector<int64_t>& truth, int64_t n_mated) {
    std::vector<float> nonmated(m.top1_scores.begin() + n_mated, m.top1_scores.end());
    std::sort(nonmated.begin(), nonmated.end());
    Accuracy a;
    // The smallest threshold that at most 1% of non-mated searches reach (scores >= t accepted).
    const size_t allowed = nonmated.size() / 100;
    a.threshold = nonmated.empty() ? 0.0 : std::nextafter(nonmated[nonmated.size() - 1 - allowed], 1e9f);
    std::vector<int64_t> top1(m.top1.begin(), m.top1.end());
    const Identification id = value_or_die(identification_rates(top1, truth, m.top1_scores, a.threshold));
    a.rank1 = id.rank1;
    a.dir = id.dir;
    a.fpir = id.fpir;
    return a;
}

struct Row {
    std::string system;
    int64_t nlist = 0, nprobe = 0;
    Accuracy acc;
    double agree_top1 = 0, scanned = 0, qps_single = 0, qps_batch = 0, build_s = 0, train_s = 0, bytes = 0;
};

std::string header() {
    return "n,dim,system,nlist,nprobe,rank1,dir_fpir1,fpir,threshold,agree_top1_with_exhaustive,scanned,"
           "qps_single,qps_batch,build_s,train_s,bytes_per_entry,threads,index_options,decay";
}

void print_row(const Row& r, double exh_rank1, double exh_qps_batch) {
    std::printf("   %-22s nlist %-5ld nprobe %-5ld rank-1 %.4f (%.3fx exh) DIR@FPIR1%% %.4f  top-1 = exh %.3f  "
                "scanned %.4f  QPS single %8.1f batch %8.1f (%.1fx exh)\n",
                r.system.c_str(), long(r.nlist), long(r.nprobe), r.acc.rank1, exh_rank1 > 0 ? r.acc.rank1 / exh_rank1 : 0,
                r.acc.dir, r.agree_top1, r.scanned, r.qps_single, r.qps_batch,
                exh_qps_batch > 0 ? r.qps_batch / exh_qps_batch : 0);
    std::fflush(stdout);
}

double agreement(const std::vector<idx_t>& a, const std::vector<idx_t>& b) {
    int64_t same = 0;
    for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
    return a.empty() ? 0.0 : double(same) / double(a.size());
}

}  // namespace

int main(int argc, char** argv) try {
    bench::Flags f(argc, argv, "bench_ivf: protected IVF vs exhaustive protected search vs unprotected IndexIVFFlat "
                               "(same run): rank-1, open-set DIR, QPS, build time, bytes per entry");
    const auto ns = f.integers("n", "100000");
    const auto dims = f.integers("dims", "128");
    const auto nlists = f.integers("nlist", "1024,4096");
    const auto nprobes = f.integers("nprobe", "4,8,16,32,64,128");
    const int64_t nq = f.integer("queries", 1000);
    const int64_t n_single = f.integer("single-queries", 100);
    const int64_t n_single_exh = f.integer("single-queries-exhaustive", 10);
    const int64_t n_train = f.integer("train", 50000);
    const int repeats = int(f.integer("repeats", 3));
    const int threads = int(f.integer("threads", omp_get_max_threads()));
    const uint64_t seed = uint64_t(f.integer("seed", 42));
    const std::string index_options = f.str("index-options", "");
    // Centre decay of the synthetic identities: "auto" (the generator's calibrated default:
    // structured at 512-D, isotropic at 128-D) or a number in (0, 1] (1 = isotropic).
    const std::string decay = f.str("decay", "auto");
    const std::string out_dir = f.str("out", "bench_out");
    if (!f.finish()) return 0;
    set_threads(threads);

    bench::Provenance prov(f.command(), seed);
    prov.print();
    std::printf("# threads: %d; %ld queries (half mated, half non-mated) batched, the first %ld one at a time; medians "
                "of %d repeats; quantizers trained on %ld samples of other identities\n",
                threads, long(nq), long(n_single), repeats, long(n_train));
    std::filesystem::create_directories(out_dir);
    const int64_t n_mated = nq / 2;

    for (int64_t dim : dims) {
        const int G = int(dim / 16), D = int(dim);
        SynthConfig cfg = bench::synth_config(dim, seed);
        if (decay != "auto") cfg.centre_decay = std::stof(decay);
        const std::string opts = index_options.empty() ? "" : "(" + index_options + ")";
        const std::string flat_desc = "PSlerp" + std::to_string(G) + "x16" + opts;
        for (int64_t N : ns) {
            double t0 = now_seconds();
            SynthSplit data = value_or_die(synth_gallery(cfg, N, n_mated, nq - n_mated));
            const std::vector<float> train = value_or_die(synth_identities(cfg, N + nq + 10000000, n_train)).x;
            const float* xq = data.probes.x.data();
            const std::vector<int64_t>& truth = data.probes.labels;
            std::printf("\n== N=%ld D=%d (%dx16), centre decay %s: synthetic data in %.1f s\n", long(N), D, G,
                        decay.c_str(), now_seconds() - t0);
            std::vector<Row> rows;

            // Unprotected exhaustive.
            {
                faiss::IndexFlatIP flat(D);
                flat.add(N, data.gallery.x.data());
                const Measured m = measure([&](idx_t n, const float* x, float* d, idx_t* l) { flat.search(n, x, 1, d, l); },
                                           xq, nq, n_single_exh, D, 1);
                Row r{"IndexFlatIP (raw)", 0, 0, accuracy(m, truth, n_mated), 0, 1.0, m.qps_single, m.qps_batch, 0, 0,
                      4.0 * D};
                rows.push_back(r);
            }
            // The exhaustive protected oracle.
            Measured oracle;
            double exh_rank1 = 0, exh_qps_batch = 0;
            {
                auto exh = index_factory(D, flat_desc);
                protected_of(*exh).set_seed(seed);
                t0 = now_seconds();
                exh->train(n_train, train.data());
                for (int64_t i = 0; i < N; i += 65536) exh->add(std::min<int64_t>(65536, N - i), data.gallery.x.data() + i * D);
                const double build_s = now_seconds() - t0;
                oracle = measure([&](idx_t n, const float* x, float* d, idx_t* l) { exh->search(n, x, 1, d, l); }, xq, nq,
                                 n_single_exh, D, 1);
                Row r{"exhaustive protected", 0, 0, accuracy(oracle, truth, n_mated), 1.0, 1.0, oracle.qps_single,
                      oracle.qps_batch, build_s, 0, double(protected_of(*exh).bytes_per_entry())};
                exh_rank1 = r.acc.rank1;
                exh_qps_batch = r.qps_batch;
                rows.push_back(r);
            }
            print_row(rows[0], exh_rank1, exh_qps_batch);
            print_row(rows[1], exh_rank1, exh_qps_batch);

            for (int64_t nlist : nlists) {
                const std::string desc = "IVF" + std::to_string(nlist) + "," + flat_desc;
                auto owner = index_factory(D, desc);
                auto& ivf = dynamic_cast<IndexIVFProtectedSlerp&>(*owner);
                ivf.set_seed(seed);  // the oracle's keys
                t0 = now_seconds();
                ivf.train(n_train, train.data());
                const double train_s = now_seconds() - t0;
                for (int64_t i = 0; i < N; i += 65536) ivf.add(std::min<int64_t>(65536, N - i), data.gallery.x.data() + i * D);
                const double build_s = now_seconds() - t0;
                std::printf("   %s: build %.1f s (train %.1f s), %zu bytes/entry, list imbalance %.2f, default nprobe %zu\n",
                            desc.c_str(), build_s, train_s, ivf.bytes_per_entry(), ivf.imbalance(), ivf.nprobe);

                // The unprotected IVF with a copy of the same centroids, over the same centred,
                // group-normalised vectors the protected IVF assigns.
                std::vector<float> xb(size_t(N) * D), xqn(size_t(nq) * D);
                ivf.centering.apply(data.gallery.x.data(), N, D, xb.data());
                ivf.centering.apply(xq, nq, D, xqn.data());
                for (auto* v : {&xb, &xqn}) {
                    const absl::Status s = normalize_groups(ivf.params, v->data(), int64_t(v->size() / D), v->data());
                    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
                }
                faiss::IndexIVFFlat raw(faiss::clone_index(ivf.quantizer), D, size_t(nlist), faiss::METRIC_INNER_PRODUCT);
                raw.own_fields = true;
                t0 = now_seconds();
                raw.add(N, xb.data());
                const double raw_build_s = now_seconds() - t0 + train_s;
                xb.clear();
                xb.shrink_to_fit();

                for (int64_t p : nprobes) {
                    if (p > nlist) continue;
                    faiss::SearchParametersIVF sp;
                    sp.nprobe = size_t(p);
                    faiss::indexIVF_stats.reset();
                    const Measured m = measure(
                            [&](idx_t n, const float* x, float* d, idx_t* l) { ivf.search(n, x, 1, d, l, &sp); }, xq, nq,
                            n_single, D, repeats);
                    const double scanned = double(faiss::indexIVF_stats.ndis) /
                                           (double(repeats) * double(nq + n_single) * double(N));
                    Row r{"IVF protected", nlist, p, accuracy(m, truth, n_mated), agreement(m.top1, oracle.top1), scanned,
                          m.qps_single, m.qps_batch, build_s, train_s, double(ivf.bytes_per_entry())};
                    print_row(r, exh_rank1, exh_qps_batch);
                    rows.push_back(r);
                    raw.nprobe = size_t(p);
                    const Measured u = measure(
                            [&](idx_t n, const float* x, float* d, idx_t* l) { raw.search(n, x, 1, d, l); }, xqn.data(),
                            nq, n_single, D, repeats);
                    Row ur{"IndexIVFFlat (raw)", nlist, p, accuracy(u, truth, n_mated), agreement(u.top1, oracle.top1),
                           scanned, u.qps_single, u.qps_batch, raw_build_s, train_s, 4.0 * D + sizeof(idx_t)};
                    print_row(ur, exh_rank1, exh_qps_batch);
                    std::printf("   %-22s protected / unprotected QPS at nprobe %ld: single %.2fx, batch %.2fx\n", "",
                                long(p), r.qps_single / ur.qps_single, r.qps_batch / ur.qps_batch);
                    rows.push_back(ur);
                }
            }

            const std::string stem = out_dir + "/ivf_n" + std::to_string(N) + "_d" + std::to_string(D) +
                                     bench::file_suffix(index_options) + (decay == "auto" ? "" : "_decay" + decay);
            std::ofstream csv(stem + ".csv");
            csv << header() << "\n";
            std::ofstream js(stem + ".json");
            js << "{\"provenance\": " << prov.json() << ",\n \"n\": " << N << ", \"dim\": " << D << ", \"threads\": "
               << threads << ", \"index_options\": \"" << index_options << "\", \"decay\": \"" << decay
               << "\", \"queries\": " << nq << ", \"train\": " << n_train << ",\n \"rows\": [\n";
            for (size_t i = 0; i < rows.size(); ++i) {
                const Row& r = rows[i];
                csv << N << ',' << D << ",\"" << r.system << "\"," << r.nlist << ',' << r.nprobe << ',' << r.acc.rank1
                    << ',' << r.acc.dir << ',' << r.acc.fpir << ',' << r.acc.threshold << ',' << r.agree_top1 << ','
                    << r.scanned << ',' << r.qps_single << ',' << r.qps_batch << ',' << r.build_s << ',' << r.train_s
                    << ',' << r.bytes << ',' << threads << ",\"" << index_options << "\"," << decay << '\n';
                js << "  {\"system\": \"" << r.system << "\", \"nlist\": " << r.nlist << ", \"nprobe\": " << r.nprobe
                   << ", \"rank1\": " << r.acc.rank1 << ", \"dir_fpir1\": " << r.acc.dir << ", \"fpir\": " << r.acc.fpir
                   << ", \"threshold\": " << r.acc.threshold << ", \"agree_top1\": " << r.agree_top1
                   << ", \"scanned\": " << r.scanned << ", \"qps_single\": " << r.qps_single
                   << ", \"qps_batch\": " << r.qps_batch << ", \"build_s\": " << r.build_s << ", \"train_s\": " << r.train_s
                   << ", \"bytes_per_entry\": " << r.bytes << "}" << (i + 1 < rows.size() ? ",\n" : "\n");
            }
            js << "]}\n";
            std::printf("   wrote %s.csv and .json (load avg now %s)\n", stem.c_str(), bench::load_average().c_str());
        }
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ivf: %s\n", e.what());
    return 1;
}
