// De-duplication of enrolments at scale (issue 3). A protected index with a coarse stage holds
// one enrolment of each of N synthetic identities; a batch of new enrolments holds second
// samples of `--dup-gallery` gallery identities, `--pairs` new identities enrolled twice, and
// new singletons up to `--batch`. pslerp::deduplicate runs through the coarse stage, swept over
// the coarse parameter (nprobe or efSearch) and range_shortlist, and once with the coarse index
// detached: exhaustive range search in both steps, the oracle the coarse runs are compared to.
//
// The threshold is the score that `--false-rate` of new identities' best gallery scores exceed
// (exhaustive search of separate calibration probes): the operating point "1% of genuinely
// new enrolments get flagged". Per run: gallery duplicates found (the item's own identity among
// its hits), new items wrongly flagged, batch pairs joined, items put in a cluster with another
// identity, the share of the oracle's (item, gallery id) hits that the coarse run returns, and
// items per second. Writes dedup_n<N>_d<D>.csv and .json into --out.
//
// Not a timed test. Example:
//   build-bench/bench/bench_dedup --n 1000000 --dims 128 --out bench/results
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/driver_util.h"
#include "index/IndexProtectedSlerp.h"
#include "index/dedup.h"
#include "index/factory.h"
#include "plugin/synth.h"

using namespace pslerp;
using pslerp::bench::median;
using pslerp::bench::now_s;
using pslerp::bench::value_or_die;

namespace {

struct Quality {
    double gallery_found = 0;   // duplicates of gallery identities whose own entry is among the hits
    double new_flagged = 0;     // items of new identities with at least one gallery hit
    double pairs_joined = 0;    // batch pairs put in the same cluster
    double wrong_cluster = 0;   // items sharing a cluster with another identity
    double oracle_share = 0;    // (item, id) gallery hits of the oracle that this run returned
    int64_t gallery_hits = 0, unique = 0;
};

// labels: identity of each batch item; gallery ids are identities (0..N-1).
Quality assess(const DedupResult& r, const std::vector<int64_t>& labels, int64_t N, int64_t n_dup, int64_t n_pairs,
               const DedupResult* oracle) {
    Quality q;
    const int64_t B = int64_t(labels.size());
    int64_t n_new = 0;
    for (int64_t i = 0; i < B; ++i) {
        const auto& hits = r.existing[i];
        q.gallery_hits += int64_t(hits.size());
        if (labels[i] < N) {
            q.gallery_found += std::any_of(hits.begin(), hits.end(), [&](const auto& h) { return h.first == labels[i]; });
        } else {
            ++n_new;
            q.new_flagged += !hits.empty();
        }
        q.wrong_cluster += labels[r.cluster[i]] != labels[i];
    }
    for (int64_t p = 0; p < n_pairs; ++p) {
        const int64_t a = n_dup + 2 * p;
        q.pairs_joined += r.cluster[a] == r.cluster[a + 1];
    }
    q.gallery_found /= std::max<int64_t>(1, n_dup);
    q.new_flagged /= std::max<int64_t>(1, n_new);
    q.pairs_joined /= std::max<int64_t>(1, n_pairs);
    q.wrong_cluster /= double(B);
    q.unique = int64_t(r.unique.size());
    if (oracle) {
        int64_t total = 0, found = 0;
        for (int64_t i = 0; i < B; ++i) {
            std::set<idx_t> got;
            for (const auto& h : r.existing[i]) got.insert(h.first);
            for (const auto& h : oracle->existing[i]) {
                ++total;
                found += got.count(h.first);
            }
        }
        q.oracle_share = total ? double(found) / double(total) : 1.0;
    } else {
        q.oracle_share = 1.0;
    }
    return q;
}

struct Row {
    std::string coarse, param_name;
    int param = 0, range_shortlist = 0;
    double seconds = 0;
    Quality q;
};

}  // namespace

