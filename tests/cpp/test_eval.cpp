// Evaluation metrics against hand-computed examples and limiting cases.
#include "eval/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace pslerp {
namespace {

/// The status is InvalidArgument and its message contains `part`.
template <typename T>
::testing::AssertionResult InvalidSaying(const T& result, const std::string& part) {
    absl::Status st;
    if constexpr (std::is_same_v<T, absl::Status>) {
        st = result;
    } else {
        st = result.status();
    }
    if (st.code() != absl::StatusCode::kInvalidArgument) {
        return ::testing::AssertionFailure() << "expected InvalidArgument, got " << st;
    }
    if (std::string(st.message()).find(part) == std::string::npos) {
        return ::testing::AssertionFailure() << "'" << st.message() << "' does not contain '" << part << "'";
    }
    return ::testing::AssertionSuccess();
}

TEST(Roc, HandExampleExactPoints) {
    const std::vector<float> mated = {0.9f, 0.8f, 0.4f};
    const std::vector<float> nonmated = {0.7f, 0.3f, 0.2f};
    absl::StatusOr<Roc> roc = roc_curve(mated, nonmated);
    ASSERT_TRUE(roc.ok()) << roc.status();
    ASSERT_EQ(roc->thresholds.size(), 7u);
    EXPECT_TRUE(std::isinf(roc->thresholds[0]));
    const std::vector<double> thr = {0.9f, 0.8f, 0.7f, 0.4f, 0.3f, 0.2f};
    const std::vector<int64_t> ta = {0, 1, 2, 2, 3, 3, 3}, fa = {0, 0, 0, 1, 1, 2, 3};
    for (size_t k = 1; k < 7; ++k) EXPECT_EQ(roc->thresholds[k], thr[k - 1]);
    EXPECT_EQ(roc->true_accepts, ta);
    EXPECT_EQ(roc->false_accepts, fa);
    EXPECT_DOUBLE_EQ(roc->tar[2], 2.0 / 3);
    EXPECT_DOUBLE_EQ(roc->far[5], 2.0 / 3);

    absl::StatusOr<Eer> eer = equal_error_rate(*roc);
    ASSERT_TRUE(eer.ok());
    EXPECT_DOUBLE_EQ(eer->eer, 1.0 / 3);  // FAR = FRR = 1/3 exactly at 0.7
    EXPECT_FLOAT_EQ(static_cast<float>(eer->threshold), 0.7f);
}

TEST(Roc, EerInterpolatesBetweenPoints) {
    // Points: (FAR, FRR) = (0, .5) at 0.9, (.25, .5) at 0.8, (.25, 0) at 0.6: FAR - FRR goes
    // -0.25 -> +0.25, so the crossing is half way: EER 0.25, threshold 0.7.
    const std::vector<float> mated = {0.9f, 0.6f};
    const std::vector<float> nonmated = {0.8f, 0.5f, 0.4f, 0.3f};
    absl::StatusOr<VerificationReport> rep = verification_report(mated, nonmated, std::vector<double>{0.25});
    ASSERT_TRUE(rep.ok()) << rep.status();
    // Exact: a = 0.25 / 0.5 = 1/2 and FAR is 0.25 at both points; the threshold is the midpoint of
    // the two float scores, computed exactly in double.
    EXPECT_DOUBLE_EQ(rep->eer.eer, 0.25);
    EXPECT_DOUBLE_EQ(rep->eer.threshold, (double{0.8f} + double{0.6f}) / 2);
    ASSERT_EQ(rep->tar.size(), 1u);
    EXPECT_DOUBLE_EQ(rep->tar[0].tar, 1.0);  // one false accept allowed: threshold 0.6
    EXPECT_FLOAT_EQ(static_cast<float>(rep->tar[0].threshold), 0.6f);
}

TEST(Roc, TiesShareOnePoint) {
    const std::vector<float> mated = {0.5f, 0.5f, 0.9f};
    const std::vector<float> nonmated = {0.5f, 0.1f};
    absl::StatusOr<Roc> roc = roc_curve(mated, nonmated);
    ASSERT_TRUE(roc.ok());
    ASSERT_EQ(roc->thresholds.size(), 4u);  // +inf, 0.9, 0.5, 0.1
    EXPECT_EQ(roc->true_accepts[2], 3);
    EXPECT_EQ(roc->false_accepts[2], 1);
}

TEST(Roc, PerfectSeparationHasZeroEer) {
    absl::StatusOr<Roc> roc = roc_curve(std::vector<float>{0.8f, 0.9f}, std::vector<float>{0.1f, 0.2f});
    ASSERT_TRUE(roc.ok());
    absl::StatusOr<Eer> eer = equal_error_rate(*roc);
    ASSERT_TRUE(eer.ok());
    EXPECT_DOUBLE_EQ(eer->eer, 0.0);
    EXPECT_FLOAT_EQ(static_cast<float>(eer->threshold), 0.8f);
}

TEST(TarAtFar, CountsImpostorsBehindEachFar) {
    std::vector<float> nonmated(1000);
    for (int i = 0; i < 1000; ++i) nonmated[i] = static_cast<float>(i) / 1000;
    const std::vector<float> mated = {0.9995f, 0.9985f, 0.5f};
    absl::StatusOr<VerificationReport> rep = verification_report(mated, nonmated);
    ASSERT_TRUE(rep.ok()) << rep.status();
    ASSERT_EQ(rep->tar.size(), 3u);

    const TarAtFar& f2 = rep->tar[0];  // 1e-2: ten impostors may pass, down to 0.990
    EXPECT_EQ(f2.allowed_false_accepts, 10);
    EXPECT_EQ(f2.false_accepts, 10);
    EXPECT_FLOAT_EQ(static_cast<float>(f2.threshold), 0.990f);
    EXPECT_DOUBLE_EQ(f2.tar, 2.0 / 3);
    EXPECT_TRUE(f2.resolvable);

    const TarAtFar& f3 = rep->tar[1];  // 1e-3: one impostor (0.999) may pass
    EXPECT_EQ(f3.nonmated, 1000);
    EXPECT_EQ(f3.allowed_false_accepts, 1);
    EXPECT_EQ(f3.false_accepts, 1);
    EXPECT_FLOAT_EQ(static_cast<float>(f3.threshold), 0.9985f);
    EXPECT_DOUBLE_EQ(f3.tar, 2.0 / 3);
    EXPECT_DOUBLE_EQ(f3.far, 1e-3);

    const TarAtFar& f4 = rep->tar[2];  // 1e-4 on 1000 impostors: only FAR 0 is testable
    EXPECT_FALSE(f4.resolvable);
    EXPECT_EQ(f4.allowed_false_accepts, 0);
    EXPECT_EQ(f4.false_accepts, 0);
    EXPECT_DOUBLE_EQ(f4.tar, 1.0 / 3);
    EXPECT_FLOAT_EQ(static_cast<float>(f4.threshold), 0.9995f);

    ASSERT_TRUE(rep.ok());
    EXPECT_TRUE(InvalidSaying(tar_at_far(rep->roc, 1.5), "target FAR 1.5 is not in [0, 1]"));
    EXPECT_TRUE(InvalidSaying(tar_at_far(rep->roc, -0.1), "target FAR -0.1 is not in [0, 1]"));
}

TEST(Roc, EmptyAndNaNInputsAreErrors) {
    const std::vector<float> some = {0.5f}, none;
    EXPECT_TRUE(InvalidSaying(roc_curve(none, some), "no mated scores"));
    EXPECT_TRUE(InvalidSaying(roc_curve(some, none), "no non-mated scores"));
    EXPECT_TRUE(InvalidSaying(roc_curve(some, std::vector<float>{0.1f, std::nanf("")}), "non-mated score 1 is NaN"));
    EXPECT_TRUE(InvalidSaying(equal_error_rate(Roc{}), "equal_error_rate: empty or malformed ROC"));
    EXPECT_TRUE(InvalidSaying(tar_at_far(Roc{}, 1e-3), "tar_at_far: empty ROC"));
    EXPECT_TRUE(InvalidSaying(verification_report(none, none), "no mated scores"));
    EXPECT_TRUE(InvalidSaying(unlinkability(none, some), "no mated scores"));
    EXPECT_TRUE(InvalidSaying(unlinkability(some, none), "no non-mated scores"));
    EXPECT_TRUE(InvalidSaying(identification_rates({}, {}), "identification_rates: no probes"));
    EXPECT_TRUE(InvalidSaying(kfold_accuracy({}, {}, {}), "no pair scores"));
    EXPECT_TRUE(InvalidSaying(accuracy_at({}, {}, 0.5), "no pair scores"));
    EXPECT_TRUE(InvalidSaying(all_pairs(std::vector<int64_t>{1}), "all_pairs: need at least two items"));
}

TEST(KFold, ThresholdChosenOnTheOtherFolds) {
    // Every fold: mated 0.9, 0.7; non-mated 0.3, 0.5. Fold 0 also holds a hard mated pair at
    // 0.4. Folds 1-9 train on data including it, but rejecting it (1 error) beats accepting
    // nine 0.5 impostors, so their threshold is 0.6 and they score 1.0; fold 0, trained on
    // folds 1-9, also gets 0.6 and misses its hard pair: 4/5.
    std::vector<float> scores;
    std::vector<uint8_t> mated;
    std::vector<int> folds;
    for (int f = 0; f < 10; ++f) {
        for (float s : {0.9f, 0.7f}) scores.push_back(s), mated.push_back(1), folds.push_back(f);
        for (float s : {0.3f, 0.5f}) scores.push_back(s), mated.push_back(0), folds.push_back(f);
    }
    scores.push_back(0.4f), mated.push_back(1), folds.push_back(0);
    absl::StatusOr<FoldAccuracy> acc = kfold_accuracy(scores, mated, folds);
    ASSERT_TRUE(acc.ok()) << acc.status();
    ASSERT_EQ(acc->accuracy.size(), 10u);
    EXPECT_DOUBLE_EQ(acc->accuracy[0], 0.8);
    for (int f = 1; f < 10; ++f) EXPECT_DOUBLE_EQ(acc->accuracy[f], 1.0);
    for (double t : acc->threshold) EXPECT_NEAR(t, 0.6, 1e-6);
    EXPECT_NEAR(acc->mean, 0.98, 1e-12);
    EXPECT_NEAR(acc->sd, 0.06, 1e-12);

    absl::StatusOr<double> at = accuracy_at(scores, mated, 0.6);
    ASSERT_TRUE(at.ok());
    EXPECT_NEAR(*at, 40.0 / 41, 1e-12);

    EXPECT_TRUE(InvalidSaying(kfold_accuracy(scores, mated, std::vector<int>(scores.size(), 3)),
                              "kfold_accuracy: need at least two folds"));
    EXPECT_TRUE(InvalidSaying(kfold_accuracy(scores, std::vector<uint8_t>(3, 1), folds),
                              "kfold_accuracy: sizes differ (scores 41, is_mated 3, folds 41)"));
}

TEST(KFold, AllMatedFoldAcceptsEverything) {
    // With no impostors in training the best cut accepts everything (threshold -inf).
    const std::vector<float> scores = {0.1f, 0.2f, 0.3f, 0.4f};
    const std::vector<uint8_t> mated = {1, 1, 1, 1};
    const std::vector<int> folds = {0, 1, 0, 1};
    absl::StatusOr<FoldAccuracy> acc = kfold_accuracy(scores, mated, folds);
    ASSERT_TRUE(acc.ok());
    EXPECT_DOUBLE_EQ(acc->mean, 1.0);
    EXPECT_TRUE(std::isinf(acc->threshold[0]) && acc->threshold[0] < 0);
}

TEST(Unlinkability, HandExample) {
    // Two bins over [0, 2]. Upper bin: p_m = 3/4, p_nm = 1/4 per unit, LR = 3,
    // D = 2 * 3 / 4 - 1 = 0.5; lower bin LR = 1/3, D = 0. D_sys = 0.5 * 3/4.
    const std::vector<float> mated = {1.5f, 1.5f, 1.5f, 0.5f};
    const std::vector<float> nonmated = {0.5f, 0.5f, 0.5f, 1.5f};
    UnlinkabilityOptions opt;
    opt.bins = 2;
    opt.lo = 0;
    opt.hi = 2;
    absl::StatusOr<Unlinkability> u = unlinkability(mated, nonmated, opt);
    ASSERT_TRUE(u.ok()) << u.status();
    EXPECT_DOUBLE_EQ(u->d_sys, 0.375);
    EXPECT_DOUBLE_EQ(u->d_local[0], 0.0);
    EXPECT_DOUBLE_EQ(u->d_local[1], 0.5);
    EXPECT_DOUBLE_EQ(u->p_mated[1], 0.75);
    EXPECT_EQ(u->bin_edges, (std::vector<double>{0, 1, 2}));
    opt.omega = 3;  // prior ratio scales LR: upper bin LR 9 -> D 0.8, lower LR 1 -> D 0
    u = unlinkability(mated, nonmated, opt);
    ASSERT_TRUE(u.ok());
    EXPECT_NEAR(u->d_sys, 0.8 * 0.75, 1e-12);
}

TEST(Unlinkability, IdenticalNearZeroSeparatedNearOne) {
    std::mt19937_64 rng(7);
    std::normal_distribution<float> n01(0.f, 1.f);
    std::vector<float> a(200000), b(200000), far(200000);
    for (float& v : a) v = n01(rng);
    for (float& v : b) v = n01(rng);
    for (float& v : far) v = 10.f + n01(rng);
    UnlinkabilityOptions opt;
    opt.bins = 50;
    absl::StatusOr<Unlinkability> same = unlinkability(a, b, opt);
    absl::StatusOr<Unlinkability> apart = unlinkability(far, a, opt);
    ASSERT_TRUE(same.ok() && apart.ok());
    EXPECT_LT(same->d_sys, 0.02);
    EXPECT_GT(apart->d_sys, 0.999);
    // Partly overlapping: strictly between.
    std::vector<float> shifted(a);
    for (float& v : shifted) v += 1.f;
    absl::StatusOr<Unlinkability> mid = unlinkability(shifted, b, opt);
    ASSERT_TRUE(mid.ok());
    EXPECT_GT(mid->d_sys, 0.2);
    EXPECT_LT(mid->d_sys, 0.6);

    const std::vector<float> constant(10, 0.3f);
    absl::StatusOr<Unlinkability> flat = unlinkability(constant, constant, opt);
    ASSERT_TRUE(flat.ok());
    EXPECT_DOUBLE_EQ(flat->d_sys, 0.0);
    opt.bins = 0;
    EXPECT_TRUE(InvalidSaying(unlinkability(a, b, opt), "bins must be in [1, 2^24]"));
}

TEST(Identification, Rank1AndOpenSet) {
    const std::vector<int64_t> top1 = {5, 6, 9, 1, 2};
    const std::vector<int64_t> truth = {5, 6, 7, -1, -1};
    const std::vector<float> scores = {0.8f, 0.3f, 0.9f, 0.5f, 0.2f};
    absl::StatusOr<Identification> r = identification_rates(top1, truth, scores, 0.4);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->mated_probes, 3);
    EXPECT_EQ(r->nonmated_probes, 2);
    EXPECT_DOUBLE_EQ(r->rank1, 2.0 / 3);
    EXPECT_DOUBLE_EQ(r->dir, 1.0 / 3);  // probe 1 is right but below the threshold
    EXPECT_DOUBLE_EQ(r->fpir, 0.5);
    absl::StatusOr<Identification> closed = identification_rates(top1, truth);
    ASSERT_TRUE(closed.ok());
    EXPECT_DOUBLE_EQ(closed->rank1, 2.0 / 3);
    EXPECT_TRUE(std::isnan(closed->dir));
    EXPECT_TRUE(InvalidSaying(identification_rates(top1, std::vector<int64_t>{1, 2}), "top1 and truth differ in size"));
    EXPECT_TRUE(InvalidSaying(identification_rates(top1, truth, std::vector<float>{0.1f}),
                              "top1_scores and truth differ in size"));
}

