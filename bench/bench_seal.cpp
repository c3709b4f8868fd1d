// What sealing and the per-gallery secret frame protect (README "Threat model"), measured with
// the stolen-token attack, and what sealing costs (bench/RESULTS.md "Sealed files").
//
// Synthetic identities: gallery A enrols sample 0 of N identities, gallery B sample 1 of the same
// identities under other keys and another secret (so another frame); sample 2 is "another photo"
// of each person. A0 and B0 are the same galleries without frames. The attack (issue 7's
// stolen-token projection): per group, remove the key's component (over the kept coordinates)
// from the template and renormalise; the result estimates the centred feature, in the gallery's
// frame. For each attacker it reports:
//   - acceptance of the estimate as a probe at the FAR 1e-3 threshold: in the unprotected system
//     (mean group cosine of centred features, against the person's other photo) and in the other
//     protected gallery (B's verify of the estimate plus the mean, against the person's entry);
//     a random impostor's rate is 0.1% by construction;
//   - linkability D_sys of A and B by template cosine, by the estimates' cosine, and by the
//     cosine of the estimates' sorted magnitudes per group (what a coordinate permutation would
//     keep; a rotation mixes the coordinates).
// Attackers: the file without the secret (ciphertext: the bytes at each template's position
// stand in for the template), templates + keys + masks without the secret (frames on, and the
// baseline without frames), and the file with its secret (or a running process: the loaded
// index holds the frame), who undoes the frame.
//
// Then the cost: load time of a sealed and an unsealed file of --load-n entries, and search
// speed of the two loaded indexes (the same code: sealing ends at load).
//
// Not a timed test. Example:
//   build/bench/bench_seal --n 5000 --dim 512 --load-n 1000000 --out bench/results
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "bench/driver_util.h"
#include "eval/metrics.h"
#include "index/IndexProtectedSlerp.h"
#include "index/factory.h"
#include "index/index_io.h"
#include "io/seal.h"
#include "plugin/synth.h"

using namespace pslerp;
using namespace pslerp::bench;

namespace {

Secret secret_from(uint64_t seed) {
    std::mt19937_64 g(seed);
    uint8_t b[32];
    for (uint8_t& v : b) v = uint8_t(g());
    return *Secret::from_bytes(b, sizeof b);
}

/// A trained exhaustive gallery of x (N x D), keys from key_seed, with a frame from frame_seed
/// unless 0.
std::unique_ptr<IndexProtectedSlerp> enrol(const std::string& desc, int D, const std::vector<float>& train,
                                           int64_t n_train, const std::vector<float>& x, int64_t N, uint64_t key_seed,
                                           uint64_t frame_seed) {
    auto owner = index_factory(D, desc);
    std::unique_ptr<IndexProtectedSlerp> g(&dynamic_cast<IndexProtectedSlerp&>(*owner.release()));
    g->set_seed(key_seed);
    if (frame_seed) set_secret_frame(*g, secret_from(frame_seed).bytes());
    g->train(n_train, train.data());
    g->add(N, x.data());
    return g;
}

/// The stolen-token estimate of every entry (N x D, in the gallery's centred, framed space).
std::vector<float> projections(const IndexProtectedSlerp& g, int64_t N) {
    const Params& p = g.params;
    const int D = p.dim(), G = p.groups, d = p.group_dim;
    std::vector<float> out(N * D);
#pragma omp parallel for
    for (int64_t i = 0; i < N; ++i) {
        std::vector<float> e(D), k(p.key_dim()), u(d);
        std::vector<uint8_t> m(D);
        g.store.template_row(p, i, e.data());
        g.store.key_row(p, i, k.data());
        g.store.mask_row(p, i, m.data());
        for (int gi = 0; gi < G; ++gi) {
            const float* kg = k.data() + (p.key_mode == KeyMode::kShared ? 0 : gi * d);
            const float* eg = e.data() + gi * d;
            for (int j = 0; j < d; ++j) u[j] = m[gi * d + j] ? kg[j] : 0.0f;
            const double un = std::sqrt(dot(u.data(), u.data(), d));
            const double c = un > 0 ? dot(eg, u.data(), d) / un : 0.0;
            float* r = out.data() + i * D + gi * d;
            for (int j = 0; j < d; ++j) r[j] = float(eg[j] - (un > 0 ? c * u[j] / un : 0.0));
            const double rn = std::sqrt(dot(r, r, d));
            for (int j = 0; j < d; ++j) r[j] = rn > 0 ? float(r[j] / rn) : 0.0f;
        }
    }
    return out;
}

/// Undoes a gallery's frame on n vectors (what a holder of the seed can do): x_g = F_g^T y_g.
std::vector<float> unframe(const Centering& c, const std::vector<float>& y, int64_t n, int D) {
    std::vector<float> x(y.size());
    const int d = c.frame_group_dim;
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) {
        for (int b = 0; b < D; b += d) {
            const float* F = c.frame_matrix.data() + size_t(b) * d;
            for (int j = 0; j < d; ++j) {
                double s = 0;
                for (int r = 0; r < d; ++r) s += double(F[r * d + j]) * y[i * D + b + r];
                x[i * D + b + j] = float(s);
            }
        }
    }
    return x;
}

