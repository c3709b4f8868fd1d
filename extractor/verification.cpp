#include "extractor/verification.h"

#include <algorithm>
#include <cmath>

#include "extractor/grouping.h"

namespace pslerp {

std::vector<float> AttentionImportance(const float* x, int64_t n, int groups, int group_dim,
                                       const std::vector<float>& wq, const std::vector<float>& wk, float temperature) {
    const int G = groups, d = group_dim;
    std::vector<float> out(static_cast<size_t>(n) * G);
    std::vector<double> xn(static_cast<size_t>(G) * d), q(xn.size()), k(xn.size()), logits(G);
    auto project = [&](const std::vector<float>& W, std::vector<double>& y) {
        for (int g = 0; g < G; ++g)
            for (int r = 0; r < d; ++r) {
                if (W.empty()) {
                    y[g * d + r] = xn[g * d + r];
                    continue;
                }
                double s = 0;
                for (int c = 0; c < d; ++c) s += W[r * d + c] * xn[g * d + c];
                y[g * d + r] = s;
            }
    };
    const double scale = 1.0 / (std::sqrt(static_cast<double>(d)) * temperature);
    for (int64_t i = 0; i < n; ++i) {
        const float* xi = x + i * G * d;
        for (int g = 0; g < G; ++g) {
            double nn = 0;
            for (int c = 0; c < d; ++c) nn += static_cast<double>(xi[g * d + c]) * xi[g * d + c];
            const double inv = nn > 0 ? 1.0 / std::sqrt(nn) : 0.0;
            for (int c = 0; c < d; ++c) xn[g * d + c] = xi[g * d + c] * inv;
        }
        project(wq, q);
        project(wk, k);
        float* w = out.data() + i * G;
        std::fill(w, w + G, 0.f);
        for (int g = 0; g < G; ++g) {
            double mx = -1e300;
            for (int h = 0; h < G; ++h) {
                double s = 0;
                for (int c = 0; c < d; ++c) s += q[g * d + c] * k[h * d + c];
                logits[h] = s * scale;
                mx = std::max(mx, logits[h]);
            }
            double sum = 0;
            for (int h = 0; h < G; ++h) sum += (logits[h] = std::exp(logits[h] - mx));
            for (int h = 0; h < G; ++h) w[h] += static_cast<float>(logits[h] / sum / G);
        }
    }
    return out;
}

PairScores AllPairScores(const float* x, int64_t n, const int* labels, int groups, int group_dim,
                         const std::vector<float>& weights, const std::vector<float>& sample_weights) {
    const int G = groups, D = groups * group_dim;
    std::vector<float> w(G, 1.0f / G), cos(G);
    if (!weights.empty()) {
        double sum = 0;
        for (float v : weights) sum += v;
        for (int g = 0; g < G; ++g) w[g] = static_cast<float>(weights[g] / sum);
    }
    PairScores out;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = i + 1; j < n; ++j) {
            GroupCosines(x + i * D, x + j * D, G, group_dim, cos.data());
            double s = 0;
            for (int g = 0; g < G; ++g) {
                const double wg = sample_weights.empty()
                                      ? w[g]
                                      : 0.5 * (sample_weights[i * G + g] + sample_weights[j * G + g]);
                s += wg * cos[g];
            }
            (labels[i] == labels[j] ? out.genuine : out.impostor).push_back(static_cast<float>(s));
        }
    return out;
}

double EqualErrorRate(const std::vector<float>& genuine, const std::vector<float>& impostor) {
    if (genuine.empty() || impostor.empty()) return std::nan("");
    std::vector<float> g = genuine, im = impostor;
    std::sort(g.begin(), g.end());
    std::sort(im.begin(), im.end());
    // Thresholds at every score: accept s >= t.
    std::vector<float> thresholds = g;
    thresholds.insert(thresholds.end(), im.begin(), im.end());
    std::sort(thresholds.begin(), thresholds.end());
    double best_gap = 2, eer = 1;
    for (float t : thresholds) {
        const double frr = static_cast<double>(std::lower_bound(g.begin(), g.end(), t) - g.begin()) / g.size();
        const double far = static_cast<double>(im.end() - std::lower_bound(im.begin(), im.end(), t)) / im.size();
        if (std::abs(far - frr) < best_gap) {
            best_gap = std::abs(far - frr);
            eer = 0.5 * (far + frr);
        }
    }
    return eer;
}

double TarAtFar(const std::vector<float>& genuine, const std::vector<float>& impostor, double far) {
    if (genuine.empty() || impostor.empty()) return std::nan("");
    std::vector<float> im = impostor;
    std::sort(im.begin(), im.end(), std::greater<float>());
    const size_t k = static_cast<size_t>(std::floor(far * im.size()));
    if (k >= im.size()) return 1.0;
    const float threshold = im[k];  // accept s > threshold: at most k impostors pass
    size_t accepted = 0;
    for (float s : genuine) accepted += s > threshold;
    return static_cast<double>(accepted) / genuine.size();
}

}  // namespace pslerp
