// Exhaustive protected search against faiss::IndexFlatIP on the same raw vectors, in one run
// (docs/DESIGN.md section 8, issue 2). For each gallery size N and dimension D (G groups of 16):
// single queries and batches, for each thread count, medians of repeats, ratios
// protected / flat. A naive per-candidate baseline (pslerp::match_one, which materialises the
// transformed probe for every entry) is timed on a subset of the gallery and scaled per entry
// to N. Writes bench_search.csv and bench_search.json into --out.
//
// Not a timed test: run it by hand on a quiet machine, e.g.
//   build-bench/bench/bench_search --n 100000,1000000 --dims 128,512 --threads 1,2 --out bench/out
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/impl/FaissAssert.h>

#include "bench/driver_util.h"
#include "index/IndexProtectedSlerp.h"
#include "plugin/protect.h"
#include "plugin/synth.h"
#include "util/threads.h"

using namespace pslerp;
using pslerp::bench::synth_data;
using pslerp::bench::value_or_die;

namespace {

struct Row {
    int64_t n;
    int dim, groups, threads;
    std::string mode, method;
    double sec_per_query;  // median over repeats
    double ratio_vs_flat;
    double bytes_per_entry;
    int repeats, queries;
    int64_t measured_entries;  // entries actually scored (naive: a subset, scaled to n)
};

// The gallery's first `m` entries in natural layout, for the naive baseline.
struct NaturalSubset {
    int64_t m = 0;
    std::vector<float> templates, keys, weights;
    std::vector<uint8_t> masks;

