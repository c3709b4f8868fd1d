// The protection scheme (plugin/): keys, slerp, drop policies, fill, importance, centring,
// and protect/match against the double-precision reference.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <string>

#include "plugin/params.h"
#include "tests/cpp/test_util.h"
#include "plugin/protect.h"
#include "plugin/reference.h"
#include "plugin/scheme.h"

namespace pslerp {
namespace {

using testing_util::random_features;

/// The status is InvalidArgument and its message contains `part`.
::testing::AssertionResult InvalidSaying(const absl::Status& st, const std::string& part) {
    if (st.code() != absl::StatusCode::kInvalidArgument) {
        return ::testing::AssertionFailure() << "expected InvalidArgument, got " << st;
    }
    if (std::string(st.message()).find(part) == std::string::npos) {
        return ::testing::AssertionFailure() << "'" << st.message() << "' does not contain '" << part << "'";
    }
    return ::testing::AssertionSuccess();
}

double group_norm(const float* v, int d) {
    double s = 0;
    for (int i = 0; i < d; ++i) s += double(v[i]) * v[i];
    return std::sqrt(s);
}

TEST(Keys, UnitNormAndFreshPerCall) {
    Params p = Params::defaults(4, 16);
    auto x = random_features(3, p.dim(), 1);
    RandomSource os;
    auto a = protect(p, x.data(), 3, os);
    auto b = protect(p, x.data(), 3, os);
    ASSERT_TRUE(a.ok() && b.ok());
    for (int64_t i = 0; i < 3 * p.groups; ++i) EXPECT_NEAR(group_norm(a->keys.data() + i * 16, 16), 1.0, 1e-5);
    EXPECT_NE(a->keys, b->keys) << "the OS generator gave the same keys twice";
    EXPECT_NE(std::vector<float>(a->keys.begin(), a->keys.begin() + 16),
              std::vector<float>(a->keys.begin() + 16, a->keys.begin() + 32));
}

TEST(Keys, SeededSourceIsReproducibleAndStreamsDiffer) {
    Params p = Params::defaults(2, 8);
    auto x = random_features(2, p.dim(), 2);
    auto a = protect(p, x.data(), 2, RandomSource(7));
    auto b = protect(p, x.data(), 2, RandomSource(7));
    auto c = protect(p, x.data(), 2, RandomSource(8));
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    EXPECT_EQ(a->keys, b->keys);
    EXPECT_EQ(a->masks, b->masks);
    EXPECT_NE(a->keys, c->keys);
}

TEST(Keys, SharedModeStoresOneKeyPerEntry) {
    Params p = Params::defaults(4, 8);
    p.key_mode = KeyMode::kShared;
    auto x = random_features(5, p.dim(), 3);
    auto r = protect(p, x.data(), 5, RandomSource(1));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->keys.size(), 5u * 8u);
}

TEST(Slerp, EndpointsAndSphere) {
    Params p = Params::defaults(3, 16);
    p.drop = DropPolicy::kNone;
    auto x = random_features(1, p.dim(), 4);
    std::vector<float> xn(p.dim());
    ASSERT_TRUE(normalize_groups(p, x.data(), 1, xn.data()).ok());
    p.t = 0.0f;
    auto r0 = protect(p, x.data(), 1, RandomSource(3));
    ASSERT_TRUE(r0.ok());
    for (int i = 0; i < p.dim(); ++i) EXPECT_NEAR(r0->templates[i], xn[i], 1e-6);
    p.t = 1.0f;
    auto r1 = protect(p, x.data(), 1, RandomSource(3));
    ASSERT_TRUE(r1.ok());
    for (int i = 0; i < p.dim(); ++i) EXPECT_NEAR(r1->templates[i], r1->keys[i], 1e-6);
    p.t = 0.37f;
    auto rm = protect(p, x.data(), 1, RandomSource(3));
    ASSERT_TRUE(rm.ok());
    for (int g = 0; g < p.groups; ++g) {
        EXPECT_NEAR(group_norm(rm->templates.data() + g * 16, 16), 1.0, 1e-5);
        // The angle to x is t times the angle between x and k.
        double cxk = 0, cxr = 0;
        for (int i = 0; i < 16; ++i) {
            cxk += double(xn[g * 16 + i]) * rm->keys[g * 16 + i];
            cxr += double(xn[g * 16 + i]) * rm->templates[g * 16 + i];
        }
        EXPECT_NEAR(std::acos(std::clamp(cxr, -1.0, 1.0)), 0.37 * std::acos(cxk), 1e-4);
    }
}

TEST(Slerp, GuardsAtZeroAndPi) {
    const auto near0 = slerp_coefficients(1.0, 0.3);
    EXPECT_DOUBLE_EQ(near0.a, 0.7);
    EXPECT_DOUBLE_EQ(near0.b, 0.3);
    EXPECT_FALSE(near0.clamped);
    // At c = -1 the arc is undefined: the cosine is clamped to kAntipodalCos = -0.99, so the
    // coefficients are those of theta = acos(-0.99). At t = 1/2 they have a closed form,
    // a = b = sin(theta/2) / sin(theta) = 1 / (2 cos(theta/2)) = 1 / sqrt(2 (1 + c)) = sqrt(50);
    // at t = 0.3 the values were computed separately (Python's math: sin(0.7 acos(-0.99)) /
    // sin(acos(-0.99)) and sin(0.3 acos(-0.99)) / sin(acos(-0.99))).
    const auto half = slerp_coefficients(-1.0, 0.5);
    EXPECT_TRUE(half.clamped);
    EXPECT_NEAR(half.a, std::sqrt(50.0), 1e-12);
    EXPECT_NEAR(half.b, std::sqrt(50.0), 1e-12);
    const auto pi = slerp_coefficients(-1.0, 0.3);
    EXPECT_TRUE(pi.clamped);
    EXPECT_NEAR(pi.a, 6.118995732252597, 1e-12);
    EXPECT_NEAR(pi.b, 5.552927536687797, 1e-12);
    // a x + b k stays on the sphere for unit x, k of cosine -0.99 (the clamped cosine).
    EXPECT_NEAR(pi.a * pi.a + pi.b * pi.b + 2 * pi.a * pi.b * kAntipodalCos, 1.0, 1e-12);
    // Clamping changes only the cosine: the same as asking for -0.99 itself, which is not clamped.
    const auto at_guard = slerp_coefficients(kAntipodalCos, 0.3);
    EXPECT_FALSE(at_guard.clamped);
    EXPECT_DOUBLE_EQ(at_guard.a, pi.a);
    EXPECT_DOUBLE_EQ(at_guard.b, pi.b);
    EXPECT_TRUE(slerp_coefficients(-0.995, 0.3).clamped);
    // The endpoints stay exact when clamped.
    const auto t0 = slerp_coefficients(-1.0, 0.0), t1 = slerp_coefficients(-1.0, 1.0);
    EXPECT_DOUBLE_EQ(t0.a, 1.0);
    EXPECT_DOUBLE_EQ(t0.b, 0.0);
    EXPECT_DOUBLE_EQ(t1.a, 0.0);
    EXPECT_DOUBLE_EQ(t1.b, 1.0);
}

TEST(Slerp, AntipodalKeyIsResampledAtEnrolment) {
    // protect() with a seeded source draws the keys generate_keys() gives for that seed. Make
    // group 1 of the feature exactly opposite its first key: the enrolment must redraw that key
    // (and only that one), from the same stream, and count it.
    Params p = Params::defaults(2, 4);
    p.drop = DropPolicy::kNone;
    const RandomSource source(5);
    const std::vector<float> first = generate_keys(p, 1, source);
    // The stream as protect() reads it: group 0's key, group 1's key, then the redraw.
    std::vector<float> drawn(3 * 4);
    auto stream = source.stream(0);
    for (int k = 0; k < 3; ++k) draw_key(4, *stream, drawn.data() + k * 4);
    ASSERT_EQ(std::vector<float>(drawn.begin(), drawn.begin() + 8), first);
    std::vector<float> x = {1, 2, 3, 4, 0, 0, 0, 0};
    for (int j = 0; j < 4; ++j) x[4 + j] = -first[4 + j];
    double redraw_cos = 0;
    for (int j = 0; j < 4; ++j) redraw_cos += -double(first[4 + j]) * drawn[8 + j];
    ASSERT_GE(redraw_cos, kAntipodalCos) << "the redrawn key must not be antipodal again for this seed";

    auto r = protect(p, x.data(), 1, source);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->resampled_keys, 1);
    EXPECT_EQ(std::vector<float>(r->keys.begin(), r->keys.begin() + 4),
              std::vector<float>(first.begin(), first.begin() + 4));
    EXPECT_EQ(std::vector<float>(r->keys.begin() + 4, r->keys.end()),
              std::vector<float>(drawn.begin() + 8, drawn.end()));
    const auto ref = reference::protect_one(p, x.data(), r->keys.data(), r->masks.data(), r->importance.data());
    for (int j = 0; j < p.dim(); ++j) EXPECT_NEAR(r->templates[j], ref[j], 1e-6) << j;

