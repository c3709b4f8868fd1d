// Coarse-then-refine recall and speed (issue 3). For each gallery size N and dimension D
// (G groups of 16) of synthetic features and each coarse factory string (HNSW32, IVF<nlist>
// with Flat / PQ / SQ codes, Flat, PQ fast-scan; "A|B" gives the protected and the raw index
// different strings where the code layout depends on the dimension), the protected index
// "PSlerp<G>x16[(--index-options)],<coarse>" is swept over the coarse parameter (efSearch,
// nprobe, or none) and k_factor: recall@1 and recall@10 against the exhaustive protected search
// of the same index (search_exhaustive), FAISS's 1-recall@10, the share of mated probes whose
// identity is in the top 10, queries per second single and batched, build time, bytes per
// entry. In the same run the unprotected FAISS equivalent (the same coarse string on the raw
// vectors, inner product; alone and inside IndexRefineFlat with the same k_factor) is swept
// over the same parameter, its recall measured against the exact raw IndexFlatIP. Writes
// recall_n<N>_d<D>[_options].csv and .json into --out (bench/plot_recall.py plots them).
//
// Not a timed test. Example:
//   build-bench/bench/bench_recall --n 100000 --dims 128 --out bench/out
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <faiss/IVFlib.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexRefine.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include "bench/driver_util.h"
#include "index/IndexProtectedSlerp.h"
#include "index/factory.h"
#include "plugin/synth.h"

using namespace pslerp;
using pslerp::bench::median;
using pslerp::bench::synth_data;
using pslerp::bench::value_or_die;
using pslerp::bench::now_s;

namespace {

// Serialised size without keeping the bytes.
struct CountingWriter : faiss::IOWriter {
    size_t bytes = 0;
    size_t operator()(const void*, size_t size, size_t nitems) override {
        bytes += size * nitems;
        return nitems;
    }
};

double serialized_bytes(const faiss::Index* index) {
    CountingWriter w;
    faiss::write_index(index, &w);
    return double(w.bytes);
}

// Mean over queries of |top-r of got ∩ top-r of truth| / r.
double recall_at(const std::vector<idx_t>& got, const std::vector<idx_t>& truth, int64_t q0, int64_t q1, int k,
                 int r) {
    double hits = 0;
    for (int64_t q = q0; q < q1; ++q) {
        const idx_t* g = got.data() + q * k;
        const idx_t* t = truth.data() + q * k;
        for (int i = 0; i < r; ++i) {
            if (t[i] >= 0 && std::find(g, g + r, t[i]) != g + r) hits += 1;
        }
    }
    return hits / double((q1 - q0) * r);
}

// FAISS's "1-recall@r": share of queries whose exact nearest entry is among the first r results.
double one_recall_at(const std::vector<idx_t>& got, const std::vector<idx_t>& truth, int64_t q0, int64_t q1, int k,
                     int r) {
    double hits = 0;
    for (int64_t q = q0; q < q1; ++q) {
        const idx_t* g = got.data() + q * k;
        if (truth[q * k] >= 0 && std::find(g, g + r, truth[q * k]) != g + r) hits += 1;
    }
    return hits / double(q1 - q0);
}

// Share of mated probes [0, n_mated) whose own identity (gallery id = identity) is among the
// first r results: the identification rate, whatever exhaustive search would rank first.
double mated_found_at(const std::vector<idx_t>& got, const std::vector<int64_t>& probe_labels, int64_t n_mated, int k,
                      int r) {
    double hits = 0;
    for (int64_t q = 0; q < n_mated; ++q) {
        const idx_t* g = got.data() + q * k;
        hits += std::find(g, g + r, idx_t(probe_labels[q])) != g + r;
    }
    return hits / double(std::max<int64_t>(1, n_mated));
}

using SearchFn = std::function<void(idx_t n, const float* x, float* distances, idx_t* labels)>;

struct Measured {
    double qps_single = 0, qps_batch = 0;
    std::vector<idx_t> labels;  // of the batched search, nq * k
};

// Batched: all nq queries in one call; single: the first n_single one at a time. Medians of
// `repeats`.
Measured measure(const SearchFn& fn, const float* x, int64_t nq, int64_t n_single, int dim, int k, int repeats) {
    Measured m;
    std::vector<float> dist(nq * k);
    m.labels.resize(nq * k);
    std::vector<double> single, batch;
    for (int r = 0; r < repeats; ++r) {
        double a = now_s();
        fn(nq, x, dist.data(), m.labels.data());
        batch.push_back(nq / (now_s() - a));
        a = now_s();
        for (int64_t q = 0; q < n_single; ++q) fn(1, x + q * dim, dist.data() + q * k, m.labels.data() + q * k);
        single.push_back(n_single / (now_s() - a));
    }
    m.qps_batch = median(batch);
    m.qps_single = median(single);
    return m;
}

struct Row {
    std::string coarse, system, param_name;
    int param = 0, k_factor = 0;
    double recall1 = 0, recall10 = 0, one_recall10 = 0, recall1_mated = 0, recall10_nonmated = 0, mated_found10 = 0, qps_single = 0, qps_batch = 0, build_s = 0, bytes_per_entry = 0;
};

// One sweep point: recalls of the batched labels against `truth`, speeds, printed and kept.
void record(std::vector<Row>& rows, Row r, const Measured& m, const std::vector<idx_t>& truth,
            const std::vector<int64_t>& probe_labels, int64_t nq, int k, double build_s, double bytes_per_entry) {
    r.recall1 = recall_at(m.labels, truth, 0, nq, k, 1);
    r.recall10 = recall_at(m.labels, truth, 0, nq, k, 10);
    r.one_recall10 = one_recall_at(m.labels, truth, 0, nq, k, 10);
    r.recall1_mated = recall_at(m.labels, truth, 0, nq / 2, k, 1);
    r.recall10_nonmated = recall_at(m.labels, truth, nq / 2, nq, k, 10);
    r.mated_found10 = mated_found_at(m.labels, probe_labels, nq / 2, k, 10);
    r.qps_single = m.qps_single;
    r.qps_batch = m.qps_batch;
    r.build_s = build_s;
    r.bytes_per_entry = bytes_per_entry;
    std::printf("     %-11s %s=%-4d k_factor=%-3d R@1 %.4f R@10 %.4f 1-R@10 %.4f (mated R@1 %.3f, non-mated R@10 %.3f, mated "
                "identity in top-10 %.3f)  QPS single %8.1f batch %8.1f\n",
                r.system.c_str(), r.param_name.c_str(), r.param, r.k_factor, r.recall1, r.recall10, r.one_recall10,
                r.recall1_mated, r.recall10_nonmated, r.mated_found10, r.qps_single, r.qps_batch);
    std::fflush(stdout);
    rows.push_back(std::move(r));
}


}  // namespace