TEST(Pairs, AllPairsFromLabels) {
    const std::vector<int64_t> labels = {0, 0, 1, 1, 1, -1, -1};
    absl::StatusOr<Pairs> p = all_pairs(labels);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->size(), 21);
    int64_t mated = 0;
    for (int64_t k = 0; k < p->size(); ++k) {
        ASSERT_LT(p->first[k], p->second[k]);
        const bool same = labels[p->first[k]] >= 0 && labels[p->first[k]] == labels[p->second[k]];
        EXPECT_EQ(p->is_mated[k] != 0, same);
        mated += p->is_mated[k];
    }
    EXPECT_EQ(mated, 4);  // (0,1), (2,3), (2,4), (3,4); the two -1 never mate

    PairScores s = score_pairs(*p, [&](int64_t i, int64_t j) { return static_cast<float>(10 * i + j); });
    EXPECT_EQ(s.mated.size(), 4u);
    EXPECT_EQ(s.nonmated.size(), 17u);
    EXPECT_EQ(s.mated[0], 1.f);

    absl::StatusOr<Pairs> few = all_pairs(labels, 5, 3);
    absl::StatusOr<Pairs> few_again = all_pairs(labels, 5, 3);
    ASSERT_TRUE(few.ok() && few_again.ok());
    EXPECT_EQ(few->size(), 9);
    EXPECT_EQ(few->first, few_again->first);
    EXPECT_EQ(few->second, few_again->second);
}

