// The evaluation suite (report/report.h) on small cases with known answers.
#include "report/report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "plugin/synth.h"

namespace pslerp {
namespace {

struct Set {
    std::vector<float> x;
    std::vector<int64_t> labels;
    int64_t n = 0;
    int dim = 0;
};

Set synthetic(int64_t identities, int per_identity, uint64_t seed = 7) {
    SynthConfig c;
    c.identities = identities;
    c.samples_per_identity = per_identity;
    c.seed = seed;
    absl::StatusOr<SynthSet> s = synth_samples(c);
    EXPECT_TRUE(s.ok()) << s.status();
    return {s->x, s->labels, s->n, s->dim};
}

/// Every identity a random direction, each sample an exact copy of it.
Set copies(int64_t identities, int per_identity, int dim = 128) {
    std::mt19937_64 rng(3);
    std::normal_distribution<float> n01;
    Set s;
    s.dim = dim;
    for (int64_t i = 0; i < identities; ++i) {
        std::vector<float> v(dim);
        for (float& f : v) f = n01(rng);
        for (int k = 0; k < per_identity; ++k) {
            s.x.insert(s.x.end(), v.begin(), v.end());
            s.labels.push_back(i);
        }
    }
    s.n = int64_t(s.labels.size());
    return s;
}

EvalOptions seeded(uint64_t seed = 11) {
    EvalOptions o;
    o.seed = seed;
    o.bins = 20;
    return o;
}

TEST(ReportMetrics, DsysOfIdenticalAndDisjointDistributions) {
    const std::vector<float> a = {0.1f, 0.2f, 0.3f, 0.4f}, far = {5.f, 6.f, 7.f};
    absl::StatusOr<Unlinkability> same = unlinkability(a, a);
    ASSERT_TRUE(same.ok());
    EXPECT_DOUBLE_EQ(same->d_sys, 0.0);
    absl::StatusOr<Unlinkability> apart = unlinkability(far, a);
    ASSERT_TRUE(apart.ok());
    EXPECT_DOUBLE_EQ(apart->d_sys, 1.0);
}

TEST(Report, OwnSamplesAreFoundAndVerifiedPerfectly) {
    // Samples of an identity are copies: the unprotected system is perfect, and the protected
    // one finds every probe's own identity (same raw feature, only the keys differ).
    const Set s = copies(40, 3);
    EvalOptions o = seeded();
    absl::StatusOr<EvalReport> r = evaluate(s.x.data(), s.n, s.dim, s.labels, o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->identities, 40);
    EXPECT_DOUBLE_EQ(r->base.unprot.report.eer.eer, 0.0);
    EXPECT_DOUBLE_EQ(r->base.search_unprot.rank1, 1.0);
    EXPECT_DOUBLE_EQ(r->base.search_prot.rank1, 1.0);
    EXPECT_EQ(r->base.search_prot.gallery, 32);  // 8 of 40 identities kept out (20%)
    EXPECT_EQ(r->base.search_prot.mated_searches, 64);
    EXPECT_EQ(r->base.search_prot.nonmated_searches, 24);
    ASSERT_FALSE(r->base.search_prot.size_rank1.empty());
    EXPECT_EQ(r->base.search_prot.sizes.back(), 32);
    for (double v : r->base.search_prot.size_rank1) EXPECT_DOUBLE_EQ(v, 1.0);
    // Open set: FPIR 1% of 24 searches allows none; DIR still counts only correct matches.
    ASSERT_EQ(r->base.search_prot.open_set.size(), 2u);
    EXPECT_FALSE(r->base.search_prot.open_set[0].resolvable);
    EXPECT_EQ(r->base.search_prot.open_set[0].false_positives, 0);
    // Pairs: 40 * 3 mated, every non-mated pair.
    EXPECT_EQ(r->base.prot.report.roc.mated, 120);
    EXPECT_EQ(r->base.prot.report.roc.nonmated, 120 * 119 / 2 - 120);
    EXPECT_TRUE(r->sweep.empty());
}

TEST(Report, ProjectionAttackIsExactWithoutRotationOrDrop) {
    // t = 0 and nothing dropped: the template is the normalised feature, and undoing the slerp
    // gives it back exactly; the template itself is then fully linkable.
    const Set s = synthetic(30, 3);
    EvalOptions o = seeded();
    ASSERT_TRUE(apply_option(o.params, "t", "0").ok());
    ASSERT_TRUE(apply_option(o.params, "drop", "none").ok());
    // Where this build normalises scores per entry (norm=cohort), compare plain cosines.
    (void)apply_option(o.params, "norm", "none");
    absl::StatusOr<EvalReport> r = evaluate(s.x.data(), s.n, s.dim, s.labels, o);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->base.attacks.size(), 3u);
    EXPECT_NEAR(r->base.attacks[2].cosine_to_raw, 1.0, 1e-5);  // slerp undone
    EXPECT_NEAR(r->base.attacks[0].cosine_to_raw, 1.0, 1e-5);  // the template is the feature
    EXPECT_LT(r->base.attacks[1].cosine_to_raw, 0.999);        // key component removed: not exact
    // The recovered probe is the feature itself: accepted like the genuine sample.
    EXPECT_EQ(r->base.attacks[2].protected_same.accepted, r->base.attacks[2].protected_same.trials);
    EXPECT_DOUBLE_EQ(r->base.links[0].same.d_sys, 1.0);
    // Renewal changes nothing at t = 0: the old template still matches the genuine probe.
    EXPECT_EQ(r->base.renew.new_probe_same.accepted, r->base.renew.new_probe_same.trials);
    EXPECT_EQ(r->base.renew.new_probe_same.trials, s.n);
    // Protected and unprotected systems score every pair alike when nothing protects (up to
    // the kernels' float arithmetic).
    ASSERT_EQ(r->base.prot.mated.size(), r->base.unprot.mated.size());
    double worst = 0;
    for (size_t k = 0; k < r->base.prot.mated.size(); ++k)
        worst = std::max(worst, double(std::abs(r->base.prot.mated[k] - r->base.unprot.mated[k])));
    for (size_t k = 0; k < r->base.prot.nonmated.size(); ++k)
        worst = std::max(worst, double(std::abs(r->base.prot.nonmated[k] - r->base.unprot.nonmated[k])));
    EXPECT_LT(worst, 1e-4);
}

TEST(Report, ProtectionLowersLinkabilityAndInversion) {
    // The default scheme against t = 0.95 on the same features: more rotation, less linkable,
    // the template as a probe accepted less often. Impostors stay near the FAR.
    const Set s = synthetic(40, 3);
    EvalOptions o = seeded();
    o.sweep = {{"t", {"0", "0.95"}}};
    ASSERT_TRUE(apply_option(o.params, "drop", "none").ok());
    absl::StatusOr<EvalReport> r = evaluate(s.x.data(), s.n, s.dim, s.labels, o);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->sweep.size(), 2u);
    const PointFigures& t0 = r->sweep[0];
    const PointFigures& t95 = r->sweep[1];
    EXPECT_EQ(t0.label, "t=0");
    EXPECT_GT(t0.links[0].same.d_sys, 0.9);
    EXPECT_LT(t95.links[0].same.d_sys, 0.5);
    // The estimator's floor (non-mated against non-mated) is far below a fully linkable system.
    for (const LinkFigures& l : t0.links) {
        EXPECT_GE(l.floor_same, 0.0);
        EXPECT_LT(l.floor_other, 0.5) << l.attacker;
    }
    EXPECT_GT(t0.attacks[0].protected_other.rate(), t95.attacks[0].protected_other.rate());
    EXPECT_LT(r->base.impostor_unprot.rate(), 0.02);
}