int main(int argc, char** argv) try {
    bench::Flags f(argc, argv, "bench_recall: coarse-then-refine recall/QPS vs exhaustive protected search and "
                               "vs the unprotected FAISS equivalent (same run)");
    const auto ns = f.integers("n", "100000");
    const auto dims = f.integers("dims", "128");
    const auto coarses = f.strings("coarse", "HNSW32;IVF1024,Flat;IVF1024,PQ16np;IVF1024,SQ8", ';');
    const auto efs = f.integers("ef", "16,64,256,512");
    const auto nprobes = f.integers("nprobe", "4,16,64,256");
    const auto kfs = f.integers("k-factor", "1,4,10,20,50");
    const int64_t nq = f.integer("queries", 500);
    const int64_t n_single = f.integer("single-queries", 100);
    const int64_t n_single_exh = f.integer("single-queries-exhaustive", 5);
    const int64_t n_train = f.integer("train", 50000);
    const int repeats = int(f.integer("repeats", 3));
    const int threads = int(f.integer("threads", omp_get_max_threads()));
    const uint64_t seed = uint64_t(f.integer("seed", 42));
    // Index options in the factory string's parentheses, e.g. "embedding=identity".
    const std::string index_options = f.str("index-options", "");
    const std::string out_dir = f.str("out", "bench_out");
    if (!f.finish()) return 0;
    omp_set_num_threads(threads);
    const int k = 10;

    bench::Provenance prov(f.command(), seed);
    prov.print();
    std::printf("# threads: %d; k = %d; %ld queries (half mated, half non-mated) batched, the first %ld one at a "
                "time; medians of %d repeats\n",
                threads, k, long(nq), long(n_single), repeats);
    std::filesystem::create_directories(out_dir);

    for (int64_t dim : dims) {
        const int G = int(dim / 16), D = int(dim);
        for (int64_t N : ns) {
            double t0 = now_s();
            const SynthSplit data = synth_data(dim, N, nq / 2, nq - nq / 2, seed);
            const float* xq = data.probes.x.data();
            const float* xb = data.gallery.x.data();
            std::printf("\n== N=%ld D=%d (%dx16): synthetic data in %.1f s\n", long(N), D, G, now_s() - t0);

            // Exact raw ground truth and the unprotected exhaustive speed.
            std::vector<idx_t> raw_gt;
            double flat_qps_batch = 0, flat_qps_single = 0;
            {
                faiss::IndexFlatIP flat(D);
                flat.add(N, xb);
                const Measured m = measure([&](idx_t n, const float* x, float* d, idx_t* l) { flat.search(n, x, k, d, l); },
                                           xq, nq, n_single_exh, D, k, 1);
                raw_gt = m.labels;
                flat_qps_batch = m.qps_batch;
                flat_qps_single = m.qps_single;
            }
            std::printf("   IndexFlatIP exhaustive: %.1f QPS batched, %.1f QPS single; mated identity in top-10 %.3f\n",
                        flat_qps_batch, flat_qps_single, mated_found_at(raw_gt, data.probes.labels, nq / 2, k, 10));

            std::vector<Row> rows;
            double exh_qps_batch = 0, exh_qps_single = 0;
            std::ostringstream builds;
            for (const std::string& coarse_arg : coarses) {
                // "A|B": A over the protected coarse embedding, B on the raw vectors (for codes whose
                // layout depends on the dimension: the linear embedding has D + 16 dimensions).
                const size_t bar = coarse_arg.find('|');
                const std::string coarse = coarse_arg.substr(0, bar);
                const std::string raw_coarse = bar == std::string::npos ? coarse : coarse_arg.substr(bar + 1);
                const bench::CoarseSweep sweep(coarse, efs, nprobes);
                const int64_t nt = std::min(N, n_train);

                // --- protected ---
                const std::string desc = bench::protected_factory(D, index_options, coarse);
                std::unique_ptr<IndexProtectedSlerp> idx = index_factory(D, desc);
                idx->set_seed(seed);
                t0 = now_s();
                idx->train(nt, xb);
                const double train_s = now_s() - t0;
                for (int64_t i = 0; i < N; i += 65536) idx->add(std::min<int64_t>(65536, N - i), xb + i * D);
                const double build_s = now_s() - t0;
                const double bpe = double(idx->storage_bytes_per_entry()) + serialized_bytes(idx->coarse.get()) / N;
                std::printf("   %s: build %.1f s (train %.1f s), %.0f bytes/entry (storage %zu + coarse %.0f)\n",
                            desc.c_str(), build_s, train_s, bpe, idx->storage_bytes_per_entry(),
                            bpe - idx->storage_bytes_per_entry());
                std::fflush(stdout);

                // Ground truth: exhaustive protected search of this very index (its keys).
                const Measured gt = measure(
                        [&](idx_t n, const float* x, float* d, idx_t* l) { idx->search_exhaustive(n, x, k, d, l); }, xq,
                        nq, n_single_exh, D, k, 1);
                exh_qps_batch = std::max(exh_qps_batch, gt.qps_batch);  // best observed: conservative speed-ups
                exh_qps_single = std::max(exh_qps_single, gt.qps_single);
                std::printf("   exhaustive protected: %.1f QPS batched, %.1f QPS single; mated identity in top-10 %.3f\n",
                            gt.qps_batch, gt.qps_single, mated_found_at(gt.labels, data.probes.labels, nq / 2, k, 10));

                for (int64_t p : sweep.values) {
                    for (int64_t kf : kfs) {
                        SearchParametersProtectedSlerp sp;
                        sp.k_factor = int(kf);
                        sweep.apply(sp, p);
                        const Measured m = measure(
                                [&](idx_t n, const float* x, float* d, idx_t* l) { idx->search(n, x, k, d, l, &sp); },
                                xq, nq, n_single, D, k, repeats);
                        record(rows, Row{coarse, "protected", sweep.name, int(p), int(kf)}, m, gt.labels, data.probes.labels, nq, k, build_s,
                               bpe);
                    }
                }
                builds << (builds.tellp() > 0 ? ", " : "") << "{\"coarse\": \"" << coarse
                       << "\", \"protected_build_s\": " << build_s << ", \"protected_train_s\": " << train_s
                       << ", \"exhaustive_qps_batch\": " << gt.qps_batch
                       << ", \"exhaustive_qps_single\": " << gt.qps_single;
                idx.reset();

                // --- unprotected equivalent ---
                std::unique_ptr<faiss::Index> raw(faiss::index_factory(D, raw_coarse.c_str(), faiss::METRIC_INNER_PRODUCT));
                t0 = now_s();
                if (!raw->is_trained) raw->train(nt, xb);
                for (int64_t i = 0; i < N; i += 65536) raw->add(std::min<int64_t>(65536, N - i), xb + i * D);
                const double raw_build_s = now_s() - t0;
                const double raw_bpe = serialized_bytes(raw.get()) / N;
                std::printf("   unprotected %s: build %.1f s, %.0f bytes/entry\n", raw_coarse.c_str(), raw_build_s, raw_bpe);
                builds << ", \"unprotected_build_s\": " << raw_build_s << "}";
                auto* raw_hnsw = dynamic_cast<faiss::IndexHNSW*>(raw.get());
                // The same structure as the protected index: the coarse index alone (k_factor 0 in
                // the output) and with an exact re-rank of k * k_factor candidates (IndexRefineFlat
                // over the raw vectors).
                faiss::IndexRefineFlat refined(raw.get(), xb);
                for (int64_t p : sweep.values) {
                    if (raw_hnsw) raw_hnsw->hnsw.efSearch = int(p);  // SearchParametersHNSW is not honoured (DESIGN)
                    if (sweep.ivf) faiss::ivflib::extract_index_ivf(raw.get())->nprobe = size_t(p);
                    std::vector<int64_t> raw_kfs{0};
                    raw_kfs.insert(raw_kfs.end(), kfs.begin(), kfs.end());
                    for (int64_t kf : raw_kfs) {
                        refined.k_factor = float(kf);
                        faiss::Index* searched = kf == 0 ? raw.get() : &refined;
                        const Measured m = measure(
                                [&](idx_t n, const float* x, float* d, idx_t* l) { searched->search(n, x, k, d, l); },
                                xq, nq, n_single, D, k, repeats);
                        record(rows, Row{coarse, "unprotected", sweep.name, int(p), int(kf)}, m, raw_gt, data.probes.labels, nq, k,
                               raw_build_s, raw_bpe + (kf == 0 ? 0.0 : 4.0 * D));
                    }
                }
            }

            const std::string stem = out_dir + "/recall_n" + std::to_string(N) + "_d" + std::to_string(D) +
                                     bench::file_suffix(index_options);
            std::ofstream csv(stem + ".csv");
            csv << "n,dim,coarse,system,param_name,param,k_factor,recall1,recall10,one_recall10,recall1_mated,recall10_nonmated,qps_single,qps_batch,build_s,"
                   "bytes_per_entry,exhaustive_protected_qps_single,exhaustive_protected_qps_batch,flat_ip_qps_single,"
                   "flat_ip_qps_batch,threads,index_options,mated_found10\n";
            for (const Row& r : rows) {
                csv << N << ',' << D << ",\"" << r.coarse << "\"," << r.system << ',' << r.param_name << ',' << r.param
                    << ',' << r.k_factor << ',' << r.recall1 << ',' << r.recall10 << ',' << r.one_recall10 << ',' << r.recall1_mated << ','
                    << r.recall10_nonmated << ',' << r.qps_single << ','
                    << r.qps_batch << ',' << r.build_s << ',' << r.bytes_per_entry << ',' << exh_qps_single << ','
                    << exh_qps_batch << ',' << flat_qps_single << ',' << flat_qps_batch << ',' << threads << ",\"" << index_options
                    << "\"," << r.mated_found10 << '\n';
            }
            std::ofstream js(stem + ".json");
            js << "{\"provenance\": " << prov.json() << ",\n \"n\": " << N << ", \"dim\": " << D
               << ", \"threads\": " << threads << ", \"index_options\": \"" << index_options << "\", \"queries\": " << nq << ", \"single_queries\": " << n_single
               << ", \"flat_ip_qps_batch\": " << flat_qps_batch << ", \"flat_ip_qps_single\": " << flat_qps_single
               << ",\n \"builds\": [" << builds.str() << "],\n \"rows\": [\n";
            for (size_t i = 0; i < rows.size(); ++i) {
                const Row& r = rows[i];
                js << "  {\"coarse\": \"" << r.coarse << "\", \"system\": \"" << r.system << "\", \"" << r.param_name
                   << "\": " << r.param << ", \"k_factor\": " << r.k_factor << ", \"recall1\": " << r.recall1
                   << ", \"recall10\": " << r.recall10 << ", \"one_recall10\": " << r.one_recall10 << ", \"recall1_mated\": " << r.recall1_mated
                   << ", \"recall10_nonmated\": " << r.recall10_nonmated << ", \"mated_found10\": " << r.mated_found10 << ", \"qps_single\": " << r.qps_single
                   << ", \"qps_batch\": " << r.qps_batch << ", \"build_s\": " << r.build_s
                   << ", \"bytes_per_entry\": " << r.bytes_per_entry << "}" << (i + 1 < rows.size() ? ",\n" : "\n");
            }
            js << "]}\n";
            std::printf("   wrote %s.csv and .json (load avg now %s)\n", stem.c_str(), bench::load_average().c_str());
        }
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_recall: %s\n", e.what());
    return 1;
}
