// IndexProtectedSlerp with exhaustive search: kernels against the double-precision
// reference, FAISS conventions, ids, removal and compaction, range search and bad inputs.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>

#include <faiss/IndexIVF.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>

#include "index/IndexProtectedSlerp.h"
#include "index/index_io.h"
#include "tests/cpp/test_util.h"
#include "index/kernels/batch_pass.h"
#include "index/kernels/scan.h"
#include "plugin/synth.h"

namespace pslerp {
namespace {

using testing_util::random_features;

using testing_util::reference_scores;
using testing_util::score_gain;

// nq raw probes q prepared for the kernels as the untrained index prepares them (no centring):
// nq * query_floats() floats, empty (with a test failure) when a probe is refused.
std::vector<float> kernel_queries(const IndexProtectedSlerp& index, const float* q, int64_t nq) {
    auto probe = prepare_probes(index.params, q, nq);
    EXPECT_TRUE(probe.ok()) << probe.status();
    if (!probe.ok()) return {};
    const size_t qf = index.store.layout.query_floats();
    std::vector<float> kq(nq * qf);
    for (int64_t i = 0; i < nq; ++i) {
        kernels::prepare_query(index.store.layout, probe->xn.data() + i * index.d,
                               probe->t.data() + i * index.params.groups, kq.data() + i * qf);
    }
    return kq;
}

class KernelTest : public ::testing::TestWithParam<const kernels::KernelTable*> {};

TEST_P(KernelTest, MatchesReferenceScoresAndRanking) {
    const kernels::KernelTable* K = GetParam();
    if (!K) GTEST_SKIP() << "this CPU lacks this table's instruction set (AVX2/FMA, AVX-512F): not testable here";
    for (const auto& c : testing_util::kernel_cases()) {
        SCOPED_TRACE(c.name);
        IndexProtectedSlerp index(c.params);
        index.set_seed(3);
        const int64_t n = 301, nq = 37;
        auto x = random_features(n, index.d, 1);
        auto q = random_features(nq, index.d, 2);
        index.add(n, x.data());
        std::vector<float> scores(nq * n);
        const std::vector<float> kq = kernel_queries(index, q.data(), nq);
        ASSERT_FALSE(kq.empty());
        K->score_range(index.store.view(), kq.data(), nq, 0, n, scores.data(), n);
        const auto ref = reference_scores(index, q, nq);
        const auto gain = score_gain(index.store);
        double worst = 0;  // relative to the row's gain
        for (int64_t i = 0; i < nq * n; ++i) worst = std::max(worst, std::abs(scores[i] - ref[i]) / gain[i % n]);
        EXPECT_LT(worst, 1e-5);
        // score_list agrees with score_range (the batched score_range sums in another order).
        std::vector<int64_t> pos = {0, 5, 300, 17};
        std::vector<float> ls(4);
        K->score_list(index.store.view(), kq.data(), pos.data(), 4, ls.data());
        for (int j = 0; j < 4; ++j) EXPECT_NEAR(ls[j], scores[pos[j]], 1e-5 * gain[pos[j]]);
    }
}

// Probes whose groups are an entry's own keys (cosine 1, which float rounding can push just
// above 1) or their opposites (cosine -1, clamped as antipodal), beside ordinary groups, with a
// weightless group (fixed importance 0, importance weighting) and padded lanes: scores finite
// and equal to the reference, and the clamped count returned by the kernel equal to the
// antipodal (probe group, key) pairs of weighted groups (issue 16: kernel mutations that no
// other test caught).
TEST_P(KernelTest, KeyAlignedAndAntipodalGroupsAndTheClampedCount) {
    const kernels::KernelTable* K = GetParam();
    if (!K) GTEST_SKIP() << "this CPU lacks this table's instruction set (AVX2/FMA, AVX-512F): not testable here";
    Params p = Params::defaults(10, 8);  // two blocks: the second has 2 groups and 6 padded lanes
    p.importance = ImportanceKind::kFixed;
    p.importance_weights = {1, 0, 2, 1, 1, 3, 1, 1, 2, 1};  // group 1 weighs nothing
    p.weighting = Weighting::kImportance;
    IndexProtectedSlerp index(p);
    index.set_seed(5);
    const int D = p.dim(), G = p.groups, gd = p.group_dim;
    const int64_t n = 60;
    const auto x = random_features(n, D, 6);
    index.add(n, x.data());
    // Probe j: entry j's keys in groups g % 3 == 0, their opposites in groups g % 3 == 1 (group 1
    // among them: antipodal but weightless), ordinary values elsewhere.
    const auto other = random_features(n, D, 7);
    std::vector<float> q(n * D), key(p.key_dim());
    for (int64_t j = 0; j < n; ++j) {
        index.store.key_row(p, j, key.data());
        for (int g = 0; g < G; ++g) {
            for (int i = 0; i < gd; ++i) {
                const float k = key[g * gd + i];
                q[j * D + g * gd + i] = g % 3 == 0 ? k : g % 3 == 1 ? -k : other[j * D + g * gd + i];
            }
        }
    }
    auto probe = prepare_probes(p, q.data(), n);
    ASSERT_TRUE(probe.ok());
    const size_t qf = index.store.layout.query_floats();
    std::vector<float> kq(n * qf);
    for (int64_t i = 0; i < n; ++i) {
        kernels::prepare_query(index.store.layout, probe->xn.data() + i * D, probe->t.data() + i * G, kq.data() + i * qf);
    }
    std::vector<float> scores(n * n);
    const int64_t clamped = K->score_range(index.store.view(), kq.data(), n, 0, n, scores.data(), n);
    // The reference: scores in double, and the antipodal pairs of weighted groups counted.
    const auto ref = reference_scores(index, q, n);
    int64_t want_clamped = 0, above_one = 0;
    std::vector<float> w(G);
    for (int64_t r = 0; r < n; ++r) {
        index.store.key_row(p, r, key.data());
        index.store.weight_row(p, r, w.data());
        for (int64_t i = 0; i < n; ++i) {
            for (int g = 0; g < G; ++g) {
                double c = 0;
                float cf = 0;
                for (int t = 0; t < gd; ++t) {
                    c += double(probe->xn[i * D + g * gd + t]) * key[g * gd + t];
                    cf += probe->xn[i * D + g * gd + t] * key[g * gd + t];
                }
                want_clamped += c < -0.99 && w[g] != 0.0f;
                above_one += cf > 1.0f;
            }
        }
    }
    EXPECT_EQ(w[1], 0.0f);
    EXPECT_EQ(want_clamped, 2 * n) << "each probe is antipodal to its own entry in groups 4 and 7 (and 1, weightless)";
    EXPECT_GT(above_one, 0) << "no group cosine rounded above 1: the upper clamp is not exercised";
    EXPECT_EQ(clamped, want_clamped);
    const auto gain = score_gain(index.store);
    double worst = 0;  // relative to the row's gain
    for (int64_t i = 0; i < n * n; ++i) {
        ASSERT_TRUE(std::isfinite(scores[i])) << "score " << i << " is " << scores[i];
        worst = std::max(worst, std::abs(scores[i] - ref[i]) / gain[i % n]);
    }
    EXPECT_LT(worst, 1e-5);
    // score_list counts alike.
    std::vector<int64_t> pos(n);
    std::iota(pos.begin(), pos.end(), 0);
    std::vector<float> ls(n);
    int64_t listed = 0;
    for (int64_t i = 0; i < n; ++i) {
        listed += K->score_list(index.store.view(), kq.data() + i * qf, pos.data(), n, ls.data());
        for (int64_t r = 0; r < n; ++r) EXPECT_NEAR(ls[r], scores[i * n + r], 1e-5 * gain[r]);
    }
    EXPECT_EQ(listed, want_clamped);
}

constexpr const char* kKernelNames[] = {"scalar", "avx2", "batch_avx2", "batch"};
INSTANTIATE_TEST_SUITE_P(Kernels, KernelTest,
                         ::testing::Values(&kernels::scalar_kernels(), kernels::avx2_kernels(),
                                           kernels::batch_avx2_kernels(), kernels::batch_kernels()),
                         [](const auto& info) { return std::string(kKernelNames[info.index]); });

// The ratio of the slerp coefficients as a polynomial in s = sqrt(1 + c) (coeffs.h SlerpRatio):
// defined for t in [0.5, 1) at least (below about 0.4 and at 1 the kernel takes the per-lane
// closed form), and where defined within 1e-6 of sin(t theta) / sin((1-t) theta), relative,
// over the clamped range of c, evaluated in float as the kernels do.
TEST(BatchKernel, SlerpRatioSeries) {
    for (float t : {0.0f, 0.1f, 0.3f, 0.5f, 0.6f, 0.7f, 0.8f, 0.85f, 0.9f, 0.95f, 0.99f, 1.0f}) {
        SCOPED_TRACE(t);
        const kernels::SlerpRatio R(t);
        if (t >= 0.5f && t < 1.0f) EXPECT_TRUE(R.ok);
        if (t == 1.0f || t == 0.1f) EXPECT_FALSE(R.ok);
        if (!R.ok) continue;
        EXPECT_TRUE(R.terms == 4 || R.terms == 8 || R.terms == 12);
        for (int i = 0; i <= 1000; ++i) {
            const float c = kernels::kAntipodalCosF + (1.0f - kernels::kAntipodalCosF) * float(i) / 1000.0f;
            const double th = std::acos(double(c));
            const double want = th > 0 ? std::sin(t * th) / std::sin((1.0 - t) * th) : t / (1.0 - t);
            const float s = std::sqrt(1.0f + c);
            float got = R.r[R.terms - 1];
            for (int k = R.terms - 2; k >= 0; --k) got = std::fma(got, s, R.r[k]);
            ASSERT_LE(std::abs(got - want), 1.5e-6 * std::max(std::abs(want), 1e-12)) << c;
        }
    }
}

// The batched kernels (AVX2, and AVX-512 where the CPU has it: the same bits) beyond one pass of queries
// (300 > 256), at t whose ratio polynomial takes 4 (0.5, 0.75), 8 (0.7, 0.97) and 12 (0.35) terms
// or none (t = 0.3: the per-lane closed form), on a block that is not a whole number of sgemm blocks; and score_block's choice:
// fewer than kBatchMinQueries go to the per-entry kernel, more to the batched one.
TEST(BatchKernel, ManyQueriesOtherTAndTheDispatch) {
    if (!kernels::batch_kernels()) GTEST_SKIP() << "this CPU lacks AVX2/FMA: the batched kernel is not testable here";
    const std::map<float, int> terms = {{0.3f, 0}, {0.35f, 12}, {0.5f, 4}, {0.7f, 8}, {0.75f, 4}, {0.97f, 8}};
    for (const auto& [t, n_terms] : terms) {
        EXPECT_EQ(kernels::SlerpRatio(t).terms, n_terms) << t;
        for (const kernels::KernelTable* B : {kernels::batch_avx2_kernels(), kernels::batch_kernels()}) {
            SCOPED_TRACE(testing::Message() << "t " << t << " " << B->name);
            Params p = Params::defaults(8, 16);
            p.t = t;
            IndexProtectedSlerp index(p);
            index.set_seed(8);
            const int64_t n = 97, nq = 300;
            const auto x = random_features(n, index.d, 9);
            index.add(n, x.data());
            const auto q = random_features(nq, index.d, 10);
            const std::vector<float> kq = kernel_queries(index, q.data(), nq);
            ASSERT_FALSE(kq.empty());
            const kernels::Entries E = index.store.view();
            std::vector<float> batched(nq * n), single(nq * n);
            const int64_t cb = B->score_range(E, kq.data(), nq, 0, n, batched.data(), n);
            const int64_t cs = kernels::scalar_kernels().score_range(E, kq.data(), nq, 0, n, single.data(), n);
            EXPECT_EQ(cb, cs);
            const auto gain = score_gain(index.store);
            for (int64_t i = 0; i < nq * n; ++i) ASSERT_NEAR(batched[i], single[i], 1e-5 * gain[i % n]) << i;
            // Dispatch: entries [5, 90), written from column 0.
            std::vector<float> few(3 * n), many(nq * n), want_few(3 * n), want_many(nq * n);
            kernels::score_block(E, kq.data(), 3, 5, 90, few.data(), n);
            kernels::kernels().score_range(E, kq.data(), 3, 5, 90, want_few.data(), n);
            kernels::score_block(E, kq.data(), nq, 5, 90, many.data(), n);
            kernels::batch_kernels()->score_range(E, kq.data(), nq, 5, 90, want_many.data(), n);
            for (int64_t i = 0; i < 3; ++i) {
                for (int64_t j = 0; j < 85; ++j) EXPECT_EQ(few[i * n + j], want_few[i * n + j]);
            }
            if (&kernels::kernels() != &kernels::scalar_kernels()) {  // not under PSLERP_SIMD=scalar
                for (int64_t i = 0; i < nq; ++i) {
                    for (int64_t j = 0; j < 85; ++j) ASSERT_EQ(many[i * n + j], want_many[i * n + j]);
                }
            }
            // score_block_into hands the sink the same scores as score_block writes, for both choices
            // (sink blocks entry-major from the batched kernel, query-major from the per-entry one),
            // and every (query, entry) once.
            for (const int64_t m : {int64_t(3), nq}) {
                struct Collect final : kernels::ScoreSink {
                    std::vector<float> got;
                    std::vector<int> seen;
                    int64_t n = 0, j_first = 0;
                    void take(int64_t q0, int64_t nq_, int64_t j0, int64_t nj, const float* s, int64_t es,
                              int64_t qs) override {
                        for (int64_t qi = 0; qi < nq_; ++qi) {
                            for (int64_t jj = 0; jj < nj; ++jj) {
                                const size_t at = size_t((q0 + qi) * n + (j0 + jj - j_first));
                                got[at] = s[jj * es + qi * qs];
                                ++seen[at];
                            }
                        }
                    }
                } sink;
                sink.n = n, sink.j_first = 5;
                sink.got.assign(size_t(m * n), 0.0f);
                sink.seen.assign(size_t(m * n), 0);
                kernels::score_block_into(E, kq.data(), m, 5, 90, sink);
                const std::vector<float>& want = m == 3 ? few : many;
                for (int64_t i = 0; i < m; ++i) {
                    for (int64_t j = 0; j < n; ++j) {
                        ASSERT_EQ(sink.seen[i * n + j], j < 85 ? 1 : 0) << m << " " << i << " " << j;
                        if (j < 85) ASSERT_EQ(sink.got[i * n + j], want[i * n + j]) << m << " " << i << " " << j;
                    }
                }
            }
            // An entry's score does not depend on the range it was scored in (the index splits its rows
            // between threads): [0, n) in one call equals [0, 37) and [37, n) in two, bit for bit.
            std::vector<float> split(nq * n);
            B->score_range(E, kq.data(), nq, 0, 37, split.data(), n);
            B->score_range(E, kq.data(), nq, 37, n, split.data() + 37, n);
            EXPECT_EQ(split, batched);
            // Eight lanes or sixteen: the same operations per lane, the same bits.
            std::vector<float> eight(nq * n);
            kernels::batch_avx2_kernels()->score_range(E, kq.data(), nq, 0, n, eight.data(), n);
            EXPECT_EQ(eight, batched);
        }
    }
}

TEST(Index, SearchEqualsReferenceRanking) {
    for (const auto& c : testing_util::kernel_cases()) {
        SCOPED_TRACE(c.name);
        IndexProtectedSlerp index(c.params);
        index.set_seed(4);
        const int64_t n = 1001, nq = 13, k = 7;
        auto x = random_features(n, index.d, 5);
        auto q = random_features(nq, index.d, 6);
        index.add(n, x.data());
        std::vector<float> D(nq * k);
        std::vector<idx_t> I(nq * k);
        index.search(nq, q.data(), k, D.data(), I.data());
        const auto ref = reference_scores(index, q, nq);
        const auto gain = score_gain(index.store);  // ids are rows here
        for (int64_t i = 0; i < nq; ++i) {
            std::vector<int64_t> order(n);
            std::iota(order.begin(), order.end(), 0);
            std::partial_sort(order.begin(), order.begin() + k, order.end(),
                              [&](int64_t a, int64_t b) { return ref[i * n + a] > ref[i * n + b]; });
            for (int64_t j = 0; j < k; ++j) {
                // Float sums: cohort-normalised weights reach several units each and the offset
                // cancels most of their sum, so the tolerance grows with the weights.
                const double tol = 1e-5 * gain[I[i * k + j]];
                EXPECT_NEAR(D[i * k + j], ref[i * n + I[i * k + j]], tol);
                // Same ranking unless two reference scores are closer than the tolerance.
                if (I[i * k + j] != order[j]) {
                    EXPECT_NEAR(ref[i * n + order[j]], ref[i * n + I[i * k + j]], 2 * tol);
                }
            }
        }
    }
}

// A batch of queries (the batched kernel, its scores handed to the search block by block) gives
// exactly the top k of the score matrix that score_block writes for the same queries: the same
// scores bit for bit, ties to the smaller id, removed entries and those outside a selector
// skipped; over three row blocks and both thread counts.
TEST(Index, BatchedSearchIsTheTopOfItsScores) {
    if (!kernels::batch_kernels()) GTEST_SKIP() << "this CPU lacks AVX2/FMA: no batched kernel here";
    const Params p = Params::defaults(8, 16);
    IndexProtectedSlerp index(p);
    index.set_seed(12);
    const int64_t n = 2500, nq = 40, k = 7;
    const auto x = random_features(n, index.d, 13);
    index.add(n, x.data());
    std::vector<idx_t> gone;
    for (idx_t id = 0; id < n; id += 7) gone.push_back(id);
    faiss::IDSelectorBatch removed(gone.size(), gone.data());
    ASSERT_EQ(index.remove_ids(removed), gone.size());
    const auto q = random_features(nq, index.d, 14);
    const std::vector<float> kq = kernel_queries(index, q.data(), nq);
    ASSERT_FALSE(kq.empty());
    std::vector<float> S(nq * n);
    kernels::score_block(index.store.view(), kq.data(), nq, 0, n, S.data(), n);
    faiss::IDSelectorRange upper(n / 3, n);
    const int threads_before = omp_get_max_threads();
    for (const faiss::IDSelector* sel : {static_cast<const faiss::IDSelector*>(nullptr),
                                         static_cast<const faiss::IDSelector*>(&upper)}) {
        for (const int threads : {1, 2}) {
            SCOPED_TRACE(testing::Message() << "threads " << threads << (sel ? ", selector" : ""));
            omp_set_num_threads(threads);
            std::vector<float> D(nq * k);
            std::vector<idx_t> I(nq * k);
            faiss::SearchParameters sp;
            sp.sel = const_cast<faiss::IDSelector*>(sel);
            index.search(nq, q.data(), k, D.data(), I.data(), &sp);
            for (int64_t i = 0; i < nq; ++i) {
                std::vector<int64_t> order;
                for (int64_t r = 0; r < n; ++r) {
                    if (r % 7 != 0 && (!sel || sel->is_member(r))) order.push_back(r);
                }
                std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
                    const float sa = S[i * n + a], sb = S[i * n + b];
                    return sa != sb ? sa > sb : a < b;
                });
                for (int64_t j = 0; j < k; ++j) {
                    ASSERT_EQ(I[i * k + j], order[j]) << i << " " << j;
                    ASSERT_EQ(D[i * k + j], S[i * n + order[j]]) << i << " " << j;
                }
            }
        }
    }
    omp_set_num_threads(threads_before);
}

