#include "plugin/scheme.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_format.h"

namespace pslerp {

SlerpCoefficients slerp_coefficients(double c, double t) {
    bool clamped = false;
    if (c < kAntipodalCos) {
        c = kAntipodalCos;
        clamped = true;
    }
    c = std::min(c, 1.0);
    const double theta = std::acos(c);
    if (theta < kTinyAngle) return {1.0 - t, t, clamped};
    const double s = std::sin(theta);
    return {std::sin((1.0 - t) * theta) / s, std::sin(t * theta) / s, clamped};
}

absl::Status normalize_groups(const Params& p, const float* x, int64_t n, float* out) {
    const int G = p.groups, d = p.group_dim, D = p.dim();
    for (int64_t i = 0; i < n; ++i) {
        for (int g = 0; g < G; ++g) {
            const float* xg = x + i * D + g * d;
            double ss = 0;
            for (int j = 0; j < d; ++j) {
                if (!std::isfinite(xg[j])) {
                    return absl::InvalidArgumentError(
                            absl::StrFormat("vector %d has a NaN or infinite value (dimension %d)", i, g * d + j));
                }
                ss += static_cast<double>(xg[j]) * xg[j];
            }
            if (!(ss > 1e-30)) {
                return absl::InvalidArgumentError(absl::StrFormat(
                        "vector %d: group %d (dimensions %d..%d) has zero norm and cannot be normalised", i, g, g * d,
                        g * d + d - 1));
            }
            const double inv = 1.0 / std::sqrt(ss);
            float* og = out + i * D + g * d;
            for (int j = 0; j < d; ++j) og[j] = static_cast<float>(xg[j] * inv);
        }
    }
    return absl::OkStatus();
}

namespace {

void normalise_weights(std::vector<double>& w, float* out) {
    double sum = 0;
    for (double v : w) sum += std::max(v, 0.0);
    const size_t G = w.size();
    for (size_t g = 0; g < G; ++g) {
        out[g] = sum > 0 ? static_cast<float>(std::max(w[g], 0.0) / sum) : 1.0f / static_cast<float>(G);
    }
}

}  // namespace

void compute_importance(const Params& p, const float* xn, float* w) {
    const int G = p.groups, d = p.group_dim;
    std::vector<double> raw(G, 1.0);
    if (p.importance == ImportanceKind::kFixed) {
        for (int g = 0; g < G; ++g) raw[g] = p.importance_weights[g];
    } else if (p.importance == ImportanceKind::kSelfAttention) {
        using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        Mat X = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(xn, G, d)
                        .cast<double>();
        auto project = [&](const std::vector<float>& W) -> Mat {
            if (W.empty()) return X;
            Mat M = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(W.data(), d,
                                                                                                          d)
                            .cast<double>();
            return X * M.transpose();
        };
        const Mat Q = project(p.attention_wq), K = project(p.attention_wk);
        Mat logits = Q * K.transpose() / (std::sqrt(static_cast<double>(d)) * p.attention_temperature);
        // Row softmax: how much group g attends to each group h; importance of h is the mean
        // attention it receives.
        std::fill(raw.begin(), raw.end(), 0.0);
        for (int g = 0; g < G; ++g) {
            const double mx = logits.row(g).maxCoeff();
            Eigen::RowVectorXd e = (logits.row(g).array() - mx).exp();
            e /= e.sum();
            for (int h = 0; h < G; ++h) raw[h] += e[h] / G;
        }
    }
    normalise_weights(raw, w);
}

void group_t(const Params& p, const float* w, float* t_g) {
    for (int g = 0; g < p.groups; ++g) {
        const float t = p.t_minus_importance ? p.t - w[g] : p.t;
        t_g[g] = std::clamp(t, 0.0f, 1.0f);
    }
}

void drop_counts(const Params& p, const float* w, int* counts) {
    const int G = p.groups, d = p.group_dim;
    const int cap = p.drop_with_replacement ? std::numeric_limits<int>::max() : d - 1;
    switch (p.drop) {
        case DropPolicy::kNone:
            std::fill(counts, counts + G, 0);
            return;
        case DropPolicy::kRandom:
            std::fill(counts, counts + G, p.drop_count);
            return;
        case DropPolicy::kImportance:
            break;
    }
    if (p.mapping == DropMapping::kFunction) {
        const auto [lo, hi] = std::minmax_element(w, w + G);
        for (int g = 0; g < G; ++g) {
            const double r = *hi > *lo ? (w[g] - *lo) / (*hi - *lo) : 0.5;
            counts[g] = static_cast<int>(std::lround(p.drop_max - r * (p.drop_max - p.drop_min)));
        }
    } else if (p.mapping == DropMapping::kIntervals) {
        double ref = 1.0 / G;
        if (p.intervals_by_median) {
            // The median as the reference code takes it (np.median in enrollment.py): the middle
            // value for odd G, the mean of the two middle values for even G, in float as numpy
            // computes it for float32 weights.
            std::vector<float> sorted(w, w + G);
            const auto upper = sorted.begin() + G / 2;
            std::nth_element(sorted.begin(), upper, sorted.end());
            float median = *upper;
            if (G % 2 == 0) median = (*std::max_element(sorted.begin(), upper) + median) / 2.0f;
            ref = median;
        }
        for (int g = 0; g < G; ++g) {
            const double ratio = w[g] / std::max(ref, 1e-30);
            size_t i = 0;
            while (i < p.interval_bounds.size() && !(ratio < p.interval_bounds[i])) ++i;
            counts[g] = p.interval_counts[i];
        }
    } else {
        // Budget: drop_count * G draws shared in proportion to 1 / importance, largest remainder.
        const int64_t budget = static_cast<int64_t>(p.drop_count) * G;
        std::vector<double> share(G);
        double total = 0;
        for (int g = 0; g < G; ++g) total += share[g] = 1.0 / (w[g] + 1e-6);
        std::vector<double> rem(G);
        int64_t given = 0;
        for (int g = 0; g < G; ++g) {
            const double exact = budget * share[g] / total;
            counts[g] = std::min<int64_t>(static_cast<int64_t>(exact), cap);
            rem[g] = exact - counts[g];
            given += counts[g];
        }
        std::vector<int> order(G);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return rem[a] > rem[b]; });
        // Hand out what is left, largest remainder first; groups at the cap pass it on.
        for (bool progress = true; given < budget && progress;) {
            progress = false;
            for (int g : order) {
                if (given >= budget) break;
                if (counts[g] < cap) {
                    ++counts[g];
                    ++given;
                    progress = true;
                }
            }
        }
    }
    for (int g = 0; g < G; ++g) counts[g] = std::clamp(counts[g], 0, cap);
}

