#include "plugin/reference.h"

#include "plugin/scheme.h"

#include <algorithm>
#include <cmath>

namespace pslerp::reference {

namespace {

using Vec = std::vector<double>;

Vec group_of(const Params& p, const float* x, int g) {
    return Vec(x + g * p.group_dim, x + (g + 1) * p.group_dim);
}

double dotv(const Vec& a, const Vec& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

Vec normalised(Vec v) {
    const double n = std::sqrt(dotv(v, v));
    for (auto& x : v) x /= n;
    return v;
}

Vec key_of(const Params& p, const float* keys, int g) {
    return p.key_mode == KeyMode::kShared ? Vec(keys, keys + p.group_dim) : group_of(p, keys, g);
}

// Step 3: slerp of unit x toward unit k by t, with the guards at theta -> 0 and theta -> pi.
Vec slerp(const Vec& x, const Vec& k, double t) {
    double c = std::clamp(dotv(x, k), kAntipodalCos, 1.0);
    const double theta = std::acos(c);
    Vec r(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        if (theta < 1e-7) {
            r[i] = (1 - t) * x[i] + t * k[i];
        } else {
            r[i] = (std::sin((1 - t) * theta) * x[i] + std::sin(t * theta) * k[i]) / std::sin(theta);
        }
    }
    return r;
}

// Steps 4-5: drop with the mask, normalise what is left.
Vec drop_and_normalise(const Params& p, Vec r, const uint8_t* mask) {
    for (int i = 0; i < p.group_dim; ++i) {
        if (!mask[i]) r[i] = 0;
    }
    return normalised(r);
}

double t_for(const Params& p, const Vec& w, int g) {
    return std::clamp(p.t_minus_importance ? p.t - w[g] : static_cast<double>(p.t), 0.0, 1.0);
}

}  // namespace

Vec importance(const Params& p, const float* x) {
    const int G = p.groups, d = p.group_dim;
    Vec w(G, 1.0 / G);
    if (p.importance == ImportanceKind::kFixed) {
        double s = 0;
        for (float v : p.importance_weights) s += v;
        for (int g = 0; g < G; ++g) w[g] = p.importance_weights[g] / s;
    } else if (p.importance == ImportanceKind::kSelfAttention) {
        std::vector<Vec> q(G), k(G);
        for (int g = 0; g < G; ++g) {
            const Vec xg = normalised(group_of(p, x, g));
            q[g] = k[g] = xg;
            if (!p.attention_wq.empty()) {
                for (int i = 0; i < d; ++i) {
                    q[g][i] = 0;
                    for (int j = 0; j < d; ++j) q[g][i] += p.attention_wq[i * d + j] * xg[j];
                }
            }
            if (!p.attention_wk.empty()) {
                for (int i = 0; i < d; ++i) {
                    k[g][i] = 0;
                    for (int j = 0; j < d; ++j) k[g][i] += p.attention_wk[i * d + j] * xg[j];
                }
            }
        }
        std::fill(w.begin(), w.end(), 0.0);
        for (int g = 0; g < G; ++g) {
            Vec logits(G);
            for (int h = 0; h < G; ++h) logits[h] = dotv(q[g], k[h]) / (std::sqrt(double(d)) * p.attention_temperature);
            const double mx = *std::max_element(logits.begin(), logits.end());
            double z = 0;
            for (auto& l : logits) z += (l = std::exp(l - mx));
            for (int h = 0; h < G; ++h) w[h] += logits[h] / z / G;
        }
    }
    return w;
}

Vec protect_one(const Params& p, const float* x, const float* keys, const uint8_t* masks, const float* imp) {
    const int G = p.groups, d = p.group_dim;
    Vec w(G);
    double s = 0;
    for (int g = 0; g < G; ++g) s += imp[g];
    for (int g = 0; g < G; ++g) w[g] = imp[g] / s;
    Vec out;
    for (int g = 0; g < G; ++g) {
        const Vec xg = normalised(group_of(p, x, g));  // step 1: normalise each group
        const Vec r = slerp(xg, key_of(p, keys, g), t_for(p, w, g));
        const Vec e = drop_and_normalise(p, r, masks + g * d);
        out.insert(out.end(), e.begin(), e.end());
    }
    return out;
}

double match_one(const Params& p, const float* q, const float* tmpl, const float* keys, const uint8_t* masks,
                 const float* weights) {
    const int G = p.groups, d = p.group_dim;
    const Vec w = importance(p, q);
    double score = 0;
    for (int g = 0; g < G; ++g) {
        const Vec qg = normalised(group_of(p, q, g));
        const Vec r = slerp(qg, key_of(p, keys, g), t_for(p, w, g));
        const Vec pg = drop_and_normalise(p, r, masks + g * d);
        Vec eg = group_of(p, tmpl, g);
        for (int i = 0; i < d; ++i) {
            if (!masks[g * d + i]) eg[i] = 0;  // a random fill is not part of the match
        }
        score += weights[g] * dotv(pg, eg);
    }
    return score;
}

}  // namespace pslerp::reference
