// De-duplication of enrolments at scale (issue 3) through the IVF, against its exact oracle.
// Per gallery size N and dimension D: an exhaustive IndexProtectedSlerp and, per `--nlist`, an
// IndexIVFProtectedSlerp "IVF<nlist>,PSlerp<D/16>x16[(--index-options)]" whose centring and
// centroids are learned from `--train` samples of other identities. Both hold one enrolment of
// each of N synthetic identities, added in the same order with the same seed and centring, so
// they hold the same protected entries and the exhaustive index is the IVF's exact oracle. A
// batch of new enrolments holds second samples of `--dup-gallery` gallery identities, `--pairs`
// new identities enrolled twice, and new singletons up to `--batch`. pslerp::deduplicate runs
// once through the exhaustive index and through each IVF swept over `--nprobe`.
//
// The threshold is the score that `--false-rate` of new identities' best gallery scores exceed
// (exhaustive search of separate calibration probes): the operating point "1% of genuinely
// new enrolments get flagged". Per run: items per second and its ratio to the exhaustive run,
// gallery duplicates found (the item's own identity among its hits) and its ratio to the
// oracle's, new items wrongly flagged, batch pairs joined, items put in a cluster with another
// identity, and the share of the oracle's (item, gallery id) hits that the run returns. Writes
// dedup_n<N>_d<D>[_options].csv and .json into --out.
//
// Memory: the raw gallery, the exhaustive index and one IVF at a time (at 1M x 512 about 2 GB
// + 4.5 GB + 4.5 GB); the raw gallery is dropped once the last IVF is built.
//
// Not a timed test. Example:
//   build-bench/bench/bench_dedup --n 1000000 --dims 128 --nlist 1024 --nprobe 8,16,32,64 --out bench/results
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/driver_util.h"
#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"
#include "index/dedup.h"
#include "index/factory.h"
#include "plugin/synth.h"
#include "util/threads.h"

using namespace pslerp;
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
    std::string index;  // describe_index of the index searched
    int64_t nlist = 0, nprobe = 0;  // 0, 0 for the exhaustive run
    double seconds = 0;
    double speedup = 1;      // exhaustive seconds / these seconds
    double finds_ratio = 1;  // gallery_found / the oracle's gallery_found
    Quality q;
};

// The exhaustive twin of `ivf`: same parameters, centring and seed. Adding the same features
// in the same order then gives it the same protected entries.
std::unique_ptr<IndexProtectedSlerp> oracle_of(const faiss::Index& ivf, uint64_t seed) {
    const ProtectedIndex& pi = protected_of(ivf);
    auto oracle = std::make_unique<IndexProtectedSlerp>(pi.params);
    oracle->centering = pi.centering;
    oracle->train_pca = pi.train_pca;
    oracle->set_seed(seed);
    return oracle;
}

void add_in_chunks(faiss::Index& index, int64_t n, const float* x, const idx_t* ids) {
    constexpr int64_t kChunk = 65536;
    for (int64_t i = 0; i < n; i += kChunk) {
        const int64_t m = std::min(kChunk, n - i);
        index.add_with_ids(m, x + i * index.d, ids + i);
    }
}

bool same_centering(const Centering& a, const Centering& b) { return a.mean == b.mean && a.rotation == b.rotation; }