TEST(Index, MatedAboveNonMatedOnSynthetic) {
    SynthConfig cfg;
    cfg.groups = 8;
    cfg.group_dim = 16;
    cfg.seed = 11;
    auto split = synth_gallery(cfg, 2000, 200, 200);
    ASSERT_TRUE(split.ok()) << split.status();
    IndexProtectedSlerp index(Params::defaults(8, 16));
    index.set_seed(9);
    index.add_with_ids(split->gallery.n, split->gallery.x.data(), split->gallery.labels.data());
    std::vector<float> D(400);
    std::vector<idx_t> I(400);
    index.search(400, split->probes.x.data(), 1, D.data(), I.data());
    int rank1 = 0;
    double mated = 0, nonmated = 0;
    for (int i = 0; i < 200; ++i) {
        rank1 += I[i] == split->probes.labels[i];
        mated += index.verify(split->probes.x.data() + i * 128, split->probes.labels[i]);
        nonmated += index.verify(split->probes.x.data() + (200 + i) * 128, i);
    }
    EXPECT_GT(rank1, 180) << "rank-1 identification on 2000 synthetic identities";
    // Slerp toward per-entry keys compresses scores (both sides move toward the same key):
    // at t = 0.7 mated is about 0.93 and non-mated about 0.78 on this data.
    EXPECT_GT(mated / 200, nonmated / 200 + 0.1);
    // 1:1 decisions at a threshold between the two means.
    const float thr = float((mated + nonmated) / 400);
    int accepted_mated = 0, accepted_non = 0;
    for (int i = 0; i < 200; ++i) {
        accepted_mated += index.verify(split->probes.x.data() + i * 128, split->probes.labels[i]) >= thr;
        accepted_non += index.verify(split->probes.x.data() + (200 + i) * 128, i) >= thr;
    }
    EXPECT_GT(accepted_mated, 170);
    EXPECT_LT(accepted_non, 30);
}