    // A redrawn key that is antipodal again is redrawn again. In d = 2 a random key is within 8
    // degrees of antipodal with probability 8.1 / 180, so a seed whose first redraw is antipodal
    // again is found within the first few hundred.
    Params p2 = Params::defaults(1, 2);
    p2.drop = DropPolicy::kNone;
    bool found = false;
    for (uint64_t seed = 1; seed < 5000 && !found; ++seed) {
        const RandomSource s2(seed);
        std::vector<float> k(3 * 2);
        auto st = s2.stream(0);
        for (int i = 0; i < 3; ++i) draw_key(2, *st, k.data() + i * 2);
        const std::vector<float> x2 = {-k[0], -k[1]};
        auto cos_with = [&](int i) { return double(x2[0]) * k[2 * i] + double(x2[1]) * k[2 * i + 1]; };
        if (!(cos_with(1) < kAntipodalCos && cos_with(2) >= kAntipodalCos)) continue;
        found = true;
        auto r2 = protect(p2, x2.data(), 1, s2);
        ASSERT_TRUE(r2.ok()) << r2.status();
        EXPECT_EQ(r2->resampled_keys, 2) << "seed " << seed;
        EXPECT_EQ(r2->keys, std::vector<float>(k.begin() + 4, k.end())) << "seed " << seed;
    }
    EXPECT_TRUE(found);