void draw_key(int d, Rng& rng, float* key) {
    double ss;
    do {
        ss = 0;
        for (int j = 0; j < d; ++j) {
            const double z = rng.normal();
            key[j] = static_cast<float>(z);
            ss += z * z;
        }
    } while (ss < 1e-20);
    const double inv = 1.0 / std::sqrt(ss);
    for (int j = 0; j < d; ++j) key[j] = static_cast<float>(key[j] * inv);
}

void draw_mask(int d, int count, bool with_replacement, Rng& rng, uint8_t* mask) {
    std::fill(mask, mask + d, uint8_t{1});
    if (with_replacement) {
        for (int i = 0; i < count; ++i) mask[rng.below(static_cast<uint32_t>(d))] = 0;
        // Never drop the whole group: put one coordinate back.
        if (std::all_of(mask, mask + d, [](uint8_t m) { return m == 0; })) mask[rng.below(d)] = 1;
        return;
    }
    // Partial Fisher-Yates over the coordinates: the first `count` are dropped.
    std::vector<int> idx(d);
    std::iota(idx.begin(), idx.end(), 0);
    count = std::min(count, d - 1);
    for (int i = 0; i < count; ++i) {
        const int j = i + static_cast<int>(rng.below(static_cast<uint32_t>(d - i)));
        std::swap(idx[i], idx[j]);
        mask[idx[i]] = 0;
    }
}