/// Eigenvectors of the symmetric n x n `a` (row-major, destroyed) by cyclic Jacobi: columns of
/// the returned row-major matrix, sorted by decreasing eigenvalue.
std::vector<double> eigenvectors(std::vector<double> a, int n) {
    std::vector<double> v(size_t(n) * n, 0.0);
    for (int i = 0; i < n; ++i) v[i * n + i] = 1.0;
    for (int sweep = 0; sweep < 100; ++sweep) {
        double off = 0;
        for (int p = 0; p < n; ++p)
            for (int q = p + 1; q < n; ++q) off += a[p * n + q] * a[p * n + q];
        if (off < 1e-22) break;
        for (int p = 0; p < n; ++p) {
            for (int q = p + 1; q < n; ++q) {
                if (std::fabs(a[p * n + q]) < 1e-300) continue;
                const double theta = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q]);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
                const double c = 1 / std::sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; ++k) {  // A <- A J
                    const double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; ++k) {  // A <- J^T A
                    const double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; ++k) {  // V <- V J
                    const double vkp = v[k * n + p], vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](int x, int y) { return a[x * n + x] > a[y * n + y]; });
    std::vector<double> out(size_t(n) * n);
    for (int r = 0; r < n; ++r)
        for (int c = 0; c < n; ++c) out[r * n + c] = v[r * n + order[c]];
    return out;
}

/// The attacker who aligns a gallery's unknown frame blindly: per group, the estimates'
/// magnitudes along the eigenvectors of their own covariance (sorted by eigenvalue), centred
/// over the gallery. Two galleries' frames are rotations of the same feature distribution, so
/// where that distribution is anisotropic their principal axes match up to sign.
std::vector<float> principal_magnitudes(const std::vector<float>& e, int64_t n, int D, int d) {
    std::vector<float> out(e.size());
    for (int b = 0; b < D; b += d) {
        std::vector<double> cov(size_t(d) * d, 0.0);
        for (int64_t i = 0; i < n; ++i)
            for (int r = 0; r < d; ++r)
                for (int c = 0; c < d; ++c) cov[r * d + c] += double(e[i * D + b + r]) * e[i * D + b + c];
        const std::vector<double> V = eigenvectors(cov, d);
        std::vector<double> mean(d, 0.0);
        for (int64_t i = 0; i < n; ++i) {
            for (int k = 0; k < d; ++k) {
                double z = 0;
                for (int r = 0; r < d; ++r) z += V[r * d + k] * e[i * D + b + r];
                out[i * D + b + k] = float(std::fabs(z));
                mean[k] += std::fabs(z) / double(n);
            }
        }
        for (int64_t i = 0; i < n; ++i)
            for (int k = 0; k < d; ++k) out[i * D + b + k] -= float(mean[k]);
    }
    return out;
}