    // A shared key is redrawn while any group is antipodal to it.
    Params shared = p;
    shared.key_mode = KeyMode::kShared;
    const std::vector<float> key = generate_keys(shared, 1, source);
    std::vector<float> xs = {1, 2, 3, 4, -key[0], -key[1], -key[2], -key[3]};
    auto rs = protect(shared, xs.data(), 1, source);
    ASSERT_TRUE(rs.ok()) << rs.status();
    EXPECT_EQ(rs->resampled_keys, 1);
    EXPECT_NE(rs->keys, key);
    double cs = 0;
    for (int j = 0; j < 4; ++j) cs += double(xs[4 + j]) * rs->keys[j];
    EXPECT_GE(cs, kAntipodalCos);

    // Keys the caller gives are kept, never redrawn: matching and enrolment clamp the cosine.
    ProtectInputs in;
    in.keys = first.data();
    auto given = protect(p, x.data(), 1, source, in);
    ASSERT_TRUE(given.ok());
    EXPECT_EQ(given->resampled_keys, 0);
    EXPECT_EQ(given->keys, first);
    // Group 1 (x = -k) is slerped with the clamped coefficients: a (-k) + b k = (b - a) k, and at
    // t = 0.7 b = 6.119 > a = 5.553 (GuardsAtZeroAndPi's t = 0.3 values, swapped), so the
    // normalised group is k itself.
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(given->templates[4 + j], first[4 + j], 1e-6) << j;
}

TEST(Drop, RandomCountsDistinctAndWithReplacement) {
    Params p = Params::defaults(6, 16);
    p.drop_count = 5;
    auto x = random_features(20, p.dim(), 5);
    auto r = protect(p, x.data(), 20, RandomSource(2));
    ASSERT_TRUE(r.ok());
    for (int64_t i = 0; i < 20 * 6; ++i) {
        const int kept = std::accumulate(r->masks.begin() + i * 16, r->masks.begin() + (i + 1) * 16, 0);
        EXPECT_EQ(kept, 11);
    }
    p.drop_with_replacement = true;
    p.drop_count = 12;
    auto w = protect(p, x.data(), 20, RandomSource(2));
    ASSERT_TRUE(w.ok());
    double mean_dropped = 0;
    for (int64_t i = 0; i < 20 * 6; ++i) {
        const int kept = std::accumulate(w->masks.begin() + i * 16, w->masks.begin() + (i + 1) * 16, 0);
        EXPECT_GE(kept, 4);
        EXPECT_LE(kept, 15);
        mean_dropped += 16 - kept;
    }
    // 12 draws with replacement from 16 leave 16 (1 - (15/16)^12) = 8.6 distinct on average.
    EXPECT_NEAR(mean_dropped / 120, 8.6, 0.6);
}

TEST(Drop, ImportanceMappingsAreMonotone) {
    Params p = Params::defaults(8, 16);
    p.drop = DropPolicy::kImportance;
    const std::vector<float> w = {0.02f, 0.05f, 0.08f, 0.1f, 0.12f, 0.15f, 0.18f, 0.30f};
    for (DropMapping m : {DropMapping::kFunction, DropMapping::kIntervals, DropMapping::kBudget}) {
        p.mapping = m;
        ASSERT_TRUE(p.validate().ok());
        std::vector<int> c(8);
        drop_counts(p, w.data(), c.data());
        for (int g = 1; g < 8; ++g) EXPECT_LE(c[g], c[g - 1]) << "mapping " << int(m) << " group " << g;
        EXPECT_GT(c[0], c[7]) << "mapping " << int(m);
        if (m == DropMapping::kBudget) EXPECT_EQ(std::accumulate(c.begin(), c.end(), 0), p.drop_count * 8);
        if (m == DropMapping::kFunction) {
            EXPECT_EQ(c[0], p.drop_max);
            EXPECT_EQ(c[7], p.drop_min);
        }
    }
}

// Known answers for drop_counts(). Each expected vector was worked out by hand from the rule
// the comment states (not by running the code); tests/python/test_scheme_numpy.py checks the
// same rules against an independent numpy version on random weights.
std::vector<int> counts_for(const Params& p, const std::vector<float>& w) {
    EXPECT_TRUE(p.validate().ok()) << p.validate();
    std::vector<int> c(w.size(), -1);
    drop_counts(p, w.data(), c.data());
    return c;
}