TEST(Index, PaddingEmptyAndZeroQueries) {
    IndexProtectedSlerp index(Params::defaults(2, 8));
    auto x = random_features(3, 16, 7);
    std::vector<float> D(5);
    std::vector<idx_t> I(5);
    index.search(1, x.data(), 5, D.data(), I.data());  // empty index
    for (int j = 0; j < 5; ++j) {
        EXPECT_EQ(I[j], -1);
        EXPECT_EQ(D[j], -std::numeric_limits<float>::infinity());
    }
    index.add(3, x.data());
    index.search(1, x.data(), 5, D.data(), I.data());  // k > ntotal
    EXPECT_EQ(I[0], 0);
    EXPECT_NE(I[2], -1);
    EXPECT_EQ(I[3], -1);
    EXPECT_EQ(I[4], -1);
    EXPECT_GE(D[0], D[1]);
    index.search(0, nullptr, 5, D.data(), I.data());  // n = 0 is a no-op
    index.add(0, nullptr);
    EXPECT_EQ(index.ntotal, 3);
}

TEST(Index, IdsRemoveAndVerify) {
    IndexProtectedSlerp index(Params::defaults(4, 8));
    index.set_seed(1);
    auto x = random_features(10, 32, 8);
    std::vector<idx_t> ids = {100, 101, 102, 103, 104, 105, 106, 107, 108, 109};
    index.add_with_ids(10, x.data(), ids.data());
    EXPECT_THROW(index.add_with_ids(1, x.data(), ids.data()), faiss::FaissException);  // duplicate
    std::vector<idx_t> twice = {200, 200};
    EXPECT_THROW(index.add_with_ids(2, x.data(), twice.data()), faiss::FaissException);
    EXPECT_EQ(index.ntotal, 10);
    float D[1];
    idx_t I[1];
    index.search(1, x.data() + 3 * 32, 1, D, I);
    EXPECT_EQ(I[0], 103);
    EXPECT_FLOAT_EQ(index.verify(x.data() + 3 * 32, 103), D[0]);
    faiss::IDSelectorBatch sel(1, &ids[3]);
    EXPECT_EQ(index.remove_ids(sel), 1u);
    EXPECT_EQ(index.ntotal, 9);
    index.search(1, x.data() + 3 * 32, 1, D, I);
    EXPECT_NE(I[0], 103);
    EXPECT_THROW(index.verify(x.data(), 103), faiss::FaissException);
    EXPECT_THROW(index.verify(x.data(), 999), faiss::FaissException);
    index.compact();
    EXPECT_EQ(index.store.rows(), 9);
    EXPECT_EQ(index.ntotal, 9);
    index.search(1, x.data() + 4 * 32, 1, D, I);
    EXPECT_EQ(I[0], 104);
    index.add(1, x.data() + 3 * 32);  // id after the largest so far
    index.search(1, x.data() + 3 * 32, 1, D, I);
    EXPECT_EQ(I[0], 110);
    index.reset();
    EXPECT_EQ(index.ntotal, 0);
}

