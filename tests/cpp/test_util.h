// Helpers shared by the GoogleTest files.
#pragma once

#include <faiss/Index.h>
#include <faiss/impl/AuxIndexStructures.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "index/ProtectedIndex.h"

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