/// The attacker without the secret: the sealed file's bytes at each row's template position,
/// as D centred byte values per row (the plaintext layout is public; the keystream is not).
std::vector<float> ciphertext_rows(const IndexProtectedSlerp& g, const Secret& secret, int64_t N, int D) {
    const std::vector<uint8_t> file = serialize_index(g, secret);
    const MemoryBytes src(file.data(), file.size());
    const std::vector<uint8_t> plain = value_or_die(open_sealed(src, secret));
    const kernels::Entries view = g.store.view();
    const size_t row_bytes = view.template_stride * sizeof(float);
    const uint8_t* row0 = reinterpret_cast<const uint8_t*>(g.store.templates.data());
    const auto at = std::search(plain.begin(), plain.end(), row0, row0 + row_bytes);
    if (at == plain.end()) throw std::runtime_error("template array not found in the payload");
    const size_t t0 = size_t(at - plain.begin());
    const uint32_t chunk = value_or_die(peek_sealed(src)).chunk_bytes;
    std::vector<float> out(N * D);
    for (int64_t i = 0; i < N; ++i) {
        for (int j = 0; j < D; ++j) {
            const size_t p = t0 + size_t(i) * row_bytes + size_t(j);
            const size_t f = 64 + p + (p / chunk) * 17;  // header, then 17 bytes per chunk before it
            out[i * D + j] = float(file[f]) - 127.5f;
        }
    }
    return out;
}