TEST(Index, RangeSearchEqualsBruteForce) {
    IndexProtectedSlerp index(Params::defaults(8, 16));
    index.set_seed(2);
    const int64_t n = 700, nq = 5;
    auto x = random_features(n, 128, 9);
    index.add(n, x.data());
    auto q = x;  // probes are the enrolled features: each has one clear match
    q.resize(nq * 128);
    faiss::RangeSearchResult res(nq);
    const float thr = 0.9f;  // self-matches score 1, others about 0.8 at t = 0.7
    index.range_search(nq, q.data(), thr, &res);
    const auto ref = reference_scores(index, q, nq);
    for (int64_t i = 0; i < nq; ++i) {
        std::set<idx_t> got(res.labels + res.lims[i], res.labels + res.lims[i + 1]), want;
        for (int64_t r = 0; r < n; ++r) {
            if (ref[i * n + r] >= thr + 1e-5) want.insert(r);
            if (std::abs(ref[i * n + r] - thr) < 1e-5) got.erase(r);
        }
        EXPECT_EQ(got, want);
        EXPECT_TRUE(got.count(i));
    }
}

TEST(Index, BadInputsGiveClearErrors) {
    IndexProtectedSlerp index(Params::defaults(2, 8));
    auto x = random_features(2, 16, 10);
    float D[2];
    idx_t I[2];
    index.add(2, x.data());
    auto expect_message = [](auto&& f, const std::string& needle) {
        try {
            f();
            ADD_FAILURE() << "no exception, expected: " << needle;
        } catch (const faiss::FaissException& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    expect_message([&] { index.search(1, x.data(), 0, D, I); }, "k must be > 0");
    expect_message([&] { index.search(1, x.data(), -3, D, I); }, "k must be > 0");
    std::vector<float> nan = x;
    nan[5] = std::nanf("");
    expect_message([&] { index.search(1, nan.data(), 1, D, I); }, "NaN");
    expect_message([&] { index.add(1, nan.data()); }, "NaN");
    std::vector<float> zero(16, 0.0f);
    expect_message([&] { index.search(1, zero.data(), 1, D, I); }, "zero norm");
    expect_message([&] { index.add(1, zero.data()); }, "zero norm");
    expect_message([&] { index.verify(x.data(), 77); }, "unknown id 77");
    EXPECT_EQ(index.ntotal, 2) << "failed adds must not change the index";
    EXPECT_THROW(IndexProtectedSlerp(Params::defaults(0, 8)), faiss::FaissException);
}

TEST(Index, BytesPerEntryStated) {
    IndexProtectedSlerp index(Params::defaults(8, 16));
    // 128 template + 128 key floats, 16 mask bytes, 3 x 8 group constants, the score offset,
    // id and tombstone.
    EXPECT_EQ(index.bytes_per_entry(), 4u * (128 + 128 + 24 + 1) + 16 + 8 + 1);
    Params shared = Params::defaults(8, 16);
    shared.key_mode = KeyMode::kShared;
    EXPECT_EQ(IndexProtectedSlerp(shared).bytes_per_entry(), 4u * (128 + 16 + 24 + 1) + 16 + 8 + 1);
}

}  // namespace
}  // namespace pslerp

