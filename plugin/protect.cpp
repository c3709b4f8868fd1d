#include "plugin/protect.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "absl/strings/str_format.h"
#include "plugin/scheme.h"

namespace pslerp {

namespace {

double dot(const float* a, const float* b, int d) {
    double s = 0;
    for (int j = 0; j < d; ++j) s += static_cast<double>(a[j]) * b[j];
    return s;
}

const float* group_key(const Params& p, const float* key, int g) {
    return p.key_mode == KeyMode::kShared ? key : key + g * p.group_dim;
}

}  // namespace

absl::StatusOr<Protected> protect(const Params& p, const float* x, int64_t n, const RandomSource& rng,
                                  const ProtectInputs& in) {
    if (auto s = p.validate(); !s.ok()) return s;
    if (n < 0) return absl::InvalidArgumentError("n must be >= 0");
    const int G = p.groups, d = p.group_dim, D = p.dim(), KD = p.key_dim();
    Protected out;
    out.n = n;
    out.templates.resize(n * D);
    if (auto s = normalize_groups(p, x, n, out.templates.data()); !s.ok()) return s;
    out.keys.resize(n * KD);
    out.masks.resize(n * D);
    out.weights.resize(n * G);
    out.importance.resize(n * G);
    if (in.keys) {
        for (int64_t i = 0; i < n * KD / d; ++i) {
            const double nk = std::sqrt(dot(in.keys + i * d, in.keys + i * d, d));
            if (!std::isfinite(nk) || std::abs(nk - 1.0) > 1e-3) {
                return absl::InvalidArgumentError(absl::StrFormat(
                        "keys: entry %d group %d is not unit-norm (norm %.6g)", i / (KD / d), i % (KD / d), nk));
            }
        }
    }
    if (in.importance) {
        for (int64_t i = 0; i < n * G; ++i) {
            if (!(in.importance[i] >= 0.0f) || !std::isfinite(in.importance[i])) {
                return absl::InvalidArgumentError("weights: importance must be finite and >= 0");
            }
        }
    }
    if (in.masks) {
        for (int64_t i = 0; i < n * G; ++i) {
            const uint8_t* m = in.masks + i * d;
            if (std::all_of(m, m + d, [](uint8_t v) { return v == 0; })) {
                return absl::InvalidArgumentError(
                        absl::StrFormat("masks: entry %d group %d keeps no coordinate", i / G, i % G));
            }
        }
    }
    std::atomic<int64_t> resampled{0};

#pragma omp parallel for schedule(dynamic, 64) if (n > 256)
    for (int64_t i = 0; i < n; ++i) {
        auto r = rng.stream(in.stream_offset + static_cast<uint64_t>(i));
        float* e = out.templates.data() + i * D;  // holds the normalised input until rotated
        float* key = out.keys.data() + i * KD;
        uint8_t* mask = out.masks.data() + i * D;
        float* w = out.importance.data() + i * G;
        if (in.importance) {
            std::vector<double> raw(in.importance + i * G, in.importance + (i + 1) * G);
            double sum = 0;
            for (double v : raw) sum += v;
            for (int g = 0; g < G; ++g) w[g] = sum > 0 ? static_cast<float>(raw[g] / sum) : 1.0f / G;
        } else {
            compute_importance(p, e, w);
        }
        combination_weights(p, w, out.weights.data() + i * G);
        std::vector<float> t(G);
        group_t(p, w, t.data());

        // Keys: given, or drawn until no group is antipodal to its key.
        if (in.keys) {
            std::copy(in.keys + i * KD, in.keys + (i + 1) * KD, key);
        } else {
            for (int j = 0; j < KD; j += d) draw_key(d, *r, key + j);
            // Redraw only a key that is antipodal to its group (per-group keys), or the shared
            // key while any group is; bounded, since a shared key can be antipodal to one group
            // whatever is drawn only with vanishing probability.
            constexpr int kMaxRedraws = 1000;
            for (int attempt = 0; attempt < kMaxRedraws; ++attempt) {
                bool antipodal = false;
                for (int g = 0; g < G; ++g) {
                    if (dot(e + g * d, group_key(p, key, g), d) >= kAntipodalCos) continue;
                    antipodal = true;
                    resampled.fetch_add(1, std::memory_order_relaxed);
                    draw_key(d, *r, p.key_mode == KeyMode::kShared ? key : key + g * d);
                    if (p.key_mode == KeyMode::kShared) break;
                }
                if (!antipodal) break;
            }
        }
        std::vector<double> rg(d);
        std::vector<int> counts(G);
        drop_counts(p, w, counts.data());
        for (int g = 0; g < G; ++g) {
            if (in.masks) {
                for (int j = 0; j < d; ++j) mask[g * d + j] = in.masks[i * D + g * d + j] != 0;
            } else {
                draw_mask(d, counts[g], p.drop_with_replacement, *r, mask + g * d);
            }
            float* eg = e + g * d;
            const float* kg = group_key(p, key, g);
            const auto [a, b, clamped] = slerp_coefficients(dot(eg, kg, d), t[g]);
            (void)clamped;
            double ss = 0;
            for (int j = 0; j < d; ++j) {
                rg[j] = mask[g * d + j] ? a * eg[j] + b * kg[j] : 0.0;
                ss += rg[j] * rg[j];
            }
            const double inv = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
            for (int j = 0; j < d; ++j) {
                eg[j] = static_cast<float>(rg[j] * inv);
                if (!mask[g * d + j] && p.fill == Fill::kRandom) {
                    eg[j] = static_cast<float>(r->normal() / std::sqrt(static_cast<double>(d)));
                }
            }
        }
    }
    out.resampled_keys = resampled.load();
    return out;
}

std::vector<float> generate_keys(const Params& p, int64_t n, const RandomSource& rng, uint64_t stream_offset) {
    const int d = p.group_dim, KD = p.key_dim();
    std::vector<float> keys(n * KD);
#pragma omp parallel for if (n > 1024)
    for (int64_t i = 0; i < n; ++i) {
        auto r = rng.stream(stream_offset + static_cast<uint64_t>(i));
        for (int j = 0; j < KD; j += d) draw_key(d, *r, keys.data() + i * KD + j);
    }
    return keys;
}

absl::StatusOr<Probe> prepare_probes(const Params& p, const float* x, int64_t n) {
    if (auto s = p.validate(); !s.ok()) return s;
    Probe pr;
    pr.xn.resize(n * p.dim());
    pr.t.resize(n * p.groups);
    if (auto s = normalize_groups(p, x, n, pr.xn.data()); !s.ok()) return s;
    for (int64_t i = 0; i < n; ++i) probe_t(p, pr.xn.data() + i * p.dim(), pr.t.data() + i * p.groups);
    return pr;
}

void probe_t(const Params& p, const float* xn, float* t) {
    std::vector<float> w(p.groups, 0.0f);
    if (p.t_minus_importance) compute_importance(p, xn, w.data());
    group_t(p, w.data(), t);
}

float match_one(const Params& p, const float* xn, const float* t, const float* tmpl, const float* key,
                const uint8_t* mask, const float* weights, int64_t* clamped) {
    const int G = p.groups, d = p.group_dim;
    double score = 0;
    for (int g = 0; g < G; ++g) {
        const float* qg = xn + g * d;
        const float* kg = group_key(p, key, g);
        const auto [a, b, was_clamped] = slerp_coefficients(dot(qg, kg, d), t[g]);
        if (was_clamped && clamped) ++*clamped;
        double num = 0, ss = 0;
        for (int j = 0; j < d; ++j) {
            if (!mask[g * d + j]) continue;
            const double r = a * qg[j] + b * kg[j];
            num += r * tmpl[g * d + j];
            ss += r * r;
        }
        if (ss > 0) score += weights[g] * num / std::sqrt(ss);
    }
    return static_cast<float>(score);
}

namespace {

absl::Status check_entries(const Params& p, const float* templates, const float* keys, const uint8_t* masks,
                           const float* weights, int64_t n) {
    if (!templates || !keys || !masks || !weights) {
        if (n > 0) return absl::InvalidArgumentError("templates, keys, masks and weights are all required");
    }
    for (int64_t i = 0; i < n * p.dim(); ++i) {
        if (!std::isfinite(templates[i])) return absl::InvalidArgumentError("templates contain NaN or Inf");
    }
    for (int64_t i = 0; i < n * p.groups; ++i) {
        if (!std::isfinite(weights[i])) return absl::InvalidArgumentError("weights contain NaN or Inf");
    }
    return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<float>> match_pairs(const Params& p, const float* q, int64_t n, const float* templates,
                                               const float* keys, const uint8_t* masks, const float* weights) {
    if (auto s = check_entries(p, templates, keys, masks, weights, n); !s.ok()) return s;
    auto probe = prepare_probes(p, q, n);
    if (!probe.ok()) return probe.status();
    const int D = p.dim(), G = p.groups, KD = p.key_dim();
    std::vector<float> out(n);
#pragma omp parallel for if (n > 256)
    for (int64_t i = 0; i < n; ++i) {
        out[i] = match_one(p, probe->xn.data() + i * D, probe->t.data() + i * G, templates + i * D, keys + i * KD,
                           masks + i * D, weights + i * G);
    }
    return out;
}

absl::StatusOr<std::vector<float>> match_all(const Params& p, const float* q, int64_t nq, const float* templates,
                                             const float* keys, const uint8_t* masks, const float* weights,
                                             int64_t n) {
    if (auto s = check_entries(p, templates, keys, masks, weights, n); !s.ok()) return s;
    auto probe = prepare_probes(p, q, nq);
    if (!probe.ok()) return probe.status();
    const int D = p.dim(), G = p.groups, KD = p.key_dim();
    std::vector<float> out(nq * n);
#pragma omp parallel for collapse(2) if (nq * n > 1024)
    for (int64_t i = 0; i < nq; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            out[i * n + j] = match_one(p, probe->xn.data() + i * D, probe->t.data() + i * G, templates + j * D,
                                       keys + j * KD, masks + j * D, weights + j * G);
        }
    }
    return out;
}

}  // namespace pslerp