template <class F>
double seconds(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) try {
    bench::Flags f(argc, argv, "bench_seal: what sealing and the secret frame protect, and what sealing costs");
    const int64_t N = f.integer("n", 5000);
    const int64_t dim = f.integer("dim", 512);
    const int64_t n_train = f.integer("train", 20000);
    const int64_t nonmated_per_id = f.integer("nonmated-per-id", 5);
    const int64_t load_n = f.integer("load-n", 200000);
    const int64_t load_dim = f.integer("load-dim", 128);
    const int64_t repeats = f.integer("repeats", 3);
    const uint64_t seed = uint64_t(f.integer("seed", 42));
    const std::string out_dir = f.str("out", "bench_out");
    if (!f.finish()) return 0;
    bench::Provenance prov(f.command(), seed);
    prov.print();
    std::filesystem::create_directories(out_dir);

    // ---------------------------------------------------------------- the attacks
    const int D = int(dim), G = D / 16, d = 16;
    const SynthConfig cfg = bench::synth_config(dim, seed);
    const SynthModel model = value_or_die(synth_model(cfg));
    const std::vector<std::vector<float>> samples = three_samples(cfg, model, N);
    const std::vector<float>&x0 = samples[0], &x1 = samples[1], &x2 = samples[2];  // samples 0, 1, 2
    const std::vector<float> t1 = value_or_die(synth_identities(cfg, 20000000, n_train)).x;
    std::mt19937_64 rng(seed);
    std::vector<std::pair<int64_t, int64_t>> nonmated;
    for (int64_t i = 0; i < N; ++i) {
        for (int64_t r = 0; r < nonmated_per_id; ++r) {
            const int64_t j = int64_t(rng() % uint64_t(N - 1));
            nonmated.emplace_back(i, j >= i ? j + 1 : j);
        }
    }
    const std::string desc = "PSlerp" + std::to_string(G) + "x16";
    std::printf("\n== attacks: N=%ld D=%d (%s: %s), trained on %ld features of other identities\n", long(N), D,
                desc.c_str(), Params::defaults(G, d).describe().c_str(), long(n_train));
    const Secret secret_a = secret_from(seed + 101), secret_b = secret_from(seed + 102);
    auto A = enrol(desc, D, t1, n_train, x0, N, seed + 1, seed + 11);
    auto B = enrol(desc, D, t1, n_train, x1, N, seed + 2, seed + 12);
    auto A0 = enrol(desc, D, t1, n_train, x0, N, seed + 1, 0);
    auto B0 = enrol(desc, D, t1, n_train, x1, N, seed + 2, 0);

    // The unprotected system: mean group cosine of centred features (A0's centring, no frame).
    std::vector<float> c1(N * D), c2(N * D);
    A0->centering.apply(x1.data(), N, D, c1.data());
    A0->centering.apply(x2.data(), N, D, c2.data());
    std::vector<float> um(N), un;
    for (int64_t i = 0; i < N; ++i) um[i] = float(group_cosine(c1.data() + i * D, c2.data() + i * D, G, d));
    for (const auto& [a, b] : nonmated) un.push_back(float(group_cosine(c1.data() + a * D, c2.data() + b * D, G, d)));
    const double thr_unprot = far_threshold(um, un);

    // The protected galleries B and B0: another photo (sample 2) against each entry.
    auto protected_threshold = [&](const IndexProtectedSlerp& g) {
        std::vector<idx_t> ids(N);
        for (int64_t i = 0; i < N; ++i) ids[i] = i;
        std::vector<float> m(N), nm(nonmated.size());
        g.verify_batch(N, x2.data(), ids.data(), m.data());
        std::vector<float> q(nonmated.size() * D);
        std::vector<idx_t> qi(nonmated.size());
        for (size_t r = 0; r < nonmated.size(); ++r) {
            std::copy(x2.data() + nonmated[r].second * D, x2.data() + (nonmated[r].second + 1) * D, q.data() + r * D);
            qi[r] = nonmated[r].first;
        }
        g.verify_batch(int64_t(nonmated.size()), q.data(), qi.data(), nm.data());
        const double thr = far_threshold(m, nm);
        std::printf("genuine verification in %s: %.2f%% of mated photos accepted at FAR 1e-3 (threshold %.4f)\n",
                    g.centering.has_frame() ? "B (frame)" : "B0 (no frame)", 100 * rate_at_or_above(m, thr), thr);
        return thr;
    };
    const double thr_b = protected_threshold(*B), thr_b0 = protected_threshold(*B0);

    struct Row {
        std::string attacker;
        double accept_unprot, accept_other, dsys_template, dsys_estimate, dsys_sorted, dsys_aligned;
    };
    std::vector<Row> rows;
    // est_a: the attacker's probe per person from A (in whatever space he has it); est_b his
    // estimates from B, for linkability; tmpl_*: the templates (or what stands for them).
    auto measure = [&](const std::string& who, const std::vector<float>& est_a, const std::vector<float>& est_b,
                       const std::vector<float>& tmpl_a, const std::vector<float>& tmpl_b,
                       const IndexProtectedSlerp& other, double thr_other) {
        std::vector<float> su(N), so(N);
        for (int64_t i = 0; i < N; ++i) su[i] = float(group_cosine(est_a.data() + i * D, c2.data() + i * D, G, d));
        // As a probe of the other gallery: the estimate plus the mean (the most favourable guess).
        std::vector<float> probe(est_a);
        for (int64_t i = 0; i < N; ++i) {
            for (int j = 0; j < D; ++j) probe[i * D + j] += other.centering.mean.empty() ? 0.0f : other.centering.mean[j];
        }
        std::vector<idx_t> ids(N);
        for (int64_t i = 0; i < N; ++i) ids[i] = i;
        other.verify_batch(N, probe.data(), ids.data(), so.data());
        auto link = [&](const std::vector<float>& a, const std::vector<float>& b) {
            std::vector<float> m(N), nm;
            for (int64_t i = 0; i < N; ++i) m[i] = float(group_cosine(a.data() + i * D, b.data() + i * D, G, d));
            for (const auto& [p, q] : nonmated) nm.push_back(float(group_cosine(a.data() + p * D, b.data() + q * D, G, d)));
            return dsys(m, nm);
        };
        // What a coordinate permutation per group could not hide: the sorted magnitudes of each group.
        auto sorted_magnitudes = [&](const std::vector<float>& a) {
            std::vector<float> s(a.size());
            for (size_t j = 0; j < a.size(); ++j) s[j] = std::fabs(a[j]) - 0.25f;  // about zero-mean
            for (size_t b = 0; b < s.size(); b += size_t(d)) std::sort(s.begin() + b, s.begin() + b + d);
            return s;
        };
        rows.push_back({who, rate_at_or_above(su, thr_unprot), rate_at_or_above(so, thr_other), link(tmpl_a, tmpl_b),
                        link(est_a, est_b), link(sorted_magnitudes(est_a), sorted_magnitudes(est_b)),
                        link(principal_magnitudes(est_a, N, D, d), principal_magnitudes(est_b, N, D, d))});
    };
    auto templates_of = [&](const IndexProtectedSlerp& g) {
        std::vector<float> t(N * D);
        for (int64_t i = 0; i < N; ++i) g.store.template_row(g.params, i, t.data() + i * D);
        return t;
    };
    const std::vector<float> pa = projections(*A, N), pb = projections(*B, N);
    const std::vector<float> pa0 = projections(*A0, N), pb0 = projections(*B0, N);
    const std::vector<float> ta = templates_of(*A), tb = templates_of(*B), ta0 = templates_of(*A0), tb0 = templates_of(*B0);
    {
        const std::vector<float> ca = ciphertext_rows(*A, secret_a, N, D), cb = ciphertext_rows(*B, secret_b, N, D);
        measure("file stolen, secret kept (ciphertext)", ca, cb, ca, cb, *B, thr_b);
    }
    measure("templates+keys+masks, secret kept (frames)", pa, pb, ta, tb, *B, thr_b);
    measure("templates+keys+masks, no frames (baseline)", pa0, pb0, ta0, tb0, *B0, thr_b0);
    const std::vector<float> ua = unframe(A->centering, pa, N, D), ub = unframe(B->centering, pb, N, D);
    const std::vector<float> uta = unframe(A->centering, ta, N, D), utb = unframe(B->centering, tb, N, D);
    measure("file and secret stolen / process compromised", ua, ub, uta, utb, *B, thr_b);

    std::printf("FAR 1e-3 thresholds: unprotected %.4f, protected B %.4f (B0 %.4f); a random impostor: 0.1%%\n",
                thr_unprot, thr_b, thr_b0);
    std::printf("%-48s %14s %14s %12s %12s %12s %12s\n", "attacker", "accept unprot", "accept other", "D_sys tmpl",
                "D_sys est", "D_sys |est|", "D_sys |pca|");
    std::ofstream csv(out_dir + "/seal_attacks_n" + std::to_string(N) + "_d" + std::to_string(D) + ".csv");
    csv << "attacker,accept_unprotected,accept_other_gallery,dsys_template,dsys_estimate,dsys_sorted_magnitudes,"
           "dsys_principal_magnitudes\n";
    for (const Row& r : rows) {
        std::printf("%-48s %13.2f%% %13.2f%% %12.3f %12.3f %12.3f %12.3f\n", r.attacker.c_str(),
                    100 * r.accept_unprot, 100 * r.accept_other, r.dsys_template, r.dsys_estimate, r.dsys_sorted,
                    r.dsys_aligned);
        csv << '"' << r.attacker << "\"," << r.accept_unprot << ',' << r.accept_other << ',' << r.dsys_template << ','
            << r.dsys_estimate << ',' << r.dsys_sorted << ',' << r.dsys_aligned << '\n';
    }
    // Refusals: wrong secret and single flips, on A's sealed bytes.
    {
        const std::vector<uint8_t> file = serialize_index(*A, secret_a);
        int refused = 0, tries = 0;
        std::mt19937_64 flips(seed + 5);
        for (int t = 0; t < 200; ++t, ++tries) {
            std::vector<uint8_t> b = file;
            b[flips() % b.size()] ^= uint8_t(1u << (flips() % 8));
            try {
                deserialize_index(b.data(), b.size(), secret_a);
            } catch (const faiss::FaissException&) {
                ++refused;
            }
        }
        int wrong = 0;
        try {
            deserialize_index(file.data(), file.size(), secret_b);
        } catch (const faiss::FaissException&) {
            wrong = 1;
        }
        std::printf("sealed file of %zu bytes: %d of %d random single-bit flips refused; wrong secret refused: %s\n",
                    file.size(), refused, tries, wrong ? "yes" : "NO");
    }
    A.reset(); B.reset(); A0.reset(); B0.reset();

    // ---------------------------------------------------------------- the cost
    if (load_n > 0) {
        const int LD = int(load_dim), LG = LD / 16;
        const SynthConfig lcfg = bench::synth_config(load_dim, seed);
        const SynthModel lmodel = value_or_die(synth_model(lcfg));
        const std::vector<float> lt = value_or_die(synth_identities(lcfg, 20000000, 20000)).x;
        auto index = index_factory(LD, "PSlerp" + std::to_string(LG) + "x16(norm=none)");
        protected_of(*index).set_seed(seed);
        enable_secret_frame(*index);
        index->train(20000, lt.data());
        const int64_t batch = 100000;
        std::vector<float> xb(batch * LD);
        for (int64_t i0 = 0; i0 < load_n; i0 += batch) {
            const int64_t nb = std::min(batch, load_n - i0);
#pragma omp parallel for
            for (int64_t i = 0; i < nb; ++i) synth_one(lcfg, lmodel, i0 + i, 0, xb.data() + i * LD);
            index->add(nb, xb.data());
        }
        const std::vector<float> q = value_or_die(synth_identities(lcfg, 0, 256)).x;  // mated with ids 0..255
        const Secret secret = secret_from(seed + 7);
        const std::string sealed_path = out_dir + "/seal_bench_sealed.pslerp";
        const std::string clear_path = out_dir + "/seal_bench_clear.pslerp";
        // The clear file cannot hold the frame: the same entries without it, for the timing only.
        const double t_write_sealed = seconds([&] { write_index(*index, sealed_path, secret); });
        protected_of(*index).centering.frame_seed.clear();
        protected_of(*index).centering.frame_matrix.clear();
        const double t_write_clear = seconds([&] { write_index_unsealed(*index, clear_path); });
        index.reset();
        std::vector<double> ls, lc;
        std::unique_ptr<faiss::Index> sealed, clear;
        for (int64_t r = 0; r <= repeats; ++r) {  // the first round warms the page cache
            sealed.reset();
            clear.reset();
            const double a = seconds([&] { clear = read_index(clear_path); });
            const double b = seconds([&] { sealed = read_index(sealed_path, secret); });
            if (r > 0) {
                lc.push_back(a);
                ls.push_back(b);
            }
        }
        const int64_t k = 10;
        std::vector<float> dist(q.size() / LD * k);
        std::vector<idx_t> lab(dist.size());
        std::vector<double> ss, sc;
        const int64_t nq = int64_t(q.size()) / LD;
        for (int64_t r = 0; r <= repeats; ++r) {
            const double a = seconds([&] { clear->search(nq, q.data(), k, dist.data(), lab.data()); });
            const double b = seconds([&] { sealed->search(nq, q.data(), k, dist.data(), lab.data()); });
            if (r > 0) {
                sc.push_back(a);
                ss.push_back(b);
            }
        }
        const double mb_s = double(std::filesystem::file_size(sealed_path)) / 1e6;
        const double mb_c = double(std::filesystem::file_size(clear_path)) / 1e6;
        std::printf("\n== cost: %ld entries x %d (%s), %d threads, median of %ld after a warm-up\n", long(load_n), LD,
                    describe_index(*sealed).c_str(), omp_get_max_threads(), long(repeats));
        std::printf("file         sealed %.1f MB, clear %.1f MB\n", mb_s, mb_c);
        std::printf("write        sealed %.2f s, clear %.2f s\n", t_write_sealed, t_write_clear);
        std::printf("load         sealed %.3f s, clear %.3f s: ratio %.2f\n", median_of(ls), median_of(lc),
                    median_of(ls) / median_of(lc));
        std::printf("search       %ld queries k=%ld: sealed %.3f s, clear %.3f s: ratio %.3f\n", long(nq), long(k),
                    median_of(ss), median_of(sc), median_of(ss) / median_of(sc));
        std::filesystem::remove(sealed_path);
        std::filesystem::remove(clear_path);
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_seal: %s\n", e.what());
    return 1;
}
