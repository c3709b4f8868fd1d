// Learns per-group importance from labelled features with LibTorch, in the form the protection
// scheme's Params store: fixed weights (`importance_weights`, softmax of learnt logits, so
// w >= 0 and sum 1) and optionally self-attention projections (`attention_wq`, `attention_wk`,
// d x d row-major; the rule of the plugin's compute_importance with ImportanceKind::kSelfAttention
// and Params::attention_temperature = attention_temperature).
//
// Objective: the decidability d' of the weighted per-group cosine score,
//   (mean genuine - mean impostor) / sqrt((var genuine + var impostor) / 2),
// over all genuine pairs and up to max_impostor_pairs random impostor pairs, maximised with
// Adam. d' is smooth, has no margin to tune and tracks the EER when scores are near Gaussian.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace pslerp {

struct ImportanceLearnerOptions {
    int groups = 8;
    int group_dim = 16;
    bool learn_attention = false;  ///< fit Wq, Wk (from identity) instead of fixed weights
    float attention_temperature = 1.0f;
    int steps = 300;
    double learning_rate = 0.05;
    /// Pull toward uniform weights: adds l2 * ||logits||^2 (fixed) or l2 * ||W - I||^2 (attention).
    double l2 = 1e-3;
    int64_t max_impostor_pairs = 50000;  ///< impostor pairs sampled without replacement beyond this
    uint64_t seed = 1;
};

struct LearnedImportance {
    std::vector<float> weights;       ///< G weights, >= 0, sum 1 (uniform in attention mode)
    std::vector<float> attention_wq;  ///< d*d row-major; empty unless learn_attention
    std::vector<float> attention_wk;  ///< d*d row-major; empty unless learn_attention
    double initial_objective = 0;     ///< d' with uniform weights / identity projections
    double final_objective = 0;       ///< d' after fitting (training pairs)
    int64_t genuine_pairs = 0;
    int64_t impostor_pairs = 0;
};

/// @param x       n * groups * group_dim features; each group is normalised with the plugin's
///                normalize_groups, so a NaN or a zero-norm group is an error naming the sample
/// @param labels  n identity labels (a label < 0 mates nothing); the pairs are eval's
///                all_pairs(labels, max_impostor_pairs, seed), and at least one genuine and one
///                impostor pair are needed
absl::StatusOr<LearnedImportance> learn_importance(const float* x, int64_t n, const int* labels,
                                                   const ImportanceLearnerOptions& options);

}  // namespace pslerp
