// Small verification metrics for the extractor's figures and the importance learner: scores of
// all genuine / impostor pairs under a weighted per-group cosine, EER and TAR at a FAR.
// (bench/eval.* holds the full evaluation suite; this keeps the extractor self-contained.)
#pragma once

#include <cstdint>
#include <vector>

namespace pslerp {

struct PairScores {
    std::vector<float> genuine;   ///< same label
    std::vector<float> impostor;  ///< different labels
};

/// Per-group importance of each sample by pslerp's self-attention rule (the same as the
/// plugin's ImportanceKind::kSelfAttention): with X the sample's G normalised groups (G x d),
/// Q = X Wq^T, K = X Wk^T, A = row-softmax(Q K^T / (sqrt(d) * temperature)), w_h = mean_g A_gh.
/// Empty wq / wk mean identity.
/// @param x  n * G * d floats;  @return n * G weights
std::vector<float> AttentionImportance(const float* x, int64_t n, int groups, int group_dim,
                                       const std::vector<float>& wq, const std::vector<float>& wk,
                                       float temperature = 1.0f);

/// Scores of all pairs i < j: sum_g w_g cos_g(x_i, x_j), with w the same for every pair
/// (`weights`, G values; empty = uniform), or per sample (`sample_weights`, n * G; the pair uses
/// the mean of its two samples' weights) when that is not empty.
/// @param x  n * G * d floats;  @param labels  n labels
PairScores AllPairScores(const float* x, int64_t n, const int* labels, int groups, int group_dim,
                         const std::vector<float>& weights, const std::vector<float>& sample_weights = {});

/// Equal error rate (the point where FAR and FRR cross, mean of the two there).
double EqualErrorRate(const std::vector<float>& genuine, const std::vector<float>& impostor);
/// Fraction of genuine scores above the threshold that accepts at most `far` of the impostors.
double TarAtFar(const std::vector<float>& genuine, const std::vector<float>& impostor, double far);

}  // namespace pslerp