TEST(Pairs, SparseSampleIsDistinctAndNonMated) {
    std::vector<int64_t> labels(2000);
    for (int64_t i = 0; i < 2000; ++i) labels[i] = i / 4;
    absl::StatusOr<Pairs> p = all_pairs(labels, 3000, 11);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->size(), 500 * 6 + 3000);
    std::set<std::pair<int64_t, int64_t>> seen;
    int64_t nonmated = 0;
    for (int64_t k = 0; k < p->size(); ++k) {
        if (p->is_mated[k]) {
            EXPECT_EQ(labels[p->first[k]], labels[p->second[k]]);
            continue;
        }
        ++nonmated;
        EXPECT_NE(labels[p->first[k]], labels[p->second[k]]);
        EXPECT_TRUE(seen.insert({p->first[k], p->second[k]}).second);
    }
    EXPECT_EQ(nonmated, 3000);
}

TEST(Folds, Balanced) {
    const std::vector<int> f = assign_folds(103, 10, 5);
    ASSERT_EQ(f.size(), 103u);
    std::vector<int> count(10, 0);
    for (int v : f) ++count[v];
    for (int c : count) EXPECT_TRUE(c == 10 || c == 11);
    EXPECT_EQ(assign_folds(103, 10, 5), f);
}

TEST(OpenSet, ThresholdCalibratedOnNonmatedSearches) {
    // Ten non-mated searches; FPIR 0.1 allows one: the threshold sits just above the second
    // best (0.5), so 0.9 passes and 0.5 does not.
    const std::vector<float> nonmated = {0.3f, 0.9f, 0.5f, 0.4f, 0.2f, 0.1f, 0.05f, 0.0f, -0.1f, -0.2f};
    const std::vector<uint8_t> correct = {1, 1, 0, 1};
    const std::vector<float> best = {0.95f, 0.5f, 0.99f, 0.6f};
    absl::StatusOr<OpenSetPoint> p = open_set_at_fpir(correct, best, nonmated, 0.1);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_GT(p->threshold, 0.5);
    EXPECT_LT(p->threshold, 0.5 + 1e-6);
    EXPECT_EQ(p->allowed_false_positives, 1);
    EXPECT_EQ(p->false_positives, 1);
    EXPECT_DOUBLE_EQ(p->fpir, 0.1);
    EXPECT_DOUBLE_EQ(p->dir, 0.5);  // 0.95 and 0.6; 0.5 is below, 0.99 is the wrong identity
    EXPECT_TRUE(p->resolvable);
    EXPECT_EQ(p->mated_searches, 4);
    EXPECT_EQ(p->nonmated_searches, 10);

    // FPIR 0.05 of 10 searches allows none: not resolvable, only 0.95 is detected.
    p = open_set_at_fpir(correct, best, nonmated, 0.05);
    ASSERT_TRUE(p.ok());
    EXPECT_FALSE(p->resolvable);
    EXPECT_EQ(p->false_positives, 0);
    EXPECT_DOUBLE_EQ(p->dir, 0.25);

    // FPIR 1 accepts everything: DIR is rank-1.
    p = open_set_at_fpir(correct, best, nonmated, 1.0);
    ASSERT_TRUE(p.ok());
    EXPECT_DOUBLE_EQ(p->fpir, 1.0);
    EXPECT_DOUBLE_EQ(p->dir, 0.75);
}