TEST(Drop, SlerpfacePresetUsesMedianSplit) {
    // The reference (enrollment.py): median = np.median(maps); groups with maps < median draw
    // 16 * 0.5 + 4 = 12 coordinates, the others (maps >= median) 16 * 0.5 - 4 = 4.
    Params p = Params::slerpface(5, 16);
    // Odd G: the middle value, 0.2. Below it: 0.1 and 0.15.
    EXPECT_EQ(counts_for(p, {0.1f, 0.3f, 0.2f, 0.15f, 0.25f}), (std::vector<int>{12, 4, 4, 12, 4}));
    // Odd G with ties at the median (0.2): equal to the median is not below it.
    EXPECT_EQ(counts_for(p, {0.2f, 0.1f, 0.2f, 0.3f, 0.2f}), (std::vector<int>{4, 12, 4, 4, 4}));
    EXPECT_FLOAT_EQ(p.t, 0.9f);
    EXPECT_TRUE(p.t_minus_importance);
    EXPECT_EQ(p.weighting, Weighting::kImportance);
    std::vector<float> t(5);
    group_t(p, std::vector<float>{0.1f, 0.3f, 0.2f, 0.15f, 0.25f}.data(), t.data());
    EXPECT_FLOAT_EQ(t[1], 0.6f);
}

TEST(Drop, EvenGroupsUseTheMeanOfTheTwoMiddleValues) {
    // Issue 16: with 8 groups the reference draws 12 in 4 groups. Sorted weights 0.04 0.07 0.09
    // 0.10 | 0.13 0.16 0.19 0.22: np.median = (0.10 + 0.13) / 2 = 0.115, so 0.04, 0.07, 0.09 and
    // 0.10 (groups 1, 4, 7, 2) are below it. The lower median (0.10) would give 12 in 3 groups.
    Params p = Params::slerpface(8, 16);
    EXPECT_EQ(counts_for(p, {0.16f, 0.04f, 0.10f, 0.22f, 0.07f, 0.13f, 0.19f, 0.09f}),
              (std::vector<int>{4, 12, 12, 4, 12, 4, 4, 12}));
    // Ties across the middle: 0.1 0.1 | 0.4 0.4, median 0.25 (the lower median would put no
    // group below it). Ties at the middle: 0.1 0.2 | 0.2 0.3, median 0.2, and 0.2 is not below.
    Params p4 = Params::slerpface(4, 16);
    EXPECT_EQ(counts_for(p4, {0.1f, 0.1f, 0.4f, 0.4f}), (std::vector<int>{12, 12, 4, 4}));
    EXPECT_EQ(counts_for(p4, {0.3f, 0.2f, 0.2f, 0.1f}), (std::vector<int>{4, 4, 4, 12}));
    EXPECT_EQ(counts_for(p4, {0.25f, 0.25f, 0.25f, 0.25f}), (std::vector<int>{4, 4, 4, 4}));
    // Two groups: the median is their mean, 0.5.
    EXPECT_EQ(counts_for(Params::slerpface(2, 16), {0.7f, 0.3f}), (std::vector<int>{4, 12}));

    // With the single bound 1 any value strictly between the two middle ones splits alike; more
    // bounds tell the mean from either middle value. Sorted 0.05 0.10 0.15 | 0.19 0.21 0.30:
    // median 0.17; ratios w / 0.17 = 1.765, 0.588, 1.118, 1.235, 0.294, 0.882; bounds 0.5 0.9 1
    // 1.15 1.5 -> counts 11 9 7 5 3 1 by interval. (Upper median 0.19 gives group 3 ratio 1.105
    // -> 5; lower median 0.15 gives groups 2, 5 ratios 1.267, 1.0 -> 3, 5.)
    Params q = Params::slerpface(6, 16);
    q.interval_bounds = {0.5f, 0.9f, 1.0f, 1.15f, 1.5f};
    q.interval_counts = {11, 9, 7, 5, 3, 1};
    EXPECT_EQ(counts_for(q, {0.30f, 0.10f, 0.19f, 0.21f, 0.05f, 0.15f}), (std::vector<int>{1, 9, 5, 3, 11, 9}));
}

TEST(Drop, IntervalsWithoutMedianUseOneOverG) {
    // intervals_by_median = false: ratio = w_g * G. G = 5: ratios 0.25, 0.6, 0.75, 1.4, 2.0 against
    // bounds 0.5 1 1.5 -> 7 5 5 3 1. (By the median 0.15 they would be 7 5 3 1 1.)
    Params p = Params::defaults(5, 16);
    p.drop = DropPolicy::kImportance;
    p.mapping = DropMapping::kIntervals;
    p.intervals_by_median = false;
    p.interval_bounds = {0.5f, 1.0f, 1.5f};
    p.interval_counts = {7, 5, 3, 1};
    const std::vector<float> w = {0.05f, 0.12f, 0.15f, 0.28f, 0.40f};
    EXPECT_EQ(counts_for(p, w), (std::vector<int>{7, 5, 5, 3, 1}));
    p.intervals_by_median = true;
    EXPECT_EQ(counts_for(p, w), (std::vector<int>{7, 5, 3, 1, 1}));
    // The defaults (bound 1, counts 6 and 2) with uniform importance: every ratio is exactly 1.
    Params d = Params::defaults(4, 16);
    d.drop = DropPolicy::kImportance;
    d.mapping = DropMapping::kIntervals;
    d.intervals_by_median = false;
    EXPECT_EQ(counts_for(d, {0.25f, 0.25f, 0.25f, 0.25f}), (std::vector<int>{2, 2, 2, 2}));
    EXPECT_EQ(counts_for(d, {0.1f, 0.25f, 0.4f, 0.25f}), (std::vector<int>{6, 2, 2, 2}));
}

