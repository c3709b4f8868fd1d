// What an IVF cell reveals (README "Security"), measured with the attacks that try to use it.
// Synthetic identities; gallery A enrols sample 0 of N identities in "IVF<nlist>,PSlerp...",
// gallery B enrols sample 1 of the same identities under fresh keys, sample 2 is "another
// photo" of each person. For each nlist and each way the quantizer was trained (on other
// identities; on the enrolled features themselves) it reports:
//   - cosine between an entry's cell centroid and its centred, group-normalised raw feature
//     (whole vector, and the mean over groups), beside the protected template's per-group
//     cosine with the raw feature (what the template alone reveals);
//   - linkability D_sys (Gomez-Barrero et al.) of A and B by their entries' centroids, with
//     the quantizer shared by both galleries and trained separately; by list number (shared
//     quantizer: the list ids alone, what remains visible when the centroid table is sealed);
//     and, for reference, by template cosine (the scheme's own linkability at this t);
//   - the centroid used as a probe: accepted as the person at the FAR 1e-3 threshold of the
//     protected system (verify against the entry) and of the unprotected system (cosine with
//     the person's other photo), against a random impostor's 0.1%.
//
// Not a timed test. Example:
//   build/bench/bench_leak --n 20000 --dims 512 --nlist 256,1024 --out bench/results
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "bench/driver_util.h"
#include "eval/metrics.h"
#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"
#include "index/factory.h"
#include "plugin/synth.h"

using namespace pslerp;
using namespace pslerp::bench;

namespace {

struct Gallery {
    std::unique_ptr<faiss::Index> owner;
    IndexIVFProtectedSlerp* ivf = nullptr;
    std::vector<idx_t> list_of;  // list of each id (ids 0..N-1)
};

Gallery enrol(const std::string& desc, int D, const std::vector<float>& train, int64_t n_train,
              const std::vector<float>& x, int64_t N, uint64_t key_seed) {
    Gallery g;
    g.owner = index_factory(D, desc);
    g.ivf = &dynamic_cast<IndexIVFProtectedSlerp&>(*g.owner);
    g.ivf->train(n_train, train.data());
    g.ivf->set_seed(key_seed);
    g.ivf->add(N, x.data());
    g.list_of.assign(N, -1);
    for (size_t l = 0; l < g.ivf->nlist; ++l) {
        faiss::InvertedLists::ScopedIds ids(g.ivf->invlists, l);
        for (size_t j = 0; j < g.ivf->invlists->list_size(l); ++j) g.list_of[ids[j]] = idx_t(l);
    }
    return g;
}

/// Centroid of id's cell (in the centred, group-normalised space), size D.
std::vector<float> centroid(const Gallery& g, idx_t id, int D) {
    std::vector<float> c(D);
    g.ivf->quantizer->reconstruct(g.list_of[id], c.data());
    return c;
}

}  // namespace