void print_row(const Row& r, int64_t B) {
    std::printf("     %-24s nprobe=%-5ld %9.1f items/s (x%6.2f exhaustive)  gallery dups found %.3f (x%.3f "
                "oracle), new flagged %.3f, pairs joined %.3f, wrong cluster %.4f, oracle hits returned %.4f, "
                "unique %ld\n",
                r.index.c_str(), long(r.nprobe), B / r.seconds, r.speedup, r.q.gallery_found, r.finds_ratio,
                r.q.new_flagged, r.q.pairs_joined, r.q.wrong_cluster, r.q.oracle_share, long(r.q.unique));
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) try {
    bench::Flags f(argc, argv, "bench_dedup: enrolment de-duplication through the IVF vs the exhaustive oracle");
    const auto ns = f.integers("n", "100000");
    const auto dims = f.integers("dims", "128");
    const auto nlists = f.integers("nlist", "1024");
    const auto nprobes = f.integers("nprobe", "8,16,32,64");
    const int64_t B = f.integer("batch", 2000);
    const int64_t n_dup = f.integer("dup-gallery", 200);
    const int64_t n_pairs = f.integer("pairs", 100);
    const int64_t n_calib = f.integer("calibration", 1000);
    const double false_rate = f.number("false-rate", 0.01);
    const int64_t n_train = f.integer("train", 50000);
    const int repeats = int(f.integer("repeats", 3));
    const int threads = int(f.integer("threads", omp_get_max_threads()));
    const uint64_t seed = uint64_t(f.integer("seed", 42));
    // Index options in the factory string's parentheses, e.g. "t=0.9" or "pca=true".
    const std::string index_options = f.str("index-options", "");
    const std::string out_dir = f.str("out", "bench_out");
    if (!f.finish()) return 0;
    if (n_dup + 2 * n_pairs > B || n_dup < 0 || n_pairs < 0 || n_calib < 10 || !(false_rate > 0 && false_rate < 1)) {
        std::fprintf(stderr, "error: need dup-gallery + 2 * pairs <= batch, calibration >= 10, 0 < false-rate < 1\n");
        return 1;
    }
    if (nlists.empty() || repeats < 1) {
        std::fprintf(stderr, "error: need at least one --nlist and --repeats >= 1\n");
        return 1;
    }
    for (int64_t nlist : nlists) {
        if (nlist < 1 || n_train < nlist) {
            std::fprintf(stderr, "error: --train (%ld) must be at least each --nlist (%ld)\n", long(n_train),
                         long(nlist));
            return 1;
        }
    }
    set_threads(threads);
    bench::Provenance prov(f.command(), seed);
    prov.print();
    std::printf("# threads: %d; batch %ld = %ld second samples of gallery identities + %ld new identities x 2 + "
                "%ld new singletons; IVF quantizers trained on %ld other identities; medians of %d repeats "
                "(exhaustive: 1 run)\n",
                threads, long(B), long(n_dup), long(n_pairs), long(B - n_dup - 2 * n_pairs), long(n_train), repeats);
    std::filesystem::create_directories(out_dir);
    const std::string options = index_options.empty() ? "" : "(" + index_options + ")";

    for (int64_t dim : dims) {
        const int D = int(dim);
        const SynthConfig cfg = bench::synth_config(dim, seed);
        const SynthModel model = value_or_die(synth_model(cfg));
        for (int64_t N : ns) {
            std::mt19937_64 rng(seed + 1);
            // Gallery: the drivers' synthetic gallery (sample 0 of identities 0..N-1), id = identity;
            // the batch is drawn from the same config and model.
            SynthSplit data = bench::synth_data(dim, N, 0, 0, seed);
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
            // Calibration probes and the quantizers' training set: identities in neither the
            // gallery nor the batch, nor each other.
            const int64_t calib_first = 2 * N + B;
            const int64_t train_first = std::max<int64_t>(N + 10'000'000, calib_first + n_calib);
            std::vector<float> xbatch(B * D);
            for (int64_t i = 0; i < B; ++i) synth_one(cfg, model, labels[i], samples[i], xbatch.data() + i * D);
            const std::vector<float> xcal = value_or_die(synth_identities(cfg, calib_first, n_calib)).x;
            std::vector<float> xtrain = value_or_die(synth_identities(cfg, train_first, n_train)).x;
            std::printf("\n== N=%ld D=%d\n", long(N), D);

            std::vector<Row> rows;
            std::ostringstream meta;
            std::unique_ptr<IndexProtectedSlerp> oracle;
            DedupResult oracle_res;
            DedupOptions opt;
            float threshold = 0;
            for (size_t li = 0; li < nlists.size(); ++li) {
                const int64_t nlist = nlists[li];
                const std::string desc = "IVF" + std::to_string(nlist) + ",PSlerp" + std::to_string(D / 16) + "x16" +
                                         options;
                std::unique_ptr<faiss::Index> ivf = index_factory(D, desc);
                protected_of(*ivf).set_seed(seed);
                double t0 = now_seconds();
                ivf->train(n_train, xtrain.data());
                const double train_s = now_seconds() - t0;
                t0 = now_seconds();
                add_in_chunks(*ivf, N, data.gallery.x.data(), data.gallery.labels.data());
                const double add_s = now_seconds() - t0;
                const double imbalance = dynamic_cast<const IndexIVFProtectedSlerp&>(*ivf).imbalance();

                if (!oracle) {
                    oracle = oracle_of(*ivf, seed);
                    t0 = now_seconds();
                    add_in_chunks(*oracle, N, data.gallery.x.data(), data.gallery.labels.data());
                    const double oracle_add_s = now_seconds() - t0;

                    // Threshold from new identities' best exhaustive gallery scores.
                    std::vector<float> best(n_calib);
                    std::vector<idx_t> best_id(n_calib);
                    oracle->search(n_calib, xcal.data(), 1, best.data(), best_id.data());
                    std::sort(best.begin(), best.end());
                    threshold = best[std::min<int64_t>(n_calib - 1, int64_t((1 - false_rate) * n_calib))];
                    opt.threshold = threshold;
                    std::printf("   threshold %.4f (%.1f%% of %ld new identities' best exhaustive gallery scores "
                                "reach it)\n",
                                threshold, 100 * false_rate, long(n_calib));

                    t0 = now_seconds();
                    oracle_res = deduplicate(*oracle, B, xbatch.data(), opt);
                    const double oracle_s = now_seconds() - t0;
                    Row o{describe_index(*oracle), 0, 0, oracle_s};
                    o.q = assess(oracle_res, labels, N, n_dup, n_pairs, nullptr);
                    rows.push_back(o);
                    std::printf("   %s: add %.1f s\n", o.index.c_str(), oracle_add_s);
                    print_row(o, B);
                    meta << "{\"index\": \"" << o.index << "\", \"add_s\": " << oracle_add_s << "}";
                } else if (!same_centering(oracle->centering, protected_of(*ivf).centering)) {
                    // Centering::fit is deterministic, so this means the training set changed.
                    throw std::runtime_error(desc + " learned another centring than the oracle's");
                }
                if (li + 1 == nlists.size()) data = SynthSplit();  // both built: the raw gallery is no longer needed

                const std::string ivf_desc = describe_index(*ivf);
                std::printf("   %s: train %.1f s, add %.1f s, list imbalance %.2f\n", ivf_desc.c_str(), train_s,
                            add_s, imbalance);
                meta << ", {\"index\": \"" << ivf_desc << "\", \"nlist\": " << nlist << ", \"train_s\": " << train_s
                     << ", \"add_s\": " << add_s << ", \"imbalance\": " << imbalance << "}";
                const Row exhaustive = rows.front();  // a copy: rows grows below
                for (int64_t nprobe : nprobes) {
                    if (nprobe < 1 || nprobe > nlist) {
                        std::printf("     %-24s nprobe=%-5ld skipped (outside 1..nlist)\n", ivf_desc.c_str(),
                                    long(nprobe));
                        continue;
                    }
                    faiss::SearchParametersIVF sp;
                    sp.nprobe = size_t(nprobe);
                    DedupOptions ivf_opt = opt;
                    ivf_opt.search = &sp;
                    std::vector<double> secs;
                    DedupResult res;
                    for (int r = 0; r < repeats; ++r) {
                        t0 = now_seconds();
                        res = deduplicate(*ivf, B, xbatch.data(), ivf_opt);
                        secs.push_back(now_seconds() - t0);
                    }
                    Row r{ivf_desc, nlist, nprobe, median(secs)};
                    r.q = assess(res, labels, N, n_dup, n_pairs, &oracle_res);
                    r.speedup = exhaustive.seconds / r.seconds;
                    r.finds_ratio = exhaustive.q.gallery_found > 0 ? r.q.gallery_found / exhaustive.q.gallery_found : 1.0;
                    rows.push_back(r);
                    print_row(r, B);
                }
            }

            const std::string stem = out_dir + "/dedup_n" + std::to_string(N) + "_d" + std::to_string(D) +
                                     bench::file_suffix(index_options);
            std::ofstream csv(stem + ".csv");
            csv << "n,dim,index,nlist,nprobe,items_per_s,speedup,gallery_found,finds_ratio,new_flagged,pairs_joined,"
                   "wrong_cluster,oracle_share,unique,threshold,threads\n";
            for (const Row& r : rows) {
                csv << N << ',' << D << ",\"" << r.index << "\"," << r.nlist << ',' << r.nprobe << ',' << B / r.seconds
                    << ',' << r.speedup << ',' << r.q.gallery_found << ',' << r.finds_ratio << ',' << r.q.new_flagged
                    << ',' << r.q.pairs_joined << ',' << r.q.wrong_cluster << ',' << r.q.oracle_share << ','
                    << r.q.unique << ',' << threshold << ',' << threads << '\n';
            }
            std::ofstream js(stem + ".json");
            js << "{\"provenance\": " << prov.json() << ",\n \"n\": " << N << ", \"dim\": " << D
               << ", \"batch\": " << B << ", \"dup_gallery\": " << n_dup << ", \"pairs\": " << n_pairs
               << ", \"train\": " << n_train << ", \"false_rate\": " << false_rate << ", \"threshold\": " << threshold
               << ", \"repeats\": " << repeats << ", \"threads\": " << threads << ",\n \"indexes\": [" << meta.str()
               << "],\n \"rows\": [\n";
            for (size_t i = 0; i < rows.size(); ++i) {
                const Row& r = rows[i];
                js << "  {\"index\": \"" << r.index << "\", \"nlist\": " << r.nlist << ", \"nprobe\": " << r.nprobe
                   << ", \"items_per_s\": " << B / r.seconds << ", \"speedup\": " << r.speedup
                   << ", \"gallery_found\": " << r.q.gallery_found << ", \"finds_ratio\": " << r.finds_ratio
                   << ", \"new_flagged\": " << r.q.new_flagged << ", \"pairs_joined\": " << r.q.pairs_joined
                   << ", \"wrong_cluster\": " << r.q.wrong_cluster << ", \"oracle_share\": " << r.q.oracle_share
                   << ", \"unique\": " << r.q.unique << "}" << (i + 1 < rows.size() ? ",\n" : "\n");
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