TEST(Drop, FunctionMappingRoundsHalfAwayFromZero) {
    // count = round(drop_max - r (drop_max - drop_min)), r = (w - min w) / (max w - min w). With
    // min 0, max 1 and dyadic weights r = w exactly, and 8 - 7 r = 8, 1, 4.5, 6.25, 2.75, 7.125,
    // 5.375, 1.875 -> 8 1 5 6 3 7 5 2 (4.5 rounds up; truncation would give 4, and 2, 1 below).
    Params p = Params::defaults(8, 16);
    p.drop = DropPolicy::kImportance;
    p.mapping = DropMapping::kFunction;
    ASSERT_EQ(p.drop_min, 1);
    ASSERT_EQ(p.drop_max, 8);
    EXPECT_EQ(counts_for(p, {0.0f, 1.0f, 0.5f, 0.25f, 0.75f, 0.125f, 0.375f, 0.875f}),
              (std::vector<int>{8, 1, 5, 6, 3, 7, 5, 2}));
    // Scale does not matter (r is relative): the same weights / 4.
    EXPECT_EQ(counts_for(p, {0.0f, 0.25f, 0.125f, 0.0625f, 0.1875f, 0.03125f, 0.09375f, 0.21875f}),
              (std::vector<int>{8, 1, 5, 6, 3, 7, 5, 2}));
    // Equal weights: r = 1/2 -> 4.5 -> 5. Another range: drop_min 2, drop_max 11, r = 0, 1/3 (8), 1.
    EXPECT_EQ(counts_for(p, std::vector<float>(8, 0.125f)), std::vector<int>(8, 5));
    Params q = Params::defaults(3, 16);
    q.drop = DropPolicy::kImportance;
    q.drop_min = 2;
    q.drop_max = 11;
    EXPECT_EQ(counts_for(q, {0.5f, 0.2f, 0.3f}), (std::vector<int>{2, 11, 8}));
}

TEST(Drop, BudgetMappingPassesWhatTheCapRefusesOn) {
    // Budget drop_count * G = 8 over G = 4 in proportion to 1 / (w + 1e-6): w = 0.01, 0.49, 0.25,
    // 0.25 -> shares 99.99, 2.041, 4.000, 4.000 of 110.03 -> exact 7.270, 0.148, 0.291, 0.291.
    // Uncapped (with replacement): floors 7 0 0 0, one left for the largest remainder (0.291,
    // group 2 before its tie group 3) -> 7 0 1 0.
    Params p = Params::defaults(4, 4);
    p.drop = DropPolicy::kImportance;
    p.mapping = DropMapping::kBudget;
    p.drop_count = 2;
    const std::vector<float> w = {0.01f, 0.49f, 0.25f, 0.25f};
    p.drop_with_replacement = true;
    EXPECT_EQ(counts_for(p, w), (std::vector<int>{7, 0, 1, 0}));
    // Distinct draws, d = 4: at most d - 1 = 3. Group 0 gets 3 (remainder 4.27, but it is full);
    // 5 are left, dealt by remainder order 0 (full), 2, 3, 1, round after round: 1 1 1, then 2 2.
    p.drop_with_replacement = false;
    EXPECT_EQ(counts_for(p, w), (std::vector<int>{3, 1, 2, 2}));
    // Every group at the cap: G (d - 1) = 12 draws is the most a budget can ask for.
    p.drop_count = 3;
    EXPECT_EQ(counts_for(p, w), (std::vector<int>{3, 3, 3, 3}));
    // Uniform importance shares evenly.
    p.drop_count = 2;
    EXPECT_EQ(counts_for(p, {0.25f, 0.25f, 0.25f, 0.25f}), (std::vector<int>{2, 2, 2, 2}));
}

TEST(Drop, RandomAndNoneIgnoreImportance) {
    Params p = Params::defaults(3, 16);
    p.drop_count = 4;
    EXPECT_EQ(counts_for(p, {0.7f, 0.2f, 0.1f}), (std::vector<int>{4, 4, 4}));
    p.drop = DropPolicy::kNone;
    EXPECT_EQ(counts_for(p, {0.7f, 0.2f, 0.1f}), (std::vector<int>{0, 0, 0}));
}

