// The protection scheme (plugin/): keys, slerp, drop policies, fill, importance, centring,
// and protect/match against the double-precision reference.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <set>

#include "plugin/params.h"
#include "tests/cpp/test_util.h"
#include "plugin/protect.h"
#include "plugin/reference.h"
#include "plugin/scheme.h"

namespace pslerp {
namespace {

using testing_util::random_features;

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
    const auto pi = slerp_coefficients(-1.0, 0.3);
    EXPECT_TRUE(pi.clamped);
    EXPECT_TRUE(std::isfinite(pi.a) && std::isfinite(pi.b));
}

TEST(Slerp, AntipodalKeyIsResampledAtEnrolment) {
    Params p = Params::defaults(1, 4);
    p.drop = DropPolicy::kNone;
    const std::vector<float> x = {1, 0, 0, 0};
    const std::vector<float> bad = {-1, 0, 0, 0};
    // Given keys are kept and clamped; drawn keys are never antipodal.
    ProtectInputs in;
    in.keys = bad.data();
    auto r = protect(p, x.data(), 1, RandomSource(1), in);
    ASSERT_TRUE(r.ok());
    for (float v : r->templates) EXPECT_TRUE(std::isfinite(v));
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

TEST(Drop, SlerpfacePresetUsesMedianSplit) {
    Params p = Params::slerpface(5, 16);
    const std::vector<float> w = {0.1f, 0.3f, 0.2f, 0.15f, 0.25f};  // median 0.2
    std::vector<int> c(5);
    drop_counts(p, w.data(), c.data());
    EXPECT_EQ(c, (std::vector<int>{12, 4, 4, 12, 4}));
    EXPECT_FLOAT_EQ(p.t, 0.9f);
    EXPECT_TRUE(p.t_minus_importance);
    EXPECT_EQ(p.weighting, Weighting::kImportance);
    std::vector<float> t(5);
    group_t(p, w.data(), t.data());
    EXPECT_FLOAT_EQ(t[1], 0.6f);
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
    EXPECT_EQ(dropped, 4 * 4 * 4);
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
    std::vector<uint8_t> masks(16, 0);
    ProtectInputs in;
    in.masks = masks.data();
    std::vector<float> ok(16, 1.0f);
    EXPECT_FALSE(protect(p, ok.data(), 1, RandomSource(1), in).ok());
    std::vector<float> keys(16, 2.0f);
    in = {};
    in.keys = keys.data();
    EXPECT_FALSE(protect(p, ok.data(), 1, RandomSource(1), in).ok());
}

TEST(Params, ValidationAndOptions) {
    Params p;
    EXPECT_TRUE(p.validate().ok());
    p.t = 1.5f;
    EXPECT_FALSE(p.validate().ok());
    p = Params::defaults(8, 16);
    p.drop_count = 16;
    EXPECT_FALSE(p.validate().ok());
    p = Params::defaults(8, 16);
    EXPECT_TRUE(p.set("t", "0.8").ok());
    EXPECT_FLOAT_EQ(p.t, 0.8f);
    EXPECT_TRUE(p.set("drop", "importance").ok());
    EXPECT_TRUE(p.set("mapping", "budget").ok());
    EXPECT_FALSE(p.set("drop", "sometimes").ok());
    EXPECT_FALSE(p.set("colour", "red").ok());
    EXPECT_TRUE(p.set("preset", "slerpface").ok());
    EXPECT_EQ(p.groups, 8);
    EXPECT_TRUE(p.t_minus_importance);
    p.importance = ImportanceKind::kFixed;
    EXPECT_FALSE(p.validate().ok());
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