    NaturalSubset(const IndexProtectedSlerp& idx, int64_t m_) : m(m_) {
        const Params& p = idx.params;
        const int D = p.dim(), G = p.groups, KD = p.key_dim();
        templates.resize(m * D);
        keys.resize(m * KD);
        masks.resize(m * D);
        weights.resize(m * G);
        for (int64_t r = 0; r < m; ++r) {
            idx.store.template_row(p, r, templates.data() + r * D);
            idx.store.key_row(p, r, keys.data() + r * KD);
            idx.store.mask_row(p, r, masks.data() + r * D);
            idx.store.weight_row(p, r, weights.data() + r * G);
        }
    }
};

// Naive top-k of one prepared probe over the subset: match_one per candidate.
void naive_search(const Params& p, const NaturalSubset& s, int64_t m, const float* xn, const float* t, int k,
                  bool parallel, std::vector<float>& scores, std::vector<int64_t>& top) {
    const int D = p.dim(), G = p.groups, KD = p.key_dim();
    scores.resize(m);
#pragma omp parallel for if (parallel)
    for (int64_t j = 0; j < m; ++j) {
        scores[j] = match_one(p, xn, t, s.templates.data() + j * D, s.keys.data() + j * KD, s.masks.data() + j * D,
                              s.weights.data() + j * G);
    }
    top.resize(m);
    std::iota(top.begin(), top.end(), 0);
    const int kk = std::min<int64_t>(k, m);
    std::partial_sort(top.begin(), top.begin() + kk, top.end(),
                      [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
    top.resize(kk);
}

}  // namespace

int main(int argc, char** argv) try {
    bench::Flags f(argc, argv,
                   "bench_search: exhaustive protected search vs faiss::IndexFlatIP (same raw vectors, same run)");
    const auto ns = f.integers("n", "100000");
    const auto dims = f.integers("dims", "128,512");
    const auto threads = f.integers("threads", "1,2");
    const int repeats = int(f.integer("repeats", 5));
    const int single_q = int(f.integer("single-queries", 20));
    const int batch = int(f.integer("batch", 256));
    const int k = int(f.integer("k", 10));
    const int64_t naive_entries = f.integer("naive-entries", 20000);
    const int naive_q = int(f.integer("naive-queries", 3));
    const int64_t naive_batch_entries = f.integer("naive-batch-entries", 500);
    const uint64_t seed = uint64_t(f.integer("seed", 42));
    const std::string out_dir = f.str("out", "bench_out");
    if (!f.finish()) return 0;

    bench::Provenance prov(f.command(), seed);
    prov.print();
    std::printf("# naive baseline: match_one per candidate on the first %ld entries (single, %d queries) and\n"
                "#   %ld entries (batch), time scaled per entry to N; parallel over candidates (single) or\n"
                "#   queries (batch). FAISS IndexFlatIP scans a single query on one thread whatever the\n"
                "#   thread count (FAISS 1.7.3 parallelises over queries); batches >= 20 use BLAS.\n",
                long(naive_entries), naive_q, long(naive_batch_entries));
    std::filesystem::create_directories(out_dir);

    std::vector<Row> rows;
    std::ostringstream extra;  // per-configuration facts for the JSON
    bool first_extra = true;

    for (int64_t dim : dims) {
        const int G = int(dim / 16), D = int(dim);
        for (int64_t N : ns) {
            const int nprobe = std::max(batch, single_q);
            double t0 = now_seconds();
            SynthSplit data = synth_data(dim, N, nprobe, 0, seed);
            std::printf("\n== N=%ld D=%d (%dx16): synthetic gallery in %.1f s\n", long(N), D, G, now_seconds() - t0);

            IndexProtectedSlerp idx(Params::defaults(G, 16));
            idx.set_seed(seed);
            t0 = now_seconds();
            const int64_t chunk = 65536;
            for (int64_t i = 0; i < N; i += chunk) {
                idx.add(std::min(chunk, N - i), data.gallery.x.data() + i * D);
            }
            const double enrol_s = now_seconds() - t0;
            faiss::IndexFlatIP flat(D);
            t0 = now_seconds();
            flat.add(N, data.gallery.x.data());
            const double flat_add_s = now_seconds() - t0;
            std::vector<float>().swap(data.gallery.x);  // both indexes hold their own copy

            const double bpe_prot = double(idx.bytes_per_entry());
            const double bpe_flat = double(D * sizeof(float));
            std::printf("   enrolment %.1f s (%.0f entries/s, %d threads), flat add %.2f s\n"
                        "   bytes/entry: protected %.0f, IndexFlatIP %.0f (x%.2f)\n",
                        enrol_s, N / enrol_s, omp_get_max_threads(), flat_add_s, bpe_prot, bpe_flat,
                        bpe_prot / bpe_flat);

            // Naive subset and prepared probes (natural layout).
            const NaturalSubset sub(idx, std::min(N, std::max(naive_entries, naive_batch_entries)));
            Probe probes = value_or_die(prepare_probes(idx.params, data.probes.x.data(), nprobe));

            // Sanity: the index's scores equal match_one's for its own top-k (ids = rows here).
            std::vector<float> dist(size_t(batch) * k);
            std::vector<idx_t> lab(size_t(batch) * k);
            idx.search(1, data.probes.x.data(), k, dist.data(), lab.data());
            double max_diff = 0;
            for (int j = 0; j < k; ++j) {
                std::vector<float> tm(D), ky(idx.params.key_dim()), w(G);
                std::vector<uint8_t> mk(D);
                idx.store.template_row(idx.params, lab[j], tm.data());
                idx.store.key_row(idx.params, lab[j], ky.data());
                idx.store.mask_row(idx.params, lab[j], mk.data());
                idx.store.weight_row(idx.params, lab[j], w.data());
                const float s = match_one(idx.params, probes.xn.data(), probes.t.data(), tm.data(), ky.data(),
                                          mk.data(), w.data());
                max_diff = std::max(max_diff, double(std::fabs(s - dist[j])));
            }
            std::printf("   check: |index score - match_one| <= %.2e over the top %d of probe 0\n", max_diff, k);

            double rank1_prot = 0, rank1_flat = 0;
            for (int64_t nt : threads) {
                set_threads(int(nt));
                std::vector<double> ps, fs, pb, fb, nsg, nbt;
                for (int r = 0; r < repeats; ++r) {
                    // Single queries, protected then flat, in the same repeat.
                    double a = now_seconds();
                    for (int q = 0; q < single_q; ++q) {
                        idx.search(1, data.probes.x.data() + size_t(q) * D, k, dist.data(), lab.data());
                    }
                    ps.push_back((now_seconds() - a) / single_q);
                    a = now_seconds();
                    for (int q = 0; q < single_q; ++q) {
                        flat.search(1, data.probes.x.data() + size_t(q) * D, k, dist.data(), lab.data());
                    }
                    fs.push_back((now_seconds() - a) / single_q);
                    // Batches.
                    a = now_seconds();
                    idx.search(batch, data.probes.x.data(), k, dist.data(), lab.data());
                    pb.push_back((now_seconds() - a) / batch);
                    if (r == 0) {
                        rank1_prot = 0;
                        for (int q = 0; q < batch; ++q) rank1_prot += lab[size_t(q) * k] == data.probes.labels[q];
                        rank1_prot /= batch;
                    }
                    a = now_seconds();
                    flat.search(batch, data.probes.x.data(), k, dist.data(), lab.data());
                    fb.push_back((now_seconds() - a) / batch);
                    if (r == 0) {
                        rank1_flat = 0;
                        for (int q = 0; q < batch; ++q) rank1_flat += lab[size_t(q) * k] == data.probes.labels[q];
                        rank1_flat /= batch;
                    }
                    // Naive: single queries over a subset, parallel over candidates.
                    std::vector<float> sc;
                    std::vector<int64_t> top;
                    const int64_t m1 = std::min(N, naive_entries), mb = std::min(N, naive_batch_entries);
                    a = now_seconds();
                    for (int q = 0; q < naive_q; ++q) {
                        naive_search(idx.params, sub, m1, probes.xn.data() + size_t(q) * D,
                                     probes.t.data() + size_t(q) * G, k, true, sc, top);
                    }
                    nsg.push_back((now_seconds() - a) / naive_q * double(N) / double(m1));
                    // Naive batch: parallel over queries, each over the batch subset.
                    a = now_seconds();
#pragma omp parallel for
                    for (int q = 0; q < batch; ++q) {
                        std::vector<float> s2;
                        std::vector<int64_t> t2;
                        naive_search(idx.params, sub, mb, probes.xn.data() + size_t(q) * D,
                                     probes.t.data() + size_t(q) * G, k, false, s2, t2);
                    }
                    nbt.push_back((now_seconds() - a) / batch * double(N) / double(mb));
                }
                const double mps = median(ps), mfs = median(fs), mpb = median(pb), mfb = median(fb);
                const double mns = median(nsg), mnb = median(nbt);
                const int64_t m1 = std::min(N, naive_entries), mb = std::min(N, naive_batch_entries);
                rows.push_back({N, D, G, int(nt), "single", "protected", mps, mps / mfs, bpe_prot, repeats, single_q, N});
                rows.push_back({N, D, G, int(nt), "single", "flat_ip", mfs, 1.0, bpe_flat, repeats, single_q, N});
                rows.push_back({N, D, G, int(nt), "single", "naive", mns, mns / mfs, bpe_prot, repeats, naive_q, m1});
                rows.push_back({N, D, G, int(nt), "batch", "protected", mpb, mpb / mfb, bpe_prot, repeats, batch, N});
                rows.push_back({N, D, G, int(nt), "batch", "flat_ip", mfb, 1.0, bpe_flat, repeats, batch, N});
                rows.push_back({N, D, G, int(nt), "batch", "naive", mnb, mnb / mfb, bpe_prot, repeats, batch, mb});
                std::printf("   threads=%ld  single: protected %8.3f ms  flat %8.3f ms  ratio %5.2fx | naive %9.1f ms "
                            "(%.1fx flat, %.1fx protected; scaled from %ld)\n",
                            long(nt), mps * 1e3, mfs * 1e3, mps / mfs, mns * 1e3, mns / mfs, mns / mps, long(m1));
                std::printf("   threads=%ld  batch%d: protected %8.4f ms/q flat %8.4f ms/q ratio %5.2fx | naive %9.2f ms/q "
                            "(%.1fx flat, %.1fx protected; scaled from %ld)\n",
                            long(nt), batch, mpb * 1e3, mfb * 1e3, mpb / mfb, mnb * 1e3, mnb / mfb, mnb / mpb, long(mb));
                std::fflush(stdout);
            }
            std::printf("   rank-1 of %d mated probes: protected %.3f, flat %.3f\n", batch, rank1_prot, rank1_flat);
            extra << (first_extra ? "" : ", ") << "{\"n\": " << N << ", \"dim\": " << D << ", \"enrol_s\": " << enrol_s
                  << ", \"enrol_threads\": " << threads.back() << ", \"flat_add_s\": " << flat_add_s
                  << ", \"check_max_abs_diff\": " << max_diff << ", \"rank1_protected\": " << rank1_prot
                  << ", \"rank1_flat\": " << rank1_flat << "}";
            first_extra = false;
            set_threads(prov.max_threads);
        }
    }

    const std::string csv_path = out_dir + "/bench_search.csv", json_path = out_dir + "/bench_search.json";
    std::ofstream csv(csv_path);
    csv << "n,dim,groups,threads,mode,method,sec_per_query,qps,ratio_vs_flat,bytes_per_entry,repeats,"
           "queries_per_repeat,measured_entries\n";
    std::ofstream js(json_path);
    js << "{\"provenance\": " << prov.json() << ",\n \"configs\": [" << extra.str() << "],\n \"rows\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        csv << r.n << ',' << r.dim << ',' << r.groups << ',' << r.threads << ',' << r.mode << ',' << r.method << ','
            << r.sec_per_query << ',' << 1.0 / r.sec_per_query << ',' << r.ratio_vs_flat << ',' << r.bytes_per_entry
            << ',' << r.repeats << ',' << r.queries << ',' << r.measured_entries << '\n';
        js << "  {\"n\": " << r.n << ", \"dim\": " << r.dim << ", \"groups\": " << r.groups << ", \"threads\": "
           << r.threads << ", \"mode\": \"" << r.mode << "\", \"method\": \"" << r.method
           << "\", \"sec_per_query\": " << r.sec_per_query << ", \"ratio_vs_flat\": " << r.ratio_vs_flat
           << ", \"bytes_per_entry\": " << r.bytes_per_entry << ", \"measured_entries\": " << r.measured_entries
           << "}" << (i + 1 < rows.size() ? ",\n" : "\n");
    }
    js << "]}\n";
    std::printf("\n# load avg at end: %s\n# wrote %s and %s\n", bench::load_average().c_str(), csv_path.c_str(),
                json_path.c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_search: %s\n", e.what());
    return 1;
}