namespace pslerp {
namespace {

TEST(Index, IvfSearchParametersAreRejectedAndSelectorsHonoured) {
    IndexProtectedSlerp index(Params::defaults(2, 8));
    auto x = testing_util::random_features(4, 16, 3);
    index.add(4, x.data());
    faiss::SearchParametersIVF ivf;
    ivf.nprobe = 4;
    float D[4];
    idx_t I[4];
    try {
        index.search(1, x.data(), 1, D, I, &ivf);
        ADD_FAILURE() << "IVF parameters were accepted by the exhaustive index";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find("IndexIVFProtectedSlerp"), std::string::npos) << e.what();
    }
    faiss::RangeSearchResult r(1);
    EXPECT_THROW(index.range_search(1, x.data(), 0.5f, &r, &ivf), faiss::FaissException);
    // A plain SearchParameters restricts the search to its selector's ids.
    faiss::IDSelectorRange odd_free(2, 4);  // ids 2 and 3
    faiss::SearchParameters sp;
    sp.sel = &odd_free;
    index.search(1, x.data(), 4, D, I, &sp);
    EXPECT_TRUE(I[0] == 2 || I[0] == 3);
    EXPECT_TRUE(I[1] == 2 || I[1] == 3);
    EXPECT_NE(I[0], I[1]);
    EXPECT_EQ(I[2], -1);
    EXPECT_EQ(I[3], -1);
    EXPECT_TRUE(std::isinf(D[2]) && D[2] < 0);
}

}  // namespace
}  // namespace pslerp