TEST(Fill, ZeroAndRandom) {
    Params p = Params::defaults(4, 16);
    auto x = random_features(4, p.dim(), 6);
    auto z = protect(p, x.data(), 4, RandomSource(4));
    p.fill = Fill::kRandom;
    auto r = protect(p, x.data(), 4, RandomSource(4));
    ASSERT_TRUE(z.ok() && r.ok());
    int dropped = 0, nonzero_fill = 0;
    for (size_t i = 0; i < z->masks.size(); ++i) {
        if (z->masks[i]) continue;
        ++dropped;
        EXPECT_EQ(z->templates[i], 0.0f);
        nonzero_fill += r->templates[i] != 0.0f;
    }
    EXPECT_EQ(dropped, 4 * 4 * p.drop_count);
    EXPECT_EQ(nonzero_fill, dropped);
}

TEST(Importance, ProvidersGiveWeightsThatSumToOne) {
    Params p = Params::defaults(6, 8);
    auto x = random_features(1, p.dim(), 7);
    std::vector<float> xn(p.dim()), w(6);
    ASSERT_TRUE(normalize_groups(p, x.data(), 1, xn.data()).ok());
    for (ImportanceKind k : {ImportanceKind::kUniform, ImportanceKind::kFixed, ImportanceKind::kSelfAttention}) {
        p.importance = k;
        p.importance_weights = {1, 2, 3, 4, 5, 6};
        compute_importance(p, xn.data(), w.data());
        double s = 0;
        for (float v : w) {
            EXPECT_GE(v, 0.0f);
            s += v;
        }
        EXPECT_NEAR(s, 1.0, 1e-6);
        const auto ref = reference::importance(p, x.data());
        for (int g = 0; g < 6; ++g) EXPECT_NEAR(w[g], ref[g], 1e-6);
    }
    p.importance = ImportanceKind::kFixed;
    compute_importance(p, xn.data(), w.data());
    EXPECT_NEAR(w[5], 6.0 / 21.0, 1e-6);
}

TEST(Importance, SelfAttentionFavoursGroupsThatAgree) {
    Params p = Params::defaults(4, 4);
    p.importance = ImportanceKind::kSelfAttention;
    p.attention_temperature = 0.1f;
    // Three groups point the same way, one is opposite: the odd one receives less attention.
    const std::vector<float> x = {1, 0, 0, 0, 1, 0.1f, 0, 0, 1, 0, 0.1f, 0, -1, 0, 0, 0};
    std::vector<float> xn(16), w(4);
    ASSERT_TRUE(normalize_groups(p, x.data(), 1, xn.data()).ok());
    compute_importance(p, xn.data(), w.data());
    EXPECT_LT(w[3], w[0]);
}

struct SchemeCase {
    const char* name;
    Params params;
};

std::vector<SchemeCase> scheme_cases() {
    Params shared = Params::defaults(5, 7);
    shared.key_mode = KeyMode::kShared;
    Params random_fill = Params::defaults(3, 16);
    random_fill.fill = Fill::kRandom;
    Params budget = Params::defaults(9, 16);
    budget.drop = DropPolicy::kImportance;
    budget.mapping = DropMapping::kBudget;
    budget.importance = ImportanceKind::kSelfAttention;
    budget.weighting = Weighting::kImportance;
    return {{"defaults", Params::defaults(8, 16)},
            {"odd", Params::defaults(3, 5)},
            {"shared", shared},
            {"random_fill", random_fill},
            {"budget", budget},
            {"slerpface", Params::slerpface(11, 16)}};
}

TEST(Reference, ProtectAndMatchAgree) {
    for (const auto& c : scheme_cases()) {
        SCOPED_TRACE(c.name);
        const Params& p = c.params;
        const int64_t n = 7;
        auto x = random_features(n, p.dim(), 8);
        auto q = random_features(n, p.dim(), 9);
        auto pr = protect(p, x.data(), n, RandomSource(11));
        ASSERT_TRUE(pr.ok()) << pr.status();
        for (int64_t i = 0; i < n; ++i) {
            const auto ref = reference::protect_one(p, x.data() + i * p.dim(), pr->keys.data() + i * p.key_dim(),
                                                    pr->masks.data() + i * p.dim(), pr->importance.data() + i * p.groups);
            for (int j = 0; j < p.dim(); ++j) {
                if (pr->masks[i * p.dim() + j]) EXPECT_NEAR(pr->templates[i * p.dim() + j], ref[j], 1e-6);
            }
        }
        auto scores = match_all(p, q.data(), n, pr->templates.data(), pr->keys.data(), pr->masks.data(),
                                pr->weights.data(), n);
        ASSERT_TRUE(scores.ok());
        for (int64_t i = 0; i < n; ++i) {
            for (int64_t j = 0; j < n; ++j) {
                const double ref = reference::match_one(p, q.data() + i * p.dim(), pr->templates.data() + j * p.dim(),
                                                        pr->keys.data() + j * p.key_dim(),
                                                        pr->masks.data() + j * p.dim(), pr->weights.data() + j * p.groups);
                EXPECT_NEAR((*scores)[i * n + j], ref, 1e-5);
            }
        }
    }
}