TEST(Report, SameSeedSameFigures) {
    const Set s = synthetic(20, 3);
    EvalOptions o = seeded(5);
    o.sweep = {{"drop_count", {"2"}}};
    absl::StatusOr<EvalReport> a = evaluate(s.x.data(), s.n, s.dim, s.labels, o);
    absl::StatusOr<EvalReport> b = evaluate(s.x.data(), s.n, s.dim, s.labels, o);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(report_json(*a), report_json(*b));
    o.seed = 6;
    absl::StatusOr<EvalReport> c = evaluate(s.x.data(), s.n, s.dim, s.labels, o);
    ASSERT_TRUE(c.ok());
    EXPECT_NE(report_json(*a), report_json(*c));
}

TEST(Report, WritesReportAndData) {
    const Set s = synthetic(20, 3);
    EvalOptions o = seeded();
    o.sweep = {{"t", {"0.9"}}};
    o.command = "test";
    absl::StatusOr<EvalReport> r = evaluate(s.x.data(), s.n, s.dim, s.labels, o);
    ASSERT_TRUE(r.ok()) << r.status();
    const std::filesystem::path dir = std::filesystem::path(testing::TempDir()) / "pslerp_report_test";
    std::filesystem::remove_all(dir);
    ASSERT_TRUE(write_report_data(*r, dir.string()).ok());
    ASSERT_TRUE(write_report_markdown(*r, dir.string(), "not asked for").ok());
    for (const char* f : {"report.md", "report.json", "roc.csv", "scores.csv", "unlinkability.csv", "rank1_gallery.csv",
                          "sweep.csv"}) {
        EXPECT_TRUE(std::filesystem::exists(dir / f)) << f;
        EXPECT_GT(std::filesystem::file_size(dir / f), 20u) << f;
    }
    std::ifstream md(dir / "report.md");
    const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("Plots were not drawn: not asked for"), std::string::npos);
    EXPECT_NE(text.find("## 6. Sweep"), std::string::npos);
    EXPECT_NE(text.find("t=0.9"), std::string::npos);
    EXPECT_NE(text.find("seed 11"), std::string::npos);
    std::filesystem::remove_all(dir);
}