namespace pslerp {
namespace {

TEST(Index, VerifyIdentityTakesTheBestOfItsEntries) {
    IndexProtectedSlerp index(Params::defaults(4, 8));
    index.set_seed(6);
    auto x = testing_util::random_features(6, 32, 4);
    const std::vector<idx_t> ids = {10, 11, 12, 20, 21, 22};
    index.add_with_ids(6, x.data(), ids.data());
    const std::vector<idx_t> identity = {10, 11, 12};  // one person enrolled three times
    const float best = index.verify_identity(x.data() + 1 * 32, 3, identity.data());
    EXPECT_FLOAT_EQ(best, index.verify(x.data() + 1 * 32, 11));
    EXPECT_GE(best, index.verify(x.data() + 1 * 32, 10));
    const idx_t unknown[] = {10, 99};
    EXPECT_THROW(index.verify_identity(x.data(), 2, unknown), faiss::FaissException);
    EXPECT_THROW(index.verify_identity(x.data(), 0, identity.data()), faiss::FaissException);
}

}  // namespace
}  // namespace pslerp

namespace pslerp {
namespace {

// NaN, infinite and zero-group inputs throw InvalidInputError (Python: ValueError) from every
// entry point; other problems a plain faiss::FaissException (Python: RuntimeError).
TEST(Index, BadValuesThrowInvalidInputError) {
    IndexProtectedSlerp index(Params::defaults(2, 8));
    index.set_seed(3);
    auto x = random_features(4, 16, 10);
    index.add(4, x.data());
    std::vector<float> nan = x, inf = x, zero(16, 0.0f);
    nan[5] = std::nanf("");
    inf[17] = std::numeric_limits<float>::infinity();
    float D[2], s[2];
    idx_t I[2];
    const idx_t ids[2] = {0, 1};
    faiss::RangeSearchResult r(2);
    for (const std::vector<float>* bad : {&nan, &inf}) {
        const float* b = bad->data();
        EXPECT_THROW(index.search(2, b, 1, D, I), InvalidInputError);
        EXPECT_THROW(index.range_search(2, b, 0.5f, &r), InvalidInputError);
        EXPECT_THROW(index.verify_batch(2, b, ids, s), InvalidInputError);
        EXPECT_THROW(index.add(2, b), InvalidInputError);
    }
    EXPECT_THROW(index.verify(zero.data(), 0), InvalidInputError);
    EXPECT_THROW(index.verify_identity(zero.data(), 2, ids), InvalidInputError);
    EXPECT_THROW(index.add(1, zero.data()), InvalidInputError);
    IndexProtectedSlerp untrained(Params::defaults(2, 8));
    EXPECT_THROW(untrained.train(2, nan.data()), InvalidInputError);
    // Errors that are not about the values stay plain FAISS exceptions.
    try {
        index.verify(x.data(), 77);
        ADD_FAILURE() << "an unknown id was accepted";
    } catch (const InvalidInputError&) {
        ADD_FAILURE() << "an unknown id is not a bad value";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find("77"), std::string::npos) << "the message names the id: " << e.what();
    }
    EXPECT_EQ(index.ntotal, 4);
}

// set_seed warns on stderr, once per call.
TEST(Index, SetSeedWarns) {
    IndexProtectedSlerp index(Params::defaults(2, 8));
    ::testing::internal::CaptureStderr();
    index.set_seed(1);
    index.set_seed(2);
    const std::string err = ::testing::internal::GetCapturedStderr();
    size_t lines = 0;
    for (size_t at = err.find("reproducible"); at != std::string::npos; at = err.find("reproducible", at + 1)) ++lines;
    EXPECT_EQ(lines, 2u) << err;
    EXPECT_NE(err.find("WARNING"), std::string::npos);
    EXPECT_EQ(err.find('2'), std::string::npos) << "the seed itself is not printed: " << err;
}

// A loaded seeded index records the seed but draws fresh keys from the OS generator (two
// enrolments from the same file must not get the same keys); seeding it again continues the
// saved stream.
TEST(Index, LoadedSeededIndexDrawsFreshKeys) {
    IndexProtectedSlerp index(Params::defaults(4, 8));
    index.set_seed(17);
    const auto x = random_features(20, 32, 1), more = random_features(5, 32, 2);
    index.add(20, x.data());
    const std::vector<uint8_t> bytes = serialize_index_unsealed(index);
    auto load = [&] {
        auto loaded = deserialize_index(bytes.data(), bytes.size());
        return std::unique_ptr<IndexProtectedSlerp>(dynamic_cast<IndexProtectedSlerp*>(loaded.release()));
    };
    auto first = load(), second = load();
    EXPECT_EQ(first->seed(), std::optional<uint64_t>(17)) << "the file's seed stays on record";
    EXPECT_FALSE(first->seeded_stream());
    EXPECT_TRUE(index.seeded_stream());
    EXPECT_EQ(serialize_index_unsealed(*first), bytes) << "loading and saving again keeps the file";
    first->add(5, more.data());
    second->add(5, more.data());
    index.add(5, more.data());
    const size_t kf = index.store.layout.key_floats();
    const auto new_keys = [&](const IndexProtectedSlerp& i) {
        return std::vector<float>(i.store.keys.begin() + 20 * kf, i.store.keys.end());
    };
    EXPECT_NE(new_keys(*first), new_keys(*second)) << "two loads of a seeded file drew the same keys";
    EXPECT_NE(new_keys(*first), new_keys(index));
    EXPECT_EQ(std::vector<float>(first->store.keys.begin(), first->store.keys.begin() + 20 * kf),
              std::vector<float>(index.store.keys.begin(), index.store.keys.begin() + 20 * kf));
    // set_seed again: the saved stream continues.
    auto again = load();
    again->set_seed(17);
    EXPECT_TRUE(again->seeded_stream());
    again->add(5, more.data());
    EXPECT_EQ(new_keys(*again), new_keys(index));
    // An unseeded file stays unseeded.
    IndexProtectedSlerp plain(Params::defaults(4, 8));
    plain.add(3, x.data());
    const auto plain_bytes = serialize_index_unsealed(plain);
    auto loaded_plain = deserialize_index(plain_bytes.data(), plain_bytes.size());
    EXPECT_FALSE(protected_of(*loaded_plain).seed().has_value());
    EXPECT_FALSE(protected_of(*loaded_plain).seeded_stream());
}


// The combination weights stored with an entry follow Params::weighting: the entry's own
// importance (normalised) with kImportance, 1/G with kUniform, whatever the importance.
TEST(Index, CombinationWeightsFollowTheWeighting) {
    for (Weighting weighting : {Weighting::kImportance, Weighting::kUniform}) {
        Params p = Params::defaults(4, 8);
        p.importance = ImportanceKind::kFixed;
        p.importance_weights = {1, 0, 2, 1};
        p.weighting = weighting;
        p.norm = Norm::kNone;  // cohort normalisation rescales the weights (test_cohort.cpp)
        IndexProtectedSlerp index(p);
        const auto x = random_features(3, p.dim(), 12);
        index.add(3, x.data());
        std::vector<float> w(p.groups);
        for (int64_t r = 0; r < 3; ++r) {
            index.store.weight_row(p, r, w.data());
            if (weighting == Weighting::kImportance) {
                EXPECT_EQ(w, (std::vector<float>{0.25f, 0.0f, 0.5f, 0.25f}));
            } else {
                EXPECT_EQ(w, (std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f}));
            }
        }
    }
}