int main(int argc, char** argv) try {
    bench::Flags f(argc, argv, "bench_dedup: enrolment de-duplication through the coarse stage vs exhaustive");
    const auto ns = f.integers("n", "100000");
    const auto dims = f.integers("dims", "128");
    const auto coarses = f.strings("coarse", "IVF1024,Flat", ';');
    const auto nprobes = f.integers("nprobe", "16,64,256");
    const auto efs = f.integers("ef", "64,256");
    const auto shortlists = f.integers("range-shortlist", "100,1000");
    const int64_t B = f.integer("batch", 2000);
    const int64_t n_dup = f.integer("dup-gallery", 200);
    const int64_t n_pairs = f.integer("pairs", 100);
    const int64_t n_calib = f.integer("calibration", 1000);
    const double false_rate = std::stod(f.str("false-rate", "0.01"));
    const int64_t n_train = f.integer("train", 50000);
    const int repeats = int(f.integer("repeats", 3));
    const int threads = int(f.integer("threads", omp_get_max_threads()));
    const uint64_t seed = uint64_t(f.integer("seed", 42));
    // Index options in the factory string's parentheses, e.g. "embedding=identity".
    const std::string index_options = f.str("index-options", "");
    const std::string out_dir = f.str("out", "bench_out");
    if (!f.finish()) return 0;
    if (n_dup + 2 * n_pairs > B || n_dup < 0 || n_pairs < 0 || n_calib < 10 || !(false_rate > 0 && false_rate < 1)) {
        std::fprintf(stderr, "error: need dup-gallery + 2 * pairs <= batch, calibration >= 10, 0 < false-rate < 1\n");
        return 1;
    }
    omp_set_num_threads(threads);
    bench::Provenance prov(f.command(), seed);
    prov.print();
    std::printf("# threads: %d; batch %ld = %ld second samples of gallery identities + %ld new identities x 2 + "
                "%ld new singletons; medians of %d repeats (exhaustive: 1 run)\n",
                threads, long(B), long(n_dup), long(n_pairs), long(B - n_dup - 2 * n_pairs), repeats);
    std::filesystem::create_directories(out_dir);

    for (int64_t dim : dims) {
        const int D = int(dim);
        const SynthConfig cfg = bench::synth_config(dim, seed);
        const SynthModel model = value_or_die(synth_model(cfg));
        for (int64_t N : ns) {
            std::mt19937_64 rng(seed + 1);
            // Gallery: the drivers' synthetic gallery (sample 0 of identities 0..N-1), id = identity;
            // the batch is drawn from the same config and model.
            const SynthSplit data = bench::synth_data(dim, N, 0, 0, seed);
            const float* xb = data.gallery.x.data();
            const idx_t* ids = data.gallery.labels.data();
            // Batch: gallery duplicates, then pairs (consecutive), then singletons.
            std::vector<int64_t> labels(B);
            std::vector<int64_t> samples(B, 0);
            {
                std::vector<int64_t> pick(N);
                std::iota(pick.begin(), pick.end(), 0);
                std::shuffle(pick.begin(), pick.end(), rng);
                for (int64_t i = 0; i < n_dup; ++i) labels[i] = pick[i], samples[i] = 1;
            }
            for (int64_t p = 0; p < n_pairs; ++p) {
                labels[n_dup + 2 * p] = labels[n_dup + 2 * p + 1] = N + p;
                samples[n_dup + 2 * p + 1] = 1;
            }
            for (int64_t i = n_dup + 2 * n_pairs; i < B; ++i) labels[i] = N + n_pairs + (i - n_dup - 2 * n_pairs);
            std::vector<float> xbatch(B * D), xcal(n_calib * D);
            for (int64_t i = 0; i < B; ++i) synth_one(cfg, model, labels[i], samples[i], xbatch.data() + i * D);
            for (int64_t i = 0; i < n_calib; ++i) synth_one(cfg, model, 2 * N + B + i, 0, xcal.data() + i * D);
            std::printf("\n== N=%ld D=%d\n", long(N), D);

            std::vector<Row> rows;
            std::ostringstream meta;
            for (const std::string& coarse : coarses) {
                const bench::CoarseSweep sweep(coarse, efs, nprobes);
                const std::string desc = bench::protected_factory(D, index_options, coarse);
                std::unique_ptr<IndexProtectedSlerp> idx = index_factory(D, desc);
                idx->set_seed(seed);
                double t0 = now_s();
                idx->train(std::min(N, n_train), xb);
                for (int64_t i = 0; i < N; i += 65536) {
                    const int64_t m = std::min<int64_t>(65536, N - i);
                    idx->add_with_ids(m, xb + i * D, ids + i);
                }
                const double build_s = now_s() - t0;

                // Threshold from new identities' best exhaustive gallery scores.
                std::vector<float> best(n_calib);
                std::vector<idx_t> best_id(n_calib);
                idx->search_exhaustive(n_calib, xcal.data(), 1, best.data(), best_id.data());
                std::sort(best.begin(), best.end());
                const float threshold = best[std::min<int64_t>(n_calib - 1, int64_t((1 - false_rate) * n_calib))];
                std::printf("   %s: build %.1f s; threshold %.4f (%.1f%% of %ld new identities' best gallery "
                            "scores reach it)\n",
                            desc.c_str(), build_s, threshold, 100 * false_rate, long(n_calib));

                // Oracle: the same index with its coarse stage detached.
                DedupOptions opt;
                opt.threshold = threshold;
                std::unique_ptr<faiss::Index> detached = std::move(idx->coarse);
                t0 = now_s();
                const DedupResult oracle = deduplicate(*idx, B, xbatch.data(), opt);
                const double oracle_s = now_s() - t0;
                idx->coarse = std::move(detached);
                Row o{coarse, "exhaustive", 0, 0, oracle_s, assess(oracle, labels, N, n_dup, n_pairs, nullptr)};
                rows.push_back(o);
                auto print = [&](const Row& r) {
                    std::printf("     %-10s %s=%-4d range_shortlist=%-5d %8.1f items/s  gallery dups found %.3f, new "
                                "flagged %.3f, pairs joined %.3f, wrong cluster %.4f, oracle hits returned %.4f, "
                                "unique %ld\n",
                                r.param_name == "exhaustive" ? "exhaustive" : "coarse", r.param_name.c_str(), r.param,
                                r.range_shortlist, B / r.seconds, r.q.gallery_found, r.q.new_flagged, r.q.pairs_joined,
                                r.q.wrong_cluster, r.q.oracle_share, long(r.q.unique));
                    std::fflush(stdout);
                };
                print(o);
                for (int64_t p : sweep.values) {
                    for (int64_t rs : shortlists) {
                        SearchParametersProtectedSlerp sp;
                        sweep.apply(sp, p);
                        sp.range_shortlist = int(rs);
                        opt.search = &sp;
                        std::vector<double> secs;
                        DedupResult res;
                        for (int r = 0; r < repeats; ++r) {
                            t0 = now_s();
                            res = deduplicate(*idx, B, xbatch.data(), opt);
                            secs.push_back(now_s() - t0);
                        }
                        Row r{coarse, sweep.name, int(p), int(rs), median(secs),
                              assess(res, labels, N, n_dup, n_pairs, &oracle)};
                        rows.push_back(r);
                        print(r);
                    }
                }
                meta << (meta.tellp() > 0 ? ", " : "") << "{\"coarse\": \"" << coarse << "\", \"build_s\": " << build_s
                     << ", \"threshold\": " << threshold << "}";
            }

            const std::string stem = out_dir + "/dedup_n" + std::to_string(N) + "_d" + std::to_string(D) +
                                     bench::file_suffix(index_options);
            std::ofstream csv(stem + ".csv");
            csv << "n,dim,coarse,param_name,param,range_shortlist,items_per_s,gallery_found,new_flagged,pairs_joined,"
                   "wrong_cluster,oracle_share,unique,threads\n";
            for (const Row& r : rows) {
                csv << N << ',' << D << ",\"" << r.coarse << "\"," << r.param_name << ',' << r.param << ','
                    << r.range_shortlist << ',' << B / r.seconds << ',' << r.q.gallery_found << ',' << r.q.new_flagged
                    << ',' << r.q.pairs_joined << ',' << r.q.wrong_cluster << ',' << r.q.oracle_share << ','
                    << r.q.unique << ',' << threads << '\n';
            }
            std::ofstream js(stem + ".json");
            js << "{\"provenance\": " << prov.json() << ",\n \"n\": " << N << ", \"dim\": " << D
               << ", \"batch\": " << B << ", \"dup_gallery\": " << n_dup << ", \"pairs\": " << n_pairs
               << ", \"false_rate\": " << false_rate << ", \"threads\": " << threads << ",\n \"indexes\": ["
               << meta.str() << "],\n \"rows\": [\n";
            for (size_t i = 0; i < rows.size(); ++i) {
                const Row& r = rows[i];
                js << "  {\"coarse\": \"" << r.coarse << "\", \"" << r.param_name << "\": " << r.param
                   << ", \"range_shortlist\": " << r.range_shortlist << ", \"items_per_s\": " << B / r.seconds
                   << ", \"gallery_found\": " << r.q.gallery_found << ", \"new_flagged\": " << r.q.new_flagged
                   << ", \"pairs_joined\": " << r.q.pairs_joined << ", \"wrong_cluster\": " << r.q.wrong_cluster
                   << ", \"oracle_share\": " << r.q.oracle_share << ", \"unique\": " << r.q.unique << "}"
                   << (i + 1 < rows.size() ? ",\n" : "\n");
            }
            js << "]}\n";
            std::printf("   wrote %s.csv and .json (load avg now %s)\n", stem.c_str(), bench::load_average().c_str());
        }
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dedup: %s\n", e.what());
    return 1;
}
