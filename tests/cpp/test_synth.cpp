// The synthetic feature generator: calibration to ArcFace-like score distributions,
// determinism, thread-count independence, noisy groups, the offset, gallery/probe splits.
#include "plugin/synth.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <set>
#include <vector>

namespace pslerp {
namespace {

double dot(const float* a, const float* b, int n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
}

double cosine(const float* a, const float* b, int n) {
    return dot(a, b, n) / std::sqrt(dot(a, a, n) * dot(b, b, n));
}

struct Moments {
    double mean = 0, sd = 0;
};

Moments moments(const std::vector<double>& v) {
    Moments m;
    for (double x : v) m.mean += x;
    m.mean /= v.size();
    for (double x : v) m.sd += (x - m.mean) * (x - m.mean);
    m.sd = std::sqrt(m.sd / v.size());
    return m;
}

/// Whole-vector cosines: mated = the two samples of identity i, non-mated = sample 0 of i
/// with sample 1 of i + 1.
void pair_scores(const SynthSet& s, std::vector<double>& mated, std::vector<double>& nonmated) {
    const int64_t ids = s.n / 2;
    for (int64_t i = 0; i < ids; ++i) {
        const float* a = s.x.data() + (2 * i) * s.dim;
        const float* b = s.x.data() + (2 * i + 1) * s.dim;
        const float* o = s.x.data() + (2 * ((i + 1) % ids) + 1) * s.dim;
        mated.push_back(cosine(a, b, s.dim));
        nonmated.push_back(cosine(a, o, s.dim));
    }
}

SynthConfig calibration_config(int groups) {
    SynthConfig c;
    c.groups = groups;
    c.group_dim = 16;
    c.identities = 20000;
    c.samples_per_identity = 2;
    c.seed = 1;
    return c;
}

double fraction_at_least(const std::vector<double>& v, double t) {
    int64_t k = 0;
    for (double x : v) k += x >= t;
    return static_cast<double>(k) / v.size();
}

TEST(Synth, Calibration512) {
    absl::StatusOr<SynthSet> s = synth_samples(calibration_config(32));
    ASSERT_TRUE(s.ok()) << s.status();
    std::vector<double> mated, nonmated;
    pair_scores(*s, mated, nonmated);
    const Moments m = moments(mated), n = moments(nonmated);
    RecordProperty("mated", std::to_string(m.mean) + " +- " + std::to_string(m.sd));
    RecordProperty("nonmated", std::to_string(n.mean) + " +- " + std::to_string(n.sd));
    EXPECT_NEAR(m.mean, 0.65, 0.03);
    EXPECT_NEAR(m.sd, 0.12, 0.02);
    EXPECT_NEAR(n.mean, 0.0, 0.005);
    EXPECT_NEAR(n.sd, 0.07, 0.007);
    // Practical decision thresholds 0.30-0.36 separate the two well.
    EXPECT_LT(fraction_at_least(nonmated, 0.30), 1e-3);
    EXPECT_GT(fraction_at_least(mated, 0.36), 0.95);
    absl::StatusOr<SynthModel> model = synth_model(calibration_config(32));
    ASSERT_TRUE(model.ok());
    EXPECT_LT(model->centre_decay, 0.9) << "512-D needs anisotropic centres to reach sd 0.07";
}

TEST(Synth, Calibration128) {
    absl::StatusOr<SynthSet> s = synth_samples(calibration_config(8));
    ASSERT_TRUE(s.ok()) << s.status();
    std::vector<double> mated, nonmated;
    pair_scores(*s, mated, nonmated);
    const Moments m = moments(mated), n = moments(nonmated);
    EXPECT_NEAR(m.mean, 0.65, 0.03);
    EXPECT_NEAR(m.sd, 0.125, 0.02);
    EXPECT_NEAR(n.mean, 0.0, 0.005);
    // 0.07 is below the isotropic floor 1/sqrt(128) = 0.088: auto picks isotropic centres.
    EXPECT_NEAR(n.sd, 1 / std::sqrt(128.0), 0.006);
    absl::StatusOr<SynthModel> model = synth_model(calibration_config(8));
    ASSERT_TRUE(model.ok());
    EXPECT_EQ(model->centre_decay, 1.f);
}

TEST(Synth, GroupsAreNormalised) {
    SynthConfig c = calibration_config(8);
    c.identities = 50;
    absl::StatusOr<SynthSet> s = synth_samples(c);
    ASSERT_TRUE(s.ok());
    ASSERT_EQ(s->dim, 128);
    ASSERT_EQ(s->n, 100);
    for (int64_t r = 0; r < s->n; ++r) {
        const float* x = s->x.data() + r * s->dim;
        EXPECT_NEAR(dot(x, x, s->dim), 1.0, 1e-5);
        for (int g = 0; g < 8; ++g) EXPECT_NEAR(dot(x + 16 * g, x + 16 * g, 16), 1.0 / 8, 1e-6);
        EXPECT_EQ(s->labels[r], r / 2);
    }
    c.norm = SynthNorm::kWhole;
    s = synth_samples(c);
    ASSERT_TRUE(s.ok());
    EXPECT_NEAR(dot(s->x.data(), s->x.data(), s->dim), 1.0, 1e-5);
}

TEST(Synth, DeterministicForSeedAndThreadCount) {
    SynthConfig c = calibration_config(4);
    c.group_dim = 7;  // odd sizes
    c.identities = 3001;
    c.samples_per_identity = 3;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    absl::StatusOr<SynthSet> one = synth_samples(c);
    absl::StatusOr<SynthSplit> split_one = synth_gallery(c, 999, 500, 300);
    omp_set_num_threads(4);
    absl::StatusOr<SynthSet> four = synth_samples(c);
    absl::StatusOr<SynthSplit> split_four = synth_gallery(c, 999, 500, 300);
    omp_set_num_threads(threads);
    ASSERT_TRUE(one.ok() && four.ok() && split_one.ok() && split_four.ok());
    EXPECT_EQ(one->x, four->x);
    EXPECT_EQ(one->labels, four->labels);
    EXPECT_EQ(split_one->gallery.x, split_four->gallery.x);
    EXPECT_EQ(split_one->probes.x, split_four->probes.x);
    EXPECT_EQ(split_one->probes.labels, split_four->probes.labels);

    absl::StatusOr<SynthSet> again = synth_samples(c);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->x, one->x);
    c.seed = 2;
    absl::StatusOr<SynthSet> other = synth_samples(c);
    ASSERT_TRUE(other.ok());
    EXPECT_NE(other->x, one->x);
}

TEST(Synth, NoisyGroupsAreNoisier) {
    SynthConfig c = calibration_config(16);
    c.identities = 4000;
    c.noisy_group_fraction = 0.25f;
    c.noisy_group_scale = 3.f;
    absl::StatusOr<SynthModel> model = synth_model(c);
    absl::StatusOr<SynthSet> s = synth_samples(c);
    ASSERT_TRUE(model.ok() && s.ok());
    int noisy = 0;
    for (uint8_t f : model->noisy_group) noisy += f;
    EXPECT_EQ(noisy, 4);
    // Mean mated cosine per group: every noisy group well below every clean one.
    std::vector<double> group_cos(16, 0.0);
    for (int64_t i = 0; i < c.identities; ++i) {
        const float* a = s->x.data() + (2 * i) * s->dim;
        const float* b = s->x.data() + (2 * i + 1) * s->dim;
        for (int g = 0; g < 16; ++g) group_cos[g] += cosine(a + 16 * g, b + 16 * g, 16) / c.identities;
    }
    double worst_clean = 1, best_noisy = -1;
    for (int g = 0; g < 16; ++g) {
        if (model->noisy_group[g]) {
            best_noisy = std::max(best_noisy, group_cos[g]);
            EXPECT_GT(model->group_noise[g], 2 * c.noise);
        } else {
            worst_clean = std::min(worst_clean, group_cos[g]);
        }
    }
    EXPECT_LT(best_noisy + 0.2, worst_clean);

    c.noisy_group_fraction = 0;
    c.group_noise_spread = 0;
    model = synth_model(c);
    ASSERT_TRUE(model.ok());
    for (float g : model->group_noise) EXPECT_FLOAT_EQ(g, c.noise);
}

TEST(Synth, OffsetIsCommonAndCentringRemovesIt) {
    SynthConfig c = calibration_config(8);
    c.identities = 3000;
    c.offset_norm = 3.f;
    absl::StatusOr<SynthSet> s = synth_samples(c);
    absl::StatusOr<SynthModel> model = synth_model(c);
    ASSERT_TRUE(s.ok() && model.ok());
    EXPECT_NEAR(std::sqrt(dot(model->offset.data(), model->offset.data(), s->dim)), 3.0, 1e-4);
    std::vector<double> mated, nonmated;
    pair_scores(*s, mated, nonmated);
    EXPECT_GT(moments(nonmated).mean, 0.8) << "uncentred features all look alike";

    std::vector<double> mean(s->dim, 0.0);
    for (int64_t r = 0; r < s->n; ++r) {
        for (int j = 0; j < s->dim; ++j) mean[j] += s->x[r * s->dim + j] / static_cast<double>(s->n);
    }
    for (int j = 0; j < s->dim; ++j) EXPECT_NEAR(mean[j], model->offset[j], 0.02);
    for (int64_t r = 0; r < s->n; ++r) {
        for (int j = 0; j < s->dim; ++j) s->x[r * s->dim + j] -= static_cast<float>(mean[j]);
    }
    mated.clear();
    nonmated.clear();
    pair_scores(*s, mated, nonmated);
    EXPECT_NEAR(moments(nonmated).mean, 0.0, 0.01);
    EXPECT_NEAR(moments(mated).mean, 0.65, 0.04);
}

TEST(Synth, GalleryMatchesSamplesAndLabelsProbes) {
    SynthConfig c = calibration_config(8);
    c.identities = 200;
    c.samples_per_identity = 3;
    absl::StatusOr<SynthSet> s = synth_samples(c);
    absl::StatusOr<SynthModel> model = synth_model(c);
    absl::StatusOr<SynthSplit> split = synth_gallery(c, 200, 150, 40);
    ASSERT_TRUE(s.ok() && model.ok() && split.ok());
    const int D = s->dim;
    ASSERT_EQ(split->gallery.n, 200);
    ASSERT_EQ(split->probes.n, 190);
    EXPECT_EQ(split->mated, 150);
    EXPECT_EQ(split->nonmated, 40);
    for (int64_t i = 0; i < 200; ++i) {
        EXPECT_EQ(split->gallery.labels[i], i);
        const std::vector<float> g(split->gallery.x.begin() + i * D, split->gallery.x.begin() + (i + 1) * D);
        const std::vector<float> first(s->x.begin() + (3 * i) * D, s->x.begin() + (3 * i + 1) * D);
        ASSERT_EQ(g, first) << "gallery entry " << i << " is sample 0 of its identity";
    }
    std::set<int64_t> seen;
    std::vector<float> expect(D);
    for (int64_t j = 0; j < 150; ++j) {
        const int64_t id = split->probes.labels[j];
        ASSERT_GE(id, 0);
        ASSERT_LT(id, 200);
        EXPECT_TRUE(seen.insert(id).second) << "mated probes come from distinct identities";
        synth_one(c, *model, id, 1, expect.data());
        EXPECT_TRUE(std::equal(expect.begin(), expect.end(), split->probes.x.begin() + j * D));
        EXPECT_LT(cosine(expect.data(), split->gallery.x.data() + id * D, D), 0.9999) << "a fresh sample";
    }
    for (int64_t j = 150; j < 190; ++j) {
        EXPECT_EQ(split->probes.labels[j], -1);
        synth_one(c, *model, 200 + (j - 150), 0, expect.data());
        EXPECT_TRUE(std::equal(expect.begin(), expect.end(), split->probes.x.begin() + j * D));
    }
}

TEST(Synth, MoreMatedProbesThanGalleryCycles) {
    SynthConfig c = calibration_config(2);
    absl::StatusOr<SynthModel> model = synth_model(c);
    absl::StatusOr<SynthSplit> split = synth_gallery(c, 3, 7, 0);
    ASSERT_TRUE(model.ok() && split.ok());
    std::vector<float> expect(c.dim());
    std::vector<int> count(3, 0);
    for (int64_t j = 0; j < 7; ++j) {
        const int64_t id = split->probes.labels[j];
        ++count[id];
        synth_one(c, *model, id, 1 + j / 3, expect.data());
        EXPECT_TRUE(std::equal(expect.begin(), expect.end(), split->probes.x.begin() + j * c.dim()));
    }
    EXPECT_EQ(count[0] + count[1] + count[2], 7);
    for (int k : count) EXPECT_GE(k, 2);
}

TEST(Synth, EmptyAndInvalid) {
    SynthConfig c;
    absl::StatusOr<SynthSplit> empty = synth_gallery(c, 0, 0, 5);
    ASSERT_TRUE(empty.ok());
    EXPECT_EQ(empty->gallery.n, 0);
    EXPECT_EQ(empty->probes.n, 5);
    EXPECT_FALSE(synth_gallery(c, 0, 1, 0).ok());
    EXPECT_FALSE(synth_gallery(c, -1, 0, 0).ok());
    EXPECT_FALSE(synth_gallery(c, 10, 0, -2).ok());

    auto invalid = [](auto edit) {
        SynthConfig bad;
        edit(bad);
        absl::Status st = synth_samples(bad).status();
        EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    };
    invalid([](SynthConfig& b) { b.groups = 0; });
    invalid([](SynthConfig& b) { b.group_dim = 1; });
    invalid([](SynthConfig& b) { b.samples_per_identity = 0; });
    invalid([](SynthConfig& b) { b.identities = -3; });
    invalid([](SynthConfig& b) { b.noise = std::nanf(""); });
    invalid([](SynthConfig& b) { b.noisy_group_fraction = 1.5f; });
    invalid([](SynthConfig& b) { b.noisy_group_scale = 0; });
    invalid([](SynthConfig& b) { b.centre_decay = 2; });
    invalid([](SynthConfig& b) { b.offset_norm = -1; });

    SynthConfig huge;
    huge.identities = int64_t{1} << 40;
    EXPECT_EQ(synth_samples(huge).status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace pslerp