// ---------------------------------------------------------------- compaction (issue 16)

/// Adds x[positions[i]] under ids[positions[i]] with the keys and masks that set_seed(seed)
/// gives the entry at stream position positions[i] (runs of consecutive positions together):
/// an index filled so holds, entry for entry, what one seeded index adding every position holds.
void add_at_streams(IndexProtectedSlerp& index, uint64_t seed, const std::vector<float>& x,
                    const std::vector<idx_t>& ids, const std::vector<int64_t>& positions) {
    ::testing::internal::CaptureStderr();  // set_seed warns at every call
    for (size_t a = 0; a < positions.size();) {
        size_t b = a + 1;
        while (b < positions.size() && positions[b] == positions[b - 1] + 1) ++b;
        index.restore_state(uint64_t(positions[a]), seed, 0);
        index.set_seed(seed);
        index.add_with_ids(idx_t(b - a), x.data() + positions[a] * index.d, ids.data() + positions[a]);
        a = b;
    }
    ::testing::internal::GetCapturedStderr();
}

void expect_same_storage(const EntryStorage& a, const EntryStorage& b) {
    EXPECT_EQ(a.rows(), b.rows());
    EXPECT_EQ(a.templates, b.templates);
    EXPECT_EQ(a.keys, b.keys);
    EXPECT_EQ(a.masks, b.masks);
    EXPECT_EQ(a.ke, b.ke);
    EXPECT_EQ(a.kmk, b.kmk);
    EXPECT_EQ(a.weights, b.weights);
    EXPECT_EQ(a.ids, b.ids);
    EXPECT_EQ(a.removed, b.removed);
}

