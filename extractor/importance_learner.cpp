#include "extractor/importance_learner.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "eval/metrics.h"
#include "plugin/params.h"
#include "plugin/scheme.h"

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

at::Tensor decidability(const at::Tensor& genuine, const at::Tensor& impostor) {
    at::Tensor var = 0.5 * (genuine.var(/*unbiased=*/false) + impostor.var(/*unbiased=*/false)) + 1e-9;
    return (genuine.mean() - impostor.mean()) / var.sqrt();
}

std::vector<float> to_vector(const at::Tensor& t) {
    at::Tensor c = t.detach().to(at::kFloat).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace

absl::StatusOr<LearnedImportance> learn_importance(const float* x, int64_t n, const int* labels,
                                                   const ImportanceLearnerOptions& options) {
    const int64_t G = options.groups, d = options.group_dim;
    if (G <= 0 || d <= 0) return absl::InvalidArgumentError("importance learner: groups and group_dim must be positive");
    if (n < 2) return absl::InvalidArgumentError("importance learner: need at least two samples");
    if (options.steps < 0 || options.learning_rate <= 0)
        return absl::InvalidArgumentError("importance learner: steps must be >= 0 and the learning rate > 0");

    if (options.max_impostor_pairs < 0)
        return absl::InvalidArgumentError("importance learner: max_impostor_pairs must not be negative");
    // Pairs (eval/metrics.h): every genuine pair, a seeded sample of impostor pairs.
    const std::vector<int64_t> labels64(labels, labels + n);
    absl::StatusOr<Pairs> pairs = all_pairs(labels64, options.max_impostor_pairs, options.seed);
    if (!pairs.ok())
        return absl::Status(pairs.status().code(), absl::StrCat("importance learner: ", pairs.status().message()));
    std::vector<int64_t> gi, gj, ii, ij;
    for (int64_t k = 0; k < pairs->size(); ++k) {
        (pairs->is_mated[k] ? gi : ii).push_back(pairs->first[k]);
        (pairs->is_mated[k] ? gj : ij).push_back(pairs->second[k]);
    }
    if (gi.empty() || ii.empty())
        return absl::InvalidArgumentError("importance learner: the labels give no genuine or no impostor pair");

    // Unit groups by the scheme's own normalisation (plugin/scheme.h).
    Params p;
    p.groups = static_cast<int>(G);
    p.group_dim = static_cast<int>(d);
    std::vector<float> xn(static_cast<size_t>(n * G * d));
    if (absl::Status st = normalize_groups(p, x, n, xn.data()); !st.ok())
        return absl::Status(st.code(), absl::StrCat("importance learner: ", st.message()));

    at::manual_seed(options.seed);
    const at::Tensor X = at::from_blob(xn.data(), {n, G, d}, at::kFloat).to(at::kDouble);
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
            return decidability(at::mv(Cg, w), at::mv(Ci, w));
        };
        out.initial_objective = objective().item<double>();
        for (int s = 0; s < options.steps; ++s) {
            at::Tensor loss = -objective() + options.l2 * logits.pow(2).sum();
            loss.backward();
            adam.step();
        }
        out.final_objective = objective().item<double>();
        out.weights = to_vector(at::softmax(logits.detach(), 0));
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
        return decidability((Cg * wg).sum(1), (Ci * wi).sum(1));
    };
    out.initial_objective = objective().item<double>();
    for (int s = 0; s < options.steps; ++s) {
        at::Tensor loss = -objective() + options.l2 * ((Wq - I).pow(2).sum() + (Wk - I).pow(2).sum());
        loss.backward();
        adam.step();
    }
    out.final_objective = objective().item<double>();
    out.weights.assign(G, 1.0f / G);
    out.attention_wq = to_vector(Wq);
    out.attention_wk = to_vector(Wk);
    return out;
}

}  // namespace pslerp
