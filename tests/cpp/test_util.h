// Helpers shared by the GoogleTest files.
#pragma once

#include <faiss/Index.h>
#include <faiss/impl/AuxIndexStructures.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "index/IndexProtectedSlerp.h"
#include "index/ProtectedIndex.h"
#include "index/storage.h"
#include "plugin/reference.h"

namespace pslerp {

/// Success when `text` contains `part`, else a failure quoting both.
inline ::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
    if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

/// The message of the faiss::FaissException that f() throws, or "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const faiss::FaissException& e) {
        return e.what();
    }
    return "";
}

}  // namespace pslerp

namespace pslerp::testing_util {

/// Per row, 1 + the sum of its combination weights + |its offset|: float sums err in proportion
/// (cohort-normalised weights reach several units each and the offset cancels most of them).
inline std::vector<double> score_gain(const EntryStorage& store) {
    const size_t gf = store.layout.group_floats();
    std::vector<double> gain(store.rows());
    for (int64_t r = 0; r < store.rows(); ++r) {
        gain[r] = 1.0 + std::abs(store.offsets[r]);
        for (size_t g = 0; g < gf; ++g) gain[r] += store.weights[r * gf + g];
    }
    return gain;
}

/// Reference scores (plugin/reference.h, double) of nq probes against every row of the index:
/// out[i * rows + r], the row's offset included.
inline std::vector<double> reference_scores(const IndexProtectedSlerp& index, const std::vector<float>& q,
                                            int64_t nq) {
    const Params& p = index.params;
    const int64_t rows = index.store.rows();
    std::vector<double> s(nq * rows);
    std::vector<float> e(p.dim()), k(p.key_dim()), w(p.groups);
    std::vector<uint8_t> m(p.dim());
    for (int64_t r = 0; r < rows; ++r) {
        index.store.template_row(p, r, e.data());
        index.store.key_row(p, r, k.data());
        index.store.mask_row(p, r, m.data());
        index.store.weight_row(p, r, w.data());
        for (int64_t i = 0; i < nq; ++i) {
            s[i * rows + r] = reference::match_one(p, q.data() + i * p.dim(), e.data(), k.data(), m.data(), w.data()) +
                              index.store.offsets[r];
        }
    }
    return s;
}

/// A named scheme for tests that run over shapes and options.
struct Case {
    const char* name;
    Params params;
};

/// Shapes and options every scoring kernel must handle: several G x d (padded lanes, d not a
/// multiple of 8), one drop, a shared key, random fill, importance weighting and drop, and the
/// slerpface preset (t following the probe's importance).
inline std::vector<Case> kernel_cases() {
    Params shared = Params::defaults(9, 16);
    shared.key_mode = KeyMode::kShared;
    Params fill = Params::defaults(8, 16);
    fill.fill = Fill::kRandom;
    Params odd = Params::defaults(17, 5);
    odd.drop_count = 1;
    Params attention = Params::defaults(10, 12);
    attention.importance = ImportanceKind::kSelfAttention;
    attention.weighting = Weighting::kImportance;
    attention.drop = DropPolicy::kImportance;
    return {{"8x16", Params::defaults(8, 16)}, {"5x7", Params::defaults(5, 7)},    {"17x5", odd},
            {"shared9x16", shared},            {"fill8x16", fill},                  {"attention10x12", attention},
            {"slerpface11x16", Params::slerpface(11, 16)}};
}

/// n x dim standard normal features from a seeded generator.
inline std::vector<float> random_features(int64_t n, int dim, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::normal_distribution<float> N;
    std::vector<float> x(n * dim);
    for (auto& v : x) v = N(g);
    return x;
}

/// What an index answers, exactly as returned: search (k) and range_search (radius) of nq
/// probes, and verify_batch of probe i against ids[i] when ids are given.
struct Answers {
    std::vector<float> D;
    std::vector<faiss::Index::idx_t> I;
    std::vector<size_t> lims;
    std::vector<float> rD;
    std::vector<faiss::Index::idx_t> rI;
    std::vector<float> scores;  ///< empty without ids

    bool operator==(const Answers& o) const {
        return D == o.D && I == o.I && lims == o.lims && rD == o.rD && rI == o.rI && scores == o.scores;
    }
};

inline Answers answers(const faiss::Index& index, const std::vector<float>& q, int64_t nq, faiss::Index::idx_t k,
                       float radius, const faiss::SearchParameters* sp = nullptr,
                       const std::vector<faiss::Index::idx_t>* ids = nullptr) {
    Answers a;
    a.D.resize(nq * k);
    a.I.resize(nq * k);
    index.search(nq, q.data(), k, a.D.data(), a.I.data(), sp);
    faiss::RangeSearchResult r(nq);
    index.range_search(nq, q.data(), radius, &r, sp);
    a.lims.assign(r.lims, r.lims + nq + 1);
    a.rD.assign(r.distances, r.distances + a.lims.back());
    a.rI.assign(r.labels, r.labels + a.lims.back());
    if (ids) {
        a.scores.resize(nq);
        protected_of(index).verify_batch(nq, q.data(), ids->data(), a.scores.data());
    }
    return a;
}

}  // namespace pslerp::testing_util