/// search and range_search of the nq probes, and verify of every live id (probes taken in
/// turn), exactly as returned.
testing_util::Answers outcome(const IndexProtectedSlerp& index, const std::vector<float>& q, int64_t nq,
                              const std::vector<idx_t>& live) {
    testing_util::Answers o = testing_util::answers(index, q, nq, 11, 0.3f);
    std::vector<float> probes(live.size() * index.d);
    for (size_t j = 0; j < live.size(); ++j) std::copy_n(q.data() + (j % nq) * index.d, index.d, probes.data() + j * index.d);
    o.scores.resize(live.size());
    index.verify_batch(idx_t(live.size()), probes.data(), live.data(), o.scores.data());
    return o;
}

// Removal tombstones rows; compact() (and remove_ids by itself, once tombstones are the
// majority of >= 1024 rows) keeps exactly the survivors, in order, with their keys and masks:
// the storage equals that of an index that only ever added the survivors, and so does every
// answer, before compaction (tombstones skipped) and after. reset() then adding the same
// entries with the same keys gives back the index it was.
TEST(Index, CompactionLeavesWhatAFreshIndexOfTheSurvivorsHolds) {
    const Params p = Params::defaults(5, 7);  // 35-D: the last block of the layout is padding
    const int d = p.dim();
    const uint64_t seed = 9;
    const int64_t n = 1100;
    const auto x = random_features(n, d, 30);
    std::vector<idx_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = 3 * i + 1;
    std::vector<int64_t> everyone(n);
    std::iota(everyone.begin(), everyone.end(), 0);
    IndexProtectedSlerp index(p);
    add_at_streams(index, seed, x, ids, everyone);
    const auto q = random_features(9, d, 31);
    const testing_util::Answers original = outcome(index, q, 9, ids);

    auto survivors_of = [&](auto gone) {
        std::vector<int64_t> pos;
        std::vector<idx_t> live;
        for (int64_t i = 0; i < n; ++i) {
            if (!gone(i)) {
                pos.push_back(i);
                live.push_back(ids[i]);
            }
        }
        return std::make_pair(pos, live);
    };
    auto remove = [&](auto gone) {
        std::vector<idx_t> batch;
        for (int64_t i = 0; i < n; ++i) {
            if (gone(i) && index.contains(ids[i])) batch.push_back(ids[i]);
        }
        faiss::IDSelectorBatch sel(batch.size(), batch.data());
        EXPECT_EQ(index.remove_ids(sel), batch.size());
    };

    // A third removed: below the majority, so only tombstones.
    auto third = [](int64_t i) { return i % 3 == 1; };
    remove(third);
    {
        const auto [pos, live] = survivors_of(third);
        IndexProtectedSlerp fresh(p);
        add_at_streams(fresh, seed, x, ids, pos);
        EXPECT_EQ(index.store.rows(), n) << "no compaction while tombstones are the minority";
        EXPECT_EQ(index.ntotal, int64_t(live.size()));
        EXPECT_TRUE(outcome(index, q, 9, live) == outcome(fresh, q, 9, live)) << "tombstones are skipped";
        index.compact();
        EXPECT_EQ(index.store.rows(), int64_t(live.size()));
        expect_same_storage(index.store, fresh.store);
        EXPECT_TRUE(outcome(index, q, 9, live) == outcome(fresh, q, 9, live)) << "after compact()";
        for (int64_t i : {int64_t(1), int64_t(4), n - 1}) EXPECT_FALSE(index.contains(ids[i]));
        EXPECT_THROW(index.verify(q.data(), ids[1]), faiss::FaissException);
    }

    // Two thirds removed: remove_ids compacts by itself. The removed third is added back
    // first (at the end of the storage), so that the call starts from 1100 rows >= 1024.
    std::vector<int64_t> back;
    for (int64_t i = 0; i < n; ++i) {
        if (third(i)) back.push_back(i);
    }
    add_at_streams(index, seed, x, ids, back);  // the same entries again, appended at the end
    ASSERT_EQ(index.store.rows(), n);
    auto two_thirds = [](int64_t i) { return i % 3 != 0; };
    remove(two_thirds);
    {
        const auto [pos, live] = survivors_of(two_thirds);
        EXPECT_EQ(index.store.rows(), int64_t(live.size())) << "remove_ids compacts once tombstones are the majority";
        IndexProtectedSlerp fresh(p);
        add_at_streams(fresh, seed, x, ids, pos);
        // Survivors keep their storage order (the re-added third went again).
        expect_same_storage(index.store, fresh.store);
        EXPECT_TRUE(outcome(index, q, 9, live) == outcome(fresh, q, 9, live)) << "after automatic compaction";
        EXPECT_EQ(index.next_id(), ids.back() + 1) << "compaction never lowers the next id";
    }

    // reset(), then the same entries with the same keys: the index it was.
    index.reset();
    EXPECT_EQ(index.ntotal, 0);
    EXPECT_EQ(index.store.rows(), 0);
    EXPECT_EQ(index.next_id(), 0);
    EXPECT_FALSE(index.contains(ids[0]));
    add_at_streams(index, seed, x, ids, everyone);
    EXPECT_TRUE(outcome(index, q, 9, ids) == original);
}
}  // namespace
}  // namespace pslerp
