#include "extractor/importance_learner.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"

namespace pslerp {
namespace {

// Adam on a list of leaf tensors.
class Adam {
  public:
    Adam(std::vector<at::Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
        for (auto& p : params_) {
            m_.push_back(at::zeros_like(p));
            v_.push_back(at::zeros_like(p));
        }
    }
    void step() {
        at::AutoGradMode no_grad(false);
        ++t_;
        const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
        for (size_t i = 0; i < params_.size(); ++i) {
            at::Tensor g = params_[i].grad();
            if (!g.defined()) continue;
            m_[i].mul_(b1).add_(g, 1 - b1);
            v_[i].mul_(b2).addcmul_(g, g, 1 - b2);
            const double step = lr_ * std::sqrt(1 - std::pow(b2, t_)) / (1 - std::pow(b1, t_));
            params_[i].addcdiv_(m_[i], v_[i].sqrt().add_(eps), -step);
            g.zero_();
        }
    }

  private:
    std::vector<at::Tensor> params_, m_, v_;
    double lr_;
    int t_ = 0;
};

at::Tensor Decidability(const at::Tensor& genuine, const at::Tensor& impostor) {
    at::Tensor var = 0.5 * (genuine.var(/*unbiased=*/false) + impostor.var(/*unbiased=*/false)) + 1e-9;
    return (genuine.mean() - impostor.mean()) / var.sqrt();
}

std::vector<float> ToVector(const at::Tensor& t) {
    at::Tensor c = t.detach().to(at::kFloat).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace

absl::StatusOr<LearnedImportance> LearnImportance(const float* x, int64_t n, const int* labels,
                                                  const ImportanceLearnerOptions& options) {
    const int64_t G = options.groups, d = options.group_dim;
    if (G <= 0 || d <= 0) return absl::InvalidArgumentError("importance learner: groups and group_dim must be positive");
    if (n < 2) return absl::InvalidArgumentError("importance learner: need at least two samples");
    if (options.steps < 0 || options.learning_rate <= 0)
        return absl::InvalidArgumentError("importance learner: steps must be >= 0 and the learning rate > 0");

    // Pairs: every genuine pair, a seeded sample of impostor pairs.
    std::vector<int64_t> gi, gj, ii, ij;
    int64_t impostor_total = 0;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = i + 1; j < n; ++j) {
            if (labels[i] == labels[j]) {
                gi.push_back(i);
                gj.push_back(j);
            } else {
                ++impostor_total;
            }
        }
    if (gi.empty() || impostor_total == 0)
        return absl::InvalidArgumentError("importance learner: the labels give no genuine or no impostor pair");
    std::mt19937_64 rng(options.seed);
    if (impostor_total <= options.max_impostor_pairs) {
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = i + 1; j < n; ++j)
                if (labels[i] != labels[j]) {
                    ii.push_back(i);
                    ij.push_back(j);
                }
    } else {
        std::uniform_int_distribution<int64_t> pick(0, n - 1);
        while (static_cast<int64_t>(ii.size()) < options.max_impostor_pairs) {
            int64_t i = pick(rng), j = pick(rng);
            if (labels[i] == labels[j]) continue;
            ii.push_back(std::min(i, j));
            ij.push_back(std::max(i, j));
        }
    }

    at::manual_seed(options.seed);
    at::Tensor X = at::from_blob(const_cast<float*>(x), {n, G, d}, at::kFloat).to(at::kDouble);
    X = X / X.norm(2, {2}, /*keepdim=*/true).clamp_min(1e-12);
    auto index = [](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong); };
    const at::Tensor Gi = index(gi), Gj = index(gj), Ii = index(ii), Ij = index(ij);
    // Per-group cosines of every pair: (P, G).
    const at::Tensor Cg = (X.index_select(0, Gi) * X.index_select(0, Gj)).sum(2);
    const at::Tensor Ci = (X.index_select(0, Ii) * X.index_select(0, Ij)).sum(2);

    LearnedImportance out;
    out.genuine_pairs = static_cast<int64_t>(gi.size());
    out.impostor_pairs = static_cast<int64_t>(ii.size());

    if (!options.learn_attention) {
        at::Tensor logits = at::zeros({G}, at::kDouble).requires_grad_(true);
        Adam adam({logits}, options.learning_rate);
        auto objective = [&] {
            at::Tensor w = at::softmax(logits, 0);
            return Decidability(at::mv(Cg, w), at::mv(Ci, w));
        };
        out.initial_objective = objective().item<double>();
        for (int s = 0; s < options.steps; ++s) {
            at::Tensor loss = -objective() + options.l2 * logits.pow(2).sum();
            loss.backward();
            adam.step();
        }
        out.final_objective = objective().item<double>();
        out.weights = ToVector(at::softmax(logits.detach(), 0));
        return out;
    }

    at::Tensor Wq = at::eye(d, at::kDouble).requires_grad_(true);
    at::Tensor Wk = at::eye(d, at::kDouble).requires_grad_(true);
    const at::Tensor I = at::eye(d, at::kDouble);
    const double scale = 1.0 / (std::sqrt(static_cast<double>(d)) * options.attention_temperature);
    Adam adam({Wq, Wk}, options.learning_rate);
    auto objective = [&] {
        at::Tensor Q = at::matmul(X, Wq.t()), K = at::matmul(X, Wk.t());         // (n, G, d)
        at::Tensor A = at::softmax(at::matmul(Q, K.transpose(1, 2)) * scale, 2); // (n, G, G)
        at::Tensor w = A.mean(1);                                                 // (n, G)
        at::Tensor wg = 0.5 * (w.index_select(0, Gi) + w.index_select(0, Gj));
        at::Tensor wi = 0.5 * (w.index_select(0, Ii) + w.index_select(0, Ij));
        return Decidability((Cg * wg).sum(1), (Ci * wi).sum(1));
    };
    out.initial_objective = objective().item<double>();
    for (int s = 0; s < options.steps; ++s) {
        at::Tensor loss = -objective() + options.l2 * ((Wq - I).pow(2).sum() + (Wk - I).pow(2).sum());
        loss.backward();
        adam.step();
    }
    out.final_objective = objective().item<double>();
    out.weights.assign(G, 1.0f / G);
    out.attention_wq = ToVector(Wq);
    out.attention_wk = ToVector(Wk);
    return out;
}

}  // namespace pslerp