int main(int argc, char** argv) try {
    bench::Flags f(argc, argv, "bench_leak: what an IVF cell reveals, and the attacks that try to use it");
    const auto ns = f.integers("n", "20000");
    const auto dims = f.integers("dims", "512");
    const auto nlists = f.integers("nlist", "256,1024");
    const int64_t n_train = f.integer("train", 40000);
    const int64_t nonmated_per_id = f.integer("nonmated-per-id", 5);
    const uint64_t seed = uint64_t(f.integer("seed", 42));
    const std::string index_options = f.str("index-options", "");
    const std::string out_dir = f.str("out", "bench_out");
    if (!f.finish()) return 0;
    bench::Provenance prov(f.command(), seed);
    prov.print();
    std::filesystem::create_directories(out_dir);

    for (int64_t dim : dims) {
        const int D = int(dim), G = D / 16, d = 16;
        const SynthConfig cfg = bench::synth_config(dim, seed);
        const SynthModel model = value_or_die(synth_model(cfg));
        const std::string opts = index_options.empty() ? "" : "(" + index_options + ")";
        for (int64_t N : ns) {
            // Samples 0, 1, 2 of identities 0..N-1; two training sets of other identities.
            const std::vector<std::vector<float>> samples = three_samples(cfg, model, N);
            const std::vector<float>&x0 = samples[0], &x1 = samples[1], &x2 = samples[2];  // samples 0, 1, 2
            const std::vector<float> t1 = value_or_die(synth_identities(cfg, 20000000, n_train)).x;
            const std::vector<float> t2 = value_or_die(synth_identities(cfg, 30000000, n_train)).x;
            std::mt19937_64 rng(seed);
            std::vector<std::pair<idx_t, idx_t>> nonmated;  // (A id, B id), different people
            for (int64_t i = 0; i < N; ++i) {
                for (int64_t r = 0; r < nonmated_per_id; ++r) {
                    idx_t j = idx_t(rng() % uint64_t(N - 1));
                    nonmated.emplace_back(i, j >= i ? j + 1 : j);
                }
            }
            std::printf("\n== N=%ld D=%d (%dx16), %ld training samples of other identities\n", long(N), D, G,
                        long(n_train));
            std::ofstream csv(out_dir + "/leak_n" + std::to_string(N) + "_d" + std::to_string(D) +
                              bench::file_suffix(index_options) + ".csv");
            csv << "n,dim,nlist,trained_on,centroid_cos,centroid_group_cos,template_group_cos,dsys_centroid_shared,"
                   "dsys_centroid_separate,dsys_list_shared,dsys_template,accept_protected,accept_unprotected\n";

            for (int64_t nlist : nlists) {
                const std::string desc = "IVF" + std::to_string(nlist) + ",PSlerp" + std::to_string(G) + "x16" + opts;
                for (const char* trained_on : {"other identities", "the enrolled features"}) {
                    const bool on_enrolled = std::string(trained_on) != "other identities";
                    const std::vector<float>& ta = on_enrolled ? x0 : t1;
                    const int64_t nta = on_enrolled ? N : n_train;
                    Gallery A = enrol(desc, D, ta, nta, x0, N, seed + 1);
                    Gallery Bs = enrol(desc, D, ta, nta, x1, N, seed + 2);  // shared quantizer (same training)
                    Gallery Bx = enrol(desc, D, on_enrolled ? x1 : t2, on_enrolled ? N : n_train, x1, N, seed + 3);
                    const std::vector<float> xn0 = [&] {
                        std::vector<float> v(N * D);
                        A.ivf->centering.apply(x0.data(), N, D, v.data());
                        if (!normalize_groups(A.ivf->params, v.data(), N, v.data()).ok()) throw std::runtime_error("zero");
                        return v;
                    }();

                    // 1. Centroid vs raw, and the template alone vs raw.
                    IndexProtectedSlerp flat(A.ivf->params);
                    flat.centering = A.ivf->centering;
                    flat.set_seed(seed + 1);
                    flat.add(N, x0.data());  // the same entries as A
                    double c_whole = 0, c_group = 0, t_group = 0;
                    std::vector<float> e(D);
                    for (int64_t i = 0; i < N; ++i) {
                        const std::vector<float> c = centroid(A, i, D);
                        c_whole += cosine(c.data(), xn0.data() + i * D, D);
                        c_group += group_cosine(c.data(), xn0.data() + i * D, G, d);
                        flat.store.template_row(flat.params, i, e.data());
                        t_group += group_cosine(e.data(), xn0.data() + i * D, G, d);
                    }
                    c_whole /= double(N);
                    c_group /= double(N);
                    t_group /= double(N);

                    // 2. Linkability of A and B.
                    auto link = [&](auto&& score) {
                        std::vector<float> m(N), nm;
                        nm.reserve(nonmated.size());
                        for (int64_t i = 0; i < N; ++i) m[i] = float(score(i, i));
                        for (const auto& [a, b] : nonmated) nm.push_back(float(score(a, b)));
                        return dsys(m, nm);
                    };
                    const double d_shared = link([&](idx_t a, idx_t b) {
                        return cosine(centroid(A, a, D).data(), centroid(Bs, b, D).data(), D);
                    });
                    const double d_separate = link([&](idx_t a, idx_t b) {
                        return cosine(centroid(A, a, D).data(), centroid(Bx, b, D).data(), D);
                    });
                    const double d_list = link([&](idx_t a, idx_t b) { return A.list_of[a] == Bs.list_of[b] ? 1.0 : 0.0; });
                    IndexProtectedSlerp flatB(Bs.ivf->params);
                    flatB.centering = Bs.ivf->centering;
                    flatB.set_seed(seed + 2);
                    flatB.add(N, x1.data());
                    std::vector<float> eb(D);
                    const double d_template = link([&](idx_t a, idx_t b) {
                        flat.store.template_row(flat.params, a, e.data());
                        flatB.store.template_row(flatB.params, b, eb.data());
                        return cosine(e.data(), eb.data(), D);
                    });

                    // 3. The centroid as a probe. Thresholds at FAR 1e-3 from genuine scores: the
                    // protected system verifies sample 2 of a person against their entry; the
                    // unprotected one compares raw cosines.
                    std::vector<float> pm(N), pn, um(N), un, pa(N), ua(N);
                    std::vector<float> xn2(N * D);
                    A.ivf->centering.apply(x2.data(), N, D, xn2.data());
                    (void)normalize_groups(A.ivf->params, xn2.data(), N, xn2.data());
                    std::vector<idx_t> ids(N);
                    for (int64_t i = 0; i < N; ++i) ids[i] = i;
                    A.ivf->verify_batch(N, x2.data(), ids.data(), pm.data());
                    std::vector<float> probes_nm(nonmated.size() * D);
                    std::vector<idx_t> ids_nm(nonmated.size());
                    for (size_t p = 0; p < nonmated.size(); ++p) {
                        std::copy_n(x2.data() + nonmated[p].second * D, D, probes_nm.data() + p * D);
                        ids_nm[p] = nonmated[p].first;
                        un.push_back(float(cosine(xn0.data() + nonmated[p].first * D, xn2.data() + nonmated[p].second * D, D)));
                    }
                    pn.resize(nonmated.size());
                    A.ivf->verify_batch(int64_t(nonmated.size()), probes_nm.data(), ids_nm.data(), pn.data());
                    for (int64_t i = 0; i < N; ++i) um[i] = float(cosine(xn0.data() + i * D, xn2.data() + i * D, D));
                    const double thr_p = far_threshold(pm, pn), thr_u = far_threshold(um, un);
                    // The attacker's probe: the centroid moved back out of the centring (the
                    // centring is in the file too), as a raw feature.
                    std::vector<float> cprobe(N * D);
                    for (int64_t i = 0; i < N; ++i) {
                        const std::vector<float> c = centroid(A, i, D);
                        for (int j = 0; j < D; ++j) {
                            cprobe[i * D + j] = c[j] + (A.ivf->centering.trained() ? A.ivf->centering.mean[j] : 0.0f);
                        }
                        ua[i] = float(cosine(c.data(), xn2.data() + i * D, D));
                    }
                    A.ivf->verify_batch(N, cprobe.data(), ids.data(), pa.data());
                    const double acc_p = rate_at_or_above(pa, thr_p), acc_u = rate_at_or_above(ua, thr_u);

                    std::printf("   %-28s trained on %-21s centroid-raw cosine %.3f (per group %.3f; template alone "
                                "%.3f per group)\n",
                                desc.c_str(), trained_on, c_whole, c_group, t_group);
                    std::printf("   %-28s linkability D_sys: centroids shared %.3f, trained separately %.3f, list number "
                                "(shared) %.3f; template cosine %.3f\n",
                                "", d_shared, d_separate, d_list, d_template);
                    std::printf("   %-28s centroid as a probe accepted at FAR 1e-3: protected %.4f, unprotected %.4f "
                                "(random impostor 0.001)\n",
                                "", acc_p, acc_u);
                    std::fflush(stdout);
                    csv << N << ',' << D << ',' << nlist << ",\"" << trained_on << "\"," << c_whole << ',' << c_group
                        << ',' << t_group << ',' << d_shared << ',' << d_separate << ',' << d_list << ',' << d_template
                        << ',' << acc_p << ',' << acc_u << '\n';
                }
            }
        }
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_leak: %s\n", e.what());
    return 1;
}