TEST(Protect, GivenKeysAndMasksMakeItDeterministic) {
    Params p = Params::defaults(4, 16);
    auto x = random_features(3, p.dim(), 10);
    auto a = protect(p, x.data(), 3, RandomSource());
    ASSERT_TRUE(a.ok());
    ProtectInputs in;
    in.keys = a->keys.data();
    in.masks = a->masks.data();
    auto b = protect(p, x.data(), 3, RandomSource(), in);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(a->templates, b->templates);
}

TEST(Protect, MatedProbeScoresAboveOthers) {
    Params p = Params::defaults(8, 16);
    auto x = random_features(50, p.dim(), 12);
    auto pr = protect(p, x.data(), 50, RandomSource(5));
    ASSERT_TRUE(pr.ok());
    auto s = match_all(p, x.data(), 50, pr->templates.data(), pr->keys.data(), pr->masks.data(), pr->weights.data(), 50);
    ASSERT_TRUE(s.ok());
    for (int i = 0; i < 50; ++i) {
        for (int j = 0; j < 50; ++j) {
            if (i != j) EXPECT_GT((*s)[i * 50 + i], (*s)[i * 50 + j]);
        }
    }
}

TEST(Protect, BadInputsGiveClearErrors) {
    Params p = Params::defaults(2, 8);
    std::vector<float> x(16, 1.0f);
    x[3] = std::nanf("");
    auto r = protect(p, x.data(), 1, RandomSource(1));
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("NaN"), std::string::npos);
    std::vector<float> z(16, 1.0f);
    std::fill(z.begin() + 8, z.end(), 0.0f);
    r = protect(p, z.data(), 1, RandomSource(1));
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("zero norm"), std::string::npos);
    std::vector<uint8_t> masks(16, 1);
    std::fill(masks.begin() + 8, masks.end(), 0);
    ProtectInputs in;
    in.masks = masks.data();
    std::vector<float> ok(16, 1.0f);
    EXPECT_TRUE(InvalidSaying(protect(p, ok.data(), 1, RandomSource(1), in).status(),
                              "masks: entry 0 group 1 keeps no coordinate"));
    std::vector<float> keys(16, 2.0f);
    in = {};
    in.keys = keys.data();
    EXPECT_TRUE(InvalidSaying(protect(p, ok.data(), 1, RandomSource(1), in).status(),
                              "keys: entry 0 group 0 is not unit-norm"));
}

TEST(Params, ValidationAndOptions) {
    Params p;
    EXPECT_TRUE(p.validate().ok());
    p.t = 1.5f;
    EXPECT_TRUE(InvalidSaying(p.validate(), "t must be in [0, 1], got 1.5"));
    p = Params::defaults(8, 16);
    p.drop_count = 16;
    EXPECT_TRUE(InvalidSaying(p.validate(), "drop_count = 16: a group of 16 keeps at least one coordinate"));
    p = Params::defaults(8, 16);
    EXPECT_TRUE(p.set("t", "0.8").ok());
    EXPECT_FLOAT_EQ(p.t, 0.8f);
    EXPECT_TRUE(p.set("drop", "importance").ok());
    EXPECT_TRUE(p.set("mapping", "budget").ok());
    EXPECT_TRUE(InvalidSaying(p.set("drop", "sometimes"),
                              "option drop: expected one of none|random|importance, got 'sometimes'"));
    EXPECT_TRUE(InvalidSaying(p.set("colour", "red"), "unknown option 'colour'"));
    EXPECT_TRUE(p.set("preset", "slerpface").ok());
    EXPECT_EQ(p.groups, 8);
    EXPECT_TRUE(p.t_minus_importance);
    p.importance = ImportanceKind::kFixed;
    EXPECT_TRUE(InvalidSaying(p.validate(), "fixed importance needs 8 weights, got 0"));
}

TEST(Params, PresetsValidate) {
    for (int G : {1, 2, 7, 8, 9, 49, 64}) {
        for (int d : {2, 3, 4, 16, 32}) {
            Params p = Params::slerpface(G, d);  // 12 draws with replacement, whatever d is
            EXPECT_TRUE(p.validate().ok()) << G << "x" << d << ": " << p.validate();
        }
    }
    for (int d : {8, 16, 64}) EXPECT_TRUE(Params::defaults(8, d).validate().ok()) << d;
}

TEST(Params, CountsAreBoundedSoThatAddTerminates) {
    // With replacement, draws are bounded by a multiple of d (the reference's 12 at d = 16 is
    // well inside); without, by d - 1.
    Params p = Params::defaults(8, 16);
    p.drop_with_replacement = true;
    p.drop_count = 12;
    EXPECT_TRUE(p.validate().ok());
    p.drop_count = 2000000000;
    EXPECT_FALSE(p.validate().ok());
    EXPECT_NE(std::string(p.validate().message()).find("drop_count"), std::string::npos) << p.validate();
    p.drop_count = -1;
    EXPECT_FALSE(p.validate().ok());
    for (DropMapping m : {DropMapping::kFunction, DropMapping::kIntervals, DropMapping::kBudget}) {
        Params q = Params::slerpface(8, 16);
        q.mapping = m;
        EXPECT_TRUE(q.validate().ok()) << q.validate();
        q.drop_count = q.drop_max = 1 << 30;
        q.interval_counts = {1 << 30, 2};
        EXPECT_FALSE(q.validate().ok()) << int(m);
    }
    // Counts of a policy not in use are still range-checked.
    p = Params::defaults(8, 16);
    p.drop = DropPolicy::kNone;
    p.drop_count = 2000000000;
    EXPECT_FALSE(p.validate().ok());
    p = Params::defaults(8, 16);
    p.interval_counts = {-3, 2};
    EXPECT_FALSE(p.validate().ok());
}