TEST(OpenSet, TiesAtTheCutAreRefused) {
    // One false positive allowed, but the two best non-mated scores tie: both are refused.
    const std::vector<float> nonmated = {0.5f, 0.5f, 0.1f};
    absl::StatusOr<OpenSetPoint> p = open_set_at_fpir({}, {}, nonmated, 1.0 / 3);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->false_positives, 0);
    EXPECT_TRUE(std::isnan(p->dir));  // no mated searches
}

TEST(OpenSet, BadInput) {
    const std::vector<float> nonmated = {0.1f};
    EXPECT_TRUE(InvalidSaying(open_set_at_fpir({}, {}, {}, 0.1), "no non-mated search scores"));
    EXPECT_TRUE(InvalidSaying(open_set_at_fpir({}, {}, nonmated, 1.5), "not in [0, 1]"));
    const std::vector<uint8_t> c = {1};
    const std::vector<float> nan = {std::nanf("")};
    EXPECT_TRUE(InvalidSaying(open_set_at_fpir(c, {}, nonmated, 0.1), "differ in size"));
    EXPECT_TRUE(InvalidSaying(open_set_at_fpir(c, nan, nonmated, 0.1), "NaN"));
    EXPECT_TRUE(InvalidSaying(open_set_at_fpir({}, {}, nan, 0.1), "NaN"));
}

}  // namespace
}  // namespace pslerp