TEST(Report, BadInputIsRefusedClearly) {
    Set s = synthetic(10, 2);
    const EvalOptions o = seeded();
    auto message = [&](const Set& set, const std::vector<int64_t>& labels) {
        absl::StatusOr<EvalReport> r = evaluate(set.x.data(), set.n, set.dim, labels, o);
        EXPECT_FALSE(r.ok());
        EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
        return std::string(r.status().message());
    };
    std::vector<int64_t> fewer(s.labels.begin(), s.labels.end() - 1);
    EXPECT_NE(message(s, fewer).find("19 labels for 20 features"), std::string::npos);
    EXPECT_NE(message(s, std::vector<int64_t>(s.n, 3)).find("at least two identities"), std::string::npos);
    std::vector<int64_t> distinct(s.n);
    for (int64_t i = 0; i < s.n; ++i) distinct[i] = i;
    EXPECT_NE(message(s, distinct).find("no identity has two samples"), std::string::npos);
    Set nan = s;
    nan.x[5 * 128 + 3] = std::nanf("");
    EXPECT_NE(message(nan, s.labels).find("feature 5 has a NaN"), std::string::npos);
    Set narrow = s;
    narrow.dim = 64;
    narrow.n = 2 * s.n;
    std::vector<int64_t> twice(s.labels);
    twice.insert(twice.end(), s.labels.begin(), s.labels.end());
    EXPECT_NE(message(narrow, twice).find("dimension 64"), std::string::npos);
}

TEST(ReportOptions, SweepParsingAndDefaults) {
    const Params base = Params::defaults();
    absl::StatusOr<std::vector<SweepAxis>> axes = parse_sweep("t=0.5,0.9; drop_count=0,2 groups=4", base);
    ASSERT_TRUE(axes.ok()) << axes.status();
    ASSERT_EQ(axes->size(), 3u);
    EXPECT_EQ((*axes)[0].option, "t");
    EXPECT_EQ((*axes)[0].values, (std::vector<std::string>{"0.5", "0.9"}));
    EXPECT_EQ(describe_sweep(*axes), "t=0.5,0.9;drop_count=0,2;groups=4");
    EXPECT_FALSE(parse_sweep("t=2", base).ok());          // out of range, via Params::validate
    EXPECT_FALSE(parse_sweep("tee=0.5", base).ok());      // unknown option, via Params::set
    EXPECT_FALSE(parse_sweep("t", base).ok());
    EXPECT_FALSE(parse_sweep("groups=5", base).ok());     // does not divide 128
    Params p = base;
    ASSERT_TRUE(apply_option(p, "groups", "16").ok());
    EXPECT_EQ(p.groups, 16);
    EXPECT_EQ(p.group_dim, 8);
    const std::vector<SweepAxis> def = default_sweep(base);
    std::vector<std::string> names;
    for (const SweepAxis& a : def) names.push_back(a.option);
    for (const char* want : {"t", "drop_count", "drop", "groups", "preset"})
        EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
}

TEST(ReportOptions, LabelsAsExtractWritesThem) {
    std::vector<std::string> names;
    absl::StatusOr<std::vector<int64_t>> l = parse_labels("ann\ta/1.jpg\nbob\tb/1.jpg\nann\ta/2.jpg\n", &names);
    ASSERT_TRUE(l.ok());
    EXPECT_EQ(*l, (std::vector<int64_t>{0, 1, 0}));
    EXPECT_EQ(names, (std::vector<std::string>{"ann", "bob"}));
    l = parse_labels("7\n7\n3\n");
    ASSERT_TRUE(l.ok());
    EXPECT_EQ(*l, (std::vector<int64_t>{0, 0, 1}));
    EXPECT_FALSE(parse_labels("\tpath.jpg\n").ok());
}

}  // namespace
}  // namespace pslerp
