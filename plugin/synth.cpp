#include "plugin/synth.h"

#include "plugin/random.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <numeric>

#include "absl/strings/str_format.h"

namespace pslerp {
namespace {

// Synthetic data only: a small, fast generator that is cheap to seed per identity and per
// sample (std::mt19937_64 costs ~300 words of state per seeding, too slow for 1M streams).
uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

enum StreamDomain : uint64_t { kStructure = 1, kCentre = 2, kSample = 3, kChoice = 4, kAuto = 5 };

/// xoshiro256** seeded from (seed, domain, a, b) through splitmix64.
class Stream final : public Rng {
  public:
    Stream(uint64_t seed, uint64_t domain, uint64_t a, uint64_t b) {
        uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL);
        h = mix64(h ^ mix64(domain + 0x632be59bd9b4e019ULL));
        h = mix64(h ^ mix64(a + 0x8cb92ba72f3d8dd7ULL));
        h = mix64(h ^ mix64(b + 0x4f1bbcdcbfa53e0bULL));
        for (uint64_t& s : s_) {
            h += 0x9e3779b97f4a7c15ULL;
            s = mix64(h);
        }
    }

    uint64_t next_u64() override {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    /// Uniform integer in [0, n); the modulo bias (< n / 2^64) is irrelevant here.
    uint64_t below(uint64_t n) { return next_u64() % n; }

  private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

/// Random orthonormal d x d basis (columns), row-major, by Gram-Schmidt on a Gaussian matrix.
void random_basis(Stream& rng, int d, float* out) {
    std::vector<double> m(static_cast<size_t>(d) * d);
    for (;;) {
        for (double& v : m) v = rng.normal();
        bool ok = true;
        for (int j = 0; j < d && ok; ++j) {
            for (int pass = 0; pass < 2; ++pass) {  // twice for numerical orthogonality
                for (int k = 0; k < j; ++k) {
                    double dot = 0;
                    for (int i = 0; i < d; ++i) dot += m[i * d + j] * m[i * d + k];
                    for (int i = 0; i < d; ++i) m[i * d + j] -= dot * m[i * d + k];
                }
            }
            double norm = 0;
            for (int i = 0; i < d; ++i) norm += m[i * d + j] * m[i * d + j];
            norm = std::sqrt(norm);
            if (norm < 1e-6) {
                ok = false;
                break;
            }
            for (int i = 0; i < d; ++i) m[i * d + j] /= norm;
        }
        if (ok) break;
    }
    for (size_t i = 0; i < m.size(); ++i) out[i] = static_cast<float>(m[i]);
}

std::vector<double> decay_scale(int d, double decay) {
    std::vector<double> s(d);
    double sum = 0;
    for (int j = 0; j < d; ++j) {
        s[j] = std::pow(decay, j);
        sum += s[j] * s[j];
    }
    for (double& v : s) v /= std::sqrt(sum);
    return s;
}

/// Predicted sd of the whole-vector non-mated cosine (SynthNorm::kGroups) for a decay: per
/// group, var = tr(S^2) / tr(S)^2 with S the covariance of samples pooled over identities,
/// S = Lambda + s2 / d I, Lambda the covariance of normalised centres (estimated on fixed
/// draws, the same for every decay, so the prediction is smooth in decay) and s2 the mean
/// squared noise norm. Within 3% of the measured sd at 128-D and 512-D.
double predicted_nonmated_sd(const SynthConfig& config, const std::vector<float>& group_noise,
                             const std::vector<double>& draws, int ndraws, double decay) {
    const int d = config.group_dim;
    const std::vector<double> s = decay_scale(d, decay);
    std::vector<double> lambda(d, 0.0), z(d);
    for (int r = 0; r < ndraws; ++r) {
        double norm2 = 0;
        for (int j = 0; j < d; ++j) {
            z[j] = draws[static_cast<size_t>(r) * d + j] * s[j];
            norm2 += z[j] * z[j];
        }
        for (int j = 0; j < d; ++j) lambda[j] += z[j] * z[j] / norm2;
    }
    double sum_l2 = 0;
    for (double& l : lambda) {
        l /= ndraws;
        sum_l2 += l * l;
    }
    const double q2 = std::exp(2.0 * config.quality_spread * config.quality_spread);
    double var = 0;
    for (float gn : group_noise) {
        const double s2 = static_cast<double>(gn) * gn * q2;
        var += (sum_l2 + 2 * s2 / d + s2 * s2 / d) / ((1 + s2) * (1 + s2));
    }
    return std::sqrt(var) / config.groups;
}

double auto_decay(const SynthConfig& config, const std::vector<float>& group_noise) {
    const int d = config.group_dim;
    const int ndraws = 4096;
    std::vector<double> draws(static_cast<size_t>(ndraws) * d);
    Stream rng(config.seed, kAuto, 0, 0);
    for (double& v : draws) v = rng.normal();
    auto sd = [&](double decay) {
        return predicted_nonmated_sd(config, group_noise, draws, ndraws, decay);
    };
    const double target = config.nonmated_sd;
    double lo = 0.02, hi = 1.0;  // sd falls as decay rises
    if (sd(hi) >= target) return 1.0;
    if (sd(lo) <= target) return lo;
    for (int it = 0; it < 40; ++it) {
        const double mid = 0.5 * (lo + hi);
        (sd(mid) > target ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
}

void draw_centre(const SynthConfig& config, const SynthModel& model, int64_t identity,
                 float* centre) {
    const int d = model.group_dim;
    Stream rng(config.seed, kCentre, static_cast<uint64_t>(identity), 0);
    std::vector<float> z(d);
    for (int g = 0; g < model.groups; ++g) {
        const float* basis = model.bases.data() + static_cast<size_t>(g) * d * d;
        float* c = centre + static_cast<size_t>(g) * d;
        for (;;) {
            for (int j = 0; j < d; ++j) z[j] = static_cast<float>(rng.normal()) * model.centre_scale[j];
            double norm2 = 0;
            for (int i = 0; i < d; ++i) {
                float v = 0;
                for (int j = 0; j < d; ++j) v += basis[i * d + j] * z[j];
                c[i] = v;
                norm2 += static_cast<double>(v) * v;
            }
            if (norm2 > 1e-20) {
                const float inv = static_cast<float>(1.0 / std::sqrt(norm2));
                for (int i = 0; i < d; ++i) c[i] *= inv;
                break;
            }
        }
    }
}

void draw_sample(const SynthConfig& config, const SynthModel& model, int64_t identity,
                 int64_t sample, const float* centre, float* out) {
    const int d = model.group_dim, G = model.groups;
    const size_t D = static_cast<size_t>(G) * d;
    Stream rng(config.seed, kSample, static_cast<uint64_t>(identity), static_cast<uint64_t>(sample));
    const double quality = std::exp(config.quality_spread * rng.normal());
    const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(d));
    for (int g = 0; g < G; ++g) {
        const float scale = static_cast<float>(model.group_noise[g] * quality * inv_sqrt_d);
        const float* c = centre + static_cast<size_t>(g) * d;
        float* x = out + static_cast<size_t>(g) * d;
        for (int i = 0; i < d; ++i) x[i] = c[i] + scale * static_cast<float>(rng.normal());
    }
    auto normalise = [](float* v, size_t n, double target) {
        double norm2 = 0;
        for (size_t i = 0; i < n; ++i) norm2 += static_cast<double>(v[i]) * v[i];
        if (norm2 <= 0) return;
        const float f = static_cast<float>(target / std::sqrt(norm2));
        for (size_t i = 0; i < n; ++i) v[i] *= f;
    };
    if (config.norm == SynthNorm::kGroups) {
        const double target = 1.0 / std::sqrt(static_cast<double>(G));
        for (int g = 0; g < G; ++g) normalise(out + static_cast<size_t>(g) * d, d, target);
    } else if (config.norm == SynthNorm::kWhole) {
        normalise(out, D, 1.0);
    }
    if (config.offset_norm > 0) {
        for (size_t i = 0; i < D; ++i) out[i] += model.offset[i];
    }
}

absl::Status check_size(int64_t rows, int dim) {
    // 2^34 floats = 64 GiB: far beyond any machine this runs on, and no int64 overflow below.
    constexpr int64_t kMaxFloats = int64_t{1} << 34;
    if (rows < 0) return absl::InvalidArgumentError("negative number of rows");
    if (dim > 0 && rows > kMaxFloats / dim) {
        return absl::ResourceExhaustedError(
            absl::StrFormat("%d rows of %d floats is too large to generate", rows, dim));
    }
    return absl::OkStatus();
}

}  // namespace

absl::Status SynthConfig::validate() const {
    auto bad = [](const std::string& m) { return absl::InvalidArgumentError("synth: " + m); };
    if (groups < 1 || groups > 4096) return bad(absl::StrFormat("groups must be in [1, 4096], got %d", groups));
    if (group_dim < 2 || group_dim > 1024) {
        return bad(absl::StrFormat("group_dim must be in [2, 1024], got %d", group_dim));
    }
    if (identities < 0) return bad("identities must be >= 0");
    if (samples_per_identity < 1) return bad("samples_per_identity must be >= 1");
    auto finite_nonneg = [](float v) { return std::isfinite(v) && v >= 0; };
    if (!finite_nonneg(noise)) return bad("noise must be finite and >= 0");
    if (!finite_nonneg(quality_spread) || quality_spread > 3) return bad("quality_spread must be in [0, 3]");
    if (!finite_nonneg(group_noise_spread) || group_noise_spread > 3) {
        return bad("group_noise_spread must be in [0, 3]");
    }
    if (!(noisy_group_fraction >= 0 && noisy_group_fraction <= 1)) {
        return bad("noisy_group_fraction must be in [0, 1]");
    }
    if (!(std::isfinite(noisy_group_scale) && noisy_group_scale > 0)) {
        return bad("noisy_group_scale must be finite and > 0");
    }
    if (!(centre_decay >= 0 && centre_decay <= 1)) return bad("centre_decay must be in [0, 1] (0 = auto)");
    if (!(std::isfinite(nonmated_sd) && nonmated_sd > 0)) return bad("nonmated_sd must be > 0");
    if (!finite_nonneg(offset_norm)) return bad("offset_norm must be finite and >= 0");
    return absl::OkStatus();
}

absl::StatusOr<SynthModel> synth_model(const SynthConfig& config) {
    if (absl::Status st = config.validate(); !st.ok()) return st;
    const int G = config.groups, d = config.group_dim;
    SynthModel m;
    m.groups = G;
    m.group_dim = d;
    Stream rng(config.seed, kStructure, 0, 0);

    m.group_noise.resize(G);
    m.noisy_group.assign(G, 0);
    for (int g = 0; g < G; ++g) {
        m.group_noise[g] = static_cast<float>(config.noise * std::exp(config.group_noise_spread * rng.normal()));
    }
    const int noisy = static_cast<int>(std::lround(config.noisy_group_fraction * G));
    std::vector<int> order(G);
    std::iota(order.begin(), order.end(), 0);
    for (int i = 0; i < noisy; ++i) {
        std::swap(order[i], order[i + rng.below(G - i)]);
        m.noisy_group[order[i]] = 1;
        m.group_noise[order[i]] *= config.noisy_group_scale;
    }

    m.bases.resize(static_cast<size_t>(G) * d * d);
    for (int g = 0; g < G; ++g) random_basis(rng, d, m.bases.data() + static_cast<size_t>(g) * d * d);

    m.offset.assign(static_cast<size_t>(G) * d, 0.f);
    if (config.offset_norm > 0) {
        double norm2 = 0;
        std::vector<double> u(m.offset.size());
        while (norm2 < 1e-12) {
            norm2 = 0;
            for (double& v : u) {
                v = rng.normal();
                norm2 += v * v;
            }
        }
        const double f = config.offset_norm / std::sqrt(norm2);
        for (size_t i = 0; i < u.size(); ++i) m.offset[i] = static_cast<float>(u[i] * f);
    }

    m.centre_decay = config.centre_decay > 0 ? config.centre_decay
                                             : static_cast<float>(auto_decay(config, m.group_noise));
    const std::vector<double> s = decay_scale(d, m.centre_decay);
    m.centre_scale.assign(s.begin(), s.end());
    return m;
}

void synth_one(const SynthConfig& config, const SynthModel& model, int64_t identity,
               int64_t sample, float* out) {
    std::vector<float> centre(static_cast<size_t>(model.groups) * model.group_dim);
    draw_centre(config, model, identity, centre.data());
    draw_sample(config, model, identity, sample, centre.data(), out);
}

absl::StatusOr<SynthSet> synth_samples(const SynthConfig& config) {
    absl::StatusOr<SynthModel> model = synth_model(config);
    if (!model.ok()) return model.status();
    const int D = config.dim();
    const int spi = config.samples_per_identity;
    if (config.identities > std::numeric_limits<int64_t>::max() / spi) {
        return absl::ResourceExhaustedError("synth: identities * samples_per_identity overflows");
    }
    const int64_t n = config.identities * spi;
    if (absl::Status st = check_size(n, D); !st.ok()) return st;
    SynthSet set;
    try {
        set.x.resize(static_cast<size_t>(n) * D);
        set.labels.resize(n);
    } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError(absl::StrFormat("synth: cannot allocate %d x %d floats", n, D));
    }
    set.n = n;
    set.dim = D;
    const SynthModel& m = *model;
#pragma omp parallel if (config.identities > 1)
    {
        std::vector<float> centre(D);
#pragma omp for schedule(dynamic, 64)
        for (int64_t id = 0; id < config.identities; ++id) {
            draw_centre(config, m, id, centre.data());
            for (int s = 0; s < spi; ++s) {
                const int64_t row = id * spi + s;
                draw_sample(config, m, id, s, centre.data(), set.x.data() + static_cast<size_t>(row) * D);
                set.labels[row] = id;
            }
        }
    }
    return set;
}

absl::StatusOr<SynthSet> synth_identities(const SynthConfig& config, int64_t first, int64_t n) {
    auto model = synth_model(config);
    if (!model.ok()) return model.status();
    if (first < 0 || n < 0) return absl::InvalidArgumentError("synth_identities: negative identity or count");
    int64_t floats = 0;
    if (__builtin_mul_overflow(n, int64_t(config.dim()), &floats) || first > INT64_MAX - n) {
        return absl::InvalidArgumentError("synth_identities: too many identities");
    }
    SynthSet s;
    s.dim = config.dim();
    s.n = n;
    s.x.resize(size_t(floats));
    s.labels.resize(n);
#pragma omp parallel for schedule(dynamic, 64) if (n > 1)
    for (int64_t i = 0; i < n; ++i) {
        synth_one(config, *model, first + i, 0, s.x.data() + size_t(i) * s.dim);
        s.labels[i] = first + i;
    }
    return s;
}

absl::StatusOr<SynthSplit> synth_gallery(const SynthConfig& config, int64_t gallery_size,
                                         int64_t mated_probes, int64_t nonmated_probes) {
    if (gallery_size < 0 || mated_probes < 0 || nonmated_probes < 0) {
        return absl::InvalidArgumentError("synth: gallery, mated and non-mated counts must be >= 0");
    }
    if (mated_probes > 0 && gallery_size == 0) {
        return absl::InvalidArgumentError("synth: mated probes need a non-empty gallery");
    }
    constexpr int64_t kMax = int64_t{1} << 40;
    if (gallery_size > kMax || mated_probes > kMax || nonmated_probes > kMax) {
        return absl::ResourceExhaustedError("synth: counts above 2^40 are not supported");
    }
    absl::StatusOr<SynthModel> model = synth_model(config);
    if (!model.ok()) return model.status();
    const int D = config.dim();
    const int64_t nprobes = mated_probes + nonmated_probes;
    if (absl::Status st = check_size(gallery_size + nprobes, D); !st.ok()) return st;

    // Which gallery identity each mated probe comes from: a seeded partial shuffle.
    std::vector<int64_t> probe_id(nprobes), probe_sample(nprobes);
    if (mated_probes > 0) {
        std::vector<int64_t> perm(gallery_size);
        std::iota(perm.begin(), perm.end(), int64_t{0});
        Stream rng(config.seed, kChoice, 0, 0);
        const int64_t shuffled = std::min(mated_probes, gallery_size);
        for (int64_t i = 0; i < shuffled; ++i) {
            std::swap(perm[i], perm[i + static_cast<int64_t>(rng.below(gallery_size - i))]);
        }
        for (int64_t j = 0; j < mated_probes; ++j) {
            probe_id[j] = perm[j % gallery_size];
            probe_sample[j] = 1 + j / gallery_size;
        }
    }
    for (int64_t j = 0; j < nonmated_probes; ++j) {
        probe_id[mated_probes + j] = gallery_size + j;
        probe_sample[mated_probes + j] = 0;
    }

    SynthSplit split;
    try {
        split.gallery.x.resize(static_cast<size_t>(gallery_size) * D);
        split.gallery.labels.resize(gallery_size);
        split.probes.x.resize(static_cast<size_t>(nprobes) * D);
        split.probes.labels.resize(nprobes);
    } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError("synth: cannot allocate the gallery and probes");
    }
    split.gallery.n = gallery_size;
    split.gallery.dim = D;
    split.probes.n = nprobes;
    split.probes.dim = D;
    split.mated = mated_probes;
    split.nonmated = nonmated_probes;
    const SynthModel& m = *model;
    const int64_t total = gallery_size + nprobes;
#pragma omp parallel if (total > 1)
    {
        std::vector<float> centre(D);
#pragma omp for schedule(dynamic, 64)
        for (int64_t r = 0; r < total; ++r) {
            if (r < gallery_size) {
                draw_centre(config, m, r, centre.data());
                draw_sample(config, m, r, 0, centre.data(), split.gallery.x.data() + static_cast<size_t>(r) * D);
                split.gallery.labels[r] = r;
            } else {
                const int64_t j = r - gallery_size;
                draw_centre(config, m, probe_id[j], centre.data());
                draw_sample(config, m, probe_id[j], probe_sample[j], centre.data(),
                            split.probes.x.data() + static_cast<size_t>(j) * D);
                split.probes.labels[j] = j < mated_probes ? probe_id[j] : -1;
            }
        }
    }
    return split;
}

}  // namespace pslerp