TEST(Params, NumbersAreFiniteAndInRange) {
    auto invalid = [](auto&& edit) {
        Params p = Params::slerpface(6, 4);
        edit(p);
        return !p.validate().ok();
    };
    EXPECT_FALSE(invalid([](Params&) {}));
    EXPECT_TRUE(invalid([](Params& p) { p.t = NAN; }));
    EXPECT_TRUE(invalid([](Params& p) { p.t = INFINITY; }));
    EXPECT_TRUE(invalid([](Params& p) { p.attention_temperature = INFINITY; }));
    EXPECT_TRUE(invalid([](Params& p) { p.attention_temperature = NAN; }));
    EXPECT_TRUE(invalid([](Params& p) { p.attention_temperature = 0.0f; }));
    EXPECT_TRUE(invalid([](Params& p) { p.attention_wq.assign(16, NAN); }));
    EXPECT_TRUE(invalid([](Params& p) { p.attention_wk.assign(16, INFINITY); }));
    EXPECT_TRUE(invalid([](Params& p) { p.attention_wk.assign(15, 1.0f); }));
    EXPECT_FALSE(invalid([](Params& p) { p.attention_wq.assign(16, 0.5f); }));
    EXPECT_TRUE(invalid([](Params& p) { p.interval_bounds = {NAN}; }));
    EXPECT_TRUE(invalid([](Params& p) { p.interval_bounds = {INFINITY}; }));
    EXPECT_TRUE(invalid([](Params& p) {
        p.importance = ImportanceKind::kFixed;
        p.importance_weights = {1, 1, 1, 1, 1, INFINITY};
    }));
    EXPECT_TRUE(invalid([](Params& p) {
        p.importance = ImportanceKind::kFixed;
        p.importance_weights = {1, 1, 1, 1, 1, -1};
    }));
    // Enums from outside (a binding, a cast) are checked too.
    EXPECT_TRUE(invalid([](Params& p) { p.key_mode = static_cast<KeyMode>(7); }));
    EXPECT_TRUE(invalid([](Params& p) { p.drop = static_cast<DropPolicy>(7); }));
    EXPECT_TRUE(invalid([](Params& p) { p.mapping = static_cast<DropMapping>(7); }));
    EXPECT_TRUE(invalid([](Params& p) { p.fill = static_cast<Fill>(7); }));
    EXPECT_TRUE(invalid([](Params& p) { p.importance = static_cast<ImportanceKind>(7); }));
    EXPECT_TRUE(invalid([](Params& p) { p.weighting = static_cast<Weighting>(7); }));
    // Self-attention builds a G x G matrix per sample: G is bounded.
    Params big = Params::slerpface(100000, 2);
    EXPECT_FALSE(big.validate().ok());
    big.importance = ImportanceKind::kUniform;
    EXPECT_TRUE(big.validate().ok()) << big.validate();
}

TEST(Centering, MeanAndPcaRotation) {
    const int D = 8, G = 2;
    auto x = random_features(500, D, 13);
    for (int i = 0; i < 500; ++i) {
        for (int j = 0; j < D; ++j) x[i * D + j] += 3.0f + (j == 0 ? 2.0f * x[i * D + 1] : 0.0f);
    }
    auto c = Centering::fit(x.data(), 500, D, G, true);
    ASSERT_TRUE(c.ok());
    std::vector<float> y(500 * D);
    c->apply(x.data(), 500, D, y.data());
    for (int j = 0; j < D; ++j) {
        double m = 0;
        for (int i = 0; i < 500; ++i) m += y[i * D + j];
        EXPECT_NEAR(m / 500, 0.0, 1e-4);
    }
    // Rows of the rotation are orthonormal.
    for (int a = 0; a < D; ++a) {
        for (int b = 0; b < D; ++b) {
            double s = 0;
            for (int j = 0; j < D; ++j) s += double(c->rotation[a * D + j]) * c->rotation[b * D + j];
            EXPECT_NEAR(s, a == b ? 1.0 : 0.0, 1e-5);
        }
    }
    // The largest component goes to group 0, the second to group 1.
    double v0 = 0, v1 = 0;
    for (int i = 0; i < 500; ++i) {
        v0 += double(y[i * D]) * y[i * D];
        v1 += double(y[i * D + 4]) * y[i * D + 4];
    }
    EXPECT_GT(v0, v1);
    EXPECT_FALSE(Centering::fit(x.data(), 1, D, G, false).ok());
}

}  // namespace
}  // namespace pslerp