void combination_weights(const Params& p, const float* w, float* out) {
    for (int g = 0; g < p.groups; ++g) {
        out[g] = p.weighting == Weighting::kImportance ? w[g] : 1.0f / static_cast<float>(p.groups);
    }
}

void Centering::take_frame(const Centering& other) {
    frame_seed = other.frame_seed;
    frame_matrix = other.frame_matrix;
    frame_group_dim = other.frame_group_dim;
}

void Centering::apply(const float* x, int64_t n, int dim, float* out) const {
    if (!trained()) {
        if (out != x) std::copy(x, x + n * dim, out);
    } else {
        std::vector<float> tmp(dim);
        for (int64_t i = 0; i < n; ++i) {
            for (int j = 0; j < dim; ++j) tmp[j] = x[i * dim + j] - mean[j];
            if (rotation.empty()) {
                std::copy(tmp.begin(), tmp.end(), out + i * dim);
            } else {
                Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> R(
                        rotation.data(), dim, dim);
                Eigen::Map<Eigen::VectorXf>(out + i * dim, dim) = R * Eigen::Map<Eigen::VectorXf>(tmp.data(), dim);
            }
        }
    }
    if (!has_frame()) return;
    // The frame works in place on the centred output, group by group: Y_g = C_g F_g^T over
    // blocks of rows (a matrix product rather than one matrix-vector product per row).
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using Block = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;
    const int d = frame_group_dim;
    constexpr int64_t kRows = 256;
    RowMat tmp;
    for (int64_t i0 = 0; i0 < n; i0 += kRows) {
        const int64_t rows = std::min(kRows, n - i0);
        for (int b = 0; b < dim; b += d) {
            Block y(out + i0 * dim + b, rows, d, Eigen::OuterStride<>(dim));
            Eigen::Map<const RowMat> F(frame_matrix.data() + size_t(b) * d, d, d);
            tmp.noalias() = y * F.transpose();
            y = tmp;
        }
    }
}

absl::StatusOr<Centering> Centering::fit(const float* x, int64_t n, int dim, int groups, bool pca) {
    if (n < 2) return absl::InvalidArgumentError(absl::StrFormat("train needs at least 2 vectors, got %d", n));
    if (pca && n < dim) {
        return absl::InvalidArgumentError(
                absl::StrFormat("PCA centring needs at least %d training vectors (the dimension), got %d", dim, n));
    }
    Eigen::VectorXd m = Eigen::VectorXd::Zero(dim);
    for (int64_t i = 0; i < n; ++i) {
        for (int j = 0; j < dim; ++j) {
            if (!std::isfinite(x[i * dim + j])) {
                return absl::InvalidArgumentError(absl::StrFormat("training vector %d has a NaN or infinite value", i));
            }
            m[j] += x[i * dim + j];
        }
    }
    m /= static_cast<double>(n);
    Centering c;
    c.mean.assign(m.data(), m.data() + dim);
    for (auto& v : c.mean) v = static_cast<float>(v);
    if (!pca) return c;
    Eigen::MatrixXd cov = Eigen::MatrixXd::Zero(dim, dim);
    Eigen::VectorXd v(dim);
    for (int64_t i = 0; i < n; ++i) {
        for (int j = 0; j < dim; ++j) v[j] = x[i * dim + j] - m[j];
        cov.selfadjointView<Eigen::Lower>().rankUpdate(v);
    }
    cov = cov.selfadjointView<Eigen::Lower>();
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(cov);
    if (es.info() != Eigen::Success) return absl::InternalError("PCA eigen decomposition failed");
    // Components by decreasing variance, dealt round-robin: rank r goes to group r % G.
    const int d = dim / groups;
    c.rotation.assign(static_cast<size_t>(dim) * dim, 0.0f);
    for (int r = 0; r < dim; ++r) {
        const int row = (r % groups) * d + r / groups;
        const Eigen::VectorXd comp = es.eigenvectors().col(dim - 1 - r);
        for (int j = 0; j < dim; ++j) c.rotation[static_cast<size_t>(row) * dim + j] = static_cast<float>(comp[j]);
    }
    return c;
}

}  // namespace pslerp
